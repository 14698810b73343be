/**
 * The two reads a `tls:` tunnel makes after the first ClientHello passed: is the server's
 * first handshake message a HelloRetryRequest (RFC 8446 §4.1.4), and where does the client's
 * second ClientHello start. A HelloRetryRequest makes the client send a second ClientHello in
 * the clear, and nothing but the gateway stops that one from naming another host than the
 * first (domain fronting after a retry: RFC 8446 §4.1.2 tells the client to send the same
 * hello, but not every server checks). Pure and total, like clienthello.ts.
 */
import { MAX_RECORD, RECORD_ALERT, RECORD_APPLICATION_DATA, RECORD_CCS, RECORD_HANDSHAKE, u16 } from './clienthello.js';

/** RFC 8446 §4.1.3: a HelloRetryRequest is a ServerHello whose random is SHA-256("HelloRetryRequest"). */
const HRR_RANDOM = Buffer.from('cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c', 'hex');
const HS_SERVER_HELLO = 2;
/** msg_type(1) length(3) legacy_version(2) random(32): what tells a HelloRetryRequest. */
const NEEDED = 38;

export type ServerFirst =
  /** Not enough bytes yet. */
  | 'incomplete'
  /** A HelloRetryRequest: the client's next ClientHello must be checked too. */
  | 'retry'
  /** Anything else (a ServerHello, an alert, a server that does not speak TLS): no second hello can follow. */
  | 'other'
  /** Handshake records that cannot be a TLS server's (empty, oversized, or a handshake header split beyond reason). */
  | 'unreadable';

/** Classifies the first bytes the server sent in a tunnel. */
export function classifyServerFirst(buf: Buffer): ServerFirst {
  if (buf.length === 0) return 'incomplete';
  if (buf[0] !== RECORD_HANDSHAKE) return 'other';
  const head = Buffer.alloc(NEEDED);
  let have = 0;
  let off = 0;
  // Ends within NEEDED records: each one is refused when empty, or adds at least one byte.
  for (;;) {
    if (off + 5 > buf.length) return 'incomplete';
    // A handshake message may span records (RFC 8446 §5.1) but not be interleaved with others.
    if (buf[off] !== RECORD_HANDSHAKE) return 'unreadable';
    const len = u16(buf, off + 3);
    if (len === 0 || len > MAX_RECORD) return 'unreadable'; // zero-length handshake fragments: RFC 8446 §5.1 MUST NOT
    const avail = Math.min(len, buf.length - off - 5, NEEDED - have);
    buf.copy(head, have, off + 5, off + 5 + avail);
    have += avail;
    if (have === NEEDED) return head[0] === HS_SERVER_HELLO && head.subarray(6, NEEDED).equals(HRR_RANDOM) ? 'retry' : 'other';
    if (have > 0 && head[0] !== HS_SERVER_HELLO) return 'other';
    if (off + 5 + len > buf.length) return 'incomplete';
    off += 5 + len;
  }
}

/**
 * `offset`: the bytes before it are whole records to pass on; `alert`: one of them was an alert
 * (the client is giving up on the handshake).
 */
export type SecondHelloStart =
  | { readonly kind: 'incomplete'; readonly offset: number; readonly alert: boolean }
  /** `offset`: the first record that is not ChangeCipherSpec, an alert or (early) application data. */
  | { readonly kind: 'at'; readonly offset: number; readonly alert: boolean };

/**
 * Skips what a client may send between its two ClientHellos: the middlebox-compatibility
 * ChangeCipherSpec (RFC 8446 §D.4), 0-RTT application data sent before it saw the retry
 * (which the server discards, RFC 8446 §4.2.10) and alerts. An alert is skipped, not taken as
 * the end of the handshake: a server may ignore a warning alert (OpenSSL does, for
 * user_canceled) and act on a ClientHello behind it, which must be checked all the same.
 * `buf` starts at a record boundary (the end of the first ClientHello, which the parser
 * requires to end with its record).
 */
export function secondHelloStart(buf: Buffer): SecondHelloStart {
  let off = 0;
  let alert = false;
  for (;;) {
    if (off + 5 > buf.length) return { kind: 'incomplete', offset: off, alert };
    const type = buf[off];
    if (type !== RECORD_CCS && type !== RECORD_ALERT && type !== RECORD_APPLICATION_DATA) return { kind: 'at', offset: off, alert };
    const len = u16(buf, off + 3);
    if (off + 5 + len > buf.length) return { kind: 'incomplete', offset: off, alert };
    if (type === RECORD_ALERT) alert = true;
    off += 5 + len;
  }
}
