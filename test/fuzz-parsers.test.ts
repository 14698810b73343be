/**
 * Fuzzing the data-plane parsers with random and mutated inputs from a seeded PRNG. Every
 * parser must be total (never throw), keep its lengths in range, finish in bounded time, and
 * agree with itself across splits and prefixes. The HTTP head parser and the chunked scanner
 * are also compared with slow, obviously-correct regex models of the RFC 9112 grammar.
 *
 * The seed is random per run and printed; reproduce a failure with FUZZ_SEED=<seed>.
 * FUZZ_ITERATIONS raises the count per parser (default 5000).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { parseRequestHead, parseResponseHead, serializeRequestHead, type Header, type ParseResult, type RequestHead, type ResponseHead } from '../src/gateway/http1.js';
import { ChunkedScanner, MAX_EXT_BYTES, MAX_TRAILER_BYTES } from '../src/gateway/chunked.js';
import { parseClientHello } from '../src/gateway/clienthello.js';
import { buildClientHello, editHello, splitHello } from './helpers/clienthello-fixtures.js';

const SEED = process.env.FUZZ_SEED !== undefined ? Number(process.env.FUZZ_SEED) >>> 0 : (Math.random() * 2 ** 32) >>> 0;
const N = Number(process.env.FUZZ_ITERATIONS ?? 5000);

/** mulberry32: small, fast, good enough to drive a fuzzer reproducibly. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

class Fuzz {
  readonly rnd: () => number;
  constructor(readonly seed: number) {
    this.rnd = prng(seed);
  }
  int(n: number): number {
    return Math.floor(this.rnd() * n);
  }
  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)] as T;
  }
  /** Random bytes, biased towards the ones that matter to these grammars. */
  bytes(len: number, alphabet: string): Buffer {
    const b = Buffer.alloc(len);
    for (let i = 0; i < len; i++) b[i] = this.rnd() < 0.8 ? alphabet.charCodeAt(this.int(alphabet.length)) : this.int(256);
    return b;
  }
  /** 1..k random edits: flip, set to an interesting byte, insert, delete, duplicate, truncate, splice. */
  mutate(src: Buffer, interesting: string, k = 3): Buffer {
    let b = Buffer.from(src);
    const edits = 1 + this.int(k);
    for (let e = 0; e < edits; e++) {
      const at = this.int(b.length + 1);
      switch (this.int(7)) {
        case 0: if (at < b.length) b[at] = (b[at] as number) ^ (1 << this.int(8)); break;
        case 1: if (at < b.length) b[at] = interesting.charCodeAt(this.int(interesting.length)); break;
        case 2: b = Buffer.concat([b.subarray(0, at), this.bytes(1 + this.int(3), interesting), b.subarray(at)]); break;
        case 3: b = Buffer.concat([b.subarray(0, at), b.subarray(Math.min(b.length, at + 1 + this.int(4)))]); break;
        case 4: {
          const from = this.int(b.length + 1);
          b = Buffer.concat([b.subarray(0, at), b.subarray(from, from + this.int(16)), b.subarray(at)]);
          break;
        }
        case 5: b = b.subarray(0, at); break;
        default: if (at + 1 < b.length) b.writeUInt16BE(this.pick([0, 1, 0xff, 0x100, 0xffff, this.int(0x10000)]), Math.min(at, b.length - 2));
      }
    }
    return b;
  }
}

const show = (b: Buffer): string => JSON.stringify(b.subarray(0, 400).toString('latin1')) + (b.length > 400 ? `…(${b.length} bytes)` : '');
/** Failure context: the run's seed (each parser derives its own stream from it), the iteration, the input. */
const where = (f: Fuzz, i: number, b: Buffer): string => `FUZZ_SEED=${SEED} (stream ${f.seed}) iteration ${i}: ${show(b)}`;

/** Runs a parser call; an exception (a totality bug) fails with the seed and the input. */
function mustNotThrow<R>(ctx: string, fn: () => R): R {
  try {
    return fn();
  } catch (err) {
    assert.fail(`threw ${(err as Error)?.stack ?? String(err)} — ${ctx}`);
  }
}

// ---------------------------------------------------------------------------------------
// HTTP heads

