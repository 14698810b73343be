/**
 * Events of the evidence pipeline (issue #5): anomaly alerts and sink health.
 * Owned by the sinks/detect work; documented in docs/events.md like every event.
 */
import type { Base } from './catalogue.js';

export interface AlertEvent extends Base {
  readonly type: 'alert';
  readonly id: string;
  /** Which detector raised it, e.g. `destination_drift`. */
  readonly detector: string;
  readonly severity: 'low' | 'medium' | 'high' | 'critical';
  readonly device_id: string | null;
  readonly group: string | null;
  readonly summary: string;
  /** Facts that made the detector fire (counts, baselines, destinations). */
  readonly evidence: Readonly<Record<string, unknown>>;
  readonly suggested_action: string;
}

export type EvidenceEvent = AlertEvent;

export const EVIDENCE_EVENT_TYPES: readonly EvidenceEvent['type'][] = ['alert'];
