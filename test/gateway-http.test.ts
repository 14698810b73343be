/**
 * Absolute-form HTTP through a real gateway: forwarding, header hygiene, keep-alive with a
 * decision per request, bodies both ways, and every request-level refusal.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createConnection, createServer, type AddressInfo, type Socket } from 'node:net';
import type { DnsServer } from './helpers/dns-server.js';
import { basePolicy, testDns } from './helpers/fixtures.js';
import { RawClient, startGateway, type TestGateway } from './helpers/gateway.js';
import { startHttpOrigin } from './helpers/origins.js';

let dns: DnsServer;
let http: Awaited<ReturnType<typeof startHttpOrigin>>;
let g: TestGateway;
let P: { echo: number; tls: number; http: number };

before(async () => {
  dns = await testDns();
  http = await startHttpOrigin((req, res) => {
    if (req.url === '/chunked') {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.write('part1-');
      res.end('part2');
      return;
    }
    if (req.url === '/nocontent') {
      res.writeHead(204);
      res.end();
      return;
    }
    const body = JSON.stringify({ method: req.method, url: req.url, headers: req.headers });
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
    res.end(req.method === 'HEAD' ? undefined : body);
  });
  P = { echo: 1, tls: 2, http: http.port };
  g = await startGateway(basePolicy(P), { dns: { resolvers: [dns.address] }, timeouts: { header: '500ms' }, limits: { max_header_bytes: 2048 } });
});
after(async () => {
  await g.close();
  await http.close();
  await dns.close();
});

async function deny(raw: string): Promise<{ status: number; reason: string; body: string }> {
  const c = await RawClient.connect(g.port);
  c.write(raw);
  const h = await c.head();
  await c.waitClosed();
  return { status: h.status, reason: h.headers['x-chokepoint-reason'] ?? '', body: h.body };
}

/**
 * Runs `fn` with the policy's http.test rule pointed at a scripted raw TCP origin (to play a
 * misbehaving server), then puts the policy back.
 */
async function withRawOrigin(onSocket: (s: Socket) => void, fn: (port: number) => Promise<void>): Promise<void> {
  const srv = createServer((s) => { s.on('error', () => {}); onSocket(s); });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  const port = (srv.address() as AddressInfo).port;
  g.setPolicy(basePolicy({ ...P, http: port }));
  try {
    await fn(port);
  } finally {
    g.setPolicy(basePolicy(P));
    srv.close();
  }
}

