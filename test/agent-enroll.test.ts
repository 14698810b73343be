/**
 * `chokepoint agent enroll` / `renew` against an EST server (RFC 7030) on loopback with a CA
 * made for this run: fingerprint pinning (impostors refused before the token is sent), key
 * made on the device with private permissions, pending approval polled with the same key,
 * renewal over mTLS with atomic replacement, expiry refused loudly.
 */
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { enroll } from '../src/agent/enroll.js';
import { certOf } from '../src/agent/pki.js';
import { planRenewal, renewDaemon, renewOnce } from '../src/agent/renew.js';
import { makePki, startEstServer, type EstServer, type TestPki } from './helpers/agent-est.js';
import { cli, CLI } from './helpers/cli.js';

const TOKEN = 'tok-123';


const freshDir = (): string => join(mkdtempSync(join(tmpdir(), 'cp-enroll-')), 'agent');
const colons = (hex: string): string => hex.toUpperCase().match(/../g)!.join(':');
const noSleep = async (): Promise<void> => {};

describe('agent enroll', () => {
  let pki: TestPki;
  let est: EstServer;
  before(async () => { pki = await makePki(); est = await startEstServer({ pki, token: TOKEN }); });
  after(async () => { await est.close(); });

  it('enrolls (CLI, token from the environment): 0700 dir, 0600 key, the token nowhere on disk or in output', async () => {
    const dir = freshDir();
    const r = await cli(['agent', 'enroll', '--server', est.url, '--ca-fingerprint', colons(pki.fingerprint), '--dir', dir], { CHOKEPOINT_ENROLL_TOKEN: TOKEN });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /^enrolled: serial [0-9a-f]+, valid until /);
    assert.equal(statSync(dir).mode & 0o777, 0o700);
    for (const f of ['key.pem', 'cert.pem', 'ca.pem', 'agent.json']) assert.equal(statSync(join(dir, f)).mode & 0o777, 0o600, f);
    for (const f of readdirSync(dir)) assert.ok(!readFileSync(join(dir, f), 'utf8').includes(TOKEN), `${f} holds the token`);
    assert.ok(!r.stdout.includes(TOKEN) && !r.stderr.includes(TOKEN));
    assert.equal(est.seen.at(-1)?.auth, `Bearer ${TOKEN}`);
    const cert = certOf(readFileSync(join(dir, 'cert.pem'), 'utf8'));
    assert.match(cert.subject, /CN=dev-/);
    assert.deepEqual(JSON.parse(readFileSync(join(dir, 'agent.json'), 'utf8')), { server: est.url, caFingerprint: pki.fingerprint });
    // Enrolling again over an enrolled directory is refused (it would throw the identity away).
    const again = await cli(['agent', 'enroll', '--server', est.url, '--ca-fingerprint', pki.fingerprint, '--dir', dir, '--token', TOKEN]);
    assert.equal(again.status, 2);
    assert.match(again.stderr, /already holds a device certificate/);
  });

  it('refuses an impostor control plane with another CA before sending the token', async () => {
    const other = await makePki('Impostor CA');
    const impostor = await startEstServer({ pki: other, token: TOKEN });
    try {
      const r = await cli(['agent', 'enroll', '--server', impostor.url, '--ca-fingerprint', pki.fingerprint, '--dir', freshDir(), '--token', TOKEN]);
      assert.equal(r.status, 1);
      assert.match(r.stderr, /AGENT_CA_MISMATCH: IMPOSTOR\? .*not the pinned/);
      assert.equal(impostor.seen.length, 0, 'the impostor never saw the token');
    } finally { await impostor.close(); }
  });

  it('refuses a server that relays the real CA list but presents its own TLS certificate (DNS tampering, interception)', async () => {
    const other = await makePki('Interceptor CA');
    const mitm = await startEstServer({ pki, tlsPki: other, token: TOKEN });
    try {
      await assert.rejects(enroll({ server: mitm.url, token: TOKEN, caFingerprint: pki.fingerprint, dir: freshDir(), say: () => {} }),
        (e: Error & { code?: string }) => e.code === 'AGENT_TLS_FAILED' && /not from the pinned CA/.test(e.message));
      assert.equal(mitm.seen.length, 0, 'the token was never sent over the unverified connection');
    } finally { await mitm.close(); }
  });

  it('refuses a directory that others can read, and bad fingerprints/tokens, each with its code', async () => {
    const parent = mkdtempSync(join(tmpdir(), 'cp-enroll-'));
    const loose = join(parent, 'agent');
    mkdirSync(loose, { mode: 0o755 });
    chmodSync(loose, 0o755);
    await assert.rejects(enroll({ server: est.url, token: TOKEN, caFingerprint: pki.fingerprint, dir: loose, say: () => {} }),
      (e: Error & { code?: string }) => e.code === 'AGENT_DIR_INSECURE' && /mode 0755 lets other users read it/.test(e.message) && /chmod 700/.test(e.message));
    await assert.rejects(enroll({ server: est.url, token: TOKEN, caFingerprint: 'abcd', dir: freshDir(), say: () => {} }), /not a SHA-256 fingerprint/);
    await assert.rejects(enroll({ server: est.url.replace('https', 'http'), token: TOKEN, caFingerprint: pki.fingerprint, dir: freshDir(), say: () => {} }), /must be https/);
    const r = await cli(['agent', 'enroll', '--server', est.url, '--ca-fingerprint', pki.fingerprint, '--dir', freshDir()], { CHOKEPOINT_ENROLL_TOKEN: '' });
    assert.match(r.stderr, /AGENT_TOKEN_MISSING/);
    const wrong = await cli(['agent', 'enroll', '--server', est.url, '--ca-fingerprint', pki.fingerprint, '--dir', freshDir(), '--token', 'wrong']);
    assert.equal(wrong.status, 1);
    assert.match(wrong.stderr, /AGENT_ENROLL_DENIED: the server refused the enrollment \(401\)/);
  });

  it('waits out a pending approval, polling with the same key, and reports a denial clearly', async () => {
    est.mode = 'pending';
    est.pendingPolls = 2;
    const lines: string[] = [];
    const before = est.seen.length;
    try {
      await enroll({ server: est.url, token: TOKEN, caFingerprint: pki.fingerprint, dir: freshDir(), say: (l) => lines.push(l), sleep: noSleep });
      const polls = est.seen.slice(before);
      assert.equal(polls.length, 3);
      assert.equal(new Set(polls.map((p) => p.spki)).size, 1, 'every poll carries the key of the first request');
      assert.equal(lines.filter((l) => /pending approval/.test(l)).length, 2);
      est.mode = 'deny';
      await assert.rejects(enroll({ server: est.url, token: TOKEN, caFingerprint: pki.fingerprint, dir: freshDir(), say: () => {}, sleep: noSleep }),
        (e: Error & { code?: string }) => e.code === 'AGENT_ENROLL_DENIED' && /denied by an administrator/.test(e.message));
    } finally { est.mode = 'issue'; }
  });
});

