/**
 * The core schema, as versioned migrations. Never edit a migration that has shipped: add one.
 * Column types are portable between SQLite and PostgreSQL (`bigint` times, `text` JSON).
 */
import { sql, type Kysely } from 'kysely';
import type { Dialect, Migration } from './migrate.js';
import { IDENTITY_MIGRATIONS } from './migrations-identity.js';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type AnyDb = Kysely<any>;

async function core(db: AnyDb, dialect: Dialect): Promise<void> {
  await db.schema.createTable('admins')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('name', 'text', (c) => c.notNull().unique())
    .addColumn('role', 'text', (c) => c.notNull())
    .addColumn('scopes', 'text')
    .addColumn('disabled_at', 'bigint')
    .addColumn('created_by', 'text', (c) => c.notNull())
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .execute();
  await db.schema.createTable('api_tokens')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('admin_id', 'text', (c) => c.notNull().references('admins.id'))
    .addColumn('token_hash', 'text', (c) => c.notNull().unique())
    .addColumn('label', 'text')
    .addColumn('expires_at', 'bigint', (c) => c.notNull())
    .addColumn('revoked_at', 'bigint')
    .addColumn('last_used_at', 'bigint')
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .execute();
  await db.schema.createTable('audit_log')
    .addColumn('seq', 'bigint', (c) => c.primaryKey())
    .addColumn('time', 'bigint', (c) => c.notNull())
    .addColumn('actor_id', 'text')
    .addColumn('actor', 'text', (c) => c.notNull())
    .addColumn('role', 'text', (c) => c.notNull())
    .addColumn('action', 'text', (c) => c.notNull())
    .addColumn('target', 'text')
    .addColumn('result', 'text', (c) => c.notNull())
    .addColumn('source_ip', 'text')
    .addColumn('before', 'text')
    .addColumn('after', 'text')
    .addColumn('detail', 'text')
    .addColumn('prev_hash', 'text', (c) => c.notNull())
    .addColumn('hash', 'text', (c) => c.notNull())
    .execute();
  await db.schema.createTable('audit_head')
    .addColumn('id', 'integer', (c) => c.primaryKey())
    .addColumn('seq', 'bigint', (c) => c.notNull())
    .addColumn('hash', 'text', (c) => c.notNull())
    .execute();
  await db.insertInto('audit_head').values({ id: 1, seq: 0, hash: '0'.repeat(64) }).execute();

  await db.schema.createTable('policy_versions')
    .addColumn('version', 'integer', (c) => c.primaryKey())
    .addColumn('text', 'text', (c) => c.notNull())
    .addColumn('digest', 'text', (c) => c.notNull())
    .addColumn('author', 'text', (c) => c.notNull())
    .addColumn('author_id', 'text')
    .addColumn('reason', 'text', (c) => c.notNull())
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .addColumn('applied_at', 'bigint')
    .execute();
  await db.schema.createTable('policy_approvals')
    .addColumn('version', 'integer', (c) => c.notNull().references('policy_versions.version'))
    .addColumn('approver_id', 'text', (c) => c.notNull())
    .addColumn('approver', 'text', (c) => c.notNull())
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .addPrimaryKeyConstraint('policy_approvals_pk', ['version', 'approver_id'])
    .execute();
  await db.schema.createTable('policy_state')
    .addColumn('id', 'integer', (c) => c.primaryKey())
    .addColumn('applied_version', 'integer', (c) => c.references('policy_versions.version'))
    .addColumn('pilot_version', 'integer', (c) => c.references('policy_versions.version'))
    .addColumn('pilot_group', 'text')
    .addColumn('generation', 'bigint', (c) => c.notNull())
    .addColumn('updated_at', 'bigint', (c) => c.notNull())
    .execute();
  await db.insertInto('policy_state').values({ id: 1, applied_version: null, pilot_version: null, pilot_group: null, generation: 0, updated_at: Date.now() }).execute();

  await db.schema.createTable('events')
    .addColumn('seq', dialect === 'postgres' ? sql`bigserial` : 'integer', (c) => dialect === 'postgres' ? c.primaryKey() : c.primaryKey().autoIncrement())
    .addColumn('event_id', 'text', (c) => c.notNull())
    .addColumn('time', 'bigint', (c) => c.notNull())
    .addColumn('verdict', 'text', (c) => c.notNull())
    .addColumn('reason', 'text', (c) => c.notNull())
    .addColumn('group_name', 'text')
    .addColumn('host', 'text')
    .addColumn('port', 'integer')
    .addColumn('device_id', 'text')
    .addColumn('client_ip', 'text')
    .addColumn('rule', 'text')
    .addColumn('body', 'text', (c) => c.notNull())
    .execute();
  await db.schema.createIndex('events_time').on('events').column('time').execute();
  await db.schema.createTable('alerts')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('time', 'bigint', (c) => c.notNull())
    .addColumn('detector', 'text', (c) => c.notNull())
    .addColumn('severity', 'text', (c) => c.notNull())
    .addColumn('device_id', 'text')
    .addColumn('group_name', 'text')
    .addColumn('summary', 'text', (c) => c.notNull())
    .addColumn('evidence', 'text', (c) => c.notNull())
    .addColumn('suggested_action', 'text', (c) => c.notNull())
    .addColumn('state', 'text', (c) => c.notNull())
    .addColumn('acked_by', 'text')
    .addColumn('acked_at', 'bigint')
    .addColumn('resolved_by', 'text')
    .addColumn('resolved_at', 'bigint')
    .execute();
}

