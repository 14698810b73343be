/**
 * Incremental scanner for the chunked transfer coding (RFC 9112 §7.1). The proxy forwards a
 * chunked body byte for byte; this only finds where it ends, so that a kept-alive connection
 * stays in step with the peer, and refuses framing that two parsers could read differently:
 * bare LF or CR, anything but CRLF after chunk data, oversized sizes, chunk extensions or
 * trailer fields that do not follow the grammar (chunk-extension parsing differences are a
 * known smuggling vector), and unbounded extensions or trailers.
 *
 * Total: any input gives a count or an error, never an exception; each byte is looked at
 * once, chunk data is skipped in O(1); splitting the input anywhere gives the same result.
 */

// States. Numbers rather than a const enum so that any TypeScript emitter handles this file.
const SIZE0 = 0; // first hex digit of a chunk-size
const SIZE = 1; // further hex digits
// Extension states, contiguous (2..10) so that one range check bounds their bytes.
const EXT_BWS = 2; // BWS before ";" (after the size or after an extension value)
const EXT_NAME0 = 3; // after ";": BWS, then the first tchar of chunk-ext-name
const EXT_NAME = 4;
const EXT_NAME_BWS = 5; // BWS after a name: "=" or ";" must follow
const EXT_VAL0 = 6; // after "=": BWS, then token or quoted-string
const EXT_TOKEN = 7;
const EXT_QUOTED = 8;
const EXT_QPAIR = 9;
const EXT_AFTER_Q = 10; // after a closing quote
const SIZE_LF = 11; // CR seen at the end of the chunk-size line
const DATA = 12;
const DATA_CR = 13;
const DATA_LF = 14;
// Trailer states, contiguous (15..19), likewise bounded together.
const TR_LINE = 15; // start of a trailer field line, or the final CRLF
const TR_NAME = 16;
const TR_VALUE = 17;
const TR_LF = 18;
const LAST_LF = 19;
const DONE = 20;

const CR = 0x0d;
const LF = 0x0a;
const SP = 0x20;
const HTAB = 0x09;

/** More hex digits than this is refused (16 digits already exceed 2^53). */
export const MAX_SIZE_DIGITS = 16;
/** Bytes of chunk extensions on one chunk-size line. */
export const MAX_EXT_BYTES = 4096;
/** Bytes of the whole trailer section, final CRLF included. */
export const MAX_TRAILER_BYTES = 16 * 1024;

// RFC 9110 §5.6.2 tchar, §5.6.4 qdtext, §5.5 field-value bytes (HTAB / SP / VCHAR / obs-text).
const TCHAR = new Uint8Array(256);
for (const c of "!#$%&'*+-.^_`|~") TCHAR[c.charCodeAt(0)] = 1;
for (let c = 0x30; c <= 0x39; c++) TCHAR[c] = 1;
for (let c = 0x41; c <= 0x5a; c++) TCHAR[c] = 1;
for (let c = 0x61; c <= 0x7a; c++) TCHAR[c] = 1;
const FIELD = new Uint8Array(256);
FIELD[HTAB] = 1;
for (let c = 0x20; c <= 0x7e; c++) FIELD[c] = 1;
for (let c = 0x80; c <= 0xff; c++) FIELD[c] = 1;
const QDTEXT = FIELD.slice();
QDTEXT[0x22] = 0;
QDTEXT[0x5c] = 0;
// Hex digit values, -1 elsewhere.
const HEX = new Int8Array(256).fill(-1);
for (let c = 0; c < 10; c++) HEX[0x30 + c] = c;
for (let c = 0; c < 6; c++) HEX[0x41 + c] = HEX[0x61 + c] = 10 + c;

export class ChunkedScanner {
  /**
   * Receives the chunk data (without framing) when the body must be decoded rather than
   * forwarded: an HTTP/1.0 client cannot read the chunked coding (RFC 9112 §7.1, §6.3).
   */
  readonly #onData: ((data: Buffer) => void) | null;
  /** Trailer fields (lowercased names) that may be forwarded; null: the section is not kept. */
  readonly #keepTrailer: ((name: string) => boolean) | null;
  constructor(opts: { onData?: (data: Buffer) => void; keepTrailer?: (name: string) => boolean } = {}) {
    this.#onData = opts.onData ?? null;
    this.#keepTrailer = opts.keepTrailer ?? null;
  }

