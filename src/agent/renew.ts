/**
 * `chokepoint agent renew`: re-enrollment over mTLS with the current certificate (RFC 7030
 * §4.2.2, DESIGN §4). Renew at about two thirds of the lifetime, with jitter so a fleet
 * enrolled together does not renew together; retry with exponential backoff; replace the
 * files atomically; re-read them every cycle (an operator may have re-enrolled meanwhile).
 * An expired certificate cannot renew itself: say so loudly and fail.
 */
import { randomInt } from 'node:crypto';
import { ChokepointError } from '../core/errors.js';
import { estRequest, estUrl, excerpt } from './est.js';
import { path, readIdentity, readSettings, writeAtomic } from './files.js';
import { certMatchesKey, certOf, generateKey, makeCsr, parseCertsOnly, x509 } from './pki.js';

export interface RenewPlan {
  readonly notBefore: number;
  readonly notAfter: number;
  /** When renewal is due: notBefore + 2/3 of the lifetime, plus jitter. */
  readonly dueAt: number;
}

/** Jitter: up to ±5% of the lifetime, so renewals spread out but stay well before expiry. */
export function planRenewal(notBefore: number, notAfter: number, rand: () => number = () => randomInt(0, 1_000_000) / 1_000_000): RenewPlan {
  const life = Math.max(0, notAfter - notBefore);
  const jitter = (rand() * 2 - 1) * 0.05 * life;
  return { notBefore, notAfter, dueAt: Math.round(notBefore + (2 / 3) * life + jitter) };
}

export type RenewOutcome =
  | { readonly renewed: false; readonly plan: RenewPlan }
  | { readonly renewed: true; readonly plan: RenewPlan; readonly serial: string };

export async function renewOnce(opts: { dir: string; server?: string; force?: boolean; now?: number; rand?: () => number }): Promise<RenewOutcome> {
  const now = opts.now ?? Date.now();
  const id = await readIdentity(opts.dir);
  const settings = await readSettings(opts.dir);
  const server = opts.server ?? settings?.server;
  if (server === undefined) throw new ChokepointError('AGENT_NOT_ENROLLED', `${path(opts.dir, 'settings')} is missing and no --server was given`);
  const cur = certOf(id.cert);
  const plan = planRenewal(cur.notBefore.getTime(), cur.notAfter.getTime(), opts.rand);
  if (now >= plan.notAfter) {
    throw new ChokepointError('AGENT_CERT_EXPIRED', `the device certificate (serial ${cur.serialNumber}) EXPIRED at ${cur.notAfter.toISOString()}: it cannot renew itself. Re-enroll with a new token: chokepoint agent enroll`);
  }
  if (!opts.force && now < plan.dueAt) return { renewed: false, plan };

  // RFC 7030 §4.2.2: the re-enrollment request carries the same subject and SubjectAltName as
  // the current certificate; only the key is new.
  const key = await generateKey();
  const sanExt = cur.getExtension(x509.SubjectAlternativeNameExtension);
  const csr = await makeCsr(key, { subject: cur.subject, ...(sanExt ? { sans: sanExt.names.toJSON() } : {}) });
  const a = await estRequest(estUrl(server, 'simplereenroll'), {
    method: 'POST', tls: { ca: id.ca, cert: id.cert, key: id.key },
    headers: { 'content-type': 'application/pkcs10' }, body: csr.toString('base64'),
  });
  if (a.status === 401 || a.status === 403) throw new ChokepointError('AGENT_RENEW_DENIED', `the server refused the renewal (${a.status}): ${excerpt(a.body)}`);
  if (a.status !== 200) throw new ChokepointError('AGENT_SERVER_ERROR', `POST /simplereenroll answered ${a.status}: ${excerpt(a.body)}`);
  let leaf = null;
  for (const c of parseCertsOnly(a.body).map((d) => certOf(d))) if (await certMatchesKey(c, key)) leaf = c;
  if (leaf === null) throw new ChokepointError('AGENT_SERVER_ERROR', 'the renewed certificate does not carry the new public key');
  // Key first, then certificate: a reader that sees the new key with the old certificate
  // gets a mismatch and retries (forwarder); the old pair is never half-overwritten.
  await writeAtomic(path(opts.dir, 'key'), key.pem, 0o600);
  await writeAtomic(path(opts.dir, 'cert'), leaf.toString('pem'), 0o600);
  return { renewed: true, plan: planRenewal(leaf.notBefore.getTime(), leaf.notAfter.getTime(), opts.rand), serial: leaf.serialNumber };
}

export interface DaemonOptions {
  readonly dir: string;
  readonly server?: string;
  readonly say: (line: string) => void;
  readonly signal?: AbortSignal;
  /** Backoff bounds for an unreachable server (ms). */
  readonly minBackoffMs?: number;
  readonly maxBackoffMs?: number;
}

const sleep = (ms: number, signal?: AbortSignal): Promise<void> => new Promise((resolve) => {
  if (signal?.aborted) { resolve(); return; }
  const t = setTimeout(resolve, Math.max(0, Math.min(ms, 2 ** 31 - 1)));
  signal?.addEventListener('abort', () => { clearTimeout(t); resolve(); }, { once: true });
});

/** Runs until aborted; throws AGENT_CERT_EXPIRED (and other permanent errors) to the caller. */
export async function renewDaemon(o: DaemonOptions): Promise<void> {
  const min = o.minBackoffMs ?? 30_000;
  const max = o.maxBackoffMs ?? 3600_000;
  let backoff = min;
  while (!o.signal?.aborted) {
    try {
      const r = await renewOnce({ dir: o.dir, ...(o.server ? { server: o.server } : {}) });
      backoff = min;
      if (r.renewed) o.say(`renewed: serial ${r.serial}, valid until ${new Date(r.plan.notAfter).toISOString()}`);
      const wait = r.plan.dueAt - Date.now();
      o.say(`next renewal at ${new Date(r.plan.dueAt).toISOString()}`);
      await sleep(Math.max(wait, 1000), o.signal);
    } catch (e) {
      const code = e instanceof ChokepointError ? e.code : 'INTERNAL';
      // Permanent: no retry can fix an expired certificate, a refusal or a bad directory.
      if (code === 'AGENT_CERT_EXPIRED' || code === 'AGENT_RENEW_DENIED' || code === 'AGENT_DIR_INSECURE' || code === 'AGENT_NOT_ENROLLED') throw e;
      const jittered = Math.round(backoff * (0.5 + randomInt(0, 1000) / 2000));
      o.say(`renewal failed (${code}: ${e instanceof Error ? e.message : String(e)}); retrying in ${Math.round(jittered / 1000)}s`);
      await sleep(jittered, o.signal);
      backoff = Math.min(backoff * 2, max);
    }
  }
}
