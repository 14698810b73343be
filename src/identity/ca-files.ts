/**
 * Where CA material lives in the data directory, and how a private key file is read and written.
 *
 *   <data-dir>/ca/            mode 0700
 *     state.json              which CA is active / next / retired (no secrets)
 *     <ca-id>/cert.pem        the CA certificate (and, for an imported intermediate, its chain)
 *     <ca-id>/key.pem         PKCS#8, mode 0600, optionally passphrase-encrypted
 *
 * The key never leaves this directory: not into the store, a log line or an HTTP answer.
 */
import { chmodSync, closeSync, fsyncSync, lstatSync, mkdirSync, openSync, readFileSync, renameSync, writeSync } from 'node:fs';
import { createPrivateKey, type KeyObject } from 'node:crypto';
import { join } from 'node:path';
import { ChokepointError } from '../core/errors.js';
import type { CaState } from './ports.js';

export interface CaStateEntry {
  readonly id: string;
  readonly state: CaState;
  readonly created_at: number;
}
export interface CaStateFile {
  readonly version: 1;
  readonly cas: readonly CaStateEntry[];
}

export const caRoot = (dataDir: string): string => join(dataDir, 'ca');
export const caDir = (dataDir: string, id: string): string => join(caRoot(dataDir), id);

export function readState(dataDir: string): CaStateFile {
  let text: string;
  try {
    text = readFileSync(join(caRoot(dataDir), 'state.json'), 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { version: 1, cas: [] };
    throw new ChokepointError('CA_INVALID', `cannot read ${caRoot(dataDir)}/state.json`, { cause: err });
  }
  try {
    const s = JSON.parse(text) as CaStateFile;
    if (s.version !== 1 || !Array.isArray(s.cas)) throw new Error('unexpected shape');
    return s;
  } catch (err) {
    throw new ChokepointError('CA_INVALID', `${caRoot(dataDir)}/state.json is corrupt`, { cause: err });
  }
}

/** Writes atomically (temp file, fsync, rename) so a crash never leaves a half-written state. */
export function writeFileAtomic(path: string, data: string, mode: number): void {
  const tmp = `${path}.${process.pid}.tmp`;
  const fd = openSync(tmp, 'w', mode);
  try {
    writeSync(fd, data);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  chmodSync(tmp, mode); // the umask may have narrowed or (with O_CREAT on an existing file) kept a wider mode
  renameSync(tmp, path);
}

export function writeState(dataDir: string, s: CaStateFile): void {
  ensureCaRoot(dataDir);
  writeFileAtomic(join(caRoot(dataDir), 'state.json'), `${JSON.stringify(s, null, 2)}\n`, 0o644);
}

export function ensureCaRoot(dataDir: string): void {
  mkdirSync(caRoot(dataDir), { recursive: true, mode: 0o700 });
  chmodSync(caRoot(dataDir), 0o700);
}

export function writeCaFiles(dataDir: string, id: string, certPem: string, keyPem: string): void {
  ensureCaRoot(dataDir);
  mkdirSync(caDir(dataDir, id), { mode: 0o700 });
  writeFileAtomic(join(caDir(dataDir, id), 'key.pem'), keyPem, 0o600);
  writeFileAtomic(join(caDir(dataDir, id), 'cert.pem'), certPem, 0o644);
}

/** PKCS#8 PEM, encrypted with AES-256-CBC under a PBKDF2-derived key when a passphrase is given. */
export function exportKey(key: KeyObject, passphrase?: string): string {
  if (passphrase !== undefined && passphrase !== '') {
    return key.export({ type: 'pkcs8', format: 'pem', cipher: 'aes-256-cbc', passphrase }) as string;
  }
  return key.export({ type: 'pkcs8', format: 'pem' }) as string;
}

/**
 * Reads a CA key file. A key that group or others can read (or write: they could swap it) is
 * refused outright rather than warned about: a copied CA key mints device identities at will.
 */
export function readKeyFile(path: string, passphrase?: string): KeyObject {
  let st;
  try {
    st = lstatSync(path);
  } catch (err) {
    throw new ChokepointError('CA_MISSING', `cannot read the CA key ${path}`, { cause: err });
  }
  if (!st.isFile()) throw new ChokepointError('CA_KEY_INSECURE', `${path} is not a regular file (symbolic links are refused)`);
  if ((st.mode & 0o077) !== 0) {
    throw new ChokepointError('CA_KEY_INSECURE',
      `${path} has mode ${(st.mode & 0o777).toString(8).padStart(4, '0')}: it must not be accessible to group or others (chmod 600 ${path})`);
  }
  return parseKey(readFileSync(path, 'utf8'), passphrase, path);
}

export function parseKey(pem: string, passphrase: string | undefined, what: string): KeyObject {
  const encrypted = pem.includes('ENCRYPTED PRIVATE KEY') || pem.includes('Proc-Type: 4,ENCRYPTED');
  if (encrypted && (passphrase === undefined || passphrase === '')) {
    throw new ChokepointError('CA_KEY_PASSPHRASE', `${what} is encrypted: give its passphrase (CHOKEPOINT_CA_PASSPHRASE or --passphrase-file)`);
  }
  try {
    return createPrivateKey(encrypted ? { key: pem, format: 'pem', passphrase: passphrase as string } : { key: pem, format: 'pem' });
  } catch (err) {
    if (encrypted) throw new ChokepointError('CA_KEY_PASSPHRASE', `cannot decrypt ${what}: wrong passphrase?`, { cause: err });
    throw new ChokepointError('CA_INVALID', `${what} is not a readable private key`, { cause: err });
  }
}
