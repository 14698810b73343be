/**
 * openStore(): the one way to reach the database. SQLite (a file under the data directory) is
 * the embedded default; a `postgres://` URL selects PostgreSQL. Migrations run before the store
 * is returned.
 */
import { chmodSync, closeSync, mkdirSync, openSync, statSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { Kysely, PostgresDialect, SqliteDialect, sql, type Transaction } from 'kysely';
import pg from 'pg';
import { ChokepointError } from '../core/errors.js';
import { startCheckpointer, type Checkpointer } from './checkpointer.js';
import { jsonOf } from '../events/json.js';
import { migrate, type Dialect } from './migrate.js';
import { MIGRATIONS } from './migrations.js';
import type { DB } from './schema.js';
import type { DecisionEvent } from '../events/catalogue.js';
import { decisionRow, DECISION_FOLD_SQL, DECISION_INSERT_ONE, foldDecisions, insertDecisions, pruneDecisions, yieldTurn, type DecisionFold } from './recent.js';

/** Decisions per synchronous SQLite transaction (about 1 ms of work). */
const APPEND_SLICE = 128;

export interface OpenStoreOptions {
  /** A `postgres://` or `postgresql://` URL; absent: SQLite at `<dataDir>/chokepoint.db`. */
  readonly database?: string;
  readonly dataDir: string;
  /** PostgreSQL only: the schema to use (created when missing, set as search_path). */
  readonly schema?: string;
  /**
   * SQLite only: run WAL checkpoints on a worker thread instead of inside commits on this one
   * (the gateway sets it; see checkpointer.ts). Errors are reported here.
   */
  readonly backgroundCheckpoints?: { readonly onError: (message: string) => void };
}

export type Exec = Kysely<DB> | Transaction<DB>;

export interface Store {
  readonly db: Kysely<DB>;
  readonly dialect: Dialect;
  /** Human description without secrets (no password), for logs. */
  readonly location: string;
  /** Runs `fn` in one transaction (committed when it resolves, rolled back when it throws). */
  tx<T>(fn: (trx: Transaction<DB>) => Promise<T>): Promise<T>;
  /** Resolves when the database answers a trivial query; rejects otherwise. */
  ping(): Promise<void>;
  /** Appends gateway decisions to the recent window (the gateway's hot write), in order, in slices of a few ms at most. */
  appendDecisions(events: readonly DecisionEvent[]): Promise<void>;
  /** Adds folded repeats to stored decisions (rows pruned meanwhile are skipped). */
  foldDecisions(folds: readonly DecisionFold[]): Promise<void>;
  /** Keeps the newest `maxRows` decisions of the recent window; resolves with rows deleted. */
  pruneDecisions(maxRows: number): Promise<number>;
  close(): Promise<void>;
}

const PG_BIGINT = 20;
const SCHEMA_NAME = /^[a-z_][a-z0-9_]{0,62}$/;

export async function openStore(opts: OpenStoreOptions): Promise<Store> {
  const url = opts.database;
  if (url !== undefined && !/^postgres(ql)?:\/\//.test(url)) {
    throw new ChokepointError('STORE_UNAVAILABLE', 'database must be a postgres:// URL (omit it for SQLite in the data directory)');
  }
  let db: Kysely<DB>;
  let sqliteDb: Database.Database | null = null;
  let sqliteFile = '';
  let dialect: Dialect;
  let location: string;
  if (url !== undefined) {
    if (opts.schema !== undefined && !SCHEMA_NAME.test(opts.schema)) {
      throw new ChokepointError('STORE_UNAVAILABLE', `invalid schema name ${JSON.stringify(opts.schema)}`);
    }
    const pool = new pg.Pool({
      connectionString: url,
      max: 10,
      connectionTimeoutMillis: 5000,
      // An unreachable database must fail fast, never hang a request (or the readiness check).
      query_timeout: 15_000,
      ...(opts.schema !== undefined ? { options: `-c search_path=${opts.schema}` } : {}),
      // Times are bigint columns: numbers, not strings (all fit in 2^53).
      types: { getTypeParser: ((oid: number, fmt?: 'text' | 'binary') => oid === PG_BIGINT ? (v: string) => Number(v) : pg.types.getTypeParser(oid, fmt as 'text')) as typeof pg.types.getTypeParser },
    });
    // An idle client losing its server must not crash the process (pg emits 'error' on the pool).
    pool.on('error', () => {});
    db = new Kysely<DB>({ dialect: new PostgresDialect({ pool }) });
    dialect = 'postgres';
    location = redact(url) + (opts.schema ? ` (schema ${opts.schema})` : '');
    try {
      if (opts.schema !== undefined) await sql`CREATE SCHEMA IF NOT EXISTS ${sql.id(opts.schema)}`.execute(db);
    } catch (cause) {
      await db.destroy().catch(() => {});
      throw new ChokepointError('STORE_UNAVAILABLE', `cannot reach the database ${location}`, { cause });
    }
  } else {
    mkdirSync(opts.dataDir, { recursive: true, mode: 0o700 });
    const file = join(opts.dataDir, 'chokepoint.db');
    let sqlite: Database.Database;
    try {
      ownerOnly(file);
      sqlite = new Database(file);
      sqlite.pragma('journal_mode = WAL');
      sqlite.pragma('foreign_keys = ON');
      sqlite.pragma('busy_timeout = 5000');
      sqlite.pragma('synchronous = NORMAL');
    } catch (cause) {
      throw new ChokepointError('STORE_UNAVAILABLE', `cannot open the SQLite database ${file}`, { cause });
    }
    db = new Kysely<DB>({ dialect: new SqliteDialect({ database: sqlite }) });
    sqliteDb = sqlite;
    sqliteFile = file;
    dialect = 'sqlite';
    location = file;
  }
  try {
    await migrate(db, dialect, MIGRATIONS);
  } catch (err) {
    await db.destroy().catch(() => {});
    if (err instanceof ChokepointError) throw err;
    throw new ChokepointError('STORE_UNAVAILABLE', `cannot prepare the database ${location}`, { cause: err });
  }
  const checkpointer = sqliteDb !== null && opts.backgroundCheckpoints ? startCheckpointer(sqliteDb, sqliteFile, opts.backgroundCheckpoints.onError) : null;
  let closed = false;
  const tx = <T>(fn: (trx: Transaction<DB>) => Promise<T>): Promise<T> => db.transaction().execute(fn);
  return {
    db, dialect, location, tx,
    appendDecisions: sqliteDb === null
      ? (events) => tx((trx) => insertDecisions(trx, dialect, events))
      : onHelper(checkpointer, (h, events) => h.append(events.map(jsonOf)), sqliteSliced(sqliteDb, DECISION_INSERT_ONE, decisionRow, (events) => tx((trx) => insertDecisions(trx, dialect, events)))),
    foldDecisions: sqliteDb === null
      ? (folds) => tx((trx) => foldDecisions(trx, dialect, folds))
      : onHelper(checkpointer, (h, folds) => h.fold(folds), sqliteSliced(sqliteDb, DECISION_FOLD_SQL, (f: DecisionFold) => [f.repeats, f.lastTime, f.id], (folds) => tx((trx) => foldDecisions(trx, dialect, folds)))),
    pruneDecisions: onHelper(checkpointer, (h, maxRows: number) => h.prune(maxRows), (maxRows) => pruneDecisions(db, maxRows)),
    ping: async () => { await sql`SELECT 1`.execute(db); },
    close: async () => {
      if (closed) return;
      closed = true;
      await checkpointer?.stop();
      await db.destroy();
    },
  };
}

/**
 * SQLite writes of the recent window on this connection (decision appends, fold updates): one
 * prepared statement in a synchronous transaction, about 8 µs a row against 20–70 µs through
 * the query builder (which prepares a new statement per call). Kysely drives the same
 * connection; while one of its transactions is open (it awaits between statements), these rows
 * would silently join it, so they take Kysely's path and wait their turn.
 */
function sqliteSliced<T>(sqlite: Database.Database, text: string, params: (item: T) => unknown[], viaKysely: (items: readonly T[]) => Promise<void>): (items: readonly T[]) => Promise<void> {
  const statement = sqlite.prepare(text);
  const all = sqlite.transaction((items: readonly T[]) => {
    for (const x of items) statement.run(params(x));
  });
  return async (items) => {
    // Slices, yielding between them: the statements run on the event loop, and a 200 ms batch
    // at several thousand decisions a second would otherwise stall every tunnel for milliseconds.
    for (let i = 0; i < items.length; i += APPEND_SLICE) {
      if (i > 0) await yieldTurn();
      const slice = items.slice(i, i + APPEND_SLICE);
      if (sqlite.inTransaction) await viaKysely(slice);
      else all(slice);
    }
  };
}

/**
 * SQLite work the helper thread takes (checkpointer.ts) while it runs; on this connection when
 * there is none or it has died (even during this call: its transaction rolled back, so nothing
 * is done twice — except in the instant between its commit and its death, which costs at most
 * one batch of duplicate rows in a query cache). A statement that failed on a live helper
 * (a busy or broken database) is reported, not retried here: this connection would only meet
 * the same lock, waiting for it on the proxy's thread.
 */
function onHelper<A, R>(helper: Checkpointer | null, viaHelper: (h: Checkpointer, a: A) => Promise<R>, here: (a: A) => Promise<R>): (a: A) => Promise<R> {
  return async (a) => {
    if (helper === null || !helper.alive) return here(a);
    try {
      return await viaHelper(helper, a);
    } catch (err) {
      if (helper.alive) throw err;
      return here(a);
    }
  };
}

function redact(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return 'postgres://(unparseable url)';
  }
}

/**
 * The store holds decisions (client addresses, destinations, devices), the audit log and token
 * hashes: owner-only, whatever the umask or a data directory the operator made beforehand
 * (0755 is usual) would give. SQLite gives its -wal and -shm files the database file's mode.
 */
function ownerOnly(file: string): void {
  // Best effort: a file system without modes, or a file another user owns, is SQLite's to open
  // or refuse with its own error.
  try {
    closeSync(openSync(file, 'a', 0o600));
  } catch {
    return;
  }
  for (const f of [file, `${file}-wal`, `${file}-shm`]) {
    try {
      if ((statSync(f).mode & 0o077) !== 0) chmodSync(f, 0o600);
    } catch {
      // ENOENT (no WAL yet), EPERM, ENOTSUP: nothing more to do here
    }
  }
}
