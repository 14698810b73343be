/**
 * Destination drift. (a) A device attempts destinations its policy does not allow — malware
 * beaconing, a compromised agent, or a misconfiguration — reported once per device and
 * destination per `drift_window`. (b) A group starts using an allowed destination it has never
 * used before (a wide wildcard now reaching somewhere new), after a learning period so that a
 * fresh deployment does not alarm on everything.
 */
import type { ChokepointEvent } from '../events/catalogue.js';
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

export class DriftDetector implements Detector {
  readonly name = 'destination_drift';
  readonly #ctx: DetectorContext;
  /** device|dest → when last reported. */
  readonly #reported = new Map<string, number>();
  readonly #known = new Map<string, Set<string>>();
  readonly #firstSeen = new Map<string, number>();
  readonly #budget = new Map<string, { start: number; n: number; suppressed: number }>();

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
      const b = this.#spend(`d|${device}`, now, th.drift_window);
      if (b === null) return;
      this.#ctx.raise({
        detector: 'destination_drift', severity: e.reason === 'denied_by_rule' || e.reason === 'address_denied' ? 'high' : 'medium', device_id: device, group,
        summary: `${device ?? 'unknown device'} tried ${dest}, which its policy does not allow (${e.reason})`,
        evidence: { destination: dest, reason: e.reason, rule: e.rule, client_ip: e.client_ip, decision_id: e.id, window_ms: th.drift_window, ...b },
        suggested_action: 'Check what on the device makes this connection; if it is legitimate, add an allow rule, otherwise investigate the device.',
      });
      return;
    }
    if (e.verdict !== 'allow' || e.reason !== 'allowed' || group === null) return;
    let known = this.#known.get(group);
    if (!known) this.#known.set(group, (known = new Set()));
    if (known.has(dest) || known.size >= MAX_PER_GROUP) return;
    known.add(dest);
    const since = this.#firstSeen.get(group) ?? now;
    if (now - since < th.drift_learning) return;
    const b = this.#spend(`g|${group}`, now, th.drift_window);
    if (b === null) return;
    this.#ctx.raise({
      detector: 'new_destination', severity: 'low', device_id: deviceOf(e), group,
      summary: `group ${group} used ${dest} for the first time`,
      evidence: { destination: dest, rule: e.rule, known_destinations: known.size - 1, observed_since: new Date(since).toISOString(), ...b },
      suggested_action: 'Confirm the destination is expected for this group; narrow the allow rule if it is too wide.',
    });
  }

  /** Takes one alert from the key's budget for this window; null when it is spent. */
  #spend(key: string, now: number, window: number): Record<string, unknown> | null {
    let b = this.#budget.get(key);
    if (!b || now - b.start >= window) {
      b = { start: now, n: 0, suppressed: 0 };
      boundedSet(this.#budget, key, b, MAX_TRACKED);
    }
    if (b.n >= ALERTS_PER_WINDOW) {
      b.suppressed++;
      return null;
    }
    b.n++;
    return b.n === ALERTS_PER_WINDOW ? { further_alerts_suppressed_until: new Date(b.start + window).toISOString() } : {};
  }

  tick(): void {
    const now = this.#ctx.clock.now();
    const max = this.#ctx.thresholds(null).drift_window;
    for (const [k, t] of this.#reported) if (now - t >= max * 24) this.#reported.delete(k);
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
