/**
 * HTTP/1.1 head parser (src/gateway/http1.ts): every rejection rule with its reason, valid
 * heads of every shape, incompleteness at every split point, the size limit at its exact
 * boundary, the framing functions, and the serializers.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  EARLY_CHECK_BYTES, HOP_BY_HOP, MAX_HEADERS, connectionTokens, getHeader, parseLength, parseRequestHead, parseResponseHead,
  requestFraming, responseFraming, serializeRequestHead, serializeResponseHead, wantsClose,
  type HeadError, type RequestHead, type ResponseHead,
} from '../src/gateway/http1.js';

const B = (s: string): Buffer => Buffer.from(s, 'latin1');
const MAX = 16 * 1024;

function okReq(s: string, max = MAX): RequestHead {
  const r = parseRequestHead(B(s), max);
  assert.equal(r.kind, 'ok', `expected ok for ${JSON.stringify(s)}: ${JSON.stringify(r)}`);
  return (r as { head: RequestHead }).head;
}

function okRes(s: string, max = MAX): ResponseHead {
  const r = parseResponseHead(B(s), max);
  assert.equal(r.kind, 'ok', `expected ok for ${JSON.stringify(s)}: ${JSON.stringify(r)}`);
  return (r as { head: ResponseHead }).head;
}

describe('parseRequestHead: valid requests', () => {
  const cases: { name: string; in: string; method: string; target: string; version: 0 | 1; headers: [string, string, string][]; headLength?: number }[] = [
    { name: 'origin-form GET', in: 'GET /index.html?q=1 HTTP/1.1\r\nHost: a.example\r\n\r\n', method: 'GET', target: '/index.html?q=1', version: 1, headers: [['host', 'Host', 'a.example']] },
    { name: 'absolute-form', in: 'GET http://a.example:8080/x HTTP/1.1\r\nHost: a.example:8080\r\n\r\n', method: 'GET', target: 'http://a.example:8080/x', version: 1, headers: [['host', 'Host', 'a.example:8080']] },
    { name: 'authority-form CONNECT, HTTP/1.0, no fields', in: 'CONNECT a.example:443 HTTP/1.0\r\n\r\n', method: 'CONNECT', target: 'a.example:443', version: 0, headers: [] },
    { name: 'asterisk-form', in: 'OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n', method: 'OPTIONS', target: '*', version: 1, headers: [['host', 'Host', 'a']] },
    { name: 'extension methods are tokens', in: "M-SEARCH * HTTP/1.1\r\n\r\n", method: 'M-SEARCH', target: '*', version: 1, headers: [] },
    { name: 'method with every tchar punctuation', in: "!#$%&'*+-.^_`|~09azAZ / HTTP/1.1\r\n\r\n", method: "!#$%&'*+-.^_`|~09azAZ", target: '/', version: 1, headers: [] },
    { name: 'method case is kept (methods are case-sensitive)', in: 'get / HTTP/1.1\r\n\r\n', method: 'get', target: '/', version: 1, headers: [] },
    { name: 'target with every visible ASCII byte', in: 'GET /!"#$%&\'()*+,-./09:;<=>?@AZ[\\]^_`az{|}~ HTTP/1.1\r\n\r\n', method: 'GET', target: '/!"#$%&\'()*+,-./09:;<=>?@AZ[\\]^_`az{|}~', version: 1, headers: [] },
    { name: 'names lowercased, raw kept, OWS (SP and HTAB) trimmed, inner spaces kept', in: 'GET / HTTP/1.1\r\nX-Mixed-CASE: \t a  b \t\r\nhost:a\r\n\r\n', method: 'GET', target: '/', version: 1, headers: [['x-mixed-case', 'X-Mixed-CASE', 'a  b'], ['host', 'host', 'a']] },
    { name: 'empty and whitespace-only values', in: 'GET / HTTP/1.1\r\nA:\r\nB: \t \r\n\r\n', method: 'GET', target: '/', version: 1, headers: [['a', 'A', ''], ['b', 'B', '']] },
    { name: 'obs-text (latin1) in values', in: 'GET / HTTP/1.1\r\nX: caf\xe9 \xff\r\n\r\n', method: 'GET', target: '/', version: 1, headers: [['x', 'X', 'caf\xe9 \xff']] },
    { name: 'colon inside the value', in: 'GET / HTTP/1.1\r\nHost: a.example:80\r\nX: a:b::c\r\n\r\n', method: 'GET', target: '/', version: 1, headers: [['host', 'Host', 'a.example:80'], ['x', 'X', 'a:b::c']] },
    { name: 'repeated non-framing fields are kept in order', in: 'GET / HTTP/1.1\r\nAccept: a\r\naccept: b\r\n\r\n', method: 'GET', target: '/', version: 1, headers: [['accept', 'Accept', 'a'], ['accept', 'accept', 'b']] },
    { name: 'one leading empty line is ignored and counted', in: '\r\nGET / HTTP/1.1\r\n\r\n', method: 'GET', target: '/', version: 1, headers: [], headLength: 20 },
    { name: 'four leading empty lines', in: '\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\n\r\n', method: 'GET', target: '/', version: 1, headers: [], headLength: 26 },
    { name: 'Content-Length', in: 'POST / HTTP/1.1\r\nContent-Length: 12\r\n\r\n', method: 'POST', target: '/', version: 1, headers: [['content-length', 'Content-Length', '12']] },
    { name: 'Content-Length with leading zeros', in: 'POST / HTTP/1.1\r\nContent-Length: 00000000000000000000012\r\n\r\n', method: 'POST', target: '/', version: 1, headers: [['content-length', 'Content-Length', '00000000000000000000012']] },
    { name: 'Transfer-Encoding: chunked, any case', in: 'POST / HTTP/1.1\r\nTransfer-Encoding: ChUnKeD\r\n\r\n', method: 'POST', target: '/', version: 1, headers: [['transfer-encoding', 'Transfer-Encoding', 'ChUnKeD']] },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const h = okReq(`${c.in}BODY-OR-NEXT-REQUEST`);
      assert.equal(h.method, c.method);
      assert.equal(h.target, c.target);
      assert.equal(h.version, c.version);
      assert.deepEqual(h.headers.map((x) => [x.name, x.raw, x.value]), c.headers);
      assert.equal(h.headLength, c.headLength ?? c.in.length);
    });
  }

  it('accepts exactly MAX_HEADERS fields and refuses one more', () => {
    const fields = (n: number): string => Array.from({ length: n }, (_, i) => `X-${i}: ${i}\r\n`).join('');
    const h = okReq(`GET / HTTP/1.1\r\n${fields(MAX_HEADERS)}\r\n`);
    assert.equal(h.headers.length, 100);
    assert.deepEqual(h.headers[99], { name: 'x-99', raw: 'X-99', value: '99' });
    const r = parseRequestHead(B(`GET / HTTP/1.1\r\n${fields(MAX_HEADERS + 1)}\r\n`), MAX);
    assert.deepEqual(r, { kind: 'error', reason: 'header_too_large', detail: 'more than 100 header fields' });
  });

  it('Content-Length of 2^53-1 is accepted, and framed with that length', () => {
    const h = okReq('POST / HTTP/1.1\r\nContent-Length: 9007199254740991\r\n\r\n');
    assert.deepEqual(requestFraming(h), { kind: 'length', length: Number.MAX_SAFE_INTEGER });
  });
});

describe('parseRequestHead: every rejection rule', () => {
  const cases: [string, string, HeadError, string][] = [
    // [name, input, reason, substring of detail]
    ['bare LF ending the request line', 'GET / HTTP/1.1\nHost: a\r\n\r\n', 'bad_request', 'bare LF'],
    ['bare LF ending a field line', 'GET / HTTP/1.1\r\nHost: a\n\r\n', 'bad_request', 'bare LF'],
    ['bare LF as the whole terminator', 'GET / HTTP/1.1\n\n', 'bad_request', 'bare LF'],
    ['bare LF inside a value', 'GET / HTTP/1.1\r\nX: a\nb\r\n\r\n', 'bad_request', 'bare LF'],
    ['bare LF inside the target', 'GET /a\nb HTTP/1.1\r\n\r\n', 'bad_request', 'bare LF'],
    ['bare LF inside the version', 'GET / HTTP/1.\n\r\n\r\n', 'bad_request', 'bare LF'],
    ['bare CR in a value', 'GET / HTTP/1.1\r\nX: a\rb\r\n\r\n', 'bad_request', 'bare CR'],
    ['bare CR before CRLF', 'GET / HTTP/1.1\r\nX: a\r\r\n\r\n', 'bad_request', 'bare CR'],
    ['bare CR in the request line', 'GET /\r HTTP/1.1\r\n\r\n', 'bad_request', 'malformed request line'],
    ['two spaces after the method', 'GET  / HTTP/1.1\r\n\r\n', 'bad_request', 'empty request target'],
    ['two spaces before the version', 'GET /  HTTP/1.1\r\n\r\n', 'bad_request', 'unsupported HTTP version'],
    ['leading space', ' GET / HTTP/1.1\r\n\r\n', 'bad_request', 'empty method'],
    ['trailing space after the version', 'GET / HTTP/1.1 \r\n\r\n', 'bad_request', 'unsupported HTTP version'],
    ['HTAB as separator', 'GET\t/ HTTP/1.1\r\n\r\n', 'bad_request', 'invalid byte 0x09 in the method'],
    ['no version (HTTP/0.9)', 'GET /\r\n\r\n', 'bad_request', 'malformed request line'],
    ['only a method', 'GET\r\n\r\n', 'bad_request', 'malformed request line'],
    ['HTTP/2.0', 'GET / HTTP/2.0\r\n\r\n', 'bad_request', 'unsupported HTTP version "HTTP/2.0"'],
    ['HTTP/1.2', 'GET / HTTP/1.2\r\n\r\n', 'bad_request', 'unsupported HTTP version "HTTP/1.2"'],
    ['HTTP/1.10', 'GET / HTTP/1.10\r\n\r\n', 'bad_request', 'unsupported HTTP version "HTTP/1.10"'],
    ['HTTP/1', 'GET / HTTP/1\r\n\r\n', 'bad_request', 'unsupported HTTP version "HTTP/1"'],
    ['lowercase http/1.1', 'GET / http/1.1\r\n\r\n', 'bad_request', 'unsupported HTTP version "http/1.1"'],
    ['method with a non-tchar', 'GE(T / HTTP/1.1\r\n\r\n', 'bad_request', 'invalid byte 0x28 in the method'],
    ['method with a NUL', 'G\x00T / HTTP/1.1\r\n\r\n', 'bad_request', 'invalid byte 0x00 in the method'],
    ['target with DEL', 'GET /\x7f HTTP/1.1\r\n\r\n', 'bad_request', 'invalid byte 0x7f in the request target'],
    ['target with obs-text', 'GET /caf\xe9 HTTP/1.1\r\n\r\n', 'bad_request', 'invalid byte 0xe9 in the request target'],
    ['target with NUL', 'GET /\x00 HTTP/1.1\r\n\r\n', 'bad_request', 'invalid byte 0x00 in the request target'],
    ['SP between field name and colon', 'GET / HTTP/1.1\r\nHost : a\r\n\r\n', 'bad_request', 'whitespace between a field name and its colon'],
    ['HTAB between field name and colon', 'GET / HTTP/1.1\r\nHost\t: a\r\n\r\n', 'bad_request', 'whitespace between a field name and its colon'],
    ['obs-fold with SP', 'GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n', 'bad_request', 'obs-fold'],
    ['obs-fold with HTAB', 'GET / HTTP/1.1\r\nX: a\r\n\tb\r\n\r\n', 'bad_request', 'obs-fold'],
    ['whitespace before the first field line', 'GET / HTTP/1.1\r\n Host: a\r\n\r\n', 'bad_request', 'obs-fold'],
    ['field name with a non-tchar', 'GET / HTTP/1.1\r\nX(Y): a\r\n\r\n', 'bad_request', 'invalid byte 0x28 in the field name'],
    ['field name with obs-text', 'GET / HTTP/1.1\r\nX\xe9: a\r\n\r\n', 'bad_request', 'invalid byte 0xe9 in the field name'],
    ['empty field name', 'GET / HTTP/1.1\r\n: a\r\n\r\n', 'bad_request', 'empty field name'],
    ['field line without a colon', 'GET / HTTP/1.1\r\nHost\r\n\r\n', 'bad_request', 'without a colon'],
    ['NUL in a value', 'GET / HTTP/1.1\r\nX: a\x00b\r\n\r\n', 'bad_request', 'control character'],
    ['CTL 0x01 in a value', 'GET / HTTP/1.1\r\nX: \x01\r\n\r\n', 'bad_request', 'control character'],
    ['DEL in a value', 'GET / HTTP/1.1\r\nX: a\x7f\r\n\r\n', 'bad_request', 'control character'],
    ['VT in a value', 'GET / HTTP/1.1\r\nX: a\x0bb\r\n\r\n', 'bad_request', 'control character'],
    ['five leading empty lines', '\r\n\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\n\r\n', 'bad_request', 'too many empty lines'],
    ['two Host fields', 'GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n', 'bad_request', 'more than one Host'],
    ['two identical Content-Length fields', 'POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n', 'request_smuggling', 'more than one Content-Length'],
    ['two different Content-Length fields', 'POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n', 'request_smuggling', 'more than one Content-Length'],
    ['Content-Length list of identical values', 'POST / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\n', 'request_smuggling', 'list of values'],
    ['Content-Length list without spaces', 'POST / HTTP/1.1\r\nContent-Length: 5,6\r\n\r\n', 'request_smuggling', 'list of values'],
    ['Content-Length negative', 'POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n', 'bad_request', 'invalid Content-Length'],
    ['Content-Length with a sign', 'POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\n', 'bad_request', 'invalid Content-Length'],
    ['Content-Length in hex', 'POST / HTTP/1.1\r\nContent-Length: 0x10\r\n\r\n', 'bad_request', 'invalid Content-Length'],
    ['Content-Length with an exponent', 'POST / HTTP/1.1\r\nContent-Length: 1e3\r\n\r\n', 'bad_request', 'invalid Content-Length'],
    ['Content-Length with inner space', 'POST / HTTP/1.1\r\nContent-Length: 1 0\r\n\r\n', 'bad_request', 'invalid Content-Length'],
    ['Content-Length empty', 'POST / HTTP/1.1\r\nContent-Length: \r\n\r\n', 'bad_request', 'invalid Content-Length'],
    ['Content-Length with NBSP (obs-text, not OWS)', 'POST / HTTP/1.1\r\nContent-Length: 5\xa0\r\n\r\n', 'bad_request', 'invalid Content-Length'],
    ['Content-Length of 2^53', 'POST / HTTP/1.1\r\nContent-Length: 9007199254740992\r\n\r\n', 'bad_request', 'invalid Content-Length'],
    ['Content-Length of 20 digits', 'POST / HTTP/1.1\r\nContent-Length: 18446744073709551617\r\n\r\n', 'bad_request', 'invalid Content-Length'],
    ['Transfer-Encoding with Content-Length', 'POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n', 'request_smuggling', 'Content-Length together with Transfer-Encoding'],
    ['Content-Length with Transfer-Encoding (other order)', 'POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n', 'request_smuggling', 'Content-Length together with Transfer-Encoding'],
    ['Transfer-Encoding: gzip, chunked', 'POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n', 'request_smuggling', 'only "Transfer-Encoding: chunked"'],
    ['Transfer-Encoding: chunked, chunked', 'POST / HTTP/1.1\r\nTransfer-Encoding: chunked, chunked\r\n\r\n', 'request_smuggling', 'only "Transfer-Encoding: chunked"'],
    ['Transfer-Encoding: identity', 'POST / HTTP/1.1\r\nTransfer-Encoding: identity\r\n\r\n', 'request_smuggling', 'only "Transfer-Encoding: chunked"'],
    ['Transfer-Encoding: xchunked', 'POST / HTTP/1.1\r\nTransfer-Encoding: xchunked\r\n\r\n', 'request_smuggling', 'only "Transfer-Encoding: chunked"'],
    ['Transfer-Encoding: chunked followed by NBSP', 'POST / HTTP/1.1\r\nTransfer-Encoding: chunked\xa0\r\n\r\n', 'request_smuggling', 'only "Transfer-Encoding: chunked"'],
    ['Transfer-Encoding: chunked;param', 'POST / HTTP/1.1\r\nTransfer-Encoding: chunked;q=1\r\n\r\n', 'request_smuggling', 'only "Transfer-Encoding: chunked"'],
    ['Transfer-Encoding empty', 'POST / HTTP/1.1\r\nTransfer-Encoding: \r\n\r\n', 'request_smuggling', 'only "Transfer-Encoding: chunked"'],
    ['two Transfer-Encoding fields', 'POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n', 'request_smuggling', 'more than one Transfer-Encoding'],
    ['Transfer-Encoding in HTTP/1.0', 'POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n', 'request_smuggling', 'HTTP/1.0'],
  ];
  for (const [name, input, reason, detail] of cases) {
    it(`${name} → ${reason}`, () => {
      const r = parseRequestHead(B(input), MAX);
      assert.equal(r.kind, 'error', JSON.stringify(r));
      const e = r as { reason: HeadError; detail: string };
      assert.equal(e.reason, reason, e.detail);
      assert.ok(e.detail.includes(detail), `detail ${JSON.stringify(e.detail)} lacks ${JSON.stringify(detail)}`);
    });
  }

  it('a detail never echoes control bytes', () => {
    const r = parseRequestHead(B('GET / HTTP/\x01\x1b[31m\r\n\r\n'), MAX);
    assert.deepEqual(r, { kind: 'error', reason: 'bad_request', detail: 'unsupported HTTP version "HTTP/??[31m" (only HTTP/1.0 and HTTP/1.1)' });
  });
});

describe('parseRequestHead: incremental input', () => {
  const heads = [
    'GET http://a.example/ HTTP/1.1\r\nHost: a.example\r\nUser-Agent: t\r\nAccept: */*\r\n\r\n',
    '\r\n\r\nPOST /x HTTP/1.1\r\nContent-Length: 3\r\n\r\n',
    'CONNECT a.example:443 HTTP/1.0\r\n\r\n',
  ];
  for (const head of heads) {
    it(`is incomplete at every split point, then ok: ${JSON.stringify(head.slice(0, 24))}`, () => {
      const full = B(`${head}abc`);
      for (let i = 0; i < head.length; i++) {
        assert.deepEqual(parseRequestHead(full.subarray(0, i), MAX), { kind: 'incomplete' }, `prefix ${i}`);
      }
      for (let i = head.length; i <= full.length; i++) {
        const r = parseRequestHead(full.subarray(0, i), MAX);
        assert.equal(r.kind, 'ok', `prefix ${i}`);
        assert.equal((r as { head: RequestHead }).head.headLength, head.length);
      }
    });
  }

  it('refuses an early error without waiting for the end of the head', () => {
    assert.equal(parseRequestHead(B('GET / HTTP/1.1\nHo'), MAX).kind, 'error');
    assert.equal(parseRequestHead(B('\x16\x03\x01\x02\x00\x01'), MAX).kind, 'error'); // a TLS hello on the plain port
    assert.equal(parseRequestHead(B('GET / HTTP/2'), MAX).kind, 'error');
    assert.equal(parseRequestHead(B('GET / HTTP/1.1\r\nHost : a'), MAX).kind, 'error');
    assert.equal(parseRequestHead(B('GET / HTTP/1.1\r\n folded'), MAX).kind, 'error');
    assert.equal(parseRequestHead(B('GET / HTTP/1.1\r\nX: a\x00'), MAX).kind, 'error');
  });

  it('once an error shows, every longer prefix gives the same error', () => {
    for (const bad of ['GET / HTTP/1.1\r\nX: a\nb\r\n\r\n', 'GET\t/ HTTP/1.1\r\n\r\n', 'GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n', 'POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n']) {
      const full = B(bad);
      let first: unknown = null;
      for (let i = 1; i <= full.length; i++) {
        const r = parseRequestHead(full.subarray(0, i), MAX);
        if (first === null) {
          if (r.kind === 'incomplete') continue;
          assert.equal(r.kind, 'error', `${JSON.stringify(bad)} at ${i}`);
          first = r;
        } else assert.deepEqual(r, first, `${JSON.stringify(bad)} at ${i}`);
      }
      assert.notEqual(first, null);
    }
  });

  it('checks the first EARLY_CHECK_BYTES of an incomplete head; later faults wait for the end or the limit', () => {
    const pad = (n: number): string => `X-Pad: ${'p'.repeat(n)}\r\n`;
    const before = `GET / HTTP/1.1\r\n${pad(EARLY_CHECK_BYTES - 40)}X: a\x00`; // NUL inside the window
    assert.ok(before.length < EARLY_CHECK_BYTES);
    assert.equal((parseRequestHead(B(before), MAX) as { reason?: string }).reason, 'bad_request');
    const after = `GET / HTTP/1.1\r\n${pad(EARLY_CHECK_BYTES)}X: a\x00`; // NUL past it
    assert.deepEqual(parseRequestHead(B(after), MAX), { kind: 'incomplete' });
    assert.deepEqual(parseRequestHead(B(`${after}\r\n\r\n`), MAX), { kind: 'error', reason: 'bad_request', detail: 'control character in a field value' });
    assert.equal((parseRequestHead(B(after), after.length - 1) as { reason?: string }).reason, 'header_too_large');
    // The window starts after the leading empty lines.
    assert.equal((parseRequestHead(B(`\r\n\r\n${before}`), MAX) as { reason?: string }).reason, 'bad_request');
  });

  it('a lone CR after leading empty lines is incomplete', () => {
    assert.deepEqual(parseRequestHead(B('\r'), MAX), { kind: 'incomplete' });
    assert.deepEqual(parseRequestHead(B('\r\n\r'), MAX), { kind: 'incomplete' });
    assert.deepEqual(parseRequestHead(B(''), MAX), { kind: 'incomplete' });
  });
});

