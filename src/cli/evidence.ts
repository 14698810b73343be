/**
 * The evidence pipeline inside `chokepoint serve` (issue #5): every configured sink (plus the
 * simple `events:` / `--events` target), Prometheus metrics and the anomaly detectors, all fed
 * from the bus. The sinks (but stdout) and the detectors run on the evidence thread
 * (sinks/threaded.ts); the metrics and the store's recorder stay on this one. An alert a detector
 * raises reaches the sinks after the event that caused it.
 *
 * Sink health (`sink.dropped`, `sink.backlog`, `sink.recovered`) is published on the bus one
 * turn later (never inside the publisher's call), so every sink and the metrics see it; a drop
 * also raises an `alert` (detector `sink_drop`), at most once a minute per sink.
 */
import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import type { FastifyPluginAsync } from 'fastify';
import type { Logger } from '../gateway/logger.js';
import type { Config } from '../config/schema.js';
import type { EventBus } from '../events/bus.js';
import type { EvidenceEvent } from '../events/evidence.js';
import { metricsPlugin as plugin } from '../metrics/plugin.js';
import { EvidenceMetrics, type MetricsHandle } from '../metrics/registry.js';
import { buildSink, resolveSink, type ResolvedSink } from '../sinks/factory.js';
import { FileSink } from '../sinks/file.js';
import { ThreadedSinks, type SinkView } from '../sinks/threaded.js';
import type { Sink } from '../sinks/types.js';

export interface EvidenceOptions {
  readonly config: Config;
  readonly bus: EventBus;
  /** Sink buffers go to `<dataDir>/spool/<name>/`, detector baselines to `<dataDir>/detect-baselines.json`. */
  readonly dataDir: string;
  readonly logger: Logger;
}

export interface Evidence {
  /** Register on the control server: `GET /metrics`, role from `metrics.access`. */
  readonly metricsPlugin: FastifyPluginAsync;
  /** Gauges and counters other parts set (certificate expiry, policy version, resolver latency, TLS failures). */
  readonly metrics: MetricsHandle;
  /** Every sink, by name, with its statistics (network sinks' as of the last `refreshSinkStats()`). */
  readonly sinks: readonly SinkView[];
  /** Fetches the current statistics of the sinks that run on the evidence thread. */
  refreshSinkStats(): Promise<void>;
  /** Stops detectors (baselines saved) and sinks (buffers flushed to disk). Idempotent. */
  close(): Promise<void>;
  destroy(): void;
}

const DROP_ALERT_EVERY_MS = 60_000;
/** The `events:` target's memory bound while its file or stdout is slower than the events. */
const EVENTS_QUEUE_BYTES = 256 * 1024 * 1024;
const NO_ROTATION = { maxBytes: Number.MAX_SAFE_INTEGER, intervalMs: 0, keep: 0, maxAgeMs: 0 };

export function createEvidence(o: EvidenceOptions): Evidence {
  const { config, bus, logger } = o;
  const unsubscribe: (() => void)[] = [];
  const lastDropAlert = new Map<string, number>();
  const emit = (e: EvidenceEvent): void => {
    setImmediate(() => {
      bus.publish(e);
      if (e.type !== 'sink.dropped') {
        if (e.type === 'sink.backlog') logger.warn({ sink: e.sink, pending_events: e.pending_events, error: e.error }, 'sink delivery failing; buffering');
        if (e.type === 'sink.recovered') logger.info({ sink: e.sink, down_ms: e.down_ms }, 'sink delivering again');
        return;
      }
      // Not only the bound: a disk that cannot be written, a full hand-over queue, a record the
      // destination refuses. The reason says which.
      logger.error({ sink: e.sink, dropped: e.dropped, reason: e.reason }, `sink dropped events (${e.reason})`);
      const now = Date.now();
      if (now - (lastDropAlert.get(e.sink) ?? 0) < DROP_ALERT_EVERY_MS) return;
      lastDropAlert.set(e.sink, now);
      bus.publish({
        v: 1, type: 'alert', time: new Date(now).toISOString(), id: randomUUID(), detector: 'sink_drop', severity: 'high', device_id: null, group: null,
        summary: `sink ${e.sink} dropped ${e.dropped} events (${e.reason})`,
        evidence: { sink: e.sink, dropped: e.dropped, reason: e.reason },
        suggested_action: 'Bring the destination back or raise buffer.max_bytes; the dropped events are gone from this sink (other sinks still have them).',
      });
    });
  };
  const onError = (sink: string, err: Error) => logger.error({ sink, err }, 'sink error');

  // Sinks and detectors run on the evidence thread (sinks/threaded.ts explains why); only
  // stdout, which belongs to this thread, is written from here.
  const local: Sink[] = [];
  const remote: ResolvedSink[] = [];
  if (config.events === '-') {
    local.push(new FileSink({ name: 'stdout', path: '-', maxQueueBytes: EVENTS_QUEUE_BYTES, emit, onError: (err) => onError('stdout', err), rotate: NO_ROTATION }));
  } else if (config.events !== 'none') {
    // The simple target keeps its old behaviour: one file, appended, never rotated.
    remote.push(resolveSink({ type: 'file', name: 'events', path: config.events, types: [], max_queue_bytes: EVENTS_QUEUE_BYTES, rotate: { max_bytes: NO_ROTATION.maxBytes, interval: 0, keep: 0, max_age: 0 } }, '-', 'events'));
  }
  for (const c of config.sinks) {
    // Throws here, at start, for a secret or TLS file that cannot be read, or a file sink's
    // directory that cannot be made.
    const r = resolveSink(c, hostname());
    if (c.type === 'file' && c.path === '-') local.push(buildSink(r, { dataDir: o.dataDir, emit, onError }));
    else remote.push(r);
  }
  const detect = config.detect.enabled ? config.detect : null;
  const threaded = remote.length > 0 || detect !== null
    ? new ThreadedSinks({ sinks: remote, dataDir: o.dataDir, emit, onError, detect, onDetectError: (err) => logger.error({ err }, 'detector error') })
    : null;
  // Subscription order matters: the sinks here and the thread's get an event before the metrics,
  // and a detector's alert (raised on the thread) comes back to the bus after its cause.
  for (const s of local) unsubscribe.push(bus.subscribe(s.write));
  if (threaded) unsubscribe.push(bus.subscribe(threaded.write));
  const sinks: SinkView[] = [...local, ...(threaded?.views ?? [])];
  const refreshSinkStats = async () => { await threaded?.refresh(); };

  const metrics = new EvidenceMetrics(config.metrics, () => sinks, refreshSinkStats);
  unsubscribe.push(bus.subscribe(metrics.observe));

  const access = config.metrics.access;
  const metricsPlugin: FastifyPluginAsync = async (app) => plugin(app, { metrics, access });

  let closing: Promise<void> | null = null;
  return {
    metricsPlugin, metrics, sinks, refreshSinkStats,
    close() {
      closing ??= (async () => {
        // The detectors first, while the sinks still take events: what they raise on the last
        // events before the close comes back to the bus, and from there to every sink.
        await threaded?.closeDetectors();
        // Let those alerts and the health events queued for the next turn reach the sinks before they close.
        await new Promise((r) => setImmediate(r));
        for (const u of unsubscribe) u();
        await Promise.all([
          ...local.map((s) => s.close().catch((err: Error) => onError(s.name, err))),
          threaded?.close().catch((err: Error) => onError('evidence thread', err)),
        ]);
      })();
      return closing;
    },
    destroy() {
      for (const u of unsubscribe) u();
      for (const s of local) s.destroy();
      threaded?.destroy();
    },
  };
}