  /** With `keepTrailer`: the trailer section's bytes seen so far (at most MAX_TRAILER_BYTES). */
  #trailerParts: Buffer[] = [];
  /**
   * With `keepTrailer`: where the trailer section begins in the buffer of the last push(), 0
   * when that whole push was in it, -1 when it has not begun. The bytes from there on are not
   * the caller's to forward: `trailer` gives the section to send instead, once done.
   */
  trailerStart = -1;

  /**
   * Once done, with `keepTrailer`: the trailer section without the fields it refuses, ending
   * with the final CRLF. RFC 9110 §6.5.1: a trailer must not carry framing, routing or
   * authentication fields, and hop-by-hop fields never cross a proxy (§7.6.1): forwarded
   * as they came, `Proxy-Authorization` (the client's proxy credentials) or a second `Host`
   * would reach the origin in the trailer, past the checks the header section got.
   */
  get trailer(): Buffer | null {
    if (this.#s !== DONE || this.#keepTrailer === null) return null;
    const text = Buffer.concat(this.#trailerParts).toString('latin1');
    let out = '';
    for (const line of text.split('\r\n')) {
      if (line === '') continue;
      const name = line.slice(0, line.indexOf(':')).toLowerCase();
      if (this.#keepTrailer(name)) out += `${line}\r\n`;
    }
    return Buffer.from(`${out}\r\n`, 'latin1');
  }

  /**
   * Hands `write` what a forwarder sends of `buf`, which push() just counted `n` bytes of: the
   * body as it came up to the trailer section, then, once done, the filtered section.
   */
  passOn(buf: Buffer, n: number, write: (b: Buffer) => void): void {
    const end = this.#keepTrailer !== null && this.trailerStart >= 0 ? this.trailerStart : n;
    if (end > 0) write(end === buf.length ? buf : buf.subarray(0, end));
    if (this.done && this.#keepTrailer !== null && !this.#trailerSent) {
      this.#trailerSent = true;
      write(this.trailer as Buffer);
    }
  }

  #trailerSent = false;
  #s = SIZE0;
  #size = 0;
  #digits = 0;
  #left = 0;
  #ext = 0;
  #trailer = 0;
  #error: string | null = null;

  /** The last chunk and the trailer section have been seen. */
  get done(): boolean {
    return this.#s === DONE;
  }

  /** Why the framing was refused, once push() returned -1. */
  get error(): string | null {
    return this.#error;
  }

  /**
   * Feeds bytes; returns how many bytes of `buf` belong to the body (<= buf.length: the rest,
   * once done, is whatever follows it, e.g. a pipelined request), or -1 on a framing error.
   * After done, returns 0; after an error, -1.
   */
  push(buf: Buffer): number {
    if (this.#error !== null) return -1;
    const n = buf.length;
    let i = 0;
    let s = this.#s;
    this.trailerStart = s >= TR_LINE && s <= DONE ? 0 : -1;
    while (i < n && s !== DONE) {
      if (s === DATA) {
        const take = Math.min(this.#left, n - i);
        if (this.#onData !== null && take > 0) this.#onData(buf.subarray(i, i + take));
        this.#left -= take;
        i += take;
        if (this.#left === 0) s = DATA_CR;
        continue;
      }
      const c = buf[i++] as number;
      if (s >= EXT_BWS && s <= EXT_AFTER_Q) {
        if (++this.#ext > MAX_EXT_BYTES) return this.#fail('chunk extensions too long');
      } else if (s >= TR_LINE && ++this.#trailer > MAX_TRAILER_BYTES) return this.#fail('trailer section too large');
      switch (s) {
        case SIZE0:
        case SIZE: {
          const h = HEX[c] as number;
          if (h >= 0) {
            if (++this.#digits > MAX_SIZE_DIGITS) return this.#fail('chunk size has too many digits');
            // size <= 2^53-1 here, so size * 16 is exact, and a sum beyond 2^53-1 cannot round below it.
            const next = this.#size * 16 + h;
            if (next > Number.MAX_SAFE_INTEGER) return this.#fail('chunk size too large');
            this.#size = next;
            s = SIZE;
          } else if (s === SIZE0) return this.#fail(c === LF ? 'bare LF in chunked framing' : 'chunk size expected');
          else if (c === CR) s = SIZE_LF;
          else if (c === 0x3b) s = EXT_NAME0;
          else if (c === SP || c === HTAB) s = EXT_BWS;
          else return this.#fail(c === LF ? 'bare LF in chunked framing' : 'invalid character after chunk size');
          break;
        }
        // chunk-ext = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] ) (§7.1.1)
        case EXT_BWS:
          if (c === 0x3b) s = EXT_NAME0;
          else if (c === SP || c === HTAB) s = EXT_BWS;
          else return this.#fail('invalid chunk extension');
          break;
        case EXT_NAME0:
          if (TCHAR[c] === 1) s = EXT_NAME;
          else if (c === SP || c === HTAB) s = EXT_NAME0;
          else return this.#fail('invalid chunk extension name');
          break;
        case EXT_NAME:
        case EXT_TOKEN:
          if (TCHAR[c] === 1) break; // the name or token goes on
          if (c === CR) s = SIZE_LF;
          else if (c === 0x3b) s = EXT_NAME0;
          else if (c === SP || c === HTAB) s = s === EXT_NAME ? EXT_NAME_BWS : EXT_BWS;
          else if (c === 0x3d && s === EXT_NAME) s = EXT_VAL0;
          else return this.#fail(c === LF ? 'bare LF in chunked framing' : 'invalid chunk extension');
          break;
        case EXT_NAME_BWS:
          if (c === 0x3d) s = EXT_VAL0;
          else if (c === 0x3b) s = EXT_NAME0;
          else if (c === SP || c === HTAB) s = EXT_NAME_BWS;
          else return this.#fail('invalid chunk extension');
          break;
        case EXT_VAL0:
          if (TCHAR[c] === 1) s = EXT_TOKEN;
          else if (c === 0x22) s = EXT_QUOTED;
          else if (c === SP || c === HTAB) s = EXT_VAL0;
          else return this.#fail('invalid chunk extension value');
          break;
        case EXT_QUOTED:
          if (QDTEXT[c] === 1) s = EXT_QUOTED;
          else if (c === 0x22) s = EXT_AFTER_Q;
          else if (c === 0x5c) s = EXT_QPAIR;
          else return this.#fail('invalid quoted chunk extension value');
          break;
        case EXT_AFTER_Q:
          if (c === CR) s = SIZE_LF;
          else if (c === 0x3b) s = EXT_NAME0;
          else if (c === SP || c === HTAB) s = EXT_BWS;
          else return this.#fail(c === LF ? 'bare LF in chunked framing' : 'invalid chunk extension');
          break;
        case EXT_QPAIR:
          if (FIELD[c] === 1) s = EXT_QUOTED;
          else return this.#fail('invalid quoted chunk extension value');
          break;
        case SIZE_LF:
          if (c !== LF) return this.#fail('bare CR in chunked framing');
          if (this.#size === 0) {
            s = TR_LINE;
            this.trailerStart = i;
          } else {
            this.#left = this.#size;
            s = DATA;
          }
          this.#size = 0;
          this.#digits = 0;
          this.#ext = 0;
          break;
        case DATA_CR:
          if (c !== CR) return this.#fail('chunk data not followed by CRLF');
          s = DATA_LF;
          break;
        case DATA_LF:
          if (c !== LF) return this.#fail('chunk data not followed by CRLF');
          s = SIZE0;
          break;
        // trailer-section = *( field-line CRLF ), then CRLF (§7.1.2); obs-fold refused as in heads.
        case TR_LINE:
          if (c === CR) s = LAST_LF;
          else if (TCHAR[c] === 1) s = TR_NAME;
          else if (c === SP || c === HTAB) return this.#fail('obs-fold in the trailer section');
          else return this.#fail(c === LF ? 'bare LF in chunked framing' : 'invalid trailer field');
          break;
        case TR_NAME:
          if (c === 0x3a) s = TR_VALUE;
          else if (TCHAR[c] !== 1) return this.#fail(c === LF ? 'bare LF in chunked framing' : 'invalid trailer field name');
          break;
        case TR_VALUE:
          if (c === CR) s = TR_LF;
          else if (FIELD[c] !== 1) return this.#fail(c === LF ? 'bare LF in chunked framing' : 'control character in a trailer field');
          break;
        case TR_LF:
          if (c !== LF) return this.#fail('bare CR in chunked framing');
          s = TR_LINE;
          break;
        case LAST_LF:
          if (c !== LF) return this.#fail('bare CR in chunked framing');
          s = DONE;
          break;
        default:
          return this.#fail('internal scanner state');
      }
    }
    this.#s = s;
    if (this.#keepTrailer !== null && this.trailerStart >= 0 && i > this.trailerStart) {
      // Copied: the caller may reuse its buffer. Bounded by MAX_TRAILER_BYTES above.
      this.#trailerParts.push(Buffer.from(buf.subarray(this.trailerStart, i)));
    }
    return i;
  }

  #fail(msg: string): number {
    this.#error = msg;
    return -1;
  }
}
