/**
 * SQLite work off the event loop, on a helper thread with its own connection
 * (checkpoint-worker.ts):
 * - WAL checkpoints. By default the connection that commits past 1000 WAL pages copies them
 *   into the database file there and then, synchronously: on the gateway's thread that stalled
 *   every tunnel for tens of milliseconds every few seconds under load (measured: keep-alive
 *   HTTP p99 17 ms with automatic checkpoints, 11–13 ms without). Here the main connection
 *   stops checkpointing and the thread does it every second.
 * - Appends to and prunes of the recent-decisions window, which cost the proxy's thread about
 *   5 µs per decision (profiled under keep-alive HTTP load, about a tenth of its time).
 * If the thread cannot start or dies, automatic checkpoints come back on and appends and prunes
 * report failure (the store then does them itself): the WAL must never grow without bound.
 */
import { Worker } from 'node:worker_threads';
import type Database from 'better-sqlite3';
import type { FromHelper, ToHelper } from './checkpoint-worker.js';
import type { DecisionFold } from './recent.js';

export interface Checkpointer {
  stop(): Promise<void>;
  /** Appends decision events (their JSON texts) on the thread; rejects if it is gone or fails. */
  append(texts: readonly string[]): Promise<void>;
  /** Adds folded repeats to stored decisions on the thread. */
  fold(folds: readonly DecisionFold[]): Promise<void>;
  /** Prunes the recent window to its newest `maxRows` on the thread; resolves with rows deleted. */
  prune(maxRows: number): Promise<number>;
  /** False once the thread has failed or stopped: callers fall back to their own connection. */
  readonly alive: boolean;
}

export function startCheckpointer(sqlite: Database.Database, file: string, onError: (message: string) => void, everyMs = 1000): Checkpointer {
  const pending = new Map<number, { resolve: (n: number) => void; reject: (e: Error) => void }>();
  let alive = true;
  const fallBack = (why: string): void => {
    alive = false;
    if (sqlite.open) sqlite.pragma('wal_autocheckpoint = 1000');
    for (const p of pending.values()) p.reject(new Error(why));
    pending.clear();
    onError(why);
  };
  let worker: Worker;
  try {
    worker = new Worker(new URL('./checkpoint-worker.js', import.meta.url), { workerData: { file, everyMs } });
  } catch (err) {
    fallBack(`cannot start the checkpoint thread: ${(err as Error).message}`);
    const gone = () => Promise.reject(new Error('no checkpoint thread'));
    return { stop: async () => {}, append: gone, fold: gone, prune: gone, alive: false };
  }
  sqlite.pragma('wal_autocheckpoint = 0');
  let stopping = false;
  let nextId = 0;
  worker.unref();
  worker.on('message', (m: FromHelper) => {
    if ('error' in m && !('t' in m)) { onError(`checkpoint failed: ${m.error}`); return; }
    if (!('t' in m)) return;
    const p = pending.get(m.id);
    pending.delete(m.id);
    if (pending.size === 0 && !stopping) worker.unref();
    if (m.error !== undefined) p?.reject(new Error(m.error));
    else p?.resolve(m.n ?? 0);
  });
  worker.on('error', (err) => fallBack(`checkpoint thread failed: ${err.message}`));
  const exited = new Promise<void>((resolve) => worker.on('exit', (code) => {
    if (!stopping) fallBack(`checkpoint thread exited (${code})`);
    else alive = false;
    resolve();
  }));
  const call = (m: Exclude<ToHelper, 'stop'>): Promise<number> => {
    if (!alive || stopping) return Promise.reject(new Error('the checkpoint thread is not running'));
    return new Promise<number>((resolve, reject) => {
      pending.set(m.id, { resolve, reject });
      worker.ref(); // an answer is owed: keep the process alive for it
      worker.postMessage(m);
    });
  };
  return {
    get alive() { return alive && !stopping; },
    append: async (texts) => { if (texts.length > 0) await call({ t: 'append', id: ++nextId, data: texts.join('\n') }); },
    fold: async (folds) => { if (folds.length > 0) await call({ t: 'fold', id: ++nextId, folds }); },
    prune: (maxRows) => call({ t: 'prune', id: ++nextId, maxRows }),
    stop: async () => {
      if (stopping) return exited;
      stopping = true;
      worker.ref(); // waiting for its exit must keep the process alive until it comes
      worker.postMessage('stop' satisfies ToHelper);
      await exited;
    },
  };
}
