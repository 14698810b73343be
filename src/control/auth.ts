/**
 * Authentication (bearer API tokens) and role checks. Every route declares `config.role`; a
 * route without one makes the server refuse to start (fail closed: a forgotten declaration must
 * never mean "open"). The check runs in onRequest, before the body is parsed, so an
 * unauthorized caller cannot make the server parse large or hostile bodies.
 */
import type { FastifyInstance, FastifyRequest, RouteOptions } from 'fastify';
import { authenticate, ROLE_RANK, type Role } from '../store/admins.js';
import { looksLikeToken } from '../store/tokens.js';
import type { ControlContext, RouteRole } from './context.js';
import { ApiError } from './errors.js';

export const ROUTE_ROLES: readonly RouteRole[] = ['public', 'device', 'viewer', 'operator', 'security-admin'];

export interface RegisteredRoute {
  readonly method: string;
  readonly url: string;
  readonly role: RouteRole;
}

/** Installs the onRoute guard; returns the list it fills (for 405 answers and the RBAC walk test). */
export function guardRoutes(app: FastifyInstance): RegisteredRoute[] {
  const routes: RegisteredRoute[] = [];
  app.addHook('onRoute', (r: RouteOptions) => {
    const role = (r.config as { role?: unknown } | undefined)?.role;
    const methods = Array.isArray(r.method) ? r.method : [r.method];
    if (typeof role !== 'string' || !(ROUTE_ROLES as readonly string[]).includes(role)) {
      throw new Error(`route ${methods.join(',')} ${r.url} declares no valid config.role (one of ${ROUTE_ROLES.join(', ')}): refusing to start`);
    }
    for (const m of methods) routes.push({ method: m, url: r.url, role: role as RouteRole });
  });
  return routes;
}

function bearer(req: FastifyRequest): string | null {
  const h = req.headers.authorization;
  if (typeof h !== 'string') return null;
  const m = /^Bearer ([^\s]+)$/i.exec(h.trim());
  return m ? (m[1] as string) : '';
}

export function installAuth(app: FastifyInstance, ctx: ControlContext): void {
  app.decorateRequest('actor', null);
  app.addHook('onRequest', async (req) => {
    const role = req.routeOptions.config?.role;
    // Unmatched routes (404/405) have no role: they answer without touching the store.
    if (role === undefined || role === 'public' || role === 'device') return;
    const token = bearer(req);
    if (token === null) throw new ApiError(401, 'AUTH_REQUIRED', 'send "Authorization: Bearer cpa_…"');
    // Failed authentications are logged (with the source) but not audited: an unauthenticated
    // caller must not be able to grow the audit log at will.
    if (!looksLikeToken('cpa', token)) {
      req.log.warn({ source_ip: req.ip, url: req.url }, 'malformed API token');
      throw new ApiError(401, 'AUTH_INVALID');
    }
    const who = await authenticate(ctx.store.db, token);
    if (!who) {
      req.log.warn({ source_ip: req.ip, url: req.url }, 'unknown, expired or revoked API token');
      throw new ApiError(401, 'AUTH_INVALID');
    }
    req.actor = who;
    if (ROLE_RANK[who.admin.role] < ROLE_RANK[role as Role]) {
      await ctx.audit(req, { action: `${req.method} ${req.routeOptions.url ?? req.url}`, target: null, result: 'denied', detail: `FORBIDDEN_ROLE: needs ${role}` });
      throw new ApiError(403, 'FORBIDDEN_ROLE', `this action needs the ${role} role; you are ${who.admin.role}`);
    }
    if (role === 'security-admin' && who.admin.scopes !== null) {
      // Policy, admins and tokens belong to no group. Scoped security-admins can no longer be
      // created; one made before that must not act globally as if its scope were a limit.
      await ctx.audit(req, { action: `${req.method} ${req.routeOptions.url ?? req.url}`, target: null, result: 'denied', detail: 'FORBIDDEN_SCOPE: a scoped security-admin' });
      throw new ApiError(403, 'FORBIDDEN_SCOPE', 'security-admin actions are global and your admin has scopes: an unscoped security-admin must re-create it without scopes');
    }
  });
}

/** For 405 answers: the methods registered for a concrete path. */
export function methodsFor(routes: readonly RegisteredRoute[], path: string): string[] {
  const out = new Set<string>();
  for (const r of routes) if (patternOf(r.url).test(path)) out.add(r.method);
  return [...out].sort();
}

const patterns = new Map<string, RegExp>();
function patternOf(url: string): RegExp {
  let re = patterns.get(url);
  if (!re) {
    const src = url.split('/').map((seg) => seg.startsWith(':') ? '[^/]+' : seg === '*' ? '.*' : seg.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('/');
    re = new RegExp(`^${src}/?$`);
    patterns.set(url, re);
  }
  return re;
}