describe('parseRequestHead: size limit boundary', () => {
  const head = 'GET / HTTP/1.1\r\nHost: a.example\r\nX-Pad: 0123456789\r\n\r\n';
  const L = head.length;

  it('a head of exactly max bytes is accepted, one byte more is not', () => {
    assert.equal(okReq(`${head}next`, L).headLength, L);
    assert.deepEqual(parseRequestHead(B(`${head}next`), L - 1), { kind: 'error', reason: 'header_too_large', detail: `head exceeds ${L - 1} bytes` });
  });

  it('without a terminator: incomplete up to max bytes, too large past it', () => {
    const partial = B('GET / HTTP/1.1\r\nX-Long: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa');
    assert.deepEqual(parseRequestHead(partial, partial.length), { kind: 'incomplete' });
    assert.equal(parseRequestHead(partial, partial.length - 1).kind, 'error');
    assert.equal((parseRequestHead(partial, partial.length - 1) as { reason: string }).reason, 'header_too_large');
  });

  it('a terminator that straddles the limit is too large', () => {
    // Bytes up to max hold only "\r\n\r" of the terminator.
    assert.equal((parseRequestHead(B(head), L - 1) as { reason: string }).reason, 'header_too_large');
    assert.equal((parseRequestHead(B(head), L - 3) as { reason: string }).reason, 'header_too_large');
  });

  it('leading empty lines count against the limit', () => {
    assert.equal(okReq(`\r\n${head}`, L + 2).headLength, L + 2);
    assert.equal((parseRequestHead(B(`\r\n${head}`), L + 1) as { reason: string }).reason, 'header_too_large');
  });

  it('a bad byte before the limit is reported as such, not as too large', () => {
    const r = parseRequestHead(B(`GET / HTTP/1.1\r\nX: \x00${'a'.repeat(100)}`), 50);
    assert.deepEqual(r, { kind: 'error', reason: 'bad_request', detail: 'control character in a field value' });
  });

  it('nonsense limits refuse everything rather than throw', () => {
    for (const max of [0, -1, Number.NaN]) {
      assert.equal((parseRequestHead(B(head), max) as { reason: string }).reason, 'header_too_large', String(max));
    }
    assert.equal(parseRequestHead(B(head), Number.POSITIVE_INFINITY).kind, 'ok');
  });
});

