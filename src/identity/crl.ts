/**
 * Certificate revocation lists (RFC 5280 §5), encoded by hand: a CRL of 100k entries must be
 * generated in seconds, and every entry is a tiny fixed-shape SEQUENCE that is cheapest to write
 * as bytes. The issuer Name is copied from the CA certificate's own DER (§5.1.2.3 requires the
 * exact match that verifiers such as `openssl verify -crl_check` compare).
 */
import { sign } from 'node:crypto';
import type { LoadedCa } from './ca.js';
import { bitString, enumerated, explicit, octets, oid, seq, time, tlv, uint, uintBytes } from './der.js';

/** RFC 5280 §5.3.1 CRLReason values. */
export const CRL_REASONS = {
  unspecified: 0,
  key_compromise: 1,
  ca_compromise: 2,
  affiliation_changed: 3,
  superseded: 4,
  cessation_of_operation: 5,
  certificate_hold: 6,
  privilege_withdrawn: 9,
} as const;
export type CrlReasonName = keyof typeof CRL_REASONS;

export function reasonCode(name: string | null): number {
  if (name === null) return 0;
  if (name === 'device_revoked' || name === 'revoked') return CRL_REASONS.privilege_withdrawn;
  if (name === 'device_disabled' || name === 'disabled') return CRL_REASONS.certificate_hold;
  return (CRL_REASONS as Record<string, number>)[name] ?? 0;
}

export interface CrlEntry {
  /** Lowercase hex. */
  readonly serial: string;
  readonly revokedAt: number;
  /** CRLReason; 0 (unspecified) is written as no reasonCode extension, as §5.3.1 asks. */
  readonly reason: number;
}

const OID = {
  ecdsaSha256: '1.2.840.10045.4.3.2',
  ecdsaSha384: '1.2.840.10045.4.3.3',
  reasonCode: '2.5.29.21',
  crlNumber: '2.5.29.20',
  authorityKeyId: '2.5.29.35',
} as const;

const ext = (id: string, value: Uint8Array): Buffer => seq(oid(id), octets(value));

// Entries with the same reason share their extension bytes; precompute the 10 possible ones.
const reasonExts = new Map<number, Buffer>();
function reasonExt(r: number): Buffer {
  let b = reasonExts.get(r);
  if (!b) {
    b = seq(ext(OID.reasonCode, enumerated(r)));
    reasonExts.set(r, b);
  }
  return b;
}

export interface BuildCrlOptions {
  readonly ca: LoadedCa;
  readonly entries: readonly CrlEntry[];
  readonly thisUpdate: number;
  readonly nextUpdate: number;
  /** Monotonically increasing per CA (§5.2.3). */
  readonly number: bigint;
}

export function buildCrl(o: BuildCrlOptions): Buffer {
  const alg = seq(oid(o.ca.hash === 'sha256' ? OID.ecdsaSha256 : OID.ecdsaSha384));
  // revocationDate values repeat a lot (bulk revocations): cache their encodings too.
  const times = new Map<number, Buffer>();
  const entries: Buffer[] = [];
  for (const e of o.entries) {
    const sec = Math.floor(e.revokedAt / 1000);
    let t = times.get(sec);
    if (!t) {
      t = time(sec * 1000);
      times.set(sec, t);
    }
    const parts = [uintBytes(Buffer.from(e.serial.length % 2 ? `0${e.serial}` : e.serial, 'hex')), t];
    if (e.reason !== 0) parts.push(reasonExt(e.reason));
    entries.push(seq(...parts));
  }
  const tbsParts: Buffer[] = [
    uint(1), // v2: required when extensions are present (§5.1.2.1)
    alg,
    Buffer.from(o.ca.subjectDer),
    time(o.thisUpdate),
    time(o.nextUpdate), // §5.1.2.5: conforming CRL issuers MUST include nextUpdate
  ];
  if (entries.length > 0) tbsParts.push(seq(...entries)); // an empty list is omitted, not encoded empty
  tbsParts.push(explicit(0, seq(
    ext(OID.authorityKeyId, seq(tlv(0x80, o.ca.keyId))), // §5.2.1: MUST
    ext(OID.crlNumber, uint(o.number)), // §5.2.3: MUST
  )));
  const tbs = seq(...tbsParts);
  const signature = sign(o.ca.hash, tbs, { key: o.ca.privateKey, dsaEncoding: 'der' });
  return seq(tbs, alg, bitString(signature));
}
