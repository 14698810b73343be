/**
 * What the evidence pipeline costs per short tunnel, without the proxy (`npm run bench evidence`).
 *
 * The sinks bench (sinks.ts) measures what issue #5 asks — the CONNECT rate with every sink on
 * against none — but on a small shared machine its rounds differ by 10–30%, more than the
 * effect it looks for. This one isolates the cost behind that ratio: a child process builds the
 * gateway's evidence pipeline (the same `createEvidence` as `chokepoint serve`: sinks, metrics,
 * detectors), publishes the two events of a short tunnel (`gateway.decision` and
 * `gateway.tunnel.closed`) at a fixed rate, and reports the CPU time it took per tunnel: the
 * whole process, the publishing thread (the proxy's thread in the gateway), and the rest (the
 * sinks' thread, libuv's and V8's helper threads). The receivers (an HTTPS webhook endpoint, a
 * TCP syslog listener) run in another process: their CPU is not counted.
 *
 * Reading it: on a machine where the proxy's tunnels are CPU-bound, the rate with sinks on is
 * about T / (T + E) of the rate without, where T is the CPU every process spends per tunnel
 * without sinks (gateway, clients, origin) and E is this bench's `all` figure minus `none`.
 * Configurations run in fresh processes, alternating, and the medians are reported.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { createServer as createHttpsServer } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { createEvidence } from '../src/cli/evidence.js';
import { dataDirOf, loadConfig } from '../src/config/load.js';
import { EventBus, nowIso } from '../src/events/bus.js';
import type { DecisionEvent, TunnelClosedEvent } from '../src/events/catalogue.js';
import { makePki } from '../test/helpers/origins.js';
import { benchSinksYaml, cpuUs, median, NO_EVIDENCE } from './util.js';

const CONFIGS = ['none', 'file', 'syslog', 'webhook', 'detect', 'all'] as const;
type Which = (typeof CONFIGS)[number];

interface ChildResult { which: Which; tunnels: number; process_us: number; main_us: number; others_us: number }

/** The evidence settings of one configuration (YAML), given the receivers' ports. */
function configYaml(which: Which, dir: string, hookPort: number, syslogPort: number, caPath: string): string {
  const y = `proxy_listen: 127.0.0.1:0\nevents: none\nlog_level: warn\ndata_dir: ${dir}\ncontrol_listen: 127.0.0.1:0\nmtls_listen: "off"\n`;
  if (which === 'none') return `${y}${NO_EVIDENCE}`;
  const pick = new Set(which === 'all' ? ['file', 'webhook', 'syslog', 'detect'] : [which]);
  return `${y}${benchSinksYaml(pick, { dir, hookUrl: `https://127.0.0.1:${hookPort}/hook`, syslogPort, caPath })}`;
}

/** The child: builds the pipeline, publishes at `rate` tunnels a second, prints one JSON line. */
async function child(which: Which, configPath: string, rate: number, secs: number): Promise<void> {
  const config = loadConfig(configPath, {});
  const bus = new EventBus();
  const evidence = createEvidence({ config, bus, dataDir: dataDirOf(config), logger: pino({ level: 'warn' }, pino.destination(2)) });
  let n = 0;
  // The events of a short CONNECT tunnel as the gateway builds them (gateway/attempt.ts), with
  // what varies between tunnels varying here too (id, client port).
  const tunnel = (): void => {
    n++;
    const id = `6367f74e-5e0a-4c48-bfb2-${String(n).padStart(12, '0')}`;
    const conn = {
      listener: 'proxy', client_ip: '127.0.0.1', client_port: 20000 + (n % 40000), group: 'bench', device_id: null, asset_id: null, serial: null,
      method: 'CONNECT', host: 'localhost', port: 19000, address: '127.0.0.1',
    } as const;
    const decision: DecisionEvent = {
      v: 1, type: 'gateway.decision', time: nowIso(), id, ...conn, verdict: 'allow', reason: 'allowed', rule: 'groups.bench.allow[0]', mode: 'enforce',
      sni: null, tls_version: null, address_class: null, detail: null, status: null,
    };
    bus.publish(decision);
    const closed: TunnelClosedEvent = {
      v: 1, type: 'gateway.tunnel.closed', time: nowIso(), id, ...conn, protocol: 'connect', bytes_up: 17, bytes_down: 16, duration_ms: 3, close_reason: 'client_closed', status: null,
    };
    bus.publish(closed);
  };
  // Publishes what is due every millisecond: a steady stream, as from a busy proxy.
  const run = (s: number) => new Promise<number>((resolve) => {
    const t0 = performance.now();
    let sent = 0;
    const timer = setInterval(() => {
      const elapsed = performance.now() - t0;
      const due = Math.min(Math.floor((elapsed / 1000) * rate), Math.floor(s * rate));
      while (sent < due) { tunnel(); sent++; }
      if (elapsed >= s * 1000) { clearInterval(timer); resolve(sent); }
    }, 1);
  });
  await run(2); // warm-up: the JIT's first seconds, the sinks' connections
  await new Promise((r) => setTimeout(r, 200));
  const main0 = cpuUs(process.pid, process.pid);
  const cpu0 = process.cpuUsage();
  const tunnels = await run(secs);
  // What the sinks still had queued when publishing stopped is part of the cost.
  await new Promise((r) => setTimeout(r, 300));
  const cpu = process.cpuUsage(cpu0);
  const mainUs = cpuUs(process.pid, process.pid) - main0;
  const processUs = cpu.user + cpu.system;
  const result: ChildResult = { which, tunnels, process_us: processUs / tunnels, main_us: mainUs / tunnels, others_us: (processUs - mainUs) / tunnels };
  process.stdout.write(`${JSON.stringify(result)}\n`);
  await evidence.close();
  process.exit(0);
}

