/**
 * `chokepoint verify`: the security test plan, run from a device. Each check is pass, fail or
 * skipped, with the evidence it saw. Traffic goes only to the configured gateway and control
 * endpoints and to the targets the operator names (DESIGN; issue #6).
 */
import { isIP, connect as netConnect } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import type { DenyReason } from '../core/reasons.js';
import { classifyAddress } from '../policy/classify.js';
import type { AddressClass } from '../policy/types.js';
import { estRequest, estUrl } from './est.js';
import { path, permissionProblems, readIdentity, readSettings, readText, type Identity } from './files.js';
import { parseGatewayUrl } from './forwarder.js';
import { certOf, sha256Hex, x509 } from './pki.js';
import { renewOnce } from './renew.js';

export type Status = 'pass' | 'fail' | 'skipped';
export interface Check { readonly id: string; readonly title: string; readonly status: Status; readonly evidence: string }

export interface VerifyOptions {
  readonly dir: string;
  /** https://HOST:PORT of the gateway mTLS listener. */
  readonly gateway?: string;
  /** host:port that must be reachable through the gateway. */
  readonly allowed?: string;
  /** host:port outside the allowlist: must be refused with a reason. */
  readonly denied?: string;
  /** host:port (IP literal) that a direct connection must not reach. */
  readonly blocked?: string;
  /** An agent directory with a revoked certificate, supplied by the operator. */
  readonly revokedDir?: string;
  /** https URL of an endpoint with a certificate NOT from the pinned CA: must be refused. */
  readonly impostor?: string;
  /** Actually renew (changes the certificate). */
  readonly renew?: boolean;
  readonly timeoutMs?: number;
}

interface Answer { status: number; reason: string | null; error: string | null }

/** CONNECT through the gateway's mTLS listener with an identity; reads the answer head. */
function gatewayConnect(gateway: string, id: Identity, target: string, timeoutMs: number): Promise<Answer> {
  const gw = parseGatewayUrl(gateway);
  return new Promise((resolve) => {
    const s = tlsConnect({ host: gw.host, port: gw.port, ...(gw.servername ? { servername: gw.servername } : {}), ca: id.ca, cert: id.cert, key: id.key, minVersion: 'TLSv1.2' }, () => {
      s.write(`CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n\r\n`);
    });
    let buf = '';
    const done = (a: Answer): void => { clearTimeout(t); s.destroy(); resolve(a); };
    const t = setTimeout(() => done({ status: 0, reason: null, error: 'timed out' }), timeoutMs);
    s.on('data', (c: Buffer) => {
      buf += c.toString('latin1');
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      const head = buf.slice(0, end);
      done({ status: Number(/^HTTP\/1\.[01] ([0-9]{3})/.exec(head)?.[1] ?? 0), reason: /\r\nx-chokepoint-reason: *([^\r\n]*)/i.exec(head)?.[1] ?? null, error: null });
    });
    s.on('error', (e: Error & { code?: string }) => done({ status: 0, reason: null, error: e.code ?? e.message }));
  });
}

/** `IP:PORT` or `[IPv6]:PORT` (a name too: the caller decides whether that is acceptable). */
function hostPort(target: string): { host: string; port: number } | null {
  const m = /^\[?([^\]]+?)\]?:([0-9]+)$/.exec(target);
  return m ? { host: m[1] as string, port: Number(m[2]) } : null;
}

function directConnect(target: string, timeoutMs: number): Promise<string> {
  const hp = hostPort(target);
  if (!hp) return Promise.resolve('bad target');
  return new Promise((resolve) => {
    const s = netConnect(hp.port, hp.host);
    const done = (r: string): void => { clearTimeout(t); s.destroy(); resolve(r); };
    const t = setTimeout(() => done('timed out'), timeoutMs);
    s.on('connect', () => done('connected'));
    s.on('error', (e: Error & { code?: string }) => done(e.code ?? e.message));
  });
}

const check = (id: string, title: string, status: Status, evidence: string): Check => ({ id, title, status, evidence });

/**
 * What a direct connection attempt proves. Blocked means the packet never got an answer: the
 * host's rules dropped it (EPERM/EACCES from a local firewall, a timeout) or there is no route.
 * A refusal (a RST) or any connection means it left the host; an attempt that could not be
 * made (a bad target, a name that did not resolve) proves nothing: both fail.
 */
/**
 * Address classes that never answer a TCP connection whatever the host's rules are: nothing
 * routes documentation (RFC 5737, RFC 3849) or reserved space, the kernel itself refuses
 * multicast and broadcast destinations (EACCES, ENETUNREACH), and Linux dials 0.0.0.0 as
 * localhost. A timeout or refusal there would pass the check without testing any rule.
 */
const NEVER_ANSWERS: ReadonlySet<AddressClass> = new Set<AddressClass>(['documentation', 'reserved', 'unspecified', 'multicast', 'broadcast']);

