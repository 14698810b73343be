/** Liveness and readiness (public: load balancers and orchestrators call them without a token). */
import type { FastifyPluginAsync } from 'fastify';
import type { ControlContext } from './context.js';

const PING_TIMEOUT_MS = 2000;

export function healthRoutes(ctx: ControlContext): FastifyPluginAsync {
  return async (app) => {
    app.get('/healthz', { config: { role: 'public' } }, async () => ({ status: 'ok' }));

    app.get('/readyz', { config: { role: 'public' } }, async (_req, reply) => {
      const failed: { check: string; message: string }[] = [];
      let timer: NodeJS.Timeout | undefined;
      try {
        await Promise.race([
          ctx.store.ping(),
          new Promise((_, reject) => { timer = setTimeout(() => reject(new Error('timeout')), PING_TIMEOUT_MS); }),
        ]);
      } catch {
        failed.push({ check: 'store', message: 'the store does not answer; the gateway keeps enforcing the last good policy' });
      } finally {
        clearTimeout(timer);
      }
      const loaded = ctx.opts.policyLoaded ? ctx.opts.policyLoaded() : ctx.current !== null;
      if (!loaded) failed.push({ check: 'policy', message: 'no policy is loaded; the gateway denies everything' });
      if (failed.length === 0) return { status: 'ready', checks: { store: 'ok', policy: 'ok' } };
      const first = failed[0]!;
      return reply.code(503).send({ code: 'NOT_READY', statusCode: 503, message: `${first.check}: ${first.message}`, failed });
    });
  };
}
