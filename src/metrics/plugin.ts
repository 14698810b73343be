/**
 * `GET /metrics` as a fastify plugin for the control listener. The route declares who may
 * read it in `config.role` (`public`: no authentication; `viewer`: a viewer bearer token), so
 * the control server's auth hook enforces it like any other route. Metrics reveal groups,
 * reasons and traffic volumes: the default is `viewer`; `public` is for a loopback-only or
 * firewalled scrape path.
 */
import type { FastifyInstance, FastifyPluginAsync } from 'fastify';
import type { EvidenceMetrics } from './registry.js';

export interface MetricsPluginOptions {
  readonly metrics: EvidenceMetrics;
  readonly access: 'public' | 'viewer';
}

export const metricsPlugin: FastifyPluginAsync<MetricsPluginOptions> = async (app: FastifyInstance, opts: MetricsPluginOptions) => {
  app.get('/metrics', { config: { role: opts.access } }, async (_req, reply) => {
    const { contentType, body } = await opts.metrics.exposition();
    return reply.header('content-type', contentType).header('cache-control', 'no-store').send(body);
  });
};