const T = "[!#$%&'*+\\-.^_`|~0-9A-Za-z]";
const REQUEST_LINE = new RegExp(`^(${T}+) ([\\x21-\\x7e]+) HTTP/1\\.([01])$`);
const STATUS_LINE = /^HTTP\/1\.([01]) ([1-9][0-9]{2})(?: ([\t\x20-\x7e\x80-\xff]*))?$/;
const FIELD_LINE = new RegExp(`^(${T}+):([\\t\\x20-\\x7e\\x80-\\xff]*)$`);

type Ref = { kind: 'ok'; start: string[]; headers: [string, string, string][]; headLength: number } | { kind: 'error'; reason: string } | null;

/**
 * The RFC 9112 head grammar and our framing rules, written the slow and obvious way. Null
 * when the input holds no complete head within `max` (only complete heads are compared).
 */
function refHead(s: string, max: number, request: boolean): Ref {
  let start = 0;
  let empties = 0;
  while (s.startsWith('\r\n', start)) {
    start += 2;
    if (++empties > 4) return { kind: 'error', reason: 'bad_request' };
  }
  const end = s.indexOf('\r\n\r\n', start);
  if (end < 0 || end + 4 > max) return null;
  const lines = s.slice(start, end).split('\r\n');
  let first: string[] = [];
  const headers: [string, string, string][] = [];
  for (let i = 0; i < lines.length; i++) {
    if (i > 100) return { kind: 'error', reason: 'header_too_large' };
    const l = lines[i] as string;
    if (/[\r\n]/.test(l)) return { kind: 'error', reason: 'bad_request' };
    if (i === 0) {
      const m = (request ? REQUEST_LINE : STATUS_LINE).exec(l);
      if (m === null) return { kind: 'error', reason: 'bad_request' };
      first = m.slice(1).map((x) => x ?? '');
    } else {
      const m = FIELD_LINE.exec(l);
      if (m === null) return { kind: 'error', reason: 'bad_request' };
      headers.push([(m[1] as string).toLowerCase(), m[1] as string, (m[2] as string).replace(/^[ \t]+|[ \t]+$/g, '')]);
    }
  }
  if (request) {
    let cl: string | null = null;
    let te: string | null = null;
    let hosts = 0;
    for (const [name, , value] of headers) {
      if (name === 'content-length') {
        if (cl !== null) return { kind: 'error', reason: 'request_smuggling' };
        cl = value;
      } else if (name === 'transfer-encoding') {
        if (te !== null) return { kind: 'error', reason: 'request_smuggling' };
        te = value;
      } else if (name === 'host') hosts++;
    }
    if (hosts > 1) return { kind: 'error', reason: 'bad_request' };
    if (cl !== null && te !== null) return { kind: 'error', reason: 'request_smuggling' };
    if (te !== null && (first[2] === '0' || te.toLowerCase() !== 'chunked')) return { kind: 'error', reason: 'request_smuggling' };
    if (cl !== null && !(/^[0-9]+$/.test(cl) && BigInt(cl) <= BigInt(Number.MAX_SAFE_INTEGER))) {
      return { kind: 'error', reason: cl.includes(',') ? 'request_smuggling' : 'bad_request' };
    }
    const named = headers.filter(([name]) => name === 'connection').flatMap(([, , v]) => v.split(',').map((t) => t.replace(/^[ \t]+|[ \t]+$/g, '').toLowerCase()));
    if (named.some((t) => t === 'content-length' || t === 'transfer-encoding' || t === 'host')) return { kind: 'error', reason: 'request_smuggling' };
  }
  return { kind: 'ok', start: first, headers, headLength: end + 4 };
}

const CTL = /[\x00-\x1f\x7f]/;

function checkHead<H extends RequestHead | ResponseHead>(r: ParseResult<H>, buf: Buffer, max: number, request: boolean, ctx: string): void {
  assert.ok(r.kind === 'ok' || r.kind === 'incomplete' || r.kind === 'error', ctx);
  if (r.kind === 'error') {
    assert.ok(['bad_request', 'request_smuggling', 'header_too_large'].includes(r.reason), ctx);
    assert.ok(r.detail.length > 0 && !CTL.test(r.detail), `detail ${JSON.stringify(r.detail)} ${ctx}`);
    if (!request) assert.notEqual(r.reason, 'request_smuggling', ctx);
  } else if (r.kind === 'incomplete') {
    assert.ok(buf.length <= max, `incomplete past the limit ${ctx}`);
  } else {
    const h = r.head;
    assert.ok(h.headLength >= 4 && h.headLength <= buf.length && h.headLength <= max, `headLength ${h.headLength} ${ctx}`);
    assert.equal(buf.toString('latin1', h.headLength - 4, h.headLength), '\r\n\r\n', ctx);
    assert.ok(h.headers.length <= 100, ctx);
    for (const x of h.headers) {
      assert.ok(new RegExp(`^${T}+$`).test(x.raw) && x.name === x.raw.toLowerCase(), ctx);
      assert.ok(!CTL.test(x.value.replace(/\t/g, ' ')) && !/^[ \t]|[ \t]$/.test(x.value), ctx);
    }
  }
}

