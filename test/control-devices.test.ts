/**
 * Devices, enrollment requests and tokens, recent decision events and alerts through the API,
 * on SQLite and PostgreSQL.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { EventRecorder } from '../src/control/index.js';
import type { DecisionEvent } from '../src/events/catalogue.js';
import { hashToken } from '../src/store/index.js';
import { policyText, startControl, type TestControl } from './helpers/control.js';
import { BACKENDS } from './helpers/store.js';

/** Decision i; each from its own client address, so that none folds into another (recorder.ts). */
function decision(i: number, verdict: 'allow' | 'deny', group: string, host = `h${i % 3}.example.com`): DecisionEvent {
  return {
    v: 1, type: 'gateway.decision', time: new Date(Date.now() - 1000 + i).toISOString(), id: randomUUID(), listener: 'proxy', client_ip: `127.0.1.${i}`, client_port: 5000 + i,
    group, method: 'CONNECT', host, port: 443, address: null, verdict, reason: verdict === 'allow' ? 'allowed' : 'no_rule_matched', rule: null, mode: 'enforce',
    sni: null, tls_version: null, address_class: null, detail: null, status: verdict === 'allow' ? null : 403, device_id: i % 2 === 0 ? 'dev-a' : null, asset_id: null, serial: null,
  } as DecisionEvent;
}

