/**
 * The `chokepoint` command as users run it: serve with reload and drain, policy check,
 * policy test, config check. The CLI runs as a real child process.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdtempSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import type { DnsServer } from './helpers/dns-server.js';
import { basePolicy, testDns } from './helpers/fixtures.js';
import { connectStatus, RawClient } from './helpers/gateway.js';
import { startEchoOrigin, type Origin } from './helpers/origins.js';
import { killedWithTest } from './helpers/children.js';

const CLI = fileURLToPath(new URL('../src/cli.js', import.meta.url));
const execP = promisify(execFile);

async function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await execP(process.execPath, [CLI, ...args]);
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (e) {
    const err = e as { code: number; stdout: string; stderr: string };
    return { code: err.code, stdout: err.stdout, stderr: err.stderr };
  }
}

let dir: string;
let dns: DnsServer;
let echo: Origin;
let P: { echo: number; tls: number; http: number };

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'cp-cli-'));
  dns = await testDns();
  echo = await startEchoOrigin();
  P = { echo: echo.port, tls: 1, http: 2 };
});
after(async () => {
  await echo.close();
  await dns.close();
  rmSync(dir, { recursive: true, force: true });
});

interface Served {
  proc: ChildProcess;
  port: number;
  events: Record<string, unknown>[];
  next(type: string, pred?: (e: Record<string, unknown>) => boolean, ms?: number): Promise<Record<string, unknown>>;
  exit: Promise<number | null>;
}

let serveCount = 0;

/**
 * Starts `serve` with a short data-plane warm-up (100 connections; a test's own
 * `--proxy-warmup` in `extra.args` comes later and wins): this file starts about twenty gateways.
 */
async function serve(policyFile: string, extra: { args?: string[]; config?: string; onStderr?: (line: string, proc: ChildProcess) => void } = {}): Promise<Served> {
  const config = join(dir, `config-${serveCount + 1}.yaml`);
  writeFileSync(config, `dns:\n  resolvers: ["${dns.address}"]\ntimeouts:\n  shutdown: 5s\nlog_level: warn\n${extra.config ?? ''}`);
  const proc = killedWithTest(spawn(process.execPath, [CLI, 'serve', '--config', config, '--policy', policyFile, '--proxy-listen', '127.0.0.1:0', '--control-listen', '127.0.0.1:0', '--mtls-listen', '127.0.0.1:0', '--data-dir', join(dir, `data-${++serveCount}`), '--events', '-', '--proxy-warmup', '100', ...(extra.args ?? [])], { stdio: ['ignore', 'pipe', 'pipe'] }));
  const events: Record<string, unknown>[] = [];
  const waiters: (() => void)[] = [];
  createInterface({ input: proc.stdout! }).on('line', (l) => {
    events.push(JSON.parse(l) as Record<string, unknown>);
    for (const w of waiters.splice(0)) w();
  });
  let stderr = '';
  proc.stderr!.on('data', (c: Buffer) => { stderr += c.toString(); });
  const onStderr = extra.onStderr;
  if (onStderr) createInterface({ input: proc.stderr! }).on('line', (l) => onStderr(l, proc));
  const exit = new Promise<number | null>((r) => proc.on('exit', (code) => r(code)));
  const next = async (type: string, pred: (e: Record<string, unknown>) => boolean = () => true, ms = 5000) => {
    const deadline = Date.now() + ms;
    for (;;) {
      const e = events.find((x) => x.type === type && pred(x));
      if (e) return e;
      if (Date.now() > deadline) throw new Error(`no ${type}; events ${JSON.stringify(events)}; stderr ${stderr}`);
      await new Promise<void>((r) => { const t = setTimeout(r, 100); waiters.push(() => { clearTimeout(t); r(); }); });
    }
  };
  // Start-up includes the data plane's warm-up (seconds on a loaded test machine).
  const started = await next('gateway.started', () => true, 30_000);
  const port = Number(/:(\d+)$/.exec((started.listeners as string[])[0] as string)?.[1]);
  return { proc, port, events, next, exit };
}

