/**
 * Real clients through the gateway, the way users run them: curl -x (absolute-form and
 * CONNECT with TLS end to end), and undici's ProxyAgent.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { fetch, ProxyAgent } from 'undici';
import type { DnsServer } from './helpers/dns-server.js';
import { basePolicy, testDns } from './helpers/fixtures.js';
import { startGateway, type TestGateway } from './helpers/gateway.js';
import { makePki, startHttpOrigin, startTlsOrigin, type Origin, type TestPki } from './helpers/origins.js';

const run = promisify(execFile);

let dns: DnsServer;
let pki: TestPki;
let tlsOrigin: Origin<import('node:tls').Server>;
let http: Awaited<ReturnType<typeof startHttpOrigin>>;
let g: TestGateway;
let P: { echo: number; tls: number; http: number };

before(async () => {
  dns = await testDns();
  pki = makePki(['tls.test']);
  tlsOrigin = await startTlsOrigin(pki);
  http = await startHttpOrigin();
  P = { echo: 1, tls: tlsOrigin.port, http: http.port };
  g = await startGateway(basePolicy(P), { dns: { resolvers: [dns.address] } });
});
after(async () => {
  await g.close();
  await tlsOrigin.close();
  await http.close();
  await dns.close();
  pki.cleanup();
});

async function curl(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await run('curl', ['-sS', '--max-time', '10', '--noproxy', '', ...args], { env: { ...process.env, http_proxy: '', https_proxy: '', HTTPS_PROXY: '', HTTP_PROXY: '', ALL_PROXY: '' } });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (e) {
    const err = e as { code: number; stdout: string; stderr: string };
    return { code: err.code, stdout: err.stdout, stderr: err.stderr };
  }
}

describe('curl', () => {
  it('fetches http:// through the proxy in absolute form', async () => {
    const r = await curl(['-x', g.proxy, `http://http.test:${P.http}/hello`]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /"url":"\/hello"/);
    assert.match(r.stdout, /"via":"1.1 chokepoint"/);
  });

  it('fetches https:// through a CONNECT tunnel with TLS end to end', async () => {
    const r = await curl(['-x', g.proxy, '--cacert', pki.caPath, `https://tls.test:${P.tls}/`]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /"sni":"tls.test"/);
  });

  it('shows the deny reason header to the user', async () => {
    const r = await curl(['-x', g.proxy, '-i', `http://nothing.test:${P.http}/`]);
    assert.match(r.stdout, /403 Forbidden/);
    assert.match(r.stdout, /x-chokepoint-reason: no_rule_matched/i);
  });

  it('fails a CONNECT to a denied host with the proxy status', async () => {
    const r = await curl(['-x', g.proxy, '-v', '--cacert', pki.caPath, `https://nothing.test:${P.tls}/`]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /403/);
  });
});

describe('undici ProxyAgent', () => {
  it('fetches https:// and http:// through the gateway', async () => {
    const agent = new ProxyAgent({ uri: g.proxy, requestTls: { ca: pki.caCert } });
    try {
      const res = await fetch(`https://tls.test:${P.tls}/`, { dispatcher: agent });
      assert.equal(res.status, 200);
      assert.deepEqual(await res.json(), { sni: 'tls.test', tls: 'TLSv1.3' });
      const res2 = await fetch(`http://http.test:${P.http}/u`, { dispatcher: agent });
      assert.equal(res2.status, 200);
      assert.equal(((await res2.json()) as { url: string }).url, '/u');
    } finally {
      await agent.close();
    }
  });

  it('surfaces a denied CONNECT as an error', async () => {
    const agent = new ProxyAgent({ uri: g.proxy });
    try {
      await assert.rejects(fetch(`https://nothing.test:${P.tls}/`, { dispatcher: agent }));
    } finally {
      await agent.close();
    }
  });
});
