/**
 * The mTLS proxy listener (issue #4): a device certificate maps to a device and its group
 * through the in-memory directory; every refusal is a readable 403 with its own reason, never
 * a bare TLS failure, and nothing is relayed for it. Revocation cuts live tunnels at once and
 * a resumed TLS session does not bring a revoked device back.
 */
import { after, before, describe, it } from 'node:test';
import { connect as netConnect, type Socket } from 'node:net';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect, type SecureContextOptions, type TLSSocket } from 'node:tls';
import { normalizeSerial } from '../src/core/principal.js';
import { deviceIdFromSan } from '../src/gateway/peer.js';
import { makeTestCa, type Issued, type TestCa } from './helpers/device-pki.js';
import { MemoryDirectory, type DeviceState as State } from './helpers/directory.js';
import { RawClient, startGateway, type TestGateway } from './helpers/gateway.js';
import { fetch, ProxyAgent } from 'undici';
import { startEchoOrigin, startFullBacklog, startHttpOrigin, type Origin } from './helpers/origins.js';
import { testDns } from './helpers/fixtures.js';
import type { DnsServer } from './helpers/dns-server.js';

interface Answer { status: number; head: string; body: string; socket: TLSSocket; reused: boolean }

/** Opens TLS to the mTLS listener, sends CONNECT, and returns the answer head (socket left open on 200). */
function mtlsConnect(port: number, ca: string, client: Partial<Issued> | null, target: string, session?: Buffer): Promise<Answer & { session: () => Buffer | undefined }> {
  return new Promise((resolve, reject) => {
    const opts: SecureContextOptions & { host: string; port: number; servername: string; session?: Buffer } = {
      host: '127.0.0.1', port, ca, servername: 'localhost',
      ...(client ? { cert: client.certPem, key: client.keyPem } : {}),
      ...(session ? { session } : {}),
    };
    let latest: Buffer | undefined;
    const s = tlsConnect(opts, () => {
      s.write(`CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n\r\n`);
    });
    s.on('session', (b: Buffer) => { latest = b; });
    let buf = Buffer.alloc(0);
    const onData = (c: Buffer): void => {
      buf = Buffer.concat([buf, c]);
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      const head = buf.subarray(0, end).toString('latin1');
      const status = Number(head.split(' ')[1]);
      const rest = buf.subarray(end + 4);
      if (status === 200) {
        s.off('data', onData);
        resolve({ status, head, body: rest.toString(), socket: s, reused: s.isSessionReused(), session: () => latest });
        return;
      }
      const len = Number(/content-length: (\d+)/i.exec(head)?.[1] ?? 0);
      if (rest.length >= len) {
        s.off('data', onData);
        resolve({ status, head, body: rest.subarray(0, len).toString(), socket: s, reused: s.isSessionReused(), session: () => latest });
      }
    };
    s.on('data', onData);
    s.on('error', reject);
  });
}

const reasonOf = (head: string): string | undefined => /x-chokepoint-reason: ([a-z_]+)/i.exec(head)?.[1];

