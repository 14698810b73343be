/**
 * What every detector gets: an injectable clock (tests drive synthetic streams
 * deterministically), per-group thresholds, and a way to raise an alert.
 */
import { isIP } from 'node:net';
import type { Thresholds } from '../config/evidence.js';
import type { ChokepointEvent } from '../events/catalogue.js';
import type { AlertSeverity } from '../events/evidence.js';

export interface Clock { now(): number }
export const systemClock: Clock = { now: () => Date.now() };

export interface AlertInput {
  readonly detector: string;
  readonly severity: AlertSeverity;
  readonly device_id: string | null;
  readonly group: string | null;
  readonly summary: string;
  readonly evidence: Record<string, unknown>;
  readonly suggested_action: string;
}

export interface DetectorContext {
  readonly clock: Clock;
  /** The group's thresholds (its overrides over the defaults); `null` group: the defaults. */
  thresholds(group: string | null): Thresholds;
  raise(a: AlertInput): void;
}

export interface Detector {
  readonly name: string;
  /**
   * Whether events of this type concern the detector at all. The engine asks once per type and
   * then hands each event only to the detectors that take it: seven detectors each testing
   * every event's type cost more than the detection itself on the data plane's thread.
   */
  accepts(type: ChokepointEvent['type']): boolean;
  observe(e: ChokepointEvent): void;
  /** Time-driven checks and pruning; called every `tick_interval`. */
  tick(): void;
  /** Baseline state to persist (plain JSON), or undefined for none. */
  save?(): unknown;
  load?(state: unknown): void;
}

/** The device an event concerns: its device id (mTLS) or, on the plain listener, its address. */
export function deviceOf(e: { device_id?: string | null; client_ip?: string | null }): string | null {
  return e.device_id ?? e.client_ip ?? null;
}

/** Keeps a bounded map: past `max` entries the oldest inserted is evicted (memory DoS guard). */
export function boundedSet<K, V>(m: Map<K, V>, k: K, v: V, max: number, onEvict?: (v: V) => void): void {
  m.delete(k);
  m.set(k, v);
  if (m.size > max) {
    const oldest = m.keys().next().value as K;
    if (onEvict) onEvict(m.get(oldest) as V);
    m.delete(oldest);
  }
}

export const MAX_TRACKED = 100_000;

/**
 * Per-device state (baselines, last seen) in two bounded maps: devices known by a certificate
 * apart from clients known only by their address. Addresses cost an attacker nothing (one
 * host's IPv6 /64 has 2^64), so with one map a flood of new source addresses would evict an
 * enrolled device's baseline — and with it the volume alert on its next big upload, or the
 * offline alert when it goes quiet. Device ids come only from certificates our CA signed, so
 * their map fills only as fast as enrollment allows. Each map keeps the least recently
 * updated entry out first (every set re-inserts).
 */
export class DeviceTable<V> implements Iterable<[string, V]> {
  readonly #devices = new Map<string, V>();
  readonly #addresses = new Map<string, V>();

  /** The last key classified, and its map: a device's events come in runs (decision, then closed). */
  #lastKey: string | null = null;
  #lastMap: Map<string, V> | null = null;

  #mapOf(key: string): Map<string, V> {
    if (key === this.#lastKey) return this.#lastMap as Map<string, V>;
    // deviceOf() gives the device id when there is one, else the client address.
    const m = isIP(key) === 0 ? this.#devices : this.#addresses;
    this.#lastKey = key;
    this.#lastMap = m;
    return m;
  }

  get(key: string): V | undefined {
    return this.#mapOf(key).get(key);
  }

  set(key: string, v: V): void {
    boundedSet(this.#mapOf(key), key, v, MAX_TRACKED);
  }

  *[Symbol.iterator](): Iterator<[string, V]> {
    yield* this.#devices;
    yield* this.#addresses;
  }
}
