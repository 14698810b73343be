/**
 * A minimal DER (ITU-T X.690) reader and writer. The reader walks untrusted input with explicit
 * bounds (no recursion on attacker-chosen depth beyond what callers ask for, lengths checked
 * against the buffer) so that a truncated or lying length never reads past the end. The writer
 * exists for the CRL: encoding 100k revoked entries through a generic ASN.1 object model is
 * orders of magnitude slower than concatenating precomputed TLVs.
 */

export interface Tlv {
  readonly tag: number;
  /** Offset of the tag byte in the buffer. */
  readonly start: number;
  /** Offset of the first content byte. */
  readonly contentStart: number;
  /** Offset one past the last content byte. */
  readonly end: number;
}

export class DerError extends Error {}

/** Reads one TLV at `pos`, bounded by `limit`. Only low-tag-number form and definite lengths (DER). */
export function readTlv(buf: Uint8Array, pos: number, limit = buf.length): Tlv {
  if (pos + 2 > limit) throw new DerError('truncated TLV');
  const tag = buf[pos] as number;
  if ((tag & 0x1f) === 0x1f) throw new DerError('high tag numbers are not used here');
  let len = buf[pos + 1] as number;
  let p = pos + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    // DER forbids the indefinite form (0x80); 4 length bytes already allow 4 GiB.
    if (n === 0 || n > 4) throw new DerError('unsupported length form');
    if (p + n > limit) throw new DerError('truncated length');
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + (buf[p + i] as number);
    p += n;
  }
  if (p + len > limit) throw new DerError('length runs past the end');
  return { tag, start: pos, contentStart: p, end: p + len };
}

/** The children of a constructed TLV, each bounded by the parent. */
export function children(buf: Uint8Array, parent: Tlv): Tlv[] {
  if ((parent.tag & 0x20) === 0) throw new DerError('not a constructed value');
  const out: Tlv[] = [];
  let p = parent.contentStart;
  while (p < parent.end) {
    const t = readTlv(buf, p, parent.end);
    out.push(t);
    p = t.end;
  }
  return out;
}

/** A complete, single top-level TLV that spans the whole input (no trailing bytes). */
export function readTop(buf: Uint8Array): Tlv {
  const t = readTlv(buf, 0);
  if (t.end !== buf.length) throw new DerError('trailing bytes after the top-level value');
  return t;
}

export const raw = (buf: Uint8Array, t: Tlv): Buffer => Buffer.from(buf.subarray(t.start, t.end));

// ---- writer ----

function lengthBytes(n: number): Buffer {
  if (n < 0x80) return Buffer.from([n]);
  const bytes: number[] = [];
  while (n > 0) {
    bytes.unshift(n & 0xff);
    n = Math.floor(n / 256);
  }
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}

export function tlv(tag: number, content: Uint8Array | readonly Uint8Array[]): Buffer {
  const body = content instanceof Uint8Array ? Buffer.from(content) : Buffer.concat(content as Uint8Array[]);
  return Buffer.concat([Buffer.from([tag]), lengthBytes(body.length), body]);
}

export const seq = (...items: Uint8Array[]): Buffer => tlv(0x30, items);

/** INTEGER from unsigned big-endian bytes (a certificate serial), adding the sign byte DER needs. */
export function uintBytes(bytes: Uint8Array): Buffer {
  let i = 0;
  while (i < bytes.length - 1 && bytes[i] === 0) i++;
  const b = Buffer.from(bytes.subarray(i));
  return tlv(0x02, (b[0] as number) & 0x80 ? Buffer.concat([Buffer.from([0]), b]) : b);
}

export function uint(n: number | bigint): Buffer {
  let hex = BigInt(n).toString(16);
  if (hex.length % 2) hex = `0${hex}`;
  return uintBytes(Buffer.from(hex, 'hex'));
}

/** RFC 5280 §4.1.2.5: UTCTime through 2049, GeneralizedTime from 2050, always in Zulu with seconds. */
export function time(ms: number): Buffer {
  const d = new Date(Math.floor(ms / 1000) * 1000);
  const iso = d.toISOString().replace(/[-:T]/g, '').slice(0, 14); // YYYYMMDDHHMMSS
  const year = d.getUTCFullYear();
  if (year >= 1950 && year < 2050) return tlv(0x17, Buffer.from(`${iso.slice(2)}Z`, 'latin1'));
  return tlv(0x18, Buffer.from(`${iso}Z`, 'latin1'));
}

/** An OBJECT IDENTIFIER from dotted text. */
export function oid(dotted: string): Buffer {
  const parts = dotted.split('.').map((s) => BigInt(s));
  const first = (parts[0] as bigint) * 40n + (parts[1] as bigint);
  const out: number[] = [];
  for (const v of [first, ...parts.slice(2)]) {
    const chunk: number[] = [];
    let x = v;
    do {
      chunk.unshift(Number(x & 0x7fn));
      x >>= 7n;
    } while (x > 0n);
    for (let i = 0; i < chunk.length - 1; i++) chunk[i] = (chunk[i] as number) | 0x80;
    out.push(...chunk);
  }
  return tlv(0x06, Buffer.from(out));
}

export const octets = (b: Uint8Array): Buffer => tlv(0x04, b);
export const bitString = (b: Uint8Array): Buffer => tlv(0x03, Buffer.concat([Buffer.from([0]), Buffer.from(b)]));
export const explicit = (n: number, inner: Uint8Array): Buffer => tlv(0xa0 | n, inner);
export const enumerated = (n: number): Buffer => tlv(0x0a, Buffer.from([n]));

/** Decodes an OBJECT IDENTIFIER's content bytes to dotted text. */
export function oidText(buf: Uint8Array, t: Tlv): string {
  if (t.tag !== 0x06) throw new DerError('expected an OBJECT IDENTIFIER');
  const parts: bigint[] = [];
  let v = 0n;
  for (let i = t.contentStart; i < t.end; i++) {
    const b = buf[i] as number;
    v = (v << 7n) | BigInt(b & 0x7f);
    if ((b & 0x80) === 0) {
      parts.push(v);
      v = 0n;
    }
  }
  if (parts.length === 0) throw new DerError('empty OBJECT IDENTIFIER');
  const first = parts[0] as bigint;
  const a = first < 80n ? first / 40n : 2n;
  return [a, first - a * 40n, ...parts.slice(1)].join('.');
}
