/**
 * "certs-only" CMS SignedData (RFC 5652 §5, RFC 7030 §4.1.3): a degenerate SignedData with no
 * content and no signers, only certificates. It is what EST returns for /cacerts and enrollment.
 */
import { explicit, oid, seq, tlv, uint } from './der.js';

const ID_SIGNED_DATA = '1.2.840.113549.1.7.2';
const ID_DATA = '1.2.840.113549.1.7.1';

export function certsOnly(certsDer: readonly Uint8Array[]): Buffer {
  const signedData = seq(
    uint(1), // CMSVersion 1: no attribute certificates, no other formats (RFC 5652 §5.1)
    tlv(0x31, []), // digestAlgorithms: none, there are no signers
    seq(oid(ID_DATA)), // encapContentInfo without eContent
    tlv(0xa0, certsDer.map((c) => Buffer.from(c))), // [0] IMPLICIT CertificateSet
    tlv(0x31, []), // signerInfos: none
  );
  return seq(oid(ID_SIGNED_DATA), explicit(0, signedData));
}

/** Base64 with line breaks every 64 characters, as RFC 7030 §4.1.3 answers look in practice. */
export function base64Lines(der: Uint8Array): string {
  return (Buffer.from(der).toString('base64').match(/.{1,64}/g) ?? []).join('\r\n') + '\r\n';
}

export function pemOf(label: string, der: Uint8Array): string {
  return `-----BEGIN ${label}-----\n${(Buffer.from(der).toString('base64').match(/.{1,64}/g) ?? []).join('\n')}\n-----END ${label}-----\n`;
}
