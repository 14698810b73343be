/**
 * Destination drift. (a) A device attempts destinations its policy does not allow — malware
 * beaconing, a compromised agent, or a misconfiguration — reported once per device and
 * destination per `drift_window`. (b) A group starts using an allowed destination it has never
 * used before (a wide wildcard now reaching somewhere new), after a learning period so that a
 * fresh deployment does not alarm on everything. A group's table holds MAX_PER_GROUP
 * destinations; past it, nothing more is learned and every further destination is new.
 */
import type { ChokepointEvent } from '../events/catalogue.js';
import type { AlertEvent } from '../events/evidence.js';
import { AlertBudget } from './budget.js';
import { boundedSet, deviceOf, MAX_TRACKED, type Detector, type DetectorContext } from './types.js';

/** Deny reasons that come from policy (not from client errors or upstream trouble). */
const POLICY_DENIES = new Set(['no_rule_matched', 'port_not_allowed', 'denied_by_rule', 'ip_literal_denied', 'address_denied', 'group_not_in_policy']);
const MAX_PER_GROUP = 10_000;
/**
 * Alerts per device (drift) or per group (new destinations) per window; past it the rest of
 * the window is counted, not alerted, so a scanning device cannot flood the alert channel.
 * The last alert before the cap says so.
 */
export const ALERTS_PER_WINDOW = 10;

interface State { destinations: Record<string, string[]>; first_seen: Record<string, number> }

/** Who a held-back alert would have been about, for its window's summary. */
interface Held {
  readonly detector: 'destination_drift' | 'new_destination';
  readonly severity: AlertEvent['severity'];
  readonly device: string | null;
  readonly group: string | null;
}

/**
 * Policy denies that signal more than a misconfiguration: an explicit deny rule, an address
 * check (metadata, private ranges) or a raw IP literal. They have a budget of their own, so a
 * device cannot spend its alerts on throw-away denied names first and then reach them unseen.
 */
const HIGH_DENIES = new Set(['denied_by_rule', 'address_denied', 'ip_literal_denied']);

export class DriftDetector implements Detector {
  readonly name = 'destination_drift';
  readonly #ctx: DetectorContext;
  /** device|dest → when last reported. */
  readonly #reported = new Map<string, number>();
  readonly #known = new Map<string, Set<string>>();
  readonly #firstSeen = new Map<string, number>();
  readonly #budget = new AlertBudget(ALERTS_PER_WINDOW);
  /** group|dest → when last alerted, for destinations seen after the group's table filled. */
  readonly #newWhileFull = new Map<string, number>();
  /** Groups whose full table was reported (once per process: the table never empties). */
  readonly #fullReported = new Set<string>();

  constructor(ctx: DetectorContext) { this.#ctx = ctx; }

  accepts(t: ChokepointEvent['type']): boolean {
    return t === 'gateway.decision';
  }

  observe(e: ChokepointEvent): void {
    if (e.type !== 'gateway.decision' || e.host === null) return;
    const now = this.#ctx.clock.now();
    const dest = `${e.host}:${e.port ?? ''}`;
    const group = e.group;
    if (group !== null && !this.#firstSeen.has(group)) this.#firstSeen.set(group, now);
    const th = this.#ctx.thresholds(group);
    if (e.verdict === 'deny' && POLICY_DENIES.has(e.reason)) {
      const device = deviceOf(e);
      const key = `${device}|${dest}`;
      const last = this.#reported.get(key);
      if (last !== undefined && now - last < th.drift_window) return;
      boundedSet(this.#reported, key, now, MAX_TRACKED);
      // A cloud metadata endpoint (by name or as a raw literal) is never held back by a
      // budget: it is where a compromised agent goes for credentials, and the cheapest way to
      // hide that would be to spend the budget on throw-away literals first.
      const critical = e.address_class === 'metadata';
      const severity = critical ? 'critical' : HIGH_DENIES.has(e.reason) ? 'high' : 'medium';
      const b = critical ? {} : this.#spend(`d|${device}|${severity}`, now, th.drift_window, dest, { detector: 'destination_drift', severity, device, group });
      if (b === null) return;
      this.#ctx.raise({
        detector: 'destination_drift', severity, device_id: device, group,
        summary: `${device ?? 'unknown device'} tried ${dest}, which its policy does not allow (${e.reason})`,
        evidence: { destination: dest, reason: e.reason, rule: e.rule, client_ip: e.client_ip, decision_id: e.id, window_ms: th.drift_window, ...b },
        suggested_action: 'Check what on the device makes this connection; if it is legitimate, add an allow rule, otherwise investigate the device.',
      });
      return;
    }
    if (e.verdict !== 'allow' || e.reason !== 'allowed' || group === null) return;
    let known = this.#known.get(group);
    if (!known) this.#known.set(group, (known = new Set()));
    if (known.has(dest)) return;
    if (known.size < MAX_PER_GROUP) known.add(dest);
    else {
      // The table is full (a wide wildcard, or a device filling it on purpose during the
      // learning period): it learns no more, but a destination outside it is still new. Going
      // quiet instead would let anyone switch this detector off for a group with 10,000
      // throw-away names. Each such destination alerts once per window (budgeted as usual).
      this.#tableFull(group, now, e);
      const key = `${group}|${dest}`;
      const last = this.#newWhileFull.get(key);
      if (last !== undefined && now - last < th.drift_window) return;
      boundedSet(this.#newWhileFull, key, now, MAX_TRACKED);
    }
    const since = this.#firstSeen.get(group) ?? now;
    if (now - since < th.drift_learning) return;
    const b = this.#spend(`g|${group}`, now, th.drift_window, dest, { detector: 'new_destination', severity: 'low', device: null, group });
    if (b === null) return;
    this.#ctx.raise({
      detector: 'new_destination', severity: 'low', device_id: deviceOf(e), group,
      summary: `group ${group} used ${dest} for the first time`,
      evidence: { destination: dest, rule: e.rule, known_destinations: known.size - 1, observed_since: new Date(since).toISOString(), ...b },
      suggested_action: 'Confirm the destination is expected for this group; narrow the allow rule if it is too wide.',
    });
  }

