/**
 * The ClientHello checks on `tls: required` rules (DESIGN §2 step 5): real TLS clients
 * through the tunnel, and crafted ClientHellos for what real clients will not send.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type AddressInfo } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import type { DnsServer } from './helpers/dns-server.js';
import { basePolicy, testDns } from './helpers/fixtures.js';
import { startGateway, type TestGateway } from './helpers/gateway.js';
import { makePki, startEchoOrigin, startTlsOrigin, type Origin, type TestPki } from './helpers/origins.js';
import { openTunnel, readAll } from './helpers/tunnel.js';
import { buildClientHello } from './helpers/clienthello-fixtures.js';

let dns: DnsServer;
let pki: TestPki;
let tlsOrigin: Origin<import('node:tls').Server>;
let echo: Origin;
let g: TestGateway;
let P: { echo: number; tls: number; http: number };

before(async () => {
  dns = await testDns();
  pki = makePki(['tls.test', 'other.test']);
  tlsOrigin = await startTlsOrigin(pki);
  echo = await startEchoOrigin();
  P = { echo: echo.port, tls: tlsOrigin.port, http: 1 };
  g = await startGateway(basePolicy(P), { dns: { resolvers: [dns.address] }, tls: { clienthello_timeout: '300ms' } });
});
after(async () => {
  await g.close();
  await tlsOrigin.close();
  await echo.close();
  await dns.close();
  pki.cleanup();
});

/** Alert record: content type 21, level 2 (fatal), then the description. */
function alertOf(b: Buffer): number | null {
  return b.length >= 7 && b[0] === 21 && b[5] === 2 ? (b[6] as number) : null;
}

