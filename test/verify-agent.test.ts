/**
 * `chokepoint verify` against a good deployment and a deliberately weakened one: the checks
 * must pass on the first and fail, with evidence, on the second.
 */
import assert from 'node:assert/strict';
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
    // A port nothing listens on stands in for a target the host rules block.
    const closedPort = await new Promise<number>((r) => { const o = startEchoOrigin(); void o.then(async (x) => { const p = x.port; await x.close(); r(p); }); });
    const r = await cli(['verify', '--json', '--dir', dir, '--gateway', env.gatewayUrl, '--allowed', `echo.test:${env.echo.port}`, '--denied', `other.test:${env.echo.port}`,
      '--blocked', `127.0.0.1:${closedPort}`, '--revoked-dir', revokedDir]);
    const { checks } = JSON.parse(r.stdout) as { checks: Check[] };
    assert.equal(r.status, 0, r.stdout);
    for (const id of ['privilege.files', 'lifecycle.expiry', 'bypass.gateway_path', 'bypass.direct', 'drift.refused', 'lifecycle.revocation']) assert.equal(byId(checks, id).status, 'pass', JSON.stringify(byId(checks, id)));
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

  it('DNS tampering: a gateway with a certificate from another CA fails the gateway path check', async () => {
    const dir = env.agentDir();
    // The pinned CA is replaced by another one: the real gateway no longer verifies.
    writeFileSync(join(dir, 'ca.pem'), env.foreign.certPem, { mode: 0o600 });
    const checks = await runVerify({ dir, gateway: env.gatewayUrl, allowed: `echo.test:${env.echo.port}`, timeoutMs: 3000 });
    assert.equal(byId(checks, 'bypass.gateway_path').status, 'fail');
    assert.match(byId(checks, 'bypass.gateway_path').evidence, /SELF_SIGNED|UNABLE_TO_VERIFY|CERT/);
  });
});
