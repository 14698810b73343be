/**
 * TLS ClientHello parser (RFC 8446 §4.1.2, RFC 5246 §7.4.1.2). Reads what the client sent
 * after `200 Connection established`, reassembling a handshake message fragmented across
 * records (RFC 8446 §5.1), and extracts what the gateway checks: SNI (RFC 6066 §3), offered
 * versions (supported_versions, RFC 8446 §4.2.1; GREASE values of RFC 8701 ignored), ECH
 * (encrypted_client_hello, 0xfe0d) and ALPN (RFC 7301).
 *
 * The gateway decides on this parse and then replays the bytes upstream untouched, so any
 * ambiguity is refused rather than guessed (duplicate extensions, several host names,
 * trailing bytes, vectors whose lengths do not add up). Pure and total: any bytes give a
 * result; every length is checked before it is used; nothing is read out of bounds.
 */

export interface ClientHelloInfo {
  /** Lowercased host_name from server_name, one trailing dot removed; null when absent. */
  readonly sni: string | null;
  readonly legacyVersion: number;
  /** From supported_versions, GREASE removed, in the client's order; empty when absent. */
  readonly supportedVersions: readonly number[];
  /** The highest version offered: max(supportedVersions), or legacyVersion without any. */
  readonly maxVersion: number;
  /** encrypted_client_hello (0xfe0d) present. Note that GREASE ECH (RFC 9849 §6.2) looks the same by design. */
  readonly ech: boolean;
  readonly alpn: readonly string[];
  /** Bytes of the records that carried the ClientHello (what follows them is not counted). */
  readonly bytes: number;
}

export type HelloResult =
  | { readonly kind: 'incomplete' }
  | { readonly kind: 'not_tls'; readonly detail: string }
  | { readonly kind: 'error'; readonly detail: string }
  | { readonly kind: 'ok'; readonly info: ClientHelloInfo };

export const TLS_VERSION = { '1.0': 0x0301, '1.1': 0x0302, '1.2': 0x0303, '1.3': 0x0304 } as const;

export function tlsVersionName(v: number): string {
  switch (v) {
    case 0x0300: return 'ssl3';
    case 0x0301: return '1.0';
    case 0x0302: return '1.1';
    case 0x0303: return '1.2';
    case 0x0304: return '1.3';
    default: return Number.isInteger(v) && v >= 0 && v <= 0xffff ? `0x${v.toString(16).padStart(4, '0')}` : 'unknown';
  }
}

/** TLS record content types (RFC 8446 §5.1). */
export const RECORD_CCS = 20;
export const RECORD_ALERT = 21;
export const RECORD_HANDSHAKE = 22;
export const RECORD_APPLICATION_DATA = 23;
const HS_CLIENT_HELLO = 1;
/** RFC 8446 §5.1: TLSPlaintext.length MUST NOT exceed 2^14; we allow RFC 5246's 2^14 + 256 slack for old stacks. */
export const MAX_RECORD = (1 << 14) + 256;
/** One full record plus room for the headers of a few more when the hello is fragmented. */
export const DEFAULT_MAX_HELLO_BYTES = (1 << 14) + 5 + 1024;

const EXT_SERVER_NAME = 0;
const EXT_ALPN = 16;
const EXT_SUPPORTED_VERSIONS = 43;
const EXT_ECH = 0xfe0d;

const INCOMPLETE = Object.freeze({ kind: 'incomplete' as const });
const TOO_LARGE = Object.freeze({ kind: 'error' as const, detail: 'ClientHello too large' });

/** RFC 8701: GREASE values are 0x?a?a with both bytes equal. */
export function isGrease(v: number): boolean {
  return (v & 0x0f0f) === 0x0a0a && (v >> 8) === (v & 0xff);
}

export function u16(b: Buffer, p: number): number {
  return ((b[p] as number) << 8) | (b[p + 1] as number);
}

/** More records than any TLS stack uses for one ClientHello (see parseClientHello). */
export const MAX_HELLO_RECORDS = 64;

