/**
 * `chokepoint agent exec`: a client that ignores proxy variables, run in the network namespace
 * the command creates, cannot reach a loopback origin outside it directly, while the proxied
 * path (forwarder → gateway mTLS listener → origin) works. Without a namespace, the command
 * says plainly that only the environment is set.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { fenceAvailable } from '../src/agent/exec.js';
import { Forwarder } from '../src/agent/forwarder.js';
import { proxyEnv } from '../src/agent/proxy-env.js';
import { startAgentEnv, type AgentEnv } from './helpers/agent-env.js';
import { cli } from './helpers/cli.js';



/**
 * The probe: a direct TCP connection that ignores every proxy variable, then the same
 * destination through HTTPS_PROXY by hand (CONNECT), then the environment it saw.
 */
const PROBE = `
const net = require('node:net');
const out = {};
const direct = () => new Promise((r) => {
  const s = net.connect(Number(process.argv[1]), '127.0.0.1');
  s.setTimeout(3000, () => { s.destroy(); r('timeout'); });
  s.on('connect', () => { s.destroy(); r('connected'); });
  s.on('error', (e) => r(e.code));
});
const proxied = () => new Promise((r) => {
  const u = new URL(process.env.HTTPS_PROXY);
  const s = net.connect(Number(u.port), u.hostname, () => s.write('CONNECT ' + process.argv[2] + ' HTTP/1.1\\r\\nHost: ' + process.argv[2] + '\\r\\n\\r\\n'));
  let buf = '';
  s.on('data', (c) => {
    buf += c;
    if (buf.startsWith('HTTP/1.1 200') && buf.includes('\\r\\n\\r\\n') && !s.sent) { s.sent = true; buf = ''; s.write('echo-through-gateway'); return; }
    if (s.sent && buf === 'echo-through-gateway') { s.destroy(); r(buf); }
    if (!buf.startsWith('HTTP/1.1 200') && buf.includes('\\r\\n\\r\\n') && !s.sent) { s.destroy(); r(buf.split('\\r\\n')[0]); }
  });
  s.on('error', (e) => r(e.code));
});
(async () => {
  out.direct = await direct();
  out.proxied = await proxied();
  out.env = { HTTPS_PROXY: process.env.HTTPS_PROXY, http_proxy: process.env.http_proxy, NO_PROXY: process.env.NO_PROXY, NODE_USE_ENV_PROXY: process.env.NODE_USE_ENV_PROXY };
  console.log(JSON.stringify(out));
})();
`;

