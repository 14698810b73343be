/** What every sink offers to the evidence wiring (src/sinks/index.ts). */
import type { ChokepointEvent } from '../events/catalogue.js';

export interface SinkStats {
  /** Events accepted but not yet delivered (buffer and memory). */
  readonly pending_events: number;
  readonly pending_bytes: number;
  /** Events discarded since start (each also reported by a `sink.dropped` event). */
  readonly dropped: number;
  readonly delivered: number;
  /** False while delivery is failing. */
  readonly up: boolean;
}

export interface Sink {
  readonly name: string;
  /** Synchronous and cheap: queues the event; I/O happens later, off the publisher's stack. */
  readonly write: (e: ChokepointEvent) => void;
  /**
   * The same from an event's parts (type, time, RFC 5424 severity, JSON text), for the sinks'
   * thread, which receives texts and need not parse them when every sink takes this.
   */
  readonly writeText?: (type: string, time: string, severity: number, json: string) => void;
  stats(): SinkStats;
  /**
   * Events this sink accepted and holds only in memory because its destination is failing (a
   * file that cannot be written): what a death of the evidence thread would lose, for it to
   * report. The few milliseconds of events a healthy sink is about to write are not counted.
   */
  unsaved?(): number;
  /** Drains what can be drained without waiting on a dead destination; idempotent. */
  close(): Promise<void>;
  /** Aborts at once; idempotent. */
  destroy(): void;
}

/** `[]` accepts everything; otherwise exact types or `prefix.*`. */
export function typeMatcher(types: readonly string[]): (type: string) => boolean {
  if (types.length === 0) return () => true;
  const exact = new Set(types.filter((t) => !t.endsWith('.*')));
  const prefixes = types.filter((t) => t.endsWith('.*')).map((t) => t.slice(0, -1));
  return (type) => exact.has(type) || prefixes.some((p) => type.startsWith(p));
}

/**
 * How every local writer (file, stdout, disk buffer) batches: lines gather for COALESCE_MS and
 * go out in one write, sooner once WRITE_NOW_BYTES are waiting. Under load, writing whenever
 * something was queued meant a write (a thread-pool trip, for files) every few events — which
 * cost more gateway CPU per tunnel than the proxying itself (measured).
 */
export const COALESCE_MS = 10;
export const WRITE_NOW_BYTES = 256 * 1024;