describe('tls: required', () => {
  it('passes a real TLS session end to end when SNI names the CONNECT host', async () => {
    const t = await openTunnel(g.port, `tls.test:${P.tls}`);
    assert.equal(t.status, 200);
    const s = tlsConnect({ socket: t.socket, servername: 'tls.test', ca: pki.caCert });
    await new Promise<void>((r, j) => { s.once('secureConnect', r); s.once('error', j); });
    s.write('GET / HTTP/1.1\r\nhost: tls.test\r\n\r\n');
    const body = (await readAll(s)).toString();
    assert.match(body, /"sni":"tls.test"/);
    const d = await g.waitDecision((e) => e.host === 'tls.test' && e.verdict === 'allow');
    assert.equal(d.sni, 'tls.test');
    assert.equal(d.tls_version, '1.3');
  });

  it('refuses an SNI naming another host (domain fronting) with unrecognized_name and relays nothing', async () => {
    const before = tlsOrigin.sockets.size;
    const t = await openTunnel(g.port, `tls.test:${P.tls}`);
    assert.equal(t.status, 200);
    t.socket.write(buildClientHello({ sni: 'other.test' }));
    const got = await readAll(t.socket);
    assert.equal(alertOf(got), 112);
    const d = await g.waitDecision((e) => e.host === 'tls.test' && e.reason === 'sni_mismatch');
    assert.equal(d.verdict, 'deny');
    assert.equal(d.sni, 'other.test');
    assert.ok(tlsOrigin.sockets.size <= before, 'no session reached the origin');
  });

  it('refuses a ClientHello without SNI', async () => {
    const t = await openTunnel(g.port, `tls.test:${P.tls}`);
    t.socket.write(buildClientHello({ sni: null }));
    assert.equal(alertOf(await readAll(t.socket)), 112);
    const d = await g.waitDecision((e) => e.reason === 'sni_mismatch' && e.sni === null);
    assert.equal(d.verdict, 'deny');
  });

  it('refuses plain text with not_tls', async () => {
    const t = await openTunnel(g.port, `tls.test:${P.tls}`);
    t.socket.write('GET / HTTP/1.1\r\nhost: tls.test\r\n\r\n');
    assert.equal(alertOf(await readAll(t.socket)), 49);
    await g.waitDecision((e) => e.reason === 'not_tls' && e.host === 'tls.test');
  });

  it('refuses TLS below the minimum with protocol_version', async () => {
    const t = await openTunnel(g.port, `tls.test:${P.tls}`);
    t.socket.write(buildClientHello({ sni: 'tls.test', versions: [0x0302, 0x0301], legacyVersion: 0x0302 }));
    assert.equal(alertOf(await readAll(t.socket)), 70);
    const d = await g.waitDecision((e) => e.reason === 'tls_version');
    assert.equal(d.tls_version, '1.1');
  });

  it('refuses an offered Encrypted Client Hello', async () => {
    const t = await openTunnel(g.port, `tls.test:${P.tls}`);
    t.socket.write(buildClientHello({ sni: 'tls.test', ech: true }));
    assert.equal(alertOf(await readAll(t.socket)), 49);
    await g.waitDecision((e) => e.reason === 'ech_not_allowed');
  });

  it('reassembles a ClientHello split across writes and TLS records', async () => {
    const t = await openTunnel(g.port, `tls.test:${P.tls}`);
    const port = t.socket.localPort;
    const hello = buildClientHello({ sni: 'tls.test', fragmentRecords: 3 });
    for (let i = 0; i < hello.length; i += 7) {
      t.socket.write(hello.subarray(i, i + 7));
      await new Promise((r) => setImmediate(r));
    }
    // The origin is a real TLS server: it answers our crafted hello with a ServerHello
    // (or an alert of its own) — either way bytes came back from upstream, not from us.
    await g.waitDecision((e) => e.host === 'tls.test' && e.verdict === 'allow' && e.client_port === port);
    t.socket.destroy();
  });

  it('refuses with clienthello_timeout when no ClientHello arrives', async () => {
    const t = await openTunnel(g.port, `tls.test:${P.tls}`);
    const port = t.socket.localPort;
    t.socket.write(Buffer.from([0x16, 0x03, 0x01])); // a record header, then silence
    const got = await readAll(t.socket);
    assert.equal(alertOf(got), 49);
    await g.waitDecision((e) => e.reason === 'clienthello_timeout' && e.client_port === port);
  });

  it('survives garbage after CONNECT without crashing', async () => {
    for (let i = 0; i < 20; i++) {
      const t = await openTunnel(g.port, `tls.test:${P.tls}`);
      const junk = Buffer.alloc(64 + i * 13);
      for (let j = 0; j < junk.length; j++) junk[j] = (j * 131 + i * 7) & 0xff;
      junk[0] = 0x16;
      junk[1] = 0x03;
      t.socket.write(junk);
      await readAll(t.socket);
    }
    const t = await openTunnel(g.port, `tls.test:${P.tls}`);
    assert.equal(t.status, 200, 'the gateway still serves');
    t.socket.destroy();
  });

  it('notices an upstream that closes while the ClientHello is awaited: not_tls (upstream_closed), at once', async () => {
    // The upstream is read from the moment it connects: one that accepts and closes must not
    // hold the client (and a dead socket) until the ClientHello timer, here a minute.
    const closer = createServer((s) => { s.on('error', () => {}); s.end(); });
    await new Promise<void>((r) => closer.listen(0, '127.0.0.1', () => r()));
    const port = (closer.address() as AddressInfo).port;
    const g2 = await startGateway(basePolicy({ ...P, tls: port }), { dns: { resolvers: [dns.address] }, tls: { clienthello_timeout: '60s' } });
    try {
      const t = await openTunnel(g2.port, `tls.test:${port}`);
      assert.equal(t.status, 200);
      const d = await g2.waitDecision((e) => e.host === 'tls.test', 10_000);
      assert.equal(d.verdict, 'deny');
      assert.equal(d.reason, 'not_tls');
      assert.match(String(d.detail), /upstream_closed/);
      await new Promise<void>((r) => { if (t.socket.destroyed) r(); else t.socket.once('close', () => r()); });
    } finally {
      await g2.close();
      closer.close();
    }
  });
});

/** Runs `fn` against an echo origin (greeting first when given) reached as echo.test on a `tls: optional` rule. */
async function withOptionalOrigin(greeting: string | undefined, fn: (port: number) => Promise<void>): Promise<void> {
  const origin = await startEchoOrigin(greeting === undefined ? {} : { greeting });
  g.setPolicy(basePolicy(P, `      - host: echo.test\n        ports: [${origin.port}]\n        tls: optional\n`));
  try {
    await fn(origin.port);
  } finally {
    g.setPolicy(basePolicy(P));
    await origin.close();
  }
}

