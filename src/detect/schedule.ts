/**
 * Time-based signals. Off hours: an allowed connection outside the group's configured working
 * hours (a server group that talks at 3 a.m. on a Sunday), reported once per device per
 * `drift_window`. Offline: a device that has not connected for longer than the group's
 * `offline_after` — an agent that stops checking in may have been stopped or removed by an
 * attacker ("agent offline" is a security signal); reported once until it is seen again.
 */
import type { Thresholds } from '../config/evidence.js';
import type { ChokepointEvent } from '../events/catalogue.js';
import { AlertBudget } from './budget.js';
import { boundedSet, deviceOf, DeviceTable, MAX_TRACKED, type Detector, type DetectorContext } from './types.js';

const DAYS = ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'] as const;

/** Whether `t` (ms since epoch) falls within the working hours; `from > to` spans midnight. */
export function withinHours(t: number, h: NonNullable<Thresholds['hours']>): boolean {
  const local = new Date(t + h.utc_offset_minutes * 60_000);
  const minute = local.getUTCHours() * 60 + local.getUTCMinutes();
  const [fh, fm] = h.from.split(':').map(Number) as [number, number];
  const [th, tm] = h.to.split(':').map(Number) as [number, number];
  const from = fh * 60 + fm;
  const to = th * 60 + tm;
  const day = DAYS[local.getUTCDay()] as (typeof DAYS)[number];
  if (from <= to) return (h.days as readonly string[]).includes(day) && minute >= from && minute < to;
  // Overnight shift: the part after midnight belongs to the previous day's shift.
  if (minute >= from) return (h.days as readonly string[]).includes(day);
  const prev = DAYS[(local.getUTCDay() + 6) % 7] as string;
  return minute < to && (h.days as readonly string[]).includes(prev);
}

/** Off-hours alerts per group per window; past it, one summary (many addresses at once must not flood the channel). */
export const OFF_HOURS_ALERTS_PER_WINDOW = 10;

export class OffHoursDetector implements Detector {
  readonly name = 'off_hours';
  readonly #ctx: DetectorContext;
  readonly #reported = new Map<string, number>();
  readonly #budget = new AlertBudget(OFF_HOURS_ALERTS_PER_WINDOW);
  constructor(ctx: DetectorContext) { this.#ctx = ctx; }

  accepts(t: ChokepointEvent['type']): boolean {
    return t === 'gateway.decision';
  }

  observe(e: ChokepointEvent): void {
    if (e.type !== 'gateway.decision' || e.verdict !== 'allow' || e.group === null) return;
    const th = this.#ctx.thresholds(e.group);
    if (!th.hours) return;
    const now = this.#ctx.clock.now();
    if (withinHours(now, th.hours)) return;
    const device = deviceOf(e);
    const key = `${device}|${e.group}`;
    const last = this.#reported.get(key);
    if (last !== undefined && now - last < th.drift_window) return;
    boundedSet(this.#reported, key, now, MAX_TRACKED);
    const group = e.group;
    const hours = th.hours;
    const summarize = (held: number, sample: readonly string[], start: number): void => this.#ctx.raise({
      detector: 'off_hours', severity: 'medium', device_id: null, group,
      summary: `${held} further devices of group ${group} connected outside its working hours in the window after the first ${OFF_HOURS_ALERTS_PER_WINDOW} alerts (not alerted one by one)`,
      evidence: { suppressed: held, sample_devices: sample, window_start: new Date(start).toISOString(), hours },
      suggested_action: 'Many devices of one group active at once outside its hours: a scheduled job, a changed time zone, or something driving them; check which.',
    });
    if (this.#budget.take(`g|${group}`, now, th.drift_window, device ?? e.client_ip, summarize) === null) return;
    this.#ctx.raise({
      detector: 'off_hours', severity: 'medium', device_id: device, group: e.group,
      summary: `${device} connected to ${e.host}:${e.port} outside the working hours of group ${e.group}`,
      evidence: { destination: `${e.host}:${e.port}`, hours: th.hours, local_time: new Date(now + th.hours.utc_offset_minutes * 60_000).toISOString().slice(0, 16).replace('T', ' '), decision_id: e.id },
      suggested_action: 'Check whether a scheduled job explains it; otherwise investigate who or what is using the device now.',
    });
  }

  tick(): void {
    this.#budget.tick(this.#ctx.clock.now());
  }
}