describe('mTLS proxy listener', () => {
  let ca: TestCa;
  let foreign: TestCa;
  let server: Issued;
  let dir: MemoryDirectory;
  let tg: TestGateway;
  let mtlsPort: number;
  let echo: Origin;
  let http: Awaited<ReturnType<typeof startHttpOrigin>>;
  let dns: DnsServer;
  const certs: Record<string, Issued> = {};
  let backlog: Awaited<ReturnType<typeof startFullBacklog>>;
  let backlogPort: number;

  before(async () => {
    [ca, foreign] = await Promise.all([makeTestCa(), makeTestCa('Impostor CA')]);
    server = await ca.issueServer(['localhost', '127.0.0.1']);
    echo = await startEchoOrigin();
    http = await startHttpOrigin();
    dns = await testDns();
    // A destination whose connects never complete (its accept queue is full): for a dial in flight.
    backlog = await startFullBacklog();
    backlogPort = backlog.port;
    const policy = `version: 1
address_exceptions: [127.0.0.1/32]
groups:
  - name: servers
    sources: [127.0.0.0/8]
    allow:
      - host: other.test
        ports: [${echo.port}]
        tls: none
  - name: laptops
    allow:
      - host: echo.test
        ports: [${echo.port}]
        tls: none
      - host: http.test
        ports: [${http.port}]
        tls: none
      - address: 127.0.0.1/32
        ports: [${backlogPort}]
        tls: none
`;
    tg = await startGateway(policy, { dns: { resolvers: [dns.address] } });
    dir = new MemoryDirectory();
    const day = 86_400_000;
    const mk = async (name: string, o: Parameters<TestCa['issueDevice']>[0], state: State | null = 'active', group = 'laptops'): Promise<void> => {
      certs[name] = await ca.issueDevice(o);
      if (state !== null) dir.add((certs[name] as Issued).serial, o.deviceId ?? 'dev-1', group, state, o.assetId ?? null);
    };
    await Promise.all([
      mk('good', { deviceId: 'dev-good', assetId: 'LAPTOP-42' }),
      mk('other', { deviceId: 'dev-other' }),
      mk('expired', { deviceId: 'dev-exp', notBefore: new Date(Date.now() - 3 * day), notAfter: new Date(Date.now() - day) }),
      mk('future', { deviceId: 'dev-fut', notBefore: new Date(Date.now() + day), notAfter: new Date(Date.now() + 2 * day) }),
      mk('unknown', { deviceId: 'dev-unk' }, null),
      mk('revoked', { deviceId: 'dev-rev' }, 'revoked'),
      mk('disabled', { deviceId: 'dev-dis' }, 'disabled'),
      mk('pending', { deviceId: 'dev-pen' }, 'pending'),
      mk('nogroup', { deviceId: 'dev-nog' }, 'active', 'ghosts'),
      mk('nouri', { deviceId: null }, null),
      mk('cut', { deviceId: 'dev-cut' }),
      mk('resume', { deviceId: 'dev-res' }),
      mk('dialcut', { deviceId: 'dev-dialcut' }),
    ]);
    certs.foreign = await foreign.issueDevice({ deviceId: 'dev-good' });
    // Same serial and device URI as a real device, but signed by another CA: a forgery.
    const addr = await tg.gw.listenMtls({ host: '127.0.0.1', port: 0, key: server.keyPem, cert: server.certPem, ca: [ca.certPem], directory: dir });
    mtlsPort = addr.port;
  });

  after(async () => {
    backlog.close();
    await tg.close();
    await echo.close();
    await http.close();
    await dns.close();
  });

  it('relays for an active device, with its group from the directory and its identity in the events', async () => {
    const r = await mtlsConnect(mtlsPort, ca.certPem, certs.good as Issued, `echo.test:${echo.port}`);
    assert.equal(r.status, 200);
    r.socket.write('ping');
    const got = await new Promise<string>((res) => r.socket.once('data', (c: Buffer) => res(c.toString())));
    assert.equal(got, 'ping');
    const d = await tg.waitDecision((e) => e.device_id === 'dev-good');
    assert.equal(d.listener, 'mtls');
    assert.equal(d.verdict, 'allow');
    assert.equal(d.group, 'laptops');
    assert.equal(d.asset_id, 'LAPTOP-42');
    assert.equal(d.serial, (certs.good as Issued).serial);
    r.socket.end();
    const c = await tg.waitClosed((e) => e.id === d.id);
    assert.equal(c.device_id, 'dev-good');
    assert.equal(c.serial, (certs.good as Issued).serial);
  });

  it('never selects a group by source address for a device (the loopback source belongs to "servers")', async () => {
    const r = await mtlsConnect(mtlsPort, ca.certPem, certs.good as Issued, `other.test:${echo.port}`);
    assert.equal(r.status, 403);
    assert.equal(reasonOf(r.head), 'no_rule_matched');
    r.socket.destroy();
  });

  const refusals: [string, string][] = [
    ['nocert', 'client_certificate_required'],
    ['foreign', 'certificate_invalid'],
    ['nouri', 'certificate_invalid'],
    ['expired', 'certificate_expired'],
    ['future', 'certificate_not_yet_valid'],
    ['unknown', 'device_unknown'],
    ['revoked', 'device_revoked'],
    ['disabled', 'device_disabled'],
    ['pending', 'device_pending'],
    ['nogroup', 'group_not_in_policy'],
  ];
  for (const [name, reason] of refusals) {
    it(`refuses ${name} with a readable 403 ${reason} and relays nothing`, async () => {
      const before = echo.sockets.size;
      const r = await mtlsConnect(mtlsPort, ca.certPem, name === 'nocert' ? null : certs[name] as Issued, `echo.test:${echo.port}`);
      assert.equal(r.status, 403);
      assert.equal(reasonOf(r.head), reason);
      assert.equal(JSON.parse(r.body).code, reason);
      const id = /x-chokepoint-id: ([0-9a-f-]+)/i.exec(r.head)?.[1];
      const d = await tg.waitDecision((e) => e.id === id);
      assert.equal(d.reason, reason);
      assert.equal(d.verdict, 'deny');
      assert.equal(d.address, null, 'nothing was dialed');
      assert.equal(d.host, 'echo.test', 'the refusal still records where the client wanted to go');
      if (name === 'foreign' || name === 'nocert') assert.equal(d.device_id, null, 'a claim from an unverified certificate is not recorded as the device');
      if (name === 'foreign') assert.match(d.detail ?? '', /^[A-Z_]+$/, 'OpenSSL\'s verification code says why');
      assert.equal(echo.sockets.size, before);
      r.socket.destroy();
    });
  }

  it('publishes a handshake failure event when a client speaks plain text to the TLS port', async () => {
    const { connect } = await import('node:net');
    const s = connect({ host: '127.0.0.1', port: mtlsPort }, () => s.write(`CONNECT echo.test:${echo.port} HTTP/1.1\r\n\r\n`));
    s.on('error', () => {});
    s.resume();
    const e = await new Promise<{ error: string; listener: string }>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('no handshake_failed event')), 5000);
      const unsub = tg.bus.subscribe((ev) => {
        if (ev.type === 'gateway.tls.handshake_failed' && ev.client_port === s.localPort) {
          clearTimeout(t);
          unsub();
          resolve(ev);
        }
      });
    });
    assert.equal(e.listener, 'mtls');
    assert.match(e.error, /^ERR_SSL_/);
    s.destroy();
  });

  it('a client that resets in the middle of its handshake is still named in the failure event (address and port)', async () => {
    // Regression: the event read the address from the TLS socket once the handshake had
    // failed, when the connection was already gone (getpeername fails on a reset socket), and
    // recorded the client as "" port 0: evidence that names nobody.
    const { connect } = await import('node:net');
    const s = connect({ host: '127.0.0.1', port: mtlsPort }, () => {
      s.write(Buffer.from('160301', 'hex')); // the start of a ClientHello record
      setTimeout(() => s.resetAndDestroy(), 50);
    });
    s.on('error', () => {});
    const port = await new Promise<number>((r) => s.once('connect', () => r(s.localPort as number)));
    const e = await new Promise<{ error: string; client_ip: string; client_port: number }>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('no handshake_failed event for the reset client')), 5000);
      const unsub = tg.bus.subscribe((ev) => {
        if (ev.type === 'gateway.tls.handshake_failed' && (ev.client_port === port || ev.client_ip === '')) {
          clearTimeout(t);
          unsub();
          resolve(ev);
        }
      });
    });
    assert.equal(e.client_ip, '127.0.0.1');
    assert.equal(e.client_port, port);
    assert.equal(e.error, 'ECONNRESET');
  });

  it('cuts a live tunnel within a second of the device being revoked', async () => {
    const r = await mtlsConnect(mtlsPort, ca.certPem, certs.cut as Issued, `echo.test:${echo.port}`);
    assert.equal(r.status, 200);
    const closed = new Promise<void>((res) => r.socket.on('close', () => res()));
    r.socket.on('error', () => {});
    dir.set('dev-cut', 'revoked');
    await closed;
    const c = await tg.waitClosed((e) => e.device_id === 'dev-cut', 1000);
    assert.equal(c.close_reason, 'device_revoked');
  });

  it('a revocation abandons the dial in flight of the device\'s request and records it (deny device_revoked)', async () => {
    // The request was admitted and its upstream is still connecting: the connection has no
    // owner yet for the revocation to cut, and the dial would otherwise run to the connect timeout.
    void mtlsConnect(mtlsPort, ca.certPem, certs.dialcut as Issued, `127.0.0.1:${backlogPort}`).catch(() => {});
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(tg.decisions().filter((e) => e.device_id === 'dev-dialcut').length, 0, 'still dialling');
    dir.set('dev-dialcut', 'revoked');
    const d = await tg.waitDecision((e) => e.device_id === 'dev-dialcut', 3000);
    assert.equal(d.verdict, 'deny');
    assert.equal(d.reason, 'device_revoked');
  });

  it('a revoked serial cuts only what that certificate opened, not the device\'s other certificate', async () => {
    const [oldCert, newCert] = await Promise.all([ca.issueDevice({ deviceId: 'dev-two' }), ca.issueDevice({ deviceId: 'dev-two' })]);
    dir.add(oldCert.serial, 'dev-two');
    dir.add(newCert.serial, 'dev-two');
    const a = await mtlsConnect(mtlsPort, ca.certPem, oldCert, `echo.test:${echo.port}`);
    const b = await mtlsConnect(mtlsPort, ca.certPem, newCert, `echo.test:${echo.port}`);
    assert.equal(a.status, 200);
    assert.equal(b.status, 200);
    a.socket.on('error', () => {});
    const aClosed = new Promise<void>((res) => a.socket.on('close', () => res()));
    dir.revokeSerial(oldCert.serial);
    await aClosed;
    b.socket.write('still here');
    const got = await new Promise<string>((res) => b.socket.once('data', (c: Buffer) => res(c.toString())));
    assert.equal(got, 'still here');
    const c = await tg.waitClosed((e) => e.serial === oldCert.serial, 1000);
    assert.equal(c.close_reason, 'device_revoked');
    b.socket.destroy();
  });

  it('does not let a resumed TLS session bring a revoked device back', async () => {
    const first = await mtlsConnect(mtlsPort, ca.certPem, certs.resume as Issued, `echo.test:${echo.port}`);
    assert.equal(first.status, 200);
    first.socket.write('x');
    await new Promise((res) => first.socket.once('data', res));
    const session = first.session();
    assert.ok(session, 'the server offered a session to resume');
    first.socket.on('error', () => {});
    dir.set('dev-res', 'revoked');
    await new Promise((res) => first.socket.on('close', res));
    const again = await mtlsConnect(mtlsPort, ca.certPem, certs.resume as Issued, `echo.test:${echo.port}`, session);
    assert.equal(again.reused, true, 'the session was resumed');
    assert.equal(again.status, 403);
    assert.equal(reasonOf(again.head), 'device_revoked');
    again.socket.destroy();
  });

  it('trusts a new CA set after updateMtlsCredentials (CA rotation), for new handshakes only', async () => {
    const foreignCert = certs.foreign as Issued;
    const before = await mtlsConnect(mtlsPort, ca.certPem, foreignCert, `echo.test:${echo.port}`);
    assert.equal(reasonOf(before.head), 'certificate_invalid');
    before.socket.destroy();
    try {
      tg.gw.updateMtlsCredentials({ key: server.keyPem, cert: server.certPem, ca: [ca.certPem, foreign.certPem] });
      // The chain now verifies, so the refusal moves on to the device table: its serial is unknown.
      const after = await mtlsConnect(mtlsPort, ca.certPem, foreignCert, `echo.test:${echo.port}`);
      assert.equal(reasonOf(after.head), 'device_unknown');
      after.socket.destroy();
    } finally {
      tg.gw.updateMtlsCredentials({ key: server.keyPem, cert: server.certPem, ca: [ca.certPem] });
    }
    const again = await mtlsConnect(mtlsPort, ca.certPem, foreignCert, `echo.test:${echo.port}`);
    assert.equal(reasonOf(again.head), 'certificate_invalid');
    again.socket.destroy();
  });

  it('works with undici ProxyAgent presenting the device certificate to the proxy', async () => {
    const good = certs.good as Issued;
    const agent = new ProxyAgent({ uri: `https://127.0.0.1:${mtlsPort}`, proxyTls: { ca: ca.certPem, cert: good.certPem, key: good.keyPem, servername: 'localhost' } });
    const anonymous = new ProxyAgent({ uri: `https://127.0.0.1:${mtlsPort}`, proxyTls: { ca: ca.certPem, servername: 'localhost' } });
    try {
      const res = await fetch(`http://http.test:${http.port}/through-mtls`, { dispatcher: agent });
      assert.equal(res.status, 200);
      assert.equal(((await res.json()) as { url: string }).url, '/through-mtls');
      const d = await tg.waitDecision((e) => e.device_id === 'dev-good' && e.host === 'http.test');
      assert.equal(d.verdict, 'allow');
      await assert.rejects(fetch(`http://http.test:${http.port}/x`, { dispatcher: anonymous }));
      await tg.waitDecision((e) => e.reason === 'client_certificate_required' && e.host === 'http.test');
    } finally {
      await agent.close();
      await anonymous.close();
    }
  });

  it('works with curl as an HTTPS-proxy client with a client certificate', async () => {
    const dirTmp = mkdtempSync(join(tmpdir(), 'cp-mtls-'));
    try {
      const w = (n: string, s: string): string => { const p = join(dirTmp, n); writeFileSync(p, s, { mode: 0o600 }); return p; };
      const good = certs.good as Issued;
      const args = ['-sS', '--max-time', '10', '-o', '/dev/null', '-w', '%{http_code}',
        '--proxy', `https://localhost:${mtlsPort}`, '--proxy-cacert', w('ca.pem', ca.certPem),
        '--proxy-cert', w('c.pem', good.certPem), '--proxy-key', w('k.pem', good.keyPem),
        '--proxytunnel', `http://echo.test:${echo.port}/`, '--resolve', `localhost:${mtlsPort}:127.0.0.1`];
      // The echo origin answers an HTTP request with the request itself: not HTTP, so curl
      // reports an error after the tunnel opened; what matters is the 200 from the proxy.
      const out = await new Promise<{ code: number | null; stderr: string; stdout: string }>((res) => {
        execFile('curl', [...args, '-v'], (err, stdout, stderr) => res({ code: err ? (err as { code?: number }).code ?? 1 : 0, stdout, stderr }));
      });
      assert.match(out.stderr, /HTTP\/1\.1 200 Connection established/i, out.stderr);
      const denied = await new Promise<string>((res) => {
        execFile('curl', ['-sS', '--max-time', '10', '-v', '--proxy', `https://localhost:${mtlsPort}`, '--proxy-cacert', join(dirTmp, 'ca.pem'),
          '--resolve', `localhost:${mtlsPort}:127.0.0.1`, '--proxytunnel', `http://echo.test:${echo.port}/`], (_e, _o, stderr) => res(stderr));
      });
      assert.match(denied, /403/);
      assert.match(denied, /x-chokepoint-reason: client_certificate_required/i);
    } finally {
      rmSync(dirTmp, { recursive: true, force: true });
    }
  });
});

