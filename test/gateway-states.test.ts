/**
 * Who is asking and what state the gateway is in: no policy, unknown clients, report mode,
 * exceptions in the decision path, limits, timeouts and draining.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { connect as netConnect, type Socket } from 'node:net';
import type { DnsServer } from './helpers/dns-server.js';
import { basePolicy, testDns } from './helpers/fixtures.js';
import { startDnsServer } from './helpers/dns-server.js';
import { RawClient, compile, connectStatus as connect, startGateway } from './helpers/gateway.js';
import { startEchoOrigin, startFullBacklog, type Origin } from './helpers/origins.js';
import { validateEvent } from '../src/events/schemas.js';
import type { CompiledPolicy } from '../src/policy/types.js';
import { parseConfig } from '../src/config/load.js';
import { EventBus } from '../src/events/bus.js';
import { silentLogger } from '../src/gateway/logger.js';
import { Gateway } from '../src/gateway/server.js';

let dns: DnsServer;
let echo: Origin;
let P: { echo: number; tls: number; http: number };

before(async () => {
  dns = await testDns();
  echo = await startEchoOrigin();
  P = { echo: echo.port, tls: 1, http: 2 };
});
after(async () => {
  await echo.close();
  await dns.close();
});

describe('gateway states', () => {
  it('denies everything with no_policy when no valid policy is loaded', async () => {
    const g = await startGateway(null, { dns: { resolvers: [dns.address] } });
    try {
      const r = await connect(g.port, `echo.test:${P.echo}`);
      assert.equal(r.status, 403);
      assert.equal(r.reason, 'no_policy');
    } finally {
      await g.close();
    }
  });

  it('denies a client whose address is in no group with unauthenticated', async () => {
    const g = await startGateway(basePolicy(P).replace('sources: [127.0.0.0/8]', 'sources: [10.0.0.0/8]'), { dns: { resolvers: [dns.address] } });
    try {
      const r = await connect(g.port, `echo.test:${P.echo}`);
      assert.equal(r.status, 403);
      assert.equal(r.reason, 'unauthenticated');
      const d = await g.waitDecision();
      assert.equal(d.group, null);
    } finally {
      await g.close();
    }
  });

  it('lets a would-be deny through in report mode and records the reason', async () => {
    const g = await startGateway(basePolicy(P).replace('  - name: servers\n', '  - name: servers\n    mode: report\n'), { dns: { resolvers: [dns.address] } });
    try {
      // other.test is allowed on the echo port; x.evil.test is globally denied but resolves to loopback.
      const r = await connect(g.port, `x.evil.test:${P.echo}`);
      assert.equal(r.status, 200);
      r.c.close();
      const d = await g.waitDecision((e) => e.host === 'x.evil.test');
      assert.equal(d.verdict, 'allow');
      assert.equal(d.reason, 'denied_by_rule');
      assert.equal(d.mode, 'report');
      // Address checks are never report-only: they protect the gateway's own network.
      const r2 = await connect(g.port, `metadata.test:${P.echo}`);
      assert.equal(r2.status, 403);
      assert.equal(r2.reason, 'address_denied');
    } finally {
      await g.close();
    }
  });

  it('fails closed with internal_error when the policy engine throws', async () => {
    const good = compile(basePolicy(P));
    const broken: CompiledPolicy = {
      ...good,
      groups: good.groups,
      groupForSource: (ip) => good.groupForSource(ip),
      checkAddress: (ip, self) => good.checkAddress(ip, self),
      decide: () => { throw new Error('boom: secret internal detail'); },
    };
    const g = await startGateway(null, { dns: { resolvers: [dns.address] } });
    g.gw.setPolicy(broken);
    try {
      const c = await RawClient.connect(g.port);
      c.write(`CONNECT echo.test:${P.echo} HTTP/1.1\r\n\r\n`);
      const h = await c.head();
      assert.equal(h.status, 500);
      assert.equal(h.headers['x-chokepoint-reason'], 'internal_error');
      assert.doesNotMatch(h.body, /boom|secret/);
    } finally {
      await g.close();
    }
  });

  it('refuses with client_connection_limit (429) past the connections one address may hold, fewer for an address in no group', async () => {
    // Without a cap per address, one source could hold every slot of max_connections with idle
    // connections (reconnecting as the head deadline cuts them) and lock out every other client.
    const policy = basePolicy(P).replace('sources: [127.0.0.0/8]', 'sources: [127.0.0.1/32]');
    const g = await startGateway(policy, { dns: { resolvers: [dns.address] }, limits: { max_connections_per_client: 3, max_connections_unauthenticated: 2 } });
    const open: Socket[] = [];
    const from = (localAddress: string) => new Promise<Socket>((resolve, reject) => {
      const s = netConnect({ port: g.port, host: '127.0.0.1', localAddress }, () => resolve(s));
      s.once('error', reject);
      open.push(s);
    });
    const answer = (s: Socket) => new Promise<string>((resolve) => { let t = ''; s.on('data', (d: Buffer) => { t += d.toString('latin1'); }); s.on('close', () => resolve(t)); });
    try {
      const held = await Promise.all([1, 2, 3].map(() => from('127.0.0.1')));
      const fourth = await answer(await from('127.0.0.1'));
      assert.match(fourth, /^HTTP\/1\.1 429 /);
      assert.match(fourth, /x-chokepoint-reason: client_connection_limit/i);
      const d = await g.waitDecision((e) => e.reason === 'client_connection_limit');
      assert.equal(d.client_ip, '127.0.0.1');
      assert.equal(d.verdict, 'deny');
      assert.equal(d.group, 'servers');
      (held[0] as Socket).destroy();
      let again = await connect(g.port, `echo.test:${P.echo}`);
      for (let i = 0; i < 50 && again.status === 429; i++) {
        await new Promise((r) => setTimeout(r, 20)); // the gateway sees the close a moment later
        again = await connect(g.port, `echo.test:${P.echo}`);
      }
      assert.equal(again.status, 200, 'a slot frees when a connection closes');
      again.c.close();
      // 127.0.0.9 is in no group: two connections, the third refused, whatever it would ask.
      await from('127.0.0.9');
      await from('127.0.0.9');
      const third = await answer(await from('127.0.0.9'));
      assert.match(third, /^HTTP\/1\.1 429 [^]*client_connection_limit/i);
      const stranger = await g.waitDecision((e) => e.reason === 'client_connection_limit' && e.client_ip === '127.0.0.9');
      assert.equal(stranger.group, null);
      // A refused client that keeps sending a byte now and then is still closed: the linger
      // after a refusal is a hard deadline, not an idle timeout it could keep resetting.
      const stubborn = await from('127.0.0.9');
      let closedAt = 0;
      stubborn.on('close', () => { closedAt = Date.now(); });
      stubborn.on('error', () => {});
      const start = Date.now();
      const drip = setInterval(() => { if (!stubborn.destroyed) stubborn.write('x'); }, 200);
      try {
        while (closedAt === 0 && Date.now() - start < 15_000) await new Promise((r) => setTimeout(r, 100));
      } finally {
        clearInterval(drip);
      }
      assert.notEqual(closedAt, 0, 'the gateway closed it despite the trickle');
    } finally {
      for (const s of open) s.destroy();
      await g.close();
    }
  });

  it('a tunnel cut while it is still dialing (lifetime sweep, shutdown) does not take the process down', async (t) => {
    // An origin whose accept queue is full: the kernel answers no SYN, so the dial hangs.
    const py = spawn('python3', ['-c', [
      'import socket, sys, time',
      "l = socket.socket(); l.bind(('127.0.0.1', 0)); l.listen(0)",
      'port = l.getsockname()[1]; fill = []',
      'for i in range(3):',
      '    c = socket.socket(); c.setblocking(False)',
      '    try: c.connect(("127.0.0.1", port))',
      '    except BlockingIOError: pass',
      '    fill.append(c)',
      'print(port, flush=True)',
      'time.sleep(60)',
    ].join('\n')], { stdio: ['ignore', 'pipe', 'ignore'] });
    const port = await new Promise<number>((resolve) => { py.stdout.once('data', (d: Buffer) => resolve(Number(d.toString().trim()))); py.once('error', () => resolve(0)); });
    if (!port) return t.skip('needs python3');
    const g = await startGateway(basePolicy({ ...P, echo: port }), { dns: { resolvers: [dns.address] }, timeouts: { connect: '8s', lifetime: '1s' } });
    try {
      const c = await RawClient.connect(g.port);
      c.write(`CONNECT echo.test:${port} HTTP/1.1\r\n\r\n`);
      // The sweeper cuts it after its 1 s lifetime, while the dial still waits.
      await c.waitClosed();
      const ok = await connect(g.port, `http.test:${P.http}`);
      assert.notEqual(ok.status, 0, 'the gateway still answers');
      ok.c.close();
      // Shutdown reaches another dialing tunnel the same way.
      const c2 = await RawClient.connect(g.port);
      c2.write(`CONNECT echo.test:${port} HTTP/1.1\r\n\r\n`);
      await new Promise((r) => setTimeout(r, 200));
      g.gw.destroy();
      await c2.waitClosed();
    } finally {
      py.kill();
      await g.close();
    }
  });

  it('refuses with client_tunnel_limit and tunnel_limit (429) when limits are reached', async () => {
    const g = await startGateway(basePolicy(P), { dns: { resolvers: [dns.address] }, limits: { max_tunnels_per_client: 2, max_tunnels: 3 } });
    try {
      const a = await connect(g.port, `echo.test:${P.echo}`);
      const b = await connect(g.port, `echo.test:${P.echo}`);
      assert.equal(a.status, 200);
      assert.equal(b.status, 200);
      const c = await connect(g.port, `echo.test:${P.echo}`);
      assert.equal(c.status, 429);
      assert.equal(c.reason, 'client_tunnel_limit');
      a.c.close();
      await g.waitClosed();
      const d = await connect(g.port, `echo.test:${P.echo}`);
      assert.equal(d.status, 200, 'the slot is released when a tunnel closes');
      d.c.close();
      b.c.close();
    } finally {
      await g.close();
    }
    const g2 = await startGateway(basePolicy(P), { dns: { resolvers: [dns.address] }, limits: { max_tunnels: 1 } });
    try {
      const a = await connect(g2.port, `echo.test:${P.echo}`);
      assert.equal(a.status, 200);
      const b = await connect(g2.port, `echo.test:${P.echo}`);
      assert.equal(b.status, 429);
      assert.equal(b.reason, 'tunnel_limit');
      a.c.close();
    } finally {
      await g2.close();
    }
  });

  it('past max_connections (one count for every listener) a connection is closed unanswered, and the log says so once', async () => {
    const r = parseConfig('limits:\n  max_connections: 2\n');
    assert.ok(r.ok);
    const logged: string[] = [];
    const gw = new Gateway({ config: r.config, bus: new EventBus(), logger: { ...silentLogger, error: (_o, msg) => { logged.push(msg ?? ''); } }, policy: compile(basePolicy(P)) });
    const { port } = await gw.listen('127.0.0.1', 0);
    const held: Socket[] = [];
    const open = () => new Promise<Socket>((resolve, reject) => { const s = netConnect(port, '127.0.0.1', () => resolve(s)); s.once('error', reject); held.push(s); });
    const closedUnanswered = (s: Socket) => new Promise<string>((resolve) => { let t = ''; s.on('data', (d: Buffer) => { t += d.toString(); }); s.on('error', () => {}); s.on('close', () => resolve(t)); });
    try {
      await open();
      await open();
      for (let i = 0; i < 50 && gw.counts.connections < 2; i++) await new Promise((res) => setTimeout(res, 10));
      for (let i = 0; i < 2; i++) {
        const over = await open();
        over.write(`CONNECT echo.test:${P.echo} HTTP/1.1\r\n\r\n`);
        assert.equal(await closedUnanswered(over), '');
      }
      assert.equal(logged.filter((m) => /max_connections reached/.test(m)).length, 1);
      assert.equal(gw.counts.connections, 2);
      // A slot frees when a held connection closes.
      (held[0] as Socket).destroy();
      for (let i = 0; i < 50 && gw.counts.connections > 1; i++) await new Promise((res) => setTimeout(res, 10));
      const again = await connect(port, `echo.test:${P.echo}`);
      assert.notEqual(again.status, 0);
      again.c.close();
    } finally {
      for (const s of held) s.destroy();
      gw.destroy();
    }
  });

  it('a request waiting for DNS when the policy changes is decided again under the new policy', async () => {
    // Without this, a change reported as loaded still let through every request that was
    // waiting for a slow resolver (up to dns.timeout), decided under the policy it removed.
    const slow = await startDnsServer({ 'slow.test': ['127.0.0.1'] });
    slow.delay('slow.test', 600);
    const allow = (host: string, exceptions: string) => `version: 1\naddress_exceptions: [${exceptions}]\ngroups:\n  - name: servers\n    sources: [127.0.0.0/8]\n    allow:\n      - host: ${host}\n        ports: [${P.echo}]\n        tls: none\n`;
    const g = await startGateway(allow('slow.test', '127.0.0.1/32'), { dns: { resolvers: [slow.address] } });
    try {
      const cases = [
        { next: allow('other.test', '127.0.0.1/32'), reason: 'no_rule_matched' },
        { next: allow('slow.test', ''), reason: 'address_denied' }, // the exception was taken away
      ];
      for (const c of cases) {
        g.setPolicy(allow('slow.test', '127.0.0.1/32'));
        g.gw.resolver.clear(); // each case waits for the slow answer
        const pending = connect(g.port, `slow.test:${P.echo}`);
        await new Promise((r) => setTimeout(r, 150)); // decided (allowed), now waiting for DNS
        g.setPolicy(c.next);
        const r = await pending;
        r.c.close();
        assert.equal(r.status, 403);
        assert.equal(r.reason, c.reason);
      }
    } finally {
      await g.close();
      await slow.close();
    }
  });

  it('answers 504 connect_timeout when the destination never accepts', async () => {
    const { port, close } = await startFullBacklog();
    try {
      const g = await startGateway(basePolicy({ ...P, echo: port }), { dns: { resolvers: [dns.address] }, timeouts: { connect: '300ms' } });
      try {
        const r = await connect(g.port, `echo.test:${port}`);
        assert.equal(r.status, 504);
        assert.equal(r.reason, 'connect_timeout');
      } finally {
        await g.close();
      }
    } finally {
      close();
    }
  });

  it('a shutdown abandons the dials in flight and records each before close() resolves (deny shutting_down)', async () => {
    // A dial that never completes (SYNs dropped): without abandoning it, close() resolved, the
    // process exited, and the admitted CONNECT and GET were never recorded at all.
    const { port, close } = await startFullBacklog();
    try {
      const g = await startGateway(basePolicy({ ...P, echo: port }), { dns: { resolvers: [dns.address] }, timeouts: { connect: '60s' } });
      try {
        const c1 = await RawClient.connect(g.port);
        c1.write(`CONNECT echo.test:${port} HTTP/1.1\r\nHost: echo.test:${port}\r\n\r\n`);
        const c2 = await RawClient.connect(g.port);
        c2.write(`GET http://echo.test:${port}/ HTTP/1.1\r\nHost: echo.test:${port}\r\n\r\n`);
        await new Promise((r) => setTimeout(r, 300)); // both admitted and dialling
        assert.equal(g.decisions().filter((d) => d.port === port).length, 0);
        await g.gw.close(0);
        const ds = g.decisions().filter((d) => d.port === port).map((d) => `${d.method} ${d.verdict} ${d.reason}`).sort();
        assert.deepEqual(ds, ['CONNECT deny shutting_down', 'GET deny shutting_down']);
        c1.close();
        c2.close();
      } finally {
        await g.close();
      }
    } finally {
      close();
    }
  });

  it('cuts an idle tunnel after the idle timeout', async () => {
    const g = await startGateway(basePolicy(P), { dns: { resolvers: [dns.address] }, timeouts: { idle: '1s' } });
    try {
      const r = await connect(g.port, `echo.test:${P.echo}`);
      assert.equal(r.status, 200);
      await r.c.waitClosed(4000);
      const closed = await g.waitClosed();
      assert.equal(closed.close_reason, 'idle_timeout');
    } finally {
      await g.close();
    }
  });

  it('a long tunnel reports its byte counts while open (gateway.tunnel.progress), then closes as usual', async () => {
    const g = await startGateway(basePolicy(P), { dns: { resolvers: [dns.address] }, timeouts: { progress: '1s' } });
    try {
      const r = await connect(g.port, `echo.test:${P.echo}`);
      const decision = await g.waitDecision((d) => d.verdict === 'allow');
      r.c.write('x'.repeat(1000));
      const progress = () => g.events.filter((e) => e.type === 'gateway.tunnel.progress');
      const deadline = Date.now() + 5000;
      while (progress().length < 2 && Date.now() < deadline) {
        r.c.write('y'.repeat(100));
        await new Promise((res) => setTimeout(res, 100));
      }
      const [p1, p2] = progress();
      assert.ok(p1 && p2, 'two reports within about two seconds');
      for (const p of [p1, p2]) {
        assert.equal(p.type === 'gateway.tunnel.progress' && p.id, decision.id, 'shares the decision id');
        assert.deepEqual(validateEvent(p), []);
      }
      if (p1.type !== 'gateway.tunnel.progress' || p2.type !== 'gateway.tunnel.progress') throw new Error('unreachable');
      assert.ok(p1.bytes_up >= 1000 && p2.bytes_up > p1.bytes_up, 'cumulative and growing');
      assert.ok(p1.bytes_down >= 1000, 'the echo came back');
      assert.ok(p2.duration_ms >= p1.duration_ms + 500, 'about a second apart');
      r.c.socket.end();
      const closed = await g.waitClosed();
      assert.equal(closed.id, decision.id);
      assert.ok(closed.bytes_up >= p2.bytes_up);
    } finally {
      await g.close();
    }
  });

  it('cuts a tunnel at its maximum lifetime even while it is busy', async () => {
    const g = await startGateway(basePolicy(P), { dns: { resolvers: [dns.address] }, timeouts: { lifetime: '1s' } });
    try {
      const r = await connect(g.port, `echo.test:${P.echo}`);
      const t = setInterval(() => r.c.write('x'), 50);
      await r.c.waitClosed(5000);
      clearInterval(t);
      const closed = await g.waitClosed();
      assert.equal(closed.close_reason, 'lifetime_exceeded');
    } finally {
      await g.close();
    }
  });

  it('answers shutting_down to new requests on open connections while draining, and lets tunnels finish', async () => {
    const g = await startGateway(basePolicy(P), { dns: { resolvers: [dns.address] } });
    const r = await connect(g.port, `echo.test:${P.echo}`);
    assert.equal(r.status, 200);
    const idle = await RawClient.connect(g.port);
    const partial = await RawClient.connect(g.port);
    partial.write(`CONNECT echo.test:${P.echo} HTTP/1.1\r\n`);
    await new Promise((res) => setTimeout(res, 50));
    const closing = g.gw.close(5000);
    partial.write('\r\n');
    const ph = await partial.head();
    assert.equal(ph.status, 503);
    assert.equal(ph.headers['x-chokepoint-reason'], 'shutting_down');
    await idle.waitClosed(2000);
    assert.equal(idle.closed, true, 'an idle connection is closed at once');
    r.c.data = Buffer.alloc(0);
    r.c.write('still-here');
    await r.c.until((x) => x.text().includes('still-here'));
    r.c.close();
    await closing;
  });
});
