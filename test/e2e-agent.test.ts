/**
 * End to end (issues #4 and #6), real processes on loopback: the built `chokepoint serve` with
 * its store, CA, EST and mTLS listener; `chokepoint token create` and `device list|revoke` as the
 * admin; `chokepoint agent enroll|forward|renew` and `chokepoint verify` as the device; curl and
 * git as the applications. One scenario, in order: enroll → curl and git through the forwarder →
 * renewal under an open tunnel → revocation cutting that tunnel → CRL → restart keeps it all.
 */
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { after, before, it } from 'node:test';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { startDnsServer, type DnsServer } from './helpers/dns-server.js';
import { isolatedGitEnv, makeBareRepo, startHttpsOrigin, type BareRepo, type HttpsOrigin } from './helpers/git-origin.js';
import { makePki, type TestPki } from './helpers/origins.js';
import { freePort } from './helpers/ports.js';
import { killedWithTest } from './helpers/children.js';

const CLI = fileURLToPath(new URL('../src/cli.js', import.meta.url));
const execP = promisify(execFile);
type Ev = Record<string, unknown>;

interface Run { code: number; stdout: string; stderr: string }
async function run(file: string, args: string[], env: Record<string, string> = {}, timeout = 30_000): Promise<Run> {
  try {
    const r = await execP(file, args, { env: { ...process.env, NO_PROXY: '', no_proxy: '', ...env }, timeout, encoding: 'utf8' });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (e) {
    const err = e as { code: number; stdout: string; stderr: string };
    return { code: typeof err.code === 'number' ? err.code : -1, stdout: err.stdout ?? '', stderr: `${err.stderr ?? ''}${String(e)}` };
  }
}
const cli = (args: string[], env: Record<string, string> = {}): Promise<Run> => run(process.execPath, [CLI, ...args], env);

interface Served {
  proc: ChildProcess;
  control: string;
  mtls: string;
  token: string | null;
  fingerprint: string | null;
  stderr: () => string;
  events: Ev[];
  exit: Promise<number | null>;
}

const procs = new Set<ChildProcess>();

async function serve(args: string[]): Promise<Served> {
  // These flows restart the gateway many times; a short data-plane warm-up keeps them quick
  // (the warm-up itself is tested in warmup.test.ts and cli.test.ts).
  const proc = killedWithTest(spawn(process.execPath, [CLI, 'serve', '--proxy-listen', '127.0.0.1:0', '--control-listen', '127.0.0.1:0', '--mtls-listen', '127.0.0.1:0', '--events', '-', '--proxy-warmup', '100', ...args], { stdio: ['ignore', 'pipe', 'pipe'] }));
  procs.add(proc);
  const events: Ev[] = [];
  let stderr = '';
  proc.stderr!.on('data', (c: Buffer) => { stderr += c.toString(); });
  const exit = new Promise<number | null>((r) => proc.on('exit', (code) => r(code)));
  const started = await new Promise<Ev>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`serve did not start: ${stderr}`)), 20_000);
    createInterface({ input: proc.stdout! }).on('line', (l) => {
      const e = JSON.parse(l) as Ev;
      events.push(e);
      if (e.type === 'gateway.started') { clearTimeout(t); resolve(e); }
    });
    void exit.then((code) => { clearTimeout(t); reject(new Error(`serve exited ${code}: ${stderr}`)); });
  });
  const listeners = started.listeners as string[];
  const at = (kind: string) => listeners.find((l) => l.startsWith(`${kind} `))!.slice(kind.length + 1);
  return {
    proc, events, exit, stderr: () => stderr,
    control: at('control'),
    mtls: at('mtls'),
    token: /export CHOKEPOINT_TOKEN=(cpa_[A-Za-z0-9_-]{43})/.exec(stderr)?.[1] ?? null,
    fingerprint: /SHA-256 fingerprint:\s+([0-9a-f]{64})/.exec(stderr)?.[1] ?? null,
  };
}

async function stop(s: Served): Promise<void> {
  s.proc.kill('SIGTERM');
  assert.equal(await s.exit, 0, s.stderr());
}

