/**
 * SQLite's WAL checkpoints off the event loop. By default the connection that commits past
 * 1000 WAL pages copies them into the database file there and then, synchronously: on the
 * gateway's thread that stalled every tunnel for tens of milliseconds every few seconds under
 * load (measured: keep-alive HTTP p99 17 ms with automatic checkpoints, 11–13 ms without). Here
 * the main connection stops checkpointing and a worker thread with its own connection does it
 * every second. If the worker cannot start or dies, automatic checkpoints come back on: the WAL
 * must never grow without bound.
 */
import { Worker } from 'node:worker_threads';
import type Database from 'better-sqlite3';

export interface Checkpointer {
  stop(): Promise<void>;
}

export function startCheckpointer(sqlite: Database.Database, file: string, onError: (message: string) => void, everyMs = 1000): Checkpointer {
  const fallBack = (why: string): void => {
    if (sqlite.open) sqlite.pragma('wal_autocheckpoint = 1000');
    onError(why);
  };
  let worker: Worker;
  try {
    worker = new Worker(new URL('./checkpoint-worker.js', import.meta.url), { workerData: { file, everyMs } });
  } catch (err) {
    fallBack(`cannot start the checkpoint thread: ${(err as Error).message}`);
    return { stop: async () => {} };
  }
  sqlite.pragma('wal_autocheckpoint = 0');
  let stopping = false;
  worker.unref();
  worker.on('message', (m: { error?: string }) => { if (m.error) onError(`checkpoint failed: ${m.error}`); });
  worker.on('error', (err) => fallBack(`checkpoint thread failed: ${err.message}`));
  const exited = new Promise<void>((resolve) => worker.on('exit', (code) => {
    if (!stopping) fallBack(`checkpoint thread exited (${code})`);
    resolve();
  }));
  return {
    stop: async () => {
      if (stopping) return exited;
      stopping = true;
      worker.ref(); // waiting for its exit must keep the process alive until it comes
      worker.postMessage('stop');
      await exited;
    },
  };
}
