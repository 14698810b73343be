/**
 * Reads what the mTLS listener needs from a client certificate after the handshake (DESIGN §2
 * step 1): serial, device id from the URI SAN, validity, and whether the chain verified. The
 * identity itself (device, group, state) comes from the in-memory DeviceDirectory, never from
 * the certificate's claims alone.
 */
import type { X509Certificate } from 'node:crypto';
import type { TLSSocket } from 'node:tls';
import { DEVICE_URI_PREFIX, normalizeSerial, type PeerCertificateInfo } from '../core/principal.js';

/**
 * TLS 1.2 suites for the mTLS listener: ECDHE with AEAD only (forward secrecy, no CBC, no
 * RSA key exchange; RFC 9325 §4.2). TLS 1.3 suites are all AEAD and keep OpenSSL's defaults.
 */
export const MTLS_CIPHERS = [
  'TLS_AES_128_GCM_SHA256', 'TLS_AES_256_GCM_SHA384', 'TLS_CHACHA20_POLY1305_SHA256',
  'ECDHE-ECDSA-AES128-GCM-SHA256', 'ECDHE-ECDSA-AES256-GCM-SHA384', 'ECDHE-ECDSA-CHACHA20-POLY1305',
  'ECDHE-RSA-AES128-GCM-SHA256', 'ECDHE-RSA-AES256-GCM-SHA384', 'ECDHE-RSA-CHACHA20-POLY1305',
].join(':');

/**
 * The device id named by the certificate's URI SAN, or null. Node renders the SAN extension
 * as `URI:…, DNS:…`, quoting a value that contains a separator; a quoted URI is not a device
 * id we issue, so only plain `URI:urn:chokepoint:device:<id>` entries count. Two different
 * device URIs in one certificate make it ambiguous: null (the directory then refuses it).
 */
export function deviceIdFromSan(san: string | undefined): string | null {
  if (!san) return null;
  let found: string | null = null;
  for (const part of san.split(', ')) {
    if (!part.startsWith(`URI:${DEVICE_URI_PREFIX}`)) continue;
    const id = part.slice(4 + DEVICE_URI_PREFIX.length);
    if (!/^[A-Za-z0-9._-]{1,128}$/.test(id)) return null;
    if (found !== null && found !== id) return null;
    found = id;
  }
  return found;
}

/**
 * The presented certificate, or null when the client sent none. `issuers` are the device CAs:
 * when they sit under an enterprise root, OpenSSL verifies the chain up to that root, which
 * would also accept a certificate from a sibling CA of the same root; the leaf must therefore
 * have been signed by one of the device CAs themselves (RFC 5280 §6.1 leaves the choice of
 * trust anchor to us).
 */
export function peerInfo(socket: TLSSocket, issuers: readonly X509Certificate[]): PeerCertificateInfo | null {
  const cert = socket.getPeerX509Certificate();
  if (cert === undefined) return null;
  return {
    serial: normalizeSerial(cert.serialNumber),
    deviceId: deviceIdFromSan(cert.subjectAltName),
    notBefore: Date.parse(cert.validFrom),
    notAfter: Date.parse(cert.validTo),
    // `authorized` is OpenSSL's chain verification against the listener's `ca` (the device
    // CAs only, never the system store); with rejectUnauthorized off it reports, not refuses,
    // so the refusal can be a readable HTTP answer instead of a bare handshake failure.
    chainVerified: socket.authorized && issuers.some((i) => cert.checkIssued(i) && cert.verify(i.publicKey)),
  };
}