describe('parseResponseHead', () => {
  const valid: [string, number, string, 0 | 1, number][] = [
    ['HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n', 200, 'OK', 1, 1],
    ['HTTP/1.0 404 Not Found At All\r\n\r\n', 404, 'Not Found At All', 0, 0],
    ['HTTP/1.1 204 \r\n\r\n', 204, '', 1, 0],
    ['HTTP/1.1 204\r\n\r\n', 204, '', 1, 0],
    ['HTTP/1.1 100 Continue\r\n\r\n', 100, 'Continue', 1, 0],
    ['HTTP/1.1 999 Odd\r\n\r\n', 999, 'Odd', 1, 0],
    ['HTTP/1.1 200 caf\xe9\t ok \r\n\r\n', 200, 'caf\xe9\t ok ', 1, 0],
  ];
  for (const [input, status, reason, version, nHeaders] of valid) {
    it(`parses ${JSON.stringify(input.split('\r\n')[0])}`, () => {
      const h = okRes(`${input}xx`);
      assert.deepEqual([h.status, h.reason, h.version, h.headers.length, h.headLength], [status, reason, version, nHeaders, input.length]);
    });
  }

  const invalid: [string, string, HeadError, string][] = [
    ['HTTP/2 200', 'HTTP/2 200 OK\r\n\r\n', 'bad_request', 'unsupported HTTP version'],
    ['lowercase version', 'http/1.1 200 OK\r\n\r\n', 'bad_request', 'unsupported HTTP version'],
    ['two-digit status', 'HTTP/1.1 20 OK\r\n\r\n', 'bad_request', 'malformed status code'],
    ['four-digit status', 'HTTP/1.1 2000 OK\r\n\r\n', 'bad_request', 'malformed status code'],
    ['status 099', 'HTTP/1.1 099 OK\r\n\r\n', 'bad_request', 'malformed status code'],
    ['no status', 'HTTP/1.1\r\n\r\n', 'bad_request', 'malformed status line'],
    ['two spaces', 'HTTP/1.1  200 OK\r\n\r\n', 'bad_request', 'malformed status code'],
    ['control character in the reason', 'HTTP/1.1 200 O\x01K\r\n\r\n', 'bad_request', 'reason phrase'],
    ['bare LF', 'HTTP/1.1 200 OK\nX: y\r\n\r\n', 'bad_request', 'bare LF'],
    ['obs-fold', 'HTTP/1.1 200 OK\r\nX: y\r\n z\r\n\r\n', 'bad_request', 'obs-fold'],
    ['space before colon', 'HTTP/1.1 200 OK\r\nX : y\r\n\r\n', 'bad_request', 'whitespace between'],
  ];
  for (const [name, input, reason, detail] of invalid) {
    it(`refuses ${name}`, () => {
      const r = parseResponseHead(B(input), MAX) as { kind: string; reason: HeadError; detail: string };
      assert.equal(r.kind, 'error');
      assert.equal(r.reason, reason);
      assert.ok(r.detail.includes(detail), r.detail);
    });
  }

  it('does not apply request framing rules to responses (duplicate Content-Length is for responseFraming)', () => {
    const h = okRes('HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n');
    assert.deepEqual(responseFraming(h, 'GET'), { kind: 'length', length: 3 });
  });

  it('is incomplete at every split point', () => {
    const s = 'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\n';
    for (let i = 0; i < s.length; i++) assert.deepEqual(parseResponseHead(B(s.slice(0, i)), MAX), { kind: 'incomplete' }, `prefix ${i}`);
    assert.equal(okRes(s).headLength, s.length);
  });
});