describe('absolute-form forwarding', () => {
  it('forwards a GET in origin-form, strips hop-by-hop and proxy credentials, adds Via', async () => {
    const c = await RawClient.connect(g.port);
    c.write(
      `GET http://http.test:${P.http}/path?q=1 HTTP/1.1\r\nHost: http.test:${P.http}\r\n` +
        'Proxy-Authorization: Basic c2VjcmV0OnNlY3JldA==\r\nProxy-Connection: keep-alive\r\n' +
        'Connection: keep-alive, X-Secret-Hop\r\nX-Secret-Hop: 1\r\nX-Kept: yes\r\nTE: trailers\r\n\r\n',
    );
    const h = await c.head();
    assert.equal(h.status, 200);
    const echoed = JSON.parse(h.body) as { url: string; headers: Record<string, string> };
    assert.equal(echoed.url, '/path?q=1');
    assert.equal(echoed.headers['x-kept'], 'yes');
    assert.equal(echoed.headers['proxy-authorization'], undefined);
    assert.equal(echoed.headers['proxy-connection'], undefined);
    assert.equal(echoed.headers['x-secret-hop'], undefined);
    assert.equal(echoed.headers.te, undefined);
    assert.equal(echoed.headers.via, '1.1 chokepoint');
    c.close();
    const d = await g.waitDecision((e) => e.method === 'GET' && e.host === 'http.test');
    assert.equal(d.verdict, 'allow');
    const closed = await g.waitClosed((e) => e.id === d.id);
    assert.equal(closed.protocol, 'http');
    assert.equal(closed.status, 200);
    assert.ok(closed.bytes_down > 0 && closed.bytes_up > 0);
  });

  it('decides each request on a kept-alive connection on its own', async () => {
    const c = await RawClient.connect(g.port);
    c.write(`GET http://http.test:${P.http}/one HTTP/1.1\r\nHost: http.test:${P.http}\r\n\r\n`);
    const first = await c.head();
    assert.equal(first.status, 200);
    c.data = Buffer.alloc(0);
    c.write(`GET http://nothing.test:${P.http}/two HTTP/1.1\r\nHost: nothing.test:${P.http}\r\n\r\n`);
    const second = await c.head();
    assert.equal(second.status, 403);
    assert.equal(second.headers['x-chokepoint-reason'], 'no_rule_matched');
    await c.waitClosed();
  });

  it('reuses the upstream connection for the same destination and serves pipelined requests in order', async () => {
    const c = await RawClient.connect(g.port);
    const req = (p: string) => `GET http://http.test:${P.http}${p} HTTP/1.1\r\nHost: http.test:${P.http}\r\n\r\n`;
    c.write(req('/a') + req('/b') + req('/c'));
    await c.until((x) => (x.text().match(/HTTP\/1\.1 200/g) ?? []).length === 3);
    const urls = [...c.text().matchAll(/"url":"([^"]+)"/g)].map((m) => m[1]);
    assert.deepEqual(urls, ['/a', '/b', '/c']);
    c.close();
  });

  it('answers and records every pipelined request when the client closes its side right after sending them', async () => {
    const c = await RawClient.connect(g.port);
    const port = c.socket.localPort;
    const req = (p: string) => `GET http://http.test:${P.http}${p} HTTP/1.1\r\nHost: http.test:${P.http}\r\n\r\n`;
    c.socket.end(req('/half-a') + req('/half-b') + req('/half-c'));
    await c.waitClosed();
    const urls = [...c.text().matchAll(/"url":"([^"]+)"/g)].map((m) => m[1]);
    assert.deepEqual(urls, ['/half-a', '/half-b', '/half-c']);
    // Only the last answer announces the close.
    assert.equal((c.text().match(/\r\nconnection: close\r\n/gi) ?? []).length, 1);
    const mine = g.decisions().filter((e) => e.client_port === port);
    assert.deepEqual(mine.map((e) => e.verdict), ['allow', 'allow', 'allow']);
    const closed = await Promise.all(mine.map((d) => g.waitClosed((e) => e.id === d.id)));
    assert.deepEqual(closed.map((e) => [e.status, e.close_reason]), [[200, 'completed'], [200, 'completed'], [200, 'completed']]);
  });

  it('a request whose body can no longer arrive (the client closed while it was decided) ends at once, recorded', async () => {
    const c = await RawClient.connect(g.port);
    // Content-Length promises 100 bytes; 5 come, then the client's FIN.
    c.socket.end(`POST http://http.test:${P.http}/short HTTP/1.1\r\nHost: http.test:${P.http}\r\nContent-Length: 100\r\n\r\nhello`);
    const d = await g.waitDecision((e) => e.port === P.http && e.method === 'POST' && e.verdict === 'allow');
    const t = await g.waitClosed((e) => e.id === d.id);
    assert.equal(t.close_reason, 'client_closed');
    await c.waitClosed();
  });

  it('does not pass a 1xx to an HTTP/1.0 client (RFC 9110 §15.2), and does to an HTTP/1.1 one', async () => {
    const answer = 'HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok';
    await withRawOrigin((s) => { s.once('data', () => s.end(answer)); }, async (port) => {
      for (const [version, sees103] of [['1.0', false], ['1.1', true]] as const) {
        const c = await RawClient.connect(g.port);
        c.write(`GET http://http.test:${port}/ HTTP/${version}\r\nHost: http.test:${port}\r\n\r\n`);
        await c.until((x) => /\r\n\r\nok$/.test(x.text()));
        assert.equal(/ 103 /.test(c.text()), sees103, c.text());
        assert.match(c.text(), /HTTP\/1\.1 200/);
        c.close();
      }
    });
  });

  it('forwards a Transfer-Encoding sent on two lines as one combined value, so the client frames the body as the gateway did (RFC 9110 §5.3)', async () => {
    // gzip, then chunked: a chunked body. Forwarding only the first line ("gzip") told the
    // client to read until the connection closed, and the next response on the kept-alive
    // connection (another destination's) became part of this body.
    const answer = 'HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nAAAAA\r\n0\r\n\r\n';
    await withRawOrigin((s) => { s.on('data', () => s.write(answer)); }, async (port) => {
      const c = await RawClient.connect(g.port);
      c.write(`GET http://http.test:${port}/ HTTP/1.1\r\nHost: http.test:${port}\r\n\r\n`);
      await c.until((x) => x.text().endsWith('0\r\n\r\n'));
      const head = c.text().slice(0, c.text().indexOf('\r\n\r\n'));
      assert.deepEqual(head.split('\r\n').filter((l) => /^transfer-encoding:/i.test(l)).map((l) => l.slice(l.indexOf(':') + 1).trim()), ['gzip, chunked']);
      assert.doesNotMatch(head, /connection: close/i, 'chunked is final: the connection may stay open');
      c.close();
    });
    // An empty list element: the gateway skips it (RFC 9110 §5.6.1) and frames the body as
    // chunked, so the client must get the list without it (Node's parser reads `chunked,` to the close).
    await withRawOrigin((s) => { s.on('data', () => s.write('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, \r\n\r\n3\r\nabc\r\n0\r\n\r\n')); }, async (port) => {
      const c = await RawClient.connect(g.port);
      c.write(`GET http://http.test:${port}/ HTTP/1.1\r\nHost: http.test:${port}\r\n\r\n`);
      await c.until((x) => x.text().endsWith('0\r\n\r\n'));
      assert.match(c.text(), /\r\ntransfer-encoding: chunked\r\n/i);
      c.close();
    });
  });

  it('refuses a transfer coding other than chunked to an HTTP/1.0 client, which may not receive one (RFC 9112 §6.1)', async () => {
    for (const te of ['gzip', 'gzip, chunked']) {
      const body = te === 'gzip' ? 'raw-gzip-bytes' : 'e\r\nraw-gzip-bytes\r\n0\r\n\r\n';
      await withRawOrigin((s) => { s.once('data', () => s.end(`HTTP/1.1 200 OK\r\nTransfer-Encoding: ${te}\r\n\r\n${body}`)); }, async (port) => {
        const c = await RawClient.connect(g.port);
        c.write(`GET http://http.test:${port}/ HTTP/1.0\r\nHost: http.test:${port}\r\n\r\n`);
        const h = await c.head();
        assert.equal(h.status, 502, te);
        assert.equal(h.headers['x-chokepoint-reason'], 'upstream_bad_response');
        assert.doesNotMatch(c.text(), /raw-gzip-bytes/);
        c.close();
      });
    }
  });

  it('never forwards proxy credentials, hop-by-hop or routing fields in a chunked trailer section, either way (RFC 9110 §6.5.1, §7.6.1)', async () => {
    let seen = '';
    const answer = 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nProxy-Authenticate: Basic\r\nX-Resp-Sum: 9\r\nConnection: close\r\n\r\n';
    await withRawOrigin((s) => {
      s.on('data', (d: Buffer) => {
        seen += d.toString('latin1');
        if (seen.endsWith('\r\n\r\n') && seen.includes('\r\n0\r\n')) s.write(answer);
      });
    }, async (port) => {
      const c = await RawClient.connect(g.port);
      c.write(`POST http://http.test:${port}/ HTTP/1.1\r\nHost: http.test:${port}\r\nTransfer-Encoding: chunked\r\n\r\n` +
        '5\r\nhello\r\n0\r\nProxy-Authorization: Basic c2VjcmV0OnNlY3JldA==\r\nX-Sum: 1\r\nHost: other.example\r\nKeep-Alive: 5\r\n\r\n');
      await c.until((x) => x.text().endsWith('\r\n\r\n') && x.text().includes('\r\n0\r\n'));
      // The origin got the body and the harmless trailer field only.
      assert.ok(seen.endsWith('5\r\nhello\r\n0\r\nX-Sum: 1\r\n\r\n'), JSON.stringify(seen));
      assert.doesNotMatch(seen, /c2VjcmV0|other\.example|keep-alive: 5/i);
      // And the client got the response's trailer without its hop-by-hop fields.
      assert.ok(c.text().endsWith('2\r\nok\r\n0\r\nX-Resp-Sum: 9\r\n\r\n'), JSON.stringify(c.text()));
      c.close();
    });
  });

  it('does not reuse an upstream that sent bytes after a response without a body', async () => {
    let conns = 0;
    const answer = 'HTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nEVIL!';
    await withRawOrigin((s) => { conns++; s.on('data', () => s.write(answer)); }, async (port) => {
      const c = await RawClient.connect(g.port);
      const req = `GET http://http.test:${port}/ HTTP/1.1\r\nHost: http.test:${port}\r\n\r\n`;
      c.write(req);
      await c.until((x) => (x.text().match(/HTTP\/1\.1 204/g) ?? []).length === 1);
      c.write(req);
      await c.until((x) => (x.text().match(/HTTP\/1\.1 204/g) ?? []).length === 2);
      assert.doesNotMatch(c.text(), /EVIL/);
      assert.equal(conns, 2, 'the out-of-step upstream was not used again');
      c.close();
    });
  });

  it('streams a Content-Length body and a chunked body to the origin', async () => {
    const c = await RawClient.connect(g.port);
    c.write(`POST http://http.test:${P.http}/post HTTP/1.1\r\nHost: http.test:${P.http}\r\nContent-Length: 11\r\n\r\nhello world`);
    const h = await c.head();
    assert.equal(h.status, 200);
    assert.equal(http.requests.at(-1)?.body, 'hello world');
    c.data = Buffer.alloc(0);
    c.write(`POST http://http.test:${P.http}/post HTTP/1.1\r\nHost: http.test:${P.http}\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n`);
    const h2 = await c.head();
    assert.equal(h2.status, 200);
    assert.equal(http.requests.at(-1)?.body, 'hello world');
    c.close();
  });

  it('moves a body larger than a write queue\'s mark that arrives in the same read as its head, both ways', async () => {
    // The exchange writes a head and the body bytes that came with it corked, and waits for
    // `drain` when that write says stop: a socket that said stop and never drained stalled
    // every response and request over 16 KiB that came in one read (until the idle timeout).
    const big = Buffer.alloc(200 * 1024, 0x61);
    let received = 0;
    await withRawOrigin((s) => {
      let head: Buffer | null = Buffer.alloc(0);
      s.on('data', (d: Buffer) => {
        if (head !== null) {
          head = Buffer.concat([head, d]);
          const at = head.indexOf('\r\n\r\n');
          if (at < 0) return;
          received = head.length - at - 4;
          head = null;
        } else received += d.length;
        if (received === big.length) s.write(Buffer.concat([Buffer.from(`HTTP/1.1 200 OK\r\ncontent-length: ${big.length}\r\n\r\n`), big]));
      });
    }, async (port) => {
      const c = createConnection(g.port, '127.0.0.1');
      const got: Buffer[] = [];
      c.on('data', (d: Buffer) => got.push(d));
      c.write(Buffer.concat([Buffer.from(`POST http://http.test:${port}/up HTTP/1.1\r\nHost: http.test:${port}\r\nContent-Length: ${big.length}\r\n\r\n`), big]));
      const deadline = Date.now() + 10_000;
      const whole = () => { const b = Buffer.concat(got); const at = b.indexOf('\r\n\r\n'); return at >= 0 && b.length - at - 4 >= big.length; };
      while (!whole() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      c.destroy();
      assert.equal(received, big.length, 'the origin got the whole request body');
      const b = Buffer.concat(got);
      assert.match(b.subarray(0, 20).toString(), /^HTTP\/1\.1 200/);
      assert.equal(b.length - b.indexOf('\r\n\r\n') - 4, big.length, 'the client got the whole response body');
    });
  });

  it('decodes a chunked response for an HTTP/1.0 client and delimits it by closing (RFC 9112 §6.3)', async () => {
    const c = await RawClient.connect(g.port);
    c.write(`GET http://http.test:${P.http}/chunked HTTP/1.0\r\nHost: http.test:${P.http}\r\n\r\n`);
    await c.until((x) => x.ended || x.closed);
    const text = c.text();
    assert.match(text, /^HTTP\/1\.1 200 /);
    assert.doesNotMatch(text, /transfer-encoding/i);
    assert.match(text, /connection: close/i);
    assert.equal(text.slice(text.indexOf('\r\n\r\n') + 4), 'part1-part2');
    const closed = await g.waitClosed((e) => e.protocol === 'http' && e.status === 200 && e.bytes_down === text.length);
    assert.equal(closed.close_reason, 'completed');
  });

  it('passes a chunked response, a 204 and a HEAD response with the right framing', async () => {
    const c = await RawClient.connect(g.port);
    c.write(`GET http://http.test:${P.http}/chunked HTTP/1.1\r\nHost: http.test:${P.http}\r\n\r\n`);
    await c.until((x) => x.text().includes('0\r\n\r\n'));
    assert.match(c.text(), /transfer-encoding: chunked/i);
    assert.match(c.text(), /part1-/);
    c.data = Buffer.alloc(0);
    c.write(`GET http://http.test:${P.http}/nocontent HTTP/1.1\r\nHost: http.test:${P.http}\r\n\r\n`);
    const h = await c.head();
    assert.equal(h.status, 204);
    c.data = Buffer.alloc(0);
    c.write(`HEAD http://http.test:${P.http}/x HTTP/1.1\r\nHost: http.test:${P.http}\r\n\r\n`);
    await c.until((x) => x.text().includes('\r\n\r\n'));
    assert.match(c.text(), /^HTTP\/1\.1 200/);
    c.data = Buffer.alloc(0);
    // The connection is still in step after a bodiless HEAD response.
    c.write(`GET http://http.test:${P.http}/after-head HTTP/1.1\r\nHost: http.test:${P.http}\r\n\r\n`);
    const h3 = await c.head();
    assert.match(h3.body, /after-head/);
    c.close();
  });

  it('sends the origin the Host it decided on, not the client\'s spelling of it (RFC 9112 §3.2.2)', async () => {
    // Each spelling normalizes to http.test, so each passes the Host check; forwarded raw, a
    // soft hyphen (dropped by IDNA mapping), a trailing dot or odd case could select another
    // virtual host (or the default one) on a shared origin.
    for (const spelling of [`http.tes\u00adt:${P.http}`, `HTTP.test.:${P.http}`]) {
      const c = await RawClient.connect(g.port);
      c.write(Buffer.from(`GET http://http.test:${P.http}/vhost HTTP/1.1\r\nX-Before: 1\r\nHost: ${spelling}\r\n\r\n`, 'latin1'));
      const h = await c.head();
      assert.equal(h.status, 200, spelling);
      const echoed = JSON.parse(h.body) as { headers: Record<string, string>; rawHeaders?: string[] };
      assert.equal(echoed.headers.host, `http.test:${P.http}`, spelling);
      c.close();
    }
  });

  for (const [what, answer] of [
    ['the origin speaks garbage', 'NOT HTTP AT ALL\r\n\r\n'],
    // Stripping the named Content-Length would desynchronize the client's kept-alive connection.
    ['a response\'s Connection header names its own framing', 'HTTP/1.1 200 OK\r\nConnection: content-length\r\nContent-Length: 2\r\n\r\nok'],
  ] as const) {
    it(`answers 502 upstream_bad_response when ${what}`, async () => {
      await withRawOrigin((s) => { s.once('data', () => s.end(answer)); }, async (port) => {
        const r = await deny(`GET http://http.test:${port}/ HTTP/1.1\r\nHost: http.test:${port}\r\n\r\n`);
        assert.equal(r.status, 502);
        assert.equal(r.reason, 'upstream_bad_response');
      });
    });
  }

  it('refuses a plain-text request on a tls: required rule with not_tls', async () => {
    const r = await deny(`GET http://tls.test:${P.tls}/ HTTP/1.1\r\nHost: tls.test:${P.tls}\r\n\r\n`);
    assert.equal(r.status, 403);
    assert.equal(r.reason, 'not_tls');
  });
});

describe('request refusals', () => {
  const H = () => `http.test:${P.http}`;
  const cases: [string, () => string, number, string][] = [
    ['an origin-form request', () => 'GET / HTTP/1.1\r\nHost: x\r\n\r\n', 400, 'origin_form'],
    ['an https:// absolute-form request', () => `GET https://${H()}/ HTTP/1.1\r\nHost: ${H()}\r\n\r\n`, 400, 'unsupported_scheme'],
    ['a Host header naming another host', () => `GET http://${H()}/ HTTP/1.1\r\nHost: other.test:${P.http}\r\n\r\n`, 400, 'host_mismatch'],
    ['Content-Length with Transfer-Encoding', () => `POST http://${H()}/ HTTP/1.1\r\nHost: ${H()}\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`, 400, 'request_smuggling'],
    // Connection names a field, so a proxy removes it (RFC 9110 §7.6.1): without its
    // Content-Length the body would reach the origin as a second request, to any Host.
    ['a Connection header naming Content-Length (the body would become a smuggled request)', () => {
      const inner = `GET /secret HTTP/1.1\r\nHost: secret.test:${P.http}\r\n\r\n`;
      return `POST http://${H()}/ HTTP/1.1\r\nHost: ${H()}\r\nConnection: keep-alive, Content-Length\r\nContent-Length: ${inner.length}\r\n\r\n${inner}`;
    }, 400, 'request_smuggling'],
    ['a Connection header naming Transfer-Encoding', () => `POST http://${H()}/ HTTP/1.1\r\nHost: ${H()}\r\nConnection: transfer-encoding\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`, 400, 'request_smuggling'],
    ['a Connection header naming Host', () => `GET http://${H()}/ HTTP/1.1\r\nHost: ${H()}\r\nConnection: close, host\r\n\r\n`, 400, 'request_smuggling'],
    ['duplicate Content-Length', () => `POST http://${H()}/ HTTP/1.1\r\nHost: ${H()}\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello`, 400, 'request_smuggling'],
    ['a transfer coding other than chunked', () => `POST http://${H()}/ HTTP/1.1\r\nHost: ${H()}\r\nTransfer-Encoding: gzip, chunked\r\n\r\n`, 400, 'request_smuggling'],
    ['a bare LF line ending', () => `GET http://${H()}/ HTTP/1.1\nHost: ${H()}\r\n\r\n`, 400, 'bad_request'],
    ['whitespace before the colon', () => `GET http://${H()}/ HTTP/1.1\r\nHost : ${H()}\r\n\r\n`, 400, 'bad_request'],
    ['an obs-fold continuation line', () => `GET http://${H()}/ HTTP/1.1\r\nHost: ${H()}\r\nX-A: 1\r\n  folded\r\n\r\n`, 400, 'bad_request'],
    ['a malformed request line', () => 'HELLO\r\n\r\n', 400, 'bad_request'],
    ['HTTP/2 on the request line', () => `GET http://${H()}/ HTTP/2.0\r\n\r\n`, 400, 'bad_request'],
    ['a head larger than the limit', () => `GET http://${H()}/ HTTP/1.1\r\nX-Big: ${'a'.repeat(4000)}\r\n\r\n`, 431, 'header_too_large'],
    ['an IP literal in absolute form', () => `GET http://127.0.0.1:${P.http}/ HTTP/1.1\r\nHost: 127.0.0.1:${P.http}\r\n\r\n`, 403, 'ip_literal_denied'],
    ['an HTTP/1.1 request without Host', () => `GET http://${H()}/ HTTP/1.1\r\n\r\n`, 400, 'bad_request'],
    ['a disallowed port in absolute form', () => `GET http://http.test:1/ HTTP/1.1\r\nHost: http.test:1\r\n\r\n`, 403, 'port_not_allowed'],
  ];
  for (const [name, raw, status, reason] of cases) {
    it(`refuses ${name} with ${status} ${reason}`, async () => {
      const r = await deny(raw());
      assert.equal(r.status, status);
      assert.equal(r.reason, reason);
      assert.equal((JSON.parse(r.body) as { code: string }).code, reason);
    });
  }

  it('answers 408 header_timeout to a head that never completes (slowloris)', async () => {
    const c = await RawClient.connect(g.port);
    c.write('GET http://http.test/ HTTP/1.1\r\n');
    const t = setInterval(() => c.write('X'), 100); // keeps the socket active: the deadline is absolute
    try {
      const h = await c.head(3000);
      assert.equal(h.status, 408);
      assert.equal(h.headers['x-chokepoint-reason'], 'header_timeout');
    } finally {
      clearInterval(t);
      c.close();
    }
  });

  it('closes an idle connection that never sent a byte, without an answer', async () => {
    const c = await RawClient.connect(g.port);
    await c.waitClosed(3000);
    assert.equal(c.data.length, 0);
  });
});