function compareWithRef(r: ParseResult<RequestHead> | ParseResult<ResponseHead>, ref: Ref, ctx: string): void {
  if (ref === null) return;
  if (ref.kind === 'error') {
    assert.equal(r.kind, 'error', `reference refuses (${ref.reason}) ${ctx}`);
    assert.equal((r as { reason: string }).reason, ref.reason, ctx);
    return;
  }
  assert.equal(r.kind, 'ok', `reference accepts: ${JSON.stringify(r)} ${ctx}`);
  const h = (r as { head: RequestHead | ResponseHead }).head;
  assert.equal(h.headLength, ref.headLength, ctx);
  assert.deepEqual(h.headers.map((x) => [x.name, x.raw, x.value]), ref.headers, ctx);
  if ('method' in h) assert.deepEqual([h.method, h.target, String(h.version)], ref.start, ctx);
  else assert.deepEqual([String(h.version), String(h.status), h.reason], [ref.start[0], ref.start[1], ref.start[2] ?? ''], ctx);
}

const REQ_SEEDS = [
  'GET http://a.example/p?q=1 HTTP/1.1\r\nHost: a.example\r\nUser-Agent: fuzz\r\nAccept: */*\r\n\r\n',
  'CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\nProxy-Connection: keep-alive\r\n\r\n',
  'POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello',
  'POST /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n',
  '\r\nGET / HTTP/1.0\r\nConnection: keep-alive\r\nX:  a \t b\t\r\n\r\n',
  'OPTIONS * HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\nX-Empty:\r\n\r\nGET / HTTP/1.1\r\n\r\n',
];
const RES_SEEDS = [
  'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok',
  'HTTP/1.0 404 Not Found\r\n\r\n',
  'HTTP/1.1 204\r\nConnection: close\r\n\r\n',
  'HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n',
];
const HTTP_INTERESTING = '\r\n\r\n \t:,;"\\/HTTP1.0\x00\x7f\xa0\xffaA-';

