/**
 * ClientHello bytes for tests: what real clients will not send on request (old versions, ECH,
 * GREASE, duplicate extensions, several host names, fragmented records), in a well-formed
 * shape, and tools to take a REAL captured hello apart and put an edited one back together
 * with every length fixed up. Shared with the gateway tests; keep the defaults stable.
 */
export interface HelloOptions {
  /** Server name; null for none. Default `tls.test`. */
  sni?: string | null;
  /** supported_versions; default [0x0304, 0x0303]. An empty array omits the extension. */
  versions?: number[];
  /** ClientHello.legacy_version; default 0x0303. */
  legacyVersion?: number;
  /** Add an encrypted_client_hello (0xfe0d) extension shaped like a real outer one. */
  ech?: boolean;
  alpn?: string[];
  /** Split the handshake message across this many records (RFC 8446 §5.1). */
  fragmentRecords?: number;
  /** Record-layer legacy version; default 0x0301. */
  recordVersion?: number;
  /** Extra raw extensions [type, data], appended in order. */
  extra?: [number, Buffer][];
  /** Send server_name twice (a duplicate extension). */
  duplicateSni?: boolean;
  /** Put these host_name entries in ONE server_name extension (after `sni`'s, if any). */
  moreHostNames?: string[];
}

export function u16(n: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n & 0xffff);
  return b;
}

function ext(type: number, data: Buffer): Buffer {
  return Buffer.concat([u16(type), u16(data.length), data]);
}

/** server_name extension data holding one host_name entry per name (RFC 6066 §3). */
export function serverNameData(...names: string[]): Buffer {
  const entries = Buffer.concat(names.map((name) => {
    const n = Buffer.from(name, 'latin1');
    return Buffer.concat([Buffer.from([0]), u16(n.length), n]);
  }));
  return Buffer.concat([u16(entries.length), entries]);
}

/** A whole server_name extension (type, length, data). */
export function serverNameExt(name: string): Buffer {
  return ext(0, serverNameData(name));
}

export function alpnData(protocols: string[]): Buffer {
  const list = Buffer.concat(protocols.map((p) => Buffer.concat([Buffer.from([p.length]), Buffer.from(p, 'latin1')])));
  return Buffer.concat([u16(list.length), list]);
}

export function supportedVersionsData(versions: number[]): Buffer {
  const v = Buffer.concat(versions.map(u16));
  return Buffer.concat([Buffer.from([v.length]), v]);
}

/** An outer ECH extension: type outer(0), HPKE suite, config id, enc, payload (RFC 9849 §5). */
export function echData(): Buffer {
  return Buffer.concat([Buffer.from([0]), u16(1), u16(1), Buffer.from([7]), u16(32), Buffer.alloc(32, 1), u16(16), Buffer.alloc(16, 2)]);
}

/** Wraps a handshake message in `fragments` records of (nearly) equal size. */
export function toRecords(msg: Buffer, fragments = 1, recordVersion = 0x0301): Buffer {
  const n = Math.max(1, Math.min(fragments, msg.length));
  const size = Math.ceil(msg.length / n);
  const records: Buffer[] = [];
  for (let i = 0; i < msg.length; i += size) {
    const frag = msg.subarray(i, i + size);
    records.push(Buffer.concat([Buffer.from([22]), u16(recordVersion), u16(frag.length), frag]));
  }
  return Buffer.concat(records);
}

export function buildClientHello(o: HelloOptions = {}): Buffer {
  const sni = o.sni === undefined ? 'tls.test' : o.sni;
  const versions = o.versions ?? [0x0304, 0x0303];
  const exts: [number, Buffer][] = [];
  const names = [...(sni === null ? [] : [sni]), ...(o.moreHostNames ?? [])];
  if (names.length > 0) {
    exts.push([0, serverNameData(...names)]);
    if (o.duplicateSni) exts.push([0, serverNameData(...names)]);
  }
  if (versions.length > 0) exts.push([43, supportedVersionsData(versions)]);
  // supported_groups x25519 and a key_share with a 32-byte x25519 key, as TLS 1.3 clients send.
  exts.push([10, Buffer.concat([u16(2), u16(0x001d)])]);
  exts.push([51, Buffer.concat([u16(36), u16(0x001d), u16(32), Buffer.alloc(32, 7)])]);
  exts.push([13, Buffer.concat([u16(4), u16(0x0403), u16(0x0804)])]);
  if (o.alpn) exts.push([16, alpnData(o.alpn)]);
  if (o.ech) exts.push([0xfe0d, echData()]);
  for (const e of o.extra ?? []) exts.push(e);
  const body = Buffer.concat([
    u16(o.legacyVersion ?? 0x0303),
    Buffer.alloc(32, 0x42), // random
    Buffer.from([32]), Buffer.alloc(32, 0x11), // legacy_session_id
    u16(6), u16(0x1301), u16(0xc02f), u16(0x009c), // cipher_suites
    Buffer.from([1, 0]), // legacy_compression_methods: null
    encodeExtensions(exts),
  ]);
  return toRecords(handshake(body), o.fragmentRecords ?? 1, o.recordVersion ?? 0x0301);
}

