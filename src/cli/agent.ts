/**
 * `chokepoint agent …` and `chokepoint verify`: the device side (issue #6). Registered from
 * cli.ts; everything here imports only agent/ and core/ (DESIGN §1: never server code).
 */
import { Command, Option } from 'commander';
import { ChokepointError } from '../core/errors.js';
import { runFenced, type NamespaceMode } from '../agent/exec.js';
import { defaultDir } from '../agent/files.js';
import { Forwarder } from '../agent/forwarder.js';
import { agentLogger } from '../agent/logger.js';
import { parseLoopbackListen } from '../agent/loopback.js';
import { enroll } from '../agent/enroll.js';
import { renewDaemon, renewOnce } from '../agent/renew.js';
import { formatReport, runVerify, type VerifyOptions } from '../agent/verify.js';
import { parseDuration } from '../config/duration.js';
import { readFile } from 'node:fs/promises';

/** Prints a ChokepointError as `chokepoint: CODE: message` and sets the exit status. */
export function reportError(e: unknown, status = 1): void {
  if (e instanceof ChokepointError) {
    process.stderr.write(`chokepoint: ${e.code}: ${e.message}\n`);
    process.exitCode = e.code === 'USAGE' ? 2 : status;
    return;
  }
  process.stderr.write(`chokepoint: INTERNAL: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exitCode = 2;
}

async function forwardCommand(opts: { listen: string; gateway: string; dir: string }): Promise<void> {
  const l = parseLoopbackListen(opts.listen);
  if (l === null) throw new ChokepointError('USAGE', `--listen "${opts.listen}" is not HOST:PORT`);
  const log = agentLogger();
  const fwd = new Forwarder({ listenHost: l.host, listenPort: l.port, gateway: opts.gateway, dir: opts.dir, logger: log });
  const a = await fwd.listen();
  log.info({ listen: `${a.address}:${a.port}`, gateway: opts.gateway, dir: opts.dir }, 'forwarder listening');
  let stopping = false;
  const stop = (): void => {
    if (stopping) { void fwd.destroy(); return; }
    stopping = true;
    log.info({}, 'draining: no new connections; a second signal cuts open tunnels');
    void fwd.close().then(() => { if (fwd.liveConnections === 0) process.exit(0); });
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

async function execCommand(cmd: string[], opts: { proxy: string; namespace: boolean; requireNamespace?: boolean }): Promise<void> {
  const [command, ...args] = cmd;
  if (command === undefined) throw new ChokepointError('USAGE', 'no command given: chokepoint agent exec [--proxy URL] -- CMD ARGS…');
  const mode: NamespaceMode = opts.namespace === false ? 'off' : opts.requireNamespace ? 'require' : 'auto';
  process.exitCode = await runFenced({ proxy: opts.proxy, command, args, namespace: mode });
}

/** The token: --token, then CHOKEPOINT_ENROLL_TOKEN, then --token-file. Never logged, never stored. */
async function resolveToken(opts: { token?: string; tokenFile?: string }): Promise<string> {
  if (opts.token !== undefined && opts.token !== '') return opts.token;
  const env = process.env.CHOKEPOINT_ENROLL_TOKEN;
  if (env !== undefined && env !== '') return env;
  if (opts.tokenFile !== undefined) {
    try {
      return (await readFile(opts.tokenFile, 'utf8')).trim();
    } catch (e) {
      throw new ChokepointError('AGENT_TOKEN_MISSING', `--token-file ${opts.tokenFile}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
    }
  }
  throw new ChokepointError('AGENT_TOKEN_MISSING', 'give the enrollment token with --token, CHOKEPOINT_ENROLL_TOKEN or --token-file');
}

async function enrollCommand(opts: { server: string; token?: string; tokenFile?: string; caFingerprint: string; dir: string }): Promise<void> {
  const token = await resolveToken(opts);
  const r = await enroll({ server: opts.server, token, caFingerprint: opts.caFingerprint, dir: opts.dir });
  process.stdout.write(`enrolled: serial ${r.serial}, valid until ${r.notAfter.toISOString()}; files in ${opts.dir}\n`);
}

async function renewCommand(opts: { dir: string; server?: string; daemon?: boolean; force?: boolean }): Promise<void> {
  const say = (l: string): void => { process.stderr.write(`chokepoint agent renew: ${l}\n`); };
  if (opts.daemon) {
    const ac = new AbortController();
    process.on('SIGTERM', () => ac.abort());
    process.on('SIGINT', () => ac.abort());
    await renewDaemon({ dir: opts.dir, ...(opts.server ? { server: opts.server } : {}), say, signal: ac.signal });
    return;
  }
  const r = await renewOnce({ dir: opts.dir, ...(opts.server ? { server: opts.server } : {}), force: opts.force === true });
  if (r.renewed) process.stdout.write(`renewed: serial ${r.serial}, valid until ${new Date(r.plan.notAfter).toISOString()}\n`);
  else process.stdout.write(`not due: renewal at ${new Date(r.plan.dueAt).toISOString()}, expiry ${new Date(r.plan.notAfter).toISOString()}\n`);
}