describe('tls: none and optional', () => {
  it('checks the ClientHello of a client that stays silent past the timer on an optional rule (waiting it out does not skip the check)', async () => {
    // The origin speaks only when spoken to, like TLS servers.
    await withOptionalOrigin(undefined, async (quietPort) => {
      // Fronting: silent past clienthello_timeout (300 ms here), then a hello for another name.
      const t = await openTunnel(g.port, `echo.test:${quietPort}`);
      const port = t.socket.localPort;
      await new Promise((r) => setTimeout(r, 700));
      t.socket.write(buildClientHello({ sni: 'other.test' }));
      const got = await readAll(t.socket);
      assert.ok(got.includes(Buffer.from([21, 3])), 'refused with an alert');
      const d = await g.waitDecision((e) => e.client_port === port);
      assert.equal(d.verdict, 'deny');
      assert.equal(d.reason, 'sni_mismatch');
      assert.equal(d.sni, 'other.test');
      // The right name after the same wait goes through, and the decision names it.
      const ok = await openTunnel(g.port, `echo.test:${quietPort}`);
      const okPort = ok.socket.localPort;
      await new Promise((r) => setTimeout(r, 700));
      ok.socket.write(buildClientHello({ sni: 'echo.test' }));
      const allowed = await g.waitDecision((e) => e.client_port === okPort);
      assert.equal(allowed.verdict, 'allow');
      assert.equal(allowed.sni, 'echo.test');
      ok.socket.destroy();
      // A client that never says anything and leaves: allowed, nothing to check.
      const silent = await openTunnel(g.port, `echo.test:${quietPort}`);
      const silentPort = silent.socket.localPort;
      await new Promise((r) => setTimeout(r, 500));
      silent.socket.end();
      const left = await g.waitDecision((e) => e.client_port === silentPort);
      assert.equal(left.verdict, 'allow');
      assert.equal(left.sni, null);
    });
  });

  it('decides a server-first tunnel once the client has stayed silent past the timer, while it is still open', async () => {
    await withOptionalOrigin('220 smtp.test ESMTP\r\n', async (bannerPort) => {
      const t = await openTunnel(g.port, `echo.test:${bannerPort}`);
      const port = t.socket.localPort;
      t.socket.resume(); // reads the banner, says nothing
      // Decided (and so counted, and cut when idle) without waiting for the client to speak or leave.
      const d = await g.waitDecision((e) => e.client_port === port);
      assert.equal(d.verdict, 'allow');
      assert.equal(t.socket.destroyed, false, 'decided while the tunnel is open');
      t.socket.destroy();
    });
  });

  it('lets a server speak first on an optional rule and still checks a ClientHello', async () => {
    const ssh = await startEchoOrigin({ greeting: 'SSH-2.0-test\r\n' });
    g.setPolicy(basePolicy(P, `      - host: echo.test\n        ports: [${ssh.port}]\n        tls: optional\n`));
    try {
      const t = await openTunnel(g.port, `echo.test:${ssh.port}`);
      assert.equal(t.status, 200);
      const next = () => new Promise<string>((r) => {
        t.socket.once('data', (c: Buffer) => { t.socket.pause(); r(c.toString()); });
        t.socket.resume();
      });
      const greeting = await next();
      assert.equal(greeting, 'SSH-2.0-test\r\n');
      t.socket.write('SSH-2.0-client\r\n');
      const echoed = await next();
      assert.equal(echoed, 'SSH-2.0-client\r\n');
      t.socket.destroy();

      const t2 = await openTunnel(g.port, `echo.test:${ssh.port}`);
      t2.socket.write(buildClientHello({ sni: 'other.test' }));
      const got = await readAll(t2.socket);
      assert.ok(got.includes(Buffer.from([21, 3])), 'an alert follows the greeting');
      const d = await g.waitDecision((e) => e.reason === 'sni_mismatch' && e.port === ssh.port);
      // What the server sent before the refusal is on record, not hidden behind the deny.
      const closed = await g.waitClosed((e) => e.id === d.id);
      assert.equal(closed.close_reason, 'refused');
      assert.equal(closed.bytes_down, 'SSH-2.0-test\r\n'.length);
      assert.equal(closed.bytes_up, 0, 'nothing of the client\'s was relayed');
    } finally {
      g.setPolicy(basePolicy(P));
      await ssh.close();
    }
  });
});