/** The identity tables (contract shared with issue #4, see src/store/schema.ts). */
async function identity(db: AnyDb): Promise<void> {
  await db.schema.createTable('devices')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('group_name', 'text', (c) => c.notNull())
    .addColumn('asset_id', 'text')
    .addColumn('tags', 'text', (c) => c.notNull())
    .addColumn('state', 'text', (c) => c.notNull())
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .addColumn('updated_at', 'bigint', (c) => c.notNull())
    .addColumn('last_seen_at', 'bigint')
    .execute();
  await db.schema.createIndex('devices_group').on('devices').column('group_name').execute();
  await db.schema.createTable('cas')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('cert_pem', 'text', (c) => c.notNull())
    .addColumn('state', 'text', (c) => c.notNull())
    .addColumn('not_after', 'bigint', (c) => c.notNull())
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .execute();
  await db.schema.createTable('certificates')
    .addColumn('serial', 'text', (c) => c.primaryKey())
    .addColumn('device_id', 'text', (c) => c.notNull().references('devices.id'))
    .addColumn('ca_id', 'text', (c) => c.notNull())
    .addColumn('spki_sha256', 'text', (c) => c.notNull())
    .addColumn('not_before', 'bigint', (c) => c.notNull())
    .addColumn('not_after', 'bigint', (c) => c.notNull())
    .addColumn('issued_at', 'bigint', (c) => c.notNull())
    .addColumn('first_used_at', 'bigint')
    .addColumn('revoked_at', 'bigint')
    .addColumn('revocation_reason', 'text')
    .addColumn('pem', 'text', (c) => c.notNull())
    .execute();
  await db.schema.createIndex('certificates_device').on('certificates').column('device_id').execute();
  await db.schema.createTable('enrollment_tokens')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('token_hash', 'text', (c) => c.notNull().unique())
    .addColumn('group_name', 'text', (c) => c.notNull())
    .addColumn('asset_id', 'text')
    .addColumn('uses_total', 'integer', (c) => c.notNull())
    .addColumn('uses_left', 'integer', (c) => c.notNull())
    .addColumn('expires_at', 'bigint', (c) => c.notNull())
    .addColumn('revoked_at', 'bigint')
    .addColumn('created_by', 'text', (c) => c.notNull())
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .execute();
  await db.schema.createTable('enrollment_requests')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('device_id', 'text', (c) => c.notNull())
    .addColumn('token_id', 'text', (c) => c.notNull())
    .addColumn('spki_sha256', 'text', (c) => c.notNull())
    .addColumn('csr_der', 'text', (c) => c.notNull())
    .addColumn('state', 'text', (c) => c.notNull())
    .addColumn('decided_by', 'text')
    .addColumn('decided_at', 'bigint')
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .execute();
}

/**
 * Folded repeats of a recent decision (see control/recorder.ts): a count and the latest time on
 * the first decision's row, found by event id (hence the index).
 */
async function decisionFolds(db: AnyDb): Promise<void> {
  // Two statements: SQLite adds one column per ALTER TABLE.
  await db.schema.alterTable('events').addColumn('repeats', 'integer', (c) => c.notNull().defaultTo(0)).execute();
  await db.schema.alterTable('events').addColumn('last_time', 'bigint').execute();
  await db.schema.createIndex('events_event_id').on('events').column('event_id').execute();
}

/**
 * Which API token acted (an admin may hold several): after a leak, the entries a token made
 * are the ones to review. Older entries keep null, and their hashes (see audit-chain.ts).
 */
async function auditTokens(db: AnyDb): Promise<void> {
  await db.schema.alterTable('audit_log').addColumn('token_id', 'text').execute();
}

export const CORE_MIGRATIONS: readonly Migration[] = [
  { id: '0001_core', up: core },
  { id: '0002_identity_tables', up: (db) => identity(db) },
  { id: '0003_decision_folds', up: decisionFolds },
  { id: '0004_audit_token', up: auditTokens },
];

/** Every migration in the order it runs: the core list, then the identity work's. */
export const MIGRATIONS: readonly Migration[] = [...CORE_MIGRATIONS, ...IDENTITY_MIGRATIONS];
