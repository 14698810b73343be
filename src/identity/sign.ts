/**
 * Issuance step 3, sign: the CA signs a certificate whose every field comes from the grant (the
 * store's view of the device), never from the request, except the public key it proved it holds.
 */
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { isIP } from 'node:net';
import { ChokepointError } from '../core/errors.js';
import { DEVICE_URI_PREFIX } from '../core/principal.js';
import type { LoadedCa } from './ca.js';
import { x509 } from './x509.js';

export const ASSET_URI_PREFIX = 'urn:chokepoint:asset:';
/** RFC 5280 §4.1.2.5 tolerance for clocks that are a little behind the gateway's. */
export const BACKDATE_MS = 5 * 60_000;
export const MIN_VALIDITY_MS = 5 * 60_000;

export interface IssuanceGrant {
  readonly deviceId: string;
  readonly group: string;
  readonly assetId: string | null;
  readonly validityMs: number;
}

export interface IssuedCertificate {
  readonly serial: string;
  readonly pem: string;
  readonly der: Buffer;
  readonly notBefore: number;
  readonly notAfter: number;
  readonly caId: string;
}

/**
 * A random positive serial of 126 bits with a non-zero first byte, so its hex form has no leading
 * zero byte (the store contract) and is unpredictable (CA/B BR §7.1: ≥ 64 bits of CSPRNG output,
 * which defeats chosen-prefix collision attacks on the signature).
 */
export function newSerial(): string {
  const b = randomBytes(16);
  b[0] = ((b[0] as number) & 0x7f) | 0x40;
  return b.toString('hex');
}

export function deviceUris(grant: { deviceId: string; assetId: string | null }): string[] {
  const uris = [`${DEVICE_URI_PREFIX}${grant.deviceId}`];
  if (grant.assetId !== null) uris.push(`${ASSET_URI_PREFIX}${encodeURIComponent(grant.assetId)}`);
  return uris;
}

const sigAlg = (ca: LoadedCa) => ({ name: 'ECDSA', hash: ca.hash === 'sha256' ? 'SHA-256' : 'SHA-384' });

function window(ca: LoadedCa, validityMs: number, now: number): { notBefore: number; notAfter: number } {
  const notBefore = Math.max(now - BACKDATE_MS, ca.notBefore);
  const notAfter = Math.min(now + validityMs, ca.notAfter);
  if (notAfter - now < MIN_VALIDITY_MS) {
    throw new ChokepointError('CA_INVALID', 'the issuing CA expires too soon to issue a certificate: rotate the CA');
  }
  return { notBefore, notAfter };
}

async function finish(cert: InstanceType<typeof x509.X509Certificate>, serial: string, caId: string): Promise<IssuedCertificate> {
  return {
    serial,
    pem: cert.toString('pem'),
    der: Buffer.from(cert.rawData),
    notBefore: cert.notBefore.getTime(),
    notAfter: cert.notAfter.getTime(),
    caId,
  };
}

/** A device certificate: clientAuth only, not a CA, URI SANs naming the device and its asset. */
export async function signDeviceCertificate(opts: { ca: LoadedCa; grant: IssuanceGrant; spkiDer: Uint8Array; now: number }): Promise<IssuedCertificate> {
  const { ca, grant } = opts;
  const validity = Math.max(grant.validityMs, MIN_VALIDITY_MS);
  const { notBefore, notAfter } = window(ca, validity, opts.now);
  const serial = newSerial();
  const spki = new Uint8Array(opts.spkiDer);
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serial,
    subject: [{ CN: [grant.deviceId] }],
    issuer: new x509.Name(new Uint8Array(ca.subjectDer)),
    notBefore: new Date(notBefore),
    notAfter: new Date(notAfter),
    publicKey: spki,
    signingKey: ca.signingKey,
    signingAlgorithm: sigAlg(ca),
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.clientAuth], false),
      new x509.SubjectAlternativeNameExtension(deviceUris(grant).map((value) => ({ type: 'url' as const, value })), false),
      new x509.AuthorityKeyIdentifierExtension(ca.keyId.toString('hex'), false),
      await x509.SubjectKeyIdentifierExtension.create(spki),
    ],
  });
  return finish(cert, serial, ca.id);
}

export interface ServerCertificate {
  /** The leaf, then the CA and any chain above it. */
  readonly certPem: string;
  readonly keyPem: string;
  /** The issuing CA alone, for clients to trust or pin (SHA-256 of its DER). */
  readonly caPem: string;
  readonly caSha256: string;
  readonly notAfter: number;
}

/**
 * A TLS server certificate for the gateway's own listeners (control and mTLS proxy), so agents
 * need trust only the device CA, pinned by fingerprint. serverAuth only; names are DNS or IP SANs.
 */
export async function signServerCertificate(opts: { ca: LoadedCa; names: readonly string[]; validityMs?: number; now?: number }): Promise<ServerCertificate> {
  if (opts.names.length === 0) throw new ChokepointError('USAGE', 'a server certificate needs at least one name');
  const now = opts.now ?? Date.now();
  const { notBefore, notAfter } = window(opts.ca, opts.validityMs ?? 90 * 86_400_000, now);
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const spki = new Uint8Array(publicKey.export({ type: 'spki', format: 'der' }));
  const serial = newSerial();
  const names = opts.names.map((n) => (isIP(n.replace(/^\[|\]$/g, '')) ? { type: 'ip' as const, value: n.replace(/^\[|\]$/g, '') } : { type: 'dns' as const, value: n }));
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serial,
    subject: [{ CN: [opts.names[0] as string] }],
    issuer: new x509.Name(new Uint8Array(opts.ca.subjectDer)),
    notBefore: new Date(notBefore),
    notAfter: new Date(notAfter),
    publicKey: spki,
    signingKey: opts.ca.signingKey,
    signingAlgorithm: sigAlg(opts.ca),
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth], false),
      new x509.SubjectAlternativeNameExtension(names, false),
      new x509.AuthorityKeyIdentifierExtension(opts.ca.keyId.toString('hex'), false),
    ],
  });
  return {
    certPem: [cert.toString('pem'), opts.ca.certPem.trim(), ...opts.ca.chainPems].join('\n') + '\n',
    keyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string,
    caPem: opts.ca.certPem,
    caSha256: opts.ca.fingerprint256,
    notAfter,
  };
}
