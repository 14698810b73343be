/**
 * Sink overhead for `npm run bench`: the gateway's short-CONNECT rate with every sink on
 * (rotating file, HTTPS webhook and TCP syslog, each with its disk buffer, plus metrics and
 * detectors) against no sinks at all. Runs alternate (none, all, none, all, …) on fresh
 * processes and the medians are compared; the target is a ratio ≥ 0.95. The receivers are
 * deliberately minimal (count bytes, answer 204) so that the figure is the gateway's own cost,
 * not the receivers' competing for the same cores; the real receivers are the tests' job.
 * The gateway's CPU time per CONNECT is reported too (see below).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer as createHttpsServer } from 'node:https';
import { makePki } from '../test/helpers/origins.js';
import { benchSinksYaml, spawnGateway, cpbenchPath, cpbenchRun, cpuUs, freePort, median, NO_EVIDENCE, root, waitPort } from './util.js';

async function rate(bin: string, proxyPort: number, originPort: number, secs: number): Promise<{ per_s: number; errors: number; ok: number }> {
  const j = await cpbenchRun(bin, ['rate', '--proxy', `127.0.0.1:${proxyPort}`, '--target', `localhost:${originPort}`, '--conns', '32', '--secs', String(secs), '--mode', 'connect']);
  return { per_s: Number(j.per_s), errors: Number(j.errors), ok: Number(j.ok) };
}

export async function runSinksBench(opts: { secs?: number; rounds?: number } = {}): Promise<Record<string, number>> {
  const bin = cpbenchPath();
  if (bin === null) {
    console.log(JSON.stringify({ bench: 'sinks', skipped: 'cpbench unavailable (run `npm run bench proxy` once to build it)' }));
    return {};
  }
  const secs = opts.secs ?? 4;
  // More rounds (BENCH_ROUNDS) narrow the median on a noisy machine.
  const rounds = opts.rounds ?? (Number(process.env.BENCH_ROUNDS) || 3);
  const dir = mkdtempSync(join(tmpdir(), 'cp-bench-sinks-'));
  const children: ChildProcess[] = [];
  const pki = makePki(['127.0.0.1']);
  const received = { webhookBytes: 0, webhookPosts: 0, syslogBytes: 0 };
  const hook = createHttpsServer({ cert: pki.cert, key: pki.key }, (req, res) => {
    req.on('data', (c: Buffer) => { received.webhookBytes += c.length; });
    req.on('end', () => { received.webhookPosts++; res.statusCode = 204; res.end(); });
  });
  await new Promise<void>((r) => hook.listen(0, '127.0.0.1', r));
  const hookUrl = `https://127.0.0.1:${(hook.address() as AddressInfo).port}/hook`;
  const syslog = createServer((s) => { s.on('data', (c: Buffer) => { received.syslogBytes += c.length; }); s.on('error', () => {}); });
  await new Promise<void>((r) => syslog.listen(0, '127.0.0.1', r));
  const syslogPort = (syslog.address() as AddressInfo).port;
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
      .replace(/^events:.*$/m, 'events: none')
      // This bench sets its own control listener, mTLS and data directory per run.
      .replace(/^(control_listen|mtls_listen|data_dir):.*\n/gm, '');
    const common = `control_listen: 127.0.0.1:${controlPort}\nmtls_listen: "off"\n`;
    const none = `${base}${common}${NO_EVIDENCE}`;
    // BENCH_SINKS=file,webhook,syslog,detect picks a subset (to see what each costs).
    const pick = new Set((process.env.BENCH_SINKS ?? 'file,webhook,syslog,detect').split(','));
    const all = `${base}${common}${benchSinksYaml(pick, { dir, hookUrl, syslogPort, caPath: pki.caPath })}`;
    // The compare policy, for this run's origin port.
    const policy = join(dir, 'policy.yaml');
    writeFileSync(policy, readFileSync(join(root, 'bench/compare-policy.yaml'), 'utf8').replace(/ports: \[19000\]/, `ports: [${originPort}]`));
    const results: Record<'none' | 'all', number[]> = { none: [], all: [] };
    const cpu: Record<'none' | 'all', number[]> = { none: [], all: [] };
    const mainCpu: Record<'none' | 'all', number[]> = { none: [], all: [] };
    // This process hosts the receivers: its CPU during a run is what they took from the same cores.
    const recvCpu: Record<'none' | 'all', number[]> = { none: [], all: [] };
    for (let round = 0; round < rounds; round++) {
      for (const which of ['none', 'all'] as const) {
        const runDir = join(dir, `${which}-${round}`);
        writeFileSync(join(dir, 'config.yaml'), (which === 'all' ? all : none) + `data_dir: ${runDir}\n`);
        // stderr passes through: a gateway that cannot start says why.
        const gw = spawnGateway(['serve', '--config', join(dir, 'config.yaml'), '--policy', policy], { stdio: ['ignore', 'ignore', 'inherit'] });
        children.push(gw);
        await waitPort(proxyPort);
        // Warm-up: the figure is the sinks' steady-state cost, not the JIT's first seconds (which
        // cost both configurations about the same and would only add noise).
        await rate(bin, proxyPort, originPort, 3);
        const pid = gw.pid as number;
        const cpu0 = cpuUs(pid);
        const main0 = cpuUs(pid, pid);
        const here0 = process.cpuUsage();
        const r = await rate(bin, proxyPort, originPort, secs);
        const here = process.cpuUsage(here0);
        recvCpu[which].push((here.user + here.system) / r.ok);
        cpu[which].push((cpuUs(pid) - cpu0) / r.ok);
        mainCpu[which].push((cpuUs(pid, pid) - main0) / r.ok);
        if (r.errors > 0 || r.per_s === 0) throw new Error(`bench run failed: ${JSON.stringify(r)}`);
        results[which].push(r.per_s);
        gw.kill('SIGTERM');
        await new Promise((res) => gw.once('exit', res));
      }
    }
    figures.connect_per_s_no_sinks = Math.round(median(results.none));
    figures.connect_per_s_all_sinks = Math.round(median(results.all));
    figures.ratio_all_vs_none = Math.round((median(results.all) / median(results.none)) * 1000) / 1000;
    // Each round's own ratio (its two runs back to back): the spread is this machine's noise,
    // which a single ratio hides; a target within 5% means little when rounds differ by 10%.
    const perRound = results.all.map((a, i) => a / (results.none[i] as number));
    figures.ratio_per_round_min = Math.round(Math.min(...perRound) * 1000) / 1000;
    figures.ratio_per_round_max = Math.round(Math.max(...perRound) * 1000) / 1000;
    // The gateway's own CPU per CONNECT: on a busy or small machine the rate ratio also measures
    // the receivers and the kernel competing for cores; this one is the sinks' cost alone.
    figures.gateway_cpu_us_per_connect_no_sinks = Math.round(median(cpu.none));
    figures.gateway_cpu_us_per_connect_all_sinks = Math.round(median(cpu.all));
    // The same for the data plane's thread alone (network sinks run on a thread of their own):
    // on a machine with a core to spare for that thread, this ratio is what bounds the rate.
    figures.main_thread_cpu_us_per_connect_no_sinks = Math.round(median(mainCpu.none));
    figures.main_thread_cpu_us_per_connect_all_sinks = Math.round(median(mainCpu.all));
    figures.main_thread_cpu_ratio_none_vs_all = Math.round((median(mainCpu.none) / median(mainCpu.all)) * 1000) / 1000;
    // The receivers' CPU per CONNECT (in this process, on the same cores as the gateway): the
    // part of the rate ratio that is the destinations' work, not the gateway's.
    figures.receivers_cpu_us_per_connect_all_sinks = Math.round(median(recvCpu.all) - median(recvCpu.none));
    figures.webhook_posts = received.webhookPosts;
    figures.webhook_mbytes = Math.round(received.webhookBytes / 1e5) / 10;
    figures.syslog_mbytes = Math.round(received.syslogBytes / 1e5) / 10;
    for (const [k, v] of Object.entries(figures)) console.log(JSON.stringify({ bench: 'sinks', figure: k, value: v, target: k === 'ratio_all_vs_none' ? '>= 0.95' : undefined }));
    return figures;
  } finally {
    for (const c of children) c.kill('SIGKILL');
    hook.closeAllConnections();
    await new Promise((r) => hook.close(r));
    await new Promise((r) => syslog.close(r));
    pki.cleanup();
    rmSync(dir, { recursive: true, force: true });
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  await runSinksBench();
}
