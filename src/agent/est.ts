/**
 * A small EST client (RFC 7030) over node:https: /cacerts, /simpleenroll, /simplereenroll.
 * Every request has a deadline and a bounded answer; nothing here logs a token.
 */
import { request } from 'node:https';
import type { PeerCertificate, TLSSocket } from 'node:tls';
import { ChokepointError } from '../core/errors.js';

export const EST_PREFIX = '/.well-known/est';
const MAX_BODY = 1024 * 1024;

export interface EstTls {
  /** The pinned CA (PEM). Absent only for the very first /cacerts fetch, whose answer is then pinned by fingerprint. */
  readonly ca?: string;
  readonly cert?: string;
  readonly key?: string;
}

export interface EstAnswer {
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly body: string;
  /** DER of the server's TLS certificate (for the bootstrap check). */
  readonly peer: Buffer | null;
}

export function estUrl(server: string, op: string): URL {
  let u: URL;
  try { u = new URL(server); } catch { throw new ChokepointError('USAGE', `--server "${server}" is not a URL`); }
  if (u.protocol !== 'https:') throw new ChokepointError('USAGE', `--server must be https:// (EST runs over TLS, RFC 7030 §3.3); got ${u.protocol}`);
  return new URL(`${EST_PREFIX}/${op}`, u);
}

/** Maps a TLS verification failure to the error an operator can act on. */
function tlsError(e: Error & { code?: string }, pinned: boolean): ChokepointError {
  const code = e.code ?? '';
  if (pinned && /CERT|SELF_SIGNED|UNABLE_TO|HOSTNAME|ERR_TLS_CERT_ALTNAME/i.test(code)) {
    return new ChokepointError('AGENT_TLS_FAILED', `the server's TLS certificate is not from the pinned CA or does not name this host (${code}): an impostor, a redirected name (DNS tampering) or a TLS-intercepting middlebox`, { cause: e });
  }
  return new ChokepointError('AGENT_TLS_FAILED', `cannot reach the server: ${code || e.message}`, { cause: e });
}

export function estRequest(url: URL, opts: { method: 'GET' | 'POST'; tls: EstTls; headers?: Record<string, string>; body?: string; timeoutMs?: number }): Promise<EstAnswer> {
  const pinned = opts.tls.ca !== undefined;
  return new Promise((resolve, reject) => {
    const req = request(url, {
      method: opts.method,
      agent: false,
      // Before the CA is known the first /cacerts answer is taken unverified and then checked
      // against the fingerprint the operator gave out of band (RFC 7030 §4.1.1 bootstrap).
      rejectUnauthorized: pinned,
      ...(opts.tls.ca ? { ca: opts.tls.ca } : {}),
      ...(opts.tls.cert ? { cert: opts.tls.cert, key: opts.tls.key } : {}),
      minVersion: 'TLSv1.2',
      headers: { ...(opts.headers ?? {}), ...(opts.body !== undefined ? { 'content-length': String(Buffer.byteLength(opts.body)) } : {}) },
      timeout: opts.timeoutMs ?? 30_000,
    }, (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      const sock = res.socket as TLSSocket;
      const pc = sock.getPeerCertificate?.() as PeerCertificate | undefined;
      res.on('data', (c: Buffer) => {
        size += c.length;
        if (size > MAX_BODY) { req.destroy(new Error('answer too large')); return; }
        chunks.push(c);
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8'), peer: pc?.raw ?? null }));
      res.on('error', (e) => reject(tlsError(e, pinned)));
    });
    req.on('timeout', () => req.destroy(Object.assign(new Error('timed out'), { code: 'ETIMEDOUT' })));
    req.on('error', (e) => reject(tlsError(e as Error & { code?: string }, pinned)));
    if (opts.body !== undefined) req.write(opts.body);
    req.end();
  });
}

/** Retry-After as seconds (RFC 9110 §10.2.3: delay-seconds or an HTTP-date); null when absent or unreadable. */
export function retryAfterSeconds(v: string | string[] | undefined, now = Date.now()): number | null {
  const s = Array.isArray(v) ? v[0] : v;
  if (s === undefined) return null;
  if (/^[0-9]{1,9}$/.test(s.trim())) return Number(s.trim());
  const t = Date.parse(s);
  return Number.isNaN(t) ? null : Math.max(0, Math.ceil((t - now) / 1000));
}

/** A short, printable excerpt of a server's error body (never echoed raw to a terminal). */
export function excerpt(body: string): string {
  const s = body.replace(/[^\x20-\x7e]/g, ' ').replace(/\s+/g, ' ').trim();
  return s.length > 300 ? `${s.slice(0, 300)}…` : s;
}