describe('agent exec', () => {
  let env: AgentEnv;
  let fwd: Forwarder;
  let proxy: string;

  before(async () => {
    env = await startAgentEnv();
    fwd = new Forwarder({ listenHost: '127.0.0.1', listenPort: 0, gateway: env.gatewayUrl, dir: env.agentDir() });
    proxy = `http://127.0.0.1:${(await fwd.listen()).port}`;
  });
  after(async () => { await fwd.destroy(); await env.close(); });

  it('in a namespace: a direct connection fails closed, the proxied path reaches the origin', async (t) => {
    const f = fenceAvailable();
    if (!f.available) return t.skip(`no network namespace here: ${f.why}`);
    const r = await cli(['agent', 'exec', '--proxy', proxy, '--require-namespace', '--', process.execPath, '-e', PROBE, String(env.echo.port), `echo.test:${env.echo.port}`]);
    assert.equal(r.status, 0, r.stderr);
    const out = JSON.parse(r.stdout) as { direct: string; proxied: string; env: Record<string, string> };
    assert.equal(out.direct, 'ECONNREFUSED', 'nothing outside the namespace is reachable directly');
    assert.equal(out.proxied, 'echo-through-gateway');
    assert.match(out.env.HTTPS_PROXY ?? '', /^http:\/\/127\.0\.0\.1:\d+$/);
    assert.equal(out.env.http_proxy, out.env.HTTPS_PROXY);
    assert.equal(out.env.NO_PROXY, '');
    assert.equal(out.env.NODE_USE_ENV_PROXY, '1');
    const d = await env.tg.waitDecision((e) => e.host === 'echo.test' && e.verdict === 'allow');
    assert.equal(d.device_id, 'dev-1', 'the proxied path carried the device identity');
    assert.doesNotMatch(r.stderr, /only the proxy environment/);
  });

  it('in a namespace: curl with --noproxy cannot go around; curl through the proxy gets the gateway answer', async (t) => {
    if (!fenceAvailable().available) return t.skip('no network namespace here');
    const script = `curl -sS --max-time 5 --noproxy '*' -o /dev/null http://127.0.0.1:${env.http.port}/ 2>/dev/null; echo "direct=$?"; `
      + `curl -sS --max-time 5 -o /dev/null -w 'proxied=%{http_code}\\n' http://http.test:${env.http.port}/; `
      + `curl -sS --max-time 5 -o /dev/null -w 'denied=%{http_code}\\n' http://other.test:${env.http.port}/`;
    const r = await cli(['agent', 'exec', '--proxy', proxy, '--', 'sh', '-c', script]);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /^direct=7$/m, 'curl exit 7: could not connect');
    assert.match(r.stdout, /^proxied=200$/m);
    assert.match(r.stdout, /^denied=403$/m);
  });

  it('in a namespace: the command cannot enter the host network namespace, even when run by root', async (t) => {
    if (!fenceAvailable().available) return t.skip('no network namespace here');
    // The relay is the command's parent; its parent (unshare's exec, then agent exec) is in the
    // host namespace. With root's capabilities there, nsenter into it went around the gateway.
    const script = `OUTER=$(awk '/^PPid/{print $2}' /proc/$PPID/status); `
      + `if nsenter -t "$OUTER" -n true 2>/dev/null; then echo escaped; else echo refused; fi; `
      + `if nsenter -t 1 -n true 2>/dev/null; then echo escaped-init; else echo refused-init; fi`;
    const r = await cli(['agent', 'exec', '--proxy', proxy, '--require-namespace', '--', 'sh', '-c', script]);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /^refused$/m);
    assert.match(r.stdout, /^refused-init$/m);
  });

  it('root without user namespaces: the command runs with no capabilities and cannot enter the host network', (t) => {
    // The fallback fenceAvailable() takes when user namespaces are forbidden: a network
    // namespace only, and the relay runs the command through setpriv with every capability dropped.
    if (process.getuid?.() !== 0) return t.skip('needs root');
    if (spawnSync('setpriv', ['--version']).status !== 0) return t.skip('needs setpriv (util-linux)');
    const relay = fileURLToPath(new URL('../src/agent/ns-relay.js', import.meta.url));
    // The relay's parent (this test process) is in the host's network namespace.
    const script = `grep CapEff /proc/self/status; OUTER=$(awk '/^PPid/{print $2}' /proc/$PPID/status); `
      + `if nsenter -t "$OUTER" -n true 2>/dev/null; then echo escaped; else echo refused; fi`;
    const run = (drop: boolean) => spawnSync('unshare', ['--net', process.execPath, relay, '/nonexistent.sock', '18089', ...(drop ? ['--drop-caps'] : []), '--', 'sh', '-c', script], { encoding: 'utf8', timeout: 30_000 });
    const r = run(true);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /^CapEff:\s+0+$/m);
    assert.match(r.stdout, /^refused$/m);
    assert.match(run(false).stdout, /^escaped$/m, 'without dropping capabilities root gets out: the check above is real');
  });

  it('without a namespace: says plainly that only the environment is set (and then the bypass works)', async () => {
    const r = await cli(['agent', 'exec', '--proxy', proxy, '--no-namespace', '--', process.execPath, '-e', PROBE, String(env.echo.port), `echo.test:${env.echo.port}`]);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stderr, /WARNING: only the proxy environment is set/);
    const out = JSON.parse(r.stdout) as { direct: string; proxied: string };
    assert.equal(out.direct, 'connected', 'this is exactly the bypass the namespace prevents');
    assert.equal(out.proxied, 'echo-through-gateway');
  });

  it("propagates the command's exit status; refuses bad input with a code", async () => {
    assert.equal((await cli(['agent', 'exec', '--proxy', proxy, '--', 'sh', '-c', 'exit 7'])).status, 7);
    const bad = await cli(['agent', 'exec', '--proxy', 'socks5://127.0.0.1:1', '--', 'true']);
    assert.equal(bad.status, 2);
    assert.match(bad.stderr, /USAGE: --proxy "socks5:\/\/127\.0\.0\.1:1" is not an http:\/\/HOST:PORT URL/);
    const missing = await cli(['agent', 'exec', '--proxy', proxy, '--no-namespace', '--', '/nonexistent/cmd']);
    assert.notEqual(missing.status, 0);
    assert.match(missing.stderr, /AGENT_EXEC_FAILED: cannot run \/nonexistent\/cmd/);
  });

  it('proxy environment: both cases, empty NO_PROXY overriding an inherited *, git config appended', () => {
    const e = proxyEnv('http://127.0.0.1:3128', { NO_PROXY: '*', no_proxy: 'localhost', GIT_CONFIG_COUNT: '1', GIT_CONFIG_KEY_0: 'user.name', GIT_CONFIG_VALUE_0: 'x' });
    for (const k of ['HTTP_PROXY', 'HTTPS_PROXY', 'ALL_PROXY', 'http_proxy', 'https_proxy', 'all_proxy', 'npm_config_proxy', 'npm_config_https_proxy', 'PIP_PROXY']) assert.equal(e[k], 'http://127.0.0.1:3128', k);
    assert.equal(e.NO_PROXY, '');
    assert.equal(e.no_proxy, '');
    assert.equal(e.GIT_CONFIG_COUNT, '2');
    assert.equal(e.GIT_CONFIG_KEY_0, 'user.name');
    assert.equal(e.GIT_CONFIG_KEY_1, 'http.proxy');
    assert.equal(e.GIT_CONFIG_VALUE_1, 'http://127.0.0.1:3128');
    assert.match(e.JAVA_TOOL_OPTIONS ?? '', /-Dhttps\.proxyHost=127\.0\.0\.1 -Dhttps\.proxyPort=3128/);
  });
});