describe('fuzz: HTTP heads', () => {
  it(`parseRequestHead: ${N} random and mutated inputs (seed ${SEED})`, { timeout: 120_000 }, (t) => {
    t.diagnostic(`FUZZ_SEED=${SEED}`);
    const f = new Fuzz(SEED);
    let oks = 0;
    let compared = 0;
    const t0 = Date.now();
    for (let i = 0; i < N; i++) {
      const buf = f.rnd() < 0.15
        ? f.bytes(f.int(300), 'GET / HTTP/1.1\r\nHost: a:b\t,')
        : f.mutate(Buffer.from(f.pick(REQ_SEEDS), 'latin1'), HTTP_INTERESTING, f.rnd() < 0.3 ? 1 : 4);
      const max = f.pick([16384, 64, buf.length, Math.max(0, buf.length - f.int(8))]);
      const ctx = where(f, i, buf);
      const r = mustNotThrow(ctx, () => parseRequestHead(buf, max));
      checkHead(r, buf, max, true, ctx);
      const ref = refHead(buf.toString('latin1'), max, true);
      if (ref !== null) compared++;
      compareWithRef(r, ref, ctx);
      if (r.kind === 'ok') {
        oks++;
        const L = r.head.headLength;
        // What follows the head does not matter; no prefix of a valid head is refused.
        assert.deepEqual(parseRequestHead(buf.subarray(0, L), max), r, ctx);
        const cut = f.int(L);
        assert.deepEqual(parseRequestHead(buf.subarray(0, cut), max), { kind: 'incomplete' }, `prefix ${cut} ${ctx}`);
      } else if (r.kind === 'error') {
        // More bytes never cure an error, nor change its reason (the detail may say more).
        const more = Buffer.concat([buf, f.bytes(f.int(40), HTTP_INTERESTING)]);
        const r2 = parseRequestHead(more, max);
        assert.deepEqual([r2.kind, (r2 as { reason?: string }).reason], ['error', r.reason], `extended ${ctx}`);
      }
    }
    t.diagnostic(`${oks} ok, ${compared} compared with the reference, ${Date.now() - t0} ms`);
    assert.ok(oks > N / 20, `too few valid inputs (${oks}) to mean anything`);
    assert.ok(compared > N / 4, `too few complete inputs (${compared})`);
  });

  it(`parseResponseHead: ${N} random and mutated inputs (seed ${SEED})`, { timeout: 120_000 }, (t) => {
    t.diagnostic(`FUZZ_SEED=${SEED}`);
    const f = new Fuzz(SEED ^ 0x5f5f5f5f);
    let oks = 0;
    for (let i = 0; i < N; i++) {
      const buf = f.rnd() < 0.15
        ? f.bytes(f.int(300), 'HTTP/1.1 200 OK\r\nX: y\t,')
        : f.mutate(Buffer.from(f.pick(RES_SEEDS), 'latin1'), HTTP_INTERESTING, f.rnd() < 0.3 ? 1 : 4);
      const max = f.pick([16384, 48, buf.length]);
      const ctx = where(f, i, buf);
      const r = mustNotThrow(ctx, () => parseResponseHead(buf, max));
      checkHead(r, buf, max, false, ctx);
      compareWithRef(r, refHead(buf.toString('latin1'), max, false), ctx);
      if (r.kind === 'ok') {
        oks++;
        const cut = f.int(r.head.headLength);
        assert.deepEqual(parseResponseHead(buf.subarray(0, cut), max), { kind: 'incomplete' }, `prefix ${cut} ${ctx}`);
      }
    }
    t.diagnostic(`${oks} ok`);
    assert.ok(oks > N / 20);
  });

  it(`serializeRequestHead: ${N} random field sets always give exactly one valid head (seed ${SEED})`, (t) => {
    t.diagnostic(`FUZZ_SEED=${SEED}`);
    const f = new Fuzz(SEED ^ 0x0badf00d);
    const chars = 'aZ09-_ :\t\r\n\x00\x7f\xe9\u010a\u2028\ud800/?';
    const str = (n: number): string => Array.from({ length: f.int(n) }, () => chars[f.int(chars.length)]).join('');
    for (let i = 0; i < N; i++) {
      const headers: Header[] = Array.from({ length: f.int(5) }, () => {
        const raw = str(6);
        return { raw, name: raw.toLowerCase(), value: str(10) };
      });
      const extra = Array.from({ length: f.int(3) }, () => [str(6), str(10)] as [string, string]);
      const out = mustNotThrow(`FUZZ_SEED=${SEED} iteration ${i}`, () => serializeRequestHead(str(6), str(12), headers, extra));
      const r = parseRequestHead(out, 1 << 20);
      assert.ok(r.kind === 'ok' || (r.kind === 'error' && r.reason !== 'header_too_large'), `FUZZ_SEED=${SEED} iteration ${i}: ${JSON.stringify(out.toString('latin1'))} → ${JSON.stringify(r)}`);
      // Whatever framing fields the strings happened to spell, the bytes are one head and nothing after it.
      if (r.kind === 'ok') assert.equal(r.head.headLength, out.length);
      else assert.equal(out.indexOf('\r\n\r\n'), out.length - 4, `FUZZ_SEED=${SEED} iteration ${i}`);
    }
  });
});

// ---------------------------------------------------------------------------------------
// Chunked bodies

const QS = '"(?:[\\t \\x21\\x23-\\x5b\\x5d-\\x7e\\x80-\\xff]|\\\\[\\t \\x21-\\x7e\\x80-\\xff])*"';
const SIZE_LINE = new RegExp(`([0-9A-Fa-f]+)((?:[ \\t]*;[ \\t]*${T}+(?:[ \\t]*=[ \\t]*(?:${T}+|${QS}))?)*)\\r\\n`, 'y');
const TRAILERS = new RegExp(`((?:${T}+:[\\t\\x20-\\x7e\\x80-\\xff]*\\r\\n)*)\\r\\n`, 'y');