describe('agent renew', () => {
  let pki: TestPki;
  let est: EstServer;
  before(async () => { pki = await makePki(); est = await startEstServer({ pki, token: TOKEN }); });
  after(async () => { await est.close(); });

  it('renews over mTLS with a new key and the same subject; not before it is due', async () => {
    const dir = freshDir();
    const first = await enroll({ server: est.url, token: TOKEN, caFingerprint: pki.fingerprint, dir, say: () => {} });
    const keyBefore = readFileSync(join(dir, 'key.pem'), 'utf8');
    const notDue = await renewOnce({ dir });
    assert.equal(notDue.renewed, false);
    const r = await renewOnce({ dir, force: true });
    assert.ok(r.renewed);
    assert.notEqual(r.serial, first.serial);
    assert.notEqual(readFileSync(join(dir, 'key.pem'), 'utf8'), keyBefore, 'a new key with every renewal');
    const now = certOf(readFileSync(join(dir, 'cert.pem'), 'utf8'));
    assert.equal(now.serialNumber, r.serial);
    assert.equal(now.subject, certOf(first.certPem).subject);
    assert.equal(statSync(join(dir, 'key.pem')).mode & 0o777, 0o600);
    assert.deepEqual(readdirSync(dir).filter((f) => f.endsWith('.tmp')), [], 'no temporary file left behind');
  });

  it('an expired certificate: loud message, non-zero exit (CLI)', async () => {
    const dir = freshDir();
    est.lifetimeMs = 1000;
    try {
      await enroll({ server: est.url, token: TOKEN, caFingerprint: pki.fingerprint, dir, say: () => {} });
    } finally { est.lifetimeMs = 86_400_000; }
    await new Promise((r) => setTimeout(r, 1200));
    const r = await cli(['agent', 'renew', '--dir', dir]);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /AGENT_CERT_EXPIRED: the device certificate \(serial [0-9a-f]+\) EXPIRED at .*Re-enroll/);
  });

  it('daemon: retries while the server is down, then renews', async () => {
    const dir = freshDir();
    est.lifetimeMs = 3000;
    await enroll({ server: est.url, token: TOKEN, caFingerprint: pki.fingerprint, dir, say: () => {} });
    est.lifetimeMs = 86_400_000;
    const serial0 = certOf(readFileSync(join(dir, 'cert.pem'), 'utf8')).serialNumber;
    est.mode = 'down';
    const ac = new AbortController();
    const said: string[] = [];
    const d = renewDaemon({ dir, say: (l) => { said.push(l); if (/retrying/.test(l) && said.filter((x) => /retrying/.test(x)).length === 2) est.mode = 'issue'; if (/^renewed/.test(l)) ac.abort(); }, signal: ac.signal, minBackoffMs: 50, maxBackoffMs: 200 });
    await d;
    est.mode = 'issue';
    assert.ok(said.some((l) => /renewal failed \(AGENT_SERVER_ERROR: POST \/simplereenroll answered 503/.test(l)), said.join('\n'));
    assert.notEqual(certOf(readFileSync(join(dir, 'cert.pem'), 'utf8')).serialNumber, serial0);
  });

  it('plans renewal at two thirds of the lifetime, jitter within ±5%', () => {
    const life = 90 * 86_400_000;
    for (const x of [0, 0.5, 1]) {
      const p = planRenewal(0, life, () => x);
      assert.ok(p.dueAt >= life * (2 / 3 - 0.05) - 1 && p.dueAt <= life * (2 / 3 + 0.05) + 1, String(p.dueAt / life));
    }
    assert.equal(planRenewal(0, life, () => 0.5).dueAt, Math.round(life * 2 / 3));
  });
});
