/**
 * The control listener's front door (src/cli/control-listener.ts): TLS and plain HTTP on one
 * port told apart by the first byte, plain HTTP refused off loopback, and clients that stall
 * before or during the handshake dropped.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { connect } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { startControlListener, type ControlListener } from '../src/cli/control-listener.js';
import { makeTestCa, type Issued, type TestCa } from './helpers/device-pki.js';

function closedWithin(port: number, send: Buffer | null, ms: number): Promise<{ closed: boolean; data: string }> {
  return new Promise((resolve) => {
    let data = '';
    const s = connect(port, '127.0.0.1', () => { if (send) s.write(send); });
    s.on('data', (c: Buffer) => { data += c.toString('latin1'); });
    s.on('error', () => {});
    const t = setTimeout(() => { s.destroy(); resolve({ closed: false, data }); }, ms);
    s.on('close', () => { clearTimeout(t); resolve({ closed: true, data }); });
  });
}

describe('control listener front door', () => {
  let ca: TestCa;
  let server: Issued;
  let http: Server;
  const listeners: ControlListener[] = [];

  before(async () => {
    ca = await makeTestCa();
    server = await ca.issueServer(['localhost', '127.0.0.1']);
    http = createServer((req, res) => res.end(`${(req.socket as { encrypted?: boolean }).encrypted ? 'tls' : 'plain'} ok`));
  });
  after(async () => {
    for (const l of listeners) await l.close();
  });

  const start = async (allowPlain: boolean): Promise<number> => {
    const l = await startControlListener({ host: '127.0.0.1', port: 0, http, tls: { key: server.keyPem, cert: server.certPem, ca: [ca.certPem] }, allowPlain, firstByteTimeoutMs: 300 });
    listeners.push(l);
    return l.address.port;
  };

  it('serves TLS and, on loopback, plain HTTP on the same port', async () => {
    const port = await start(true);
    const plain = await fetch(`http://127.0.0.1:${port}/`);
    assert.equal(await plain.text(), 'plain ok');
    const body = await new Promise<string>((resolve, reject) => {
      const s = tlsConnect({ host: '127.0.0.1', port, ca: ca.certPem, servername: 'localhost' }, () => s.write('GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'));
      let d = '';
      s.on('data', (c: Buffer) => { d += c.toString(); });
      s.on('end', () => resolve(d));
      s.on('error', reject);
    });
    assert.match(body, /tls ok$/);
  });

  it('refuses plain HTTP with CONTROL_TLS_REQUIRED when plain is not allowed', async () => {
    const port = await start(false);
    const r = await closedWithin(port, Buffer.from('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n'), 3000);
    assert.equal(r.closed, true);
    assert.match(r.data, /^HTTP\/1\.1 400 /);
    assert.equal(JSON.parse(r.data.slice(r.data.indexOf('\r\n\r\n') + 4)).code, 'CONTROL_TLS_REQUIRED');
  });

  it('drops a client that never sends a byte, and one that stalls inside the TLS handshake', async () => {
    const port = await start(true);
    assert.equal((await closedWithin(port, null, 3000)).closed, true);
    // A TLS record header announcing a ClientHello that never comes.
    assert.equal((await closedWithin(port, Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00]), 3000)).closed, true);
  });
});