/** Why `--blocked` cannot test anything, or null when it can. */
export function untestableBlocked(target: string): string | null {
  const t = hostPort(target);
  if (!t || isIP(t.host) === 0) return 'give an IP literal and port (IP:PORT or [IPv6]:PORT)';
  const cls = classifyAddress(t.host);
  if (!NEVER_ANSWERS.has(cls)) return null;
  return `${t.host} is a ${cls} address, which gets no answer whether or not host rules block it: give an address that answers when it is reachable`;
}

export function directVerdict(result: string): { status: Status; why: string } {
  if (result === 'timed out' || result === 'EPERM' || result === 'EACCES' || result === 'ENETUNREACH' || result === 'EHOSTUNREACH') return { status: 'pass', why: 'no answer came back' };
  if (result === 'connected') return { status: 'fail', why: 'it connected: direct egress is open' };
  if (result === 'ECONNREFUSED') return { status: 'fail', why: 'a RST came back, so the packet left the host (the target port is merely closed): host rules would have dropped it' };
  return { status: 'fail', why: 'nothing was tested: give an IP literal and port that this host must not reach' };
}

/** Reasons that say the policy refused a destination (not that an allowed one is down). */
const POLICY_REFUSALS: ReadonlySet<string> = new Set<DenyReason>(['no_rule_matched', 'denied_by_rule', 'port_not_allowed', 'ip_literal_denied', 'address_denied']);
/** Reasons that say the gateway refused the certificate's device. */
const IDENTITY_REFUSALS: ReadonlySet<string> = new Set<DenyReason>(['device_revoked', 'device_disabled', 'certificate_superseded']);
/** TLS verification failures: the client refused the server's certificate (not a network error). */
const CERT_REFUSAL = /SELF_SIGNED|UNABLE_TO_VERIFY|UNABLE_TO_GET_ISSUER|CERT_HAS_EXPIRED|CERT_NOT_YET_VALID|ERR_TLS_CERT_ALTNAME|CERT_SIGNATURE_FAILURE|CERT_UNTRUSTED|CERT_REJECTED|not from the pinned CA/;

