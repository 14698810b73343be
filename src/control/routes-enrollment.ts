/**
 * Enrollment token lifecycle (issuance details belong to the identity work). The plaintext
 * `cpe_…` token is returned once, at creation; only its hash is stored.
 */
import type { FastifyPluginAsync } from 'fastify';
import { z } from 'zod';
import { getEnrollmentToken, insertEnrollmentToken, listEnrollmentTokens, revokeEnrollmentToken } from '../store/devices.js';
import type { ControlContext } from './context.js';
import { ApiError, parse } from './errors.js';
import { duration, groupName, idParams, limit } from './validate.js';

const createBody = z.strictObject({
  group: groupName,
  asset_id: z.string().min(1).max(128).regex(/^[^\u0000-\u001f\u007f]+$/, 'control characters are not allowed').optional(),
  // Short by default: an enrollment token is a bearer secret that admits a device to a group.
  ttl: duration(10_000, 30 * 86_400_000).default(600_000),
  uses: z.number().int().min(1).max(10_000).default(1),
});

export function enrollmentTokenRoutes(ctx: ControlContext): FastifyPluginAsync {
  return async (app) => {
    app.post('/enrollment-tokens', { config: { role: 'operator' } }, async (req, reply) => {
      const b = parse(createBody, req.body ?? {}, 'body');
      const me = ctx.actorOf(req).admin.name;
      // The checks run inside act() so that a refusal (another group, one not in the policy) is
      // audited like a refused device action.
      const out = await ctx.act(req, { action: 'enrollment_token.create', target: `group:${b.group}` }, async (trx) => {
        ctx.requireScope(req, b.group);
        const groups = ctx.current?.compiled.groups;
        if (groups && !groups.some((g) => g.name === b.group)) {
          throw new ApiError(409, 'CONFLICT', `group "${b.group}" is not in the applied policy (groups: ${groups.map((g) => g.name).join(', ')})`);
        }
        const t = await insertEnrollmentToken(trx, { group: b.group, assetId: b.asset_id ?? null, uses: b.uses, ttlMs: b.ttl, createdBy: me });
        return { value: { ...t.info, token: t.token }, after: { id: t.info.id, group: b.group, asset_id: t.info.asset_id, uses: b.uses, expires_at: t.info.expires_at } };
      });
      return reply.code(201).send(out);
    });

    app.get('/enrollment-tokens', { config: { role: 'viewer' } }, async (req) => {
      const q = parse(z.strictObject({ limit }), req.query, 'query');
      return { items: await listEnrollmentTokens(ctx.store.db, { groups: ctx.scopeFilter(req), limit: q.limit }) };
    });

    app.delete('/enrollment-tokens/:id', { config: { role: 'operator' } }, async (req) => {
      const p = parse(idParams, req.params, 'params');
      return ctx.act(req, { action: 'enrollment_token.revoke', target: `enrollment_token:${p.id}` }, async (trx) => {
        const t = await getEnrollmentToken(trx, p.id);
        if (!t) throw new ApiError(404, 'RESOURCE_NOT_FOUND', 'no such enrollment token');
        ctx.requireScope(req, t.group_name);
        await revokeEnrollmentToken(trx, p.id);
        return { value: { id: p.id, revoked: true }, before: { revoked: t.revoked_at !== null }, after: { revoked: true } };
      });
    });
  };
}
