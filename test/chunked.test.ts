/**
 * Chunked body scanner (src/gateway/chunked.ts): valid bodies with extensions and trailers
 * at every split point and one byte at a time, each malformed framing with its error, and
 * the boundary with a pipelined next request.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ChunkedScanner, MAX_EXT_BYTES, MAX_TRAILER_BYTES } from '../src/gateway/chunked.js';

const B = (s: string): Buffer => Buffer.from(s, 'latin1');
const NEXT = 'GET /next HTTP/1.1\r\nHost: a\r\n\r\n';

/** Feeds `pieces` in order; returns [bytes counted as body, error, done]. */
function feed(pieces: Buffer[]): { body: number; error: string | null; done: boolean; failedAt: number } {
  const s = new ChunkedScanner();
  let body = 0;
  for (let i = 0; i < pieces.length; i++) {
    const n = s.push(pieces[i] as Buffer);
    if (n < 0) return { body, error: s.error, done: s.done, failedAt: i };
    assert.ok(n <= (pieces[i] as Buffer).length, 'count beyond the buffer');
    body += n;
    if (s.done) assert.equal(s.push(B('more')), 0, 'push after done must count nothing');
  }
  return { body, error: s.error, done: s.done, failedAt: -1 };
}

const valid: [string, string][] = [
  ['last chunk only', '0\r\n\r\n'],
  ['one chunk', '5\r\nhello\r\n0\r\n\r\n'],
  ['several chunks', '1\r\na\r\n2\r\nbc\r\n3\r\ndef\r\n0\r\n\r\n'],
  ['hex upper and lower case', 'A\r\n0123456789\r\na\r\n0123456789\r\n0\r\n\r\n'],
  ['leading zeros, 16 digits in all', '0000000000000005\r\nhello\r\n0000000000000000\r\n\r\n'],
  ['data holding CRLF and a fake last chunk', '9\r\n\r\n0\r\n\r\n12\r\n0\r\n\r\n'],
  ['binary data', `4\r\n\x00\xff\n\r\r\n0\r\n\r\n`],
  ['extension name only', '5;a\r\nhello\r\n0\r\n\r\n'],
  ['extension token value', '5;name=value\r\nhello\r\n0\r\n\r\n'],
  ['several extensions', '5;a=1;b;c=x-y\r\nhello\r\n0\r\n\r\n'],
  ['BWS around ; and =', '5 \t; a = 1 ;\tb\t=\t"2"\r\nhello\r\n0\r\n\r\n'],
  ['quoted value with escapes and obs-text', '5;a="x \\" \\\\ ; = \xe9 y"\r\nhello\r\n0\r\n\r\n'],
  ['quoted value then another extension', '5;a="1";b\r\nhello\r\n0\r\n\r\n'],
  ['extension on the last chunk', '0;sig=abc\r\n\r\n'],
  ['one trailer field', '5\r\nhello\r\n0\r\nX-Checksum: 1234\r\n\r\n'],
  ['trailer fields, empty value, obs-text', '0\r\nA: 1\r\nB:\r\nC: caf\xe9 \t x\r\n\r\n'],
];

