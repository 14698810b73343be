/** Admins and their API tokens. */
import { randomUUID } from 'node:crypto';
import type { Exec, Store } from './open.js';
import type { AdminsTable } from './schema.js';
import { ChokepointError } from '../core/errors.js';
import { appendAudit } from './audit.js';
import { hashToken, newToken } from './tokens.js';

export type Role = AdminsTable['role'];
export const ROLES: readonly Role[] = ['viewer', 'operator', 'security-admin'];
export const ROLE_RANK: Readonly<Record<Role, number>> = { viewer: 1, operator: 2, 'security-admin': 3 };

export interface Admin {
  readonly id: string;
  readonly name: string;
  readonly role: Role;
  /** Device groups this admin may act on; null = all. */
  readonly scopes: readonly string[] | null;
  readonly disabled_at: number | null;
  readonly created_by: string;
  readonly created_at: number;
}

export function toAdmin(r: AdminsTable): Admin {
  return { ...r, scopes: r.scopes === null ? null : (JSON.parse(r.scopes) as string[]), disabled_at: r.disabled_at === null ? null : Number(r.disabled_at), created_at: Number(r.created_at) };
}

/** Default lifetime of an API token when none is asked for. */
export const DEFAULT_TOKEN_TTL_MS = 90 * 24 * 3600 * 1000;
const LAST_USED_GRANULARITY_MS = 60_000;

export async function insertAdmin(db: Exec, a: { name: string; role: Role; scopes: readonly string[] | null; createdBy: string }, now = Date.now()): Promise<Admin> {
  const row: AdminsTable = { id: randomUUID(), name: a.name, role: a.role, scopes: a.scopes === null ? null : JSON.stringify(a.scopes), disabled_at: null, created_by: a.createdBy, created_at: now };
  await db.insertInto('admins').values(row).execute();
  return toAdmin(row);
}

export async function insertToken(db: Exec, t: { adminId: string; label: string | null; ttlMs: number }, now = Date.now()): Promise<{ id: string; token: string; expires_at: number }> {
  const token = newToken('cpa');
  const id = randomUUID();
  const expires_at = now + t.ttlMs;
  await db.insertInto('api_tokens').values({ id, admin_id: t.adminId, token_hash: hashToken(token), label: t.label, expires_at, revoked_at: null, last_used_at: null, created_at: now }).execute();
  return { id, token, expires_at };
}

export interface Authenticated {
  readonly admin: Admin;
  readonly tokenId: string;
}

/** The admin behind a presented token, or null when it is unknown, expired, revoked or its admin is disabled. */
export async function authenticate(db: Exec, token: string, now = Date.now()): Promise<Authenticated | null> {
  const r = await db.selectFrom('api_tokens').innerJoin('admins', 'admins.id', 'api_tokens.admin_id')
    .select(['api_tokens.id as token_id', 'api_tokens.expires_at', 'api_tokens.revoked_at', 'api_tokens.last_used_at',
      'admins.id', 'admins.name', 'admins.role', 'admins.scopes', 'admins.disabled_at', 'admins.created_by', 'admins.created_at'])
    .where('api_tokens.token_hash', '=', hashToken(token)).executeTakeFirst();
  if (!r || r.revoked_at !== null || Number(r.expires_at) <= now || r.disabled_at !== null) return null;
  // When a token was last used (to the minute: one write a minute per token at most) tells an
  // operator which tokens are stale and which are in use that should not be.
  if (r.last_used_at === null || Number(r.last_used_at) < now - LAST_USED_GRANULARITY_MS) {
    // Bookkeeping: a store too busy to take it must not fail the request it belongs to.
    await db.updateTable('api_tokens').set({ last_used_at: now }).where('id', '=', r.token_id).execute().catch(() => {});
  }
  const { token_id, expires_at: _e, revoked_at: _r, last_used_at: _l, ...admin } = r;
  return { admin: toAdmin(admin), tokenId: token_id };
}

export async function listAdmins(db: Exec): Promise<Admin[]> {
  return (await db.selectFrom('admins').selectAll().orderBy('created_at').execute()).map(toAdmin);
}

export async function getAdminByName(db: Exec, name: string): Promise<Admin | null> {
  const r = await db.selectFrom('admins').selectAll().where('name', '=', name).executeTakeFirst();
  return r ? toAdmin(r) : null;
}

export async function listTokens(db: Exec, adminId?: string) {
  let q = db.selectFrom('api_tokens').innerJoin('admins', 'admins.id', 'api_tokens.admin_id')
    .select(['api_tokens.id', 'admins.name as admin', 'api_tokens.admin_id', 'api_tokens.label', 'api_tokens.expires_at', 'api_tokens.revoked_at', 'api_tokens.last_used_at', 'api_tokens.created_at'])
    .orderBy('api_tokens.created_at');
  if (adminId !== undefined) q = q.where('api_tokens.admin_id', '=', adminId);
  return (await q.execute()).map((r) => ({ ...r, expires_at: Number(r.expires_at), created_at: Number(r.created_at), revoked_at: r.revoked_at === null ? null : Number(r.revoked_at), last_used_at: r.last_used_at === null ? null : Number(r.last_used_at) }));
}

/**
 * First start: creates the first security-admin (`admin`) and returns its token, to be printed
 * once; returns null when any admin exists. Audited like every other admin creation.
 */
export async function bootstrapAdmin(store: Store, opts: { name?: string; ttlMs?: number } = {}): Promise<string | null> {
  return store.tx(async (trx) => {
    const any = await trx.selectFrom('admins').select('id').limit(1).executeTakeFirst();
    if (any) return null;
    const admin = await insertAdmin(trx, { name: opts.name ?? 'admin', role: 'security-admin', scopes: null, createdBy: 'bootstrap' });
    const t = await insertToken(trx, { adminId: admin.id, label: 'bootstrap', ttlMs: opts.ttlMs ?? DEFAULT_TOKEN_TTL_MS });
    await appendAudit(trx, store.dialect, { actorId: null, actor: 'bootstrap', role: 'system', action: 'admin.create', target: `admin:${admin.name}`, result: 'ok', after: { name: admin.name, role: admin.role, token: t.id } });
    return t.token;
  });
}

/**
 * Break-glass recovery for whoever runs the store (`chokepoint admin recover`): when every
 * security-admin token has expired or been revoked, nobody can act through the API, and
 * bootstrapping runs only on an empty store. Creates a new, unscoped security-admin (never a
 * token for an existing one, so the audit log tells the recovery apart from that admin's own
 * actions), audited as `local:recover`.
 */
export async function recoverAdmin(store: Store, opts: { name: string; ttlMs: number; by: string }): Promise<{ name: string; token: string; token_id: string; expires_at: number }> {
  return store.tx(async (trx) => {
    if (await getAdminByName(trx, opts.name)) throw new ChokepointError('USAGE', `an admin named "${opts.name}" exists: recovery creates a new one (choose another --name)`);
    const admin = await insertAdmin(trx, { name: opts.name, role: 'security-admin', scopes: null, createdBy: 'local:recover' });
    const t = await insertToken(trx, { adminId: admin.id, label: 'recovery', ttlMs: opts.ttlMs });
    await appendAudit(trx, store.dialect, { actorId: null, actor: 'local:recover', role: 'system', action: 'admin.recover', target: `admin:${admin.name}`, result: 'ok', after: { name: admin.name, role: admin.role, token: t.id }, detail: opts.by });
    return { name: admin.name, token: t.token, token_id: t.id, expires_at: t.expires_at };
  });
}
