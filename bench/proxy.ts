/**
 * Proxy benchmark for `npm run bench`: starts this checkout's gateway as a child process
 * and drives it with cpbench (../shared/bench/cpbench, built on first use): single-stream
 * tunnel throughput, short CONNECT tunnels per second with p50/p99, keep-alive absolute-form
 * HTTP requests per second, and memory per idle tunnel. Peer comparisons (Squid, proxy-chain)
 * are bench/compare.sh's job; this one tracks our own figures between commits.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { spawnGateway, cpbenchPath, cpbenchRun, cpuUs, root, waitPort } from './util.js';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

function rssKb(pid: number): number {
  const m = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : 0;
}

export async function runProxyBench(opts: { secs?: number; bytes?: number; idle?: number; events?: boolean } = {}): Promise<Record<string, number>> {
  const bin = cpbenchPath();
  if (bin === null) {
    console.log(JSON.stringify({ bench: 'proxy', skipped: 'cpbench unavailable (needs cargo and ../shared/bench/cpbench)' }));
    return {};
  }
  const secs = opts.secs ?? 5;
  const bytes = opts.bytes ?? 1_000_000_000;
  const idle = opts.idle ?? 2000;
  const originPort = 19000;
  const proxyPort = 13401;
  const dir = mkdtempSync(join(tmpdir(), 'cp-bench-'));
  writeFileSync(join(dir, 'config.yaml'), readFileSync(join(root, 'bench/compare-config.yaml'), 'utf8')
    .replace(/^proxy_listen:.*$/m, `proxy_listen: 127.0.0.1:${proxyPort}`)
    .replace(/^events:.*$/m, `events: ${opts.events === false ? 'none' : join(dir, 'events.jsonl')}`));
  const children: ChildProcess[] = [];
  const origin = spawn(bin, ['origin', '--port', String(originPort)], { stdio: 'ignore' });
  children.push(origin);
  const start = (): ChildProcess => {
    const gw = spawnGateway(['serve', '--config', join(dir, 'config.yaml'), '--policy', join(root, 'bench/compare-policy.yaml')], { stdio: ['ignore', 'ignore', 'inherit'] });
    children.push(gw);
    return gw;
  };
  const figures: Record<string, number> = {};
  try {
    await waitPort(originPort);
    let gw = start();
    await waitPort(proxyPort);
    const proxy = ['--proxy', `127.0.0.1:${proxyPort}`, '--target', `localhost:${originPort}`];
    // Each workload also reports the gateway's own CPU per unit of work (see cpuUs).
    const measured = async (args: string[]): Promise<{ r: Record<string, unknown>; cpu: number }> => {
      const c0 = cpuUs(gw.pid as number);
      const r = await cpbenchRun(bin, args);
      return { r, cpu: cpuUs(gw.pid as number) - c0 };
    };
    const tput = await measured(['tput', ...proxy, '--bytes', String(bytes), '--streams', '1', '--dir', 'up']);
    figures.tput_up_mb_s = Number(tput.r.mbytes_per_s);
    figures.tput_up_cpu_ms_per_gb = Math.round(tput.cpu / 1000 / (bytes / 1e9));
    const rc = await measured(['rate', ...proxy, '--conns', '32', '--secs', String(secs), '--mode', 'connect']);
    figures.connect_per_s = Number(rc.r.per_s);
    figures.connect_p99_ms = Number(rc.r.p99_us) / 1000;
    figures.connect_errors = Number(rc.r.errors);
    figures.connect_cpu_us_each = Math.round(rc.cpu / Math.max(1, Number(rc.r.ok)));
    const rh = await measured(['rate', ...proxy, '--conns', '32', '--secs', String(secs), '--mode', 'http']);
    figures.http_per_s = Number(rh.r.per_s);
    figures.http_p99_ms = Number(rh.r.p99_us) / 1000;
    figures.http_errors = Number(rh.r.errors);
    figures.http_cpu_us_each = Math.round(rh.cpu / Math.max(1, Number(rh.r.ok)));
    // Memory per idle tunnel, on a fresh process after a short warm-up (as compare.sh does).
    gw.kill('SIGKILL');
    await new Promise((r) => gw.once('exit', r));
    gw = start();
    await waitPort(proxyPort);
    await cpbenchRun(bin, ['idle', ...proxy, '--conns', '200', '--hold', '0']);
    await new Promise((r) => setTimeout(r, 1000));
    const before = rssKb(gw.pid as number);
    const holder = spawn(bin, ['idle', ...proxy, '--conns', String(idle), '--hold', '3'], { stdio: ['ignore', 'pipe', 'ignore'] });
    children.push(holder);
    let out = '';
    holder.stdout!.on('data', (c: Buffer) => { out += c.toString(); });
    const deadline = Date.now() + 60_000;
    while (!out.includes('idle-open') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    await new Promise((r) => setTimeout(r, 1000));
    const during = rssKb(gw.pid as number);
    await new Promise((r) => holder.once('exit', r));
    figures.kb_per_idle_tunnel = Math.round(((during - before) / idle) * 10) / 10;
    for (const [k, v] of Object.entries(figures)) console.log(JSON.stringify({ bench: 'proxy', figure: k, value: v, events: opts.events !== false }));
    return figures;
  } finally {
    for (const c of children) c.kill('SIGKILL');
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  await runProxyBench();
}