  /** Says once that a group's destinations table is full, and what that changes. */
  #tableFull(group: string, now: number, e: Extract<ChokepointEvent, { type: 'gateway.decision' }>): void {
    if (this.#fullReported.has(group)) return;
    this.#fullReported.add(group);
    const since = this.#firstSeen.get(group) ?? now;
    this.#ctx.raise({
      detector: 'new_destination', severity: 'medium', device_id: deviceOf(e), group,
      summary: `group ${group} has used ${MAX_PER_GROUP} distinct destinations: no more are learned, and each further one is alerted as new`,
      evidence: { known_destinations: MAX_PER_GROUP, table_full: true, observed_since: new Date(since).toISOString(), last_destination: `${e.host}:${e.port ?? ''}` },
      suggested_action: 'So many destinations usually means an allow rule far wider than the group needs, or a device generating names (tunnelling data through DNS-like labels): look at the group\'s decisions and narrow the rule.',
    });
  }

  /**
   * Takes one alert from the key's budget for this window: the extra evidence for it (the last
   * one says until when the rest are held back), or null when it is spent. What is held back is
   * reported in one summary alert when the window ends (AlertBudget).
   */
  #spend(key: string, now: number, window: number, dest: string, who: Held): Record<string, unknown> | null {
    const t = this.#budget.take(key, now, window, dest, (n, sample, start) => this.#summarize(who, n, sample, start, window));
    if (t === null) return null;
    return t.n === ALERTS_PER_WINDOW ? { further_alerts_suppressed_until: new Date(t.windowStart + window).toISOString() } : {};
  }

  /** "Counted, not alerted" must reach someone, or a device that trips the cap first is invisible after it. */
  #summarize(b: Held, n: number, sample: readonly string[], start: number, window: number): void {
    const who = b.detector === 'destination_drift' ? (b.device ?? 'unknown device') : `group ${b.group ?? '?'}`;
    this.#ctx.raise({
      detector: b.detector, severity: b.severity, device_id: b.device, group: b.group,
      summary: `${who}: ${n} further ${b.detector === 'destination_drift' ? 'refused' : 'new'} destination${n === 1 ? '' : 's'} in the window after the first ${ALERTS_PER_WINDOW} alerts (not alerted one by one)`,
      evidence: { suppressed: n, sample_destinations: [...sample], window_start: new Date(start).toISOString(), window_ms: window },
      suggested_action: b.detector === 'destination_drift'
        ? 'A device trying this many destinations is scanning or misbehaving: look at its decisions (chokepoint events --device/--client) and isolate it if unexpected.'
        : 'Many new destinations at once: review whether a wide allow rule is being used for something new.',
    });
  }

  tick(): void {
    const now = this.#ctx.clock.now();
    const max = this.#ctx.thresholds(null).drift_window;
    for (const [k, t] of this.#reported) if (now - t >= max * 24) this.#reported.delete(k);
    for (const [k, t] of this.#newWhileFull) if (now - t >= max * 24) this.#newWhileFull.delete(k);
    this.#budget.tick(now);
  }

  save(): State {
    return { destinations: Object.fromEntries([...this.#known].map(([g, s]) => [g, [...s]])), first_seen: Object.fromEntries(this.#firstSeen) };
  }

  load(s: unknown): void {
    const st = s as Partial<State> | null;
    for (const [g, list] of Object.entries(st?.destinations ?? {})) if (Array.isArray(list)) this.#known.set(g, new Set(list.filter((d) => typeof d === 'string').slice(0, MAX_PER_GROUP)));
    for (const [g, t] of Object.entries(st?.first_seen ?? {})) if (typeof t === 'number') this.#firstSeen.set(g, t);
  }
}
