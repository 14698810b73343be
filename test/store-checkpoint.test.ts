/**
 * WAL checkpoints off the gateway's thread (src/store/checkpointer.ts): the main connection
 * stops checkpointing inside commits, a worker thread copies the WAL into the database file
 * within about a second, and if that thread fails, automatic checkpoints come back on.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import type { DecisionEvent } from '../src/events/catalogue.js';
import { startCheckpointer } from '../src/store/checkpointer.js';
import { openStore, type Store } from '../src/store/index.js';
import { insertDecisions, queryDecisions } from '../src/store/recent.js';

const decision = (i: number): DecisionEvent => ({
  v: 1, type: 'gateway.decision', time: new Date(1_800_000_000_000 + i).toISOString(), id: `id-${i}`, listener: 'proxy', client_ip: '10.0.0.1', client_port: 1,
  group: 'g', device_id: null, asset_id: null, serial: null, method: 'CONNECT', host: `h${i}.example.com`, port: 443, address: '192.0.2.1', verdict: 'allow',
  reason: 'allowed', rule: 'groups.g.allow[0]', mode: 'enforce', sni: null, tls_version: null, address_class: null, detail: 'x'.repeat(300), status: null,
});

/** A store in a fresh directory (with the helper thread unless `helper` is false), removed afterwards. */
async function withStore(helper: boolean, fn: (store: Store, dir: string, errors: string[]) => Promise<void>): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'cp-ckpt-'));
  const errors: string[] = [];
  const store = await openStore({ dataDir: dir, ...(helper ? { backgroundCheckpoints: { onError: (m: string) => errors.push(m) } } : {}) });
  try {
    await fn(store, dir, errors);
  } finally {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

describe('SQLite checkpoints on a worker thread', () => {
  it('the gateway connection does not checkpoint; the worker copies the WAL into the database file', async () => {
    await withStore(true, async (store, dir, errors) => {
      const file = join(dir, 'chokepoint.db');
      const before = statSync(file).size;
      // About 8 MB of WAL, written on the main connection (decision appends go to the helper
      // thread, whose commits may checkpoint: that is off the gateway's thread and fine): past
      // the 1000 pages (4 MB) where a commit would checkpoint by itself.
      for (let i = 0; i < 10; i++) await store.tx((trx) => insertDecisions(trx, 'sqlite', Array.from({ length: 1000 }, (_, k) => decision(i * 1000 + k))));
      assert.ok(statSync(`${file}-wal`).size > 4 * 1024 * 1024, 'the WAL grew past the automatic threshold');
      assert.equal(statSync(file).size, before, 'no commit copied pages into the database file');
      const deadline = Date.now() + 10_000;
      // A PASSIVE checkpoint copies what it can each time: it may take more than one run.
      while (statSync(file).size <= before + 4 * 1024 * 1024 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
      assert.ok(statSync(file).size > before + 4 * 1024 * 1024, 'the worker checkpointed the WAL into the database file');
      assert.deepEqual(errors, []);
    });
  });

  it('decision appends and prunes run on the helper thread; the rows are there for the main connection, in order', async () => {
    await withStore(true, async (store, _dir, errors) => {
      for (let i = 0; i < 5; i++) await store.appendDecisions(Array.from({ length: 500 }, (_, k) => decision(i * 500 + k)));
      const newest = await queryDecisions(store.db, { limit: 3 });
      assert.deepEqual(newest.map((r) => r.event.id), ['id-2499', 'id-2498', 'id-2497']);
      assert.equal(await store.pruneDecisions(1000), 1500);
      const left = await store.db.selectFrom('events').select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow();
      assert.equal(Number(left.n), 1000);
      assert.equal(await store.pruneDecisions(1000), 0, 'nothing more to prune');
      // Folded repeats go the same way, onto the rows the helper wrote.
      await store.foldDecisions([{ id: 'id-2499', repeats: 7, lastTime: 1234 }, { id: 'id-0', repeats: 1, lastTime: 1 }]);
      const [top] = await queryDecisions(store.db, { limit: 1 });
      assert.deepEqual([top?.repeats, top?.lastTime], [7, 1234]);
      assert.deepEqual(errors, []);
    });
  });

  it('without the helper thread, appends and prunes run on the main connection', async () => {
    await withStore(false, async (store) => {
      await store.appendDecisions(Array.from({ length: 300 }, (_, k) => decision(k)));
      assert.equal(await store.pruneDecisions(100), 200);
      const newest = await queryDecisions(store.db, { limit: 1 });
      assert.equal(newest[0]?.event.id, 'id-299');
      await store.foldDecisions([{ id: 'id-299', repeats: 2, lastTime: 99 }]);
      assert.equal((await queryDecisions(store.db, { limit: 1 }))[0]?.repeats, 2);
    });
  });

  it('when the worker cannot do its job, automatic checkpoints come back on and the failure is reported', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cp-ckpt-'));
    const db = new Database(join(dir, 'x.db'));
    db.pragma('journal_mode = WAL');
    const errors: string[] = [];
    // The worker's own connection cannot open this file: it fails as soon as it starts.
    const c = startCheckpointer(db, join(dir, 'missing', 'x.db'), (m) => errors.push(m), 50);
    try {
      assert.equal(db.pragma('wal_autocheckpoint', { simple: true }), 0, 'handed to the worker');
      const deadline = Date.now() + 10_000;
      while (errors.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      assert.match(errors[0] ?? '', /checkpoint thread/);
      assert.equal(db.pragma('wal_autocheckpoint', { simple: true }), 1000);
      assert.equal(c.alive, false, 'callers are told to do their own appends');
      await assert.rejects(c.append(['{}']), /not running/);
    } finally {
      await c.stop();
      db.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
