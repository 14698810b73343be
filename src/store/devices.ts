/** Devices, their certificates' revocation, enrollment tokens and requests (contract tables). */
import { randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import type { Exec } from './open.js';
import type { DevicesTable, EnrollmentRequestsTable, EnrollmentTokensTable } from './schema.js';
import { hashToken, newToken } from './tokens.js';

export interface Device extends Omit<DevicesTable, 'tags'> {
  readonly tags: string[];
}

function toDevice(r: DevicesTable): Device {
  return {
    ...r, tags: JSON.parse(r.tags) as string[], created_at: Number(r.created_at), updated_at: Number(r.updated_at),
    last_seen_at: r.last_seen_at === null ? null : Number(r.last_seen_at),
  };
}

export interface DeviceFilter {
  readonly group?: string;
  readonly state?: DevicesTable['state'];
  readonly tag?: string;
  /** Restricts to these groups (an admin's scopes); undefined = all. */
  readonly groups?: readonly string[];
  readonly afterId?: string;
  readonly limit: number;
}

export async function listDevices(db: Exec, f: DeviceFilter): Promise<Device[]> {
  const page = (afterId: string | undefined, n: number) => {
    let q = db.selectFrom('devices').selectAll().orderBy('id');
    if (f.group !== undefined) q = q.where('group_name', '=', f.group);
    if (f.state !== undefined) q = q.where('state', '=', f.state);
    if (f.groups !== undefined) q = f.groups.length === 0 ? q.where('id', '=', '\u0000none') : q.where('group_name', 'in', [...f.groups]);
    if (afterId !== undefined) q = q.where('id', '>', afterId);
    // Tags are a JSON array in text: filter in SQL by the quoted JSON string (cheap pre-filter),
    // then exactly in code, so a tag containing quotes or commas cannot match another tag.
    if (f.tag !== undefined) q = q.where(sql<boolean>`tags LIKE ${`%${escapeLike(JSON.stringify(f.tag))}%`} ESCAPE '!'`);
    return q.limit(n).execute();
  };
  if (f.tag === undefined) return (await page(f.afterId, f.limit)).map(toDevice);
  // The exact test runs after the pre-filter, so read on until the page is full or the rows
  // run out: a page cut at the pre-filter's LIMIT came back short (or empty, with no cursor)
  // when decoy tags such as `x","prod` matched the LIKE for `prod`.
  const out: Device[] = [];
  const batch = Math.max(f.limit * 4, 100);
  let after = f.afterId;
  for (;;) {
    const rows = await page(after, batch);
    for (const r of rows) {
      const d = toDevice(r);
      if (d.tags.includes(f.tag)) out.push(d);
      if (out.length === f.limit) return out;
    }
    if (rows.length < batch) return out;
    after = rows[rows.length - 1]?.id;
  }
}

/** With `ESCAPE '!'` in both dialects (PostgreSQL would otherwise treat `\\` as an escape). */
function escapeLike(s: string): string {
  return s.replace(/[!%_]/g, (c) => `!${c}`);
}

export async function getDevice(db: Exec, id: string): Promise<Device | null> {
  const r = await db.selectFrom('devices').selectAll().where('id', '=', id).executeTakeFirst();
  return r ? toDevice(r) : null;
}

export async function updateDevice(db: Exec, id: string, set: Partial<Pick<DevicesTable, 'tags' | 'asset_id' | 'state'>>, now = Date.now()): Promise<void> {
  await db.updateTable('devices').set({ ...set, updated_at: now }).where('id', '=', id).execute();
}

export async function deviceCertificates(db: Exec, id: string) {
  return (await db.selectFrom('certificates')
    .select(['serial', 'ca_id', 'spki_sha256', 'not_before', 'not_after', 'issued_at', 'first_used_at', 'revoked_at', 'revocation_reason'])
    .where('device_id', '=', id).orderBy('issued_at', 'desc').execute())
    .map((r) => ({ ...r, not_before: Number(r.not_before), not_after: Number(r.not_after), issued_at: Number(r.issued_at), first_used_at: r.first_used_at === null ? null : Number(r.first_used_at), revoked_at: r.revoked_at === null ? null : Number(r.revoked_at) }));
}

/** Revokes every unrevoked certificate of a device; returns the serials revoked. */
export async function revokeDeviceCertificates(db: Exec, deviceId: string, reason: string, now = Date.now()): Promise<string[]> {
  const rows = await db.selectFrom('certificates').select('serial').where('device_id', '=', deviceId).where('revoked_at', 'is', null).execute();
  if (rows.length > 0) {
    await db.updateTable('certificates').set({ revoked_at: now, revocation_reason: reason }).where('device_id', '=', deviceId).where('revoked_at', 'is', null).execute();
  }
  return rows.map((r) => r.serial);
}

export async function deviceCounts(db: Exec): Promise<{ group_name: string; state: string; n: number }[]> {
  const rows = await db.selectFrom('devices').select(['group_name', 'state', (eb) => eb.fn.countAll().as('n')]).groupBy(['group_name', 'state']).execute();
  return rows.map((r) => ({ group_name: r.group_name, state: r.state, n: Number(r.n) }));
}

// ---- enrollment tokens ----

export type EnrollmentTokenInfo = Omit<EnrollmentTokensTable, 'token_hash'>;

const fixToken = (r: EnrollmentTokenInfo): EnrollmentTokenInfo => ({
  ...r, uses_total: Number(r.uses_total), uses_left: Number(r.uses_left), expires_at: Number(r.expires_at), created_at: Number(r.created_at), revoked_at: r.revoked_at === null ? null : Number(r.revoked_at),
});

export async function insertEnrollmentToken(db: Exec, t: { group: string; assetId: string | null; uses: number; ttlMs: number; createdBy: string }, now = Date.now()): Promise<{ token: string; info: EnrollmentTokenInfo }> {
  const token = newToken('cpe');
  const info: EnrollmentTokenInfo = { id: randomUUID(), group_name: t.group, asset_id: t.assetId, uses_total: t.uses, uses_left: t.uses, expires_at: now + t.ttlMs, revoked_at: null, created_by: t.createdBy, created_at: now };
  await db.insertInto('enrollment_tokens').values({ ...info, token_hash: hashToken(token) }).execute();
  return { token, info };
}

export async function listEnrollmentTokens(db: Exec, f: { groups?: readonly string[]; limit: number }): Promise<EnrollmentTokenInfo[]> {
  let q = db.selectFrom('enrollment_tokens').select(['id', 'group_name', 'asset_id', 'uses_total', 'uses_left', 'expires_at', 'revoked_at', 'created_by', 'created_at']).orderBy('created_at', 'desc').limit(f.limit);
  if (f.groups !== undefined) q = f.groups.length === 0 ? q.where('id', '=', '\u0000none') : q.where('group_name', 'in', [...f.groups]);
  return (await q.execute()).map(fixToken);
}

export async function getEnrollmentToken(db: Exec, id: string): Promise<EnrollmentTokenInfo | null> {
  const r = await db.selectFrom('enrollment_tokens').select(['id', 'group_name', 'asset_id', 'uses_total', 'uses_left', 'expires_at', 'revoked_at', 'created_by', 'created_at']).where('id', '=', id).executeTakeFirst();
  return r ? fixToken(r) : null;
}

export async function revokeEnrollmentToken(db: Exec, id: string, now = Date.now()): Promise<void> {
  await db.updateTable('enrollment_tokens').set({ revoked_at: now }).where('id', '=', id).where('revoked_at', 'is', null).execute();
}

// ---- enrollment requests ----

export type EnrollmentRequest = Omit<EnrollmentRequestsTable, 'csr_der'>;

/** `groups`: only requests of devices in these groups (an admin's scopes); undefined = all, [] = none. */
export async function listEnrollmentRequests(db: Exec, f: { state?: EnrollmentRequestsTable['state']; groups?: readonly string[]; limit: number }) {
  if (f.groups !== undefined && f.groups.length === 0) return [];
  let q = db.selectFrom('enrollment_requests').leftJoin('devices', 'devices.id', 'enrollment_requests.device_id')
    .select(['enrollment_requests.id', 'enrollment_requests.device_id', 'enrollment_requests.token_id', 'enrollment_requests.spki_sha256', 'enrollment_requests.state',
      'enrollment_requests.decided_by', 'enrollment_requests.decided_at', 'enrollment_requests.created_at', 'devices.group_name', 'devices.asset_id'])
    .orderBy('enrollment_requests.created_at', 'desc').limit(f.limit);
  if (f.state !== undefined) q = q.where('enrollment_requests.state', '=', f.state);
  if (f.groups !== undefined) q = q.where('devices.group_name', 'in', [...f.groups]);
  return (await q.execute()).map((r) => ({ ...r, created_at: Number(r.created_at), decided_at: r.decided_at === null ? null : Number(r.decided_at) }));
}

/** The pending request of a device (approval and denial act on it), or null. */
export async function pendingRequest(db: Exec, deviceId: string): Promise<EnrollmentRequest | null> {
  const r = await db.selectFrom('enrollment_requests').select(['id', 'device_id', 'token_id', 'spki_sha256', 'state', 'decided_by', 'decided_at', 'created_at'])
    .where('device_id', '=', deviceId).where('state', '=', 'pending').orderBy('created_at', 'desc').executeTakeFirst();
  return r ? { ...r, created_at: Number(r.created_at), decided_at: r.decided_at === null ? null : Number(r.decided_at) } : null;
}

/** Decides a pending request; false when it was no longer pending (someone else decided first). */
export async function decideRequest(db: Exec, id: string, state: 'approved' | 'denied', by: string, now = Date.now()): Promise<boolean> {
  const r = await db.updateTable('enrollment_requests').set({ state, decided_by: by, decided_at: now }).where('id', '=', id).where('state', '=', 'pending').executeTakeFirst();
  return Number(r.numUpdatedRows) === 1;
}