/** Where a chunked body ends, by the RFC 9112 §7.1 grammar and our bounds; null if it does not (yet). */
function refChunkedEnd(s: string): number | null {
  let p = 0;
  for (;;) {
    SIZE_LINE.lastIndex = p;
    const m = SIZE_LINE.exec(s);
    if (m === null) return null;
    const digits = m[1] as string;
    if (digits.length > 16 || BigInt(`0x${digits}`) > BigInt(Number.MAX_SAFE_INTEGER) || (m[2] as string).length > MAX_EXT_BYTES) return null;
    p = SIZE_LINE.lastIndex;
    const size = Number.parseInt(digits, 16);
    if (size === 0) {
      TRAILERS.lastIndex = p;
      const t = TRAILERS.exec(s);
      if (t === null || TRAILERS.lastIndex - p > MAX_TRAILER_BYTES) return null;
      return TRAILERS.lastIndex;
    }
    if (p + size + 2 > s.length || s.slice(p + size, p + size + 2) !== '\r\n') return null;
    p += size + 2;
  }
}

function chunkedSeed(f: Fuzz): string {
  let s = '';
  for (let n = f.int(4); n > 0; n--) {
    const data = 'x'.repeat(f.int(20)) + (f.rnd() < 0.3 ? '\r\n0\r\n\r\n' : '');
    if (data.length === 0) continue;
    s += data.length.toString(16) + f.pick(['', ';a', ';a=b', ' ; n = "q \\" v"', ';x;y=1']) + '\r\n' + data + '\r\n';
  }
  return `${s}0${f.pick(['', ';e=1'])}\r\n${f.pick(['', 'X-T: 1\r\n', 'A: b\r\nC:\r\n'])}\r\n`;
}

describe('fuzz: chunked scanner', () => {
  it(`ChunkedScanner: ${N} random and mutated bodies, random splits, reference model (seed ${SEED})`, { timeout: 120_000 }, (t) => {
    t.diagnostic(`FUZZ_SEED=${SEED}`);
    const f = new Fuzz(SEED ^ 0x1234567);
    let done = 0;
    for (let i = 0; i < N; i++) {
      const buf = f.rnd() < 0.1
        ? f.bytes(f.int(200), '0123456789abcdefABCDEF;= \t"\\\r\nxX:')
        : f.mutate(Buffer.from(chunkedSeed(f) + f.pick(['', 'GET / HTTP/1.1\r\n\r\n']), 'latin1'), '\r\n\r\n0;= \t"\\:fF\x00\xff', f.rnd() < 0.4 ? 1 : 3);
      const ctx = where(f, i, buf);
      const whole = new ChunkedScanner();
      const n = mustNotThrow(ctx, () => whole.push(buf));
      assert.ok(n === -1 || (n >= 0 && n <= buf.length), `count ${n} ${ctx}`);
      if (n === -1) assert.ok(typeof whole.error === 'string' && whole.error.length > 0 && !whole.done, ctx);
      else {
        assert.equal(whole.error, null, ctx);
        if (!whole.done) assert.equal(n, buf.length, `not done yet must take everything ${ctx}`);
      }
      // Same outcome whatever the splitting.
      const split = new ChunkedScanner();
      let total = 0;
      let failed = false;
      for (let p = 0; p < buf.length && !failed && !split.done;) {
        const len = 1 + f.int(f.rnd() < 0.5 ? 3 : 64);
        const k = mustNotThrow(ctx, () => split.push(buf.subarray(p, p + len)));
        if (k < 0) failed = true;
        else {
          assert.ok(k <= len, ctx);
          total += k;
        }
        p += len;
      }
      assert.deepEqual([failed ? -1 : total, split.error, split.done], [n, whole.error, whole.done], `split differs ${ctx}`);
      // Same end as the grammar says.
      const ref = refChunkedEnd(buf.toString('latin1'));
      if (whole.done) {
        done++;
        assert.equal(n, ref, `scanner ends at ${n}, reference at ${ref} ${ctx}`);
      } else assert.equal(ref, null, `reference ends at ${ref}, scanner ${n === -1 ? `fails: ${whole.error}` : 'is not done'} ${ctx}`);
    }
    t.diagnostic(`${done} complete bodies`);
    assert.ok(done > N / 10, `too few complete bodies (${done})`);
  });
});