describe('ChunkedScanner: valid bodies', () => {
  for (const [name, body] of valid) {
    it(`${name}: whole, at every split point, one byte at a time`, () => {
      const all = B(body + NEXT);
      assert.deepEqual(feed([all]), { body: body.length, error: null, done: true, failedAt: -1 });
      for (let i = 0; i <= all.length; i++) {
        assert.deepEqual(feed([all.subarray(0, i), all.subarray(i)]), { body: body.length, error: null, done: true, failedAt: -1 }, `split at ${i}`);
      }
      const bytes = Array.from({ length: all.length }, (_, i) => all.subarray(i, i + 1));
      assert.deepEqual(feed(bytes), { body: body.length, error: null, done: true, failedAt: -1 });
    });
  }

  it('is not done before the final CRLF', () => {
    const s = new ChunkedScanner();
    assert.equal(s.push(B('5\r\nhello\r\n0\r\nX: y\r\n')), 19);
    assert.equal(s.done, false);
    assert.equal(s.push(B('\r')), 1);
    assert.equal(s.done, false);
    assert.equal(s.push(B('\nGET')), 1);
    assert.equal(s.done, true);
    assert.equal(s.error, null);
  });

  it('counts only the body when the next pipelined request shares the buffer', () => {
    const s = new ChunkedScanner();
    const body = '3\r\nabc\r\n0\r\n\r\n';
    const buf = B(body + NEXT);
    const n = s.push(buf);
    assert.equal(n, body.length);
    assert.equal(buf.subarray(n).toString('latin1'), NEXT);
  });

  it('skips a large chunk in O(1) per push', () => {
    const s = new ChunkedScanner();
    const size = 16 * 1024 * 1024;
    assert.equal(s.push(B(`${size.toString(16)}\r\n`)), 9);
    const block = Buffer.alloc(64 * 1024, 0x0d); // CRs in the data mean nothing
    let total = 0;
    while (total < size) total += s.push(block);
    assert.equal(total, size);
    assert.equal(s.push(B('\r\n0\r\n\r\nX')), 7);
    assert.equal(s.done, true);
  });

  it('bounds the extensions of one chunk-size line at exactly MAX_EXT_BYTES', () => {
    const ext = (n: number): string => `;a=${'x'.repeat(n - 3)}`; // every byte between size and CRLF counts
    assert.deepEqual(feed([B(`1${ext(MAX_EXT_BYTES)}\r\nz\r\n0\r\n\r\n`)]).error, null);
    assert.equal(feed([B(`1${ext(MAX_EXT_BYTES + 1)}\r\nz\r\n0\r\n\r\n`)]).error, 'chunk extensions too long');
    assert.equal(feed([B(`1 ${ext(MAX_EXT_BYTES)}\r\nz\r\n0\r\n\r\n`)]).error, 'chunk extensions too long');
  });

  it('bounds extensions per line, not per body', () => {
    const chunk = `1;a=${'x'.repeat(MAX_EXT_BYTES - 3)}\r\nz\r\n`;
    assert.deepEqual(feed([B(`${chunk.repeat(3)}0\r\n\r\n`)]), { body: chunk.length * 3 + 5, error: null, done: true, failedAt: -1 });
  });

  it('chunk sizes up to exactly 2^53-1', () => {
    const s = new ChunkedScanner();
    assert.equal(s.push(B('1fffffffffffff\r\nabc')), 19);
    assert.equal(s.error, null);
    const t = new ChunkedScanner();
    assert.equal(t.push(B('20000000000000\r\n')), -1);
    assert.equal(t.error, 'chunk size too large');
  });

  it('accepts a trailer section up to the bound', () => {
    const line = `X: ${'v'.repeat(MAX_TRAILER_BYTES - 2 - 5)}\r\n`; // field line + final CRLF = MAX
    assert.equal(line.length + 2, MAX_TRAILER_BYTES);
    assert.deepEqual(feed([B(`0\r\n${line}\r\n`)]), { body: 5 + line.length, error: null, done: true, failedAt: -1 });
    assert.equal(feed([B(`0\r\nX${line}\r\n`)]).error, 'trailer section too large');
  });
});