describe('mTLS listener with the device CA imported under an enterprise root', () => {
  it('accepts devices of the imported CA and refuses a sibling CA\'s certificate with the same serial and device URI', async () => {
    const root = await makeTestCa('Enterprise root');
    const [deviceCa, sibling] = await Promise.all([root.issueIntermediate('Chokepoint device CA'), root.issueIntermediate('Another team CA')]);
    const server = await deviceCa.issueServer(['localhost', '127.0.0.1']);
    const good = await deviceCa.issueDevice({ deviceId: 'dev-ent' });
    // Serials are public (every certificate and the CRL show them): a sibling CA under the same
    // root can mint a look-alike. Only a certificate the device CA itself signed may count.
    const forged = await sibling.issueDevice({ deviceId: 'dev-ent', serial: good.serial });
    const echo = await startEchoOrigin();
    const dns = await testDns();
    const tg = await startGateway(`version: 1\naddress_exceptions: [127.0.0.1/32]\ngroups:\n  - name: laptops\n    allow:\n      - host: echo.test\n        ports: [${echo.port}]\n        tls: none\n`, { dns: { resolvers: [dns.address] } });
    try {
      const directory = new MemoryDirectory();
      directory.add(good.serial, 'dev-ent');
      const trust = `${root.certPem}`;
      const m = await tg.gw.listenMtls({ host: '127.0.0.1', port: 0, key: server.keyPem, cert: server.certPem, ca: [deviceCa.certPem], chain: [root.certPem], directory });
      const ok = await mtlsConnect(m.port, trust, { certPem: `${good.certPem}\n${deviceCa.certPem}`, keyPem: good.keyPem }, `echo.test:${echo.port}`);
      assert.equal(ok.status, 200, ok.head);
      ok.socket.destroy();
      const bad = await mtlsConnect(m.port, trust, { certPem: `${forged.certPem}\n${sibling.certPem}`, keyPem: forged.keyPem }, `echo.test:${echo.port}`);
      assert.equal(bad.status, 403);
      assert.equal(reasonOf(bad.head), 'certificate_invalid');
      bad.socket.destroy();
    } finally {
      await tg.close();
      await echo.close();
      await dns.close();
    }
  });
});