// ---------------------------------------------------------------------------------------
// ClientHello

const grease = (v: number): boolean => (v & 0x0f0f) === 0x0a0a && (v >> 8) === (v & 0xff);

/** Structural edits that byte flips almost never produce: duplicate, drop, swap or refill an extension. */
function editExtensions(f: Fuzz, hello: Buffer): Buffer {
  return editHello(hello, (e) => {
    const i = f.int(e.length);
    const x = e[i];
    if (x === undefined) return e;
    switch (f.int(5)) {
      case 0: return [...e.slice(0, i + 1), [x[0], Buffer.from(x[1])], ...e.slice(i + 1)];
      case 1: return [...e.slice(0, i), ...e.slice(i + 1)];
      case 2: {
        const j = f.int(e.length);
        const out = [...e];
        [out[i], out[j]] = [out[j] as [number, Buffer], x];
        return out;
      }
      case 3: return e.map(([t, d], k) => [t, k === i ? f.bytes(f.int(12), '\x00\x01\x02\x03\x04\x2e\x61') : d]);
      default: return [...e, [f.pick([0, 16, 43, 0xfe0d, 0x1a1a]), f.bytes(f.int(8), '\x00\x02\x03\x04\x61')]];
    }
  }, 1 + f.int(3));
}

/** An independent decode of an accepted hello, from the fixture's splitter. */
function refHello(buf: Buffer): { sni: string | null; versions: number[]; alpn: string[]; ech: boolean; unique: boolean } {
  const { extensions } = splitHello(buf);
  const types = extensions.map(([t]) => t);
  const get = (t: number): Buffer | undefined => extensions.find(([x]) => x === t)?.[1];
  const sv = get(43);
  const versions = sv === undefined ? [] : Array.from({ length: ((sv[0] as number) / 2) | 0 }, (_, k) => sv.readUInt16BE(1 + 2 * k)).filter((v) => !grease(v));
  const al = get(16);
  const alpn: string[] = [];
  for (let p = 2; al !== undefined && p < al.length; p += 1 + (al[p] as number)) alpn.push(al.toString('latin1', p + 1, p + 1 + (al[p] as number)));
  const sn = get(0);
  let sni: string | null = null;
  for (let p = 2; sn !== undefined && p < sn.length; p += 3 + sn.readUInt16BE(p + 1)) {
    if (sn[p] === 0) sni = sn.toString('latin1', p + 3, p + 3 + sn.readUInt16BE(p + 1)).toLowerCase().replace(/\.$/, '');
  }
  return { sni, versions, alpn, ech: types.includes(0xfe0d), unique: new Set(types).size === types.length };
}

