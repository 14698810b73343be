/**
 * CONNECT through a real gateway on loopback, with raw protocol bytes: allow paths, every
 * pre-tunnel deny reason, and the shape of deny answers and events.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { DnsServer } from './helpers/dns-server.js';
import { basePolicy, testDns } from './helpers/fixtures.js';
import { RawClient, startGateway, type TestGateway } from './helpers/gateway.js';
import { startEchoOrigin, startHttpOrigin, type Origin } from './helpers/origins.js';

let dns: DnsServer;
let echo: Origin;
let http: Awaited<ReturnType<typeof startHttpOrigin>>;
let g: TestGateway;
let P: { echo: number; tls: number; http: number };

before(async () => {
  dns = await testDns();
  echo = await startEchoOrigin();
  http = await startHttpOrigin();
  P = { echo: echo.port, tls: 1, http: http.port };
  g = await startGateway(basePolicy(P), { dns: { resolvers: [dns.address] } });
});
after(async () => {
  await g.close();
  await echo.close();
  await http.close();
  await dns.close();
});

async function connectDeny(target: string, headers = ''): Promise<{ status: number; reason: string; id: string; body: Record<string, unknown> }> {
  const c = await RawClient.connect(g.port);
  c.write(`CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n${headers}\r\n`);
  const h = await c.head();
  await c.waitClosed();
  c.close();
  return { status: h.status, reason: h.headers['x-chokepoint-reason'] ?? '', id: h.headers['x-chokepoint-id'] ?? '', body: JSON.parse(h.body) as Record<string, unknown> };
}

describe('CONNECT allowed', () => {
  it('opens a tunnel only after upstream is connected, relays both ways and records one decision and one close with the same id', async () => {
    const c = await RawClient.connect(g.port);
    c.write(`CONNECT echo.test:${P.echo} HTTP/1.1\r\nHost: echo.test:${P.echo}\r\n\r\n`);
    await c.until((x) => x.text().includes('\r\n\r\n'));
    assert.match(c.text(), /^HTTP\/1\.1 200 /);
    const headLen = c.data.length;
    c.write('ping-through-tunnel');
    await c.until((x) => x.data.length >= headLen + 19);
    assert.equal(c.data.subarray(headLen).toString(), 'ping-through-tunnel');
    c.socket.end();
    await c.waitClosed();
    const d = await g.waitDecision((e) => e.host === 'echo.test' && e.verdict === 'allow');
    assert.equal(d.reason, 'allowed');
    assert.equal(d.group, 'servers');
    assert.equal(d.rule, 'groups.servers.allow[0]');
    assert.equal(d.address, '127.0.0.1');
    assert.equal(d.method, 'CONNECT');
    assert.equal(d.port, P.echo);
    const closed = await g.waitClosed((e) => e.id === d.id);
    assert.equal(closed.bytes_up, 19);
    assert.equal(closed.bytes_down, 19);
    assert.equal(closed.protocol, 'connect');
    assert.equal(closed.close_reason, 'client_closed');
  });

  it('treats case and one trailing dot as the same name', async () => {
    const c = await RawClient.connect(g.port);
    c.write(`CONNECT ECHO.Test.:${P.echo} HTTP/1.1\r\n\r\n`);
    await c.until((x) => x.text().includes('\r\n\r\n'));
    assert.match(c.text(), /^HTTP\/1\.1 200 /);
    const port = c.socket.localPort;
    c.close();
    const d = await g.waitDecision((e) => e.host === 'echo.test' && e.client_port === port);
    assert.equal(d.verdict, 'allow');
  });

  it('relays bytes sent together with the CONNECT head', async () => {
    const c = await RawClient.connect(g.port);
    c.write(`CONNECT echo.test:${P.echo} HTTP/1.1\r\n\r\nearly-bytes`);
    await c.until((x) => x.text().endsWith('early-bytes'));
    assert.match(c.text(), /^HTTP\/1\.1 200 [^\r]*\r\n\r\nearly-bytes$/);
    c.close();
  });
});

describe('CONNECT denied before the tunnel', () => {
  const cases: [string, string, number, string][] = [
    // [name, target, status, reason]
    ['a host no rule names', 'nothing.test:443', 403, 'no_rule_matched'],
    ['an allowed host on another port', `echo.test:${65000}`, 403, 'port_not_allowed'],
    ['a group deny rule over an allow rule', `upload.updates.vendor.test:1`, 403, 'denied_by_rule'],
    ['a global deny rule over an allow rule', `x.evil.test:1`, 403, 'denied_by_rule'],
    ['a suffix trick: allowed name as a prefix', `echo.test.evil2.test:1`, 403, 'no_rule_matched'],
    ['a suffix trick: allowed name as a suffix of a label', `evilecho.test:1`, 403, 'no_rule_matched'],
    ['a dotted IPv4 literal', `127.0.0.1:1`, 403, 'ip_literal_denied'],
    ['a decimal IPv4 literal', `2130706433:1`, 403, 'ip_literal_denied'],
    ['an octal IPv4 literal', `0177.0.0.1:1`, 403, 'ip_literal_denied'],
    ['a hex IPv4 literal', `0x7f.1:1`, 403, 'ip_literal_denied'],
    ['a short IPv4 literal', `127.1:1`, 403, 'ip_literal_denied'],
    ['an IPv4-mapped IPv6 literal', `[::ffff:127.0.0.1]:1`, 403, 'ip_literal_denied'],
    ['an IPv6 literal', `[::1]:1`, 403, 'ip_literal_denied'],
    ['a target without a port', `echo.test`, 400, 'bad_target'],
    ['a target with userinfo', `user@echo.test:1`, 400, 'bad_target'],
    ['a target with a percent-encoded byte', `echo.test%2e:1`, 400, 'bad_target'],
    ['a target with port 0', `echo.test:0`, 400, 'bad_target'],
  ];
  for (const [name, target, status, reason] of cases) {
    it(`refuses ${name} with ${status} ${reason}`, async () => {
      const r = await connectDeny(target);
      assert.equal(r.status, status);
      assert.equal(r.reason, reason);
      assert.equal(r.body.code, reason);
      assert.equal(r.body.id, r.id);
      assert.equal(typeof r.body.message, 'string');
      const d = await g.waitDecision((e) => e.id === r.id);
      assert.equal(d.verdict, 'deny');
      assert.equal(d.reason, reason);
      assert.equal(d.status, status);
      assert.equal(g.closes().find((e) => e.id === r.id), undefined, 'no tunnel.closed for a refused attempt');
    });
  }

  it('refuses names resolving to addresses outside the exceptions, naming the class, without dialing', async () => {
    for (const [host, cls] of [['loop2.test', 'loopback'], ['private.test', 'private'], ['metadata.test', 'metadata'], ['cgnat.test', 'cgnat'], ['v6loop.test', 'loopback']] as const) {
      const r = await connectDeny(`${host}:${P.echo}`);
      assert.equal(r.status, 403, host);
      assert.equal(r.reason, 'address_denied', host);
      const d = await g.waitDecision((e) => e.id === r.id);
      assert.equal(d.address_class, cls, host);
    }
  });

  it('classifies a refused IP literal for the evidence (a raw metadata address reads metadata)', async () => {
    for (const [target, cls] of [['169.254.169.254:80', 'metadata'], ['[fd00:ec2::254]:80', 'metadata'], ['10.1.2.3:443', 'private'], ['2130706434:1', 'loopback']] as const) {
      const r = await connectDeny(target);
      assert.equal(r.reason, 'ip_literal_denied', target);
      const d = await g.waitDecision((e) => e.id === r.id);
      assert.equal(d.address_class, cls, target);
    }
  });

  it('dials only the permitted address of a mixed answer', async () => {
    const c = await RawClient.connect(g.port);
    c.write(`CONNECT mixed.test:${P.echo} HTTP/1.1\r\n\r\n`);
    await c.until((x) => x.text().includes('\r\n\r\n'));
    assert.match(c.text(), /^HTTP\/1\.1 200 /);
    c.close();
    const d = await g.waitDecision((e) => e.host === 'mixed.test');
    assert.equal(d.address, '127.0.0.1');
  });

  it('answers 502 dns_failure for a name that does not resolve', async () => {
    const r = await connectDeny(`nxdomain.test:${P.echo}`);
    assert.equal(r.status, 502);
    assert.equal(r.reason, 'dns_failure');
  });

  it('answers 502 connect_failed when the destination refuses', async () => {
    const closed = await startEchoOrigin();
    const port = closed.port;
    await closed.close();
    g.setPolicy(basePolicy({ ...P, echo: port }));
    try {
      const r = await connectDeny(`echo.test:${port}`);
      assert.equal(r.status, 502);
      assert.equal(r.reason, 'connect_failed');
    } finally {
      g.setPolicy(basePolicy(P));
    }
  });

  it('never lets internal error text reach the wire', async () => {
    const r = await connectDeny(`nxdomain.test:${P.echo}`);
    assert.deepEqual(Object.keys(r.body).sort(), ['code', 'destination', 'detail', 'id', 'message']);
    assert.doesNotMatch(JSON.stringify(r.body), /at .*\.js|Error:/);
  });
});
