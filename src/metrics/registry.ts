/**
 * Prometheus metrics fed from the event bus, plus a few gauges other parts set through
 * `MetricsHandle`. Label values are sanitized and bounded: a label keeps at most
 * `maxLabelValues` distinct values and counts the rest under `other`, so a client that
 * invents group names or hosts cannot blow up the time-series count (a memory DoS on the
 * gateway and on Prometheus). Hosts are never a label unless `host_labels` is on.
 */
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { MetricsConfig } from '../config/evidence.js';
import type { ChokepointEvent } from '../events/catalogue.js';
import type { SinkStats } from '../sinks/types.js';
import { METRICS, PROCESS_PREFIX } from './names.js';

/** Reasons that mean a refused or failed TLS handshake (ClientHello checks, client certificates). */
const TLS_REASONS = new Set(['not_tls', 'sni_mismatch', 'tls_version', 'ech_not_allowed', 'clienthello_timeout', 'client_certificate_required', 'certificate_invalid', 'certificate_expired', 'certificate_not_yet_valid']);

/** What other parts of the system set directly (the identity side, the resolver, the control plane). */
export interface MetricsHandle {
  /** Seconds until `notAfter` for a kind of certificate: `ca`, `server`, `device_min`, … */
  setCertificateExpiry(kind: string, notAfter: Date): void;
  setPolicyVersion(version: number): void;
  observeResolverLatency(seconds: number, result: 'ok' | 'error'): void;
  countTlsFailure(reason: string): void;
  /** Replaces the event-derived tunnel count with the gateway's own number. */
  setActiveTunnelsSource(fn: () => number): void;
}

