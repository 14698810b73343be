/**
 * `chokepoint agent forward`: the local forwarder against the real gateway mTLS listener.
 * Real clients (curl), real TLS with a CA made for this run, real loopback sockets.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { chmodSync, readFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { writeAtomic } from '../src/agent/files.js';
import { AGENT_ERROR_HEADER, Forwarder } from '../src/agent/forwarder.js';
import { isLoopbackAddress } from '../src/agent/loopback.js';
import { startAgentEnv, type AgentEnv } from './helpers/agent-env.js';
import { startGateway } from './helpers/gateway.js';

const run = promisify(execFile);

async function curl(args: string[]): Promise<{ status: number; headers: string; body: string }> {
  const { stdout } = await run('curl', ['-sS', '-i', '--max-time', '10', ...args], { encoding: 'utf8' }).catch((e: { stdout: string }) => ({ stdout: e.stdout ?? '' }));
  // With -x and CONNECT, curl prints the proxy's answer first; take the last head.
  const parts = stdout.split(/\r\n\r\n/);
  let i = 0;
  while (i < parts.length - 1 && /^HTTP\/[0-9.]+ (200 Connection established|100)/i.test(parts[i] ?? '')) i++;
  const headers = parts[i] ?? '';
  return { status: Number(/^HTTP\/[0-9.]+ ([0-9]{3})/.exec(headers)?.[1] ?? 0), headers, body: parts.slice(i + 1).join('\r\n\r\n') };
}

/** Opens a CONNECT tunnel through a plain proxy; resolves with the socket after 200. */
function tunnel(proxyPort: number, target: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect(proxyPort, '127.0.0.1', () => s.write(`CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n\r\n`));
    let buf = '';
    const onData = (c: Buffer): void => {
      buf += c.toString('latin1');
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      s.off('data', onData);
      if (/^HTTP\/1\.1 200/.test(buf)) resolve(s);
      else { s.destroy(); reject(new Error(buf.slice(0, end))); }
    };
    s.on('data', onData);
    s.on('error', reject);
  });
}

function echoOnce(s: Socket, text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let got = '';
    const on = (c: Buffer): void => { got += c.toString(); if (got.length >= text.length) { s.off('data', on); resolve(got); } };
    s.on('data', on);
    s.once('error', reject);
    s.write(text);
  });
}

const closed = (s: Socket): Promise<void> => new Promise((r) => { if (s.destroyed) r(); else s.once('close', () => r()); });

