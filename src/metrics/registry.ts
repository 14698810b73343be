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
import { LOOP_DELAY_GAUGES, registerLoopDelay } from './loop-delay.js';
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
  /** Per label: the distinct clean values admitted so far (at most `max`). */
  readonly #seen = new Map<string, Set<string>>();
  /**
   * Per label: raw value → its answer, so the hot path (every event) pays a Map lookup, not a
   * regex. Bounded too: distinct raw spellings of one clean value (`a!b`, `a?b`) are the
   * client's to invent, so past `2 × max` entries answers are computed and not remembered.
   */
  readonly #memo = new Map<string, Map<string, string>>();
  constructor(max: number) { this.#max = max; }

  /** Letters, digits and `_.:/@+-` (others become `_`), at most 64 characters, `none` for null, `other` past the cap (a real `other` or `none` reads `other_`, `none_`). */
  value(label: string, v: string | null | undefined): string {
    if (v === null || v === undefined || v === '') return 'none';
    let memo = this.#memo.get(label);
    if (memo === undefined) this.#memo.set(label, (memo = new Map()));
    const known = memo.get(v);
    if (known !== undefined) return known;
    let clean = v.replace(/[^A-Za-z0-9_.:/@+-]/g, '_').slice(0, 64);
    // The two values this cap gives meaning to: a real group (or sink, reason…) called `other`
    // or `none` must not merge with the overflow or the null bucket.
    if (clean === 'other' || clean === 'none') clean = `${clean}_`;
    let set = this.#seen.get(label);
    if (!set) this.#seen.set(label, (set = new Set()));
    let answer = clean;
    if (!set.has(clean)) {
      if (set.size >= this.#max) answer = 'other';
      else set.add(clean);
    }
    // `other` is not remembered: a value refused now stays refused (the set is full for good).
    if (answer !== 'other' && memo.size < 2 * this.#max) memo.set(v, answer);
    return answer;
  }
}

/**
 * A counter's increments on the data plane's path, kept as plain numbers per series and handed
 * to prom-client when it is scraped. prom-client hashes the label object on every `inc` (about
 * a microsecond and a few hundred bytes of garbage each; a tunnel makes six). Label values come
 * positionally, in the counter's `labelNames` order, already capped (so the series stay
 * bounded); nothing is allocated for a series already seen but its key.
 */
class Tally {
  /** `fresh`: not yet handed over, so a series first added with 0 (no bytes) still appears. */
  readonly #series = new Map<string, { readonly labels: Record<string, string>; value: number; synced: number; fresh: boolean }>();
  constructor(readonly counter: Counter, readonly labelNames: readonly string[]) {}

  add(v: number, a: string, b?: string, c?: string, d?: string): void {
    const key = b === undefined ? a : c === undefined ? `${a}\u0000${b}` : d === undefined ? `${a}\u0000${b}\u0000${c}` : `${a}\u0000${b}\u0000${c}\u0000${d}`;
    const s = this.#series.get(key);
    if (s !== undefined) {
      s.value += v;
      return;
    }
    const values = [a, b, c, d];
    const labels = Object.fromEntries(this.labelNames.map((n, i) => [n, values[i] as string]));
    this.#series.set(key, { labels, value: v, synced: 0, fresh: true });
  }

  /** Moves what was added since the last scrape into the prom-client counter. */
  sync(): void {
    for (const s of this.#series.values()) {
      if (s.value === s.synced && !s.fresh) continue;
      this.counter.inc(s.labels, s.value - s.synced);
      s.synced = s.value;
      s.fresh = false;
    }
  }
}

export class EvidenceMetrics implements MetricsHandle {
  readonly registry = new Registry();
  readonly #cap: LabelCap;
  readonly #hosts: boolean;
  readonly #decisions: Tally;
  readonly #closed: Tally;
  readonly #bytes: Tally;
  readonly #tls: Tally;
  readonly #resolver: Histogram;
  readonly #sinkDropped: Counter;
  readonly #certExpiry = new Map<string, Date>();
  readonly #policyInfo: Gauge;
  readonly #policyVersion: Gauge;
  readonly #policyLoaded: Gauge;
  readonly #policyRejected: Counter;
  readonly #alerts: Counter;
  readonly #events: Tally;
  #open = 0;
  #tunnelsFn: (() => number) | null = null;

  constructor(cfg: Pick<MetricsConfig, 'host_labels' | 'max_label_values' | 'process'>, sinks: () => readonly { name: string; stats(): SinkStats }[] = () => [], refreshSinks: () => Promise<void> = async () => {}) {
    const r = [this.registry];
    this.#cap = new LabelCap(cfg.max_label_values);
    this.#hosts = cfg.host_labels;
    const m = METRICS;
    // Data-plane counters are tallied (see Tally) and synced when scraped.
    const tallied = (c: ConstructorParameters<typeof Counter>[0] & { labelNames: readonly string[] }): Tally => {
      const t: Tally = new Tally(new Counter({ ...c, registers: r, collect: () => t.sync() }), c.labelNames);
      return t;
    };
    this.#decisions = tallied({ ...m.decisions, labelNames: this.#hosts ? ['verdict', 'reason', 'group', 'host'] : ['verdict', 'reason', 'group'] });
    const active: Gauge = new Gauge({ ...m.tunnelsActive, registers: r, collect: () => { active.set(this.#tunnelsFn ? this.#tunnelsFn() : this.#open); } });
    this.#closed = tallied({ ...m.tunnelsClosed, labelNames: ['close_reason', 'group'] });
    this.#bytes = tallied({ ...m.tunnelBytes, labelNames: ['direction', 'group'] });
    this.#tls = tallied({ ...m.tlsFailures, labelNames: ['reason'] });
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
    this.#events = tallied({ ...m.events, labelNames: ['type'] });
    if (cfg.process) {
      // prom-client's event-loop delay histogram is left idle (a sampling period it never
      // reaches) and its gauges replaced by loop-delay.ts's, which sample every 100 ms, not 10.
      collectDefaultMetrics({ register: this.registry, prefix: PROCESS_PREFIX, eventLoopMonitoringPrecision: 2 ** 31 - 1 });
      for (const k of LOOP_DELAY_GAUGES) this.registry.removeSingleMetric(`${PROCESS_PREFIX}nodejs_eventloop_lag_${k}_seconds`);
      registerLoopDelay(this.registry, PROCESS_PREFIX);
      // These three are gauges named `_total`, which the exposition conventions (and promtool) reject.
      for (const n of ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total']) this.registry.removeSingleMetric(`${PROCESS_PREFIX}${n}`);
    }
  }

  /** Bus subscriber: cheap counter updates only. */
  readonly observe = (e: ChokepointEvent): void => {
    const type = this.#cap.value('type', e.type);
    this.#events.add(1, type);
    switch (e.type) {
      case 'gateway.decision': {
        const group = this.#cap.value('group', e.group);
        const reason = this.#cap.value('reason', e.reason);
        this.#decisions.add(1, e.verdict, reason, group, this.#hosts ? this.#cap.value('host', e.host) : undefined);
        if (e.verdict === 'allow') this.#open++;
        if (e.verdict === 'deny' && TLS_REASONS.has(e.reason)) this.#countTls(e.reason);
        break;
      }
      case 'gateway.tunnel.closed': {
        const group = this.#cap.value('group', e.group);
        const closeReason = this.#cap.value('close_reason', e.close_reason);
        this.#open = Math.max(0, this.#open - 1);
        this.#closed.add(1, closeReason, group);
        this.#bytes.add(e.bytes_up, 'up', group);
        this.#bytes.add(e.bytes_down, 'down', group);
        break;
      }
      case 'gateway.policy.loaded':
        this.#policyInfo.reset();
        // One series at a time (reset above), so not capped: through the cap, after
        // max_label_values reloads every new policy would read "other" for good.
        this.#policyInfo.set({ digest: e.digest.slice(0, 16).replace(/[^0-9a-f]/g, '_') }, 1);
        this.#policyLoaded.set(Date.parse(e.time) / 1000);
        break;
      case 'gateway.tls.handshake_failed':
        this.#countTls(this.#cap.value('tls_reason', e.error));
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
    this.#countTls(this.#cap.value('tls_reason', reason));
  }

  #countTls(reason: string): void {
    this.#tls.add(1, reason);
  }

  setActiveTunnelsSource(fn: () => number): void {
    this.#tunnelsFn = fn;
  }

  async exposition(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}