describe('ChunkedScanner: malformed framing', () => {
  const bad: [string, string, string][] = [
    // [name, input, substring of the error]
    ['empty size line', '\r\n', 'chunk size expected'],
    ['not hex', 'g\r\n', 'chunk size expected'],
    ['sign', '+5\r\nhello\r\n', 'chunk size expected'],
    ['0x prefix', '0x5\r\nhello\r\n', 'invalid character after chunk size'],
    ['17 digits', '00000000000000005\r\nhello\r\n', 'too many digits'],
    ['size beyond 2^53', 'fffffffffffffff\r\n', 'chunk size too large'],
    ['bare LF after the size', '5\nhello\r\n0\r\n\r\n', 'bare LF'],
    ['bare CR after the size', '5\rhello\r\n', 'bare CR'],
    ['data longer than the size', '5\r\nhello!\r\n0\r\n\r\n', 'chunk data not followed by CRLF'],
    ['data shorter than the size', '5\r\nhell\r\n0\r\n\r\n', 'chunk data not followed by CRLF'],
    ['bare LF after data', '5\r\nhello\n0\r\n\r\n', 'chunk data not followed by CRLF'],
    ['data followed by another byte and LF', '5\r\nhello!\n0\r\n\r\n', 'chunk data not followed by CRLF'],
    ['CR without LF after data', '5\r\nhello\r0\r\n\r\n', 'chunk data not followed by CRLF'],
    ['whitespace after the size without an extension', '5 \r\nhello\r\n', 'invalid chunk extension'],
    ['empty extension', '5;\r\nhello\r\n', 'invalid chunk extension name'],
    ['extension without a name', '5;=1\r\nhello\r\n', 'invalid chunk extension name'],
    ['extension without a value', '5;a=\r\nhello\r\n', 'invalid chunk extension value'],
    ['two names', '5;a b\r\nhello\r\n', 'invalid chunk extension'],
    ['two values', '5;a=b c\r\nhello\r\n', 'invalid chunk extension'],
    ['two equals signs', '5;a=b=c\r\nhello\r\n', 'invalid chunk extension'],
    ['bare LF in an extension', '5;a\nhello\r\n', 'bare LF'],
    ['bare LF in an extension value', '5;a=b\nhello\r\n', 'bare LF'],
    ['NUL in an extension', '5;a\x00\r\nhello\r\n', 'invalid chunk extension'],
    ['CR in a quoted value', '5;a="b\r\nhello\r\n', 'invalid quoted chunk extension value'],
    ['LF in a quoted value', '5;a="b\n"\r\nhello\r\n', 'invalid quoted chunk extension value'],
    ['control character escaped in a quoted value', '5;a="\\\x01"\r\nhello\r\n', 'invalid quoted chunk extension value'],
    ['text after a closing quote', '5;a="b"c\r\nhello\r\n', 'invalid chunk extension'],
    ['extensions too long', `1;a=${'x'.repeat(MAX_EXT_BYTES)}\r\nz\r\n0\r\n\r\n`, 'chunk extensions too long'],
    ['bare LF after the last chunk', '0\n\r\n', 'bare LF'],
    ['bare LF ending the body', '0\r\n\n', 'bare LF'],
    ['CR without LF ending the body', '0\r\n\rX', 'bare CR'],
    ['bare LF in a trailer field', '0\r\nX: y\n\r\n', 'bare LF'],
    ['CR without LF in a trailer field', '0\r\nX: y\rZ\r\n\r\n', 'bare CR'],
    ['obs-fold in the trailer', '0\r\nX: y\r\n z\r\n\r\n', 'obs-fold'],
    ['whitespace before a trailer colon', '0\r\nX : y\r\n\r\n', 'invalid trailer field name'],
    ['trailer line without a colon', '0\r\nX\r\n\r\n', 'invalid trailer field name'],
    ['empty trailer field name', '0\r\n: y\r\n\r\n', 'invalid trailer field'],
    ['NUL in a trailer value', '0\r\nX: \x00\r\n\r\n', 'control character in a trailer field'],
    ['trailer section too large', `0\r\nX: ${'v'.repeat(MAX_TRAILER_BYTES)}\r\n\r\n`, 'trailer section too large'],
    ['many small trailer fields, too large in sum', `0\r\n${'A: b\r\n'.repeat(MAX_TRAILER_BYTES / 6 + 1)}\r\n`, 'trailer section too large'],
  ];
  for (const [name, input, error] of bad) {
    it(`${name}: refused whole, at every split point, and byte by byte`, () => {
      const all = B(input);
      const whole = feed([all]);
      assert.equal(whole.failedAt, 0, `expected an error, got ${JSON.stringify(whole)}`);
      assert.ok(whole.error?.includes(error), `error ${JSON.stringify(whole.error)} lacks ${JSON.stringify(error)}`);
      for (let i = 0; i <= all.length; i += all.length > 200 ? 97 : 1) {
        const r = feed([all.subarray(0, i), all.subarray(i)]);
        assert.equal(r.error, whole.error, `split at ${i}`);
      }
      if (all.length <= 200) {
        const r = feed(Array.from({ length: all.length }, (_, i) => all.subarray(i, i + 1)));
        assert.equal(r.error, whole.error);
      }
    });
  }

  it('an error is sticky', () => {
    const s = new ChunkedScanner();
    assert.equal(s.push(B('5\nhello')), -1);
    assert.equal(s.error, 'bare LF in chunked framing');
    assert.equal(s.push(B('0\r\n\r\n')), -1);
    assert.equal(s.done, false);
  });

  it('an empty push changes nothing', () => {
    const s = new ChunkedScanner();
    assert.equal(s.push(Buffer.alloc(0)), 0);
    assert.equal(s.push(B('0\r\n\r\n')), 5);
    assert.equal(s.push(Buffer.alloc(0)), 0);
    assert.equal(s.done, true);
  });
});

describe('trailer section filtering (keepTrailer)', () => {
  // What a forwarder sends (passOn): each push's bytes up to the trailer section, then the filtered section, once.
  function forward(pieces: Buffer[], keep: (name: string) => boolean): { out: string; rest: string } {
    const s = new ChunkedScanner({ keepTrailer: keep });
    let out = '';
    let rest = '';
    for (const p of pieces) {
      const n = s.push(p);
      assert.ok(n >= 0, s.error ?? '');
      s.passOn(p, n, (b) => { out += b.toString('latin1'); });
      rest += p.subarray(n).toString('latin1');
    }
    assert.ok(s.done);
    return { out, rest };
  }
  const body = '5\r\nhello\r\n0;last=1\r\nProxy-Authorization: Basic c2VjcmV0\r\nX-Checksum: abc\r\nhost: other.example\r\nConnection: close\r\nContent-Length: 5\r\nServer-Timing: db;dur=1\r\n\r\n';
  const keep = (n: string) => !['proxy-authorization', 'host', 'connection', 'content-length'].includes(n);
  const want = '5\r\nhello\r\n0;last=1\r\nX-Checksum: abc\r\nServer-Timing: db;dur=1\r\n\r\n';

  it('drops the refused fields, keeps the rest in order, at every split point and one byte at a time', () => {
    const all = B(body + NEXT);
    for (let cut = 0; cut <= all.length; cut++) {
      const r = forward([all.subarray(0, cut), all.subarray(cut)], keep);
      assert.equal(r.out, want, `split at ${cut}`);
      assert.equal(r.rest, NEXT, `split at ${cut}`);
    }
    const bytes = [...all].map((b) => Buffer.from([b]));
    assert.equal(forward(bytes, keep).out, want);
  });

  it('an empty or fully refused trailer section becomes the final CRLF alone', () => {
    assert.equal(forward([B('0\r\n\r\n')], keep).out, '0\r\n\r\n');
    assert.equal(forward([B('0\r\nProxy-Authorization: x\r\n\r\n')], keep).out, '0\r\n\r\n');
  });
});