/** Retries an assertion for a short while (a change reaches the other threads a moment later). */
async function eventually(fn: () => Promise<void>, ms = 3000): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      return await fn();
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

describe('chokepoint serve', () => {
  for (const threads of [0, 2]) it(`serves, reloads on file change and SIGHUP, keeps the running policy on a bad one, and drains on SIGTERM (proxy_threads ${threads})`, async () => {
    const file = join(dir, `policy-${threads}.yaml`);
    writeFileSync(file, basePolicy(P));
    const s = await serve(file, { args: ['--proxy-threads', String(threads)] });
    try {
      await s.next('gateway.policy.loaded');
      const a = await connectStatus(s.port, `echo.test:${P.echo}`);
      assert.equal(a.status, 200);

      // An atomic replace that removes echo.test: the live tunnel stays, new requests are denied.
      const tmp = join(dir, `policy-${threads}.yaml.tmp`);
      writeFileSync(tmp, basePolicy(P).replace('      - host: echo.test\n', '      - host: echo2.test\n'));
      renameSync(tmp, file);
      await s.next('gateway.policy.loaded', (e) => s.events.filter((x) => x.type === 'gateway.policy.loaded').indexOf(e) === 1);
      // Every thread follows the new policy: several connections, whichever thread takes each.
      // The change is reported loaded only once every thread enforces it: no grace period.
      for (let i = 0; i < 8; i++) {
        const b = await connectStatus(s.port, `echo.test:${P.echo}`);
        b.c.close();
        assert.equal(b.status, 403);
        assert.equal(b.reason, 'no_rule_matched');
      }
      a.c.data = Buffer.alloc(0);
      a.c.write('live');
      await a.c.until((x) => x.text() === 'live');

      // A broken policy is rejected; the running one stays in force.
      writeFileSync(file, 'version: 1\ngroups: [{name: x, bogus: 1}]\n');
      const rej = await s.next('gateway.policy.rejected');
      assert.ok((rej.problems as string[]).some((p) => p.includes('bogus')));
      assert.notEqual(rej.running_digest, null);
      const c = await connectStatus(s.port, `other.test:${P.echo}`);
      assert.equal(c.status, 200);
      c.c.close();

      // SIGHUP reloads (after the file is fixed).
      writeFileSync(file, basePolicy(P));
      s.proc.kill('SIGHUP');
      await s.next('gateway.policy.loaded', (e) => s.events.filter((x) => x.type === 'gateway.policy.loaded').indexOf(e) >= 2);
      for (let i = 0; i < 8; i++) {
        const d = await connectStatus(s.port, `echo.test:${P.echo}`);
        d.c.close();
        assert.equal(d.status, 200);
      }

      // SIGTERM: the open tunnel keeps working until it closes; then the process exits 0.
      s.proc.kill('SIGTERM');
      await s.next('gateway.stopping');
      a.c.data = Buffer.alloc(0);
      a.c.write('draining');
      await a.c.until((x) => x.text() === 'draining');
      a.c.close();
      assert.equal(await s.exit, 0);
      assert.ok(s.events.some((e) => e.type === 'gateway.stopped'));
      // Every decision's tunnel reported its close, from whichever thread, before the exit.
      const allowed = s.events.filter((e) => e.type === 'gateway.decision' && e.verdict === 'allow').map((e) => e.id);
      const closed = new Set(s.events.filter((e) => e.type === 'gateway.tunnel.closed').map((e) => e.id));
      assert.ok(allowed.length >= 10);
      assert.deepEqual(allowed.filter((id) => !closed.has(id)), []);
      const stopped = s.events.findIndex((e) => e.type === 'gateway.stopped');
      assert.ok(s.events.findIndex((e) => e.type === 'gateway.tunnel.closed' && e.id === allowed[0]) < stopped);
    } finally {
      s.proc.kill('SIGKILL');
    }
  });

  for (const threads of [0, 2]) it(`warms the data plane up before the proxy listener opens, and none of it is evidence (proxy_threads ${threads})`, async () => {
    const file = join(dir, `policy-warm-${threads}.yaml`);
    writeFileSync(file, basePolicy(P));
    const logs: Record<string, unknown>[] = [];
    const onStderr = (l: string): void => { if (l.startsWith('{')) logs.push(JSON.parse(l) as Record<string, unknown>); };
    const s = await serve(file, { args: ['--proxy-threads', String(threads), '--proxy-warmup', '400', '--log-level', 'info'], onStderr });
    try {
      const a = await connectStatus(s.port, `echo.test:${P.echo}`);
      assert.equal(a.status, 200);
      a.c.close();
      await eventually(async () => assert.ok(logs.some((l) => l.msg === 'chokepoint gateway started')));
      const warm = logs.filter((l) => l.msg === 'data plane warmed up');
      // One per thread serving the proxy listener, each before the gateway said it started.
      assert.equal(warm.length, Math.max(1, threads), JSON.stringify(logs));
      for (const w of warm) assert.deepEqual({ connections: w.connections, failed: w.failed, timed_out: w.timed_out }, { connections: 400, failed: 0, timed_out: false });
      const started = logs.findIndex((l) => l.msg === 'chokepoint gateway started');
      assert.ok(logs.indexOf(warm[warm.length - 1] as Record<string, unknown>) < started);
      // The events hold the client's request and nothing of the 400 synthetic ones.
      await s.next('gateway.decision', (e) => e.host === 'echo.test');
      assert.deepEqual(s.events.filter((e) => e.type === 'gateway.decision').map((e) => e.host), ['echo.test']);
      assert.equal(s.events.filter((e) => JSON.stringify(e).includes('warmup')).length, 0);
    } finally {
      s.proc.kill('SIGKILL');
    }
  });

  it('a SIGTERM while it starts cuts the warm-up short and drains once it is up (exit 0, its events)', async () => {
    const file = join(dir, 'policy-early-stop.yaml');
    writeFileSync(file, basePolicy(P));
    const logs: string[] = [];
    // The control API is up just before the warm-up starts; 100000 connections would take it to its 5 s deadline.
    const onStderr = (l: string, proc: ChildProcess): void => {
      logs.push(l);
      if (l.includes('control API listening')) proc.kill('SIGTERM');
    };
    const s = await serve(file, { args: ['--proxy-warmup', '100000', '--log-level', 'info'], onStderr });
    assert.equal(await s.exit, 0);
    const types = s.events.map((e) => e.type);
    assert.ok(types.indexOf('gateway.started') < types.indexOf('gateway.stopping') && types.indexOf('gateway.stopping') < types.indexOf('gateway.stopped'), types.join());
    assert.ok(logs.some((l) => l.includes('warm-up cut short')), logs.join('\n'));
    assert.ok(!logs.some((l) => l.includes('"timed_out":true')));
  });

  it('a second stop signal while it starts ends it at once, as the signal\'s default action (an operator who insists is obeyed)', async () => {
    const file = join(dir, 'policy-double-stop.yaml');
    writeFileSync(file, basePolicy(P));
    // Not serve(): that waits for gateway.started, which must never come here.
    const proc = killedWithTest(spawn(process.execPath, [CLI, 'serve', '--policy', file, '--proxy-listen', '127.0.0.1:0', '--control-listen', '127.0.0.1:0', '--mtls-listen', 'off', '--data-dir', join(dir, 'data-double-stop'), '--events', '-', '--log-level', 'info', '--proxy-warmup', '100000'], { stdio: ['ignore', 'pipe', 'pipe'] }));
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => proc.once('exit', (code, signal) => r({ code, signal })));
    let stdout = '';
    proc.stdout!.on('data', (c: Buffer) => { stdout += c.toString(); });
    // The control API is up just before the warm-up starts; 100000 connections take it to its 5 s deadline.
    let signalled = false;
    createInterface({ input: proc.stderr! }).on('line', (l) => {
      if (signalled || !l.includes('control API listening')) return;
      signalled = true;
      // Two different signals: two of the same sent back to back may reach the process as one
      // (a standard signal is not queued twice), and the kernel delivers the lower-numbered
      // first, so either may be the one that ends it.
      proc.kill('SIGTERM');
      proc.kill('SIGINT');
    });
    const how = await exited;
    assert.equal(how.code, null, `ended by a signal, not by a drain (exit ${how.code})`);
    assert.ok(how.signal === 'SIGTERM' || how.signal === 'SIGINT', String(how.signal));
    assert.ok(signalled);
    assert.ok(!stdout.includes('"gateway.started"'), 'it never came up');
  });

  it('--proxy-warmup 0 starts without a warm-up; a bad value is refused with its path', async () => {
    const file = join(dir, 'policy-nowarm.yaml');
    writeFileSync(file, basePolicy(P));
    const logs: string[] = [];
    const s = await serve(file, { args: ['--proxy-warmup', '0', '--log-level', 'info'], onStderr: (l) => logs.push(l) });
    try {
      // The log line may come a moment after the event (stderr and stdout are separate pipes).
      await eventually(async () => assert.ok(logs.some((l) => l.includes('chokepoint gateway started'))));
    } finally {
      s.proc.kill('SIGKILL');
    }
    assert.ok(!logs.some((l) => l.includes('warmed up') || l.includes('warm-up')), logs.join('\n'));
    for (const bad of ['-1', 'many', '100001']) {
      const r = await cli(['serve', '--policy', 'examples/policy.yaml', '--proxy-warmup', bad]);
      assert.equal(r.code, 2);
      assert.match(r.stderr, /proxy_warmup: /);
    }
  });

  it('proxy_threads: the limits hold across threads, and every thread\'s events reach the sinks', async () => {
    const file = join(dir, 'policy-limits.yaml');
    writeFileSync(file, basePolicy(P));
    const s = await serve(file, { config: 'proxy_threads: 3\nlimits:\n  max_tunnels_per_client: 3\n' });
    const open: RawClient[] = [];
    try {
      await s.next('gateway.policy.loaded');
      for (let i = 0; i < 3; i++) {
        const a = await connectStatus(s.port, `echo.test:${P.echo}`);
        open.push(a.c);
        assert.equal(a.status, 200);
      }
      // Three threads, three tunnels held: with a count per thread, some of these would pass.
      for (let i = 0; i < 9; i++) {
        const r = await connectStatus(s.port, `echo.test:${P.echo}`);
        r.c.close();
        assert.equal(r.status, 429);
        assert.equal(r.reason, 'client_tunnel_limit');
      }
      open.pop()?.close();
      await s.next('gateway.tunnel.closed');
      await eventually(async () => {
        const r = await connectStatus(s.port, `echo.test:${P.echo}`);
        open.push(r.c);
        assert.equal(r.status, 200);
      });
      const denied = s.events.filter((e) => e.type === 'gateway.decision' && e.reason === 'client_tunnel_limit');
      assert.equal(denied.length, 9);
    } finally {
      for (const c of open) c.close();
      s.proc.kill('SIGKILL');
    }
  });

  it('proxy_threads: a policy change (and a SIGHUP) made while the threads start reaches every thread', async () => {
    // The control plane (file watcher, API) runs before the proxy threads are up; a change in
    // that window was applied on the main thread only, and the threads went on allowing.
    const file = join(dir, 'policy-startup.yaml');
    writeFileSync(file, basePolicy(P));
    let changed = false;
    const serving = serve(file, {
      args: ['--proxy-threads', '6', '--log-level', 'info'],
      onStderr: (line, proc) => {
        if (changed || !line.includes('control API listening')) return;
        changed = true;
        const tmp = `${file}.tmp`;
        writeFileSync(tmp, basePolicy(P).replace('      - host: echo.test\n', '      - host: echo2.test\n'));
        renameSync(tmp, file);
        // A log-rotation HUP while it starts: its default action would end the process.
        proc.kill('SIGHUP');
      },
    });
    // serve() resolves at gateway.started; the process exists before that.
    const s = await serving;
    try {
      assert.equal(changed, true);
      assert.equal(s.proc.exitCode, null);
      await s.next('gateway.policy.loaded', (e) => s.events.filter((x) => x.type === 'gateway.policy.loaded').indexOf(e) === 1);
      for (let i = 0; i < 18; i++) {
        const b = await connectStatus(s.port, `echo.test:${P.echo}`);
        b.c.close();
        assert.equal(b.status, 403);
      }
    } finally {
      s.proc.kill('SIGKILL');
    }
  });

  it('fails to start with LISTEN_FAILED when the proxy port is taken, with and without proxy threads', async () => {
    // libuv defers a bind's EADDRINUSE to listen(); the threads listen on duplicates of the
    // main thread's socket, so it was never reported and the gateway hung at start-up.
    for (const threads of ['0', '2']) {
      const data = mkdtempSync(join(dir, 'inuse-'));
      const r = await execP(process.execPath, [CLI, 'serve', '--policy', 'examples/policy.yaml', '--proxy-listen', `127.0.0.1:${echo.port}`, '--proxy-threads', threads,
        '--control-listen', '127.0.0.1:0', '--mtls-listen', 'off', '--data-dir', data, '--events', 'none'], { timeout: 30_000 })
        .then(() => ({ code: 0, stderr: '', signal: null }), (e: { code: number; stderr: string; signal: string | null }) => e);
      assert.equal(r.signal, null, `threads=${threads}: still running after 30 s`);
      assert.equal(r.code, 2, `threads=${threads}`);
      assert.match(r.stderr, new RegExp(`EADDRINUSE 127\\.0\\.0\\.1:${echo.port} \\[LISTEN_FAILED\\]`));
    }
  });

  it('refuses a bad proxy_threads with its path', async () => {
    for (const bad of ['65', 'two', '-1']) {
      const r = await cli(['serve', '--policy', 'examples/policy.yaml', '--proxy-threads', bad]);
      assert.equal(r.code, 2);
      assert.match(r.stderr, /proxy_threads: /);
    }
  });

  it('starts with an invalid policy and denies everything with no_policy', async () => {
    const file = join(dir, 'bad.yaml');
    writeFileSync(file, 'version: 2\n');
    const s = await serve(file);
    try {
      await s.next('gateway.policy.rejected');
      const r = await connectStatus(s.port, `echo.test:${P.echo}`);
      assert.equal(r.status, 403);
      assert.equal(r.reason, 'no_policy');
    } finally {
      s.proc.kill('SIGKILL');
    }
  });

  it('refuses bad flags with a clear message and exit 2', async () => {
    const r = await cli(['serve', '--policy', 'examples/policy.yaml', '--proxy-listen', 'nonsense']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /proxy_listen: "nonsense" is not HOST:PORT/);
    const r2 = await cli(['serve']);
    assert.equal(r2.code, 2);
    assert.match(r2.stderr, /no policy/);
  });
});

