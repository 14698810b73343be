/**
 * The built-in device CA: create (ECDSA P-256, self-signed), import an intermediate under an
 * enterprise root, rotate (active → next → retired), and load the set for signing and trust.
 */
import { createHash, createPrivateKey, randomUUID, webcrypto, X509Certificate, type KeyObject } from 'node:crypto';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { ChokepointError } from '../core/errors.js';
import { children, readTop } from './der.js';
import { caDir, exportKey, parseKey, readKeyFile, readState, writeCaFiles, writeState, type CaStateEntry } from './ca-files.js';
import type { CaRow, CaState } from './ports.js';
import { x509 } from './x509.js';

export interface LoadedCa {
  readonly id: string;
  readonly state: CaState;
  readonly createdAt: number;
  /** The CA certificate alone. */
  readonly certPem: string;
  /** Certificates above it (enterprise intermediates and root), for an imported CA; else empty. */
  readonly chainPems: readonly string[];
  readonly cert: X509Certificate;
  readonly certDer: Buffer;
  /** The exact DER of the subject Name: a CRL's issuer must match it byte for byte (RFC 5280 §5.1.2.3). */
  readonly subjectDer: Buffer;
  /** Subject key identifier, used as the authority key identifier of what it signs. */
  readonly keyId: Buffer;
  readonly notBefore: number;
  readonly notAfter: number;
  /** SHA-256 of the certificate DER, lowercase hex: what agents pin. */
  readonly fingerprint256: string;
  readonly hash: 'sha256' | 'sha384';
  readonly privateKey: KeyObject;
  /** The same key as a non-extractable WebCrypto key, for @peculiar/x509. */
  readonly signingKey: CryptoKey;
}

export interface CaSet {
  /** Issues new certificates. */
  readonly active: LoadedCa;
  /** Introduced by `ca rotate`: trusted and published, not issuing until promoted. */
  readonly next: LoadedCa | null;
  /** Former active CAs: still trusted for certificates they issued until dropped. */
  readonly retired: readonly LoadedCa[];
  /** Every CA a device certificate may chain to. */
  readonly trusted: readonly LoadedCa[];
}

const CURVES: Record<string, { named: string; hash: 'sha256' | 'sha384' }> = {
  prime256v1: { named: 'P-256', hash: 'sha256' },
  secp384r1: { named: 'P-384', hash: 'sha384' },
};

function splitPems(text: string): string[] {
  return text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
}

/** Name DER and subject public key of a certificate, read straight from its bytes. */
function tbsParts(der: Buffer): { subject: Buffer; spkiBits: Buffer } {
  const top = readTop(der);
  const tbs = children(der, top)[0];
  if (!tbs) throw new Error('no TBSCertificate');
  const f = children(der, tbs);
  const o = f[0]?.tag === 0xa0 ? 1 : 0;
  const subject = f[o + 4];
  const spki = f[o + 5];
  if (!subject || !spki) throw new Error('short TBSCertificate');
  const bits = children(der, spki)[1];
  if (!bits) throw new Error('no subjectPublicKey');
  return { subject: der.subarray(subject.start, subject.end), spkiBits: der.subarray(bits.contentStart + 1, bits.end) };
}

async function toSigningKey(key: KeyObject): Promise<CryptoKey> {
  const curve = CURVES[key.asymmetricKeyDetails?.namedCurve ?? ''];
  if (key.asymmetricKeyType !== 'ec' || !curve) throw new ChokepointError('CA_INVALID', 'the CA key must be ECDSA P-256 or P-384');
  return webcrypto.subtle.importKey('pkcs8', key.export({ type: 'pkcs8', format: 'der' }), { name: 'ECDSA', namedCurve: curve.named }, false, ['sign']) as Promise<CryptoKey>;
}

