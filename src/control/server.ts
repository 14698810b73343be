/**
 * buildControlServer(): the management API (fastify, JSON under /api/v1), un-started so that
 * tests can use inject() and `chokepoint serve` can listen where it is told.
 */
import Fastify, { LogController, type FastifyInstance } from 'fastify';
import type { RegisteredRoute } from './auth.js';
import { guardRoutes, installAuth, methodsFor } from './auth.js';
import { ControlContext, type ControlOptions } from './context.js';
import { envelope, sendEnvelope, toEnvelope } from './errors.js';
import { healthRoutes } from './routes-health.js';
import { adminRoutes } from './routes-admins.js';
import { policyRoutes } from './routes-policy.js';
import { deviceRoutes } from './routes-devices.js';
import { enrollmentTokenRoutes } from './routes-enrollment.js';
import { evidenceRoutes } from './routes-evidence.js';

export const DEFAULT_BODY_LIMIT = 1024 * 1024;

declare module 'fastify' {
  interface FastifyInstance {
    controlRoutes: readonly RegisteredRoute[];
    control: ControlContext;
  }
}

export async function buildControlServer(opts: ControlOptions): Promise<FastifyInstance> {
  // One instance type for HTTP and HTTPS: fastify's typings distinguish them, the routes do not.
  const app = Fastify({
    ...(opts.https ? { https: { cert: opts.https.cert, key: opts.https.key, minVersion: 'TLSv1.2' as const } } : {}),
    loggerInstance: opts.logger,
    bodyLimit: opts.bodyLimit ?? DEFAULT_BODY_LIMIT,
    // HEAD twins of GET routes would bypass nothing (same hooks) but double the route walk.
    exposeHeadRoutes: false,
    // `{"__proto__": …}` is refused, not merged (prototype pollution).
    onProtoPoisoning: 'error',
    onConstructorPoisoning: 'error',
    return503OnClosing: true,
    trustProxy: false,
    // Per-request info lines would drown the operational log; errors are logged where they occur.
    logController: new LogController({ disableRequestLogging: true }),
    routerOptions: { maxParamLength: 200, ignoreTrailingSlash: true },
    // Errors Fastify raises before any route runs (a malformed percent-encoding in the path)
    // get the same envelope and a registry code, not Fastify's own shape.
    frameworkErrors: (err, _req, reply) => {
      const message = err.code === 'FST_ERR_BAD_URL' ? 'the URL path is not valid percent-encoding'
        : err.code === 'FST_ERR_MAX_PARAM_LENGTH' ? 'a path segment is longer than 200 characters' : 'the request cannot be routed';
      void sendEnvelope(reply, envelope(400, 'VALIDATION_FAILED', message));
    },
  });
  const ctx = new ControlContext(opts);
  const routes = guardRoutes(app);
  app.decorate('controlRoutes', routes);
  app.decorate('control', ctx);
  installAuth(app, ctx);

  app.setErrorHandler((err, req, reply) => sendEnvelope(reply, toEnvelope(err as Error, req)));
  app.setNotFoundHandler((req, reply) => {
    const path = req.url.split('?')[0] ?? '';
    const allowed = methodsFor(routes, path);
    if (allowed.length > 0 && !allowed.includes(req.method)) {
      reply.header('allow', allowed.join(', '));
      return sendEnvelope(reply, envelope(405, 'METHOD_NOT_ALLOWED', `${req.method} is not allowed here; use ${allowed.join(', ')}`));
    }
    return sendEnvelope(reply, envelope(404, 'ROUTE_NOT_FOUND'));
  });

  await app.register(healthRoutes(ctx));
  await app.register(adminRoutes(ctx), { prefix: '/api/v1' });
  await app.register(policyRoutes(ctx), { prefix: '/api/v1' });
  await app.register(deviceRoutes(ctx), { prefix: '/api/v1' });
  await app.register(enrollmentTokenRoutes(ctx), { prefix: '/api/v1' });
  await app.register(evidenceRoutes(ctx), { prefix: '/api/v1' });
  for (const p of opts.plugins ?? []) await app.register(p);
  return app;
}
