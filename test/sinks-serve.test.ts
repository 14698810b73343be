/**
 * `chokepoint serve` with a `sinks:` section, as a real process: events reach an HTTPS webhook,
 * /metrics answers on the control listener (fetched with curl), and events buffered while the
 * webhook was down are delivered by the next gateway process over the same data directory.
 */
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { startWebhookReceiver } from './helpers/receivers.js';
import { openTunnel } from './helpers/tunnel.js';
import { killedWithTest } from './helpers/children.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
const CLI = join(root, 'dist/src/cli.js');
const SECRET = 'serve-secret-0123456789abcdef';
const dir = mkdtempSync(join(tmpdir(), 'cp-sinks-serve-'));
const procs: ChildProcess[] = [];
after(() => {
  for (const p of procs) p.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
});

const policy = join(dir, 'policy.yaml');
writeFileSync(policy, 'version: 1\ngroups:\n  - name: local\n    sources: [127.0.0.0/8]\n    allow:\n      - host: allowed.example\n');

async function serve(url: string, ca: string, access: 'public' | 'viewer' | null = 'public'): Promise<{ proc: ChildProcess; proxy: number; control: number; exit: Promise<number | null> }> {
  const config = join(dir, 'config.yaml');
  writeFileSync(config, [
    'proxy_listen: 127.0.0.1:0', 'control_listen: 127.0.0.1:0', 'mtls_listen: "off"', `data_dir: ${join(dir, 'data')}`, 'events: "-"', 'log_level: warn',
    access === null ? '' : `metrics: { access: ${access} }`,
    'sinks:',
    `  - { type: webhook, name: hook, url: "${url}", secret: ${SECRET}, tls: { ca: ${ca} }, retry: { min_delay: 50ms, max_delay: 200ms } }`,
    '',
  ].join('\n'));
  const proc = killedWithTest(spawn(process.execPath, [CLI, 'serve', '--config', config, '--policy', policy], { stdio: ['ignore', 'pipe', 'pipe'] }));
  procs.push(proc);
  let stderr = '';
  proc.stderr!.on('data', (c: Buffer) => { stderr += c.toString(); });
  const exit = new Promise<number | null>((r) => proc.on('exit', (code) => r(code)));
  const listeners = await new Promise<string[]>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`no gateway.started; stderr ${stderr}`)), 20_000);
    createInterface({ input: proc.stdout! }).on('line', (l) => {
      const e = JSON.parse(l) as { type: string; listeners?: string[] };
      if (e.type === 'gateway.started') { clearTimeout(t); resolve(e.listeners ?? []); }
    });
    void exit.then((c) => reject(new Error(`serve exited ${c}: ${stderr}`)));
  });
  const port = (name: string) => Number(/:(\d+)$/.exec(listeners.find((l) => l.startsWith(`${name} `)) ?? '')?.[1]);
  return { proc, proxy: port('proxy'), control: port('control'), exit };
}

async function denied(proxy: number, n: number): Promise<void> {
  for (let i = 0; i < n; i++) {
    const t = await openTunnel(proxy, `blocked${i}.example:443`);
    assert.equal(t.status, 403);
    t.socket.destroy();
  }
}