describe('mTLS listener connection cap', () => {
  it('closes a socket whose handshake failed (a client that said nothing and half-closed) and gives its slot back', async () => {
    // Node reports the handshake timeout but leaves the socket open, and with allowHalfOpen the
    // client's FIN does not close it: it stayed in CLOSE-WAIT, counted against max_connections
    // (one count for every listener and thread), and enough of them locked every client out.
    const ca = await makeTestCa('timeout CA');
    const server = await ca.issueServer(['localhost', '127.0.0.1']);
    const tg = await startGateway('version: 1\ngroups: []\n', { timeouts: { header: '300ms' }, limits: { max_connections: 2 } });
    try {
      const m = await tg.gw.listenMtls({ host: '127.0.0.1', port: 0, key: server.keyPem, cert: server.certPem, ca: [ca.certPem], directory: new MemoryDirectory() });
      for (let i = 0; i < 3; i++) {
        const s = netConnect(m.port, '127.0.0.1', () => s.end());
        s.on('error', () => {});
        s.resume();
        await tg.waitFor('gateway.tls.handshake_failed', (e) => e.client_port === s.localPort);
        // The gateway closed its side: the client sees the end of the connection.
        await new Promise<void>((resolve, reject) => {
          const t = setTimeout(() => reject(new Error('the gateway left the failed handshake\'s socket open')), 3000);
          if (s.destroyed) resolve(); else s.once('close', () => { clearTimeout(t); resolve(); });
        });
      }
      for (let i = 0; i < 100 && tg.gw.counts.connections > 0; i++) await new Promise((r) => setTimeout(r, 20));
      assert.equal(tg.gw.counts.connections, 0);
      // And the plain listener still serves (max_connections is 2, three have come and gone).
      const c = await RawClient.connect(tg.port);
      c.write('CONNECT example.test:443 HTTP/1.1\r\n\r\n');
      assert.equal((await c.head()).status, 403);
      c.close();
    } finally {
      await tg.close();
    }
  });

  it('refuses connections past the per-address cap before the handshake, with a client_connection_limit decision', async () => {
    const ca = await makeTestCa('cap CA');
    const server = await ca.issueServer(['localhost', '127.0.0.1']);
    const tg = await startGateway('version: 1\ngroups: []\n', { limits: { max_connections_per_client: 2 } });
    const held: Socket[] = [];
    try {
      const m = await tg.gw.listenMtls({ host: '127.0.0.1', port: 0, key: server.keyPem, cert: server.certPem, ca: [ca.certPem], directory: new MemoryDirectory() });
      const open = () => new Promise<Socket>((resolve, reject) => { const s = netConnect(m.port, '127.0.0.1', () => resolve(s)); s.once('error', reject); held.push(s); });
      await open();
      await open(); // two handshakes in progress: the cap
      const third = await open();
      await new Promise<void>((r) => { if (third.destroyed) r(); else third.once('close', () => r()); });
      const d = await tg.waitDecision((e) => e.reason === 'client_connection_limit');
      assert.equal(d.listener, 'mtls');
      assert.equal(d.verdict, 'deny');
      assert.equal(d.status, 429);
      assert.equal(d.client_ip, '127.0.0.1');
    } finally {
      for (const s of held) s.destroy();
      await tg.close();
    }
  });
});

describe('peer certificate reading', () => {
  it('normalizes serials to lowercase hex without leading zero bytes', () => {
    assert.equal(normalizeSerial('00A1:B2'), 'a1b2');
    assert.equal(normalizeSerial('0000'), '00');
    assert.equal(normalizeSerial('ABC'), '0abc');
  });
  it('takes the device id only from a single well-formed device URI', () => {
    assert.equal(deviceIdFromSan('URI:urn:chokepoint:device:abc-1, URI:urn:chokepoint:asset:X'), 'abc-1');
    assert.equal(deviceIdFromSan('DNS:example.com'), null);
    assert.equal(deviceIdFromSan('URI:urn:chokepoint:device:a, URI:urn:chokepoint:device:b'), null);
    assert.equal(deviceIdFromSan('URI:urn:chokepoint:device:a/../b'), null);
    assert.equal(deviceIdFromSan(undefined), null);
  });
});