describe('framing', () => {
  it('requestFraming', () => {
    assert.deepEqual(requestFraming(okReq('GET / HTTP/1.1\r\n\r\n')), { kind: 'none' });
    assert.deepEqual(requestFraming(okReq('POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n')), { kind: 'length', length: 0 });
    assert.deepEqual(requestFraming(okReq('POST / HTTP/1.1\r\nContent-Length: 0042\r\n\r\n')), { kind: 'length', length: 42 });
    assert.deepEqual(requestFraming(okReq('POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n')), { kind: 'chunked' });
  });

  const res = (fields: string, status = 200, v = '1.1'): ResponseHead => okRes(`HTTP/${v} ${status} X\r\n${fields}\r\n`);
  const table: [string, ResponseHead, string, unknown][] = [
    ['HEAD request', res('Content-Length: 10\r\n'), 'HEAD', { kind: 'none' }],
    ['100', res('', 100), 'GET', { kind: 'none' }],
    ['103 with a length', res('Content-Length: 5\r\n', 103), 'GET', { kind: 'none' }],
    ['204', res('Content-Length: 5\r\n', 204), 'GET', { kind: 'none' }],
    ['304', res('Content-Length: 5\r\n', 304), 'GET', { kind: 'none' }],
    ['2xx to CONNECT', res('Content-Length: 5\r\n'), 'CONNECT', { kind: 'none' }],
    ['407 to CONNECT has a body', res('Content-Length: 5\r\n', 407), 'CONNECT', { kind: 'length', length: 5 }],
    ['chunked', res('Transfer-Encoding: chunked\r\n'), 'GET', { kind: 'chunked' }],
    ['gzip, chunked', res('Transfer-Encoding: gzip, chunked\r\n'), 'GET', { kind: 'chunked' }],
    ['chunked over two fields', res('Transfer-Encoding: gzip\r\nTransfer-Encoding: Chunked\r\n'), 'GET', { kind: 'chunked' }],
    ['empty list members', res('Transfer-Encoding: , chunked ,\r\n'), 'GET', { kind: 'chunked' }],
    ['chunked not final', res('Transfer-Encoding: chunked, gzip\r\n'), 'GET', { kind: 'close' }],
    ['gzip only', res('Transfer-Encoding: gzip\r\n'), 'GET', { kind: 'close' }],
    ['chunked + NBSP is not chunked', res('Transfer-Encoding: chunked\xa0\r\n'), 'GET', { kind: 'close' }],
    ['chunked twice', res('Transfer-Encoding: chunked, chunked\r\n'), 'GET', { kind: 'error', detail: 'chunked applied more than once' }],
    ['TE with CL', res('Transfer-Encoding: chunked\r\nContent-Length: 5\r\n'), 'GET', { kind: 'error', detail: 'Content-Length together with Transfer-Encoding in the response' }],
    ['TE in HTTP/1.0', res('Transfer-Encoding: chunked\r\n', 200, '1.0'), 'GET', { kind: 'error', detail: 'Transfer-Encoding in an HTTP/1.0 response' }],
    ['length', res('Content-Length: 5\r\n'), 'GET', { kind: 'length', length: 5 }],
    ['length 0', res('Content-Length: 0\r\n'), 'POST', { kind: 'length', length: 0 }],
    ['identical lengths, two fields', res('Content-Length: 5\r\nContent-Length: 5\r\n'), 'GET', { kind: 'length', length: 5 }],
    ['identical lengths, one list', res('Content-Length: 5 , 5\r\n'), 'GET', { kind: 'length', length: 5 }],
    ['conflicting lengths', res('Content-Length: 5\r\nContent-Length: 6\r\n'), 'GET', { kind: 'error', detail: 'conflicting Content-Length values in the response' }],
    ['conflicting list', res('Content-Length: 5, 6\r\n'), 'GET', { kind: 'error', detail: 'conflicting Content-Length values in the response' }],
    ['invalid length', res('Content-Length: 5x\r\n'), 'GET', { kind: 'error', detail: 'invalid Content-Length in the response' }],
    ['empty list member in length', res('Content-Length: 5,\r\n'), 'GET', { kind: 'error', detail: 'invalid Content-Length in the response' }],
    ['length too large', res('Content-Length: 9007199254740992\r\n'), 'GET', { kind: 'error', detail: 'invalid Content-Length in the response' }],
    ['no framing: until close', res(''), 'GET', { kind: 'close' }],
    ['no framing in 1.0', res('', 200, '1.0'), 'GET', { kind: 'close' }],
  ];
  for (const [name, head, method, expected] of table) {
    it(`responseFraming: ${name}`, () => assert.deepEqual(responseFraming(head, method), expected));
  }
});

