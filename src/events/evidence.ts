/**
 * Events of the evidence pipeline (issue #5): anomaly alerts and sink health.
 * Owned by the sinks/detect work; documented in docs/events.md like every event, and given a
 * JSON Schema in src/events/schemas.ts.
 */
import type { Base } from './catalogue.js';

export type AlertSeverity = 'low' | 'medium' | 'high' | 'critical';

export interface AlertEvent extends Base {
  readonly type: 'alert';
  readonly id: string;
  /** Which detector raised it, e.g. `destination_drift`. */
  readonly detector: string;
  readonly severity: AlertSeverity;
  readonly device_id: string | null;
  readonly group: string | null;
  readonly summary: string;
  /** Facts that made the detector fire (counts, baselines, destinations). */
  readonly evidence: Readonly<Record<string, unknown>>;
  readonly suggested_action: string;
}

/**
 * A sink discarded events: its bound (disk buffer or memory queue) was reached and the oldest
 * were dropped. Never silent: this event, a counter and an error log accompany every drop.
 */
export interface SinkDroppedEvent extends Base {
  readonly type: 'sink.dropped';
  readonly sink: string;
  readonly dropped: number;
  /**
   * `buffer_full` (the on-disk bound), `queue_full` (the in-memory queue), `unwritable` (the
   * buffer directory failed), `thread_failed` (the network sinks' thread died holding them),
   * `rejected` (the destination refused the single event as too large: HTTP 413).
   */
  readonly reason: 'buffer_full' | 'queue_full' | 'unwritable' | 'thread_failed' | 'rejected';
}

/** A sink's destination stopped accepting events; they accumulate in its buffer. */
export interface SinkBacklogEvent extends Base {
  readonly type: 'sink.backlog';
  readonly sink: string;
  readonly pending_events: number;
  readonly pending_bytes: number;
  /** A short description of the delivery failure (error code or HTTP status), never a secret. */
  readonly error: string;
}

/** A sink that was failing delivered again; its backlog drains in order. */
export interface SinkRecoveredEvent extends Base {
  readonly type: 'sink.recovered';
  readonly sink: string;
  readonly down_ms: number;
  readonly pending_events: number;
}

export type EvidenceEvent = AlertEvent | SinkDroppedEvent | SinkBacklogEvent | SinkRecoveredEvent;

export const EVIDENCE_EVENT_TYPES: readonly EvidenceEvent['type'][] = ['alert', 'sink.dropped', 'sink.backlog', 'sink.recovered'];