describe('fuzz: ClientHello', () => {
  it(`parseClientHello: ${N} random and mutated hellos (seed ${SEED})`, { timeout: 120_000 }, (t) => {
    t.diagnostic(`FUZZ_SEED=${SEED}`);
    const f = new Fuzz(SEED ^ 0x7e1f00d);
    const seeds = [
      buildClientHello({ sni: 'api.vendor.example', alpn: ['h2', 'http/1.1'] }),
      buildClientHello({ sni: 'A.Example.', versions: [0x0a0a, 0x0304, 0x0303], ech: true }),
      buildClientHello({ sni: null, versions: [], legacyVersion: 0x0301, fragmentRecords: 3 }),
      buildClientHello({ sni: 'x.test', fragmentRecords: 40 }),
      Buffer.concat([buildClientHello({ sni: 'y.test' }), Buffer.from([20, 3, 3, 0, 1, 1])]),
    ];
    let oks = 0;
    const t0 = Date.now();
    for (let i = 0; i < N; i++) {
      const kind = f.rnd();
      const buf = kind < 0.1
        ? Buffer.concat([Buffer.from([22, 3, f.int(4)]), f.bytes(f.int(300), '\x00\x01\x03\x16\xff')])
        : kind < 0.35 ? editExtensions(f, f.pick(seeds))
          : f.mutate(f.pick(seeds), '\x00\x01\x02\x03\x16\x2e\xff\x0a\xfe\x0d', f.rnd() < 0.4 ? 1 : 4);
      const max = f.pick([16384 + 5 + 1024, buf.length, 64]);
      const ctx = where(f, i, buf);
      const r = mustNotThrow(ctx, () => parseClientHello(buf, max));
      assert.ok(['ok', 'incomplete', 'error', 'not_tls'].includes(r.kind), ctx);
      if (r.kind === 'error' || r.kind === 'not_tls') assert.ok(r.detail.length > 0 && !CTL.test(r.detail), ctx);
      if (r.kind === 'incomplete') assert.ok(buf.length <= max, `incomplete past maxBytes ${ctx}`);
      if (r.kind !== 'ok') continue;
      oks++;
      const h = r.info;
      assert.ok(h.bytes > 5 && h.bytes <= buf.length && h.bytes <= max, `bytes ${h.bytes} ${ctx}`);
      if (h.sni !== null) assert.ok(/^[\x21-\x7e]+$/.test(h.sni) && h.sni === h.sni.toLowerCase() && h.sni.length > 0 && h.sni.length < 65536, ctx);
      for (const v of h.supportedVersions) assert.ok(v >= 0 && v <= 0xffff && !((v & 0x0f0f) === 0x0a0a && (v >> 8) === (v & 0xff)), ctx);
      assert.equal(h.maxVersion, h.supportedVersions.length > 0 ? Math.max(...h.supportedVersions) : h.legacyVersion, ctx);
      for (const a of h.alpn) assert.ok(a.length > 0 && a.length < 256, ctx);
      const ref = mustNotThrow(`reference decode: ${ctx}`, () => refHello(buf));
      assert.ok(ref.unique, `accepted duplicate extensions ${ctx}`);
      assert.deepEqual([h.sni, h.supportedVersions, h.alpn, h.ech], [ref.sni, ref.versions, ref.alpn, ref.ech], ctx);
      // Bytes after the hello do not matter; every shorter prefix is incomplete.
      assert.deepEqual(parseClientHello(buf.subarray(0, h.bytes), max), r, ctx);
      const cut = f.int(h.bytes);
      assert.deepEqual(parseClientHello(buf.subarray(0, cut), max), { kind: 'incomplete' }, `prefix ${cut} ${ctx}`);
    }
    t.diagnostic(`${oks} ok, ${Date.now() - t0} ms`);
    assert.ok(oks > N / 20, `too few valid hellos (${oks})`);
  });
});

// ---------------------------------------------------------------------------------------
// Adversarial sizes: linear time on inputs built to hurt.

describe('fuzz: bounded time on adversarial inputs', () => {
  it('large inputs finish fast', () => {
    const t0 = Date.now();
    const lines = Buffer.from(`GET / HTTP/1.1\r\n${'A: b\r\n'.repeat(200_000)}`, 'latin1');
    for (let i = 0; i < 20; i++) {
      assert.equal((parseRequestHead(lines, 16384) as { reason?: string }).reason, 'header_too_large');
      assert.equal(parseRequestHead(Buffer.alloc(1 << 20, 0x61), 65536).kind, 'error');
      assert.deepEqual(parseRequestHead(Buffer.alloc(16384, 0x61), 16384), { kind: 'incomplete' });
    }
    const s = new ChunkedScanner();
    assert.equal(s.push(Buffer.from(`1;${'a=b;'.repeat(2000)}`, 'latin1')), -1);
    const trailer = new ChunkedScanner();
    assert.equal(trailer.push(Buffer.from(`0\r\n${'A: b\r\n'.repeat(10_000)}`, 'latin1')), -1);
    // A head arriving one byte at a time is never complete before its end. (Its cost is
    // bounded by the early-check limit; speed belongs in benchmarks, not in timed tests.)
    const slow = Buffer.from(`GET / HTTP/1.1\r\n${Array.from({ length: 100 }, (_, i) => `X-${i}: ${'v'.repeat(150)}\r\n`).join('')}`, 'latin1').subarray(0, 16384);
    for (let n = 1; n <= slow.length; n++) assert.notEqual(parseRequestHead(slow.subarray(0, n), 16384).kind, 'ok');
    const many = Buffer.concat(Array.from({ length: 3000 }, () => Buffer.from([22, 3, 1, 0, 1, 1])));
    assert.equal(parseClientHello(many, 1 << 20).kind, 'error'); // 3000 one-byte records: refused past MAX_HELLO_RECORDS
    assert.ok(Date.now() - t0 < 5000, `took ${Date.now() - t0} ms`);
  });
});
