/**
 * Real stores for tests: SQLite in a fresh temporary data directory, and PostgreSQL on
 * 127.0.0.1:5432 (trust auth, database `test`) in a fresh schema per store, dropped on cleanup.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { openStore, type Store } from '../../src/store/index.js';

export const PG_URL = process.env.CHOKEPOINT_TEST_PG ?? 'postgres://postgres@127.0.0.1:5432/test';

export interface TestBackend {
  readonly name: 'sqlite' | 'postgres';
  /** Opens (or reopens) the same database. */
  open(): Promise<Store>;
  /** For CLI runs: `--data-dir` and, for PostgreSQL, `--database` plus the schema in the URL options. */
  readonly dataDir: string;
  readonly database?: string;
  readonly schema?: string;
  cleanup(): Promise<void>;
}

export function sqliteBackend(): TestBackend {
  const dataDir = mkdtempSync(join(tmpdir(), 'cp-store-'));
  return {
    name: 'sqlite', dataDir,
    open: () => openStore({ dataDir }),
    cleanup: async () => rmSync(dataDir, { recursive: true, force: true }),
  };
}

export function postgresBackend(): TestBackend {
  const dataDir = mkdtempSync(join(tmpdir(), 'cp-store-pg-'));
  const schema = `cp_test_${randomBytes(6).toString('hex')}`;
  return {
    name: 'postgres', dataDir, database: PG_URL, schema,
    open: () => openStore({ dataDir, database: PG_URL, schema }),
    cleanup: async () => {
      rmSync(dataDir, { recursive: true, force: true });
      const c = new pg.Client({ connectionString: PG_URL });
      await c.connect();
      try { await c.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`); } finally { await c.end(); }
    },
  };
}

export const BACKENDS: readonly (() => TestBackend)[] = [sqliteBackend, postgresBackend];
