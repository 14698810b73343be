/** Policy versions and change control under /api/v1/policy, and groups. */
import type { FastifyPluginAsync } from 'fastify';
import { z } from 'zod';
import { loadPolicyOffThread } from '../policy/index.js';
import { deviceCounts } from '../store/devices.js';
import { getState, getVersion, listApprovals, listVersions } from '../store/policies.js';
import { recentDestinations } from '../store/recent.js';
import type { ControlContext } from './context.js';
import { ApiError, parse } from './errors.js';
import { replayDestinations, ruleDiff } from './policy-diff.js';
import { apply, approve, promote, propose, rollback, type TransitionResult } from './policy-ops.js';
import { groupName, limit, reason, versionNumber } from './validate.js';

/** Policies of 100k rules are a few MB of YAML; the JSON envelope adds escaping. */
export const POLICY_BODY_LIMIT = 16 * 1024 * 1024;
const REPLAY_DESTINATIONS = 500;

const proposeBody = z.strictObject({ text: z.string().min(1).max(POLICY_BODY_LIMIT), reason });
const applyBody = z.strictObject({ version: versionNumber, pilot_group: groupName.optional(), expected_generation: z.number().int().min(0).optional(), reason: reason.optional() });
const promoteBody = z.strictObject({ expected_generation: z.number().int().min(0).optional(), reason: reason.optional() });
const rollbackBody = z.strictObject({ version: versionNumber, expected_generation: z.number().int().min(0).optional(), reason: reason.optional() });
const versionParams = z.strictObject({ version: versionNumber });

function stateOut(r: TransitionResult) {
  return { ...r.state, digest: r.effective.meta.digest, source: r.effective.meta.source };
}

export function policyRoutes(ctx: ControlContext): FastifyPluginAsync {
  return async (app) => {
    app.get('/policy/state', { config: { role: 'viewer' } }, async () => {
      const s = await getState(ctx.store.db);
      return { ...s, two_person: ctx.opts.twoPerson === true, digest: ctx.current?.meta.digest ?? null, source: ctx.current?.meta.source ?? null };
    });

    app.get('/policy/versions', { config: { role: 'viewer' } }, async (req) => {
      const q = parse(z.strictObject({ limit, before: versionNumber.optional() }), req.query, 'query');
      const items = await listVersions(ctx.store.db, { limit: q.limit, beforeVersion: q.before });
      const last = items[items.length - 1];
      return { items, next: items.length === q.limit && last ? last.version : null };
    });

    app.get('/policy/versions/:version', { config: { role: 'viewer' } }, async (req) => {
      const p = parse(versionParams, req.params, 'params');
      const v = await getVersion(ctx.store.db, p.version);
      if (!v) throw new ApiError(404, 'RESOURCE_NOT_FOUND', `no policy version ${p.version}`);
      return { ...v, approvals: (await listApprovals(ctx.store.db, p.version)).map((a) => ({ approver: a.approver, created_at: a.created_at })) };
    });

    app.post('/policy/versions', { config: { role: 'security-admin' }, bodyLimit: POLICY_BODY_LIMIT }, async (req, reply) => {
      const b = parse(proposeBody, req.body, 'body');
      const v = await propose(ctx, ctx.who(req), b.text, b.reason);
      return reply.code(201).send({ version: v.version, digest: v.digest, author: v.author, reason: v.reason, created_at: v.created_at });
    });

    app.post('/policy/versions/:version/approve', { config: { role: 'security-admin' } }, async (req) => {
      const p = parse(versionParams, req.params, 'params');
      return approve(ctx, ctx.who(req), p.version);
    });

    app.get('/policy/diff', { config: { role: 'viewer' } }, async (req) => {
      const q = parse(z.strictObject({ from: versionNumber.optional(), to: versionNumber }), req.query, 'query');
      const s = await getState(ctx.store.db);
      const fromN = q.from ?? s.applied_version;
      const to = await getVersion(ctx.store.db, q.to);
      if (!to) throw new ApiError(404, 'RESOURCE_NOT_FOUND', `no policy version ${q.to}`);
      const from = fromN === null ? null : await getVersion(ctx.store.db, fromN);
      if (fromN !== null && !from) throw new ApiError(404, 'RESOURCE_NOT_FOUND', `no policy version ${fromN}`);
      const fromText = from?.text ?? 'version: 1\ngroups: []\n';
      // Large policies are parsed on worker threads: the gateway shares this event loop.
      const [a, b] = await Promise.all([loadPolicyOffThread(fromText), loadPolicyOffThread(to.text)]);
      const recent = await recentDestinations(ctx.store.db, REPLAY_DESTINATIONS, ctx.scopeFilter(req));
      const changes = a.ok && b.ok ? replayDestinations(a.policy, b.policy, recent) : [];
      return { from: from?.version ?? null, to: to.version, groups: ruleDiff(fromText, to.text), destinations: changes, replayed: recent.length };
    });

    app.post('/policy/apply', { config: { role: 'security-admin' } }, async (req) => {
      const b = parse(applyBody, req.body, 'body');
      return stateOut(await apply(ctx, ctx.who(req), b.version, { pilotGroup: b.pilot_group, expected: b.expected_generation, reason: b.reason }));
    });

    app.post('/policy/promote', { config: { role: 'security-admin' } }, async (req) => {
      const b = parse(promoteBody, req.body ?? {}, 'body');
      return stateOut(await promote(ctx, ctx.who(req), b.expected_generation, b.reason));
    });

    app.post('/policy/rollback', { config: { role: 'security-admin' } }, async (req) => {
      const b = parse(rollbackBody, req.body, 'body');
      return stateOut(await rollback(ctx, ctx.who(req), b.version, b.expected_generation, b.reason));
    });

    app.get('/groups', { config: { role: 'viewer' } }, async (req) => {
      const counts = await deviceCounts(ctx.store.db);
      const policyGroups = ctx.current?.compiled.groups ?? [];
      // A scoped admin sees its groups only, like its device listings.
      const scopes = ctx.scopeFilter(req);
      const names = new Set([...policyGroups.map((g) => g.name), ...counts.map((c) => c.group_name)].filter((n) => scopes === undefined || scopes.includes(n)));
      return {
        items: [...names].sort().map((n) => {
          const g = policyGroups.find((x) => x.name === n);
          const devices: Record<string, number> = {};
          for (const c of counts) if (c.group_name === n) devices[c.state] = c.n;
          return { name: n, in_policy: g !== undefined, mode: g?.mode ?? null, pilot: ctx.current?.meta.pilotGroup === n, devices };
        }),
      };
    });
  };
}
