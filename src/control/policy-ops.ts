/**
 * Policy change control: propose (immutable versions), approve (two-person rule), apply (full or
 * to a pilot group), promote, rollback. Every state change is a compare-and-set on the state's
 * `generation`, so of concurrent applies exactly one wins and the others get POLICY_CONFLICT
 * (no lost update: an admin never silently overwrites a change they did not see).
 */
import type { Transaction } from 'kysely';
import { loadPolicyOffThread } from '../policy/index.js';
import { getAdminByName, type Admin } from '../store/admins.js';
import { casState, getState, getVersion, insertVersion, listApprovals, markApplied, type PolicyState, type PolicyVersion } from '../store/policies.js';
import type { DB } from '../store/schema.js';
import type { ControlContext, Who } from './context.js';
import { ApiError } from './errors.js';
import { effectiveFor, type Effective } from './policy-effective.js';

type Next = Pick<PolicyState, 'applied_version' | 'pilot_version' | 'pilot_group'>;

export async function propose(ctx: ControlContext, who: Who, text: string, reason: string): Promise<PolicyVersion> {
  // A large policy is parsed on a worker thread: the gateway shares this event loop.
  const r = await loadPolicyOffThread(text, { sourceName: 'the proposed policy' });
  if (!r.ok) {
    // Parsed before the transaction (it may take a worker thread a while), so audited here.
    await ctx.audit(who, { action: 'policy.propose', target: 'policy', result: 'denied', detail: `POLICY_INVALID: ${r.problems.length} problem${r.problems.length === 1 ? '' : 's'}` });
    throw new ApiError(422, 'POLICY_INVALID', `the policy has ${r.problems.length} problem${r.problems.length === 1 ? '' : 's'}`, r.problems);
  }
  return ctx.act(who, { action: 'policy.propose', target: 'policy' }, async (trx) => {
    const v = await insertVersion(trx, { text, digest: r.policy.digest, author: who.actor, author_id: who.actorId, reason, created_at: Date.now() });
    return { value: v, after: { version: v.version, digest: v.digest, reason }, detail: `v${v.version}` };
  });
}

export async function approve(ctx: ControlContext, who: Who, version: number): Promise<{ version: number; approvals: string[] }> {
  return ctx.act(who, { action: 'policy.approve', target: `policy:v${version}` }, async (trx) => {
    const v = await getVersion(trx, version);
    if (!v) throw new ApiError(404, 'RESOURCE_NOT_FOUND', `no policy version ${version}`);
    // The two-person rule is only worth something if the second person is a different one.
    if (v.author_id !== null && v.author_id === who.actorId) throw new ApiError(403, 'POLICY_SELF_APPROVAL');
    // Whoever creates an admin holds its first token, so an admin the author created — directly
    // or through admins it created — is not a second person; nor is one created after the
    // proposal (the obvious way for one person to make a second). What remains (admins made
    // beforehand by a common creator) is in the audit log and the README: two-person control
    // is as strong as the hand-over of each security-admin's first token.
    const me = await getAdminByName(trx, who.actor);
    if (me !== null && me.created_at >= v.created_at) {
      throw new ApiError(403, 'POLICY_SELF_APPROVAL', `you were created after version ${version} was proposed; a later version can be approved by you`);
    }
    if (await createdBy(trx, who.actor, v.author)) {
      throw new ApiError(403, 'POLICY_SELF_APPROVAL', `you were created (directly or through other admins) by ${v.author}, the author of version ${version}, who held your first token`);
    }
    await trx.insertInto('policy_approvals').values({ version, approver_id: who.actorId ?? who.actor, approver: who.actor, created_at: Date.now() })
      .onConflict((oc) => oc.columns(['version', 'approver_id']).doNothing()).execute();
    const approvals = (await listApprovals(trx, version)).map((a) => a.approver);
    return { value: { version, approvals }, after: { approvals } };
  });
}

/** Whether `author` is in the chain of admins that created `approver` (names; bounded walk). */
async function createdBy(trx: Transaction<DB>, approver: string, author: string): Promise<boolean> {
  let name: string | null = approver;
  for (let depth = 0; name !== null && depth < 64; depth++) {
    const a: Admin | null = await getAdminByName(trx, name);
    if (a === null || a.created_by === null || a.created_by === name) return false;
    if (a.created_by === author) return true;
    name = a.created_by;
  }
  return false;
}

async function requireApproval(ctx: ControlContext, trx: Transaction<DB>, v: PolicyVersion): Promise<void> {
  if (!ctx.opts.twoPerson) return;
  const ok = (await listApprovals(trx, v.version)).some((a) => a.approver_id !== v.author_id);
  if (!ok) throw new ApiError(409, 'POLICY_APPROVAL_REQUIRED', `version ${v.version} needs the approval of a security-admin other than ${v.author}`);
}

export interface TransitionResult {
  readonly state: PolicyState;
  readonly effective: Extract<Effective, { ok: true }>;
}

/**
 * One state change: check the caller saw the current generation, compute the next state, prove
 * it compiles, compare-and-set, audit — all in one transaction — then hand the new effective
 * policy to the gateway.
 */