export async function runVerify(o: VerifyOptions): Promise<Check[]> {
  const out: Check[] = [];
  const ms = o.timeoutMs ?? 5000;
  // Privilege boundaries first: everything else reads these files.
  const perms = await permissionProblems(o.dir);
  out.push(check('privilege.files', 'key and config files are not readable or writable by others', perms.length === 0 ? 'pass' : 'fail',
    perms.length === 0 ? `${o.dir} is 0700 and its files 0600, owned by uid ${process.getuid?.() ?? '?'}` : perms.map((p) => `${p.path} ${p.message} (fix: ${p.fix})`).join('; ')));

  let id: Identity | null = null;
  try { id = await readIdentity(o.dir); } catch { /* reported below */ }
  if (id === null) {
    // Read without the permission gate so a weakened deployment is still examined.
    const [key, cert, ca] = await Promise.all([readText(path(o.dir, 'key')), readText(path(o.dir, 'cert')), readText(path(o.dir, 'ca'))]);
    if (key && cert && ca) id = { key, cert, ca };
  }
  if (id === null) {
    out.push(check('lifecycle.expiry', 'certificate time to expiry', 'fail', `no key/certificate/CA in ${o.dir}: not enrolled`));
    return out;
  }
  const cert = certOf(id.cert);
  const left = cert.notAfter.getTime() - Date.now();
  const life = cert.notAfter.getTime() - cert.notBefore.getTime();
  out.push(check('lifecycle.expiry', 'certificate time to expiry', left > 0 ? 'pass' : 'fail',
    `serial ${cert.serialNumber}, expires ${cert.notAfter.toISOString()} (${left > 0 ? `${(left / 3600_000).toFixed(1)} h left, ${Math.round((100 * left) / life)}% of its lifetime` : 'EXPIRED: re-enroll'})`));

  // DNS tampering: the pinned CA is the one the operator's fingerprint names, and the
  // endpoints present certificates from it for their names; a named impostor is refused.
  const settings = await readSettings(o.dir).catch(() => null);
  const caFp = sha256Hex(new Uint8Array(new x509.X509Certificate(id.ca).rawData));
  out.push(check('tampering.pin', 'the pinned CA matches the enrolled fingerprint', settings === null ? 'skipped' : settings.caFingerprint === caFp ? 'pass' : 'fail',
    settings === null ? 'no agent.json (enrolled by hand?)' : `ca.pem sha256 ${caFp}${settings.caFingerprint === caFp ? '' : ` but agent.json pins ${settings.caFingerprint}`}`));
  if (settings !== null) {
    const r = await estRequest(estUrl(settings.server, 'cacerts'), { method: 'GET', tls: { ca: id.ca }, timeoutMs: ms }).then((a) => `HTTP ${a.status}`, (e: Error) => `refused: ${e.message}`);
    out.push(check('tampering.control', 'the control endpoint presents a certificate from the pinned CA', r.startsWith('HTTP 200') ? 'pass' : 'fail', `${settings.server}: ${r}`));
  }
  if (o.impostor) {
    // Only a refused certificate proves the pin works; an impostor that cannot be reached tests nothing.
    const r = await estRequest(estUrl(o.impostor, 'cacerts'), { method: 'GET', tls: { ca: id.ca }, timeoutMs: ms }).then((a) => `accepted (HTTP ${a.status})`, (e: Error) => `refused: ${e.message}`);
    const certRefused = r.startsWith('refused') && CERT_REFUSAL.test(r);
    out.push(check('tampering.impostor', 'an endpoint with a certificate not from the pinned CA is refused', certRefused ? 'pass' : 'fail',
      `${o.impostor}: ${r}${r.startsWith('refused') && !certRefused ? ' (not a certificate refusal: nothing was tested)' : ''}`));
  }

  if (o.gateway && o.allowed) {
    const a = await gatewayConnect(o.gateway, id, o.allowed, ms);
    out.push(check('bypass.gateway_path', 'the gateway path works', a.status === 200 ? 'pass' : 'fail', `CONNECT ${o.allowed} via ${o.gateway}: ${a.error ?? `HTTP ${a.status}${a.reason ? ` ${a.reason}` : ''}`}`));
  } else out.push(check('bypass.gateway_path', 'the gateway path works', 'skipped', 'needs --gateway and --allowed'));
  const untestable = o.blocked ? untestableBlocked(o.blocked) : null;
  if (o.blocked && untestable !== null) {
    out.push(check('bypass.direct', 'a direct connection that should be blocked is blocked', 'fail', `direct TCP to ${o.blocked}: not tried (nothing was tested: ${untestable})`));
  } else if (o.blocked) {
    const r = await directConnect(o.blocked, ms);
    const v = directVerdict(r);
    out.push(check('bypass.direct', 'a direct connection that should be blocked is blocked', v.status, `direct TCP to ${o.blocked}: ${r} (${v.why})`));
  } else out.push(check('bypass.direct', 'a direct connection that should be blocked is blocked', 'skipped', 'needs --blocked HOST:PORT'));

  if (o.gateway && o.denied) {
    const a = await gatewayConnect(o.gateway, id, o.denied, ms);
    // A 403 for a policy reason: a 502 (an allowed destination that is down) proves nothing.
    const ok = a.status === 403 && a.reason !== null && POLICY_REFUSALS.has(a.reason);
    out.push(check('drift.refused', 'a destination outside the allowlist is refused with a readable reason', ok ? 'pass' : 'fail',
      `CONNECT ${o.denied}: ${a.error ?? `HTTP ${a.status}, X-Chokepoint-Reason: ${a.reason ?? '(none)'}`}; the alert is raised on the control plane (check the alerts there)`));
  } else out.push(check('drift.refused', 'a destination outside the allowlist is refused with a readable reason', 'skipped', 'needs --gateway and --denied'));

  if (o.renew) {
    const r = await renewOnce({ dir: o.dir, force: true }).then((x) => (x.renewed ? `renewed: new serial ${x.serial}` : 'not renewed'), (e: Error & { code?: string }) => `failed: ${e.code ?? ''} ${e.message}`);
    out.push(check('lifecycle.renewal', 'renewal works', r.startsWith('renewed') ? 'pass' : 'fail', r));
  } else out.push(check('lifecycle.renewal', 'renewal works', 'skipped', 'pass --renew to renew now (replaces the certificate)'));

  if (o.gateway && o.revokedDir && o.allowed) {
    // Its key and certificate; the gateway is checked against this device's pinned CA below.
    const [key, c] = await Promise.all([readText(path(o.revokedDir, 'key')), readText(path(o.revokedDir, 'cert'))]);
    if (key && c) {
      // The sample's own ca.pem could be anything; only the gateway refusing the device counts:
      // a TLS error or a policy refusal of --allowed would say nothing about revocation.
      const a = await gatewayConnect(o.gateway, { key, cert: c, ca: id.ca }, o.allowed, ms);
      const refused = a.status === 403 && a.reason !== null && IDENTITY_REFUSALS.has(a.reason);
      out.push(check('lifecycle.revocation', 'a revoked certificate is refused', refused ? 'pass' : 'fail', `CONNECT ${o.allowed} with serial ${certOf(c).serialNumber}: ${a.error ?? `HTTP ${a.status}${a.reason ? `, X-Chokepoint-Reason: ${a.reason}` : ''}`}`));
    } else out.push(check('lifecycle.revocation', 'a revoked certificate is refused', 'fail', `${o.revokedDir} holds no key/cert`));
  } else out.push(check('lifecycle.revocation', 'a revoked certificate is refused', 'skipped', 'needs --gateway, --allowed and --revoked-dir (a directory with a certificate the operator revoked)'));
  return out;
}

export function formatReport(checks: readonly Check[]): string {
  const w = Math.max(...checks.map((c) => c.id.length));
  const lines = checks.map((c) => `${c.status.toUpperCase().padEnd(7)} ${c.id.padEnd(w)}  ${c.title}\n        ${' '.repeat(w)}  ${c.evidence}`);
  const n = (s: Status): number => checks.filter((c) => c.status === s).length;
  return `${lines.join('\n')}\n\n${n('pass')} passed, ${n('fail')} failed, ${n('skipped')} skipped\n`;
}
