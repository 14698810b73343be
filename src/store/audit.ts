/**
 * Appends audit entries to the hash chain. The append runs inside the caller's transaction (the
 * change and its audit entry commit together, or neither does) and locks the chain head row, so
 * concurrent appends never fork the chain (PostgreSQL: row lock; SQLite: one writer at a time).
 */

import { chainHash, type ChainEntry, type ChainedEntry } from './audit-chain.js';
import type { Dialect } from './migrate.js';
import type { Exec } from './open.js';

export interface AuditInput {
  readonly actorId: string | null;
  /** The API token the actor authenticated with, when it is an admin. */
  readonly tokenId?: string | null;
  readonly actor: string;
  readonly role: string;
  readonly action: string;
  readonly target?: string | null;
  readonly result: 'ok' | 'denied' | 'error';
  readonly sourceIp?: string | null;
  readonly before?: unknown;
  readonly after?: unknown;
  readonly detail?: string | null;
}

/** Longest before/after summary kept; the audit log records what changed, not whole documents. */
const MAX_SUMMARY = 4096;

function summary(v: unknown): string | null {
  if (v === undefined || v === null) return null;
  const s = JSON.stringify(v);
  return s.length > MAX_SUMMARY ? JSON.stringify({ truncated: true, prefix: s.slice(0, MAX_SUMMARY) }) : s;
}

export async function appendAudit(trx: Exec, dialect: Dialect, e: AuditInput, now = Date.now()): Promise<ChainedEntry> {
  const head = await trx.selectFrom('audit_head').selectAll().where('id', '=', 1)
    .$if(dialect === 'postgres', (q) => q.forUpdate())
    .executeTakeFirstOrThrow();
  const entry: ChainEntry = {
    seq: Number(head.seq) + 1,
    time: now,
    actor_id: e.actorId,
    actor: e.actor,
    role: e.role,
    action: e.action,
    target: e.target ?? null,
    result: e.result,
    source_ip: e.sourceIp ?? null,
    before: summary(e.before),
    after: summary(e.after),
    detail: e.detail ?? null,
    token_id: e.tokenId ?? null,
  };
  const hash = chainHash(head.hash, entry);
  const row: ChainedEntry = { ...entry, prev_hash: head.hash, hash };
  await trx.insertInto('audit_log').values({ ...row, result: e.result }).execute();
  await trx.updateTable('audit_head').set({ seq: entry.seq, hash }).where('id', '=', 1).execute();
  return row;
}

export interface AuditQuery {
  readonly afterSeq?: number;
  readonly limit: number;
  readonly actor?: string;
  readonly action?: string;
  readonly tokenId?: string;
}

export async function listAudit(db: Exec, q: AuditQuery): Promise<ChainedEntry[]> {
  let s = db.selectFrom('audit_log').selectAll().orderBy('seq', 'asc').limit(q.limit);
  if (q.afterSeq !== undefined) s = s.where('seq', '>', q.afterSeq);
  if (q.actor !== undefined) s = s.where('actor', '=', q.actor);
  if (q.action !== undefined) s = s.where('action', '=', q.action);
  if (q.tokenId !== undefined) s = s.where('token_id', '=', q.tokenId);
  const rows = await s.execute();
  return rows.map((r) => ({ ...r, seq: Number(r.seq), time: Number(r.time), token_id: r.token_id ?? null }));
}

/** For tests and `sql` users: the raw head. */
export async function auditHead(db: Exec): Promise<{ seq: number; hash: string }> {
  const h = await db.selectFrom('audit_head').select(['seq', 'hash']).where('id', '=', 1).executeTakeFirstOrThrow();
  return { seq: Number(h.seq), hash: h.hash };
}