for (const make of BACKENDS) {
  const backend = make();
  describe(`devices and evidence on ${backend.name}`, () => {
    let c: TestControl;
    let recorder: EventRecorder;
    before(async () => {
      c = await startControl(backend);
      recorder = new EventRecorder({ store: c.store, bus: c.bus, flushMs: 10 });
      const v = await c.call('POST', '/api/v1/policy/versions', { body: { text: policyText(), reason: 'base' } });
      await c.call('POST', '/api/v1/policy/apply', { body: { version: v.body.version } });
      const now = Date.now();
      await c.store.db.insertInto('devices').values([
        { id: 'dev-a', group_name: 'servers', asset_id: 'A-1', tags: '["db","prod"]', state: 'active', created_at: now, updated_at: now, last_seen_at: null },
        { id: 'dev-b', group_name: 'servers', asset_id: null, tags: '["prod"]', state: 'pending', created_at: now, updated_at: now, last_seen_at: null },
        { id: 'dev-c', group_name: 'laptops', asset_id: null, tags: '["a\\"b"]', state: 'active', created_at: now, updated_at: now, last_seen_at: null },
      ]).execute();
      await c.store.db.insertInto('certificates').values({ serial: '1a2b', device_id: 'dev-a', ca_id: 'ca', spki_sha256: 'ab'.repeat(32), not_before: now, not_after: now + 1e7, issued_at: now, first_used_at: null, revoked_at: null, revocation_reason: null, pem: 'PEM' }).execute();
      await c.store.db.insertInto('enrollment_tokens').values({ id: randomUUID(), token_hash: 'x'.repeat(64), group_name: 'servers', asset_id: null, uses_total: 1, uses_left: 0, expires_at: now + 1e6, revoked_at: null, created_by: 'admin', created_at: now }).execute();
      await c.store.db.insertInto('enrollment_requests').values({ id: randomUUID(), device_id: 'dev-b', token_id: 'tok', spki_sha256: 'cd'.repeat(32), csr_der: 'AAAA', state: 'pending', decided_by: null, decided_at: null, created_at: now }).execute();
    });
    after(async () => { await recorder.close(); await c.close(); await backend.cleanup(); });

    it('lists and filters devices by group, tag and state, with cursor pagination', async () => {
      const all = await c.call('GET', '/api/v1/devices', { token: c.tokens.viewer });
      assert.deepEqual(all.body.items.map((d: { id: string }) => d.id), ['dev-a', 'dev-b', 'dev-c']);
      assert.deepEqual((await c.call('GET', '/api/v1/devices?group=servers')).body.items.map((d: { id: string }) => d.id), ['dev-a', 'dev-b']);
      assert.deepEqual((await c.call('GET', '/api/v1/devices?tag=prod&state=pending')).body.items.map((d: { id: string }) => d.id), ['dev-b']);
      assert.deepEqual((await c.call('GET', '/api/v1/devices?tag=db')).body.items.map((d: { id: string }) => d.id), ['dev-a']);
      assert.deepEqual((await c.call('GET', `/api/v1/devices?tag=${encodeURIComponent('a"b')}`)).body.items.map((d: { id: string }) => d.id), ['dev-c']);
      assert.deepEqual((await c.call('GET', '/api/v1/devices?tag=pro')).body.items, [], 'a tag matches whole tags only');
      const p1 = await c.call('GET', '/api/v1/devices?limit=2');
      assert.equal(p1.body.items.length, 2);
      const p2 = await c.call('GET', `/api/v1/devices?limit=2&cursor=${p1.body.next}`);
      assert.deepEqual(p2.body.items.map((d: { id: string }) => d.id), ['dev-c']);
      const one = await c.call('GET', '/api/v1/devices/dev-a');
      assert.equal(one.body.certificates[0].serial, '1a2b');
      assert.ok(!('pem' in one.body.certificates[0]));
      assert.equal((await c.call('GET', '/api/v1/devices/nope')).status, 404);
      const groups = await c.call('GET', '/api/v1/groups');
      assert.deepEqual(groups.body.items.find((g: { name: string }) => g.name === 'servers').devices, { active: 1, pending: 1 });
      assert.ok(groups.body.items.some((g: { name: string }) => g.name === 'laptops'));
      const mine = await c.call('GET', '/api/v1/groups', { token: c.tokens['operator-scoped'] });
      assert.deepEqual(mine.body.items.map((g: { name: string }) => g.name), ['servers'], 'a scoped admin sees its groups only');
    });

    it('edits tags and asset id; disable, enable, revoke with state rules; each calls onDeviceChanged', async () => {
      const e = await c.call('PATCH', '/api/v1/devices/dev-a', { token: c.tokens.operator, body: { tags: ['db'], asset_id: 'A-2' } });
      assert.equal(e.status, 200);
      assert.deepEqual(e.body.tags, ['db']);
      assert.equal((await c.call('PATCH', '/api/v1/devices/dev-a', { body: { tags: ['x', 'x'] } })).status, 400);
      assert.equal((await c.call('PATCH', '/api/v1/devices/dev-a', { body: {} })).status, 400);
      assert.equal((await c.call('POST', '/api/v1/devices/dev-a/enable')).body.code, 'CONFLICT');
      assert.equal((await c.call('POST', '/api/v1/devices/dev-a/disable', { token: c.tokens.operator })).body.state, 'disabled');
      assert.equal((await c.call('POST', '/api/v1/devices/dev-a/enable')).body.state, 'active');
      const r = await c.call('POST', '/api/v1/devices/dev-a/revoke', { body: { reason: 'laptop stolen' } });
      assert.deepEqual(r.body.revoked_serials, ['1a2b']);
      const cert = await c.store.db.selectFrom('certificates').selectAll().where('serial', '=', '1a2b').executeTakeFirstOrThrow();
      assert.ok(cert.revoked_at !== null);
      assert.equal(cert.revocation_reason, 'laptop stolen');
      assert.equal((await c.call('POST', '/api/v1/devices/dev-a/enable')).status, 409, 'revocation is terminal');
      assert.deepEqual(c.deviceChanges.filter((d) => d === 'dev-a').length, 4);
    });

    it('another group\'s device is, to a scoped admin, exactly a device that does not exist (no existence oracle); the log says why', async () => {
      const t = c.tokens['operator-scoped'];
      const strip = (b: { message: string }) => ({ ...b, message: b.message.replace(/dev-c|nope/, 'ID') });
      for (const [method, path, body] of [['GET', '', undefined], ['PATCH', '', { tags: ['x'] }], ['POST', '/disable', {}]] as const) {
        const other = await c.call(method, `/api/v1/devices/dev-c${path}`, { token: t, ...(body ? { body } : {}) });
        const none = await c.call(method, `/api/v1/devices/nope${path}`, { token: t, ...(body ? { body } : {}) });
        assert.equal(other.status, 404, `${method} ${path}`);
        assert.deepEqual(strip(other.body), strip(none.body), `${method} ${path}`);
      }
      assert.equal((await c.call('GET', '/api/v1/devices/dev-c')).body.state, 'active', 'nothing changed');
      const log = (await c.call('GET', '/api/v1/audit?limit=5000')).body.items as { actor: string; result: string; detail: string | null; target: string | null }[];
      const hidden = log.filter((e) => e.actor === 'operator-scoped' && e.result === 'denied' && /FORBIDDEN_SCOPE: device of group "laptops"/.test(String(e.detail)));
      assert.equal(hidden.length, 3, JSON.stringify(log.slice(-5)));
    });

    it('a pending device disabled and enabled again is pending, not active (enabling is not approving)', async () => {
      const now = Date.now();
      await c.store.db.insertInto('devices').values({ id: 'dev-wait', group_name: 'servers', asset_id: null, tags: '[]', state: 'pending', created_at: now, updated_at: now, last_seen_at: null }).execute();
      await c.store.db.insertInto('enrollment_requests').values({ id: randomUUID(), device_id: 'dev-wait', token_id: 'tok', spki_sha256: 'ef'.repeat(32), csr_der: 'AAAA', state: 'pending', decided_by: null, decided_at: null, created_at: now }).execute();
      assert.equal((await c.call('POST', '/api/v1/devices/dev-wait/disable')).body.state, 'disabled');
      assert.equal((await c.call('POST', '/api/v1/devices/dev-wait/enable')).body.state, 'pending');
      assert.equal((await c.call('GET', '/api/v1/devices/dev-wait')).body.state, 'pending');
      // Denied instead: the device is revoked, and disable/enable cannot bring it back.
      await c.store.db.insertInto('devices').values({ id: 'dev-no', group_name: 'servers', asset_id: null, tags: '[]', state: 'pending', created_at: now, updated_at: now, last_seen_at: null }).execute();
      await c.store.db.insertInto('enrollment_requests').values({ id: randomUUID(), device_id: 'dev-no', token_id: 'tok', spki_sha256: 'fe'.repeat(32), csr_der: 'AAAA', state: 'pending', decided_by: null, decided_at: null, created_at: now }).execute();
      assert.equal((await c.call('POST', '/api/v1/devices/dev-no/deny')).status, 200);
      assert.equal((await c.call('GET', '/api/v1/devices/dev-no')).body.state, 'revoked');
      assert.equal((await c.call('POST', '/api/v1/devices/dev-no/disable')).status, 409);
      // Disabled while waiting, then denied: revoked too, so enable cannot make it active.
      await c.store.db.insertInto('devices').values({ id: 'dev-no2', group_name: 'servers', asset_id: null, tags: '[]', state: 'pending', created_at: now, updated_at: now, last_seen_at: null }).execute();
      await c.store.db.insertInto('enrollment_requests').values({ id: randomUUID(), device_id: 'dev-no2', token_id: 'tok', spki_sha256: 'fd'.repeat(32), csr_der: 'AAAA', state: 'pending', decided_by: null, decided_at: null, created_at: now }).execute();
      assert.equal((await c.call('POST', '/api/v1/devices/dev-no2/disable')).body.state, 'disabled');
      assert.equal((await c.call('POST', '/api/v1/devices/dev-no2/deny')).status, 200);
      assert.equal((await c.call('GET', '/api/v1/devices/dev-no2')).body.state, 'revoked');
      assert.equal((await c.call('POST', '/api/v1/devices/dev-no2/enable')).status, 409);
      const approved = await c.call('POST', '/api/v1/devices/dev-wait/approve', { body: { reason: 'asset tag checked' } });
      assert.equal(approved.status, 200);
      const log = (await c.call('GET', '/api/v1/audit?limit=5000')).body.items as { action: string; target: string; detail: string | null }[];
      assert.ok(log.some((e) => e.action === 'enrollment.approve' && e.target === 'device:dev-wait' && e.detail === 'asset tag checked'), 'the reason is kept');
    });

    it('approves or denies a pending enrollment request once', async () => {
      const list = await c.call('GET', '/api/v1/enrollment-requests?state=pending');
      assert.equal(list.body.items.length, 1);
      assert.ok(!('csr_der' in list.body.items[0]));
      const [a, b] = await Promise.all([
        c.call('POST', '/api/v1/devices/dev-b/approve', { token: c.tokens.operator }),
        c.call('POST', '/api/v1/devices/dev-b/deny'),
      ]);
      assert.deepEqual([a.status, b.status].sort(), [200, 409]);
      const row = await c.store.db.selectFrom('enrollment_requests').selectAll().where('device_id', '=', 'dev-b').executeTakeFirstOrThrow();
      assert.ok(row.state === 'approved' || row.state === 'denied');
      // A denied device is refused for good; an approved one waits for its next poll.
      const dev = await c.call('GET', '/api/v1/devices/dev-b');
      assert.equal(dev.body.state, row.state === 'denied' ? 'revoked' : 'pending');
      assert.ok(c.deviceChanges.includes('dev-b'));
      assert.equal((await c.call('POST', '/api/v1/devices/dev-c/approve')).status, 409);
    });

    it('a scoped admin lists the enrollment requests of its groups, however many newer ones other groups have', async () => {
      const now = Date.now();
      await c.store.db.insertInto('devices').values({ id: 'dev-req-out', group_name: 'laptops', asset_id: null, tags: '[]', state: 'pending', created_at: now, updated_at: now, last_seen_at: null }).execute();
      await c.store.db.insertInto('enrollment_requests').values(Array.from({ length: 3 }, (_, i) => (
        { id: randomUUID(), device_id: 'dev-req-out', token_id: 'tok', spki_sha256: String(i).repeat(64), csr_der: 'AAAA', state: 'denied' as const, decided_by: 'admin', decided_at: now, created_at: now + 1000 + i }))).execute();
      const mine = await c.call('GET', '/api/v1/enrollment-requests?limit=1', { token: c.tokens['operator-scoped'] });
      assert.equal(mine.body.items.length, 1, 'newer requests of another group no longer empty the page');
      assert.equal(mine.body.items[0].group_name, 'servers');
      assert.equal((await c.call('GET', '/api/v1/enrollment-requests?limit=1')).body.items[0].group_name, 'laptops');
    });

    it('the audit log is for unscoped admins (it covers every group)', async () => {
      const r = await c.call('GET', '/api/v1/audit', { token: c.tokens['operator-scoped'] });
      assert.equal(r.status, 403);
      assert.equal(r.body.code, 'FORBIDDEN_SCOPE');
      assert.equal((await c.call('GET', '/api/v1/audit', { token: c.tokens.viewer })).status, 200);
    });

    it('enrollment tokens: plaintext once, only the hash stored, defaults 10m and 1 use, revocable', async () => {
      const t = await c.call('POST', '/api/v1/enrollment-tokens', { token: c.tokens.operator, body: { group: 'servers', asset_id: 'A-9' } });
      assert.equal(t.status, 201);
      assert.match(t.body.token, /^cpe_[A-Za-z0-9_-]{43}$/);
      assert.equal(t.body.uses_total, 1);
      const ttl = t.body.expires_at - t.body.created_at;
      assert.equal(ttl, 600_000);
      const row = await c.store.db.selectFrom('enrollment_tokens').selectAll().where('id', '=', t.body.id).executeTakeFirstOrThrow();
      assert.equal(row.token_hash, hashToken(t.body.token));
      const list = await c.call('GET', '/api/v1/enrollment-tokens', { token: c.tokens.viewer });
      assert.ok(list.body.items.every((x: Record<string, unknown>) => !('token' in x) && !('token_hash' in x)));
      assert.equal((await c.call('POST', '/api/v1/enrollment-tokens', { body: { group: 'nosuch' } })).status, 409, 'a group not in the policy');
      assert.equal((await c.call('POST', '/api/v1/enrollment-tokens', { body: { group: 'servers', ttl: '1y' } })).status, 400);
      assert.equal((await c.call('POST', '/api/v1/enrollment-tokens', { body: { group: 'servers', uses: 0 } })).status, 400);
      const del = await c.call('DELETE', `/api/v1/enrollment-tokens/${t.body.id}`, { token: c.tokens.operator });
      assert.equal(del.status, 200);
      const after = await c.store.db.selectFrom('enrollment_tokens').select('revoked_at').where('id', '=', t.body.id).executeTakeFirstOrThrow();
      assert.notEqual(after.revoked_at, null);
    });

    it('records decisions from the bus and queries them with filters and a cursor', async () => {
      for (let i = 0; i < 12; i++) c.bus.publish(decision(i, i % 4 === 0 ? 'allow' : 'deny', i < 9 ? 'servers' : 'laptops'));
      await recorder.flush();
      const denies = await c.call('GET', '/api/v1/events?verdict=deny&limit=5', { token: c.tokens.viewer });
      assert.equal(denies.body.items.length, 5);
      assert.ok(denies.body.items.every((e: DecisionEvent) => e.verdict === 'deny'));
      const rest = await c.call('GET', `/api/v1/events?verdict=deny&limit=5&cursor=${denies.body.next}`);
      const ids = new Set([...denies.body.items, ...rest.body.items].map((e: DecisionEvent) => e.id));
      assert.equal(ids.size, 9, 'pages do not overlap');
      assert.equal((await c.call('GET', '/api/v1/events?group=laptops')).body.items.length, 3);
      assert.equal((await c.call('GET', '/api/v1/events?host=h1.example.com&reason=no_rule_matched')).body.items.length, 3);
      assert.equal((await c.call('GET', '/api/v1/events?device=dev-a')).body.items.length, 6);
      assert.equal((await c.call('GET', `/api/v1/events?since=${Date.now() + 60_000}`)).body.items.length, 0);
      const scoped = await c.call('GET', '/api/v1/events', { token: c.tokens['operator-scoped'] });
      assert.ok(scoped.body.items.every((e: DecisionEvent) => e.group === 'servers'));
      assert.equal((await c.call('GET', '/api/v1/events?group=laptops', { token: c.tokens['operator-scoped'] })).status, 403);
    });

    it('returns identical decisions folded into the first one, with their count and the latest time', async () => {
      const first = decision(200, 'deny', 'servers', 'fold.example.com');
      c.bus.publish(first);
      for (let k = 0; k < 3; k++) c.bus.publish({ ...first, id: randomUUID(), client_port: 6000 + k, time: new Date().toISOString() });
      await recorder.flush();
      const r = await c.call('GET', '/api/v1/events?host=fold.example.com', { token: c.tokens.viewer });
      assert.equal(r.body.items.length, 1);
      const item = r.body.items[0];
      assert.equal(item.id, first.id, 'the stored row is the first decision');
      assert.equal(item.repeats, 3);
      assert.ok(Math.abs(Date.parse(item.last_time) - Date.now()) < 60_000, `last_time ${item.last_time}`);
      const other = await c.call('GET', '/api/v1/events?host=h1.example.com&limit=1');
      assert.equal(other.body.items[0].repeats, 0);
      assert.equal(other.body.items[0].last_time, null);
    });

    it('a scoped admin gets full pages of its groups, however many newer rows of other groups there are', async () => {
      // The scope used to be applied to a page after the database's LIMIT: newer rows of other
      // groups filled the page, and the scoped admin got an empty one with a cursor.
      for (let i = 0; i < 6; i++) c.bus.publish(decision(300 + i, 'deny', 'servers', 'paged.example.com'));
      for (let i = 0; i < 12; i++) c.bus.publish(decision(400 + i, 'deny', 'laptops', 'paged.example.com'));
      await recorder.flush();
      const t = c.tokens['operator-scoped'];
      const p1 = await c.call('GET', '/api/v1/events?host=paged.example.com&limit=4', { token: t });
      assert.equal(p1.body.items.length, 4, JSON.stringify(p1.body));
      assert.ok(p1.body.items.every((e: DecisionEvent) => e.group === 'servers'));
      const p2 = await c.call('GET', `/api/v1/events?host=paged.example.com&limit=4&cursor=${p1.body.next}`, { token: t });
      assert.equal(p2.body.items.length, 2);
      assert.equal(p2.body.next, null);
      const all = await c.call('GET', '/api/v1/events?host=paged.example.com&limit=100');
      assert.equal(all.body.items.length, 18, 'an unscoped admin sees every group');
    });

    it('stores alerts from the bus; operators acknowledge and resolve them', async () => {
      c.bus.publish({ v: 1, type: 'alert', time: new Date().toISOString(), id: 'al-1', detector: 'destination_drift', severity: 'high', device_id: 'dev-a', group: 'servers', summary: 'new destinations', evidence: { n: 5 }, suggested_action: 'look' });
      c.bus.publish({ v: 1, type: 'alert', time: new Date().toISOString(), id: 'al-2', detector: 'volume', severity: 'low', device_id: null, group: 'laptops', summary: 's', evidence: {}, suggested_action: 'x' });
      await recorder.flush();
      const open = await c.call('GET', '/api/v1/alerts?state=open', { token: c.tokens.viewer });
      assert.deepEqual(open.body.items.map((a: { id: string }) => a.id).sort(), ['al-1', 'al-2']);
      assert.deepEqual((await c.call('GET', '/api/v1/alerts?severity=high')).body.items[0].evidence, { n: 5 });
      assert.equal((await c.call('POST', '/api/v1/alerts/al-1/ack', { token: c.tokens.viewer })).status, 403);
      assert.equal((await c.call('POST', '/api/v1/alerts/al-2/ack', { token: c.tokens['operator-scoped'] })).body.code, 'FORBIDDEN_SCOPE');
      assert.equal((await c.call('POST', '/api/v1/alerts/al-1/ack', { token: c.tokens.operator })).body.state, 'acknowledged');
      assert.equal((await c.call('POST', '/api/v1/alerts/al-1/ack', { token: c.tokens.operator })).status, 409);
      assert.equal((await c.call('POST', '/api/v1/alerts/al-1/resolve', { token: c.tokens.operator })).body.state, 'resolved');
      assert.equal((await c.call('GET', '/api/v1/alerts?state=resolved')).body.items[0].resolved_by, 'operator');
      assert.equal((await c.call('POST', '/api/v1/alerts/nope/ack')).status, 404);
    });

    it('a tag filter fills its page past decoy tags that match the pre-filter', async () => {
      const now = Date.now();
      // `x","prod` contains `"prod"` once JSON-encoded, so the LIKE pre-filter matches it.
      await c.store.db.insertInto('devices').values(Array.from({ length: 150 }, (_, i) => (
        { id: `aaa-decoy-${String(i).padStart(3, '0')}`, group_name: 'servers', asset_id: null, tags: JSON.stringify(['x","prod']), state: 'active' as const, created_at: now, updated_at: now, last_seen_at: null }))).execute();
      const r = await c.call('GET', '/api/v1/devices?tag=prod&limit=1');
      assert.deepEqual(r.body.items.map((d: { id: string }) => d.id), ['dev-b'], 'the first real match, after 150 decoys');
      assert.notEqual(r.body.next, null);
      const rest = await c.call('GET', `/api/v1/devices?tag=prod&limit=1&cursor=${r.body.next}`);
      assert.deepEqual(rest.body.items, []);
      await c.store.db.deleteFrom('devices').where('id', 'like', 'aaa-decoy-%').execute();
    });

    it('pages through alerts that share a timestamp without skipping any', async () => {
      const t = Date.now() + 10 * 60_000; // newer than the other tests' alerts: these come first
      for (let i = 0; i < 5; i++) await c.store.db.insertInto('alerts').values({ id: `same-${i}`, time: t, detector: 'volume', severity: 'low', device_id: null, group_name: 'servers', summary: 's', evidence: '{}', suggested_action: 'x', state: 'resolved', acked_by: null, acked_at: null, resolved_by: 'admin', resolved_at: t }).execute();
      const seen: string[] = [];
      let next: string | null = null;
      do {
        const page: { body: { items: { id: string }[]; next: string | null } } = await c.call('GET', `/api/v1/alerts?limit=2${next ? `&cursor=${next}` : ''}`);
        seen.push(...page.body.items.map((a) => a.id));
        next = page.body.next;
      } while (next !== null && seen.length < 100);
      assert.deepEqual(seen.filter((id) => id.startsWith('same-')), ['same-0', 'same-1', 'same-2', 'same-3', 'same-4']);
      assert.equal(new Set(seen).size, seen.length, 'no alert twice');
      assert.equal((await c.call('GET', '/api/v1/alerts?cursor=' + Buffer.from('123').toString('base64url'))).body.code, 'VALIDATION_FAILED');
    });

    it('a scoped admin lists and handles only the alerts of its groups', async () => {
      const base = { v: 1, type: 'alert', time: new Date().toISOString(), severity: 'medium', device_id: null, summary: 's', evidence: {}, suggested_action: 'x' } as const;
      c.bus.publish({ ...base, id: 'sc-in', detector: 'volume', group: 'servers' });
      c.bus.publish({ ...base, id: 'sc-out', detector: 'volume', group: 'laptops' });
      c.bus.publish({ ...base, id: 'sc-none', detector: 'enrollment_surge', group: null });
      await recorder.flush();
      const t = c.tokens['operator-scoped'];
      const mine = await c.call('GET', '/api/v1/alerts?state=open', { token: t });
      assert.deepEqual(mine.body.items.map((a: { id: string }) => a.id), ['sc-in']);
      assert.equal((await c.call('GET', '/api/v1/alerts?group=laptops', { token: t })).body.code, 'FORBIDDEN_SCOPE');
      // An alert of no group (here an enrollment surge) is outside every scope.
      const none = await c.call('POST', '/api/v1/alerts/sc-none/ack', { token: t });
      assert.equal(none.status, 403);
      assert.equal(none.body.code, 'FORBIDDEN_SCOPE');
      assert.equal((await c.call('POST', '/api/v1/alerts/sc-in/ack', { token: t })).body.state, 'acknowledged');
      const everything = await c.call('GET', '/api/v1/alerts?state=open', { token: c.tokens.operator });
      assert.deepEqual(everything.body.items.map((a: { id: string }) => a.id).filter((id: string) => id.startsWith('sc-')).sort(), ['sc-none', 'sc-out']);
      assert.equal((await c.call('POST', '/api/v1/alerts/sc-none/ack', { token: c.tokens.operator })).body.state, 'acknowledged');
    });
  });
}
