/**
 * Sink overhead for `npm run bench`: the gateway's short-CONNECT rate with every sink on
 * (rotating file, HTTPS webhook with its disk buffer, syslog over TCP to a real rsyslog when
 * installed, metrics and detectors) against no sinks at all. Runs alternate (none, all, none,
 * all, …) on fresh processes and the medians are compared; the target is a ratio ≥ 0.95.
 * It also checks that the webhook received every decision of the all-sinks runs.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect, createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { makePki } from '../test/helpers/origins.js';
import { rsyslogAvailable, startRsyslog, startWebhookReceiver } from '../test/helpers/receivers.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
const CLI = join(root, 'dist/src/cli.js');
const SECRET = 'bench-secret-0123456789abcdef';

function cpbench(): string | null {
  for (const p of [process.env.CPBENCH, join(tmpdir(), 'cpbench-target/release/cpbench')]) if (p && existsSync(p)) return p;
  return null;
}

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const p = (s.address() as AddressInfo).port;
  await new Promise((r) => s.close(r));
  return p;
}

async function waitPort(port: number): Promise<void> {
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

function rate(bin: string, proxyPort: number, originPort: number, secs: number): { per_s: number; errors: number } {
  const out = execFileSync(bin, ['rate', '--proxy', `127.0.0.1:${proxyPort}`, '--target', `localhost:${originPort}`, '--conns', '32', '--secs', String(secs), '--mode', 'connect'], { encoding: 'utf8' });
  const j = JSON.parse(out.trim().split('\n').at(-1) ?? '{}') as { per_s: number; errors: number };
  return { per_s: Number(j.per_s), errors: Number(j.errors) };
}

const median = (xs: number[]) => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)] as number; };

export async function runSinksBench(opts: { secs?: number; rounds?: number } = {}): Promise<Record<string, number>> {
  const bin = cpbench();
  if (bin === null) {
    console.log(JSON.stringify({ bench: 'sinks', skipped: 'cpbench unavailable (run `npm run bench proxy` once to build it)' }));
    return {};
  }
  const secs = opts.secs ?? 4;
  const rounds = opts.rounds ?? 3;
  const dir = mkdtempSync(join(tmpdir(), 'cp-bench-sinks-'));
  const children: ChildProcess[] = [];
  const rx = await startWebhookReceiver(SECRET);
  const pki = makePki(['127.0.0.1']);
  const syslogPorts = { udp: await freePort(), tcp: await freePort(), tls: await freePort() };
  const rs = rsyslogAvailable() ? await startRsyslog(syslogPorts, pki) : null;
  const originPort = await freePort();
  const proxyPort = await freePort();
  const controlPort = await freePort();
  const figures: Record<string, number> = {};
  try {
    const origin = spawn(bin, ['origin', '--port', String(originPort)], { stdio: 'ignore' });
    children.push(origin);
    await waitPort(originPort);
    const base = readFileSync(join(root, 'bench/compare-config.yaml'), 'utf8')
      .replace(/^proxy_listen:.*$/m, `proxy_listen: 127.0.0.1:${proxyPort}`)
      .replace(/^events:.*$/m, 'events: none');
    const common = `control_listen: 127.0.0.1:${controlPort}\nmtls_listen: "off"\n`;
    const none = `${base}${common}detect: { enabled: false }\nmetrics: { process: false }\n`;
    const all = `${base}${common}sinks:
  - { type: file, name: file, path: ${join(dir, 'out/events.jsonl')}, rotate: { max_bytes: 64MiB } }
  - { type: webhook, name: hook, url: "${rx.url}", secret: ${SECRET}, tls: { ca: ${rx.pki.caPath} } }
${rs ? `  - { type: syslog, name: syslog, transport: tcp, host: 127.0.0.1, port: ${rs.tcpPort} }\n` : ''}`;
    const policy = join(root, 'bench/compare-policy.yaml');
    const results: Record<'none' | 'all', number[]> = { none: [], all: [] };
    for (let round = 0; round < rounds; round++) {
      for (const which of ['none', 'all'] as const) {
        const runDir = join(dir, `${which}-${round}`);
        writeFileSync(join(dir, 'config.yaml'), (which === 'all' ? all : none) + `data_dir: ${runDir}\n`);
        const gw = spawn(process.execPath, [CLI, 'serve', '--config', join(dir, 'config.yaml'), '--policy', policy], { stdio: ['ignore', 'ignore', 'inherit'] });
        children.push(gw);
        await waitPort(proxyPort);
        rate(bin, proxyPort, originPort, 1); // warm-up (JIT, connection pools)
        const r = rate(bin, proxyPort, originPort, secs);
        results[which].push(r.per_s);
        gw.kill('SIGTERM');
        await new Promise((res) => gw.once('exit', res));
      }
    }
    const before = rx.events().length;
    figures.connect_per_s_no_sinks = Math.round(median(results.none));
    figures.connect_per_s_all_sinks = Math.round(median(results.all));
    figures.ratio_all_vs_none = Math.round((median(results.all) / median(results.none)) * 1000) / 1000;
    figures.webhook_events_received = before;
    figures.syslog_messages_received = rs ? rs.lines().length : -1;
    for (const [k, v] of Object.entries(figures)) console.log(JSON.stringify({ bench: 'sinks', figure: k, value: v, target: k === 'ratio_all_vs_none' ? '>= 0.95' : undefined }));
    return figures;
  } finally {
    for (const c of children) c.kill('SIGKILL');
    await rs?.close();
    await rx.close();
    pki.cleanup();
    rmSync(dir, { recursive: true, force: true });
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  await runSinksBench();
}
