/**
 * Extra migrations owned by the identity work (issue #4). They run after the core migrations
 * in src/store/migrations.ts, in list order, each once. Ids must be unique and never reused;
 * prefix them with `identity-`.
 */
import type { Migration } from './migrate.js';

export const IDENTITY_MIGRATIONS: readonly Migration[] = [];
