/**
 * Surges across many events: TLS handshake failures from many devices at once (TLS
 * interception on the path, a certificate problem, or a scan), enrollment surges (more new
 * devices than expected; enrollment attempts with bad tokens — token guessing or a leaked,
 * spent token), and admin action surges weighted towards high-privilege actions (a stolen
 * admin credential acting fast). Identity and audit events are matched on their `type`
 * strings defensively, since those catalogues grow independently.
 */
import type { ChokepointEvent } from '../events/catalogue.js';
import { deviceOf, type Detector, type DetectorContext } from './types.js';

const TLS_REASONS = new Set(['not_tls', 'sni_mismatch', 'tls_version', 'ech_not_allowed', 'clienthello_timeout', 'certificate_invalid', 'certificate_expired', 'certificate_not_yet_valid']);
const NEW_DEVICE_TYPES = new Set(['identity.device.enrolled', 'identity.enrollment.pending']);
const BAD_TOKEN_RE = /^identity\.(enrollment|token)\.(refused|rejected|failed|invalid)$/;
/** Actions that change who may do what: weighted 5 (a normal action weighs 1). */
const HIGH_PRIV_RE = /(admin|role|user|token|revoke|disable|policy|ca[._]|ca$|key|secret|approve|delete|rotate)/i;
const SAMPLE = 10;

interface Item { readonly t: number; readonly key: string; readonly w: number; readonly info: string }
const MAX_ITEMS = 100_000;

/**
 * Events in a sliding window: (time, key, weight), pruned as time passes. Counts per key are
 * kept as items come and go, so "how many distinct devices" costs nothing per event: counted
 * by walking the window on every event, one source's flood of failed handshakes (which never
 * reaches the distinct-device threshold, so the detector never goes quiet) cost up to 100,000
 * steps each, an unauthenticated way to burn the gateway's CPU.
 */
