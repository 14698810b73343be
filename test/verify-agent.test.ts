/**
 * `chokepoint verify` against a good deployment and a deliberately weakened one: the checks
 * must pass on the first and fail, with evidence, on the second.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { runVerify, type Check } from '../src/agent/verify.js';
import { startAgentEnv, type AgentEnv } from './helpers/agent-env.js';
import { startEchoOrigin, type Origin } from './helpers/origins.js';
import { cli, CLI } from './helpers/cli.js';

const byId = (cs: Check[], id: string): Check => { const c = cs.find((x) => x.id === id); assert.ok(c, id); return c; };


describe('chokepoint verify', () => {
  let env: AgentEnv;
  let listening: Origin;
  before(async () => { env = await startAgentEnv(); listening = await startEchoOrigin(); });
  after(async () => { await listening.close(); await env.close(); });

  it('a good deployment: every check it can run passes (CLI --json)', async () => {
    const dir = env.agentDir();
    const revoked = await env.ca.issueDevice({ deviceId: 'dev-gone' });
    env.directory.add(revoked.serial, 'dev-gone');
    env.directory.revoke('dev-gone');
    const revokedDir = env.agentDir(revoked);
    // No host rules here, so no --blocked (see the namespace test below for that check).
    const r = await cli(['verify', '--json', '--dir', dir, '--gateway', env.gatewayUrl, '--allowed', `echo.test:${env.echo.port}`, '--denied', `other.test:${env.echo.port}`,
      '--revoked-dir', revokedDir]);
    const { checks } = JSON.parse(r.stdout) as { checks: Check[] };
    assert.equal(r.status, 0, r.stdout);
    for (const id of ['privilege.files', 'lifecycle.expiry', 'bypass.gateway_path', 'drift.refused', 'lifecycle.revocation']) assert.equal(byId(checks, id).status, 'pass', JSON.stringify(byId(checks, id)));
    assert.match(byId(checks, 'drift.refused').evidence, /HTTP 403, X-Chokepoint-Reason: no_rule_matched/);
    assert.match(byId(checks, 'lifecycle.revocation').evidence, /X-Chokepoint-Reason: device_revoked/);
    assert.equal(byId(checks, 'lifecycle.renewal').status, 'skipped');
    const human = await cli(['verify', '--dir', dir, '--gateway', env.gatewayUrl, '--allowed', `echo.test:${env.echo.port}`]);
    assert.match(human.stdout, /^PASS +privilege\.files/m);
    assert.match(human.stdout, /^SKIPPED +bypass\.direct/m);
  });

  it('a weakened deployment: loose key permissions, a reachable direct target, an allowed "denied" destination, an unrevoked cert, an accepted impostor', async () => {
    const dir = env.agentDir();
    chmodSync(join(dir, 'key.pem'), 0o644);
    chmodSync(dir, 0o755);
    const notRevoked = env.agentDir();
    const checks = await runVerify({
      dir, gateway: env.gatewayUrl, allowed: `echo.test:${env.echo.port}`, denied: `http.test:${env.http.port}`,
      blocked: `127.0.0.1:${listening.port}`, revokedDir: notRevoked, timeoutMs: 3000,
    });
    assert.equal(byId(checks, 'privilege.files').status, 'fail');
    assert.match(byId(checks, 'privilege.files').evidence, /mode 0755 lets other users read it.*key\.pem mode 0644 lets other users read it/);
    assert.equal(byId(checks, 'bypass.direct').status, 'fail');
    assert.match(byId(checks, 'bypass.direct').evidence, /connected/);
    assert.equal(byId(checks, 'drift.refused').status, 'fail');
    assert.equal(byId(checks, 'lifecycle.revocation').status, 'fail');
    assert.equal(byId(checks, 'bypass.gateway_path').status, 'pass', 'the identity itself still works');
  });

  it('no check passes without testing what it names: a closed port, a bad target, a down destination, an unreachable impostor, a policy refusal for the revoked sample', async () => {
    const dir = env.agentDir();
    const closed = await new Promise<number>((r) => { void startEchoOrigin().then(async (x) => { const p = x.port; await x.close(); r(p); }); });
    // denied: allowed by the policy but nothing listens there (502 connect_failed, not a refusal);
    // revoked sample: a live certificate, asked for a destination the policy refuses (403 no_rule_matched).
    const live = env.agentDir();
    env.tg.setPolicy(`version: 1
address_exceptions: [127.0.0.1/32]
groups:
  - name: laptops
    allow:
      - host: echo.test
        ports: [${env.echo.port}, ${closed}]
        tls: none
`);
    let checks: Check[];
    try {
      checks = await runVerify({
        dir, gateway: env.gatewayUrl, allowed: `other.test:${env.echo.port}`, denied: `echo.test:${closed}`,
        blocked: `127.0.0.1:${closed}`, revokedDir: live, impostor: `https://127.0.0.1:${closed}`, timeoutMs: 3000,
      });
    } finally {
      env.tg.setPolicy(env.policy);
    }
    assert.match(byId(checks, 'drift.refused').evidence, /HTTP 502, X-Chokepoint-Reason: connect_failed/);
    for (const id of ['bypass.direct', 'drift.refused', 'lifecycle.revocation', 'tampering.impostor']) assert.equal(byId(checks, id).status, 'fail', JSON.stringify(byId(checks, id)));
    assert.match(byId(checks, 'bypass.direct').evidence, /ECONNREFUSED.*a RST came back/);
    assert.match(byId(checks, 'tampering.impostor').evidence, /nothing was tested/);
    const bad = await runVerify({ dir, blocked: 'not-a-target', timeoutMs: 1000 });
    assert.equal(byId(bad, 'bypass.direct').status, 'fail');
  });

  it('bypass.direct fails, untried, for a target that never answers whatever the rules (no false pass)', async () => {
    const dir = env.agentDir();
    // Each of these would time out or be refused by the kernel itself on a host with no egress
    // rules at all, which the check used to count as "blocked".
    const never: Record<string, RegExp> = {
      '192.0.2.10:443': /documentation address/,
      '[2001:db8::1]:443': /documentation address/,
      '240.0.0.1:443': /reserved address/,
      '255.255.255.255:80': /broadcast address/,
      '224.0.0.1:80': /multicast address/,
      '0.0.0.0:9': /unspecified address/,
      'gateway.example.test:443': /give an IP literal/,
    };
    for (const [blocked, why] of Object.entries(never)) {
      const c = byId(await runVerify({ dir, blocked, timeoutMs: 1000 }), 'bypass.direct');
      assert.equal(c.status, 'fail', blocked);
      assert.match(c.evidence, /not tried \(nothing was tested/, blocked);
      assert.match(c.evidence, why, blocked);
    }
  });

  it('bypass.direct passes when host rules drop the packet (a namespace with an nft drop rule)', async (t) => {
    const nft = spawnSync('sh', ['-c', 'command -v nft && unshare --net --map-root-user true'], { encoding: 'utf8' });
    if (nft.status !== 0) return t.skip('needs nft (Debian nftables) and a network namespace');
    const dir = env.agentDir();
    const script = 'ip link set lo up && nft add table inet cpv && nft "add chain inet cpv out { type filter hook output priority 0; }" '
      + `&& nft add rule inet cpv out ip daddr 127.0.0.2 drop && "${process.execPath}" "${CLI}" verify --json --timeout 1s --dir "${dir}" --blocked 127.0.0.2:9`;
    const r = spawnSync('unshare', ['--net', '--map-root-user', 'sh', '-c', script], { encoding: 'utf8', timeout: 60_000 });
    const checks = (JSON.parse(r.stdout) as { checks: Check[] }).checks;
    assert.equal(byId(checks, 'bypass.direct').status, 'pass', JSON.stringify(byId(checks, 'bypass.direct')));
    assert.match(byId(checks, 'bypass.direct').evidence, /EPERM|timed out/);
  });

  it('DNS tampering: a gateway with a certificate from another CA fails the gateway path check', async () => {
    const dir = env.agentDir();
    // The pinned CA is replaced by another one: the real gateway no longer verifies.
    writeFileSync(join(dir, 'ca.pem'), env.foreign.certPem, { mode: 0o600 });
    const checks = await runVerify({ dir, gateway: env.gatewayUrl, allowed: `echo.test:${env.echo.port}`, timeoutMs: 3000 });
    assert.equal(byId(checks, 'bypass.gateway_path').status, 'fail');
    assert.match(byId(checks, 'bypass.gateway_path').evidence, /SELF_SIGNED|UNABLE_TO_VERIFY|CERT/);
  });
});
