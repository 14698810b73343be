/**
 * openStore(): the one way to reach the database. SQLite (a file under the data directory) is
 * the embedded default; a `postgres://` URL selects PostgreSQL. Migrations run before the store
 * is returned.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { Kysely, PostgresDialect, SqliteDialect, sql, type Transaction } from 'kysely';
import pg from 'pg';
import { ChokepointError } from '../core/errors.js';
import { migrate, type Dialect } from './migrate.js';
import { MIGRATIONS } from './migrations.js';
import type { DB } from './schema.js';

export interface OpenStoreOptions {
  /** A `postgres://` or `postgresql://` URL; absent: SQLite at `<dataDir>/chokepoint.db`. */
  readonly database?: string;
  readonly dataDir: string;
  /** PostgreSQL only: the schema to use (created when missing, set as search_path). */
  readonly schema?: string;
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
      sqlite = new Database(file);
      sqlite.pragma('journal_mode = WAL');
      sqlite.pragma('foreign_keys = ON');
      sqlite.pragma('busy_timeout = 5000');
      sqlite.pragma('synchronous = NORMAL');
    } catch (cause) {
      throw new ChokepointError('STORE_UNAVAILABLE', `cannot open the SQLite database ${file}`, { cause });
    }
    db = new Kysely<DB>({ dialect: new SqliteDialect({ database: sqlite }) });
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
  let closed = false;
  return {
    db, dialect, location,
    tx: (fn) => db.transaction().execute(fn),
    ping: async () => { await sql`SELECT 1`.execute(db); },
    close: async () => {
      if (closed) return;
      closed = true;
      await db.destroy();
    },
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
