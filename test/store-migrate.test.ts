/**
 * The store on both real backends: migrations (idempotent, refusal of a newer schema), numeric
 * times, the audit hash chain (append, verify, tamper detection), and the policy state's
 * compare-and-set.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ChokepointError } from '../src/core/errors.js';
import { openStore, type Store, verifyChain, chainHash, GENESIS_HASH, listAudit, appendAudit, bootstrapAdmin, MIGRATIONS } from '../src/store/index.js';
import { authenticate } from '../src/store/admins.js';
import { casState, getState, insertVersion } from '../src/store/policies.js';
import { looksLikeToken } from '../src/store/tokens.js';
import { BACKENDS, type TestBackend } from './helpers/store.js';

for (const make of BACKENDS) {
  const backend = make();
  describe(`store on ${backend.name}`, () => {
    let store: Store;
    before(async () => { store = await backend.open(); });
    after(async () => { await store.close(); await backend.cleanup(); });

    it('runs every migration once and is idempotent on reopen', async () => {
      const rows = await store.db.selectFrom('schema_migrations').select('id').execute();
      assert.deepEqual(rows.map((r) => r.id).sort(), MIGRATIONS.map((m) => m.id).sort());
      const again = await backend.open();
      const rows2 = await again.db.selectFrom('schema_migrations').select('id').execute();
      assert.equal(rows2.length, rows.length);
      await again.close();
    });

    it('returns times as numbers, not strings', async () => {
      const s = await getState(store.db);
      assert.equal(typeof s.generation, 'number');
      assert.equal(typeof s.updated_at, 'number');
    });

    it('bootstraps the first security-admin once; its token authenticates', async () => {
      const token = await bootstrapAdmin(store);
      assert.ok(token && looksLikeToken('cpa', token));
      assert.equal(await bootstrapAdmin(store), null);
      const who = await authenticate(store.db, token);
      assert.equal(who?.admin.role, 'security-admin');
      assert.equal(await authenticate(store.db, token + 'x'), null);
      const stored = await store.db.selectFrom('api_tokens').select('token_hash').execute();
      assert.ok(stored.every((r) => /^[0-9a-f]{64}$/.test(r.token_hash) && r.token_hash !== token), 'only hashes are stored');
    });

    it('chains audit entries; concurrent appends never fork; an edited row is found', async () => {
      await Promise.all(Array.from({ length: 20 }, (_, i) => store.tx((trx) => appendAudit(trx, store.dialect, {
        actorId: null, actor: 'test', role: 'security-admin', action: `t.${i}`, result: 'ok', before: { i }, after: { i: i + 1 },
      }))));
      const rows = await listAudit(store.db, { limit: 1000 });
      assert.ok(rows.length >= 20);
      const ok = verifyChain(rows);
      assert.equal(ok.ok, true);
      const victim = rows[5]!;
      await store.db.updateTable('audit_log').set({ detail: 'edited' }).where('seq', '=', victim.seq).execute();
      const bad = verifyChain(await listAudit(store.db, { limit: 1000 }));
      assert.equal(bad.ok, false);
      assert.equal(!bad.ok && bad.seq, victim.seq);
      await store.db.updateTable('audit_log').set({ detail: null }).where('seq', '=', victim.seq).execute();
      await store.db.deleteFrom('audit_log').where('seq', '=', rows[7]!.seq).execute();
      const gone = verifyChain(await listAudit(store.db, { limit: 1000 }));
      assert.equal(!gone.ok && gone.seq, rows[8]!.seq);
    });

    it('chains the API token that acted; entries without one keep the hash they always had', async () => {
      const base = { seq: 1, time: 1_700_000_000_000, actor_id: 'a', actor: 'alice', role: 'operator', action: 'x', target: null, result: 'ok', source_ip: null, before: null, after: null, detail: null };
      // An entry written before migration 0004 has no token_id field at all.
      assert.equal(chainHash(GENESIS_HASH, { ...base, token_id: null }), chainHash(GENESIS_HASH, base));
      assert.notEqual(chainHash(GENESIS_HASH, { ...base, token_id: 't1' }), chainHash(GENESIS_HASH, base));
      const e = await store.tx((trx) => appendAudit(trx, store.dialect, { actorId: 'a', tokenId: 'tok-1', actor: 'alice', role: 'operator', action: 'with.token', result: 'ok' }));
      assert.equal(e.token_id, 'tok-1');
      const mine = await listAudit(store.db, { limit: 10, tokenId: 'tok-1' });
      assert.deepEqual(mine.map((r) => [r.action, r.token_id]), [['with.token', 'tok-1']]);
      // (An earlier test broke the chain on purpose: the entry's own link is what is checked.)
      const linkOk = async () => {
        const [r] = await listAudit(store.db, { limit: 1, afterSeq: e.seq - 1 });
        return r !== undefined && chainHash(r.prev_hash, r) === r.hash;
      };
      assert.equal(await linkOk(), true);
      // Rewriting which token acted breaks the entry's link.
      await store.db.updateTable('audit_log').set({ token_id: 'tok-2' }).where('seq', '=', e.seq).execute();
      assert.equal(await linkOk(), false);
      await store.db.updateTable('audit_log').set({ token_id: null }).where('seq', '=', e.seq).execute();
      assert.equal(await linkOk(), false, 'nor can it be erased');
    });

    it('a change and its audit entry commit together or not at all', async () => {
      const before = (await listAudit(store.db, { limit: 10_000 })).length;
      await assert.rejects(store.tx(async (trx) => {
        await appendAudit(trx, store.dialect, { actorId: null, actor: 'test', role: 'x', action: 'doomed', result: 'ok' });
        throw new Error('change failed');
      }));
      assert.equal((await listAudit(store.db, { limit: 10_000 })).length, before);
    });

    it('compare-and-set on the policy state: of concurrent writers exactly one wins', async () => {
      const v = await insertVersion(store.db, { text: 'version: 1\n', digest: 'd', author: 't', author_id: null, reason: 'r', created_at: Date.now() });
      const s = await getState(store.db);
      const results = await Promise.all(Array.from({ length: 8 }, () => store.tx((trx) => casState(trx, s.generation, { applied_version: v.version, pilot_version: null, pilot_group: null }))));
      assert.equal(results.filter((r) => r !== null).length, 1);
      assert.equal((await getState(store.db)).generation, s.generation + 1);
    });

    it('refuses a database written by a newer release (STORE_SCHEMA_NEWER)', async () => {
      await store.db.insertInto('schema_migrations').values({ id: '9999_from_the_future', applied_at: Date.now() }).execute();
      await assert.rejects(backend.open(), (e: unknown) => e instanceof ChokepointError && e.code === 'STORE_SCHEMA_NEWER' && /9999_from_the_future/.test(e.message));
      await store.db.deleteFrom('schema_migrations').where('id', '=', '9999_from_the_future').execute();
    });
  });
}

describe('openStore input', () => {
  it('refuses a database URL that is not postgres://', async () => {
    await assert.rejects(openStore({ dataDir: '/nonexistent', database: 'mysql://x' }), (e: unknown) => e instanceof ChokepointError && e.code === 'STORE_UNAVAILABLE');
  });
  it('refuses a hostile schema name (it is interpolated into search_path)', async () => {
    await assert.rejects(openStore({ dataDir: '/nonexistent', database: 'postgres://127.0.0.1/test', schema: 'x; DROP SCHEMA public' }), (e: unknown) => e instanceof ChokepointError && e.code === 'STORE_UNAVAILABLE');
  });
  it('reports an unreachable PostgreSQL as STORE_UNAVAILABLE without hanging', async () => {
    await assert.rejects(openStore({ dataDir: '/nonexistent', database: 'postgres://postgres@127.0.0.1:1/test', schema: 'x' }), (e: unknown) => e instanceof ChokepointError && e.code === 'STORE_UNAVAILABLE');
  });
});

export type { TestBackend };