/** `from`: for a device loaded from saved state, when this gateway started watching again. */
interface Seen { t: number; group: string | null; alerted: boolean; from?: number }

/** Offline alerts per group per window (drift_window); past it, one summary per group. */
export const OFFLINE_ALERTS_PER_WINDOW = 10;

export class OfflineDetector implements Detector {
  readonly name = 'device_offline';
  readonly #ctx: DetectorContext;
  readonly #seen = new DeviceTable<Seen>();
  // Many devices going silent at once (a network outage, or a flood of addresses seen once)
  // must not bury the channel under one alert each.
  readonly #budget = new AlertBudget(OFFLINE_ALERTS_PER_WINDOW);
  constructor(ctx: DetectorContext) { this.#ctx = ctx; }

  accepts(t: ChokepointEvent['type']): boolean {
    return t === 'gateway.decision' || t === 'identity.device.enrolled';
  }

  observe(e: ChokepointEvent): void {
    let device: string | null = null;
    let group: string | null = null;
    if (e.type === 'gateway.decision') {
      // Only identified devices check in; a refused certificate or an unknown address is not one.
      if (e.group === null) return;
      device = deviceOf(e);
      group = e.group;
    } else if (e.type === 'identity.device.enrolled') {
      device = e.device_id;
      group = e.group;
    }
    if (device === null) return;
    const prev = this.#seen.get(device);
    if (prev?.alerted) {
      this.#ctx.raise({
        detector: 'device_offline', severity: 'low', device_id: device, group,
        summary: `${device} is back after ${Math.round((this.#ctx.clock.now() - prev.t) / 60_000)} minutes offline`,
        evidence: { last_seen: new Date(prev.t).toISOString(), back_at: new Date(this.#ctx.clock.now()).toISOString() },
        suggested_action: 'Confirm the agent was restarted on purpose (maintenance, reboot).',
      });
    }
    this.#seen.set(device, { t: this.#ctx.clock.now(), group, alerted: false });
  }

  tick(): void {
    const now = this.#ctx.clock.now();
    this.#budget.tick(now);
    for (const [device, s] of this.#seen) {
      const after = this.#ctx.thresholds(s.group).offline_after;
      // The gateway's own downtime is not the device's silence: after a restart a device gets
      // its full interval to check in again (else every device alerts at the first tick).
      if (s.alerted || after === 0 || now - Math.max(s.t, s.from ?? 0) <= after) continue;
      s.alerted = true;
      const group = s.group;
      const summarize = (held: number, sample: readonly string[], start: number): void => this.#ctx.raise({
        detector: 'device_offline', severity: 'medium', device_id: null, group,
        summary: `${held} further devices of group ${group ?? '(none)'} stopped checking in, after the first ${OFFLINE_ALERTS_PER_WINDOW} alerts (not alerted one by one)`,
        evidence: { suppressed: held, sample_devices: sample, window_start: new Date(start).toISOString(), offline_after_ms: after },
        suggested_action: 'Many devices silent at once: a network or gateway problem, or agents stopped on many hosts; check which.',
      });
      if (this.#budget.take(`g|${group ?? ''}`, now, this.#ctx.thresholds(group).drift_window, device, summarize) === null) continue;
      this.#ctx.raise({
        detector: 'device_offline', severity: 'medium', device_id: device, group: s.group,
        summary: `${device} has not checked in for ${Math.round((now - s.t) / 60_000)} minutes (expected every ${Math.round(after / 60_000)})`,
        evidence: { last_seen: new Date(s.t).toISOString(), offline_after_ms: after },
        suggested_action: 'Check whether the agent was stopped, uninstalled or blocked on the device; treat an unexplained silence as a possible compromise.',
      });
    }
  }

  save(): Record<string, Seen> {
    return Object.fromEntries(this.#seen);
  }

  load(s: unknown): void {
    const now = this.#ctx.clock.now();
    for (const [k, v] of Object.entries((s ?? {}) as Record<string, Partial<Seen>>)) {
      if (typeof v?.t === 'number') this.#seen.set(k, { t: v.t, group: typeof v.group === 'string' ? v.group : null, alerted: v.alerted === true, from: now });
    }
  }
}