class Window {
  #arr: Item[] = [];
  #head = 0;
  readonly #counts = new Map<string, number>();
  get size(): number { return this.#arr.length - this.#head; }
  get distinct(): number { return this.#counts.size; }
  has(key: string): boolean { return this.#counts.has(key); }
  keys(): string[] { return [...this.#counts.keys()]; }
  /** A copy of the items, oldest first: for alerts, not for every event. */
  get items(): readonly Item[] { return this.#arr.slice(this.#head); }
  add(t: number, key: string, w: number, info: string): void {
    this.#arr.push({ t, key, w, info });
    this.#counts.set(key, (this.#counts.get(key) ?? 0) + 1);
    if (this.size > MAX_ITEMS) this.#dropOldest(); // bounded under a flood
    this.#compact();
  }
  prune(now: number, span: number): void {
    while (this.#head < this.#arr.length && now - (this.#arr[this.#head] as Item).t >= span) this.#dropOldest();
    this.#compact();
  }
  #dropOldest(): void {
    const it = this.#arr[this.#head++] as Item;
    const n = (this.#counts.get(it.key) ?? 1) - 1;
    if (n <= 0) this.#counts.delete(it.key);
    else this.#counts.set(it.key, n);
  }
  #compact(): void {
    if (this.#head > 4096 && this.#head * 2 > this.#arr.length) {
      this.#arr = this.#arr.slice(this.#head);
      this.#head = 0;
    }
  }
}

export class TlsSurgeDetector implements Detector {
  readonly name = 'tls_failure_surge';
  readonly #ctx: DetectorContext;
  readonly #w = new Window();
  #quietUntil = 0;
  constructor(ctx: DetectorContext) { this.#ctx = ctx; }

  accepts(t: ChokepointEvent['type']): boolean {
    return t === 'gateway.decision' || t === 'gateway.tls.handshake_failed';
  }

  observe(e: ChokepointEvent): void {
    let device: string;
    let reason: string;
    if (e.type === 'gateway.decision' && e.verdict === 'deny' && TLS_REASONS.has(e.reason)) {
      device = deviceOf(e) ?? 'unknown';
      reason = e.reason;
    } else if (e.type === 'gateway.tls.handshake_failed') {
      // No device is known before the handshake completes: the client address stands for it.
      device = e.client_ip;
      reason = `handshake:${e.error}`;
    } else {
      return;
    }
    const now = this.#ctx.clock.now();
    const th = this.#ctx.thresholds(null);
    this.#w.prune(now, th.tls_window);
    this.#w.add(now, device, 1, reason);
    if (now < this.#quietUntil) return;
    if (this.#w.distinct < th.tls_min_devices) return;
    const devices = this.#w.keys();
    this.#quietUntil = now + th.tls_window;
    const reasons: Record<string, number> = {};
    for (const i of this.#w.items) reasons[i.info] = (reasons[i.info] ?? 0) + 1;
    this.#ctx.raise({
      detector: 'tls_failure_surge', severity: 'high', device_id: null, group: null,
      summary: `TLS handshakes failed for ${devices.length} devices within ${th.tls_window / 1000}s`,
      evidence: { devices: devices.length, failures: this.#w.size, reasons, sample_devices: devices.slice(0, SAMPLE), window_ms: th.tls_window, threshold_devices: th.tls_min_devices },
      suggested_action: 'Check for TLS interception or a broken certificate on the path (reasons tell which check failed), and whether an agent update changed its TLS stack.',
    });
  }

  tick(): void { this.#w.prune(this.#ctx.clock.now(), this.#ctx.thresholds(null).tls_window); }
}

export class EnrollmentSurgeDetector implements Detector {
  readonly name = 'enrollment_surge';
  readonly #ctx: DetectorContext;
  readonly #new = new Map<string, Window>();
  readonly #bad = new Window();
  readonly #quiet = new Map<string, number>();
  constructor(ctx: DetectorContext) { this.#ctx = ctx; }

  accepts(t: ChokepointEvent['type']): boolean {
    return NEW_DEVICE_TYPES.has(t) || BAD_TOKEN_RE.test(t);
  }

  observe(e: ChokepointEvent): void {
    const now = this.#ctx.clock.now();
    const rec = e as unknown as Record<string, unknown>;
    const group = typeof rec.group === 'string' ? rec.group : null;
    const th = this.#ctx.thresholds(group);
    if (NEW_DEVICE_TYPES.has(e.type)) {
      const g = group ?? '(none)';
      let w = this.#new.get(g);
      if (!w) this.#new.set(g, (w = new Window()));
      w.prune(now, th.enroll_window);
      const device = typeof rec.device_id === 'string' ? rec.device_id : '?';
      if (!w.has(device)) w.add(now, device, 1, '');
      if (w.size > th.enroll_max_new && !this.#quietFor(`new|${g}`, now, th.enroll_window)) {
        this.#ctx.raise({
          detector: 'enrollment_surge', severity: 'medium', device_id: null, group,
          summary: `${w.size} new devices enrolled in group ${g} within ${th.enroll_window / 1000}s`,
          evidence: { new_devices: w.size, threshold: th.enroll_max_new, window_ms: th.enroll_window, sample_devices: w.items.slice(-SAMPLE).map((i) => i.key) },
          suggested_action: 'Confirm a rollout is under way; otherwise revoke the enrollment tokens of this group and review the new devices.',
        });
      }
      return;
    }
    if (!BAD_TOKEN_RE.test(e.type)) return;
    const dth = this.#ctx.thresholds(null);
    this.#bad.prune(now, dth.enroll_window);
    const ip = typeof rec.client_ip === 'string' ? rec.client_ip : 'unknown';
    this.#bad.add(now, ip, 1, typeof rec.code === 'string' ? rec.code : '');
    if (this.#bad.size >= dth.enroll_max_bad_tokens && !this.#quietFor('bad', now, dth.enroll_window)) {
      const sources = this.#bad.keys();
      this.#ctx.raise({
        detector: 'bad_enrollment_tokens', severity: 'high', device_id: null, group: null,
        summary: `${this.#bad.size} enrollment attempts with bad tokens within ${dth.enroll_window / 1000}s`,
        evidence: { attempts: this.#bad.size, threshold: dth.enroll_max_bad_tokens, window_ms: dth.enroll_window, sources: sources.slice(0, SAMPLE), codes: [...new Set(this.#bad.items.map((i) => i.info))] },
        suggested_action: 'Someone may be guessing or replaying tokens: block the sources, and revoke outstanding tokens if one may have leaked.',
      });
    }
  }

  #quietFor(key: string, now: number, span: number): boolean {
    const until = this.#quiet.get(key) ?? 0;
    if (now < until) return true;
    this.#quiet.set(key, now + span);
    return false;
  }

  tick(): void {}
}

export class AdminSurgeDetector implements Detector {
  readonly name = 'admin_surge';
  readonly #ctx: DetectorContext;
  readonly #w = new Map<string, Window>();
  readonly #quiet = new Map<string, number>();
  constructor(ctx: DetectorContext) { this.#ctx = ctx; }

  accepts(t: ChokepointEvent['type']): boolean {
    return t === 'audit.entry';
  }

  observe(e: ChokepointEvent): void {
    if (e.type !== 'audit.entry') return;
    const now = this.#ctx.clock.now();
    const th = this.#ctx.thresholds(null);
    let w = this.#w.get(e.actor);
    if (!w) this.#w.set(e.actor, (w = new Window()));
    w.prune(now, th.admin_window);
    // Denied attempts weigh extra: probing for permissions is itself a signal.
    const weight = (HIGH_PRIV_RE.test(e.action) ? 5 : 1) + (e.result === 'denied' ? 2 : 0);
    w.add(now, e.actor, weight, e.action);
    const total = w.items.reduce((n, i) => n + i.w, 0);
    if (total <= th.admin_max_weight || now < (this.#quiet.get(e.actor) ?? 0)) return;
    this.#quiet.set(e.actor, now + th.admin_window);
    const actions: Record<string, number> = {};
    for (const i of w.items) actions[i.info] = (actions[i.info] ?? 0) + 1;
    this.#ctx.raise({
      detector: 'admin_surge', severity: 'high', device_id: null, group: null,
      summary: `admin ${e.actor} performed ${w.size} actions (weight ${total}) within ${th.admin_window / 1000}s`,
      evidence: { actor: e.actor, role: e.role, weight: total, threshold: th.admin_max_weight, actions, window_ms: th.admin_window, last_source_ip: e.source_ip, last_audit_seq: e.seq },
      suggested_action: 'Confirm with the admin that this was them; if not, disable the account, revoke its tokens and review the audit log from this sequence number.',
    });
  }

  tick(): void {
    const now = this.#ctx.clock.now();
    const span = this.#ctx.thresholds(null).admin_window;
    for (const [k, w] of this.#w) { w.prune(now, span); if (w.size === 0) this.#w.delete(k); }
  }
}
