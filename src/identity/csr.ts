/**
 * Issuance step 1, validate: parse an untrusted PKCS#10 request (RFC 2986) with size limits,
 * check the key type, and check proof of possession (the request's signature verifies under the
 * key it carries). Nothing here decides who the device is: see constrain.ts.
 */
import { createHash, createPublicKey, verify, type KeyObject } from 'node:crypto';
import { ChokepointError } from '../core/errors.js';
import { children, DerError, oidText, readTop, type Tlv } from './der.js';
import { x509 } from './x509.js';

/** A P-256 CSR is ~300 bytes; 4 KiB leaves room for extensions and refuses memory games. */
export const MAX_CSR_DER = 4096;

const OID = {
  ecPublicKey: '1.2.840.10045.2.1',
  p256: '1.2.840.10045.3.1.7',
  rsa: '1.2.840.113549.1.1.1',
  rsaPss: '1.2.840.113549.1.1.10',
} as const;
const ECDSA_HASH: Record<string, string> = {
  '1.2.840.10045.4.3.2': 'sha256',
  '1.2.840.10045.4.3.3': 'sha384',
  '1.2.840.10045.4.3.4': 'sha512',
};

export interface ValidatedCsr {
  readonly der: Buffer;
  readonly spkiDer: Buffer;
  /** SHA-256 of the SubjectPublicKeyInfo DER, lowercase hex: binds requests and certificates to a key. */
  readonly spkiSha256: string;
  readonly publicKey: KeyObject;
  /** The subject Name as DER (a SEQUENCE; an empty name is `30 00`). */
  readonly subjectDer: Buffer;
  readonly subject: string;
  /** URIs of the subjectAltName extension, if the request has one. */
  readonly sanUris: readonly string[];
  /** Other subjectAltName entries as `type:value` (DNS names, IPs, e-mail…). */
  readonly sanOther: readonly string[];
  readonly hasSan: boolean;
}

const fail = (code: 'CSR_INVALID' | 'CSR_TOO_LARGE' | 'CSR_BAD_SIGNATURE' | 'CSR_KEY_RSA' | 'CSR_KEY_CURVE' | 'CSR_KEY_UNSUPPORTED', msg: string, cause?: unknown): never => {
  throw new ChokepointError(code, msg, cause === undefined ? {} : { cause });
};

/** SHA-256 of a SubjectPublicKeyInfo, the key fingerprint used across the store. */
export const spkiSha256 = (spkiDer: Uint8Array): string => createHash('sha256').update(spkiDer).digest('hex');

function checkKey(buf: Buffer, spki: Tlv): void {
  const [alg] = children(buf, spki);
  if (!alg || alg.tag !== 0x30) fail('CSR_INVALID', 'malformed SubjectPublicKeyInfo');
  const [algOid, params] = children(buf, alg as Tlv);
  const a = oidText(buf, algOid as Tlv);
  if (a === OID.rsa || a === OID.rsaPss) fail('CSR_KEY_RSA', 'RSA keys are refused: make an ECDSA P-256 key (openssl ecparam -name prime256v1 -genkey)');
  if (a !== OID.ecPublicKey) fail('CSR_KEY_UNSUPPORTED', `key algorithm ${a} is not accepted: use ECDSA P-256`);
  // Explicit curve parameters instead of a named curve are refused: a forged generator is how
  // CVE-2020-0601 ("CurveBall") made a key that looked like someone else's.
  if (!params || params.tag !== 0x06) fail('CSR_KEY_CURVE', 'EC keys must name their curve (explicit parameters are refused)');
  const curve = oidText(buf, params as Tlv);
  if (curve !== OID.p256) fail('CSR_KEY_CURVE', `curve ${curve} is not accepted: use P-256 (prime256v1)`);
}

