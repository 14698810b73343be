/**
 * Devices and enrollment requests. Operators act only on devices in their scopes; every state
 * change is audited with before/after and then reported through onDeviceChanged (the identity
 * side refreshes its in-memory directory and CRL; the gateway cuts a revoked device at once).
 */
import type { FastifyPluginAsync, FastifyRequest } from 'fastify';
import type { Transaction } from 'kysely';
import { z } from 'zod';
import { decideRequest, deviceCertificates, getDevice, listDevices, listEnrollmentRequests, pendingRequest, revokeDeviceCertificates, updateDevice, type Device } from '../store/devices.js';
import type { DB } from '../store/schema.js';
import type { ControlContext } from './context.js';
import { ApiError, parse } from './errors.js';
import { cursor, encodeCursor, groupName, limit } from './validate.js';

const deviceId = z.string().min(1).max(128).regex(/^[A-Za-z0-9._:-]+$/, 'not a device id');
const idParams = z.strictObject({ id: deviceId });
const tag = z.string().min(1).max(64).regex(/^[^\u0000-\u001f\u007f]+$/, 'control characters are not allowed');
const listQuery = z.strictObject({
  group: groupName.optional(), tag: tag.optional(), state: z.enum(['pending', 'active', 'disabled', 'revoked']).optional(), limit,
  cursor: cursor(z.string()).optional(),
});
const patchBody = z.strictObject({
  tags: z.array(tag).max(50).refine((t) => new Set(t).size === t.length, 'tags must be unique').optional(),
  asset_id: z.string().min(1).max(128).regex(/^[^\u0000-\u001f\u007f]+$/, 'control characters are not allowed').nullable().optional(),
}).refine((b) => b.tags !== undefined || b.asset_id !== undefined, 'give tags and/or asset_id');
const reasonBody = z.strictObject({ reason: z.string().max(500).optional() });

type StateAction = 'disable' | 'enable' | 'revoke';
const TRANSITIONS: Record<StateAction, { from: readonly Device['state'][]; to: Device['state'] }> = {
  disable: { from: ['active', 'pending'], to: 'disabled' },
  enable: { from: ['disabled'], to: 'active' },
  // Revocation is terminal: a revoked device re-enrolls as a new device.
  revoke: { from: ['pending', 'active', 'disabled'], to: 'revoked' },
};

