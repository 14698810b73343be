/**
 * Runs the detectors over the event stream and publishes their `alert` events. Baselines
 * (per-device volume, per-group destinations, last check-in) live in memory and are written
 * every `persist_interval` (and at close) to `<dataDir>/detect-baselines.json`, atomically
 * (temporary file + rename), and read back at start; an unreadable file is set aside as
 * `.corrupt` and the detectors start fresh rather than refusing to start.
 */
import { randomUUID } from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { DetectConfig, Thresholds } from '../config/evidence.js';
import type { ChokepointEvent } from '../events/catalogue.js';
import type { AlertEvent } from '../events/evidence.js';
import { DriftDetector } from './drift.js';
import { OffHoursDetector, OfflineDetector } from './schedule.js';
import { AdminSurgeDetector, EnrollmentSurgeDetector, TlsSurgeDetector } from './surges.js';
import { systemClock, type AlertInput, type Clock, type Detector, type DetectorContext } from './types.js';
import { VolumeDetector } from './volume.js';

export interface DetectEngineOptions {
  readonly config: DetectConfig;
  readonly publish: (e: AlertEvent) => void;
  /** Where baselines persist; null keeps them in memory only. */
  readonly dataDir: string | null;
  readonly clock?: Clock;
  readonly onError?: (err: Error) => void;
  /** Start timers (persist, tick). Tests leave this off and call tick()/persist() themselves. */
  readonly timers?: boolean;
}

export const BASELINES_FILE = 'detect-baselines.json';

export class DetectEngine {
  readonly #o: DetectEngineOptions;
  readonly #clock: Clock;
  readonly #detectors: Detector[];
  readonly #routes = new Map<string, readonly Detector[]>();
  readonly #thresholds = new Map<string | null, Thresholds>();
  readonly #timers: NodeJS.Timeout[] = [];
  #closed = false;

  constructor(o: DetectEngineOptions) {
    this.#o = o;
    this.#clock = o.clock ?? systemClock;
    const ctx: DetectorContext = { clock: this.#clock, thresholds: (g) => this.thresholds(g), raise: (a) => this.#raise(a) };
    this.#detectors = [new DriftDetector(ctx), new VolumeDetector(ctx), new TlsSurgeDetector(ctx), new EnrollmentSurgeDetector(ctx), new AdminSurgeDetector(ctx), new OffHoursDetector(ctx), new OfflineDetector(ctx)];
    this.#load();
    if (o.timers !== false) {
      const persist = setInterval(() => this.persist(), o.config.persist_interval);
      const tick = setInterval(() => this.tick(), o.config.tick_interval);
      persist.unref();
      tick.unref();
      this.#timers.push(persist, tick);
    }
  }

  /** A group's thresholds: its overrides over the defaults (cached; config is frozen). */
  thresholds(group: string | null): Thresholds {
    let t: Thresholds | undefined = this.#thresholds.get(group);
    if (!t) {
      const over = group === null ? undefined : this.#o.config.groups[group];
      const base = this.#o.config.defaults as Thresholds;
      t = over ? ({ ...base, ...Object.fromEntries(Object.entries(over).filter(([, v]) => v !== undefined)) } as Thresholds) : base;
      this.#thresholds.set(group, t);
    }
    return t;
  }

  /** The detectors that take this type, worked out once per type (the catalogue is finite). */
  #route(type: ChokepointEvent['type']): readonly Detector[] {
    let route = this.#routes.get(type);
    if (route === undefined) {
      route = type === 'alert' ? [] : this.#detectors.filter((d) => d.accepts(type));
      this.#routes.set(type, route);
    }
    return route;
  }

  /**
   * Whether any detector takes events of this type: the gateway's thread forwards to the
   * detectors' thread (sinks/threaded.ts) only these, and that thread parses only these. A
   * closed engine takes none.
   */
  accepts(type: ChokepointEvent['type']): boolean {
    return !this.#closed && this.#route(type).length > 0;
  }

  /** Bus subscriber. Alerts are ignored as input: a detector never feeds on its own output. */
  readonly observe = (e: ChokepointEvent): void => {
    if (this.#closed) return;
    for (const d of this.#route(e.type)) {
      try {
        d.observe(e);
      } catch (err) {
        this.#o.onError?.(err as Error);
      }
    }
  };

  tick(): void {
    for (const d of this.#detectors) {
      try { d.tick(); } catch (err) { this.#o.onError?.(err as Error); }
    }
  }

  #raise(a: AlertInput): void {
    this.#o.publish({ v: 1, type: 'alert', time: new Date(this.#clock.now()).toISOString(), id: randomUUID(), ...a });
  }

  #file(): string | null {
    return this.#o.dataDir === null ? null : join(this.#o.dataDir, BASELINES_FILE);
  }

  persist(): void {
    const file = this.#file();
    if (file === null) return;
    const state: Record<string, unknown> = { v: 1, saved_at: new Date(this.#clock.now()).toISOString() };
    for (const d of this.#detectors) if (d.save) state[d.name] = d.save();
    try {
      mkdirSync(this.#o.dataDir as string, { recursive: true, mode: 0o700 });
      writeFileSync(`${file}.tmp`, JSON.stringify(state), { mode: 0o600 });
      renameSync(`${file}.tmp`, file);
    } catch (err) {
      this.#o.onError?.(err as Error);
    }
  }

  #load(): void {
    const file = this.#file();
    if (file === null) return;
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      return; // first start
    }
    try {
      const state = JSON.parse(text) as Record<string, unknown>;
      if (state.v !== 1) throw new Error(`unknown baselines version ${String(state.v)}`);
      for (const d of this.#detectors) if (d.load && state[d.name] !== undefined) d.load(state[d.name]);
    } catch (err) {
      this.#o.onError?.(new Error(`detector baselines in ${file} unreadable, starting fresh: ${(err as Error).message}`));
      try { renameSync(file, `${file}.corrupt`); } catch { /* best effort */ }
    }
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const t of this.#timers) clearInterval(t);
    this.persist();
  }
}
