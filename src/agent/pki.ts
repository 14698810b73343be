/**
 * Device-side PKI helpers: the key pair (made here, never sent anywhere), the PKCS#10 request,
 * fingerprints, and the certs-only PKCS#7 that EST answers with (RFC 7030 §4.1.3, RFC 5652).
 */
import 'reflect-metadata';
import { createHash, webcrypto } from 'node:crypto';
import { AsnConvert } from '@peculiar/asn1-schema';
import { ContentInfo, SignedData, id_signedData } from '@peculiar/asn1-cms';
import * as x509 from '@peculiar/x509';
import { ChokepointError } from '../core/errors.js';

x509.cryptoProvider.set(webcrypto as unknown as Crypto);

const ALG = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;

export interface DeviceKey { readonly keys: CryptoKeyPair; readonly pem: string }

/** ECDSA P-256 (DESIGN §4), made on the device. */
export async function generateKey(): Promise<DeviceKey> {
  const keys = await webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify']) as unknown as CryptoKeyPair;
  const der = await webcrypto.subtle.exportKey('pkcs8', keys.privateKey as unknown as webcrypto.CryptoKey);
  return { keys, pem: x509.PemConverter.encode(der, 'PRIVATE KEY') };
}

/** Reloads a PKCS#8 PEM key (a pending enrollment polls with the key it started with). */
export async function importKey(pem: string): Promise<DeviceKey> {
  const der = x509.PemConverter.decode(pem)[0];
  if (der === undefined) throw new ChokepointError('AGENT_NOT_ENROLLED', 'key.pem holds no PEM key');
  const privateKey = await webcrypto.subtle.importKey('pkcs8', der, ALG, true, ['sign']) as unknown as CryptoKey;
  // The public half, recomputed from the private key's JWK (x, y are in it).
  const jwk = await webcrypto.subtle.exportKey('jwk', privateKey as unknown as webcrypto.CryptoKey);
  const publicKey = await webcrypto.subtle.importKey('jwk', { kty: jwk.kty, crv: jwk.crv, x: jwk.x, y: jwk.y }, ALG, true, ['verify']) as unknown as CryptoKey;
  return { keys: { privateKey, publicKey }, pem };
}

export async function makeCsr(key: DeviceKey, opts: { subject?: string; sans?: x509.JsonGeneralNames } = {}): Promise<Buffer> {
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: opts.subject ?? 'CN=chokepoint-device',
    keys: key.keys,
    signingAlgorithm: ALG,
    extensions: opts.sans && opts.sans.length > 0 ? [new x509.SubjectAlternativeNameExtension(opts.sans)] : [],
  });
  return Buffer.from(csr.rawData);
}

export function sha256Hex(der: Uint8Array): string {
  return createHash('sha256').update(der).digest('hex');
}

/** Accepts `AB:CD:…`, `abcd…`, with an optional `sha256:` prefix; returns 64 lowercase hex digits or null. */
export function normalizeFingerprint(text: string): string | null {
  const t = text.trim().replace(/^sha-?256[:=]/i, '').replace(/[:\s]/g, '').toLowerCase();
  return /^[0-9a-f]{64}$/.test(t) ? t : null;
}

/** The certificates of a base64 certs-only SignedData body. Throws AGENT_SERVER_ERROR on anything else. */
export function parseCertsOnly(body: string): Buffer[] {
  try {
    const b64 = body.replace(/[\r\n\s]/g, '');
    if (!/^[A-Za-z0-9+/]+={0,2}$/.test(b64)) throw new Error('not base64');
    const ci = AsnConvert.parse(Buffer.from(b64, 'base64'), ContentInfo);
    if (ci.contentType !== id_signedData) throw new Error(`content type ${ci.contentType} is not SignedData`);
    const sd = AsnConvert.parse(ci.content, SignedData);
    const out: Buffer[] = [];
    for (const c of sd.certificates ?? []) if (c.certificate) out.push(Buffer.from(AsnConvert.serialize(c.certificate)));
    if (out.length === 0) throw new Error('no certificates');
    return out;
  } catch (e) {
    throw new ChokepointError('AGENT_SERVER_ERROR', `the server's answer is not a certs-only PKCS#7 (RFC 7030 §4.1.3): ${(e as Error).message}`, { cause: e });
  }
}

export function toPem(der: Uint8Array): string {
  return x509.PemConverter.encode(Uint8Array.from(der).buffer, 'CERTIFICATE');
}

export function certOf(pemOrDer: string | Uint8Array): x509.X509Certificate {
  return new x509.X509Certificate(typeof pemOrDer === 'string' ? pemOrDer : Uint8Array.from(pemOrDer).buffer);
}

export function isCa(c: x509.X509Certificate): boolean {
  const bc = c.getExtension(x509.BasicConstraintsExtension);
  return bc?.ca === true;
}

/** Does the certificate carry this key pair's public key? */
export async function certMatchesKey(c: x509.X509Certificate, key: DeviceKey): Promise<boolean> {
  const spki = Buffer.from(await webcrypto.subtle.exportKey('spki', key.keys.publicKey as unknown as webcrypto.CryptoKey));
  return Buffer.from(c.publicKey.rawData).equals(spki);
}

export { x509 };
