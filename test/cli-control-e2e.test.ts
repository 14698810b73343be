/**
 * End to end: the built `chokepoint serve` on loopback (ephemeral ports) with the CLI as a real
 * client, on SQLite and PostgreSQL: first-start admin token, policy push/diff/rollback changing
 * what the gateway enforces, a tampered audit row caught by `audit verify`, restart with the data
 * intact, and (PostgreSQL behind a TCP proxy we cut) a store outage while the gateway serves.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import Database from 'better-sqlite3';
import pg from 'pg';
import type { DnsServer } from './helpers/dns-server.js';
import { testDns } from './helpers/fixtures.js';
import { RawClient } from './helpers/gateway.js';
import { startEchoOrigin, type Origin } from './helpers/origins.js';
import { PG_URL } from './helpers/store.js';
import { killedWithTest } from './helpers/children.js';

const CLI = fileURLToPath(new URL('../src/cli.js', import.meta.url));
const execP = promisify(execFile);

interface Run { code: number; stdout: string; stderr: string }
async function cli(args: string[], env: Record<string, string> = {}): Promise<Run> {
  try {
    const r = await execP(process.execPath, [CLI, ...args], { env: { ...process.env, ...env } });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (e) {
    const err = e as { code: number; stdout: string; stderr: string };
    return { code: err.code, stdout: err.stdout, stderr: err.stderr };
  }
}

function policy(echo: number, hosts: string[]): string {
  return `version: 1
address_exceptions: [127.0.0.1/32]
groups:
  - name: servers
    sources: [127.0.0.0/8]
    allow:
${hosts.map((h) => `      - host: ${h}\n        ports: [${echo}]\n        tls: none\n`).join('')}`;
}

interface Served {
  proc: ChildProcess;
  proxyPort: number;
  server: string;
  token: string | null;
  stderr: () => string;
  events: Record<string, unknown>[];
  exit: Promise<number | null>;
}

async function serve(args: string[]): Promise<Served> {
  // These flows restart the gateway many times; a short data-plane warm-up keeps them quick
  // (the warm-up itself is tested in warmup.test.ts and cli.test.ts).
  const proc = killedWithTest(spawn(process.execPath, [CLI, 'serve', '--proxy-listen', '127.0.0.1:0', '--control-listen', '127.0.0.1:0', '--mtls-listen', '127.0.0.1:0', '--events', '-', '--proxy-warmup', '100', ...args], { stdio: ['ignore', 'pipe', 'pipe'] }));
  const events: Record<string, unknown>[] = [];
  let stderr = '';
  proc.stderr!.on('data', (c: Buffer) => { stderr += c.toString(); });
  const exit = new Promise<number | null>((r) => proc.on('exit', (code) => r(code)));
  const started = await new Promise<Record<string, unknown>>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`serve did not start: ${stderr}`)), 20_000);
    createInterface({ input: proc.stdout! }).on('line', (l) => {
      const e = JSON.parse(l) as Record<string, unknown>;
      events.push(e);
      if (e.type === 'gateway.started') { clearTimeout(t); resolve(e); }
    });
    void exit.then((code) => { clearTimeout(t); reject(new Error(`serve exited ${code}: ${stderr}`)); });
  });
  const listeners = started.listeners as string[];
  const proxyPort = Number(/:(\d+)$/.exec(listeners[0]!)?.[1]);
  const control = listeners.find((l) => l.startsWith('control '))!;
  const token = /export CHOKEPOINT_TOKEN=(cpa_[A-Za-z0-9_-]{43})/.exec(stderr)?.[1] ?? null;
  return { proc, proxyPort, server: `http://${control.slice('control '.length)}`, token, stderr: () => stderr, events, exit };
}

async function status(port: number, target: string): Promise<{ status: number; reason?: string }> {
  const c = await RawClient.connect(port);
  try {
    c.write(`CONNECT ${target} HTTP/1.1\r\n\r\n`);
    const h = await c.head();
    return { status: h.status, reason: h.headers['x-chokepoint-reason'] };
  } finally {
    c.close();
  }
}

async function stop(s: Served): Promise<void> {
  s.proc.kill('SIGTERM');
  const code = await s.exit;
  assert.equal(code, 0, s.stderr());
}

/** A TCP relay in front of PostgreSQL that the test can cut (store outage). */
async function pgRelay(): Promise<{ port: number; cut(): void; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  let cut = false;
  const srv: Server = createServer((c) => {
    if (cut) { c.destroy(); return; }
    const u = connect(5432, '127.0.0.1');
    sockets.add(c); sockets.add(u);
    c.pipe(u); u.pipe(c);
    const done = () => { c.destroy(); u.destroy(); sockets.delete(c); sockets.delete(u); };
    c.on('error', done); u.on('error', done); c.on('close', done); u.on('close', done);
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  return {
    port: (srv.address() as { port: number }).port,
    cut: () => { cut = true; for (const s of sockets) s.destroy(); },
    close: () => new Promise<void>((r) => { for (const s of sockets) s.destroy(); srv.close(() => r()); }),
  };
}

let dns: DnsServer;
let echo: Origin;
let dir: string;
before(async () => {
  dns = await testDns();
  echo = await startEchoOrigin();
  dir = mkdtempSync(join(tmpdir(), 'cp-e2e-'));
});
after(async () => {
  await echo.close();
  await dns.close();
  rmSync(dir, { recursive: true, force: true });
});

for (const backend of ['sqlite', 'postgres'] as const) {
  describe(`serve + CLI on ${backend}`, () => {
    const schema = `cp_e2e_${randomBytes(5).toString('hex')}`;
    let relay: Awaited<ReturnType<typeof pgRelay>> | null = null;
    let dataDir: string;
    let storeArgs: string[];
    let configFile: string;
    before(async () => {
      dataDir = mkdtempSync(join(dir, `${backend}-`));
      configFile = join(dataDir, 'config.yaml');
      writeFileSync(configFile, `dns:\n  resolvers: ["${dns.address}"]\ntimeouts:\n  shutdown: 2s\nlog_level: warn\n`);
      storeArgs = ['--config', configFile, '--data-dir', dataDir];
      if (backend === 'postgres') {
        const c = new pg.Client({ connectionString: PG_URL });
        await c.connect();
        await c.query(`CREATE SCHEMA ${schema}`);
        await c.end();
        relay = await pgRelay();
        storeArgs.push('--database', `postgres://postgres@127.0.0.1:${relay.port}/test?options=${encodeURIComponent(`-c search_path=${schema}`)}`);
      }
    });
    after(async () => {
      await relay?.close();
      if (backend === 'postgres') {
        const c = new pg.Client({ connectionString: PG_URL });
        await c.connect();
        await c.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
        await c.end();
      }
    });

    it('first start prints an admin token; CLI changes policy; audit verify catches tampering; restart keeps state', async () => {
      const file = join(dataDir, 'policy.yaml');
      writeFileSync(file, policy(echo.port, ['echo.test']));
      const s = await serve([...storeArgs, '--policy', file]);
      let s2: Served | null = null;
      try {
        assert.ok(s.token, `no token on stderr: ${s.stderr()}`);
        const env = { CHOKEPOINT_SERVER: s.server, CHOKEPOINT_TOKEN: s.token! };
        assert.equal((await status(s.proxyPort, `echo.test:${echo.port}`)).status, 200);
        assert.equal((await status(s.proxyPort, `other.test:${echo.port}`)).reason, 'no_rule_matched');

        const hist = await cli(['policy', 'history', '--json'], env);
        assert.equal(hist.code, 0, hist.stderr);
        assert.equal(JSON.parse(hist.stdout).items[0].author, `file:${file}`);

        const noauth = await cli(['policy', 'history'], { CHOKEPOINT_SERVER: s.server, CHOKEPOINT_TOKEN: '' });
        assert.equal(noauth.code, 1);
        assert.match(noauth.stderr, /\[AUTH_REQUIRED\]/);

        const viewer = await cli(['admin', 'create', 'eve', '--role', 'viewer', '--json'], env);
        assert.equal(viewer.code, 0, viewer.stderr);
        const eveToken = JSON.parse(viewer.stdout).token as string;
        const refused = await cli(['policy', 'rollback', '1', '--token', eveToken], { CHOKEPOINT_SERVER: s.server });
        assert.equal(refused.code, 1);
        assert.match(refused.stderr, /\[FORBIDDEN_ROLE\]/);

        const next = join(dataDir, 'next.yaml');
        writeFileSync(next, policy(echo.port, ['other.test']));
        const bad = join(dataDir, 'bad.yaml');
        writeFileSync(bad, 'version: 1\ngroups:\n  - name: servers\n    allow:\n      - host: "*.com"\n');
        const invalid = await cli(['policy', 'propose', bad, '--reason', 'broken'], env);
        assert.equal(invalid.code, 1);
        assert.match(invalid.stderr, /groups\[0\]\.allow\[0\]\.host/);
        assert.match(invalid.stderr, /\[POLICY_INVALID\]/);

        // Record a real decision for other.test so the diff can replay it.
        const pushed = await cli(['policy', 'push', next, '--reason', 'swap echo for other', '--no-apply'], env);
        assert.equal(pushed.code, 0, pushed.stderr);
        await new Promise((r) => setTimeout(r, 400)); // the recorder batches decision rows
        const diff = await cli(['policy', 'diff', '2'], env);
        assert.equal(diff.code, 0, diff.stderr);
        assert.match(diff.stdout, /\+ allow \{host:"other\.test"/);
        assert.match(diff.stdout, /other\.test:\d+ +deny\/no_rule_matched -> allow\/allowed/);
        assert.match(diff.stdout, /echo\.test:\d+ +allow\/allowed -> deny\/no_rule_matched/);
        const applied = await cli(['policy', 'apply', '2'], env);
        assert.equal(applied.code, 0, applied.stderr);
        assert.equal((await status(s.proxyPort, `other.test:${echo.port}`)).status, 200);
        assert.equal((await status(s.proxyPort, `echo.test:${echo.port}`)).reason, 'no_rule_matched');
        const rb = await cli(['policy', 'rollback', '1', '--reason', 'undo'], env);
        assert.equal(rb.code, 0, rb.stderr);
        assert.equal((await status(s.proxyPort, `echo.test:${echo.port}`)).status, 200);

        // The events query: the two identical allows of echo.test (before the swap and after the
        // rollback) are one row with one repeat; the deny in between is its own row.
        await new Promise((r) => setTimeout(r, 400)); // the recorder batches decision rows
        const ev = await cli(['events', '--host', 'echo.test', '--since', '1h', '--json'], env);
        assert.equal(ev.code, 0, ev.stderr);
        const rows = JSON.parse(ev.stdout).items as { verdict: string; reason: string; repeats: number; last_time: string | null }[];
        assert.deepEqual(rows.map((r) => [r.verdict, r.reason, r.repeats]), [['deny', 'no_rule_matched', 0], ['allow', 'allowed', 1]]);
        assert.notEqual(rows[1]?.last_time, null);
        const human = await cli(['events', '--client', '127.0.0.1', '--verdict', 'deny'], env);
        assert.equal(human.code, 0, human.stderr);
        assert.match(human.stdout, /^TIME +LAST +REPEATS +VERDICT/);
        assert.match(human.stdout, /deny +no_rule_matched +servers +127\.0\.0\.1 +echo\.test:\d+/);
        const badSince = await cli(['events', '--since', 'yesterday'], env);
        assert.equal(badSince.code, 2);
        assert.match(badSince.stderr, /--since must be a duration ago/);

        const ok = await cli(['audit', 'verify'], env);
        assert.equal(ok.code, 0, ok.stderr);
        assert.match(ok.stdout, /audit chain ok/);
        const list = await cli(['audit', 'list', '--json'], env);
        const entries = JSON.parse(list.stdout).items as { seq: number; action: string; actor: string; token_id: string | null }[];
        const victim = entries.find((e) => e.action === 'policy.rollback')!;
        assert.equal(victim.actor, 'admin');
        // Which token acted: the admin's entries carry its token id, and can be listed by it.
        assert.ok(victim.token_id);
        const byToken = await cli(['audit', 'list', '--by-token', victim.token_id as string, '--json'], env);
        assert.equal(byToken.code, 0, byToken.stderr);
        const mine = JSON.parse(byToken.stdout).items as { token_id: string }[];
        assert.ok(mine.length > 0 && mine.every((e) => e.token_id === victim.token_id));
        const table = await cli(['audit', 'list', '--by-token', victim.token_id as string], env);
        assert.match(table.stdout, /^SEQ +TIME +ACTOR +TOKEN_ID/);
        if (backend === 'sqlite') {
          const db = new Database(join(dataDir, 'chokepoint.db'));
          db.prepare("UPDATE audit_log SET actor = 'someone-else' WHERE seq = ?").run(victim.seq);
          db.close();
        } else {
          const c = new pg.Client({ connectionString: PG_URL });
          await c.connect();
          await c.query(`UPDATE ${schema}.audit_log SET actor = 'someone-else' WHERE seq = $1`, [victim.seq]);
          await c.end();
        }
        const broken = await cli(['audit', 'verify'], env);
        assert.equal(broken.code, 1);
        assert.match(broken.stdout, new RegExp(`BROKEN at entry ${victim.seq}`));
        assert.match(broken.stderr, /\[AUDIT_CHAIN_BROKEN\]/);

        await stop(s);
        // Restart from the store alone: the applied version is enforced, tokens still work, no new admin.
        s2 = await serve(storeArgs);
        assert.equal(s2.token, null, 'the first admin is created only once');
        assert.equal((await status(s2.proxyPort, `echo.test:${echo.port}`)).status, 200);
        const state = await cli(['policy', 'history', '--json'], { CHOKEPOINT_SERVER: s2.server, CHOKEPOINT_TOKEN: s.token! });
        assert.equal(state.code, 0, state.stderr);
        assert.equal(JSON.parse(state.stdout).state.applied_version, 1);

        if (relay) {
          // Store outage: the gateway keeps enforcing the last good snapshot; /readyz says why.
          relay.cut();
          const ready = await fetch(`${s2.server}/readyz`);
          assert.equal(ready.status, 503);
          const body = await ready.json() as { code: string; failed: { check: string }[] };
          assert.equal(body.code, 'NOT_READY');
          assert.deepEqual(body.failed.map((f) => f.check), ['store']);
          assert.equal((await status(s2.proxyPort, `echo.test:${echo.port}`)).status, 200);
          assert.equal((await status(s2.proxyPort, `other.test:${echo.port}`)).reason, 'no_rule_matched');
          const during = await cli(['policy', 'apply', '2'], { CHOKEPOINT_SERVER: s2.server, CHOKEPOINT_TOKEN: s.token! });
          assert.equal(during.code, 1);
          assert.match(during.stderr, /\[STORE_UNAVAILABLE\]/);
          await new Promise((r) => setTimeout(r, 5500));
          assert.match(s2.stderr(), /store unreachable/);
          assert.equal((await status(s2.proxyPort, `echo.test:${echo.port}`)).status, 200, 'still enforcing, still up');
        }
        await stop(s2);
        s2 = null;
      } finally {
        if (s.proc.exitCode === null) s.proc.kill('SIGKILL');
        if (s2 && s2.proc.exitCode === null) s2.proc.kill('SIGKILL');
      }
    });
  });
}

describe('the control listener off loopback', () => {
  it('serves TLS from the built-in CA and refuses plain HTTP (bearer tokens never cross a network in clear)', async () => {
    const d = mkdtempSync(join(dir, 'tls-'));
    const s = await serve(['--policy', fileURLToPath(new URL('../../examples/policy.yaml', import.meta.url)), '--control-listen', '0.0.0.0:0', '--data-dir', d]);
    try {
      const port = Number(/:(\d+)$/.exec(s.server)?.[1]);
      const plain = await fetch(`http://127.0.0.1:${port}/healthz`);
      assert.equal(plain.status, 400);
      assert.equal(((await plain.json()) as { code: string }).code, 'CONTROL_TLS_REQUIRED');
      // Over TLS, trusting only the CA the first start created in the data directory.
      const { readdirSync, readFileSync } = await import('node:fs');
      const caId = readdirSync(join(d, 'ca')).find((f) => !f.endsWith('.json'))!;
      const ca = readFileSync(join(d, 'ca', caId, 'cert.pem'), 'utf8');
      const { Agent, fetch: ufetch } = await import('undici');
      const agent = new Agent({ connect: { ca, servername: 'localhost' } });
      try {
        const ok = await ufetch(`https://127.0.0.1:${port}/healthz`, { dispatcher: agent });
        assert.equal(ok.status, 200);
      } finally {
        await agent.close();
      }
      assert.match(s.stderr(), /created the device CA/);
    } finally {
      await stop(s);
    }
  });
});