export function parseClientHello(buf: Buffer, maxBytes: number = DEFAULT_MAX_HELLO_BYTES): HelloResult {
  const max = maxBytes >= 0 ? maxBytes : 0; // NaN or negative: nothing fits
  const n = buf.length;
  if (n === 0) return INCOMPLETE;
  // An SSLv2-compatible hello (first byte 0x80) or anything else is not a TLS record.
  if (buf[0] !== RECORD_HANDSHAKE) return { kind: 'not_tls', detail: 'first byte is not a TLS handshake record' };
  if (n >= 2 && buf[1] !== 0x03) return { kind: 'not_tls', detail: 'record version is not 3.x' };
  // Reassemble the handshake message from consecutive handshake records (RFC 8446 §5.1).
  const parts: Buffer[] = [];
  let have = 0; // handshake bytes collected
  let need = -1; // the handshake message's length incl. its 4-byte header, once known
  let off = 0; // start of the next record
  while (need < 0 || have < need) {
    if (off + 5 > n) return n > max ? TOO_LARGE : INCOMPLETE;
    if (buf[off] !== RECORD_HANDSHAKE) return { kind: 'error', detail: 'non-handshake record inside the ClientHello' };
    if (buf[off + 1] !== 0x03) return { kind: 'error', detail: 'bad record version' };
    const len = u16(buf, off + 3);
    if (len === 0) return { kind: 'error', detail: 'empty handshake record' }; // RFC 8446 §5.1: MUST NOT
    if (len > MAX_RECORD) return { kind: 'error', detail: 'record too long' };
    if (off + 5 + len > max) return TOO_LARGE;
    if (off === 0 && buf[5] !== undefined && buf[5] !== HS_CLIENT_HELLO) {
      return { kind: 'error', detail: 'first handshake message is not a ClientHello' };
    }
    if (off + 5 + len > n) return INCOMPLETE;
    parts.push(buf.subarray(off + 5, off + 5 + len));
    // A ClientHello fits one record (2^14 bytes) and real stacks send one or two. Thousands of
    // one-byte records are a CPU attack: each read re-walks them all (about 2 s of CPU for
    // 64 KiB from one client).
    if (parts.length > MAX_HELLO_RECORDS) return { kind: 'error', detail: `ClientHello split over more than ${MAX_HELLO_RECORDS} records` };
    have += len;
    off += 5 + len;
    if (need < 0 && have >= 4) {
      const h = parts.length === 1 ? (parts[0] as Buffer) : Buffer.concat(parts, 4);
      need = 4 + (((h[1] as number) << 16) | ((h[2] as number) << 8) | (h[3] as number));
      if (need > max) return TOO_LARGE;
    }
  }
  // A first flight is the ClientHello alone; more handshake bytes in its last record are not.
  if (have > need) return { kind: 'error', detail: 'data after the ClientHello in its record' };
  const msg = parts.length === 1 ? (parts[0] as Buffer) : Buffer.concat(parts, have);
  const info = parseBody(msg.subarray(4, need), off);
  return typeof info === 'string' ? { kind: 'error', detail: info } : { kind: 'ok', info };
}

