/**
 * The recent-decisions window on both real backends: a burst larger than one statement's
 * parameter limit is stored whole (it used to be one INSERT, which SQLite refused past about
 * 2,900 rows, losing the batch), rows read back as the events they were, and a batch written
 * while another transaction is open does not become part of it (a rollback there must not
 * take the decisions with it). Pruning keeps the newest rows and works in chunks.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { Kysely, SqliteDialect } from 'kysely';
import type { DecisionEvent } from '../src/events/catalogue.js';
import { MIGRATIONS, openStore, type Store } from '../src/store/index.js';
import { migrate } from '../src/store/migrate.js';
import type { DB } from '../src/store/schema.js';
import { pruneDecisions, queryDecisions } from '../src/store/recent.js';
import { BACKENDS } from './helpers/store.js';

function decision(i: number, host = `h${i}.example.com`): DecisionEvent {
  return {
    v: 1, type: 'gateway.decision', time: new Date(1_800_000_000_000 + i).toISOString(), id: `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`,
    listener: 'proxy', client_ip: '10.0.0.1', client_port: 40000 + (i % 20000), group: 'servers', device_id: i % 2 === 0 ? `dev-${i}` : null, asset_id: null, serial: null,
    method: 'CONNECT', host, port: 443, address: '192.0.2.1', verdict: i % 3 === 0 ? 'deny' : 'allow', reason: i % 3 === 0 ? 'no_rule_matched' : 'allowed',
    rule: i % 3 === 0 ? null : 'groups.servers.allow[0]', mode: 'enforce', sni: null, tls_version: null, address_class: null, detail: null, status: i % 3 === 0 ? 403 : null,
  };
}

for (const make of BACKENDS) {
  const backend = make();
  describe(`recent decisions on ${backend.name}`, () => {
    let store: Store;
    before(async () => { store = await backend.open(); });
    after(async () => { await store.close(); await backend.cleanup(); });

    it('stores a burst of 7,000 decisions whole, each readable as the event it was', async () => {
      const burst = Array.from({ length: 7000 }, (_, i) => decision(i));
      await store.appendDecisions(burst);
      const rows = await queryDecisions(store.db, { limit: 10_000 });
      assert.equal(rows.length, 7000);
      // Newest first; the body is the event itself, and the indexed columns agree with it.
      assert.deepEqual(rows[0]?.event, burst[6999]);
      assert.deepEqual(rows.at(-1)?.event, burst[0]);
      const denied = await queryDecisions(store.db, { verdict: 'deny', limit: 10_000 });
      assert.equal(denied.length, burst.filter((e) => e.verdict === 'deny').length);
      const dev = await queryDecisions(store.db, { device: 'dev-42', limit: 10 });
      assert.deepEqual(dev.map((r) => r.event.id), [burst[42]?.id]);
    });

    it('prunes to the newest rows, in chunks that let other work run between them', async () => {
      const before = (await queryDecisions(store.db, { limit: 100_000 })).length;
      await store.appendDecisions(Array.from({ length: 2500 }, (_, i) => decision(50_000 + i)));
      let pauses = 0;
      const deleted = await pruneDecisions(store.db, 1200, async () => { pauses++; });
      assert.equal(deleted, before + 2500 - 1200);
      assert.ok(pauses >= Math.ceil(deleted / 1000), `yielded ${pauses} times for ${deleted} rows`);
      const rows = await queryDecisions(store.db, { limit: 100_000 });
      assert.equal(rows.length, 1200);
      assert.deepEqual(rows.map((r) => r.event.client_port), Array.from({ length: 1200 }, (_, i) => 40000 + ((50_000 + 2499 - i) % 20000)), 'the newest, newest first');
      assert.equal(await pruneDecisions(store.db, 1200), 0, 'nothing more to prune');
    });

    it('adds folded repeats to a stored decision and returns them with it; a row that is gone takes none', async () => {
      const d = decision(95_000, 'folded.example.com');
      const plain = decision(95_001, 'plain.example.com');
      await store.appendDecisions([d, plain]);
      await store.foldDecisions([{ id: d.id, repeats: 41, lastTime: 1_800_000_100_000 }]);
      await store.foldDecisions([{ id: d.id, repeats: 1, lastTime: 1_800_000_200_000 }, { id: 'no-such-event', repeats: 5, lastTime: 1 }]);
      const [r] = await queryDecisions(store.db, { host: 'folded.example.com', limit: 5 });
      assert.deepEqual(r?.event, d);
      assert.equal(r?.repeats, 42);
      assert.equal(r?.lastTime, 1_800_000_200_000);
      const [p] = await queryDecisions(store.db, { host: 'plain.example.com', limit: 5 });
      assert.equal(p?.repeats, 0);
      assert.equal(p?.lastTime, null);
      // A time range matches a run that overlaps it, not only one that began in it.
      const t0 = Date.parse(d.time);
      const inRange = (since: number, until?: number) => queryDecisions(store.db, { host: 'folded.example.com', since, until, limit: 5 }).then((x) => x.length);
      assert.equal(await inRange(t0 + 1000), 1, 'began before, repeated after');
      assert.equal(await inRange(1_800_000_200_001), 0, 'ended before');
      assert.equal(await inRange(t0 - 1000, t0), 0, 'began after the range');
      assert.equal(await queryDecisions(store.db, { host: 'plain.example.com', since: Date.parse(plain.time) + 1, limit: 5 }).then((x) => x.length), 0, 'an unrepeated row is its own time');
    });

    it('folds thousands of rows in one call (PostgreSQL: a statement per thousand), each onto its own row', async () => {
      const many = Array.from({ length: 2500 }, (_, i) => decision(120_000 + i, `many-${i}.example.com`));
      await store.appendDecisions(many);
      await store.foldDecisions(many.map((d, i) => ({ id: d.id, repeats: i + 1, lastTime: 1_900_000_000_000 + i })));
      const rows = (await queryDecisions(store.db, { limit: 10_000 })).filter((r) => r.event.host?.startsWith('many-'));
      assert.equal(rows.length, 2500);
      for (const r of rows) {
        const i = Number(r.event.host?.slice(5, -12));
        assert.equal(r.repeats, i + 1, r.event.host ?? '');
        assert.equal(r.lastTime, 1_900_000_000_000 + i);
      }
    });

    it('does not join a transaction that is open on the same store (its rollback keeps the decisions)', async () => {
      const marker = decision(90_001, 'during-tx.example.com');
      let release!: () => void;
      let entered!: () => void;
      const held = new Promise<void>((r) => { release = r; });
      const inside = new Promise<void>((r) => { entered = r; });
      const tx = store.tx(async (trx) => {
        await trx.insertInto('events').values({ event_id: 'in-tx', time: 0, verdict: 'deny', reason: 'x', body: '{}' }).execute();
        entered();
        await held;
        throw new Error('roll back');
      }).catch((e: Error) => e.message);
      await inside;
      // The other transaction is open and waiting: append now, then let it roll back.
      const appended = store.appendDecisions([marker]);
      release();
      assert.equal(await tx, 'roll back');
      await appended;
      const rows = await queryDecisions(store.db, { host: 'during-tx.example.com', limit: 5 });
      assert.deepEqual(rows.map((r) => r.event.id), [marker.id]);
      // And the other transaction's own row did roll back.
      assert.equal((await store.db.selectFrom('events').select('seq').where('event_id', '=', 'in-tx').execute()).length, 0);
    });
  });
}

describe('recent decisions on a store written before decision folding', () => {
  it('gains the repeats and last_time columns; its rows read as never repeated', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'cp-store-old-'));
    try {
      const sqlite = new Database(join(dataDir, 'chokepoint.db'));
      const old = new Kysely<DB>({ dialect: new SqliteDialect({ database: sqlite }) });
      await migrate(old, 'sqlite', MIGRATIONS.filter((m) => m.id !== '0003_decision_folds'));
      const d = decision(7, 'before-upgrade.example.com');
      await old.insertInto('events').values({ event_id: d.id, time: 0, verdict: d.verdict, reason: d.reason, host: d.host, body: JSON.stringify(d) } as never).execute();
      await old.destroy();
      const store = await openStore({ dataDir });
      try {
        const [r] = await queryDecisions(store.db, { host: 'before-upgrade.example.com', limit: 5 });
        assert.deepEqual(r?.event, d);
        assert.equal(r?.repeats, 0);
        assert.equal(r?.lastTime, null);
        await store.foldDecisions([{ id: d.id, repeats: 2, lastTime: 5 }]);
        assert.equal((await queryDecisions(store.db, { host: 'before-upgrade.example.com', limit: 5 }))[0]?.repeats, 2);
      } finally {
        await store.close();
      }
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