/** Polls `events` until one matches; every wait is bounded. */
async function waitEvent(events: Ev[], pred: (e: Ev) => boolean, what: string, ms = 10_000): Promise<Ev> {
  const deadline = Date.now() + ms;
  for (;;) {
    const e = events.find(pred);
    if (e) return e;
    if (Date.now() > deadline) throw new Error(`no ${what} event within ${ms} ms; saw ${events.map((x) => `${String(x.type)}/${String(x.host ?? '')}/${String(x.reason ?? x.close_reason ?? '')}`).join(', ')}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** curl through a proxy; returns the last response head (the proxy's answer when CONNECT failed). */
async function curl(proxy: string, url: string, cacert: string): Promise<{ status: number; headers: string; body: string; raw: Run }> {
  const r = await run('curl', ['-sS', '-i', '--max-time', '10', '--cacert', cacert, url], { HTTPS_PROXY: proxy, https_proxy: proxy });
  const parts = r.stdout.split(/\r\n\r\n/);
  let i = 0;
  while (i < parts.length - 1 && /^HTTP\/[0-9.]+ 200 Connection established/i.test(parts[i] ?? '')) i++;
  const headers = parts[i] ?? '';
  return { status: Number(/^HTTP\/[0-9.]+ ([0-9]{3})/.exec(headers)?.[1] ?? 0), headers, body: parts.slice(i + 1).join('\r\n\r\n'), raw: r };
}
const header = (head: string, name: string): string | null => new RegExp(`\\r\\n${name}: *([^\\r\\n]*)`, 'i').exec(head)?.[1] ?? null;

/** A CONNECT tunnel through the forwarder with TLS to the origin inside it, kept open. */
function openTunnel(proxyPort: number, host: string, port: number, ca: string): Promise<TLSSocket> {
  return new Promise((resolve, reject) => {
    const raw: Socket = connect(proxyPort, '127.0.0.1', () => raw.write(`CONNECT ${host}:${port} HTTP/1.1\r\nHost: ${host}:${port}\r\n\r\n`));
    const t = setTimeout(() => { raw.destroy(); reject(new Error('tunnel did not open in 10 s')); }, 10_000);
    let buf = '';
    const onData = (c: Buffer): void => {
      buf += c.toString('latin1');
      if (!buf.includes('\r\n\r\n')) return;
      raw.off('data', onData);
      if (!/^HTTP\/1\.1 200/.test(buf)) { clearTimeout(t); raw.destroy(); reject(new Error(buf)); return; }
      const s = tlsConnect({ socket: raw, servername: host, ca }, () => { clearTimeout(t); resolve(s); });
      s.on('error', (e) => { clearTimeout(t); reject(e); });
    };
    raw.on('data', onData);
    raw.on('error', (e) => { clearTimeout(t); reject(e); });
  });
}

/** One keep-alive GET /hello on an open TLS tunnel; resolves with the parsed JSON body. */
function hello(s: TLSSocket, host: string): Promise<{ requests_on_connection: number }> {
  return new Promise((resolve, reject) => {
    let buf = '';
    const t = setTimeout(() => { cleanup(); reject(new Error(`no answer on the tunnel: ${buf}`)); }, 10_000);
    const onData = (c: Buffer): void => {
      buf += c.toString('utf8');
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      const len = Number(/content-length: *(\d+)/i.exec(buf.slice(0, end))?.[1] ?? -1);
      if (buf.length < end + 4 + len) return;
      cleanup();
      resolve(JSON.parse(buf.slice(end + 4, end + 4 + len)) as { requests_on_connection: number });
    };
    const onClose = (): void => { cleanup(); reject(new Error('tunnel closed')); };
    const cleanup = (): void => { clearTimeout(t); s.off('data', onData); s.off('close', onClose); };
    s.on('data', onData);
    s.on('close', onClose);
    s.write(`GET /hello HTTP/1.1\r\nHost: ${host}\r\nConnection: keep-alive\r\n\r\n`);
  });
}

/** CONNECT on the mTLS listener with the key and certificate in `agentDir`; the answer head, or the TLS error. */
function mtlsConnect(mtls: string, agentDir: string, target: string): Promise<{ status: number; reason: string | null; error: string | null }> {
  const [host, port] = [mtls.slice(0, mtls.lastIndexOf(':')), Number(mtls.slice(mtls.lastIndexOf(':') + 1))];
  const f = (n: string) => readFileSync(join(agentDir, n), 'utf8');
  return new Promise((resolve) => {
    const s = tlsConnect({ host, port, servername: 'localhost', ca: f('ca.pem'), key: f('key.pem'), cert: f('cert.pem') }, () => s.write(`CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n\r\n`));
    let buf = '';
    const done = (r: { status: number; reason: string | null; error: string | null }): void => { clearTimeout(t); s.destroy(); resolve(r); };
    const t = setTimeout(() => done({ status: 0, reason: null, error: 'timed out' }), 10_000);
    s.on('data', (c: Buffer) => {
      buf += c.toString('latin1');
      const end = buf.indexOf('\r\n\r\n');
      if (end >= 0) done({ status: Number(/^HTTP\/1\.1 ([0-9]{3})/.exec(buf)?.[1] ?? 0), reason: header(buf.slice(0, end), 'x-chokepoint-reason'), error: null });
    });
    s.on('error', (e: Error & { code?: string }) => done({ status: 0, reason: null, error: e.code ?? e.message }));
    s.on('close', () => done({ status: 0, reason: null, error: `closed after ${JSON.stringify(buf)}` }));
  });
}

/** `agent forward` as a child process; resolves once it accepts connections. */
async function forward(port: number, gateway: string, dir: string): Promise<ChildProcess> {
  const p = killedWithTest(spawn(process.execPath, [CLI, 'agent', 'forward', '--listen', `127.0.0.1:${port}`, '--gateway', gateway, '--dir', dir], { stdio: ['ignore', 'ignore', 'pipe'] }));
  procs.add(p);
  let err = '';
  p.stderr!.on('data', (c: Buffer) => { err += c.toString(); });
  const deadline = Date.now() + 10_000;
  for (;;) {
    const up = await new Promise<boolean>((r) => { const s = connect(port, '127.0.0.1', () => { s.destroy(); r(true); }); s.on('error', () => r(false)); });
    if (up) return p;
    if (p.exitCode !== null || Date.now() > deadline) throw new Error(`forwarder did not start: ${err}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}


const serialHex = (s: string): string => s.toLowerCase().replace(/^0+/, '');

let dir: string;
let dns: DnsServer;
let pki: TestPki;
let repo: BareRepo;
let web: HttpsOrigin;
let gitOrigin: HttpsOrigin;
let tunnel: TLSSocket | null = null;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'cp-e2e-agent-'));
  dns = await startDnsServer({ 'web.test': ['127.0.0.1'], 'git.test': ['127.0.0.1'], 'denied.test': ['127.0.0.1'] });
  pki = makePki(['web.test', 'git.test']);
  repo = makeBareRepo('project', 'hello through the chokepoint\n');
  web = await startHttpsOrigin(pki);
  gitOrigin = await startHttpsOrigin(pki, repo.root);
});