describe('agent forward', () => {
  let env: AgentEnv;
  let dir: string;
  let fwd: Forwarder;
  let proxy: string;
  let port: number;

  before(async () => {
    env = await startAgentEnv();
    dir = env.agentDir();
    fwd = new Forwarder({ listenHost: '127.0.0.1', listenPort: 0, gateway: env.gatewayUrl, dir });
    port = (await fwd.listen()).port;
    proxy = `http://127.0.0.1:${port}`;
  });
  after(async () => { await fwd.destroy(); await env.close(); });

  it('relays absolute-form HTTP and CONNECT with the device certificate (curl)', async () => {
    const r = await curl(['-x', proxy, `http://http.test:${env.http.port}/hello`]);
    assert.equal(r.status, 200, r.headers);
    const d = await env.tg.waitDecision((e) => e.host === 'http.test');
    assert.equal(d.verdict, 'allow');
    assert.equal(d.device_id, 'dev-1');
    assert.equal(d.serial, env.device.serial);
    const s = await tunnel(port, `echo.test:${env.echo.port}`);
    assert.equal(await echoOnce(s, 'ping through the gateway'), 'ping through the gateway');
    s.destroy();
  });

  it("passes the gateway's deny answer through unchanged (status, X-Chokepoint-Reason, body)", async () => {
    const r = await curl(['-x', proxy, `http://other.test:${env.http.port}/`]);
    assert.equal(r.status, 403);
    assert.match(r.headers, /^x-chokepoint-reason: no_rule_matched$/im);
    assert.match(r.headers, /^x-chokepoint-id: /im);
    assert.doesNotMatch(r.headers, new RegExp(AGENT_ERROR_HEADER, 'i'));
    const body = JSON.parse(r.body) as { reason?: string; code?: string };
    assert.equal(body.reason ?? body.code, 'no_rule_matched');
    const c = await curl(['-p', '-x', proxy, `http://other.test:${env.echo.port}/`]);
    assert.match(c.headers, /403/);
  });

  it('picks up a renewed certificate for new connections without dropping an open tunnel', async () => {
    const s = await tunnel(port, `echo.test:${env.echo.port}`);
    assert.equal(await echoOnce(s, 'before'), 'before');
    const renewed = await env.ca.issueDevice({ deviceId: 'dev-1' });
    env.directory.add(renewed.serial, 'dev-1');
    await writeAtomic(join(dir, 'key.pem'), renewed.keyPem);
    await writeAtomic(join(dir, 'cert.pem'), renewed.certPem);
    const r = await curl(['-x', proxy, `http://http.test:${env.http.port}/after-renewal`]);
    assert.equal(r.status, 200);
    const d = await env.tg.waitDecision((e) => e.host === 'http.test' && e.serial === renewed.serial);
    assert.equal(d.verdict, 'allow');
    assert.equal(await echoOnce(s, 'after'), 'after', 'the tunnel opened with the old certificate is still up');
    s.destroy();
    // Put the original pair back for the other tests.
    await writeAtomic(join(dir, 'key.pem'), env.device.keyPem);
    await writeAtomic(join(dir, 'cert.pem'), env.device.certPem);
  });

  it('refuses to lend the identity when the key file is readable by others (AGENT_DIR_INSECURE)', async () => {
    chmodSync(join(dir, 'key.pem'), 0o644);
    try {
      const r = await curl(['-x', proxy, `http://http.test:${env.http.port}/`]);
      assert.equal(r.status, 502);
      assert.match(r.headers, new RegExp(`^${AGENT_ERROR_HEADER}: AGENT_DIR_INSECURE$`, 'im'));
      assert.match(r.body, /key\.pem mode 0644 lets other users read it/);
    } finally {
      chmodSync(join(dir, 'key.pem'), 0o600);
    }
  });

  it('refuses a gateway whose certificate is not from the pinned CA (impostor / DNS tampering)', async () => {
    const impostor = await startGateway('version: 1\ngroups: []\n');
    const fake = await env.foreign.issueServer(['localhost', '127.0.0.1']);
    const a = await impostor.gw.listenMtls({ host: '127.0.0.1', port: 0, key: fake.keyPem, cert: fake.certPem, ca: [env.foreign.certPem], directory: env.directory });
    const f2 = new Forwarder({ listenHost: '127.0.0.1', listenPort: 0, gateway: `https://127.0.0.1:${a.port}`, dir });
    const p2 = (await f2.listen()).port;
    try {
      const r = await curl(['-x', `http://127.0.0.1:${p2}`, `http://http.test:${env.http.port}/`]);
      assert.equal(r.status, 502);
      assert.match(r.headers, new RegExp(`^${AGENT_ERROR_HEADER}: AGENT_TLS_FAILED$`, 'im'));
      assert.equal(impostor.decisions().length, 0, 'not a single request reached the impostor');
    } finally {
      await f2.destroy();
      await impostor.close();
    }
  });

  it('refuses to listen on a non-loopback address; loopback table', () => {
    for (const host of ['0.0.0.0', '::', '10.0.0.1', 'localhost', '::ffff:10.0.0.1']) {
      assert.throws(() => new Forwarder({ listenHost: host, listenPort: 0, gateway: env.gatewayUrl, dir }), (e: Error & { code?: string }) => e.code === 'AGENT_LISTEN_REFUSED');
    }
    assert.throws(() => new Forwarder({ listenHost: '127.0.0.1', listenPort: 0, gateway: 'http://127.0.0.1:1', dir }), /must be https/);
    const yes = ['127.0.0.1', '127.9.9.9', '::1', '0:0:0:0:0:0:0:1', '::ffff:127.0.0.1'];
    const no = ['128.0.0.1', '::2', '::', '1::1', '0.0.0.0', '::ffff:10.0.0.1', 'localhost', '', '127.0.0.1.evil'];
    for (const a of yes) assert.equal(isLoopbackAddress(a), true, a);
    for (const a of no) assert.equal(isLoopbackAddress(a), false, a);
  });

  it('revocation cuts the live tunnel and the next request carries the reason (device_revoked)', async () => {
    const victim = await env.ca.issueDevice({ deviceId: 'dev-rev' });
    env.directory.add(victim.serial, 'dev-rev');
    const vdir = env.agentDir(victim);
    const f3 = new Forwarder({ listenHost: '127.0.0.1', listenPort: 0, gateway: env.gatewayUrl, dir: vdir });
    const p3 = (await f3.listen()).port;
    try {
      const s = await tunnel(p3, `echo.test:${env.echo.port}`);
      assert.equal(await echoOnce(s, 'x'), 'x');
      env.directory.revoke('dev-rev');
      await closed(s);
      const r = await curl(['-x', `http://127.0.0.1:${p3}`, `http://http.test:${env.http.port}/`]);
      assert.equal(r.status, 403);
      assert.match(r.headers, /^x-chokepoint-reason: device_revoked$/im);
      assert.ok(readFileSync(join(vdir, 'cert.pem'), 'utf8').includes('BEGIN CERTIFICATE'));
    } finally {
      await f3.destroy();
    }
  });
});
