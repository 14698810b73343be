/**
 * Data volume: bytes a device sent (bytes_up) in a window, against its own EWMA baseline of
 * earlier windows. Fires when the window passes max(floor, baseline × factor) and the device
 * has at least `volume_min_windows` windows of history — the floor keeps small devices from
 * alarming on noise, the history requirement keeps new devices quiet until they have a
 * baseline. This is the exfiltration signal: a backup agent that suddenly uploads 20× its
 * usual is worth a look. Bytes count as a tunnel reports progress (gateway.tunnel.progress, for
 * tunnels open longer than `timeouts.progress`) and when it closes (gateway.tunnel.closed).
 */
import type { ChokepointEvent } from '../events/catalogue.js';
import { MAX_TUNNELS_LIMIT } from '../core/limits.js';
import { boundedSet, deviceOf, DeviceTable, type Detector, type DetectorContext } from './types.js';

interface Dev { ewma: number; windows: number; start: number; bytes: number; alerted: boolean; group: string | null }

/** Idle windows folded into the baseline at most (a device back from a month offline). */
const MAX_GAP_WINDOWS = 48;

export class VolumeDetector implements Detector {
  readonly name = 'data_volume';
  readonly #ctx: DetectorContext;
  readonly #devs = new DeviceTable<Dev>();
  /**
   * Bytes up already counted for tunnels that reported progress, by attempt id; an entry lives
   * until its tunnel closes. Bounded by the most tunnels a gateway may hold open (not by
   * MAX_TRACKED): an entry forgotten while its tunnel is open would count that tunnel's whole
   * running total again at its next report, a false data_volume alert.
   */
  readonly #counted = new Map<string, number>();

  constructor(ctx: DetectorContext) { this.#ctx = ctx; }

  accepts(t: ChokepointEvent['type']): boolean {
    return t === 'gateway.tunnel.closed' || t === 'gateway.tunnel.progress';
  }

  observe(e: ChokepointEvent): void {
    if (e.type !== 'gateway.tunnel.closed' && e.type !== 'gateway.tunnel.progress') return;
    const device = deviceOf(e);
    if (device === null) return;
    // Progress events carry running totals: count only what is new since the last report of
    // the same tunnel, and at close only the rest.
    const seen = this.#counted.get(e.id) ?? 0;
    const bytes = Math.max(0, e.bytes_up - seen);
    if (e.type === 'gateway.tunnel.progress') boundedSet(this.#counted, e.id, e.bytes_up, MAX_TUNNELS_LIMIT);
    else this.#counted.delete(e.id);
    const now = this.#ctx.clock.now();
    const th = this.#ctx.thresholds(e.group);
    // Re-inserted on every update, so the bound evicts the device least recently heard from,
    // not the first one ever seen: a flood of new source addresses must not push out an
    // active device's baseline (and with it the alert on its next big upload).
    const d = this.#devs.get(device) ?? { ewma: 0, windows: 0, start: now, bytes: 0, alerted: false, group: e.group };
    this.#devs.set(device, d);
    this.#roll(d, now, th.volume_window, th.volume_alpha);
    d.bytes += bytes;
    d.group = e.group;
    const limit = Math.max(th.volume_floor_bytes, d.ewma * th.volume_factor);
    if (d.alerted || d.windows < th.volume_min_windows || d.bytes <= limit) return;
    d.alerted = true;
    this.#ctx.raise({
      detector: 'data_volume', severity: 'high', device_id: device, group: e.group,
      summary: `${device} sent ${d.bytes} bytes in this window, ${d.ewma > 0 ? `${(d.bytes / d.ewma).toFixed(1)}× its baseline` : 'with a zero baseline'}${e.type === 'gateway.tunnel.progress' ? ' (a tunnel still open)' : ''}`,
      evidence: { bytes_up: d.bytes, baseline_bytes: Math.round(d.ewma), factor: th.volume_factor, floor_bytes: th.volume_floor_bytes, window_ms: th.volume_window, window_start: new Date(d.start).toISOString(), windows_of_history: d.windows, last_destination: e.host, tunnel_open: e.type === 'gateway.tunnel.progress' },
      suggested_action: 'Look at where the device sent the data (tunnel.closed and tunnel.progress events for this device); if unexpected, revoke or isolate it.',
    });
  }

  /** Closes finished windows into the baseline (idle windows count as zero bytes). */
  #roll(d: Dev, now: number, window: number, alpha: number): void {
    const elapsed = Math.floor((now - d.start) / window);
    if (elapsed <= 0) return;
    const folds = Math.min(elapsed, MAX_GAP_WINDOWS);
    for (let i = 0; i < folds; i++) {
      const bytes = i === 0 ? d.bytes : 0;
      d.ewma = d.windows === 0 ? bytes : alpha * bytes + (1 - alpha) * d.ewma;
      d.windows++;
    }
    d.start += elapsed * window;
    d.bytes = 0;
    d.alerted = false;
  }

  tick(): void {}

  /**
   * Baselines, and the window in progress: without it, a restart gave every device a fresh
   * window, so an upload split around a restart (or a crash the uploader caused) was never
   * seen whole, and an alert already raised in the window was raised again.
   */
  save(): Record<string, Dev> {
    return Object.fromEntries([...this.#devs].map(([k, d]) => [k, { ewma: Math.round(d.ewma), windows: d.windows, start: d.start, bytes: d.bytes, alerted: d.alerted, group: d.group }]));
  }

  /** Files written before the window was saved have only ewma and windows: a fresh window then. */
  load(s: unknown): void {
    const now = this.#ctx.clock.now();
    for (const [k, v] of Object.entries((s ?? {}) as Record<string, Partial<Record<keyof Dev, unknown>>>)) {
      if (typeof v?.ewma !== 'number' || typeof v.windows !== 'number' || !(v.ewma >= 0) || !(v.windows >= 0)) continue;
      const group = typeof v.group === 'string' ? v.group : null;
      const d: Dev = { ewma: v.ewma, windows: v.windows, start: now, bytes: 0, alerted: false, group };
      // The window in progress at the save goes on if it is still in progress now. One that
      // ended meanwhile is not folded into the baseline, nor are the windows the gateway was
      // down for: the gateway saw no traffic then, which says nothing about the device.
      const start = v.start;
      if (typeof start === 'number' && typeof v.bytes === 'number' && v.bytes >= 0 && start <= now && now - start < this.#ctx.thresholds(group).volume_window) {
        d.start = start;
        d.bytes = v.bytes;
        d.alerted = v.alerted === true;
      }
      this.#devs.set(k, d);
    }
  }
}