async function transition(ctx: ControlContext, who: Who, action: string, target: string, expected: number | undefined, reason: string | undefined,
  build: (trx: Transaction<DB>, s: PolicyState) => Promise<Next>): Promise<TransitionResult> {
  const expectedGen = expected ?? (await getState(ctx.store.db)).generation;
  const out = await ctx.act(who, { action, target }, async (trx) => {
    const s = await getState(trx);
    if (s.generation !== expectedGen) throw new ApiError(409, 'POLICY_CONFLICT', `the policy state changed (generation ${s.generation}, you expected ${expectedGen})`);
    const next = await build(trx, s);
    const eff = await effectiveFor(trx, next);
    if (eff === null) throw new ApiError(409, 'CONFLICT', 'nothing would be applied');
    if (!eff.ok) throw new ApiError(422, 'POLICY_INVALID', 'the resulting effective policy is invalid', eff.problems);
    const saved = await casState(trx, expectedGen, next);
    if (!saved) throw new ApiError(409, 'POLICY_CONFLICT', 'another change was applied first');
    for (const v of [next.applied_version, next.pilot_version]) if (v !== null) await markApplied(trx, v);
    const before = { applied: s.applied_version, pilot: s.pilot_version, pilot_group: s.pilot_group };
    const after = { applied: saved.applied_version, pilot: saved.pilot_version, pilot_group: saved.pilot_group, digest: eff.meta.digest };
    // The admin's reason ("INCIDENT-42: undo v7") is what a later reader of the log needs most.
    return { value: { state: saved, effective: eff }, before, after, detail: reason };
  });
  await ctx.deliver(out.state.generation, out.effective);
  return out;
}

export function apply(ctx: ControlContext, who: Who, version: number, opts: { pilotGroup?: string; expected?: number; firstVersion?: boolean; reason?: string }): Promise<TransitionResult> {
  const target = `policy:v${version}${opts.pilotGroup !== undefined ? `@${opts.pilotGroup}` : ''}`;
  return transition(ctx, who, opts.pilotGroup !== undefined ? 'policy.apply_pilot' : 'policy.apply', target, opts.expected, opts.reason, async (trx, s) => {
    const v = await getVersion(trx, version);
    if (!v) throw new ApiError(404, 'RESOURCE_NOT_FOUND', `no policy version ${version}`);
    if (!(opts.firstVersion && s.applied_version === null)) await requireApproval(ctx, trx, v);
    if (opts.pilotGroup === undefined) return { applied_version: version, pilot_version: null, pilot_group: null };
    if (s.applied_version === null) throw new ApiError(409, 'CONFLICT', 'no version is applied yet: apply one to every group first');
    return { applied_version: s.applied_version, pilot_version: version, pilot_group: opts.pilotGroup };
  });
}

export function promote(ctx: ControlContext, who: Who, expected?: number, reason?: string): Promise<TransitionResult> {
  return transition(ctx, who, 'policy.promote', 'policy', expected, reason, async (_trx, s) => {
    if (s.pilot_version === null) throw new ApiError(409, 'CONFLICT', 'no pilot is in progress');
    return { applied_version: s.pilot_version, pilot_version: null, pilot_group: null };
  });
}

export function rollback(ctx: ControlContext, who: Who, version: number, expected?: number, reason?: string): Promise<TransitionResult> {
  return transition(ctx, who, 'policy.rollback', `policy:v${version}`, expected, reason, async (trx) => {
    const v = await getVersion(trx, version);
    if (!v) throw new ApiError(404, 'RESOURCE_NOT_FOUND', `no policy version ${version}`);
    // Only versions that were in force before: otherwise "rollback" would bypass the two-person
    // rule by applying a never-approved proposal.
    if (v.applied_at === null) throw new ApiError(409, 'POLICY_ROLLBACK_TARGET', `version ${version} was never applied`);
    return { applied_version: version, pilot_version: null, pilot_group: null };
  });
}

/**
 * The policy-file workflow of `chokepoint serve --policy FILE`: the file's content becomes a new
 * version (unless it is what is applied) and is applied, unless the two-person rule holds it for
 * approval. Returns what happened.
 */
export async function syncFromFile(ctx: ControlContext, file: string, text: string): Promise<'unchanged' | 'applied' | 'awaiting_approval'> {
  const who: Who = { actorId: null, tokenId: null, actor: `file:${file}`, role: 'system', sourceIp: null };
  const s = await getState(ctx.store.db);
  const cur = s.applied_version !== null ? await getVersion(ctx.store.db, s.applied_version) : null;
  if (cur && cur.text === text && s.pilot_version === null) {
    if (ctx.current === null) {
      const eff = await effectiveFor(ctx.store.db, s);
      if (eff?.ok) await ctx.deliver(s.generation, eff);
    }
    return 'unchanged';
  }
  const v = await propose(ctx, who, text, `policy file ${file} changed`);
  // The first version ever is applied even under the two-person rule: there is nothing to protect yet.
  if (ctx.opts.twoPerson && s.applied_version !== null) return 'awaiting_approval';
  await apply(ctx, who, v.version, { firstVersion: true });
  return 'applied';
}
