/**
 * Identity benchmark: device certificates issued per second through the whole enrollment
 * (token check and consumption, CSR validation, signing, recording) and the signing step alone;
 * CRL generation at 100k revoked serials; and the directory's identify() on the hot path.
 *
 * Prints one JSON line per figure (`{"bench":"identity",...}`) and then a short table.
 * Run directly (`node dist/bench/identity.js`) or through bench/run.ts via runIdentityBench().
 */
import { randomBytes, randomUUID, webcrypto } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { identitySchema } from '../src/config/identity.js';
import { EventBus } from '../src/events/bus.js';
import { initCa } from '../src/identity/ca.js';
import { buildCrl, type CrlEntry } from '../src/identity/crl.js';
import { validateCsr } from '../src/identity/csr.js';
import { hashToken } from '../src/identity/enroll.js';
import { MemoryIdentityStore } from '../src/identity/memory-store.js';
import { createIdentityService } from '../src/identity/service.js';
import { signDeviceCertificate } from '../src/identity/sign.js';
import { x509 } from '../src/identity/x509.js';

interface Figure { readonly name: string; readonly value: number; readonly unit: string }

async function csrs(n: number): Promise<Buffer[]> {
  const out: Buffer[] = [];
  for (let i = 0; i < n; i++) {
    const keys = await webcrypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, false, ['sign', 'verify']) as CryptoKeyPair;
    const csr = await x509.Pkcs10CertificateRequestGenerator.create({ name: 'CN=bench', keys, signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' } });
    out.push(Buffer.from(csr.rawData));
  }
  return out;
}

export async function runIdentityBench(): Promise<Figure[]> {
  const dir = mkdtempSync(join(tmpdir(), 'cp-bench-id-'));
  const figures: Figure[] = [];
  const emit = (f: Figure) => {
    figures.push(f);
    process.stdout.write(`${JSON.stringify({ bench: 'identity', ...f })}\n`);
  };
  try {
    const ca = await initCa({ dataDir: dir });
    const N = 300;
    const requests = await csrs(N);

    // signing step alone
    const spkis = requests.map((r) => validateCsr(r).spkiDer);
    let t = performance.now();
    for (let i = 0; i < N; i++) {
      await signDeviceCertificate({ ca, grant: { deviceId: randomUUID(), group: 'bench', assetId: null, validityMs: 7 * 86_400_000 }, spkiDer: spkis[i] as Buffer, now: Date.now() });
    }
    emit({ name: 'sign_per_second', value: Math.round(N / ((performance.now() - t) / 1000)), unit: 'certificates/s' });

    // whole enrollment on the in-memory store (the SQL store adds its own transaction cost)
    const store = new MemoryIdentityStore();
    const id = await createIdentityService({ store, dataDir: dir, config: identitySchema.parse({}), bus: new EventBus() });
    const tokens = requests.map(() => `cpe_${randomBytes(32).toString('base64url')}`);
    const now = Date.now();
    tokens.forEach((tok) => store.addToken({ id: randomUUID(), token_hash: hashToken(tok), group_name: 'bench', asset_id: null, uses_total: 1, uses_left: 1, expires_at: now + 3_600_000, revoked_at: null, created_by: 'bench', created_at: now }));
    t = performance.now();
    for (let i = 0; i < N; i++) await id.enroller.enroll({ token: tokens[i] as string, csrDer: requests[i] as Buffer });
    emit({ name: 'enroll_per_second', value: Math.round(N / ((performance.now() - t) / 1000)), unit: 'enrollments/s' });

    // identify() on the hot path
    const serials = [...store.certificates.values()].map((c) => ({ serial: c.serial, deviceId: c.device_id }));
    const M = 1_000_000;
    t = performance.now();
    for (let i = 0; i < M; i++) {
      const s = serials[i % serials.length] as { serial: string; deviceId: string };
      id.directory.identify({ serial: s.serial, deviceId: s.deviceId, notBefore: 0, notAfter: 0, chainVerified: true }, now);
    }
    emit({ name: 'identify_ns', value: Math.round(((performance.now() - t) * 1e6) / M), unit: 'ns/call' });
    await id.close();

    // CRL of 100k serials
    const entries: CrlEntry[] = [];
    for (let i = 0; i < 100_000; i++) {
      const b = randomBytes(16);
      b[0] = ((b[0] as number) & 0x7f) | 0x40;
      entries.push({ serial: b.toString('hex'), revokedAt: now - (i % 1000) * 1000, reason: i % 3 === 0 ? 4 : 9 });
    }
    t = performance.now();
    const der = buildCrl({ ca, entries, thisUpdate: now, nextUpdate: now + 86_400_000, number: BigInt(now) });
    emit({ name: 'crl_100k_ms', value: Math.round(performance.now() - t), unit: 'ms' });
    emit({ name: 'crl_100k_bytes', value: der.length, unit: 'bytes' });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  process.stdout.write(`\nidentity\n${figures.map((f) => `  ${f.name.padEnd(20)} ${String(f.value).padStart(10)} ${f.unit}`).join('\n')}\n`);
  return figures;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) await runIdentityBench();