async function verifyCommand(opts: Omit<VerifyOptions, 'timeoutMs'> & { json?: boolean; timeout?: string }): Promise<void> {
  const timeoutMs = opts.timeout === undefined ? undefined : parseDuration(opts.timeout);
  if (timeoutMs === null || (timeoutMs !== undefined && (timeoutMs < 100 || timeoutMs > 120_000))) throw new ChokepointError('USAGE', '--timeout must be a duration from 100ms to 2m (e.g. 3s)');
  const checks = await runVerify({ ...opts, timeoutMs });
  process.stdout.write(opts.json ? `${JSON.stringify({ checks }, null, 2)}\n` : formatReport(checks));
  process.exitCode = checks.some((c) => c.status === 'fail') ? 1 : 0;
}

const wrap = <A extends unknown[]>(f: (...a: A) => Promise<void>) => async (...a: A): Promise<void> => {
  try { await f(...a); } catch (e) { reportError(e); }
};

export function registerAgentCommands(program: Command): void {
  program
    .command('verify')
    .description('run the security test plan from this device; each check pass/fail/skipped with evidence; exit 1 if any fails')
    .option('--dir <dir>', 'agent directory', defaultDir())
    .option('--gateway <url>', 'gateway mTLS listener, https://HOST:PORT')
    .option('--allowed <host:port>', 'a destination the policy allows (gateway path check)')
    .option('--denied <host:port>', 'a destination outside the allowlist (must be refused with a reason)')
    .option('--blocked <ip:port>', 'an IP:PORT that answers when reachable and that a direct connection must not reach (host egress rules)')
    .option('--revoked-dir <dir>', 'an agent directory holding a certificate the operator revoked')
    .option('--impostor <url>', 'an https endpoint whose certificate is not from the pinned CA (must be refused)')
    .option('--renew', 'renew the certificate now as part of the check')
    .option('--timeout <duration>', 'how long each network check waits (default 5s; a blocked direct connection passes by timing out)')
    .option('--json', 'machine-readable output')
    .action(wrap(verifyCommand));
  // `agent exec -- CMD -x …` must hand the command's own options to it untouched.
  program.enablePositionalOptions();
  const agent = program.command('agent').description('device side: enroll, renew, local forwarder, fenced commands');
  agent
    .command('enroll')
    .description('enroll this device over EST: pin the CA by fingerprint, make the key here, send a CSR with a one-time token')
    .requiredOption('--server <url>', 'control plane, https://HOST:PORT')
    .requiredOption('--ca-fingerprint <sha256>', 'SHA-256 of the CA certificate (hex, colons allowed), given by the operator out of band')
    .option('--token <token>', 'one-time enrollment token (or CHOKEPOINT_ENROLL_TOKEN, or --token-file)')
    .option('--token-file <file>', 'read the token from a file')
    .option('--dir <dir>', 'agent directory (created 0700)', defaultDir())
    .action(wrap(enrollCommand));
  agent
    .command('renew')
    .description('renew the device certificate over mTLS when about two thirds of its lifetime has passed')
    .option('--dir <dir>', 'agent directory', defaultDir())
    .option('--server <url>', 'control plane (default: the one enrolled with)')
    .option('--daemon', 'keep running: renew when due, retry with backoff')
    .option('--force', 'renew now even if not due')
    .action(wrap(renewCommand));
  agent
    .command('forward')
    .description('plain HTTP proxy on loopback that relays to the gateway mTLS listener with the device certificate')
    .option('--listen <host:port>', 'loopback address to listen on', '127.0.0.1:3128')
    .requiredOption('--gateway <url>', 'the gateway mTLS listener, https://HOST:PORT')
    .option('--dir <dir>', 'agent directory (key, certificate, pinned CA)', defaultDir())
    .action(wrap(forwardCommand));
  agent
    .command('exec')
    .description('run a command whose traffic can only leave through the forwarder (network namespace on Linux)')
    .argument('<command...>', 'the command and its arguments (after --)')
    .option('--proxy <url>', 'the forwarder', 'http://127.0.0.1:3128')
    .option('--no-namespace', 'only set the proxy environment (no network namespace)')
    .addOption(new Option('--require-namespace', 'fail rather than run with the environment only').conflicts('namespace'))
    .passThroughOptions()
    .action(wrap(execCommand));
}
