/**
 * Authentication and RBAC on every route (including routes other plugins register), the error
 * envelope for malformed requests, and health endpoints — on SQLite and PostgreSQL.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { FastifyPluginAsync } from 'fastify';
import { buildControlServer } from '../src/control/index.js';
import { EventBus } from '../src/events/bus.js';
import { ERROR_CODES } from '../src/core/errors.js';
import { insertAdmin, insertToken } from '../src/store/admins.js';
import { startControl, type TestControl } from './helpers/control.js';
import { BACKENDS, sqliteBackend } from './helpers/store.js';

const RANK = { viewer: 1, operator: 2, 'security-admin': 3 } as const;
const pluginRoutes: FastifyPluginAsync = async (app) => {
  app.get('/api/v1/plugin-thing', { config: { role: 'operator' } }, async () => ({ ok: true }));
  app.post('/.well-known/est/simpleenroll', { config: { role: 'device' } }, async () => ({ ok: true }));
};

function concrete(url: string): string {
  return url.replace(/:id\b/g, '00000000-0000-4000-8000-000000000000').replace(/:name\b/g, 'nobody').replace(/:version\b/g, '1');
}

for (const make of BACKENDS) {
  const backend = make();
  describe(`control API RBAC on ${backend.name}`, () => {
    let c: TestControl;
    before(async () => { c = await startControl(backend, { plugins: [pluginRoutes] }); });
    after(async () => { await c.close(); await backend.cleanup(); });

    it('every route declares a role, and each lower role is refused with 403 FORBIDDEN_ROLE', async () => {
      const routes = c.app.controlRoutes;
      assert.ok(routes.length >= 30, `only ${routes.length} routes`);
      assert.ok(routes.some((r) => r.url === '/api/v1/plugin-thing'), 'plugin routes are walked too');
      let checked = 0;
      for (const r of routes) {
        const url = concrete(r.url);
        if (r.role === 'public' || r.role === 'device') {
          const a = await c.call(r.method, url, { token: null, ...(r.method === 'GET' ? {} : { body: {} }) });
          assert.notEqual(a.status, 401, `${r.method} ${r.url} is ${r.role} and must not ask for an admin token`);
          continue;
        }
        const anon = await c.call(r.method, url, { token: null, ...(r.method === 'GET' ? {} : { body: {} }) });
        assert.equal(anon.status, 401, `${r.method} ${r.url} without a token`);
        assert.equal(anon.body.code, 'AUTH_REQUIRED');
        for (const lower of ['viewer', 'operator'] as const) {
          if (RANK[lower] >= RANK[r.role]) continue;
          const a = await c.call(r.method, url, { token: c.tokens[lower], ...(r.method === 'GET' || r.method === 'DELETE' ? {} : { body: {} }) });
          assert.equal(a.status, 403, `${r.method} ${r.url} as ${lower}: ${JSON.stringify(a.body)}`);
          assert.deepEqual(Object.keys(a.body).sort(), ['code', 'message', 'statusCode']);
          assert.equal(a.body.code, 'FORBIDDEN_ROLE');
          checked++;
        }
      }
      assert.ok(checked >= 25, `checked ${checked}`);
      // Refusals are audited.
      const audit = await c.call('GET', '/api/v1/audit?limit=5000');
      assert.ok(audit.body.items.some((e: { result: string; actor: string }) => e.result === 'denied' && e.actor === 'viewer'));
    });

    it('refuses bad, revoked and expired tokens with 401 AUTH_INVALID', async () => {
      for (const t of ['nope', 'cpa_' + 'A'.repeat(43), 'cpa_' + 'A'.repeat(42) + '!', c.tokens.viewer + 'x']) {
        const a = await c.call('GET', '/api/v1/whoami', { token: t });
        assert.equal(a.status, 401, t);
        assert.equal(a.body.code, 'AUTH_INVALID');
      }
      const lower = await c.call('GET', '/api/v1/whoami', { headers: { authorization: `bearer ${c.tokens.viewer}` }, token: null });
      assert.equal(lower.status, 200, 'the scheme is case-insensitive (RFC 9110 §11.1)');
      const made = await c.call('POST', '/api/v1/admins/viewer/tokens', { body: { token_ttl: '1m' } });
      assert.equal(made.status, 201);
      assert.equal((await c.call('GET', '/api/v1/whoami', { token: made.body.token })).status, 200);
      assert.equal((await c.call('DELETE', `/api/v1/tokens/${made.body.token_id}`)).status, 200);
      const revoked = await c.call('GET', '/api/v1/whoami', { token: made.body.token });
      assert.equal(revoked.status, 401);
      await c.store.db.updateTable('api_tokens').set({ expires_at: Date.now() - 1 }).where('id', '=', (await c.call('POST', '/api/v1/admins/viewer/tokens', { body: {} })).body.token_id).execute();
      const tokens = await c.call('GET', '/api/v1/tokens?admin=viewer');
      assert.ok(tokens.body.items.every((t: Record<string, unknown>) => !('token_hash' in t) && !('token' in t)), 'no secrets or hashes in listings');
      // The viewer's first token was used above: when is on record; an unused one has none.
      const used = tokens.body.items.filter((t: { last_used_at: number | null; revoked_at: number | null }) => t.last_used_at !== null);
      assert.ok(used.length >= 1 && used.every((t: { last_used_at: number }) => Math.abs(t.last_used_at - Date.now()) < 600_000), JSON.stringify(tokens.body.items));
      assert.ok(tokens.body.items.some((t: { last_used_at: number | null }) => t.last_used_at === null), 'a token never presented');
    });

    it('a disabled admin cannot act; the last security-admin cannot be disabled', async () => {
      const mk = await c.call('POST', '/api/v1/admins', { body: { name: 'temp', role: 'viewer' } });
      assert.equal((await c.call('GET', '/api/v1/whoami', { token: mk.body.token })).status, 200);
      assert.equal((await c.call('POST', '/api/v1/admins/temp/disable')).status, 200);
      assert.equal((await c.call('GET', '/api/v1/whoami', { token: mk.body.token })).status, 401);
      const dup = await c.call('POST', '/api/v1/admins', { body: { name: 'temp', role: 'viewer' } });
      assert.equal(dup.status, 409);
    });

    it('scopes: a scoped operator cannot act on devices outside its groups', async () => {
      const now = Date.now();
      await c.store.db.insertInto('devices').values([
        { id: 'dev-in', group_name: 'servers', asset_id: null, tags: '[]', state: 'active', created_at: now, updated_at: now, last_seen_at: null },
        { id: 'dev-out', group_name: 'laptops', asset_id: null, tags: '[]', state: 'active', created_at: now, updated_at: now, last_seen_at: null },
      ]).execute();
      const t = c.tokens['operator-scoped'];
      // Another group's device is not found (its existence is not confirmed); a group named outright is refused.
      for (const [m, u, body] of [['POST', '/api/v1/devices/dev-out/disable', {}], ['PATCH', '/api/v1/devices/dev-out', { tags: ['x'] }], ['GET', '/api/v1/devices/dev-out', undefined]] as const) {
        const a = await c.call(m, u, { token: t, body });
        assert.equal(a.status, 404, `${m} ${u}`);
        assert.equal(a.body.code, 'RESOURCE_NOT_FOUND');
      }
      const named = await c.call('POST', '/api/v1/enrollment-tokens', { token: t, body: { group: 'laptops' } });
      assert.equal(named.status, 403);
      assert.equal(named.body.code, 'FORBIDDEN_SCOPE');
      const list = await c.call('GET', '/api/v1/devices', { token: t });
      assert.deepEqual(list.body.items.map((d: { id: string }) => d.id), ['dev-in']);
      const ok = await c.call('POST', '/api/v1/devices/dev-in/disable', { token: t });
      assert.equal(ok.status, 200);
      const dev = await c.store.db.selectFrom('devices').select('state').where('id', '=', 'dev-out').executeTakeFirstOrThrow();
      assert.equal(dev.state, 'active', 'the refused change did not happen');
    });

    it('a security-admin cannot be scoped; one scoped before that cannot act globally', async () => {
      const r = await c.call('POST', '/api/v1/admins', { body: { name: 'kiosk-admin', role: 'security-admin', scopes: ['servers'] } });
      assert.equal(r.status, 400);
      assert.equal(r.body.code, 'VALIDATION_FAILED');
      assert.equal(r.body.problems[0].path, 'body.scopes');
      assert.equal((await c.call('POST', '/api/v1/admins', { body: { name: 'bad-scope', role: 'viewer', scopes: ['a\u0000b'] } })).status, 400, 'scopes are group names');
      // A row from before: scoped, security-admin.
      const legacy = await insertAdmin(c.store.db, { name: 'legacy-scoped', role: 'security-admin', scopes: ['servers'], createdBy: 'admin' });
      const t = await insertToken(c.store.db, { adminId: legacy.id, label: null, ttlMs: 60_000 });
      for (const [m, u, body] of [['POST', '/api/v1/admins', { name: 'escalated', role: 'security-admin' }], ['GET', '/api/v1/tokens', undefined], ['POST', '/api/v1/admins/admin/tokens', {}]] as const) {
        const a = await c.call(m, u, { token: t.token, body });
        assert.equal(a.status, 403, `${m} ${u}`);
        assert.equal(a.body.code, 'FORBIDDEN_SCOPE');
      }
      assert.ok(!(await c.call('GET', '/api/v1/admins')).body.items.some((a: { name: string }) => a.name === 'escalated'), 'the refused create did not happen');
      const audit = await c.call('GET', '/api/v1/audit?limit=5000');
      assert.ok(audit.body.items.some((e: { actor: string; result: string; detail: string | null }) => e.actor === 'legacy-scoped' && e.result === 'denied' && /FORBIDDEN_SCOPE/.test(String(e.detail))));
    });

    it('the last valid token of the active security-admins cannot be revoked (nobody could act any more)', async () => {
      const b = make(); // a control plane of its own: this test revokes its admins' tokens
      const own = await startControl(b);
      try {
        const tokens = (await own.call('GET', '/api/v1/tokens')).body.items as { id: string; admin: string }[];
        const root = tokens.find((t) => t.admin === 'admin') as { id: string };
        const sa2 = tokens.find((t) => t.admin === 'security-admin-2') as { id: string };
        assert.equal((await own.call('DELETE', `/api/v1/tokens/${sa2.id}`)).status, 200, 'another security-admin token is still valid');
        // security-admin-2 is still active but has no token: the admin holding the last one
        // cannot disable itself either.
        const self = await own.call('POST', '/api/v1/admins/admin/disable');
        assert.equal(self.status, 409, JSON.stringify(self.body));
        assert.match(self.body.message, /last security-admin that can act/);
        const last = await own.call('DELETE', `/api/v1/tokens/${root.id}`);
        assert.equal(last.status, 409, JSON.stringify(last.body));
        assert.equal(last.body.code, 'CONFLICT');
        assert.match(last.body.message, /admin recover/);
        assert.equal((await own.call('GET', '/api/v1/whoami')).status, 200, 'still usable');
      } finally {
        await own.close();
        await b.cleanup();
      }
    });

    it('a scoped admin reading another group is refused and audited', async () => {
      for (const path of ['/api/v1/events?group=elsewhere', '/api/v1/alerts?group=elsewhere']) {
        const r = await c.call('GET', path, { token: c.tokens['operator-scoped'] });
        assert.equal(r.status, 403, path);
        assert.equal(r.body.code, 'FORBIDDEN_SCOPE');
      }
      const log = (await c.call('GET', '/api/v1/audit?limit=5000')).body.items as { actor: string; action: string; target: string | null; result: string; detail: string | null }[];
      const refused = log.filter((e) => e.actor === 'operator-scoped' && e.target === 'group:elsewhere' && e.result === 'denied' && e.detail === 'FORBIDDEN_SCOPE');
      assert.deepEqual(refused.map((e) => e.action).sort(), ['GET /api/v1/alerts', 'GET /api/v1/events']);
    });

    it('audit entries name the API token that acted, and can be listed by it', async () => {
      // A second token for the operator: the log must tell its actions from the first token's.
      const t2 = await c.call('POST', '/api/v1/admins/operator/tokens', { body: { label: 'second' } });
      assert.equal(t2.status, 201);
      const created = await c.call('POST', '/api/v1/enrollment-tokens', { token: t2.body.token, body: { group: 'servers', uses: 1, ttl: '1h' } });
      assert.equal(created.status, 201, JSON.stringify(created.body));
      const refused = await c.call('POST', '/api/v1/admins', { token: t2.body.token, body: { name: 'nope', role: 'viewer' } });
      assert.equal(refused.status, 403);
      const byToken = (await c.call('GET', `/api/v1/audit?limit=5000&token=${t2.body.token_id}`)).body.items as { actor: string; action: string; result: string; token_id: string }[];
      assert.ok(byToken.length >= 2, JSON.stringify(byToken));
      assert.ok(byToken.every((e) => e.actor === 'operator' && e.token_id === t2.body.token_id));
      assert.ok(byToken.some((e) => e.result === 'ok') && byToken.some((e) => e.result === 'denied'), 'changes and refusals alike');
      // The token's own creation was done with the root token, and says so.
      const all = (await c.call('GET', '/api/v1/audit?limit=5000')).body.items as { action: string; token_id: string | null; after: string | null }[];
      const issue = all.find((e) => e.action === 'token.create' && String(e.after).includes(t2.body.token_id as string));
      assert.ok(issue && issue.token_id !== null && issue.token_id !== t2.body.token_id);
      const denied = byToken.find((e) => e.result === 'denied');
      const ev = [...c.events].reverse().find((e) => e.type === 'audit.entry' && e.action === denied?.action && e.result === 'denied') as { token_id: string } | undefined;
      assert.equal(ev?.token_id, t2.body.token_id, 'the audit.entry event carries it too');
      assert.equal((await c.call('GET', '/api/v1/audit?token=' + 'x'.repeat(65))).status, 400);
    });

    it('refusals before the change and the reasons admins give reach the audit log', async () => {
      const refused = await c.call('POST', '/api/v1/enrollment-tokens', { token: c.tokens['operator-scoped'], body: { group: 'laptops' } });
      assert.equal(refused.body.code, 'FORBIDDEN_SCOPE');
      const invalid = await c.call('POST', '/api/v1/policy/versions', { body: { text: 'version: 1\ngroups: [{name: a, bogus: 1}]\n', reason: 'broken' } });
      assert.equal(invalid.body.code, 'POLICY_INVALID');
      const now = Date.now();
      await c.store.db.insertInto('devices').values({ id: 'dev-why', group_name: 'servers', asset_id: null, tags: '[]', state: 'active', created_at: now, updated_at: now, last_seen_at: null }).execute();
      assert.equal((await c.call('POST', '/api/v1/devices/dev-why/disable', { body: { reason: 'TICKET-7 lost laptop' } })).status, 200);
      const log = (await c.call('GET', '/api/v1/audit?limit=5000')).body.items as { actor: string; action: string; result: string; detail: string | null }[];
      assert.ok(log.some((e) => e.actor === 'operator-scoped' && e.action === 'enrollment_token.create' && e.result === 'denied' && e.detail === 'FORBIDDEN_SCOPE'));
      assert.ok(log.some((e) => e.action === 'policy.propose' && e.result === 'denied' && /POLICY_INVALID/.test(String(e.detail))));
      assert.ok(log.some((e) => e.action === 'device.disable' && e.detail === 'TICKET-7 lost laptop'));
    });

    it('a disable that races another cannot leave no security-admin', async () => {
      const b = make();
      const own = await startControl(b);
      try {
        // Another disable is mid-transaction: it holds the security-admin rows (as the route
        // does on PostgreSQL) and has disabled security-admin-2, not yet committed. Under READ
        // COMMITTED an unlocked check would still see security-admin-2 active and let the last
        // one go. SQLite runs one writer at a time, so there the request simply waits.
        let release!: () => void;
        const gate = new Promise<void>((r) => { release = r; });
        let locked!: () => void;
        const isLocked = new Promise<void>((r) => { locked = r; });
        const held = own.store.db.transaction().execute(async (trx) => {
          if (b.name === 'postgres') await trx.selectFrom('admins').select('id').where('role', '=', 'security-admin').forUpdate().execute();
          await trx.updateTable('admins').set({ disabled_at: Date.now() }).where('name', '=', 'security-admin-2').execute();
          locked();
          await gate;
        });
        await isLocked;
        const req = own.call('POST', '/api/v1/admins/admin/disable');
        await new Promise((r) => setTimeout(r, 200)); // let the request reach the lock
        release();
        await held;
        const r = await req;
        assert.equal(r.status, 409, JSON.stringify(r.body));
        const active = await own.store.db.selectFrom('admins').select('name').where('role', '=', 'security-admin').where('disabled_at', 'is', null).execute();
        assert.deepEqual(active.map((a) => a.name), ['admin']);
      } finally {
        await own.close();
        await b.cleanup();
      }
    });

    it('no token for a disabled admin', async () => {
      await c.call('POST', '/api/v1/admins', { body: { name: 'gone', role: 'viewer' } });
      assert.equal((await c.call('POST', '/api/v1/admins/gone/disable')).status, 200);
      const r = await c.call('POST', '/api/v1/admins/gone/tokens', { body: {} });
      assert.equal(r.status, 409);
      assert.equal(r.body.code, 'CONFLICT');
    });

    it('malformed requests get the envelope with a stable code and no internal text', async () => {
      const cases: [string, string, Parameters<TestControl['call']>[2], number, string][] = [
        ['GET', '/api/v1/nope', {}, 404, 'ROUTE_NOT_FOUND'],
        ['PUT', '/api/v1/devices', { body: {} }, 405, 'METHOD_NOT_ALLOWED'],
        ['POST', '/api/v1/admins', { payload: 'name=x', headers: { 'content-type': 'application/x-www-form-urlencoded' } }, 415, 'UNSUPPORTED_MEDIA_TYPE'],
        ['POST', '/api/v1/admins', { payload: '{"name": ', headers: { 'content-type': 'application/json' } }, 400, 'BAD_JSON'],
        ['POST', '/api/v1/admins', { payload: '{"__proto__": {"role": "security-admin"}, "name": "p", "role": "viewer"}', headers: { 'content-type': 'application/json' } }, 400, 'BAD_JSON'],
        ['POST', '/api/v1/admins', { payload: JSON.stringify({ name: 'x', role: 'viewer', pad: 'x'.repeat(2 * 1024 * 1024) }), headers: { 'content-type': 'application/json' } }, 413, 'BODY_TOO_LARGE'],
        ['POST', '/api/v1/admins', { body: { name: 'x', role: 'root' } }, 400, 'VALIDATION_FAILED'],
        ['POST', '/api/v1/admins', { body: { name: 'bad\nname', role: 'viewer' } }, 400, 'VALIDATION_FAILED'],
        ['POST', '/api/v1/admins', { body: { name: 'x', role: 'viewer', extra: 1 } }, 400, 'VALIDATION_FAILED'],
        ['POST', '/api/v1/admins', { body: [1, 2] }, 400, 'VALIDATION_FAILED'],
        ['GET', '/api/v1/events?limit=0', {}, 400, 'VALIDATION_FAILED'],
        ['GET', '/api/v1/devices/%zz', {}, 400, 'VALIDATION_FAILED'],
        ['GET', `/api/v1/devices/${'a'.repeat(300)}`, {}, 400, 'VALIDATION_FAILED'],
        ['GET', '/api/v1/events?cursor=!!', {}, 400, 'VALIDATION_FAILED'],
        ['GET', '/api/v1/events?reason=not_a_reason', {}, 400, 'VALIDATION_FAILED'],
        ['GET', '/api/v1/events?client=evil.example', {}, 400, 'VALIDATION_FAILED'],
        ['GET', '/api/v1/policy/versions/abc', {}, 400, 'VALIDATION_FAILED'],
        ['GET', '/api/v1/policy/versions/999', {}, 404, 'RESOURCE_NOT_FOUND'],
      ];
      for (const [m, u, o, status, code] of cases) {
        const a = await c.call(m, u, o);
        assert.equal(a.status, status, `${m} ${u}: ${JSON.stringify(a.body)}`);
        assert.equal(a.body.code, code, `${m} ${u}`);
        assert.equal(a.body.statusCode, status);
        assert.ok(a.body.code in ERROR_CODES);
        assert.doesNotMatch(JSON.stringify(a.body), /at .*\.js|SELECT|sqlite|postgres|stack/i);
      }
      const v = await c.call('POST', '/api/v1/admins', { body: { name: 'x', role: 'root' } });
      assert.equal(v.body.problems[0].path, 'body.role', 'the failing path is named');
      assert.equal((await c.call('PUT', '/api/v1/devices', { body: {} })).headers.allow, 'GET');
    });

    it('healthz is public; readyz says which check failed', async () => {
      assert.equal((await c.call('GET', '/healthz', { token: null })).status, 200);
      const r = await c.call('GET', '/readyz', { token: null });
      assert.equal(r.status, 503);
      assert.equal(r.body.code, 'NOT_READY');
      assert.deepEqual(r.body.failed.map((f: { check: string }) => f.check), ['policy']);
    });
  });
}

describe('route declarations fail closed', () => {
  it('a route without a declared role makes the server refuse to start', async () => {
    const backend = sqliteBackend();
    const store = await backend.open();
    try {
      const sneaky: FastifyPluginAsync = async (app) => { app.get('/api/v1/sneaky', async () => ({ open: true })); };
      await assert.rejects(buildControlServer({ store, bus: new EventBus(), plugins: [sneaky] }), /declares no valid config\.role/);
      const typo: FastifyPluginAsync = async (app) => { app.get('/api/v1/typo', { config: { role: 'admin' as 'viewer' } }, async () => ({})); };
      await assert.rejects(buildControlServer({ store, bus: new EventBus(), plugins: [typo] }), /declares no valid config\.role/);
    } finally {
      await store.close();
      await backend.cleanup();
    }
  });
});