function handshake(body: Buffer): Buffer {
  const len = body.length;
  return Buffer.concat([Buffer.from([1, (len >> 16) & 0xff, (len >> 8) & 0xff, len & 0xff]), body]);
}

function encodeExtensions(exts: readonly [number, Buffer][]): Buffer {
  const block = Buffer.concat(exts.map(([t, d]) => ext(t, d)));
  return Buffer.concat([u16(block.length), block]);
}

/** A ClientHello taken apart: everything before the extensions, and the extensions in order. */
export interface HelloParts {
  readonly recordVersion: number;
  /** legacy_version .. legacy_compression_methods, unchanged. */
  readonly fixed: Buffer;
  readonly extensions: [number, Buffer][];
}

/**
 * Takes a well-formed ClientHello apart (any number of records). Throws on malformed input:
 * this is for tests that edit real captures, which are well-formed by construction.
 */
export function splitHello(records: Buffer): HelloParts {
  const frags: Buffer[] = [];
  let off = 0;
  let need = -1;
  let have = 0;
  while (need < 0 || have < need) {
    if (records[off] !== 22) throw new Error(`not a handshake record at ${off}`);
    const len = records.readUInt16BE(off + 3);
    frags.push(records.subarray(off + 5, off + 5 + len));
    have += len;
    off += 5 + len;
    if (need < 0 && have >= 4) need = 4 + Buffer.concat(frags).readUIntBE(1, 3);
  }
  const body = Buffer.concat(frags).subarray(4, need);
  let p = 34;
  p += 1 + (body[p] as number); // session id
  p += 2 + body.readUInt16BE(p); // cipher suites
  p += 1 + (body[p] as number); // compression methods
  const fixed = body.subarray(0, p);
  const extensions: [number, Buffer][] = [];
  if (p >= body.length) return { recordVersion: records.readUInt16BE(1), fixed: Buffer.from(fixed), extensions }; // none (pre-1.3)
  const end = p + 2 + body.readUInt16BE(p);
  for (p += 2; p < end;) {
    const len = body.readUInt16BE(p + 2);
    extensions.push([body.readUInt16BE(p), Buffer.from(body.subarray(p + 4, p + 4 + len))]);
    p += 4 + len;
  }
  return { recordVersion: records.readUInt16BE(1), fixed: Buffer.from(fixed), extensions };
}

/** Puts a (possibly edited) hello back together, lengths recomputed (always with an extensions block). */
export function joinHello(parts: HelloParts, fragmentRecords = 1): Buffer {
  return toRecords(handshake(Buffer.concat([parts.fixed, encodeExtensions(parts.extensions)])), fragmentRecords, parts.recordVersion);
}

/**
 * Edits a real hello: `edit` receives its extensions (a copy) and returns the new list.
 * Extensions whose order matters (pre_shared_key must stay last, RFC 8446 §4.2.11) are the
 * caller's concern.
 */
export function editHello(records: Buffer, edit: (exts: [number, Buffer][]) => [number, Buffer][], fragmentRecords = 1): Buffer {
  const parts = splitHello(records);
  return joinHello({ ...parts, extensions: edit(parts.extensions.map(([t, d]) => [t, Buffer.from(d)])) }, fragmentRecords);
}

/** Inserts `e` before a trailing pre_shared_key (41), which must stay last. */
export function insertExtension(exts: [number, Buffer][], e: [number, Buffer]): [number, Buffer][] {
  const last = exts[exts.length - 1];
  if (last !== undefined && last[0] === 41) return [...exts.slice(0, -1), e, last];
  return [...exts, e];
}

/** SHA-256("HelloRetryRequest") (RFC 8446 §4.1.3): the random of a HelloRetryRequest. */
export const HRR_RANDOM = Buffer.from('cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c', 'hex');

/**
 * A TLS 1.3 ServerHello, or with `retry` a HelloRetryRequest asking for a P-256 key share
 * (RFC 8446 §4.1.3–4.1.4), in `fragmentRecords` handshake records.
 */
export function buildServerHello(o: { retry?: boolean; fragmentRecords?: number } = {}): Buffer {
  const exts: [number, Buffer][] = [[43, u16(0x0304)]];
  exts.push(o.retry ? [51, u16(0x0017)] : [51, Buffer.concat([u16(0x001d), u16(32), Buffer.alloc(32, 9)])]);
  const body = Buffer.concat([
    u16(0x0303),
    o.retry ? HRR_RANDOM : Buffer.alloc(32, 0x5a),
    Buffer.from([32]), Buffer.alloc(32, 0x11), // legacy_session_id_echo
    u16(0x1301), Buffer.from([0]),
    encodeExtensions(exts),
  ]);
  const len = body.length;
  return toRecords(Buffer.concat([Buffer.from([2, (len >> 16) & 0xff, (len >> 8) & 0xff, len & 0xff]), body]), o.fragmentRecords ?? 1, 0x0303);
}

/** A record of another content type: 20 ChangeCipherSpec, 21 alert, 23 application data. */
export function record(type: number, payload: Buffer): Buffer {
  return Buffer.concat([Buffer.from([type, 3, 3]), u16(payload.length), payload]);
}
