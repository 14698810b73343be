/**
 * The CLI's HTTP client for the control API: `--server` / CHOKEPOINT_SERVER, `--token` /
 * CHOKEPOINT_TOKEN, `--ca FILE` for a private control-plane CA. Every failure is printed as one
 * line with its stable code; nothing is retried behind the user's back (a retried POST could
 * apply a policy twice).
 */
import { isIPv4 } from 'node:net';
import { readFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { Command } from 'commander';

export const DEFAULT_SERVER = 'http://127.0.0.1:8080';
const TIMEOUT_MS = 30_000;
const MAX_RESPONSE = 64 * 1024 * 1024;

export interface RemoteFlags {
  server?: string;
  token?: string;
  ca?: string;
  json?: boolean;
}

export class CliError extends Error {
  constructor(readonly code: string, message: string, readonly exitCode = 1, readonly body?: unknown) {
    super(message);
  }
}

/** Adds the connection flags every remote command takes. */
export function remote(cmd: Command): Command {
  return cmd
    .option('--server <url>', `control API base URL (env CHOKEPOINT_SERVER, default ${DEFAULT_SERVER})`)
    .option('--token <token>', 'admin API token (env CHOKEPOINT_TOKEN)')
    .option('--ca <file>', 'CA certificate (PEM) that signed the control listener certificate')
    .option('--json', 'machine-readable output');
}

export class ApiClient {
  readonly base: URL;
  readonly #token: string | undefined;
  readonly #ca: string | undefined;

  constructor(flags: RemoteFlags) {
    const raw = flags.server ?? process.env.CHOKEPOINT_SERVER ?? DEFAULT_SERVER;
    let u: URL;
    try { u = new URL(raw); } catch { throw new CliError('USAGE', `--server: "${raw}" is not a URL`, 2); }
    if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new CliError('USAGE', '--server must be http:// or https://', 2);
    // The server refuses plain HTTP off loopback, but only after this request, bearer token
    // included, has crossed the network in clear text: refuse before sending anything.
    if (u.protocol === 'http:' && !isLoopbackHost(u.hostname)) {
      throw new CliError('USAGE', `--server ${u.origin}: plain http:// is only for loopback (the API token would cross the network in clear text); use https:// with --ca`, 2);
    }
    this.base = u;
    this.#token = flags.token ?? process.env.CHOKEPOINT_TOKEN;
    if (flags.ca !== undefined) {
      try { this.#ca = readFileSync(flags.ca, 'utf8'); } catch { throw new CliError('USAGE', `--ca: cannot read ${flags.ca}`, 2); }
    }
  }

  async call<T = any>(method: string, path: string, body?: unknown): Promise<T> { // eslint-disable-line @typescript-eslint/no-explicit-any
    const url = new URL(this.base.pathname.replace(/\/$/, '') + path, this.base);
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const headers: Record<string, string> = { accept: 'application/json' };
    if (this.#token) headers.authorization = `Bearer ${this.#token}`;
    if (payload) { headers['content-type'] = 'application/json'; headers['content-length'] = String(payload.length); }
    const req = url.protocol === 'https:' ? httpsRequest : httpRequest;
    const { status, text } = await new Promise<{ status: number; text: string }>((resolve, reject) => {
      const r = req(url, { method, headers, timeout: TIMEOUT_MS, ...(this.#ca ? { ca: this.#ca } : {}) }, (res) => {
        const chunks: Buffer[] = [];
        let n = 0;
        res.on('data', (c: Buffer) => {
          n += c.length;
          if (n > MAX_RESPONSE) { res.destroy(new Error('response too large')); return; }
          chunks.push(c);
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', reject);
      });
      r.on('timeout', () => r.destroy(new Error(`no answer within ${TIMEOUT_MS / 1000}s`)));
      r.on('error', reject);
      r.end(payload);
    }).catch((err: Error) => { throw new CliError('SERVER_UNREACHABLE', `cannot reach ${this.base.origin}: ${err.message}`); });
    let json: unknown = null;
    try { json = text === '' ? null : JSON.parse(text); } catch { /* not JSON */ }
    if (status >= 200 && status < 300) return json as T;
    const e = json as { code?: string; message?: string; problems?: { path: string; message: string }[] } | null;
    const problems = e?.problems?.map((p) => `\n  ${p.path || '(document)'}: ${p.message}`).join('') ?? '';
    throw new CliError(e?.code ?? `HTTP_${status}`, `${e?.message ?? `HTTP ${status}`}${problems}`, 1, json);
  }
}

/** Runs a command body: prints CliErrors as `chokepoint: message [CODE]` and sets the exit code. */
export function action<A extends unknown[]>(fn: (...args: A) => Promise<void>): (...args: A) => Promise<void> {
  return async (...args: A) => {
    try {
      await fn(...args);
    } catch (err) {
      if (err instanceof CliError) {
        process.stderr.write(`chokepoint: ${err.message} [${err.code}]\n`);
        process.exitCode = err.exitCode;
        return;
      }
      throw err;
    }
  };
}

export function out(flags: RemoteFlags, json: unknown, human: () => string): void {
  process.stdout.write(flags.json ? `${JSON.stringify(json, null, 2)}\n` : `${human()}\n`);
}

/** A plain text table; values are made single-line so that hostile data cannot forge rows. */
export function table(rows: readonly Record<string, unknown>[], cols: readonly string[]): string {
  const cell = (v: unknown) => (v === null || v === undefined ? '-' : Array.isArray(v) ? v.join(',') : typeof v === 'object' ? JSON.stringify(v) : String(v)).replace(/[\u0000-\u001f\u007f]/g, '?');
  const data = rows.map((r) => cols.map((c) => cell(r[c])));
  const widths = cols.map((c, i) => Math.max(c.length, ...data.map((d) => (d[i] as string).length)));
  const line = (cells: readonly string[]) => cells.map((s, i) => s.padEnd(widths[i] as number)).join('  ').trimEnd();
  return [line(cols.map((c) => c.toUpperCase())), ...data.map(line)].join('\n');
}

export function when(ms: number | null | undefined): string {
  return ms === null || ms === undefined ? '-' : new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** localhost, 127.0.0.0/8 or ::1 (URL hostnames keep IPv6 brackets). */
export function isLoopbackHost(hostname: string): boolean {
  const h = hostname.replace(/^\[|\]$/g, '').toLowerCase();
  if (h === 'localhost' || h === '::1') return true;
  return isIPv4(h) && h.startsWith('127.');
}
