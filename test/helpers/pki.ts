/**
 * Test PKI for identity tests: a fresh data directory with a CA per run, device keys and CSRs
 * (P-256 and the kinds we must refuse), enrollment tokens, and an identity service on the
 * in-memory store with a controllable clock and a record of every event.
 */
import { createHash, randomBytes, randomUUID, webcrypto } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { initCa } from '../../src/identity/ca.js';
import { x509 } from '../../src/identity/x509.js';
import { MemoryIdentityStore } from '../../src/identity/memory-store.js';
import { createIdentityService, type IdentityService } from '../../src/identity/service.js';
import { identitySchema } from '../../src/config/identity.js';
import { EventBus } from '../../src/events/bus.js';
import type { ChokepointEvent } from '../../src/events/catalogue.js';
import type { TokenRow } from '../../src/identity/ports.js';

export function tempDir(prefix = 'cp-id-'): { path: string; cleanup(): void } {
  const path = mkdtempSync(join(tmpdir(), prefix));
  return { path, cleanup: () => rmSync(path, { recursive: true, force: true }) };
}

export type KeyKind = 'p256' | 'p384' | 'rsa' | 'ed25519';

export interface DeviceKey {
  readonly keys: CryptoKeyPair;
  readonly kind: KeyKind;
  /** PKCS#8 PEM of the private key (for curl/openssl/tls). */
  readonly keyPem: string;
}

export async function deviceKey(kind: KeyKind = 'p256'): Promise<DeviceKey> {
  const alg = kind === 'p256' ? { name: 'ECDSA', namedCurve: 'P-256' }
    : kind === 'p384' ? { name: 'ECDSA', namedCurve: 'P-384' }
      : kind === 'rsa' ? { name: 'RSASSA-PKCS1-v1_5', modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]), hash: 'SHA-256' }
        : { name: 'Ed25519' };
  const keys = await webcrypto.subtle.generateKey(alg, true, ['sign', 'verify']) as CryptoKeyPair;
  const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey));
  const keyPem = `-----BEGIN PRIVATE KEY-----\n${(pkcs8.toString('base64').match(/.{1,64}/g) ?? []).join('\n')}\n-----END PRIVATE KEY-----\n`;
  return { keys, kind, keyPem };
}

export async function makeCsr(key: DeviceKey, opts: { subject?: string; uris?: string[]; dns?: string[] } = {}): Promise<Buffer> {
  const signingAlgorithm = key.kind === 'rsa' ? { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' }
    : key.kind === 'ed25519' ? { name: 'Ed25519' }
      : { name: 'ECDSA', hash: key.kind === 'p384' ? 'SHA-384' : 'SHA-256' };
  const names = [...(opts.uris ?? []).map((value) => ({ type: 'url' as const, value })), ...(opts.dns ?? []).map((value) => ({ type: 'dns' as const, value }))];
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: opts.subject ?? 'CN=device',
    keys: key.keys,
    signingAlgorithm,
    extensions: names.length > 0 ? [new x509.SubjectAlternativeNameExtension(names)] : [],
  });
  return Buffer.from(csr.rawData);
}

/** The same CSR with one byte of its signature changed. */
export function tamperSignature(der: Buffer): Buffer {
  const b = Buffer.from(der);
  b[b.length - 5] = (b[b.length - 5] as number) ^ 0x01;
  return b;
}

export const sha256 = (s: string): string => createHash('sha256').update(s).digest('hex');

export function newEnrollmentToken(): string {
  return `cpe_${randomBytes(32).toString('base64url')}`;
}

export function addToken(store: MemoryIdentityStore, opts: { group?: string; asset?: string | null; uses?: number; ttlMs?: number; now?: number } = {}): { token: string; row: TokenRow } {
  const token = newEnrollmentToken();
  const now = opts.now ?? Date.now();
  const row: TokenRow = {
    id: randomUUID(), token_hash: sha256(token), group_name: opts.group ?? 'servers', asset_id: opts.asset ?? null,
    uses_total: opts.uses ?? 1, uses_left: opts.uses ?? 1, expires_at: now + (opts.ttlMs ?? 600_000), revoked_at: null, created_by: 'test', created_at: now,
  };
  store.addToken(row);
  return { token, row };
}

/** The event interface whose `type` includes T (some interfaces declare a union of types). */
export type EventOf<T extends ChokepointEvent['type']> = ChokepointEvent extends infer E ? (E extends { type: infer U } ? (T extends U ? E : never) : never) : never;

export interface Harness {
  readonly dir: { path: string; cleanup(): void };
  readonly store: MemoryIdentityStore;
  readonly id: IdentityService;
  readonly events: ChokepointEvent[];
  readonly bus: EventBus;
  clock: number;
  close(): Promise<void>;
  ofType<T extends ChokepointEvent['type']>(t: T): EventOf<T>[];
}

/** An identity service on a fresh CA and the in-memory store. `h.clock` is the service's clock. */
export async function harness(config: unknown = {}, opts: { passphrase?: string; refreshIntervalMs?: number } = {}): Promise<Harness> {
  const dir = tempDir();
  await initCa({ dataDir: dir.path, passphrase: opts.passphrase });
  const store = new MemoryIdentityStore();
  const events: ChokepointEvent[] = [];
  const bus = new EventBus();
  bus.subscribe((e) => events.push(e));
  const h = {
    dir, store, events, bus, clock: Date.now(),
    id: undefined as unknown as IdentityService,
    async close() {
      await h.id.close();
      dir.cleanup();
    },
    ofType<T extends ChokepointEvent['type']>(t: T) {
      return events.filter((e) => e.type === t) as EventOf<T>[];
    },
  };
  h.id = await createIdentityService({
    store, dataDir: dir.path, config: identitySchema.parse(config), bus, passphrase: opts.passphrase, now: () => h.clock,
    refreshIntervalMs: opts.refreshIntervalMs ?? 0,
  });
  return h;
}

/** Runs openssl with arguments; returns stdout (throws with stderr on failure). */
export function openssl(args: string[], input?: Buffer | string): string {
  return execFileSync('openssl', args, { input, encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe'] });
}
