/**
 * A HelloRetryRequest (RFC 8446 §4.1.4) makes the client send a second ClientHello in the
 * clear. Without a check, a tunnel allowed for one name could carry a session for another:
 * first hello names the allowed host, the second names the fronted one. Real TLS through a
 * server that forces a retry, and a scripted server for what real clients will not send.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { connect as netConnect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { connect as tlsConnect, createServer as createTlsServer, type Server as TlsServer } from 'node:tls';
import type { DecisionEvent } from '../src/events/catalogue.js';
import type { DnsServer } from './helpers/dns-server.js';
import { testDns } from './helpers/fixtures.js';
import { startGateway, type TestGateway } from './helpers/gateway.js';
import { makePki, type TestPki } from './helpers/origins.js';
import { openTunnel, readAll } from './helpers/tunnel.js';
import { buildClientHello, buildServerHello, record } from './helpers/clienthello-fixtures.js';
import { classifyServerFirst } from '../src/gateway/serverhello.js';

/** A server that answers the first bytes it gets with `reply`, and records everything. */
interface Scripted { port: number; received: Buffer[]; gotFirst: Promise<void>; answer(b: Buffer): void; close(): Promise<void> }

async function scriptedServer(): Promise<Scripted> {
  const received: Buffer[] = [];
  let sock: Socket | null = null;
  let onFirst!: () => void;
  const gotFirst = new Promise<void>((r) => { onFirst = r; });
  const server: Server = createServer((s) => {
    sock = s;
    s.on('error', () => {});
    s.on('data', (c: Buffer) => { received.push(c); onFirst(); });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return {
    port: (server.address() as AddressInfo).port,
    received,
    gotFirst,
    answer: (b) => { sock?.write(b); },
    close: () => new Promise<void>((r) => { (sock as Socket | null)?.destroy(); server.close(() => r()); }),
  };
}

const all = (bs: Buffer[]) => Buffer.concat(bs);
const alertOf = (b: Buffer): number | null => {
  const i = b.indexOf(Buffer.from([21, 3, 1, 0, 2, 2]));
  return i < 0 ? null : (b[i + 6] as number);
};
/** Waits until `cond` holds, checking on every turn of the event loop (no wall-clock bound but the test timeout). */
async function until(cond: () => boolean): Promise<void> {
  while (!cond()) await new Promise((r) => setImmediate(r));
}

let dns: DnsServer;
let pki: TestPki;
let g: TestGateway;
let retryOrigin: TlsServer;
let relay: Server;
let serverFirst: Buffer[] = [];
const open = new Set<Socket>();
const track = (s: Socket) => { open.add(s); s.on('close', () => open.delete(s)); };

before(async () => {
  dns = await testDns();
  pki = makePki(['tls.test']);
  // Accepts only P-384: a client that offers an X25519 key share (OpenSSL's default) gets a
  // HelloRetryRequest asking for P-384.
  retryOrigin = createTlsServer({ cert: pki.cert, key: pki.key, ecdhCurve: 'P-384', minVersion: 'TLSv1.3' }, (s) => {
    track(s);
    s.on('error', () => {});
    s.once('data', () => s.end('HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok'));
  });
  await new Promise<void>((r) => retryOrigin.listen(0, '127.0.0.1', () => r()));
  // A plain TCP relay in front of it records what the server sent first, to prove the retry happened.
  relay = createServer((c) => {
    const u = netConnect((retryOrigin.address() as AddressInfo).port, '127.0.0.1');
    track(c);
    track(u);
    u.on('data', (b: Buffer) => serverFirst.push(b));
    c.pipe(u).pipe(c);
    // Either side gone ends the other (a pipe whose destination closed stops reading its source).
    c.on('close', () => u.destroy());
    u.on('close', () => c.destroy());
    c.on('error', () => {});
    u.on('error', () => {});
  });
  await new Promise<void>((r) => relay.listen(0, '127.0.0.1', () => r()));
  g = await startGateway(null, { dns: { resolvers: [dns.address] }, tls: { clienthello_timeout: '300ms' } });
});
after(async () => {
  await g.close();
  for (const s of open) s.destroy();
  await new Promise((r) => relay.close(r));
  await new Promise((r) => retryOrigin.close(r));
  await dns.close();
  pki.cleanup();
});

function policy(ports: number[], mode = 'enforce'): string {
  return `version: 1
address_exceptions: [127.0.0.1/32]
groups:
  - name: servers
    sources: [127.0.0.0/8]
    mode: ${mode}
    allow:
      - host: tls.test
        ports: [${ports.join(', ')}]
        tls: required
`;
}

/**
 * Points tls.test at a fresh scripted server, opens a tunnel to it and runs `fn`; the server is
 * closed after. `decided` waits for this tunnel's decision: only events published since it
 * began count (a later server may get an earlier one's port).
 */
async function withScripted(fn: (srv: Scripted, t: Socket, decided: () => Promise<DecisionEvent>) => Promise<void>, mode = 'enforce'): Promise<void> {
  const srv = await scriptedServer();
  const since = g.events.length;
  const decided = () => g.waitDecision((e) => e.port === srv.port && g.events.indexOf(e) >= since);
  try {
    g.setPolicy(policy([srv.port], mode));
    const t = await openTunnel(g.port, `tls.test:${srv.port}`);
    assert.equal(t.status, 200);
    await fn(srv, t.socket, decided);
  } finally {
    await srv.close();
  }
}

describe('tls: a second ClientHello after HelloRetryRequest', () => {
  it('passes a real TLS 1.3 session that goes through a retry, and decides once the server answered', async () => {
    const port = (relay.address() as AddressInfo).port;
    g.setPolicy(policy([port]));
    serverFirst = [];
    const t = await openTunnel(g.port, `tls.test:${port}`);
    assert.equal(t.status, 200);
    const s = tlsConnect({ socket: t.socket, servername: 'tls.test', ca: pki.caCert });
    await new Promise<void>((r, j) => { s.once('secureConnect', r); s.once('error', j); });
    s.write('GET / HTTP/1.1\r\nhost: tls.test\r\n\r\n');
    assert.match((await readAll(s)).toString(), /ok$/);
    assert.equal(classifyServerFirst(all(serverFirst)), 'retry', 'the server asked for a retry');
    const d = await g.waitDecision((e) => e.port === port);
    assert.equal(d.verdict, 'allow');
    assert.equal(d.sni, 'tls.test');
    assert.equal(d.tls_version, '1.3');
    const c = await g.waitClosed((e) => e.id === d.id);
    assert.ok(c.bytes_down > 0 && c.bytes_up > 0);
  });

  it('refuses a second ClientHello naming another host (fronting after a retry); the server never sees it', async () => {
    await withScripted(async (srv, s, decided) => {
      s.write(buildClientHello({ sni: 'tls.test' }));
      await srv.gotFirst;
      // Decided on the server's answer, not on the first hello alone.
      const early = await Promise.race([decided().then(() => 'decided'), new Promise((r) => setImmediate(() => r('not yet')))]);
      assert.equal(early, 'not yet');
      const got: Buffer[] = [];
      s.on('data', (b: Buffer) => got.push(b));
      s.resume();
      srv.answer(Buffer.concat([buildServerHello({ retry: true }), record(20, Buffer.from([1]))]));
      await until(() => classifyServerFirst(all(got)) === 'retry');
      s.write(Buffer.concat([record(20, Buffer.from([1])), buildClientHello({ sni: 'fronted.test' })]));
      await new Promise((r) => s.once('close', r));
      assert.equal(alertOf(all(got)), 112, 'unrecognized_name alert');
      const d = await decided();
      assert.equal(d.verdict, 'deny');
      assert.equal(d.reason, 'sni_mismatch');
      assert.equal(d.sni, 'fronted.test');
      assert.match(d.detail ?? '', /second ClientHello \(after HelloRetryRequest\)/);
      const c = await g.waitClosed((e) => e.id === d.id);
      assert.equal(c.close_reason, 'refused');
      assert.ok(!all(srv.received).includes(Buffer.from('fronted.test')), 'the second hello never reached the server');
    });
  });

  it('passes a second ClientHello that repeats the host, with the CCS and 0-RTT records around it', async () => {
    await withScripted(async (srv, s, decided) => {
      const ch1 = buildClientHello({ sni: 'tls.test' });
      const early = Buffer.concat([record(20, Buffer.from([1])), record(23, Buffer.alloc(64, 3))]);
      s.write(Buffer.concat([ch1, early]));
      await srv.gotFirst;
      const got: Buffer[] = [];
      s.on('data', (b: Buffer) => got.push(b));
      s.resume();
      srv.answer(buildServerHello({ retry: true }));
      await until(() => got.length > 0);
      const ch2 = buildClientHello({ sni: 'tls.test', fragmentRecords: 3 });
      s.write(ch2.subarray(0, 10));
      s.write(ch2.subarray(10));
      const d = await decided();
      assert.equal(d.verdict, 'allow');
      assert.equal(d.reason, 'allowed');
      await until(() => all(srv.received).length === ch1.length + early.length + ch2.length);
      assert.deepEqual(all(srv.received), Buffer.concat([ch1, early, ch2]), 'every client byte reached the server, in order');
      s.destroy();
    });
  });

  it('reads the second hello of a client that was paused for sending more than 64 KiB before the retry', async () => {
    await withScripted(async (srv, s, decided) => {
      const ch1 = buildClientHello({ sni: 'tls.test' });
      // 80 kB of 0-RTT records: the gateway holds 64 KiB, then stops reading the client.
      s.write(Buffer.concat([ch1, ...Array.from({ length: 5 }, () => record(23, Buffer.alloc(16_000, 4)))]));
      await srv.gotFirst;
      srv.answer(buildServerHello({ retry: true }));
      s.write(buildClientHello({ sni: 'tls.test' }));
      const d = await decided();
      assert.equal(d.verdict, 'allow', JSON.stringify(d));
      s.destroy();
    });
  });

  it('holds what follows the first hello until the server answers, then relays it (no retry)', async () => {
    await withScripted(async (srv, s, decided) => {
      const ch1 = buildClientHello({ sni: 'tls.test' });
      const early = record(23, Buffer.alloc(32, 5));
      s.write(Buffer.concat([ch1, early]));
      await srv.gotFirst;
      assert.deepEqual(all(srv.received), ch1, 'only the hello before the server answered');
      srv.answer(buildServerHello());
      const d = await decided();
      assert.equal(d.verdict, 'allow');
      await until(() => all(srv.received).length === ch1.length + early.length);
      s.destroy();
    });
  });

  it('refuses garbage instead of a second hello (not_tls) and a missing one (clienthello_timeout)', async () => {
    for (const [send, reason] of [[Buffer.from([22, 3, 3, 0, 4, 9, 9, 9, 9]), 'not_tls'], [null, 'clienthello_timeout']] as const) {
      await withScripted(async (srv, s, decided) => {
        s.write(buildClientHello({ sni: 'tls.test' }));
        await srv.gotFirst;
        srv.answer(buildServerHello({ retry: true }));
        if (send) s.write(send);
        const got = await readAll(s);
        assert.notEqual(alertOf(got), null);
        const d = await decided();
        assert.equal(d.verdict, 'deny');
        assert.equal(d.reason, reason);
      });
    }
  });

  it('refuses a second ClientHello cut short by the client\'s FIN (not_tls), and one with ECH (ech_not_allowed)', async () => {
    const cases = [
      [buildClientHello({ sni: 'tls.test' }).subarray(0, 40), 'not_tls', /client closed before a complete second ClientHello/, true],
      [buildClientHello({ sni: 'tls.test', ech: true }), 'ech_not_allowed', /second ClientHello/, false],
    ] as const;
    for (const [second, reason, detail, fin] of cases) {
      await withScripted(async (srv, s, decided) => {
        const first = buildClientHello({ sni: 'tls.test' });
        s.write(first);
        await srv.gotFirst;
        srv.answer(buildServerHello({ retry: true }));
        if (fin) s.end(second);
        else s.write(second);
        const got = await readAll(s);
        assert.notEqual(alertOf(got), null);
        const d = await decided();
        assert.equal(d.verdict, 'deny');
        assert.equal(d.reason, reason);
        assert.match(d.detail ?? '', detail);
        assert.deepEqual(all(srv.received), first, 'nothing of the second hello reached the server');
      });
    }
  });

  it('an alert before the second ClientHello does not wave it through (a server may ignore a warning alert)', async () => {
    await withScripted(async (srv, s, decided) => {
      s.write(buildClientHello({ sni: 'tls.test' }));
      await srv.gotFirst;
      srv.answer(buildServerHello({ retry: true }));
      // Warning user_canceled, then a hello for another host.
      s.write(Buffer.concat([record(21, Buffer.from([1, 90])), buildClientHello({ sni: 'fronted.test' })]));
      const got = await readAll(s);
      assert.equal(alertOf(got), 112);
      const d = await decided();
      assert.equal(d.reason, 'sni_mismatch');
      assert.ok(!all(srv.received).includes(Buffer.from('fronted.test')));
    });
  });

  it('a client that gives up after the retry (an alert, then its FIN) is recorded as allowed, nothing refused', async () => {
    // Its FIN may reach the gateway after the retry or before it: the same outcome either way.
    for (const finFirst of [false, true]) {
      await withScripted(async (srv, s, decided) => {
        s.write(buildClientHello({ sni: 'tls.test' }));
        await srv.gotFirst;
        if (finFirst) {
          s.end(record(21, Buffer.from([2, 40])));
          await until(() => s.writableFinished);
        }
        srv.answer(buildServerHello({ retry: true }));
        if (!finFirst) s.end(record(21, Buffer.from([2, 40])));
        const d = await decided();
        assert.equal(d.verdict, 'allow', `FIN first: ${finFirst}`);
        assert.equal(d.reason, 'allowed');
        await until(() => all(srv.received).includes(Buffer.from([21, 3, 3, 0, 2, 2, 40])));
        s.destroy();
      });
    }
  });

  it('refuses a client that streams records after the retry instead of a second ClientHello, without holding them all', async () => {
    await withScripted(async (srv, s, decided) => {
      s.write(buildClientHello({ sni: 'tls.test' }));
      await srv.gotFirst;
      srv.answer(buildServerHello({ retry: true }));
      const got: Buffer[] = [];
      s.on('data', (b: Buffer) => got.push(b));
      s.on('error', () => {});
      s.resume();
      const early = record(23, Buffer.alloc(16_000, 1));
      // 320 kB of "early data", more than may pass before the second hello.
      for (let i = 0; i < 20 && !s.destroyed; i++) s.write(early);
      await new Promise((r) => s.once('close', r));
      const d = await decided();
      assert.equal(d.verdict, 'deny');
      assert.equal(d.reason, 'not_tls');
      assert.match(d.detail ?? '', /bytes before the second ClientHello/);
      assert.ok(all(srv.received).length < 300_000, 'no more than the bound reached the server');
      assert.notEqual(alertOf(all(got)), null);
    });
  });

  it('report mode records a failing hello before or after a retry and lets the tunnel through', async () => {
    // [first hello, second hello, the detail]: the first failure is the reason; in report mode
    // the decision still waits for the server, so a second hello is checked even after a failed
    // first one, and its own failure (ECH here) is named in the detail.
    const cases = [
      [{ sni: 'tls.test' }, { sni: 'fronted.test' }, /second ClientHello \(after HelloRetryRequest\): SNI fronted\.test/],
      [{ sni: 'fronted.test' }, { sni: 'tls.test', ech: true }, /second ClientHello \(after HelloRetryRequest\)/],
    ] as const;
    for (const [first, second, detail] of cases) {
      await withScripted(async (srv, s, decided) => {
        s.write(buildClientHello(first));
        await srv.gotFirst;
        srv.answer(buildServerHello({ retry: true }));
        const hello2 = buildClientHello(second);
        s.write(hello2);
        const d = await decided();
        assert.equal(d.verdict, 'allow');
        assert.equal(d.reason, 'sni_mismatch');
        assert.match(d.detail ?? '', detail);
        await until(() => all(srv.received).includes(hello2)); // let through to the server
        s.destroy();
      }, 'report');
    }
  });

    it('refuses a server whose first handshake records cannot be read (upstream_bad_response)', async () => {
    await withScripted(async (srv, s, decided) => {
      s.write(buildClientHello({ sni: 'tls.test' }));
      await srv.gotFirst;
      srv.answer(Buffer.from([22, 3, 3, 0, 0]));
      await readAll(s);
      const d = await decided();
      assert.equal(d.verdict, 'deny');
      assert.equal(d.reason, 'upstream_bad_response');
    });
  });
});