/** Parses the ClientHello body; returns an error string on malformed input. */
function parseBody(b: Buffer, bytes: number): ClientHelloInfo | string {
  const end = b.length;
  // legacy_version, random[32], legacy_session_id<0..32>
  if (end < 2 + 32 + 1) return 'truncated ClientHello';
  const legacyVersion = u16(b, 0);
  let p = 34;
  const sidLen = b[p] as number;
  p += 1;
  if (sidLen > 32 || p + sidLen + 2 > end) return 'bad legacy_session_id';
  p += sidLen;
  // cipher_suites<2..2^16-2>
  const csLen = u16(b, p);
  p += 2;
  if (csLen < 2 || csLen % 2 !== 0 || p + csLen + 1 > end) return 'bad cipher_suites';
  p += csLen;
  // legacy_compression_methods<1..2^8-1>
  const cmLen = b[p] as number;
  p += 1;
  if (cmLen < 1 || p + cmLen > end) return 'bad legacy_compression_methods';
  p += cmLen;
  let sni: string | null = null;
  let supportedVersions: number[] = [];
  let ech = false;
  let alpn: string[] = [];
  // Extensions may be absent altogether before TLS 1.3 (RFC 5246 §7.4.1.2).
  if (p < end) {
    if (p + 2 > end) return 'truncated extensions';
    const extLen = u16(b, p);
    p += 2;
    if (p + extLen !== end) return 'extensions length does not match the ClientHello';
    const seen = new Set<number>();
    while (p < end) {
      if (p + 4 > end) return 'truncated extension';
      const type = u16(b, p);
      const len = u16(b, p + 2);
      p += 4;
      if (p + len > end) return 'truncated extension';
      // RFC 8446 §4.2: there MUST NOT be more than one extension of the same type.
      if (seen.has(type)) return `duplicate extension ${type}`;
      seen.add(type);
      const e = b.subarray(p, p + len);
      p += len;
      if (type === EXT_SERVER_NAME) {
        const r = parseServerName(e);
        if (r.error !== null) return r.error;
        sni = r.name;
      } else if (type === EXT_SUPPORTED_VERSIONS) {
        // ProtocolVersion versions<2..254> (RFC 8446 §4.2.1)
        const k = e.length > 0 ? (e[0] as number) : 0;
        if (k < 2 || k % 2 !== 0 || k + 1 !== e.length) return 'bad supported_versions';
        supportedVersions = [];
        for (let i = 1; i < e.length; i += 2) {
          const v = u16(e, i);
          if (!isGrease(v)) supportedVersions.push(v);
        }
      } else if (type === EXT_ECH) {
        ech = true;
      } else if (type === EXT_ALPN) {
        const r = parseAlpn(e);
        if (r === null) return 'bad application_layer_protocol_negotiation';
        alpn = r;
      }
    }
  }
  let maxVersion = legacyVersion;
  if (supportedVersions.length > 0) {
    maxVersion = 0;
    for (const v of supportedVersions) if (v > maxVersion) maxVersion = v;
  }
  return { sni, legacyVersion, supportedVersions, maxVersion, ech, alpn, bytes };
}

/** ServerNameList server_name_list<1..2^16-1> (RFC 6066 §3). */
function parseServerName(e: Buffer): { name: string | null; error: string | null } {
  if (e.length < 2 || u16(e, 0) + 2 !== e.length) return { name: null, error: 'bad server_name length' };
  if (e.length === 2) return { name: null, error: 'empty server_name list' };
  let p = 2;
  let name: string | null = null;
  while (p < e.length) {
    if (p + 3 > e.length) return { name: null, error: 'truncated server_name' };
    const type = e[p] as number;
    const len = u16(e, p + 1);
    p += 3;
    if (p + len > e.length) return { name: null, error: 'truncated server_name' };
    if (type === 0) {
      // "The ServerNameList MUST NOT contain more than one name of the same name_type."
      if (name !== null) return { name: null, error: 'more than one host_name in server_name' };
      if (len === 0) return { name: null, error: 'empty host_name' };
      for (let i = p; i < p + len; i++) {
        const c = e[i] as number;
        if (c <= 0x20 || c >= 0x7f) return { name: null, error: 'host_name is not printable ASCII' };
      }
      let end = p + len;
      if (e[end - 1] === 0x2e) end--; // one trailing dot: the same name (RFC 6066 §3 forbids it, clients send it)
      if (end === p) return { name: null, error: 'empty host_name' };
      name = e.toString('latin1', p, end).toLowerCase();
    }
    p += len;
  }
  return { name, error: null };
}

/** ProtocolNameList protocol_name_list<2..2^16-1>, ProtocolName<1..2^8-1> (RFC 7301 §3.1). */
function parseAlpn(e: Buffer): string[] | null {
  if (e.length < 3 || u16(e, 0) + 2 !== e.length) return null;
  const out: string[] = [];
  let p = 2;
  while (p < e.length) {
    const len = e[p] as number;
    p += 1;
    if (len === 0 || p + len > e.length) return null;
    out.push(e.toString('latin1', p, p + len));
    p += len;
  }
  return out;
}
