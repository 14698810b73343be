/** Read-side evidence: recent decisions, alerts (acknowledge/resolve), the audit log. */
import type { FastifyPluginAsync } from 'fastify';
import { z } from 'zod';
import { isReason } from '../core/reasons.js';
import { listAudit } from '../store/audit.js';
import { getAlert, listAlerts, queryDecisions, setAlertState } from '../store/recent.js';
import type { ControlContext } from './context.js';
import { ApiError, parse } from './errors.js';
import { cursor, encodeCursor, groupName, limit } from './validate.js';

const time = z.union([z.coerce.number().int().min(0), z.string().datetime({ offset: true }).transform((s) => Date.parse(s))]);
const eventsQuery = z.strictObject({
  verdict: z.enum(['allow', 'deny']).optional(),
  reason: z.string().max(64).refine(isReason, 'not a reason code (see docs/reasons.md)').optional(),
  group: groupName.optional(),
  host: z.string().min(1).max(253).optional(),
  device: z.string().min(1).max(128).optional(),
  /** The client address (the plain listener's clients have no device id). */
  client: z.string().min(2).max(45).regex(/^[0-9A-Fa-f.:]+$/, 'an IPv4 or IPv6 address').optional(),
  since: time.optional(),
  until: time.optional(),
  limit,
  cursor: cursor(z.number().int().min(0)).optional(),
});
const alertsQuery = z.strictObject({
  state: z.enum(['open', 'acknowledged', 'resolved']).optional(),
  severity: z.enum(['low', 'medium', 'high', 'critical']).optional(),
  detector: z.string().min(1).max(64).optional(),
  device: z.string().min(1).max(128).optional(),
  group: groupName.optional(),
  limit,
  /** The last alert of the previous page: [time, id] (alerts share timestamps: time alone skipped some). */
  cursor: cursor(z.tuple([z.number().int().min(0), z.string().max(128)])).optional(),
});
const alertParams = z.strictObject({ id: z.string().min(1).max(128).regex(/^[A-Za-z0-9._:-]+$/, 'not an alert id') });

export function evidenceRoutes(ctx: ControlContext): FastifyPluginAsync {
  return async (app) => {
    app.get('/events', { config: { role: 'viewer' } }, async (req) => {
      const q = parse(eventsQuery, req.query, 'query');
      const scopes = ctx.scopeFilter(req);
      if (scopes !== undefined && q.group !== undefined) await ctx.requireReadScope(req, q.group);
      const rows = await queryDecisions(ctx.store.db, { ...q, groups: scopes, beforeSeq: q.cursor, limit: q.limit });
      const last = rows[rows.length - 1];
      // Each item is the stored decision event plus the store's count of identical decisions
      // folded into it (recorder.ts) and the time of the latest.
      const items = rows.map((r) => ({ ...r.event, repeats: r.repeats, last_time: r.lastTime === null ? null : new Date(r.lastTime).toISOString() }));
      return { items, next: rows.length === q.limit && last ? encodeCursor(last.seq) : null };
    });

    app.get('/alerts', { config: { role: 'viewer' } }, async (req) => {
      const q = parse(alertsQuery, req.query, 'query');
      // A scoped admin sees the alerts of its groups only; alerts of no group (enrollment and
      // admin surges, TLS failures across groups) are outside every scope.
      const scopes = ctx.scopeFilter(req);
      if (scopes !== undefined && q.group !== undefined) await ctx.requireReadScope(req, q.group);
      const items = await listAlerts(ctx.store.db, { ...q, groups: scopes, after: q.cursor === undefined ? undefined : { time: q.cursor[0], id: q.cursor[1] }, limit: q.limit });
      const last = items[items.length - 1];
      return { items, next: items.length === q.limit && last ? encodeCursor([last.time, last.id]) : null };
    });

    for (const [verb, state] of [['ack', 'acknowledged'], ['resolve', 'resolved']] as const) {
      app.post(`/alerts/:id/${verb}`, { config: { role: 'operator' } }, async (req) => {
        const p = parse(alertParams, req.params, 'params');
        const b = parse(z.strictObject({ note: z.string().max(500).optional() }), req.body ?? {}, 'body');
        const me = ctx.actorOf(req).admin.name;
        return ctx.act(req, { action: `alert.${verb}`, target: `alert:${p.id}` }, async (trx) => {
          const a = await getAlert(trx, p.id);
          if (!a) throw new ApiError(404, 'RESOURCE_NOT_FOUND', `no alert ${p.id}`);
          // An alert of no group is outside every scope: only an unscoped admin handles it.
          if (a.group_name !== null) ctx.requireScope(req, a.group_name);
          else if (ctx.scopeFilter(req) !== undefined) throw new ApiError(403, 'FORBIDDEN_SCOPE', 'this alert belongs to no group, so it is outside your scopes');
          if (a.state === 'resolved') throw new ApiError(409, 'CONFLICT', 'the alert is already resolved');
          if (a.state === state) throw new ApiError(409, 'CONFLICT', `the alert is already ${state}`);
          await setAlertState(trx, p.id, state, me);
          return { value: { id: p.id, state }, before: { state: a.state }, after: { state }, detail: b.note };
        });
      });
    }

    app.get('/audit', { config: { role: 'viewer' } }, async (req) => {
      // The log is one hash chain across every group and admin: a scoped admin would read other
      // groups' devices and tokens in it, and a filtered copy could not be verified.
      if (ctx.scopeFilter(req) !== undefined) {
        await ctx.audit(req, { action: 'GET /api/v1/audit', target: null, result: 'denied', detail: 'FORBIDDEN_SCOPE: the audit log belongs to no group' });
        throw new ApiError(403, 'FORBIDDEN_SCOPE', 'the audit log covers every group: it is for unscoped admins');
      }
      const q = parse(z.strictObject({ after: z.coerce.number().int().min(0).optional(), limit: z.coerce.number().int().min(1).max(5000).default(100), actor: z.string().max(64).optional(), action: z.string().max(64).optional(), token: z.string().max(64).optional() }), req.query, 'query');
      const items = await listAudit(ctx.store.db, { afterSeq: q.after, limit: q.limit, actor: q.actor, action: q.action, tokenId: q.token });
      const last = items[items.length - 1];
      return { items, next: items.length === q.limit && last ? last.seq : null };
    });
  };
}
