/**
 * The SQLite helper thread (see checkpointer.ts), with its own connection to the database file:
 * - WAL checkpoints every `everyMs`. A PASSIVE checkpoint copies what it can without waiting
 *   for, or blocking, the gateway's connection.
 * - Appends of recent decisions (their event JSON texts), their folded repeats and prunes of
 *   that window, so the inserts, updates and deletes (about 5 µs of the proxy thread's time
 *   per decision when they ran there, measured) happen here.
 */
import { parentPort, workerData } from 'node:worker_threads';
import Database from 'better-sqlite3';
import type { DecisionEvent } from '../events/catalogue.js';
import { eventFromJson } from '../events/json.js';
import { DECISION_FOLD_SQL, DECISION_INSERT_ONE, decisionRow, pruneBounds, type DecisionFold } from './recent.js';

export type ToHelper =
  | 'stop'
  | { readonly t: 'append'; readonly id: number; readonly data: string }
  | { readonly t: 'fold'; readonly id: number; readonly folds: readonly DecisionFold[] }
  | { readonly t: 'prune'; readonly id: number; readonly maxRows: number };
export type FromHelper =
  | { readonly error: string }
  | { readonly t: 'done'; readonly id: number; readonly n?: number; readonly error?: string };

const { file, everyMs } = workerData as { file: string; everyMs: number };
const db = new Database(file);
db.pragma('busy_timeout = 5000');
// Prepared on first use: the checkpoints alone need no schema.
let stmts: { appendAll: (texts: string[]) => void; foldAll: (folds: readonly DecisionFold[]) => void; lo: Database.Statement; hi: Database.Statement; prune: Database.Statement } | null = null;
function prepared(): NonNullable<typeof stmts> {
  if (stmts !== null) return stmts;
  const insert = db.prepare(DECISION_INSERT_ONE);
  const update = db.prepare(DECISION_FOLD_SQL);
  stmts = {
    appendAll: db.transaction((texts: string[]) => {
      // eventFromJson keeps the received text as the event's JSON: the stored body is those
      // bytes, not a second serialization.
      for (const t of texts) insert.run(decisionRow(eventFromJson(t) as DecisionEvent));
    }),
    foldAll: db.transaction((folds: readonly DecisionFold[]) => {
      for (const f of folds) update.run(f.repeats, f.lastTime, f.id);
    }),
    // Separate statements: SQLite answers a lone min() or max() from the primary key, but
    // `SELECT min(seq), max(seq)` scans the whole table.
    lo: db.prepare('SELECT min(seq) AS v FROM events'),
    hi: db.prepare('SELECT max(seq) AS v FROM events'),
    prune: db.prepare('DELETE FROM events WHERE seq <= ?'),
  };
  return stmts;
}

function pruneTo(maxRows: number): number {
  const { lo, hi, prune } = prepared();
  const first = (lo.get() as { v: number | null }).v;
  const last = (hi.get() as { v: number | null }).v;
  let deleted = 0;
  // Chunks: each DELETE holds the write lock only briefly, so the gateway's own writes
  // (audit, devices) never wait long behind it.
  for (const upTo of pruneBounds(first, last, maxRows)) deleted += prune.run(upTo).changes;
  return deleted;
}

const post = (m: FromHelper): void => parentPort?.postMessage(m);
const timer = setInterval(() => {
  try {
    db.pragma('wal_checkpoint(PASSIVE)');
  } catch (err) {
    post({ error: (err as Error).message });
  }
}, everyMs);
parentPort?.on('message', (m: ToHelper) => {
  if (m === 'stop') {
    clearInterval(timer);
    try { db.pragma('wal_checkpoint(PASSIVE)'); } catch { /* the main connection checkpoints at close */ }
    db.close();
    parentPort?.close();
    return;
  }
  try {
    if (m.t === 'append') {
      prepared().appendAll(m.data.split('\n'));
      post({ t: 'done', id: m.id });
    } else if (m.t === 'fold') {
      prepared().foldAll(m.folds);
      post({ t: 'done', id: m.id });
    } else {
      post({ t: 'done', id: m.id, n: pruneTo(m.maxRows) });
    }
  } catch (err) {
    post({ t: 'done', id: m.id, error: (err as Error).message });
  }
});
