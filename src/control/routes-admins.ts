/** Admins and their API tokens (security-admin), and `whoami` (anyone authenticated). */
import type { FastifyPluginAsync } from 'fastify';
import { z } from 'zod';
import { DEFAULT_TOKEN_TTL_MS, getAdminByName, insertAdmin, insertToken, listAdmins, listTokens, ROLES } from '../store/admins.js';
import type { Transaction } from 'kysely';
import type { Dialect } from '../store/migrate.js';
import type { DB } from '../store/schema.js';
import type { ControlContext } from './context.js';
import { ApiError, parse } from './errors.js';
import { duration, groupName, name, uuid } from './validate.js';

const DAY = 86_400_000;
const createBody = z.strictObject({
  name,
  role: z.enum(ROLES as [string, ...string[]]),
  scopes: z.array(groupName).max(100).nullable().optional(),
  token_ttl: duration(60_000, 366 * DAY).optional(),
  label: z.string().max(100).optional(),
}).superRefine((b, c) => {
  // A security-admin's powers (policy, admins, tokens) are global: a scope on one would read as
  // a limit that nothing enforces. Scopes limit viewers and operators to device groups.
  if (b.role === 'security-admin' && b.scopes !== null && b.scopes !== undefined) {
    c.addIssue({ code: 'custom', path: ['scopes'], message: 'a security-admin acts on policy, admins and tokens, which belong to no group: scopes apply to viewer and operator' });
  }
});
const tokenBody = z.strictObject({ token_ttl: duration(60_000, 366 * DAY).optional(), label: z.string().max(100).optional() });
const nameParams = z.strictObject({ name });