export function validateCsr(input: Uint8Array): ValidatedCsr {
  if (input.length > MAX_CSR_DER) fail('CSR_TOO_LARGE', `the request is ${input.length} bytes; at most ${MAX_CSR_DER} are accepted`);
  const der = Buffer.from(input);
  let cri: Tlv, sigAlg: Tlv, sig: Tlv, subject: Tlv, spki: Tlv;
  try {
    const top = readTop(der);
    if (top.tag !== 0x30) throw new DerError('not a SEQUENCE');
    const parts = children(der, top);
    if (parts.length !== 3) throw new DerError('a CertificationRequest has three parts');
    [cri, sigAlg, sig] = parts as [Tlv, Tlv, Tlv];
    if (cri.tag !== 0x30 || sigAlg.tag !== 0x30 || sig.tag !== 0x03) throw new DerError('unexpected part types');
    const info = children(der, cri);
    if (info.length < 3 || info[0]?.tag !== 0x02 || der[info[0].contentStart] !== 0 || info[0].end - info[0].contentStart !== 1) {
      throw new DerError('version must be v1 (0)');
    }
    subject = info[1] as Tlv;
    spki = info[2] as Tlv;
    if (subject.tag !== 0x30 || spki.tag !== 0x30) throw new DerError('unexpected subject or key');
  } catch (err) {
    if (err instanceof ChokepointError) throw err;
    return fail('CSR_INVALID', `the request is not a DER PKCS#10 CertificationRequest (${(err as Error).message})`, err);
  }
  try {
    checkKey(der, spki);
  } catch (err) {
    if (err instanceof ChokepointError) throw err;
    fail('CSR_INVALID', 'malformed SubjectPublicKeyInfo', err);
  }
  const spkiDer = der.subarray(spki.start, spki.end);
  let publicKey: KeyObject;
  try {
    // OpenSSL checks that the point is on the curve when it decodes it (invalid-curve attacks).
    publicKey = createPublicKey({ key: spkiDer, format: 'der', type: 'spki' });
  } catch (err) {
    return fail('CSR_KEY_UNSUPPORTED', 'the public key is not a valid P-256 point', err);
  }
  let hash: string | undefined;
  try {
    hash = ECDSA_HASH[oidText(der, children(der, sigAlg)[0] as Tlv)];
  } catch (err) {
    fail('CSR_INVALID', 'malformed signature algorithm', err);
  }
  if (!hash) fail('CSR_BAD_SIGNATURE', 'the request must be signed with ECDSA and SHA-256/384/512');
  const sigBytes = der.subarray(sig.contentStart, sig.end);
  if (sigBytes.length < 2 || sigBytes[0] !== 0) fail('CSR_BAD_SIGNATURE', 'malformed signature BIT STRING');
  let ok = false;
  try {
    ok = verify(hash as string, der.subarray(cri.start, cri.end), { key: publicKey, dsaEncoding: 'der' }, sigBytes.subarray(1));
  } catch {
    ok = false;
  }
  if (!ok) fail('CSR_BAD_SIGNATURE', 'the request signature does not verify under its own key: no proof of possession');

  let parsed: InstanceType<typeof x509.Pkcs10CertificateRequest>;
  try {
    parsed = new x509.Pkcs10CertificateRequest(der);
  } catch (err) {
    return fail('CSR_INVALID', 'the request attributes cannot be parsed', err);
  }
  const sanUris: string[] = [];
  const sanOther: string[] = [];
  let hasSan = false;
  try {
    const ext = parsed.extensions.find((e) => e.type === '2.5.29.17');
    if (ext) {
      const san = new x509.SubjectAlternativeNameExtension(ext.rawData);
      hasSan = true;
      for (const n of san.names.items) (n.type === 'url' ? sanUris : sanOther).push(n.type === 'url' ? n.value : `${n.type}:${n.value}`);
    }
  } catch (err) {
    fail('CSR_INVALID', 'the subjectAltName extension cannot be parsed', err);
  }
  return {
    der,
    spkiDer: Buffer.from(spkiDer),
    spkiSha256: spkiSha256(spkiDer),
    publicKey,
    subjectDer: Buffer.from(der.subarray(subject.start, subject.end)),
    subject: parsed.subject,
    sanUris,
    sanOther,
    hasSan,
  };
}

/** Decodes an EST body: base64 (RFC 7030 §4.2.1), whitespace allowed, nothing else. */
export function decodeBase64Body(body: string, max = MAX_CSR_DER): Buffer {
  const compact = body.replace(/[\r\n\t ]/g, '');
  // A PEM block is accepted too: agents and people paste `openssl req` output as is.
  const pem = /^-----BEGIN(?: NEW)? CERTIFICATE REQUEST-----(.*)-----END(?: NEW)? CERTIFICATE REQUEST-----$/.exec(body.replace(/[\r\n\t]/g, '').trim());
  const b64 = pem ? (pem[1] as string).replace(/ /g, '') : compact;
  if (b64.length > Math.ceil((max * 4) / 3) + 4) fail('CSR_TOO_LARGE', `the request is larger than ${max} bytes`);
  if (b64.length === 0 || !/^[A-Za-z0-9+/]+={0,2}$/.test(b64) || b64.length % 4 !== 0) fail('CSR_INVALID', 'the body is not base64');
  return Buffer.from(b64, 'base64');
}