export class LabelCap {
  readonly #max: number;
  readonly #seen = new Map<string, Set<string>>();
  constructor(max: number) { this.#max = max; }

  /** Letters, digits and `_.:/@+-` (others become `_`), at most 64 characters, `none` for null, `other` past the cap. */
  value(label: string, v: string | null | undefined): string {
    if (v === null || v === undefined || v === '') return 'none';
    const clean = v.replace(/[^A-Za-z0-9_.:/@+-]/g, '_').slice(0, 64);
    let set = this.#seen.get(label);
    if (!set) this.#seen.set(label, (set = new Set()));
    if (set.has(clean)) return clean;
    if (set.size >= this.#max) return 'other';
    set.add(clean);
    return clean;
  }
}

export class EvidenceMetrics implements MetricsHandle {
  readonly registry = new Registry();
  readonly #cap: LabelCap;
  readonly #hosts: boolean;
  readonly #decisions: Counter;
  readonly #closed: Counter;
  readonly #bytes: Counter;
  readonly #tls: Counter;
  readonly #resolver: Histogram;
  readonly #sinkDropped: Counter;
  readonly #certExpiry = new Map<string, Date>();
  readonly #policyInfo: Gauge;
  readonly #policyVersion: Gauge;
  readonly #policyLoaded: Gauge;
  readonly #policyRejected: Counter;
  readonly #alerts: Counter;
  readonly #events: Counter;
  #open = 0;
  #tunnelsFn: (() => number) | null = null;

  constructor(cfg: Pick<MetricsConfig, 'host_labels' | 'max_label_values' | 'process'>, sinks: () => readonly { name: string; stats(): SinkStats }[] = () => [], refreshSinks: () => Promise<void> = async () => {}) {
    const r = [this.registry];
    this.#cap = new LabelCap(cfg.max_label_values);
    this.#hosts = cfg.host_labels;
    const m = METRICS;
    this.#decisions = new Counter({ ...m.decisions, labelNames: this.#hosts ? ['verdict', 'reason', 'group', 'host'] : ['verdict', 'reason', 'group'], registers: r });
    const active: Gauge = new Gauge({ ...m.tunnelsActive, registers: r, collect: () => { active.set(this.#tunnelsFn ? this.#tunnelsFn() : this.#open); } });
    this.#closed = new Counter({ ...m.tunnelsClosed, labelNames: ['close_reason', 'group'], registers: r });
    this.#bytes = new Counter({ ...m.tunnelBytes, labelNames: ['direction', 'group'], registers: r });
    this.#tls = new Counter({ ...m.tlsFailures, labelNames: ['reason'], registers: r });
    this.#resolver = new Histogram({ ...m.resolverLatency, labelNames: ['result'], buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5], registers: r });
    // Sink gauges are read at scrape time: no timer, always current (network sinks' figures are
    // fetched from their thread first; the three gauges of one scrape share that one fetch).
    const perSink = (g: () => Gauge, f: (s: SinkStats) => number) => async () => {
      await refreshSinks();
      for (const s of sinks()) g().set({ sink: this.#cap.value('sink', s.name) }, f(s.stats()));
    };
    const backlogEvents: Gauge = new Gauge({ ...m.sinkBacklogEvents, labelNames: ['sink'], registers: r, collect: perSink(() => backlogEvents, (s) => s.pending_events) });
    const backlogBytes: Gauge = new Gauge({ ...m.sinkBacklogBytes, labelNames: ['sink'], registers: r, collect: perSink(() => backlogBytes, (s) => s.pending_bytes) });
    const up: Gauge = new Gauge({ ...m.sinkUp, labelNames: ['sink'], registers: r, collect: perSink(() => up, (s) => (s.up ? 1 : 0)) });
    this.#sinkDropped = new Counter({ ...m.sinkDropped, labelNames: ['sink', 'reason'], registers: r });
    const expiry: Gauge = new Gauge({ ...m.certExpiry, labelNames: ['kind'], registers: r, collect: () => { for (const [k, d] of this.#certExpiry) expiry.set({ kind: k }, Math.round((d.getTime() - Date.now()) / 1000)); } });
    this.#policyInfo = new Gauge({ ...m.policyInfo, labelNames: ['digest'], registers: r });
    this.#policyVersion = new Gauge({ ...m.policyVersion, registers: r });
    this.#policyLoaded = new Gauge({ ...m.policyLoaded, registers: r });
    this.#policyRejected = new Counter({ ...m.policyRejected, registers: r });
    this.#alerts = new Counter({ ...m.alerts, labelNames: ['detector', 'severity'], registers: r });
    this.#events = new Counter({ ...m.events, labelNames: ['type'], registers: r });
    if (cfg.process) {
      collectDefaultMetrics({ register: this.registry, prefix: PROCESS_PREFIX });
      // These three are gauges named `_total`, which the exposition conventions (and promtool) reject.
      for (const n of ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total']) this.registry.removeSingleMetric(`${PROCESS_PREFIX}${n}`);
    }
  }

  /** Bus subscriber: cheap counter updates only. */
  readonly observe = (e: ChokepointEvent): void => {
    this.#events.inc({ type: this.#cap.value('type', e.type) });
    switch (e.type) {
      case 'gateway.decision': {
        const group = this.#cap.value('group', e.group);
        const labels: Record<string, string> = { verdict: e.verdict, reason: this.#cap.value('reason', e.reason), group };
        if (this.#hosts) labels.host = this.#cap.value('host', e.host);
        this.#decisions.inc(labels);
        if (e.verdict === 'allow') this.#open++;
        if (e.verdict === 'deny' && TLS_REASONS.has(e.reason)) this.#tls.inc({ reason: e.reason });
        break;
      }
      case 'gateway.tunnel.closed': {
        const group = this.#cap.value('group', e.group);
        this.#open = Math.max(0, this.#open - 1);
        this.#closed.inc({ close_reason: this.#cap.value('close_reason', e.close_reason), group });
        this.#bytes.inc({ direction: 'up', group }, e.bytes_up);
        this.#bytes.inc({ direction: 'down', group }, e.bytes_down);
        break;
      }
      case 'gateway.policy.loaded':
        this.#policyInfo.reset();
        this.#policyInfo.set({ digest: this.#cap.value('digest', e.digest.slice(0, 16)) }, 1);
        this.#policyLoaded.set(Date.parse(e.time) / 1000);
        break;
      case 'gateway.tls.handshake_failed':
        this.#tls.inc({ reason: this.#cap.value('tls_reason', e.error) });
        break;
      case 'gateway.policy.rejected':
        this.#policyRejected.inc();
        break;
      case 'sink.dropped':
        this.#sinkDropped.inc({ sink: this.#cap.value('sink', e.sink), reason: e.reason }, e.dropped);
        break;
      case 'alert':
        this.#alerts.inc({ detector: this.#cap.value('detector', e.detector), severity: e.severity });
        break;
      default:
        break;
    }
  };

  setCertificateExpiry(kind: string, notAfter: Date): void {
    this.#certExpiry.set(this.#cap.value('kind', kind), notAfter);
  }

  setPolicyVersion(version: number): void {
    this.#policyVersion.set(version);
  }

  observeResolverLatency(seconds: number, result: 'ok' | 'error'): void {
    this.#resolver.observe({ result }, seconds);
  }

  countTlsFailure(reason: string): void {
    this.#tls.inc({ reason: this.#cap.value('tls_reason', reason) });
  }

  setActiveTunnelsSource(fn: () => number): void {
    this.#tunnelsFn = fn;
  }

  async exposition(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}