describe('chokepoint policy', () => {
  it('check: ok for the example policy', async () => {
    const r = await cli(['policy', 'check', fileURLToPath(new URL('../../examples/policy.yaml', import.meta.url))]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /ok \(2 groups/);
  });

  it('check: every problem with its path, exit 1', async () => {
    const file = join(dir, 'broken.yaml');
    writeFileSync(file, 'version: 1\ngroups:\n  - name: a\n    sources: [10.0.0.0/8]\n    allow:\n      - host: "*.com"\n      - host: Example.COM\n  - name: a\n    sources: [10.1.0.0/16]\n');
    const r = await cli(['policy', 'check', file]);
    assert.equal(r.code, 1);
    assert.match(r.stdout, /groups\[0\]\.allow\[0\]\.host/);
    assert.match(r.stdout, /groups\[0\]\.allow\[1\]\.host.*example\.com/);
    assert.match(r.stdout, /groups\[1\]/);
  });

  it('test: prints the decision, reason and rule; exit 0 allow, 1 deny', async () => {
    const file = join(dir, 'p.yaml');
    writeFileSync(file, basePolicy(P));
    const ok = await cli(['policy', 'test', file, '--source', '127.0.0.1', '--dest', `echo.test:${P.echo}`]);
    assert.equal(ok.code, 0);
    assert.match(ok.stdout, /^ALLOW echo\.test/);
    assert.match(ok.stdout, /rule: +groups\.servers\.allow\[0\]/);
    const no = await cli(['policy', 'test', file, '--source', '127.0.0.1', '--dest', 'nothing.test:443', '--json']);
    assert.equal(no.code, 1);
    assert.equal((JSON.parse(no.stdout) as { reason: string }).reason, 'no_rule_matched');
    const unauth = await cli(['policy', 'test', file, '--source', '192.0.2.1', '--dest', 'echo.test:1', '--json']);
    assert.equal((JSON.parse(unauth.stdout) as { reason: string }).reason, 'unauthenticated');
  });
});

describe('chokepoint admin recover', () => {
  it('creates a new security-admin straight in the store, audited as local:recover, when no token works', async () => {
    const { openStore, listAudit } = await import('../src/store/index.js');
    const { authenticate, bootstrapAdmin } = await import('../src/store/admins.js');
    const dir = mkdtempSync(join(tmpdir(), 'cp-recover-'));
    chmodSync(dir, 0o755); // as a data directory an operator made with mkdir
    try {
      const store = await openStore({ dataDir: dir });
      const first = await bootstrapAdmin(store, { ttlMs: 1 });
      await new Promise((r) => setTimeout(r, 5));
      assert.equal(await authenticate(store.db, first as string), null, 'the only token has expired: locked out');
      await store.close();
      // The store is the owner's only, whatever the umask or the directory's own mode.
      assert.equal(statSync(join(dir, 'chokepoint.db')).mode & 0o777, 0o600);
      const r = await cli(['admin', 'recover', '--data-dir', dir, '--name', 'breakglass', '--json']);
      assert.equal(r.code, 0, r.stderr);
      const out = JSON.parse(r.stdout) as { name: string; token: string };
      assert.equal(out.name, 'breakglass');
      const again = await cli(['admin', 'recover', '--data-dir', dir, '--name', 'breakglass']);
      assert.equal(again.code, 2);
      assert.match(again.stderr, /exists: recovery creates a new one/);
      assert.equal((await cli(['admin', 'recover', '--data-dir', dir, '--ttl', '1s'])).code, 2);
      const s2 = await openStore({ dataDir: dir });
      try {
        const who = await authenticate(s2.db, out.token);
        assert.equal(who?.admin.role, 'security-admin');
        assert.equal(who?.admin.scopes, null);
        const audit = await listAudit(s2.db, { limit: 100 });
        assert.ok(audit.some((e) => e.action === 'admin.recover' && e.actor === 'local:recover' && e.target === 'admin:breakglass'));
      } finally {
        await s2.close();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('control API client', () => {
  it('refuses plain http:// to anything but loopback before sending the token', async () => {
    const { ApiClient } = await import('../src/cli/client.js');
    for (const server of ['http://192.0.2.10:8080', 'http://gw.example.com', 'http://[2001:db8::1]:8080', 'http://10.0.0.1']) {
      assert.throws(() => new ApiClient({ server, token: 'cpa_x' }), (e: Error & { code?: string }) => e.code === 'USAGE' && /clear text/.test(e.message), server);
    }
    for (const server of ['http://127.0.0.1:8080', 'http://localhost:8080', 'http://[::1]:8080', 'http://127.1:8080', 'https://gw.example.com']) {
      assert.doesNotThrow(() => new ApiClient({ server, token: 'cpa_x' }), server);
    }
  });
});

describe('chokepoint config check', () => {
  it('reports unknown keys and bad values by path', async () => {
    const file = join(dir, 'c.yaml');
    writeFileSync(file, 'timeouts:\n  idle: forever\nlimits:\n  max_tunnels: -1\nbogus: 1\n');
    const r = await cli(['config', 'check', file]);
    assert.equal(r.code, 1);
    assert.match(r.stdout, /timeouts\.idle: "forever" is not a duration/);
    assert.match(r.stdout, /limits\.max_tunnels/);
    assert.match(r.stdout, /unknown key "bogus"/);
  });

  it('refuses timer durations Node cannot keep (past 24.8 days a timer fires at once) and says why', async () => {
    const file = join(dir, 'timer.yaml');
    writeFileSync(file, 'timeouts:\n  header: 30d\n  connect: 1e300\n  idle: 30d\n');
    const r = await cli(['config', 'check', file]);
    assert.equal(r.code, 1);
    assert.match(r.stdout, /timeouts\.header: must be at most 24d \(2147483647ms, the longest timer Node keeps\)/);
    assert.match(r.stdout, /timeouts\.connect: must be at most 24d/);
    assert.doesNotMatch(r.stdout, /timeouts\.idle/, 'idle goes to socket.setTimeout, which caps it itself');
    // A YAML tag the loader does not know is refused, not read past.
    writeFileSync(file, 'log_level: !weird debug\n');
    const tagged = await cli(['config', 'check', file]);
    assert.equal(tagged.code, 1, tagged.stdout);
    assert.match(tagged.stdout, /!weird/);
  });

  it('checks resolvers as serve uses them: an IP literal of its family and a port from 1 to 65535', async () => {
    const file = join(dir, 'dns.yaml');
    for (const [value, code] of [['999.1.1.1', 1], ['127.0.0.1:99999', 1], ['127.0.0.1:0', 1], ['[::1', 1], ['[127.0.0.1]:53', 1], ['localhost', 1], ['127.0.0.1', 0], ['127.0.0.1:5353', 0], ['[::1]:53', 0]] as const) {
      writeFileSync(file, `dns:\n  resolvers: ["${value}"]\n`);
      const r = await cli(['config', 'check', file]);
      assert.equal(r.code, code, `${value}: ${r.stdout}${r.stderr}`);
      if (code === 1) assert.match(r.stdout, /dns\.resolvers\[0\]: resolver must be an IP address/, value);
    }
  });

  it('checks the recent-decisions window: fold 0s (store each) to 24h, at least 100 rows, a whole per-client budget', async () => {
    const file = join(dir, 'r.yaml');
    for (const [body, code, pattern] of [
      ['{fold: 0s}', 0, null], ['{fold: 10m, max_rows: 5000}', 0, null], ['{max_rows_per_client: 0}', 0, null], ['{max_rows_per_client: 500}', 0, null],
      ['{max_rows_per_client: -1}', 1, /recent_decisions\.max_rows_per_client/], ['{fold: 0s, max_rows_per_client: 0}', 0, null],
      ['{fold: 0s, max_rows_per_client: 500}', 1, /recent_decisions\.max_rows_per_client: needs folding on/], ['{max_rows_per_client: 1.5}', 1, /recent_decisions\.max_rows_per_client/],
      ['{fold: 2d}', 1, /recent_decisions\.fold/], ['{max_rows: 10}', 1, /recent_decisions\.max_rows/], ['{folds: 1m}', 1, /unknown key "folds"/],
    ] as const) {
      writeFileSync(file, `recent_decisions: ${body}\n`);
      const r = await cli(['config', 'check', file]);
      assert.equal(r.code, code, `${body}: ${r.stdout}`);
      if (pattern !== null) assert.match(r.stdout, pattern);
    }
  });

  it('bounds the progress interval: 0s turns it off, below a second is refused (an event per tunnel per interval)', async () => {
    const file = join(dir, 'p.yaml');
    for (const [v, code] of [['0s', 0], ['1s', 0], ['5m', 0], ['500ms', 1], ['1ms', 1]] as const) {
      writeFileSync(file, `timeouts:\n  progress: ${v}\n`);
      const r = await cli(['config', 'check', file]);
      assert.equal(r.code, code, `${v}: ${r.stdout}`);
      if (code === 1) assert.match(r.stdout, /timeouts\.progress: must be 0s \(off\) or at least 1s/);
    }
  });
});
