/**
 * Extra migrations owned by the identity work (issue #4). They run after the core migrations
 * in src/store/migrations.ts, in list order, each once. Ids must be unique and never reused;
 * prefix them with `identity-`.
 */
import type { Migration } from './migrate.js';

export const IDENTITY_MIGRATIONS: readonly Migration[] = [
  {
    // Every enrollment and renewal looks certificates up by key (one key, one device) and every
    // poll looks requests up by token: without these, both are full scans at fleet size.
    id: 'identity-0001_lookup_indexes',
    up: async (db) => {
      await db.schema.createIndex('certificates_spki').on('certificates').column('spki_sha256').execute();
      await db.schema.createIndex('enrollment_requests_token').on('enrollment_requests').column('token_id').execute();
    },
  },
];