/** Checks that a certificate and key form a usable CA, and builds its in-memory form. */
export async function makeLoadedCa(entry: CaStateEntry, certText: string, key: KeyObject, now = Date.now()): Promise<LoadedCa> {
  const pems = splitPems(certText);
  if (pems.length === 0) throw new ChokepointError('CA_INVALID', 'no PEM certificate found');
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(pems[0] as string);
  } catch (err) {
    throw new ChokepointError('CA_INVALID', 'the CA certificate cannot be parsed', { cause: err });
  }
  if (!cert.ca) throw new ChokepointError('CA_INVALID', 'the certificate is not a CA (basicConstraints cA is not true)');
  const px = new x509.X509Certificate(cert.raw);
  const ku = px.getExtension(x509.KeyUsagesExtension);
  if (ku && (ku.usages & x509.KeyUsageFlags.keyCertSign) === 0) {
    throw new ChokepointError('CA_INVALID', 'the CA certificate does not allow keyCertSign');
  }
  if (!cert.checkPrivateKey(key)) throw new ChokepointError('CA_KEY_MISMATCH', 'the private key does not belong to the CA certificate');
  const curve = CURVES[key.asymmetricKeyDetails?.namedCurve ?? ''];
  if (key.asymmetricKeyType !== 'ec' || !curve) throw new ChokepointError('CA_INVALID', 'the CA key must be ECDSA P-256 or P-384');
  const notAfter = Date.parse(cert.validTo);
  if (notAfter <= now) throw new ChokepointError('CA_INVALID', `the CA certificate expired on ${cert.validTo}`);
  const certDer = Buffer.from(cert.raw);
  const parts = tbsParts(certDer);
  const ski = px.getExtension(x509.SubjectKeyIdentifierExtension);
  // RFC 5280 §4.2.1.2 method (1) when the CA carries no SKI.
  const keyId = ski ? Buffer.from(ski.keyId, 'hex') : createHash('sha1').update(parts.spkiBits).digest();
  return {
    id: entry.id,
    state: entry.state,
    createdAt: entry.created_at,
    certPem: cert.toString(),
    chainPems: pems.slice(1),
    cert,
    certDer,
    subjectDer: parts.subject,
    keyId,
    notBefore: Date.parse(cert.validFrom),
    notAfter,
    fingerprint256: createHash('sha256').update(certDer).digest('hex'),
    hash: curve.hash,
    privateKey: key,
    signingKey: await toSigningKey(key),
  };
}

/** Generates a self-signed ECDSA P-256 CA certificate and key (not yet written anywhere). */
export async function generateCa(opts: { commonName?: string; validityDays?: number; now?: number } = {}): Promise<{ certPem: string; key: KeyObject }> {
  const now = opts.now ?? Date.now();
  const keys = await webcrypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, ['sign', 'verify']) as CryptoKeyPair;
  const serial = Buffer.from(webcrypto.getRandomValues(new Uint8Array(16)));
  serial[0] = ((serial[0] as number) & 0x7f) | 0x40;
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial.toString('hex'),
    name: [{ CN: [opts.commonName ?? `Chokepoint Device CA ${serial.subarray(0, 4).toString('hex')}`] }, { O: ['Chokepoint'] }],
    notBefore: new Date(now - 5 * 60_000),
    notAfter: new Date(now + (opts.validityDays ?? 3650) * 86_400_000),
    keys,
    signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey));
  return { certPem: cert.toString('pem'), key: createPrivateKey({ key: pkcs8, format: 'der', type: 'pkcs8' }) };
}

export interface CaFileOptions {
  readonly dataDir: string;
  /** Encrypts (and later decrypts) the CA key file. */
  readonly passphrase?: string;
}

function save(opts: CaFileOptions, state: CaState, certText: string, key: KeyObject): CaStateEntry {
  const entry: CaStateEntry = { id: randomUUID(), state, created_at: Date.now() };
  writeCaFiles(opts.dataDir, entry.id, certText, exportKey(key, opts.passphrase));
  return entry;
}

/** `chokepoint ca init`: refuses when a CA already exists. */
export async function initCa(opts: CaFileOptions & { commonName?: string; validityDays?: number }): Promise<LoadedCa> {
  const st = readState(opts.dataDir);
  if (st.cas.length > 0) throw new ChokepointError('CA_EXISTS', `a CA already exists in ${opts.dataDir}/ca (use \`ca rotate\` to replace it)`);
  const { certPem, key } = await generateCa(opts);
  const entry = save(opts, 'active', certPem, key);
  writeState(opts.dataDir, { version: 1, cas: [entry] });
  return makeLoadedCa(entry, certPem, key);
}