describe('connection management helpers', () => {
  const wc: [string, boolean][] = [
    ['GET / HTTP/1.1\r\n\r\n', false],
    ['GET / HTTP/1.1\r\nConnection: close\r\n\r\n', true],
    ['GET / HTTP/1.1\r\nConnection: Keep-Alive, CLOSE\r\n\r\n', true],
    ['GET / HTTP/1.1\r\nConnection: upgrade\r\nConnection: close \r\n\r\n', true],
    ['GET / HTTP/1.1\r\nConnection: closed\r\n\r\n', false],
    ['GET / HTTP/1.1\r\nConnection: x-close\r\n\r\n', false],
    ['GET / HTTP/1.1\r\nConnection: ,,close,,\r\n\r\n', true],
    ['GET / HTTP/1.1\r\nX-Connection: close\r\n\r\n', false],
    ['GET / HTTP/1.0\r\n\r\n', true],
    ['GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n', false],
    ['GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n', false],
    ['GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n', true],
    ['GET / HTTP/1.0\r\nConnection: keep-alive-ish\r\n\r\n', true],
  ];
  for (const [input, expected] of wc) {
    it(`wantsClose ${JSON.stringify(input.slice(15, -4))} (${input.slice(6, 14)}) → ${expected}`, () => assert.equal(wantsClose(okReq(input)), expected));
  }

  it('wantsClose on responses', () => {
    assert.equal(wantsClose(okRes('HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n')), true);
    assert.equal(wantsClose(okRes('HTTP/1.0 200 OK\r\n\r\n')), true);
    assert.equal(wantsClose(okRes('HTTP/1.1 200 OK\r\n\r\n')), false);
  });

  it('connectionTokens gathers every Connection field, lowercased and OWS-trimmed', () => {
    const h = okReq('GET / HTTP/1.1\r\nConnection: Keep-Alive, X-Foo\r\nconnection: ,close,\t x-bar \r\nX-Foo: 1\r\n\r\n');
    assert.deepEqual([...connectionTokens(h)].sort(), ['close', 'keep-alive', 'x-bar', 'x-foo']);
    assert.deepEqual([...connectionTokens(okReq('GET / HTTP/1.1\r\n\r\n'))], []);
  });

  it('getHeader returns the first value, by any case of name', () => {
    const h = okReq('GET / HTTP/1.1\r\nAccept: a\r\nACCEPT: b\r\n\r\n');
    assert.equal(getHeader(h, 'accept'), 'a');
    assert.equal(getHeader(h, 'Accept'), 'a');
    assert.equal(getHeader(h, 'host'), undefined);
  });

  it('HOP_BY_HOP lists the RFC 9110 §7.6.1 fields and the proxy ones', () => {
    assert.deepEqual([...HOP_BY_HOP].sort(), ['connection', 'keep-alive', 'proxy-authenticate', 'proxy-authorization', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade']);
  });

  it('parseLength', () => {
    const t: [string, number][] = [['0', 0], ['7', 7], ['007', 7], ['9007199254740991', 9007199254740991], ['9007199254740992', -1], ['', -1], ['-0', -1], ['1.0', -1], [' 1', -1], ['１', -1]];
    for (const [v, n] of t) assert.equal(parseLength(v), n, v);
  });
});

describe('serializers', () => {
  it('serializeRequestHead keeps raw names and appends extra fields', () => {
    const h = okReq('GET http://a.example/p?q HTTP/1.0\r\nHost: a.example\r\nX-Mixed-Case: v  w\r\n\r\n');
    const out = serializeRequestHead('GET', '/p?q', h.headers, [['Via', '1.1 chokepoint']]);
    assert.equal(out.toString('latin1'), 'GET /p?q HTTP/1.1\r\nHost: a.example\r\nX-Mixed-Case: v  w\r\nVia: 1.1 chokepoint\r\n\r\n');
    const again = okReq(out.toString('latin1'));
    assert.deepEqual(again.headers.map((x) => [x.raw, x.value]), [['Host', 'a.example'], ['X-Mixed-Case', 'v  w'], ['Via', '1.1 chokepoint']]);
  });

  it('serializeResponseHead, latin1 values round-trip byte for byte', () => {
    const h = okRes('HTTP/1.1 200 Fine\r\nX: caf\xe9\r\n\r\n');
    const out = serializeResponseHead(h.status, h.reason, h.headers, []);
    assert.deepEqual(out, B('HTTP/1.1 200 Fine\r\nX: caf\xe9\r\n\r\n'));
    assert.equal(serializeResponseHead(204, '', [], []).toString('latin1'), 'HTTP/1.1 204 \r\n\r\n');
  });

  it('cannot be made to emit a second head (header injection)', () => {
    const out = serializeRequestHead('GET', '/a b\r\nX: y', [{ name: 'x', raw: 'X', value: 'v\r\n\r\nGET /evil HTTP/1.1' }], [
      ['Bad Name', 'v'], ['Y', 'a\u010a\u010db'], ['Z:', 'w'], ['', 'e'],
    ]);
    const s = out.toString('latin1');
    assert.equal(s, 'GET /a%20b%0D%0AX:%20y HTTP/1.1\r\nX: v    GET /evil HTTP/1.1\r\nY: a  b\r\n\r\n');
    const r = parseRequestHead(out, MAX);
    assert.equal(r.kind, 'ok');
    assert.equal((r as { head: RequestHead }).head.headLength, out.length);
  });

  it('sanitizes what cannot be a method, status or target', () => {
    assert.equal(serializeRequestHead('G T\r\n', '', [], []).toString('latin1'), 'G_T__ / HTTP/1.1\r\n\r\n');
    assert.equal(serializeRequestHead('', '/\u00e9\ud800', [], []).toString('latin1'), '_ /%C3%A9%EF%BF%BD HTTP/1.1\r\n\r\n');
    assert.equal(serializeResponseHead(42, 'x\ny', [], []).toString('latin1'), 'HTTP/1.1 500 x y\r\n\r\n');
    assert.equal(serializeResponseHead(Number.NaN, 'r', [], []).toString('latin1'), 'HTTP/1.1 500 r\r\n\r\n');
  });
});