export async function runEvidenceBench(opts: { rounds?: number; rate?: number; secs?: number } = {}): Promise<Record<string, number>> {
  const rounds = opts.rounds ?? (Number(process.env.BENCH_ROUNDS) || 3);
  const rate = opts.rate ?? (Number(process.env.BENCH_EVIDENCE_RATE) || 3000);
  const secs = opts.secs ?? 5;
  const dir = mkdtempSync(join(tmpdir(), 'cp-bench-evidence-'));
  const pki = makePki(['127.0.0.1']);
  // Receivers in a process of their own, so that their CPU is not counted as the pipeline's.
  const receivers = spawn(process.execPath, [fileURLToPath(import.meta.url), '--receivers', join(pki.dir, 'srv.pem'), join(pki.dir, 'srv.key')], { stdio: ['ignore', 'pipe', 'inherit'] });
  const children: ChildProcess[] = [receivers];
  try {
    const ports = await new Promise<{ hook: number; syslog: number }>((resolve, reject) => {
      receivers.stdout!.once('data', (d: Buffer) => resolve(JSON.parse(d.toString()) as { hook: number; syslog: number }));
      receivers.once('exit', (code) => reject(new Error(`receivers exited (${code})`)));
    });
    const per: Record<Which, ChildResult[]> = { none: [], file: [], syslog: [], webhook: [], detect: [], all: [] };
    for (let round = 0; round < rounds; round++) {
      for (const which of CONFIGS) {
        const runDir = join(dir, `${which}-${round}`);
        const configPath = join(dir, `${which}-${round}.yaml`);
        writeFileSync(configPath, configYaml(which, runDir, ports.hook, ports.syslog, pki.caPath));
        const c = spawn(process.execPath, [fileURLToPath(import.meta.url), '--child', which, configPath, String(rate), String(secs)], { stdio: ['ignore', 'pipe', 'inherit'] });
        children.push(c);
        let out = '';
        c.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
        const code = await new Promise<number | null>((r) => c.once('exit', r));
        if (code !== 0) throw new Error(`evidence bench child (${which}) exited with ${code}`);
        per[which].push(JSON.parse(out.trim().split('\n').at(-1) as string) as ChildResult);
        rmSync(runDir, { recursive: true, force: true });
      }
    }
    const figures: Record<string, number> = {};
    const round1 = (x: number) => Math.round(x * 10) / 10;
    const base = median(per.none.map((r) => r.process_us));
    for (const which of CONFIGS) {
      figures[`cpu_us_per_tunnel_${which}`] = round1(median(per[which].map((r) => r.process_us)));
      figures[`publishing_thread_cpu_us_per_tunnel_${which}`] = round1(median(per[which].map((r) => r.main_us)));
      figures[`other_threads_cpu_us_per_tunnel_${which}`] = round1(median(per[which].map((r) => r.others_us)));
      if (which !== 'none') figures[`added_cpu_us_per_tunnel_${which}`] = round1(median(per[which].map((r) => r.process_us)) - base);
    }
    figures.tunnels_per_s_published = rate;
    for (const [k, v] of Object.entries(figures)) console.log(JSON.stringify({ bench: 'evidence', figure: k, value: v }));
    return figures;
  } finally {
    for (const c of children) c.kill('SIGKILL');
    pki.cleanup();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Minimal receivers: count nothing, answer 204; print their ports. */
function receiversMain(certPath: string, keyPath: string): void {
  const hook = createHttpsServer({ cert: readFileSync(certPath), key: readFileSync(keyPath) }, (req, res) => {
    req.resume();
    req.on('end', () => { res.statusCode = 204; res.end(); });
  });
  const syslog = createServer((s) => { s.resume(); s.on('error', () => {}); });
  hook.listen(0, '127.0.0.1', () => syslog.listen(0, '127.0.0.1', () => {
    process.stdout.write(`${JSON.stringify({ hook: (hook.address() as AddressInfo).port, syslog: (syslog.address() as AddressInfo).port })}\n`);
  }));
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const [mode, ...args] = process.argv.slice(2);
  if (mode === '--child') await child(args[0] as Which, args[1] as string, Number(args[2]), Number(args[3]));
  else if (mode === '--receivers') receiversMain(args[0] as string, args[1] as string);
  else await runEvidenceBench();
}