/** `chokepoint ca import`: an intermediate CA (PEM, its chain may follow) and its key. */
export async function importCa(opts: CaFileOptions & { certPem: string; keyPem: string; keyPassphrase?: string }): Promise<LoadedCa> {
  const st = readState(opts.dataDir);
  if (st.cas.length > 0) throw new ChokepointError('CA_EXISTS', `a CA already exists in ${opts.dataDir}/ca`);
  const key = parseKey(opts.keyPem, opts.keyPassphrase, 'the imported key');
  await makeLoadedCa({ id: 'check', state: 'active', created_at: 0 }, opts.certPem, key); // every check before writing
  const certText = splitPems(opts.certPem).join('\n') + '\n';
  const entry = save(opts, 'active', certText, key);
  writeState(opts.dataDir, { version: 1, cas: [entry] });
  return makeLoadedCa(entry, certText, key);
}

/** Loads every CA of the data directory with its key (refusing insecure key files). */
export async function loadCaSet(opts: CaFileOptions): Promise<CaSet> {
  const st = readState(opts.dataDir);
  const all: LoadedCa[] = [];
  for (const e of st.cas) {
    const dir = caDir(opts.dataDir, e.id);
    const key = readKeyFile(join(dir, 'key.pem'), opts.passphrase);
    // A retired CA may be past its notAfter: load it with `now` = its creation to skip that check.
    all.push(await makeLoadedCa(e, readFileSync(join(dir, 'cert.pem'), 'utf8'), key, e.state === 'retired' ? e.created_at : Date.now()));
  }
  const active = all.find((c) => c.state === 'active');
  if (!active) throw new ChokepointError('CA_MISSING', `no active CA in ${opts.dataDir}/ca: run \`chokepoint ca init\``);
  return {
    active,
    next: all.find((c) => c.state === 'next') ?? null,
    retired: all.filter((c) => c.state === 'retired'),
    trusted: all,
  };
}

/**
 * `chokepoint ca rotate`: `stage` creates a next CA (trusted and published in cacerts so agents
 * learn it before any certificate depends on it); `promote` makes it issue and retires the old
 * active one (still trusted for the certificates it issued, which expire within their short
 * validity); `drop` removes retired CAs from trust and deletes their keys.
 */
export async function rotateCa(opts: CaFileOptions & { step: 'stage' | 'promote' | 'drop' }): Promise<CaStateEntry[]> {
  const st = readState(opts.dataDir);
  if (!st.cas.some((c) => c.state === 'active')) throw new ChokepointError('CA_MISSING', 'no active CA to rotate');
  let cas = [...st.cas];
  if (opts.step === 'stage') {
    if (cas.some((c) => c.state === 'next')) throw new ChokepointError('CA_ROTATION', 'a next CA is already staged: promote it first');
    const { certPem, key } = await generateCa();
    cas.push(save(opts, 'next', certPem, key));
  } else if (opts.step === 'promote') {
    if (!cas.some((c) => c.state === 'next')) throw new ChokepointError('CA_ROTATION', 'no next CA is staged: run `ca rotate --stage` first');
    cas = cas.map((c) => ({ ...c, state: c.state === 'active' ? 'retired' : c.state === 'next' ? 'active' : c.state }));
  } else {
    const gone = cas.filter((c) => c.state === 'retired');
    if (gone.length === 0) throw new ChokepointError('CA_ROTATION', 'no retired CA to drop');
    cas = cas.filter((c) => c.state !== 'retired');
    writeState(opts.dataDir, { version: 1, cas });
    for (const g of gone) rmSync(caDir(opts.dataDir, g.id), { recursive: true, force: true });
    return cas;
  }
  writeState(opts.dataDir, { version: 1, cas });
  return cas;
}

export function caRow(ca: LoadedCa): CaRow {
  return { id: ca.id, cert_pem: ca.certPem, state: ca.state, not_after: ca.notAfter, created_at: ca.createdAt };
}

/** Public description of a CA (never the key). */
export function describeCa(ca: LoadedCa): Record<string, unknown> {
  return {
    id: ca.id, state: ca.state, subject: ca.cert.subject.replace(/\n/g, ', '), not_before: new Date(ca.notBefore).toISOString(),
    not_after: new Date(ca.notAfter).toISOString(), sha256: ca.fingerprint256, key: `EC ${ca.hash === 'sha256' ? 'P-256' : 'P-384'}`,
  };
}
