/** Immutable policy versions, approvals and the applied/pilot state (compare-and-set on `generation`). */
import type { Exec } from './open.js';
import type { PolicyStateTable, PolicyVersionsTable } from './schema.js';

export type PolicyVersion = PolicyVersionsTable;
export type PolicyState = PolicyStateTable;

function num<T extends object>(r: T, keys: readonly (keyof T)[]): T {
  const o: Record<string, unknown> = { ...(r as Record<string, unknown>) };
  for (const k of keys) if (o[k as string] !== null && o[k as string] !== undefined) o[k as string] = Number(o[k as string]);
  return o as unknown as T;
}

const fixVersion = (r: PolicyVersion): PolicyVersion => num(r, ['version', 'created_at', 'applied_at']);
const fixState = (r: PolicyState): PolicyState => num(r, ['applied_version', 'pilot_version', 'generation', 'updated_at']);

export async function insertVersion(db: Exec, v: Omit<PolicyVersion, 'version' | 'applied_at'>): Promise<PolicyVersion> {
  // Version numbers are dense and assigned in the transaction; the primary key makes a race
  // between two proposers fail (one retries) instead of silently sharing a number.
  const max = await db.selectFrom('policy_versions').select((eb) => eb.fn.max('version').as('m')).executeTakeFirst();
  const version = Number(max?.m ?? 0) + 1;
  const row: PolicyVersion = { ...v, version, applied_at: null };
  await db.insertInto('policy_versions').values(row).execute();
  return row;
}

export async function getVersion(db: Exec, version: number): Promise<PolicyVersion | null> {
  const r = await db.selectFrom('policy_versions').selectAll().where('version', '=', version).executeTakeFirst();
  return r ? fixVersion(r) : null;
}

export async function listVersions(db: Exec, opts: { limit: number; beforeVersion?: number }): Promise<Omit<PolicyVersion, 'text'>[]> {
  let q = db.selectFrom('policy_versions').select(['version', 'digest', 'author', 'author_id', 'reason', 'created_at', 'applied_at']).orderBy('version', 'desc').limit(opts.limit);
  if (opts.beforeVersion !== undefined) q = q.where('version', '<', opts.beforeVersion);
  return (await q.execute()).map((r) => num(r, ['version', 'created_at', 'applied_at']));
}

export async function getState(db: Exec): Promise<PolicyState> {
  return fixState(await db.selectFrom('policy_state').selectAll().where('id', '=', 1).executeTakeFirstOrThrow());
}

/**
 * Sets the state only if nobody changed it since `expectedGeneration` was read. Returns the new
 * state, or null when another apply won (the loser must not overwrite it: lost update).
 */
export async function casState(db: Exec, expectedGeneration: number, next: Pick<PolicyState, 'applied_version' | 'pilot_version' | 'pilot_group'>, now = Date.now()): Promise<PolicyState | null> {
  const r = await db.updateTable('policy_state')
    .set({ ...next, generation: expectedGeneration + 1, updated_at: now })
    .where('id', '=', 1).where('generation', '=', expectedGeneration)
    .executeTakeFirst();
  if (Number(r.numUpdatedRows) !== 1) return null;
  return { id: 1, ...next, generation: expectedGeneration + 1, updated_at: now };
}

export async function markApplied(db: Exec, version: number, now = Date.now()): Promise<void> {
  await db.updateTable('policy_versions').set({ applied_at: now }).where('version', '=', version).where('applied_at', 'is', null).execute();
}

export async function listApprovals(db: Exec, version: number) {
  return (await db.selectFrom('policy_approvals').selectAll().where('version', '=', version).execute()).map((r) => num(r, ['version', 'created_at']));
}

export async function insertApproval(db: Exec, a: { version: number; approverId: string; approver: string }, now = Date.now()): Promise<void> {
  await db.insertInto('policy_approvals').values({ version: a.version, approver_id: a.approverId, approver: a.approver, created_at: now })
    .onConflict((oc) => oc.columns(['version', 'approver_id']).doNothing()).execute();
}
