/**
 * The store's public surface (DESIGN §1): kysely schema and migrations over SQLite (embedded
 * default) and PostgreSQL. Identity code uses `store.db` with the `DB` table types.
 */
export { openStore, type Store, type OpenStoreOptions, type Exec } from './open.js';
export type { DB } from './schema.js';
export { MIGRATIONS, CORE_MIGRATIONS } from './migrations.js';
export { migrate, type Migration, type Dialect } from './migrate.js';
export { bootstrapAdmin } from './admins.js';
export { hashToken, newToken, looksLikeToken } from './tokens.js';
export { appendAudit, listAudit, type AuditInput } from './audit.js';
export { verifyChain, chainHash, GENESIS_HASH, type ChainedEntry } from './audit-chain.js';
