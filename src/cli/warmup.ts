/**
 * Runs the data plane's warm-up (src/gateway/warmup.ts) for `serve` and each proxy thread,
 * and says how it went. A failed warm-up is worth a warning, never a refusal to start.
 */
import type { Config } from '../config/schema.js';
import type { Logger } from '../gateway/logger.js';
import type { EventSink } from '../gateway/server.js';
import { warmUp } from '../gateway/warmup.js';

/** `bus`: the serving gateway's own (the private one drops every event before it). */
export async function warmUpDataPlane(config: Config, bus: EventSink, logger: Logger, signal?: AbortSignal): Promise<void> {
  if (config.proxy_warmup === 0) return;
  try {
    const r = await warmUp({ config, bus, logger, connections: config.proxy_warmup, signal });
    const fields = { connections: r.connections, failed: r.failed, ms: r.ms, timed_out: r.timedOut, first_error: r.firstError };
    if (signal?.aborted === true) logger.info(fields, 'data-plane warm-up cut short: the gateway was told to stop');
    else if (r.failed > 0 || r.timedOut) logger.warn(fields, 'data-plane warm-up incomplete: the first clients may meet slower, unoptimized code');
    else logger.info(fields, 'data plane warmed up');
  } catch (err) {
    logger.warn({ err }, 'data-plane warm-up failed: starting without it');
  }
}
