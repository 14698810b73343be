/**
 * `chokepoint agent exec`: runs a command whose network traffic can only leave through the
 * forwarder. The proxy environment alone is a request, not a fence: a program that ignores
 * HTTP_PROXY (or a library that opens its own sockets) would go straight out. So on Linux,
 * when a network namespace can be made (root, or unprivileged user namespaces), the command
 * runs in its own namespace with only loopback, where a relay on 127.0.0.1 is the one path
 * out (ns-relay.ts). A direct connection then fails at once (ENETUNREACH or ECONNREFUSED)
 * instead of bypassing the gateway. Without that ability we say so plainly.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect, createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ChokepointError } from '../core/errors.js';
import { parseProxyUrl, proxyEnv } from './proxy-env.js';

export type NamespaceMode = 'auto' | 'require' | 'off';

export interface ExecOptions {
  readonly proxy: string;
  readonly command: string;
  readonly args: readonly string[];
  readonly namespace: NamespaceMode;
  /** Where notices go (stderr by default). */
  readonly notice?: (line: string) => void;
}

export interface FenceCheck {
  readonly available: boolean;
  readonly flags: readonly string[];
  readonly why: string;
  /** Run the command with no capabilities at all (root without a user namespace). */
  readonly dropCaps?: boolean;
}

/** Can this process make a network namespace? Tries it (`unshare --net true`) rather than guessing. */
export function fenceAvailable(): FenceCheck {
  if (process.platform !== 'linux') return { available: false, flags: [], why: `network namespaces exist only on Linux (this is ${process.platform})` };
  const root = process.getuid?.() === 0;
  // A user namespace even for root: with only a new network namespace, a root command keeps
  // every capability of the host's user namespace and can simply enter the host's network
  // (`nsenter -t <our pid> -n`, `ip netns exec`) and go around the gateway. Inside its own user
  // namespace it is root only there, and setns into a network namespace it does not own fails.
  const flags = ['--net', '--map-root-user'];
  const r = spawnSync('unshare', [...flags, 'true'], { stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8' });
  if (r.error) return { available: false, flags, why: `unshare cannot be run (${r.error.message}; package util-linux)` };
  if (r.status === 0) return { available: true, flags, why: root ? 'running as root (in a user namespace of its own)' : 'unprivileged user namespace' };
  const why = `unshare ${flags.join(' ')} failed: ${r.stderr.trim() || `exit ${r.status}`}`;
  if (!root) return { available: false, flags, why: `${why} (unprivileged user namespaces are disabled?)` };
  // Root on a host that forbids user namespaces (user.max_user_namespaces=0): a network
  // namespace alone, and the command loses every capability (setpriv), so it cannot setns back.
  const p = spawnSync('setpriv', ['--version'], { stdio: 'ignore' });
  const n = spawnSync('unshare', ['--net', 'true'], { stdio: 'ignore' });
  if (p.status === 0 && n.status === 0) return { available: true, flags: ['--net'], dropCaps: true, why: 'running as root without user namespaces: no capabilities for the command' };
  return { available: false, flags, why: `${why}; and without a user namespace root needs setpriv (util-linux) to drop its capabilities` };
}

const RELAY = fileURLToPath(new URL('./ns-relay.js', import.meta.url));

/** Runs the command; resolves with its exit status. */
export async function runFenced(opts: ExecOptions): Promise<number> {
  const notice = opts.notice ?? ((l: string) => process.stderr.write(`chokepoint agent exec: ${l}\n`));
  const proxy = parseProxyUrl(opts.proxy);
  if (proxy === null) throw new ChokepointError('USAGE', `--proxy "${opts.proxy}" is not an http://HOST:PORT URL`);
  const fence = opts.namespace === 'off' ? { available: false, flags: [], why: '--no-namespace was given' } : fenceAvailable();
  if (!fence.available) {
    if (opts.namespace === 'require') throw new ChokepointError('AGENT_EXEC_FAILED', `no network namespace: ${fence.why}; refusing to run unfenced (--require-namespace)`);
    notice(`WARNING: only the proxy environment is set (${fence.why}). A program that ignores HTTP_PROXY can go around the gateway; block direct egress with host rules (chokepoint policy export).`);
    return spawnWait(opts.command, opts.args, proxyEnv(proxy.href.replace(/\/$/, ''), process.env));
  }

  // The Unix socket lives in a directory only we can enter, so no other local user can use
  // it to borrow the forwarder (and with it the device identity) from outside the namespace.
  const dir = mkdtempSync(join(tmpdir(), 'chokepoint-exec-'));
  const sock = join(dir, 'relay.sock');
  const outerPort = Number(proxy.port || 80);
  const outerHost = proxy.hostname.replace(/^\[|\]$/g, '');
  const server: Server = createServer((c) => {
    const u = connect(outerPort, outerHost);
    c.on('error', () => u.destroy());
    u.on('error', () => c.destroy());
    c.pipe(u);
    u.pipe(c);
  });
  await new Promise<void>((resolve, reject) => { server.once('error', reject); server.listen(sock, () => resolve()); });
  const innerPort = outerPort;
  const env = proxyEnv(`http://127.0.0.1:${innerPort}`, process.env);
  try {
    return await spawnWait('unshare', [...fence.flags, process.execPath, RELAY, sock, String(innerPort), ...(fence.dropCaps ? ['--drop-caps'] : []), '--', opts.command, ...opts.args], env);
  } finally {
    server.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

function spawnWait(cmd: string, args: readonly string[], env: NodeJS.ProcessEnv): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, [...args], { stdio: 'inherit', env });
    const forward = (sig: NodeJS.Signals): void => { child.kill(sig); };
    const sigs = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
    for (const s of sigs) process.on(s, forward);
    child.on('error', (e) => {
      for (const s of sigs) process.off(s, forward);
      reject(new ChokepointError('AGENT_EXEC_FAILED', `cannot run ${cmd}: ${e.message}`, { cause: e }));
    });
    child.on('exit', (code, signal) => {
      for (const s of sigs) process.off(s, forward);
      resolve(code ?? (signal === 'SIGKILL' ? 137 : signal === 'SIGTERM' ? 143 : signal === 'SIGINT' ? 130 : 1));
    });
  });
}
