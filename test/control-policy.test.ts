/**
 * Policy change control through the API on SQLite and PostgreSQL: propose (invalid → every
 * problem with its path), diff with replay of real recent destinations, two-person rule,
 * concurrent applies (exactly one wins), pilot and promote, rollback, and the audit chain.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import type { DecisionEvent } from '../src/events/catalogue.js';
import { parseAuthority } from '../src/core/destination.js';
import { verifyChain, listAudit } from '../src/store/index.js';
import { loadPolicy } from '../src/policy/index.js';
import { insertDecisions } from '../src/store/recent.js';
import { OFFTHREAD_MIN_BYTES } from '../src/policy/index.js';
import { policyText, startControl, type TestControl } from './helpers/control.js';
import { BACKENDS } from './helpers/store.js';

function decision(host: string, port: number, group: string, client: string): DecisionEvent {
  return {
    v: 1, type: 'gateway.decision', time: new Date().toISOString(), id: randomUUID(), listener: 'proxy', client_ip: client, client_port: 5000,
    group, method: 'CONNECT', host, port, address: null, verdict: 'deny', reason: 'no_rule_matched', rule: null, mode: 'enforce',
    sni: null, tls_version: null, address_class: null, detail: null, status: 403,
    device_id: null, asset_id: null, serial: null,
  } as DecisionEvent;
}

const dest = (s: string) => { const d = parseAuthority(s); if (!d.ok) throw new Error(s); return d.dest; };

for (const make of BACKENDS) {
  const backend = make();
  describe(`policy change control on ${backend.name}`, () => {
    let c: TestControl;
    before(async () => { c = await startControl(backend); });
    after(async () => { await c.close(); await backend.cleanup(); });

    it('an invalid proposal is refused with 422 and every problem with its path', async () => {
      const r = await c.call('POST', '/api/v1/policy/versions', { body: { text: 'version: 1\ngroups:\n  - name: a\n    bogus: 1\n    allow:\n      - host: "*.com"\n', reason: 'test' } });
      assert.equal(r.status, 422);
      assert.equal(r.body.code, 'POLICY_INVALID');
      const paths = r.body.problems.map((p: { path: string }) => p.path);
      assert.ok(paths.includes('groups[0]') || paths.some((p: string) => p.startsWith('groups[0]')), JSON.stringify(paths));
      assert.ok(r.body.problems.some((p: { message: string }) => /bogus/.test(p.message)));
      assert.ok(r.body.problems.some((p: { path: string }) => p.path === 'groups[0].allow[0].host'));
      assert.equal((await c.call('POST', '/api/v1/policy/versions', { body: { text: policyText(), reason: '   ' } })).status, 400, 'a reason is required');
      assert.equal((await c.call('POST', '/api/v1/policy/versions', { token: c.tokens.operator, body: { text: policyText(), reason: 'x' } })).status, 403);
    });

    it('propose, apply, diff with replayed destinations, history', async () => {
      const v1 = await c.call('POST', '/api/v1/policy/versions', { body: { text: policyText(), reason: 'first' } });
      assert.equal(v1.status, 201);
      const a1 = await c.call('POST', '/api/v1/policy/apply', { body: { version: v1.body.version } });
      assert.equal(a1.status, 200, JSON.stringify(a1.body));
      assert.equal(c.applied.at(-1)?.meta.version, v1.body.version);
      assert.equal(c.applied.at(-1)?.compiled.decide({ group: { name: 'servers', mode: 'enforce' }, dest: dest('api.example.com:443'), protocol: 'connect' }).verdict, 'allow');

      await insertDecisions(c.store.db, c.store.dialect, [decision('new.example.com', 443, 'servers', '127.0.0.5'), decision('api.example.com', 443, 'servers', '127.0.0.5'), decision('other.example.net', 443, 'servers', '127.0.0.5')]);
      const v2 = await c.call('POST', '/api/v1/policy/versions', { body: { text: policyText(['new.example.com']).replace('      - host: api.example.com\n', ''), reason: 'swap' } });
      const d = await c.call('GET', `/api/v1/policy/diff?to=${v2.body.version}`);
      assert.equal(d.status, 200);
      assert.equal(d.body.from, v1.body.version);
      const servers = d.body.groups.find((g: { group: string }) => g.group === 'servers');
      assert.deepEqual(servers.added, ['allow {host:"new.example.com"}']);
      assert.deepEqual(servers.removed, ['allow {host:"api.example.com"}']);
      const changed = Object.fromEntries(d.body.destinations.map((x: { host: string; to: { verdict: string } }) => [x.host, x.to.verdict]));
      assert.deepEqual(changed, { 'new.example.com': 'allow', 'api.example.com': 'deny' }, 'unchanged destinations are not listed');
      // Another group's traffic is not replayed for an admin scoped to servers.
      await insertDecisions(c.store.db, c.store.dialect, [decision('api.example.com', 443, 'laptops', '10.0.0.5')]);
      const all = await c.call('GET', `/api/v1/policy/diff?to=${v2.body.version}`);
      const scoped = await c.call('GET', `/api/v1/policy/diff?to=${v2.body.version}`, { token: c.tokens['operator-scoped'] });
      assert.equal(scoped.status, 200);
      assert.equal(scoped.body.replayed, all.body.replayed - 1);
      assert.ok(scoped.body.destinations.every((x: { group: string }) => x.group === 'servers'));

      const rb = await c.call('POST', '/api/v1/policy/apply', { body: { version: v1.body.version, reason: 'INCIDENT-42 re-apply' } });
      assert.equal(rb.status, 200, JSON.stringify(rb.body));
      const log = (await c.call('GET', '/api/v1/audit?limit=5000')).body.items as { action: string; detail: string | null }[];
      assert.ok(log.some((e) => e.action === 'policy.apply' && e.detail === 'INCIDENT-42 re-apply'), 'the reason is in the audit log');
      const hist = await c.call('GET', '/api/v1/policy/versions?limit=1');
      assert.equal(hist.body.items.length, 1);
      assert.equal(hist.body.items[0].version, v2.body.version);
      assert.equal(hist.body.next, v2.body.version);
      const older = await c.call('GET', `/api/v1/policy/versions?limit=10&before=${hist.body.next}`);
      assert.equal(older.body.items[0].version, v1.body.version);
      const one = await c.call('GET', `/api/v1/policy/versions/${v1.body.version}`);
      assert.equal(one.body.text, policyText());
      assert.equal(one.body.author, 'admin');
      assert.equal(one.body.reason, 'first');
    });

    it('concurrent applies: exactly one wins, the others get POLICY_CONFLICT', async () => {
      const versions: number[] = [];
      for (let i = 0; i < 6; i++) versions.push((await c.call('POST', '/api/v1/policy/versions', { body: { text: policyText([`h${i}.example.com`]), reason: `race ${i}` } })).body.version);
      const s = await c.call('GET', '/api/v1/policy/state');
      const results = await Promise.all(versions.map((v) => c.call('POST', '/api/v1/policy/apply', { body: { version: v, expected_generation: s.body.generation } })));
      const won = results.filter((r) => r.status === 200);
      assert.equal(won.length, 1, JSON.stringify(results.map((r) => r.body)));
      assert.ok(results.filter((r) => r.status === 409).every((r) => r.body.code === 'POLICY_CONFLICT'));
      const after = await c.call('GET', '/api/v1/policy/state');
      assert.equal(after.body.generation, s.body.generation + 1);
      assert.equal(after.body.applied_version, won[0]!.body.applied_version);
      assert.equal(c.applied.at(-1)?.meta.version, won[0]!.body.applied_version, 'the gateway got the winner');
    });

    it('pilot a version on one group, then promote; rollback to an earlier applied version', async () => {
      const base = (await c.call('GET', '/api/v1/policy/state')).body.applied_version as number;
      const p = await c.call('POST', '/api/v1/policy/versions', { body: { text: policyText([], ['pilot.example.com']), reason: 'pilot' } });
      const pilot = await c.call('POST', '/api/v1/policy/apply', { body: { version: p.body.version, pilot_group: 'laptops' } });
      assert.equal(pilot.status, 200, JSON.stringify(pilot.body));
      assert.equal(pilot.body.applied_version, base);
      assert.equal(pilot.body.pilot_group, 'laptops');
      const eff = c.applied.at(-1)!;
      const laptops = { name: 'laptops', mode: 'enforce' as const };
      assert.equal(eff.compiled.decide({ group: laptops, dest: dest('pilot.example.com:443'), protocol: 'connect' }).verdict, 'allow', 'the pilot group uses the new version');
      assert.equal(eff.compiled.decide({ group: laptops, dest: dest('laptop.example.com:443'), protocol: 'connect' }).verdict, 'deny');
      const servers = { name: 'servers', mode: 'enforce' as const };
      const baseText = (await c.call('GET', `/api/v1/policy/versions/${base}`)).body.text as string;
      const baseCompiled = loadPolicy(baseText);
      assert.ok(baseCompiled.ok);
      for (let i = 0; i < 6; i++) {
        const input = { group: servers, dest: dest(`h${i}.example.com:443`), protocol: 'connect' as const };
        assert.equal(eff.compiled.decide(input).verdict, baseCompiled.policy.decide(input).verdict, 'other groups keep the applied version');
      }
      assert.match(eff.meta.source, /pilot/);

      const badPilot = await c.call('POST', '/api/v1/policy/apply', { body: { version: p.body.version, pilot_group: 'nosuch' } });
      assert.equal(badPilot.status, 422);

      const promoted = await c.call('POST', '/api/v1/policy/promote', { body: {} });
      assert.equal(promoted.status, 200);
      assert.equal(promoted.body.applied_version, p.body.version);
      assert.equal(promoted.body.pilot_version, null);
      assert.equal((await c.call('POST', '/api/v1/policy/promote', { body: {} })).body.code, 'CONFLICT');

      const never = await c.call('POST', '/api/v1/policy/versions', { body: { text: policyText(['never.example.com']), reason: 'never applied' } });
      const rbNever = await c.call('POST', '/api/v1/policy/rollback', { body: { version: never.body.version } });
      assert.equal(rbNever.status, 409);
      assert.equal(rbNever.body.code, 'POLICY_ROLLBACK_TARGET');
      const rb = await c.call('POST', '/api/v1/policy/rollback', { body: { version: 1 } });
      assert.equal(rb.status, 200);
      assert.equal(rb.body.applied_version, 1);
      assert.equal(c.applied.at(-1)?.meta.version, 1);
    });

    it('every change is in the audit chain, published as audit.entry, and the chain verifies', async () => {
      const rows = await listAudit(c.store.db, { limit: 10_000 });
      const actions = rows.map((r) => r.action);
      for (const a of ['policy.propose', 'policy.apply', 'policy.apply_pilot', 'policy.promote', 'policy.rollback', 'admin.create']) assert.ok(actions.includes(a), a);
      const conflict = rows.find((r) => r.action === 'policy.apply' && r.result === 'denied');
      assert.equal(conflict?.detail, 'POLICY_CONFLICT', 'refusals are audited');
      assert.equal(verifyChain(rows).ok, true);
      const published = c.events.filter((e) => e.type === 'audit.entry');
      assert.ok(published.length >= rows.length - 1 - 1, 'each committed entry is published (bootstrap is not)');
      const api = await c.call('GET', '/api/v1/audit?limit=5000');
      assert.equal(verifyChain(api.body.items).ok, true);
      const apply = rows.find((r) => r.action === 'policy.apply' && r.result === 'ok')!;
      assert.equal(apply.actor, 'admin');
      assert.equal(apply.role, 'security-admin');
      assert.ok(apply.source_ip);
      assert.ok(apply.before && apply.after);
    });

    it('a policy past the off-thread size is proposed, diffed and applied the same way (parsed on a worker)', async () => {
      const hosts = Array.from({ length: 3000 }, (_, i) => `h${i}.bulk.example.com`);
      const text = policyText(hosts);
      assert.ok(text.length > OFFTHREAD_MIN_BYTES, `${text.length} bytes`);
      const v = await c.call('POST', '/api/v1/policy/versions', { body: { text, reason: 'bulk' } });
      assert.equal(v.status, 201, JSON.stringify(v.body));
      const d = await c.call('GET', `/api/v1/policy/diff?to=${v.body.version}`);
      assert.equal(d.status, 200);
      const a = await c.call('POST', '/api/v1/policy/apply', { body: { version: v.body.version } });
      assert.equal(a.status, 200, JSON.stringify(a.body));
      const applied = c.applied.at(-1);
      assert.equal(applied?.meta.version, v.body.version);
      assert.equal(applied?.compiled.decide({ group: { name: 'servers', mode: 'enforce' }, dest: dest('h2999.bulk.example.com:443'), protocol: 'connect' }).verdict, 'allow');
      // Problems found on the worker come back with their paths, like any other.
      const bad = await c.call('POST', '/api/v1/policy/versions', { body: { text: `${text}      - host: "*.com"\n`, reason: 'bad bulk' } });
      assert.equal(bad.status, 422);
      const lines = text.split('\n').length;
      assert.deepEqual(bad.body.problems.map((p: { path: string; line: number }) => [p.path, p.line]), [['groups[1].allow[1].host', lines]]);
      assert.match(bad.body.problems[0].message, /public suffix/);
    });
  });

  describe(`two-person rule on ${backend.name}`, () => {
    const b2 = make();
    let c: TestControl;
    before(async () => { c = await startControl(b2, { twoPerson: true }); });
    after(async () => { await c.close(); await b2.cleanup(); });

    it('a version needs a different security-admin to approve it before apply', async () => {
      // security-admin-2 was created by the bootstrap admin ("security-admin" here), which did
      // not create itself: it may approve security-admin-2's versions.
      const sa2 = c.tokens['security-admin-2'];
      const v = await c.call('POST', '/api/v1/policy/versions', { token: sa2, body: { text: policyText(), reason: 'needs approval' } });
      const early = await c.call('POST', '/api/v1/policy/apply', { body: { version: v.body.version } });
      assert.equal(early.status, 409);
      assert.equal(early.body.code, 'POLICY_APPROVAL_REQUIRED');
      const self = await c.call('POST', `/api/v1/policy/versions/${v.body.version}/approve`, { token: sa2 });
      assert.equal(self.status, 403);
      assert.equal(self.body.code, 'POLICY_SELF_APPROVAL');
      assert.equal((await c.call('POST', `/api/v1/policy/versions/${v.body.version}/approve`, { token: c.tokens.operator })).status, 403);
      const ok = await c.call('POST', `/api/v1/policy/versions/${v.body.version}/approve`);
      assert.equal(ok.status, 200);
      assert.deepEqual(ok.body.approvals, ['admin']);
      const applied = await c.call('POST', '/api/v1/policy/apply', { body: { version: v.body.version } });
      assert.equal(applied.status, 200);
      assert.equal((await c.call('GET', '/api/v1/policy/state')).body.two_person, true);
    });

    it('one person cannot be two: no approval by an admin the author created or that was created after the proposal, no tokens for another security-admin', async () => {
      const sa2 = c.tokens['security-admin-2'];
      // The bootstrap admin created security-admin-2 and held its first token.
      const v = await c.call('POST', '/api/v1/policy/versions', { body: { text: policyText(['mine.example.com']), reason: 'by the creator' } });
      const byChild = await c.call('POST', `/api/v1/policy/versions/${v.body.version}/approve`, { token: sa2 });
      assert.equal(byChild.status, 403);
      assert.equal(byChild.body.code, 'POLICY_SELF_APPROVAL');
      assert.match(byChild.body.message, /created .* by admin/);
      // Through a grandchild: security-admin-2 creates one (it cannot approve security-admin-2's
      // versions either), and nobody created after a proposal approves it.
      const w = await c.call('POST', '/api/v1/policy/versions', { token: sa2, body: { text: policyText(['sa2.example.com']), reason: 'sa2' } });
      const puppet = await c.call('POST', '/api/v1/admins', { token: sa2, body: { name: 'puppet', role: 'security-admin' } });
      assert.equal(puppet.status, 201);
      const late = await c.call('POST', `/api/v1/policy/versions/${w.body.version}/approve`, { token: puppet.body.token });
      assert.equal(late.body.code, 'POLICY_SELF_APPROVAL');
      assert.match(late.body.message, /created after version/);
      const w2 = await c.call('POST', '/api/v1/policy/versions', { token: sa2, body: { text: policyText(['sa2b.example.com']), reason: 'sa2 again' } });
      const grand = await c.call('POST', `/api/v1/policy/versions/${w2.body.version}/approve`, { token: puppet.body.token });
      assert.equal(grand.body.code, 'POLICY_SELF_APPROVAL');
      const v3 = await c.call('POST', '/api/v1/policy/versions', { body: { text: policyText(['root3.example.com']), reason: 'root again' } });
      const grandOfRoot = await c.call('POST', `/api/v1/policy/versions/${v3.body.version}/approve`, { token: puppet.body.token });
      assert.equal(grandOfRoot.body.code, 'POLICY_SELF_APPROVAL');
      assert.match(grandOfRoot.body.message, /through other admins\) by admin/, 'the bootstrap admin created its creator');
      // Acting as another security-admin through a fresh token is refused; for oneself, a viewer or an operator it is not.
      const imp = await c.call('POST', '/api/v1/admins/security-admin-2/tokens', { body: {} });
      assert.equal(imp.status, 403);
      assert.equal(imp.body.code, 'FORBIDDEN_ROLE');
      assert.equal((await c.call('POST', '/api/v1/admins/security-admin-2/tokens', { token: sa2, body: {} })).status, 201);
      assert.equal((await c.call('POST', '/api/v1/admins/operator/tokens', { body: {} })).status, 201);
      const state = await c.call('GET', `/api/v1/policy/versions/${v.body.version}`);
      assert.equal(state.status, 200);
      const apply = await c.call('POST', '/api/v1/policy/apply', { body: { version: v.body.version } });
      assert.equal(apply.body.code, 'POLICY_APPROVAL_REQUIRED', 'none of those approvals counted');
    });
  });
}