export function adminRoutes(ctx: ControlContext): FastifyPluginAsync {
  return async (app) => {
    app.get('/whoami', { config: { role: 'viewer' } }, async (req) => {
      const a = ctx.actorOf(req).admin;
      return { name: a.name, role: a.role, scopes: a.scopes };
    });

    app.get('/admins', { config: { role: 'viewer' } }, async () => ({
      items: (await listAdmins(ctx.store.db)).map((a) => ({ name: a.name, role: a.role, scopes: a.scopes, disabled: a.disabled_at !== null, created_by: a.created_by, created_at: a.created_at })),
    }));

    app.post('/admins', { config: { role: 'security-admin' } }, async (req, reply) => {
      const b = parse(createBody, req.body, 'body');
      const me = ctx.actorOf(req).admin;
      const out = await ctx.act(req, { action: 'admin.create', target: `admin:${b.name}` }, async (trx) => {
        if (await getAdminByName(trx, b.name)) throw new ApiError(409, 'CONFLICT', `an admin named "${b.name}" exists`);
        const admin = await insertAdmin(trx, { name: b.name, role: b.role as 'viewer', scopes: b.scopes ?? null, createdBy: me.name });
        const t = await insertToken(trx, { adminId: admin.id, label: b.label ?? null, ttlMs: b.token_ttl ?? DEFAULT_TOKEN_TTL_MS });
        return { value: { name: admin.name, role: admin.role, scopes: admin.scopes, token: t.token, token_id: t.id, expires_at: t.expires_at }, after: { role: admin.role, scopes: admin.scopes, token_id: t.id } };
      });
      return reply.code(201).send(out);
    });

    app.post('/admins/:name/tokens', { config: { role: 'security-admin' } }, async (req, reply) => {
      const p = parse(nameParams, req.params, 'params');
      const b = parse(tokenBody, req.body ?? {}, 'body');
      const me = ctx.actorOf(req).admin;
      const out = await ctx.act(req, { action: 'token.create', target: `admin:${p.name}` }, async (trx) => {
        const admin = await getAdminByName(trx, p.name);
        if (!admin) throw new ApiError(404, 'RESOURCE_NOT_FOUND', `no admin named "${p.name}"`);
        // A token for another security-admin lets its holder act as them, and approve policy as
        // them: one person would satisfy the two-person rule, and the audit log would name the
        // wrong admin. Lost tokens of a security-admin: disable it and create a new one.
        if (admin.id !== me.id && admin.role === 'security-admin') {
          throw new ApiError(403, 'FORBIDDEN_ROLE', 'you may issue tokens for yourself, viewers and operators, not for another security-admin');
        }
        if (admin.disabled_at !== null) throw new ApiError(409, 'CONFLICT', `admin "${admin.name}" is disabled`);
        const t = await insertToken(trx, { adminId: admin.id, label: b.label ?? null, ttlMs: b.token_ttl ?? DEFAULT_TOKEN_TTL_MS });
        return { value: { name: admin.name, token: t.token, token_id: t.id, expires_at: t.expires_at }, after: { token_id: t.id, expires_at: t.expires_at } };
      });
      return reply.code(201).send(out);
    });

    app.post('/admins/:name/disable', { config: { role: 'security-admin' } }, async (req) => {
      const p = parse(nameParams, req.params, 'params');
      return ctx.act(req, { action: 'admin.disable', target: `admin:${p.name}` }, async (trx) => {
        const admin = await getAdminByName(trx, p.name);
        if (!admin) throw new ApiError(404, 'RESOURCE_NOT_FOUND', `no admin named "${p.name}"`);
        if (admin.role === 'security-admin') {
          await lockSecurityAdmins(trx, ctx.store.dialect);
          // Disabling the last security-admin that can act would lock everyone out of policy and
          // admin changes: another one must be active, unscoped and hold a valid token.
          if (!(await anotherUsableSecurityAdmin(trx, { exceptAdmin: admin.id }))) throw new ApiError(409, 'CONFLICT', 'this is the last security-admin that can act (no other active, unscoped one with a valid token)');
        }
        await trx.updateTable('admins').set({ disabled_at: Date.now() }).where('id', '=', admin.id).where('disabled_at', 'is', null).execute();
        return { value: { name: admin.name, disabled: true }, before: { disabled: admin.disabled_at !== null }, after: { disabled: true } };
      });
    });

    app.get('/tokens', { config: { role: 'security-admin' } }, async (req) => {
      const q = parse(z.strictObject({ admin: name.optional() }), req.query, 'query');
      let adminId: string | undefined;
      if (q.admin !== undefined) {
        const a = await getAdminByName(ctx.store.db, q.admin);
        if (!a) throw new ApiError(404, 'RESOURCE_NOT_FOUND', `no admin named "${q.admin}"`);
        adminId = a.id;
      }
      return { items: await listTokens(ctx.store.db, adminId) };
    });

    app.delete('/tokens/:id', { config: { role: 'security-admin' } }, async (req) => {
      const p = parse(z.strictObject({ id: uuid }), req.params, 'params');
      return ctx.act(req, { action: 'token.revoke', target: `token:${p.id}` }, async (trx) => {
        const t = await trx.selectFrom('api_tokens').select(['id', 'revoked_at']).where('id', '=', p.id).executeTakeFirst();
        if (!t) throw new ApiError(404, 'RESOURCE_NOT_FOUND', 'no such token');
        // Like disabling the last security-admin: revoking the last token any active
        // security-admin can use would leave nobody able to change policy or admins.
        if (t.revoked_at === null) {
          await lockSecurityAdmins(trx, ctx.store.dialect);
          if (!(await anotherUsableSecurityAdmin(trx, { exceptToken: p.id }))) throw new ApiError(409, 'CONFLICT', 'this is the last valid token of any active security-admin: issue another first (or run `chokepoint admin recover` on the server)');
        }
        await trx.updateTable('api_tokens').set({ revoked_at: Date.now() }).where('id', '=', p.id).where('revoked_at', 'is', null).execute();
        return { value: { id: p.id, revoked: true }, before: { revoked: t.revoked_at !== null }, after: { revoked: true } };
      });
    });
  };
}

/**
 * The "not the last one" checks read other rows than they change: under PostgreSQL's READ
 * COMMITTED two admins disabling each other (or revoking each other's last tokens) at once would
 * both see the other still active, and both succeed. Locking the security-admin rows first
 * makes the second wait for the first and then see its result. SQLite runs one writer at a time.
 */
async function lockSecurityAdmins(trx: Transaction<DB>, dialect: Dialect): Promise<void> {
  if (dialect !== 'postgres') return;
  await trx.selectFrom('admins').select('id').where('role', '=', 'security-admin').forUpdate().execute();
}

/** Whether a security-admin other than the one excluded can still act: active, unscoped, with an unexpired, unrevoked token. */
async function anotherUsableSecurityAdmin(trx: Transaction<DB>, except: { exceptAdmin?: string; exceptToken?: string }): Promise<boolean> {
  let q = trx.selectFrom('api_tokens').innerJoin('admins', 'admins.id', 'api_tokens.admin_id').select('api_tokens.id')
    .where('admins.role', '=', 'security-admin').where('admins.disabled_at', 'is', null).where('admins.scopes', 'is', null)
    .where('api_tokens.revoked_at', 'is', null).where('api_tokens.expires_at', '>', Date.now());
  if (except.exceptAdmin !== undefined) q = q.where('admins.id', '!=', except.exceptAdmin);
  if (except.exceptToken !== undefined) q = q.where('api_tokens.id', '!=', except.exceptToken);
  return (await q.limit(1).executeTakeFirst()) !== undefined;
}
