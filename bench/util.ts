/** Helpers shared by the benchmarks that drive a spawned gateway with cpbench. */
import { execFileSync, spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const root = fileURLToPath(new URL('../../', import.meta.url));
/** The `chokepoint` command as users run it (bin/chokepoint sets the allocator knob, then runs Node). */
export const CLI = join(root, 'bin/chokepoint');

/** The V8 flags bin/chokepoint gives Node (read from its `exec node` line, so they are stated once). */
function cliNodeFlags(): string[] {
  const line = readFileSync(CLI, 'utf8').split('\n').find((l) => l.startsWith('exec node ')) ?? '';
  return line.split(/\s+/).filter((w) => /^--[a-z-]+(=\S+)?$/.test(w));
}

/**
 * Starts `chokepoint ARGS` as users run it. BENCH_NODE_FLAGS (e.g. "--cpu-prof
 * --cpu-prof-dir=/tmp/prof", which NODE_OPTIONS refuses) runs Node with those flags after the
 * knobs bin/chokepoint sets (a V8 flag given twice takes the later value): to profile the
 * gateway under the bench's own load, or to try other heap sizes.
 */
export function spawnGateway(argv: readonly string[], opts: SpawnOptions): ChildProcess {
  // BENCH_PROXY_THREADS=N: every gateway the benches start serves its plain listener on N threads.
  const threads = process.env.BENCH_PROXY_THREADS;
  const args = threads !== undefined && threads !== '' && argv[0] === 'serve' ? [...argv, '--proxy-threads', threads] : argv;
  const flags = process.env.BENCH_NODE_FLAGS;
  if (flags === undefined || flags.trim() === '') return spawn(CLI, args, opts);
  return spawn(process.execPath, [...cliNodeFlags(), ...flags.trim().split(/\s+/), join(root, 'dist/src/cli.js'), ...args],
    { ...opts, env: { MALLOC_TRIM_THRESHOLD_: '33554432', ...(opts.env ?? process.env) } });
}

/**
 * CPU time (user + system) a process has used, in microseconds (Linux /proc; USER_HZ is 100).
 * CPU per unit of work is the figure to compare on a shared machine: rates move with whatever
 * else the cores are doing, CPU per tunnel or per GB much less.
 */
export function cpuUs(pid: number, tid?: number): number {
  // /proc/PID/stat counts every thread of the process; /proc/PID/task/TID/stat one thread (the
  // main thread's TID is the PID).
  const path = tid === undefined ? `/proc/${pid}/stat` : `/proc/${pid}/task/${tid}/stat`;
  const f = readFileSync(path, 'utf8').split(') ')[1]?.split(' ') ?? [];
  return ((Number(f[11]) + Number(f[12])) * 1e6) / 100;
}

/**
 * Runs cpbench and returns its last JSON line. Asynchronous: a bench that hosts receivers in
 * its own process (bench/sinks.ts) must keep its event loop running meanwhile.
 */
export async function cpbenchRun(bin: string, args: string[]): Promise<Record<string, unknown>> {
  const p = spawn(bin, args, { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  p.stdout!.on('data', (c: Buffer) => { out += c.toString(); });
  const code = await new Promise<number | null>((r) => p.once('exit', r));
  if (code !== 0) throw new Error(`cpbench ${args[0]} exited with ${code}`);
  return JSON.parse(out.trim().split('\n').at(-1) ?? '{}') as Record<string, unknown>;
}

/** cpbench from $CPBENCH, or built once from ../shared/bench/cpbench into the temp folder. */
export function cpbenchPath(): string | null {
  if (process.env.CPBENCH && existsSync(process.env.CPBENCH)) return process.env.CPBENCH;
  const target = join(tmpdir(), 'cpbench-target');
  const bin = join(target, 'release/cpbench');
  if (existsSync(bin)) return bin;
  const manifest = join(root, '../shared/bench/cpbench/Cargo.toml');
  if (!existsSync(manifest)) return null;
  try {
    execFileSync('cargo', ['build', '--release', '--offline', '-q', '--manifest-path', manifest], { env: { ...process.env, CARGO_TARGET_DIR: target }, stdio: 'inherit' });
    return bin;
  } catch {
    return null;
  }
}

/** Resolves once something accepts connections on 127.0.0.1:port (15 s at most). */
export async function waitPort(port: number): Promise<void> {
  for (let i = 0; i < 150; i++) {
    const ok = await new Promise<boolean>((r) => {
      const s = connect(port, '127.0.0.1', () => { s.destroy(); r(true); });
      s.on('error', () => r(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`port ${port} never opened`);
}

/** A loopback port that was free a moment ago (the tests' helper; the benches share it). */
export { freePort } from '../test/helpers/ports.js';

/** The middle value (the upper one of an even count): rounds on a noisy machine, compared by median. */
export const median = (xs: readonly number[]): number => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)] as number; };

/** Evidence settings of the benches' baseline: no sinks, no detectors, no process metrics. */
export const NO_EVIDENCE = 'detect: { enabled: false }\nmetrics: { process: false }\n';

/** Where the benches' sinks write: a file in `dir`, the webhook and syslog receivers the bench started. */
export interface BenchSinkTargets { readonly dir: string; readonly hookUrl: string; readonly syslogPort: number; readonly caPath: string }

/**
 * The `sinks:` section for the chosen sinks (`file`, `webhook`, `syslog`), each with its disk
 * buffer and the defaults users get, and the `detect:` line when the detectors are not chosen.
 * The sinks and evidence benches measure the same configuration through this.
 */
export function benchSinksYaml(pick: ReadonlySet<string>, t: BenchSinkTargets): string {
  const lines = [
    pick.has('file') ? `  - { type: file, name: file, path: ${join(t.dir, 'out/events.jsonl')}, rotate: { max_bytes: 64MiB } }\n` : '',
    pick.has('webhook') ? `  - { type: webhook, name: hook, url: "${t.hookUrl}", secret: bench-secret-0123456789abcdef, tls: { ca: ${t.caPath} } }\n` : '',
    pick.has('syslog') ? `  - { type: syslog, name: syslog, transport: tcp, host: 127.0.0.1, port: ${t.syslogPort} }\n` : '',
  ].join('');
  return `${pick.has('detect') ? '' : 'detect: { enabled: false }\n'}${lines === '' ? 'sinks: []\n' : `sinks:\n${lines}`}`;
}