describe('serve with sinks', () => {
  it('by default /metrics needs a viewer token: curl without one is refused', async () => {
    const rx = await startWebhookReceiver(SECRET);
    try {
      const a = await serve(rx.url, rx.pki.caPath, null);
      const r = spawnSync('curl', ['-sS', '-o', '/dev/null', '-w', '%{http_code}', `http://127.0.0.1:${a.control}/metrics`], { encoding: 'utf8' });
      assert.equal(r.stdout, '401');
      a.proc.kill('SIGTERM');
      assert.equal(await a.exit, 0);
    } finally {
      await rx.close();
    }
  });

  it('refuses to start (exit 2, code and path) when a sink\'s secret or CA file cannot be read', () => {
    const config = join(dir, 'bad.yaml');
    for (const [sink, want] of [
      ['{ type: webhook, name: hook, url: "https://127.0.0.1:9/h", secret_file: /nonexistent/key }', /sink "hook": cannot read secret_file \/nonexistent\/key \[CONFIG_INVALID\]/],
      ['{ type: syslog, name: s, transport: tls, host: 127.0.0.1, tls: { ca: /nonexistent/ca.pem } }', /sink "s": cannot read tls.ca \/nonexistent\/ca.pem \[CONFIG_INVALID\]/],
    ] as const) {
      writeFileSync(config, `proxy_listen: 127.0.0.1:0\ncontrol_listen: 127.0.0.1:0\nmtls_listen: "off"\ndata_dir: ${join(dir, 'bad')}\nsinks:\n  - ${sink}\n`);
      const r = spawnSync(process.execPath, [CLI, 'serve', '--config', config, '--policy', policy], { encoding: 'utf8', timeout: 20_000 });
      assert.equal(r.status, 2, r.stderr);
      assert.match(r.stderr, want);
    }
  });

  it('delivers to the webhook, serves /metrics to curl, and a restart delivers what an outage buffered', async () => {
    const rx = await startWebhookReceiver(SECRET);
    try {
      const a = await serve(rx.url, rx.pki.caPath);
      await denied(a.proxy, 2);
      await rx.waitEvents(1, 10_000);
      const deadline = Date.now() + 10_000;
      while (rx.events().filter((e) => e.type === 'gateway.decision').length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      assert.equal(rx.events().filter((e) => e.type === 'gateway.decision').length, 2);
      assert.ok(rx.batches.every((b) => b.verified));
      const metrics = execFileSync('curl', ['-sS', '--fail', `http://127.0.0.1:${a.control}/metrics`], { encoding: 'utf8' });
      assert.match(metrics, /chokepoint_decisions_total\{verdict="deny",reason="no_rule_matched",group="local"\} 2/);
      assert.match(metrics, /chokepoint_sink_up\{sink="hook"\} 1/);

      // The webhook goes down; the gateway keeps deciding and buffers; then it restarts.
      await rx.stop();
      await denied(a.proxy, 5);
      a.proc.kill('SIGTERM');
      assert.equal(await a.exit, 0);
      assert.ok(readdirSync(join(dir, 'data/spool/hook')).some((f) => f.endsWith('.log')));
      const before = rx.events().length;
      await rx.start();
      const b = await serve(rx.url, rx.pki.caPath);
      const want = (e: Record<string, unknown>) => e.type === 'gateway.decision' && /^blocked[0-4]\.example$/.test(String(e.host));
      const until = Date.now() + 20_000;
      while (rx.events().slice(before).filter(want).length < 5 && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
      const late = rx.events().slice(before);
      assert.deepEqual(late.filter(want).map((e) => e.host), ['blocked0.example', 'blocked1.example', 'blocked2.example', 'blocked3.example', 'blocked4.example'], 'buffered decisions arrive after the restart, in order');
      assert.ok(late.findIndex((e) => e.type === 'gateway.stopped') > late.findIndex(want), 'the first process\'s stop follows its decisions');
      b.proc.kill('SIGTERM');
      assert.equal(await b.exit, 0);
    } finally {
      await rx.close();
    }
  });

  it('a sink whose write never returns does not keep a stopping gateway alive: killed at the deadline, and it says so', async () => {
    // A FIFO nobody reads: opening it for writing blocks for ever.
    const fifo = join(dir, 'stuck.fifo');
    execFileSync('mkfifo', [fifo]);
    const config = join(dir, 'stuck.yaml');
    writeFileSync(config, ['proxy_listen: 127.0.0.1:0', 'control_listen: 127.0.0.1:0', 'mtls_listen: "off"', `data_dir: ${join(dir, 'data-stuck')}`,
      'events: none', 'log_level: info', 'timeouts: { shutdown: 1s }', 'sinks:', `  - { type: file, name: stuck, path: ${fifo} }`, ''].join('\n'));
    const proc = killedWithTest(spawn(process.execPath, [CLI, 'serve', '--config', config, '--policy', policy], { stdio: ['ignore', 'ignore', 'pipe'] }));
    procs.push(proc);
    let stderr = '';
    proc.stderr!.on('data', (c: Buffer) => { stderr += c.toString(); });
    const exit = new Promise<string>((r) => proc.on('exit', (code, signal) => r(`${code}/${signal}`)));
    // Started (the first events are queued to the sink, whose write is now stuck), then stop.
    const started = Date.now() + 20_000;
    while (!/gateway started/.test(stderr) && proc.exitCode === null && Date.now() < started) await new Promise((r) => setTimeout(r, 50));
    assert.match(stderr, /gateway started/);
    await new Promise((r) => setTimeout(r, 300));
    proc.kill('SIGTERM');
    const code = await Promise.race([exit, new Promise<'hung'>((r) => setTimeout(() => r('hung'), 15_000))]);
    assert.equal(code, 'null/SIGKILL', stderr);
    assert.match(stderr, /sinks did not finish writing before the shutdown deadline/);
  });
});
