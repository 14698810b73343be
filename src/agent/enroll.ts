/**
 * `chokepoint agent enroll`: bootstrap trust by fingerprint, make the key here, enroll with a
 * one-time token, wait out a pending approval (DESIGN §4, RFC 7030 §4.1.1, §4.2, §4.2.3).
 *
 * The token is a bearer secret: it is taken from an argument, the environment or a file,
 * sent only to a server whose TLS certificate chains to the pinned CA, and never written to
 * disk or to a log.
 */
import { ChokepointError } from '../core/errors.js';
import { estRequest, estUrl, excerpt, retryAfterSeconds } from './est.js';
import { assertPrivate, ensureDir, path, readText, writeAtomic } from './files.js';
import { certMatchesKey, certOf, generateKey, importKey, isCa, makeCsr, normalizeFingerprint, parseCertsOnly, sha256Hex, toPem, type DeviceKey } from './pki.js';

export interface EnrollOptions {
  readonly server: string;
  readonly token: string;
  readonly caFingerprint: string;
  readonly dir: string;
  /** Longest total wait for an approval (ms). */
  readonly maxWaitMs?: number;
  readonly say?: (line: string) => void;
  readonly sleep?: (ms: number) => Promise<void>;
}

export interface EnrollResult { readonly certPem: string; readonly notAfter: Date; readonly serial: string }

const sleepReal = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms).unref?.());

/** Fetches /cacerts and returns the CA certificate whose SHA-256 matches the pin; refuses loudly otherwise. */
export async function fetchPinnedCa(server: string, pin: string): Promise<string> {
  const fp = normalizeFingerprint(pin);
  if (fp === null) throw new ChokepointError('USAGE', `--ca-fingerprint "${pin}" is not a SHA-256 fingerprint (64 hex digits, colons allowed)`);
  const a = await estRequest(estUrl(server, 'cacerts'), { method: 'GET', tls: {} });
  if (a.status !== 200) throw new ChokepointError('AGENT_SERVER_ERROR', `GET /cacerts answered ${a.status}: ${excerpt(a.body)}`);
  const certs = parseCertsOnly(a.body);
  const match = certs.find((d) => sha256Hex(d) === fp);
  if (match === undefined) {
    throw new ChokepointError('AGENT_CA_MISMATCH', `IMPOSTOR? The server's CA certificate(s) have SHA-256 ${certs.map((d) => sha256Hex(d)).join(', ')}, not the pinned ${fp}. Nothing was sent to it. Check the server address and the fingerprint the operator gave you.`);
  }
  if (!isCa(certOf(match))) throw new ChokepointError('AGENT_CA_MISMATCH', 'the certificate matching the fingerprint is not a CA certificate (basicConstraints cA is not set)');
  return toPem(match);
}

export async function enroll(opts: EnrollOptions): Promise<EnrollResult> {
  const say = opts.say ?? ((l: string) => process.stderr.write(`${l}\n`));
  const sleep = opts.sleep ?? sleepReal;
  if (opts.token.trim() === '') throw new ChokepointError('AGENT_TOKEN_MISSING', 'the enrollment token is empty');
  await ensureDir(opts.dir);
  await assertPrivate(opts.dir);
  if ((await readText(path(opts.dir, 'cert'))) !== null) {
    throw new ChokepointError('USAGE', `${opts.dir} already holds a device certificate: use "chokepoint agent renew", or move the directory away to enroll anew`);
  }
  const caPem = await fetchPinnedCa(opts.server, opts.caFingerprint);
  await writeAtomic(path(opts.dir, 'ca'), caPem);

  // A key left by an interrupted pending enrollment is reused: the server bound the pending
  // request to it (a poll with another key would be refused).
  const existing = await readText(path(opts.dir, 'key'));
  let key: DeviceKey;
  if (existing !== null) {
    key = await importKey(existing);
    say('reusing the key of an earlier, unfinished enrollment');
  } else {
    key = await generateKey();
    await writeAtomic(path(opts.dir, 'key'), key.pem, 0o600);
  }
  const csr = (await makeCsr(key)).toString('base64');
  const url = estUrl(opts.server, 'simpleenroll');
  const deadline = Date.now() + (opts.maxWaitMs ?? 24 * 3600_000);
  let backoff = 5;
  let auth = `Bearer ${opts.token}`;
  for (let attempt = 0; ; attempt++) {
    const a = await estRequest(url, { method: 'POST', tls: { ca: caPem }, headers: { 'content-type': 'application/pkcs10', authorization: auth }, body: csr });
    if (a.status === 200) {
      const certs = parseCertsOnly(a.body).map((d) => certOf(d));
      let leaf = null;
      for (const c of certs) if (await certMatchesKey(c, key)) leaf = c;
      if (leaf === null) throw new ChokepointError('AGENT_SERVER_ERROR', 'the issued certificate does not carry our public key');
      const pem = leaf.toString('pem');
      await writeAtomic(path(opts.dir, 'cert'), pem, 0o600);
      await writeAtomic(path(opts.dir, 'settings'), `${JSON.stringify({ server: opts.server, caFingerprint: normalizeFingerprint(opts.caFingerprint) }, null, 2)}\n`, 0o600);
      return { certPem: pem, notAfter: leaf.notAfter, serial: leaf.serialNumber };
    }
    if (a.status === 202) {
      const ra = retryAfterSeconds(a.headers['retry-after']) ?? backoff;
      const wait = Math.min(Math.max(ra, 1), 3600);
      if (Date.now() + wait * 1000 > deadline) throw new ChokepointError('AGENT_ENROLL_DENIED', 'still pending approval and the wait limit was reached; run the same command again later (the key is kept, so the request stays the same)');
      say(`enrollment pending approval by an administrator; asking again in ${wait}s`);
      await sleep(wait * 1000);
      backoff = Math.min(backoff * 2, 600);
      continue;
    }
    // RFC 7030 §3.2.3: a server may ask for HTTP Basic; the token is then the password.
    if (a.status === 401 && attempt === 0 && /basic/i.test(String(a.headers['www-authenticate'] ?? ''))) {
      auth = `Basic ${Buffer.from(`device:${opts.token}`).toString('base64')}`;
      continue;
    }
    if (a.status === 401 || a.status === 403) throw new ChokepointError('AGENT_ENROLL_DENIED', `the server refused the enrollment (${a.status}): ${excerpt(a.body)}`);
    throw new ChokepointError('AGENT_SERVER_ERROR', `POST /simpleenroll answered ${a.status}: ${excerpt(a.body)}`);
  }
}