export function deviceRoutes(ctx: ControlContext): FastifyPluginAsync {
  async function scopedDevice(req: FastifyRequest, trx: Transaction<DB> | null, id: string): Promise<Device> {
    const d = await getDevice(trx ?? ctx.store.db, id);
    if (!d) throw new ApiError(404, 'RESOURCE_NOT_FOUND', `no device ${id}`);
    const scopes = ctx.scopeFilter(req);
    if (scopes === undefined || scopes.includes(d.group_name)) return d;
    // Another group's device is answered exactly like one that does not exist: a 403 would
    // confirm to a scoped admin that the id is real. The audit log says what happened. A
    // change runs in act(), which audits the refusal with auditDetail; a read audits its own.
    const hidden = new ApiError(404, 'RESOURCE_NOT_FOUND', `no device ${id}`);
    hidden.auditDetail = `FORBIDDEN_SCOPE: device of group "${d.group_name}" (answered as not found)`;
    if (trx === null) await ctx.auditReadRefusal(req, `device:${id}`, hidden.auditDetail);
    throw hidden;
  }

  return async (app) => {
    app.get('/devices', { config: { role: 'viewer' } }, async (req) => {
      const q = parse(listQuery, req.query, 'query');
      const items = await listDevices(ctx.store.db, { group: q.group, tag: q.tag, state: q.state, groups: ctx.scopeFilter(req), afterId: q.cursor, limit: q.limit });
      const last = items[items.length - 1];
      return { items, next: items.length === q.limit && last ? encodeCursor(last.id) : null };
    });

    app.get('/devices/:id', { config: { role: 'viewer' } }, async (req) => {
      const p = parse(idParams, req.params, 'params');
      const d = await scopedDevice(req, null, p.id);
      return { ...d, certificates: await deviceCertificates(ctx.store.db, d.id), pending_request: await pendingRequest(ctx.store.db, d.id) };
    });

    app.patch('/devices/:id', { config: { role: 'operator' } }, async (req) => {
      const p = parse(idParams, req.params, 'params');
      const b = parse(patchBody, req.body, 'body');
      const out = await ctx.act(req, { action: 'device.edit', target: `device:${p.id}` }, async (trx) => {
        const d = await scopedDevice(req, trx, p.id);
        const set: { tags?: string; asset_id?: string | null } = {};
        if (b.tags !== undefined) set.tags = JSON.stringify(b.tags);
        if (b.asset_id !== undefined) set.asset_id = b.asset_id;
        await updateDevice(trx, d.id, set);
        const after = { tags: b.tags ?? d.tags, asset_id: b.asset_id !== undefined ? b.asset_id : d.asset_id };
        return { value: { ...d, ...after }, before: { tags: d.tags, asset_id: d.asset_id }, after };
      });
      await ctx.deviceChanged(p.id);
      return out;
    });

    for (const action of ['disable', 'enable', 'revoke'] as const) {
      app.post(`/devices/:id/${action}`, { config: { role: 'operator' } }, async (req) => {
        const p = parse(idParams, req.params, 'params');
        const b = parse(reasonBody, req.body ?? {}, 'body');
        const t = TRANSITIONS[action];
        const out = await ctx.act(req, { action: `device.${action}`, target: `device:${p.id}` }, async (trx) => {
          const d = await scopedDevice(req, trx, p.id);
          if (!t.from.includes(d.state)) throw new ApiError(409, 'CONFLICT', `cannot ${action} a device that is ${d.state}`);
          // A device disabled while it waited for approval goes back to waiting: enabling is not
          // approving, and an unapproved device shown as active misleads whoever reads the list.
          const to = action === 'enable' && (await pendingRequest(trx, d.id)) !== null ? 'pending' : t.to;
          await updateDevice(trx, d.id, { state: to });
          const serials = action === 'revoke' ? await revokeDeviceCertificates(trx, d.id, b.reason ?? 'revoked by admin') : [];
          return { value: { id: d.id, state: to, revoked_serials: serials }, before: { state: d.state }, after: { state: to, revoked_serials: serials }, detail: b.reason };
        });
        await ctx.deviceChanged(p.id);
        return out;
      });
    }

    for (const action of ['approve', 'deny'] as const) {
      app.post(`/devices/:id/${action}`, { config: { role: 'operator' } }, async (req) => {
        const p = parse(idParams, req.params, 'params');
        const b = parse(reasonBody, req.body ?? {}, 'body');
        const me = ctx.actorOf(req).admin.name;
        const out = await ctx.act(req, { action: `enrollment.${action}`, target: `device:${p.id}` }, async (trx) => {
          const d = await scopedDevice(req, trx, p.id);
          const r = await pendingRequest(trx, d.id);
          if (!r) throw new ApiError(409, 'CONFLICT', `device ${d.id} has no pending enrollment request`);
          const state = action === 'approve' ? 'approved' : 'denied';
          // Conditional update: of two admins deciding at once, one decides, the other gets 409.
          if (!(await decideRequest(trx, r.id, state, me))) throw new ApiError(409, 'CONFLICT', 'the request was decided meanwhile');
          // A denied device is refused for good (it enrolls again with a new token, as a new
          // device). Left pending, it was listed as waiting, and disable then enable made it active.
          // Also when it was disabled while waiting: enabling it later must not make it active.
          const refuse = action === 'deny' && (d.state === 'pending' || d.state === 'disabled');
          if (refuse) await updateDevice(trx, d.id, { state: 'revoked' });
          const device = refuse ? { device: 'revoked' } : {};
          return { value: { device_id: d.id, request_id: r.id, state }, before: { request: 'pending', device: d.state }, after: { request: state, ...device }, detail: b.reason };
        });
        await ctx.deviceChanged(p.id);
        return out;
      });
    }

    app.get('/enrollment-requests', { config: { role: 'viewer' } }, async (req) => {
      const q = parse(z.strictObject({ state: z.enum(['pending', 'approved', 'denied', 'issued']).optional(), limit }), req.query, 'query');
      // Scoped in the query: filtered after its LIMIT, newer requests of other groups left a
      // scoped admin short or empty pages.
      return { items: await listEnrollmentRequests(ctx.store.db, { state: q.state, groups: ctx.scopeFilter(req), limit: q.limit }) };
    });
  };
}
