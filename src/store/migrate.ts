/**
 * A small versioned migration runner: migrations are code (not files read from disk), each has a
 * unique id, runs once inside a transaction, and is recorded in `schema_migrations`. A database
 * that has a migration this code does not know was written by a newer release: we refuse to touch
 * it (STORE_SCHEMA_NEWER) rather than run old code against a schema it cannot understand.
 */
import { sql, type Kysely } from 'kysely';
import { ChokepointError } from '../core/errors.js';

export type Dialect = 'sqlite' | 'postgres';

export interface Migration {
  readonly id: string;
  // The schema is still being built, so migrations see an untyped database.
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  up(db: Kysely<any>, dialect: Dialect): Promise<void>;
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export async function migrate(db: Kysely<any>, dialect: Dialect, migrations: readonly Migration[]): Promise<string[]> {
  const ids = new Set<string>();
  for (const m of migrations) {
    if (ids.has(m.id)) throw new ChokepointError('INTERNAL', `duplicate migration id ${m.id}`);
    ids.add(m.id);
  }
  await db.schema.createTable('schema_migrations').ifNotExists()
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('applied_at', 'bigint', (c) => c.notNull())
    .execute();
  const done = new Set((await db.selectFrom('schema_migrations').select('id').execute()).map((r: { id: string }) => r.id));
  const unknown = [...done].filter((id) => !ids.has(id));
  if (unknown.length > 0) {
    throw new ChokepointError('STORE_SCHEMA_NEWER',
      `the database has migrations this version of chokepoint does not know (${unknown.join(', ')}); it was written by a newer release: upgrade chokepoint, or point it at another database`);
  }
  const ran: string[] = [];
  for (const m of migrations) {
    if (done.has(m.id)) continue;
    await db.transaction().execute(async (trx) => {
      // Two processes may start at once: serialize, then re-check inside the transaction.
      if (dialect === 'postgres') await sql`LOCK TABLE schema_migrations IN EXCLUSIVE MODE`.execute(trx);
      const again = await trx.selectFrom('schema_migrations').select('id').where('id', '=', m.id).executeTakeFirst();
      if (again) return;
      await m.up(trx, dialect);
      await trx.insertInto('schema_migrations').values({ id: m.id, applied_at: Date.now() }).execute();
      ran.push(m.id);
    });
  }
  return ran;
}