after(async () => {
  tunnel?.destroy();
  for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
  await web?.close();
  await gitOrigin?.close();
  await dns?.close();
  repo?.cleanup();
  pki?.cleanup();
  rmSync(dir, { recursive: true, force: true });
});

it('enroll, forward (curl, git), renew under an open tunnel, revoke cuts it, CRL, restart keeps it; verify passes', async (t) => {
  const dataDir = join(dir, 'data');
  mkdirSync(dataDir);
  const configFile = join(dir, 'config.yaml');
  writeFileSync(configFile, `dns:\n  resolvers: ["${dns.address}"]\ntimeouts:\n  shutdown: 2s\nlog_level: warn\n`);
  const policyFile = join(dir, 'policy.yaml');
  writeFileSync(policyFile, `version: 1
address_exceptions: [127.0.0.1/32]
groups:
  - name: laptops
    allow:
      - host: web.test
        ports: [${web.port}]
        tls: required
      - host: git.test
        ports: [${gitOrigin.port}]
        tls: required
`);
  const storeArgs = ['--config', configFile, '--data-dir', dataDir];
  const s = await serve([...storeArgs, '--policy', policyFile]);
  assert.ok(s.token, `no admin token on stderr: ${s.stderr()}`);
  assert.ok(s.fingerprint, `no CA fingerprint on stderr: ${s.stderr()}`);
  const admin = { CHOKEPOINT_SERVER: `http://${s.control}`, CHOKEPOINT_TOKEN: s.token! };

  // 2. Enrollment: token from the admin CLI, EST over TLS pinned by the fingerprint.
  const tok = await cli(['token', 'create', '--group', 'laptops', '--json'], admin);
  assert.equal(tok.code, 0, tok.stderr);
  const enrollToken = JSON.parse(tok.stdout).token as string;
  const agentDir = join(dir, 'agent-a');
  // A wrong pin (an impostor control plane, or a typo) stops before the token is sent: the
  // same one-time token still enrolls afterwards.
  const wrongPin = await cli(['agent', 'enroll', '--server', `https://${s.control}`, '--token', enrollToken, '--ca-fingerprint', 'ab'.repeat(32), '--dir', agentDir]);
  assert.equal(wrongPin.code, 1, wrongPin.stderr);
  assert.match(wrongPin.stderr, /AGENT_CA_MISMATCH/);
  const en = await cli(['agent', 'enroll', '--server', `https://${s.control}`, '--token', enrollToken, '--ca-fingerprint', s.fingerprint!, '--dir', agentDir]);
  assert.equal(en.code, 0, en.stderr);
  const serial1 = /serial ([0-9a-f]+)/i.exec(en.stdout)?.[1];
  assert.ok(serial1, en.stdout);
  assert.equal(statSync(agentDir).mode & 0o777, 0o700);
  const reused = await cli(['agent', 'enroll', '--server', `https://${s.control}`, '--token', enrollToken, '--ca-fingerprint', s.fingerprint!, '--dir', join(dir, 'agent-x')]);
  assert.equal(reused.code, 1, 'a one-time token enrolls once');
  assert.match(reused.stderr, /TOKEN_USED/);
  const list = await cli(['device', 'list', '--json'], admin);
  assert.equal(list.code, 0, list.stderr);
  const devices = JSON.parse(list.stdout).items as { id: string; group_name: string; state: string }[];
  assert.equal(devices.length, 1, list.stdout);
  const deviceId = devices[0]!.id;
  assert.deepEqual([devices[0]!.group_name, devices[0]!.state], ['laptops', 'active']);

  // 3. The forwarder; curl through it.
  const fwdPort = await freePort();
  await forward(fwdPort, `https://${s.mtls}`, agentDir);
  const proxy = `http://127.0.0.1:${fwdPort}`;
  const ok = await curl(proxy, `https://web.test:${web.port}/hello`, pki.caPath);
  assert.equal(ok.status, 200, `${ok.headers}\n${ok.raw.stderr}`);
  assert.equal(JSON.parse(ok.body).sni, 'web.test');
  const d1 = await waitEvent(s.events, (e) => e.type === 'gateway.decision' && e.host === 'web.test', 'web.test decision');
  assert.deepEqual([d1.verdict, d1.reason, d1.device_id, d1.group, d1.serial], ['allow', 'allowed', deviceId, 'laptops', serial1!.toLowerCase()]);
  const denied = await curl(proxy, `https://denied.test:${web.port}/hello`, pki.caPath);
  assert.equal(denied.status, 403, `${denied.headers}\n${denied.raw.stderr}`);
  assert.equal(header(denied.headers, 'x-chokepoint-reason'), 'no_rule_matched');
  assert.ok(!web.paths.includes('/denied'), 'nothing reached the origin');

  // 4. git clone over HTTPS (dumb protocol) through the forwarder.
  const home = join(dir, 'home');
  mkdirSync(home);
  const clone = await run('git', ['clone', '-q', `https://git.test:${gitOrigin.port}/project.git`, join(dir, 'clone')], { ...isolatedGitEnv(home), HTTPS_PROXY: proxy, https_proxy: proxy, GIT_SSL_CAINFO: pki.caPath });
  assert.equal(clone.code, 0, clone.stderr);
  assert.equal(readFileSync(join(dir, 'clone', 'README'), 'utf8'), 'hello through the chokepoint\n');
  const head = await run('git', ['-C', join(dir, 'clone'), 'rev-parse', 'HEAD'], isolatedGitEnv(home));
  assert.equal(head.stdout.trim(), repo.commit);
  assert.ok(gitOrigin.paths.includes('/project.git/info/refs'), gitOrigin.paths.join(' '));
  const dg = await waitEvent(s.events, (e) => e.type === 'gateway.decision' && e.host === 'git.test', 'git.test decision');
  assert.deepEqual([dg.verdict, dg.device_id, dg.group], ['allow', deviceId, 'laptops']);

  // 5. Renewal with a tunnel open: the tunnel survives, the next connection uses the new serial.
  tunnel = await openTunnel(fwdPort, 'web.test', web.port, pki.caCert);
  assert.equal((await hello(tunnel, 'web.test')).requests_on_connection, 1);
  const tunnelDecision = await waitEvent(s.events, (e) => e.type === 'gateway.decision' && e.host === 'web.test' && e.id !== d1.id, 'tunnel decision');
  const oldDir = join(dir, 'agent-a-old');
  cpSync(agentDir, oldDir, { recursive: true });
  const rn = await cli(['agent', 'renew', '--dir', agentDir, '--force']);
  assert.equal(rn.code, 0, rn.stderr);
  const serial2 = /serial ([0-9a-f]+)/i.exec(rn.stdout)?.[1];
  assert.ok(serial2, rn.stdout);
  assert.notEqual(serialHex(serial2!), serialHex(serial1!));
  assert.equal((await hello(tunnel, 'web.test')).requests_on_connection, 2, 'the open tunnel survives renewal');
  const after2 = await curl(proxy, `https://web.test:${web.port}/hello`, pki.caPath);
  assert.equal(after2.status, 200, after2.headers);
  const d2 = await waitEvent(s.events, (e) => e.type === 'gateway.decision' && e.host === 'web.test' && e.serial === serial2!.toLowerCase(), 'decision with the new serial');
  assert.equal(d2.device_id, deviceId);
  assert.equal((await hello(tunnel, 'web.test')).requests_on_connection, 3, 'still open after the new serial is first used');
  // Once the new serial has been used the old one is superseded (DESIGN §4): a copy of the old
  // key and certificate (a backup, a stolen disk image) no longer opens anything.
  assert.deepEqual(await mtlsConnect(s.mtls, oldDir, `web.test:${web.port}`), { status: 403, reason: 'certificate_superseded', error: null });

  // 6. Revocation cuts the open tunnel, refuses the next connection, reaches the CRL.
  const cut = new Promise<number>((r) => tunnel!.once('close', () => r(Date.now())));
  const t0 = Date.now();
  const rv = await cli(['device', 'revoke', deviceId, '--reason', 'e2e: laptop stolen'], admin);
  const t1 = Date.now();
  assert.equal(rv.code, 0, rv.stderr);
  const closedAt = await Promise.race([cut, new Promise<number>((_, rej) => setTimeout(() => rej(new Error('the open tunnel was not cut within 5 s')), 5000))]);
  t.diagnostic(`revocation: tunnel cut ${closedAt - t0} ms after the revoke command started, ${Math.max(0, closedAt - t1)} ms after it returned (CLI start-up is most of the first figure)`);
  const tc = await waitEvent(s.events, (e) => e.type === 'gateway.tunnel.closed' && e.id === tunnelDecision.id, 'tunnel.closed of the open tunnel');
  assert.equal(tc.close_reason, 'device_revoked');
  assert.equal(tc.device_id, deviceId);
  const refused = await curl(proxy, `https://web.test:${web.port}/hello`, pki.caPath);
  assert.equal(refused.status, 403, `${refused.headers}\n${refused.raw.stderr}`);
  assert.equal(header(refused.headers, 'x-chokepoint-reason'), 'device_revoked');
  const dr = await waitEvent(s.events, (e) => e.type === 'gateway.decision' && e.reason === 'device_revoked' && e.serial === serial2!.toLowerCase(), 'device_revoked decision');
  assert.deepEqual([dr.verdict, dr.device_id, dr.serial], ['deny', deviceId, serial2!.toLowerCase()]);

  // A revoked certificate cannot mint its successor.
  const rr = await cli(['agent', 'renew', '--dir', agentDir, '--force']);
  assert.equal(rr.code, 1, rr.stdout);
  assert.match(rr.stderr, /AGENT_RENEW_DENIED.*DEVICE_REVOKED/);
  const crlFile = join(dir, 'crl.der');
  const crl = await fetch(`http://${s.control}/crl`);
  assert.equal(crl.status, 200);
  writeFileSync(crlFile, Buffer.from(await crl.arrayBuffer()));
  const text = await run('openssl', ['crl', '-inform', 'DER', '-noout', '-text', '-in', crlFile]);
  assert.equal(text.code, 0, text.stderr);
  const listed = [...text.stdout.matchAll(/Serial Number: *([0-9A-Fa-f]+)/g)].map((m) => serialHex(m[1]!));
  assert.ok(listed.includes(serialHex(serial2!)), `CRL lists ${listed.join(', ')}; expected ${serial2}`);
  assert.ok(listed.includes(serialHex(serial1!)), `the superseded certificate is revoked too: CRL lists ${listed.join(', ')}`);

  // 7. Restart on the same data directory: the device and its revocation are still there.
  await stop(s);
  // While the gateway is down the forwarder answers a readable 502, it does not hang or go direct.
  const down = await curl(proxy, `https://web.test:${web.port}/hello`, pki.caPath);
  assert.equal(down.status, 502, down.headers);
  assert.equal(header(down.headers, 'x-chokepoint-agent-error'), 'gateway_unreachable');
  const s2 = await serve(storeArgs);
  assert.equal(s2.token, null, 'no second first admin');
  assert.equal(s2.fingerprint, null, 'the CA is not created again');
  const admin2 = { CHOKEPOINT_SERVER: `http://${s2.control}`, CHOKEPOINT_TOKEN: s.token! };
  const show = await cli(['device', 'show', deviceId, '--json'], admin2);
  assert.equal(show.code, 0, show.stderr);
  const shown = JSON.parse(show.stdout) as { state: string; certificates: { serial: string; revoked_at: unknown }[] };
  assert.equal(shown.state, 'revoked');
  assert.ok(shown.certificates.every((c) => c.revoked_at !== null), show.stdout);
  writeFileSync(crlFile, Buffer.from(await (await fetch(`http://${s2.control}/crl`)).arrayBuffer()));
  const text2 = await run('openssl', ['crl', '-inform', 'DER', '-noout', '-text', '-in', crlFile]);
  const listed2 = [...text2.stdout.matchAll(/Serial Number: *([0-9A-Fa-f]+)/g)].map((m) => serialHex(m[1]!));
  assert.ok(listed2.includes(serialHex(serial2!)) && listed2.includes(serialHex(serial1!)), `CRL after restart lists ${listed2.join(', ')}`);

  // verify from a second, good device against the restarted deployment, with the revoked
  // device's directory as the operator's revoked sample and the web origin as the impostor
  // (its certificate is not from the device CA).
  const tok2 = await cli(['token', 'create', '--group', 'laptops', '--json'], admin2);
  assert.equal(tok2.code, 0, tok2.stderr);
  const agentB = join(dir, 'agent-b');
  const en2 = await cli(['agent', 'enroll', '--server', `https://${s2.control}`, '--token', JSON.parse(tok2.stdout).token as string, '--ca-fingerprint', s.fingerprint!, '--dir', agentB]);
  assert.equal(en2.code, 0, en2.stderr);
  const v = await cli(['verify', '--json', '--dir', agentB, '--gateway', `https://${s2.mtls}`, '--allowed', `web.test:${web.port}`, '--denied', `denied.test:${web.port}`, '--revoked-dir', agentDir, '--impostor', `https://127.0.0.1:${web.port}`, '--renew']);
  const checks = JSON.parse(v.stdout).checks as { id: string; status: string; evidence: string }[];
  const by = Object.fromEntries(checks.map((c) => [c.id, c]));
  for (const c of checks) t.diagnostic(`verify: ${c.status} ${c.id}: ${c.evidence}`);
  assert.equal(v.code, 0, v.stdout + v.stderr);
  for (const id of ['privilege.files', 'lifecycle.expiry', 'tampering.pin', 'tampering.control', 'tampering.impostor', 'bypass.gateway_path', 'drift.refused', 'lifecycle.renewal', 'lifecycle.revocation']) {
    assert.equal(by[id]?.status, 'pass', `${id}: ${by[id]?.evidence}`);
  }
  // Host egress rules are not installed in this test, so the direct-path check is not given a target.
  assert.equal(by['bypass.direct']?.status, 'skipped');
  assert.match(by['lifecycle.revocation']!.evidence, /X-Chokepoint-Reason: device_revoked/);
  assert.match(by['drift.refused']!.evidence, /no_rule_matched/);
  await stop(s2);
});
