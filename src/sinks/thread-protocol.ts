/** Messages between the gateway's thread and the evidence thread (threaded.ts, sink-worker.ts). */
import type { DetectConfig } from '../config/evidence.js';
import type { EvidenceEvent } from '../events/evidence.js';
import type { ResolvedSink } from './factory.js';
import type { SinkStats } from './types.js';

export interface SinkThreadInit {
  readonly sinks: readonly ResolvedSink[];
  readonly dataDir: string;
  /** The anomaly detectors' settings; null when they are off. */
  readonly detect: DetectConfig | null;
}

export type ToSinkThread =
  /**
   * Events joined by "\n" in publication order, each `type TAB time TAB severity TAB json`
   * (severity: RFC 5424, for syslog; JSON never contains a raw tab or newline).
   */
  | { readonly t: 'lines'; readonly data: string; readonly events: number }
  | { readonly t: 'stats'; readonly id: number }
  | { readonly t: 'close' };

export type FromSinkThread =
  /** A `lines` message was handed to every sink (the sinks' own bounds apply from here on). */
  | { readonly t: 'ack'; readonly events: number }
  /** A health event (`sink.dropped`, `sink.backlog`, `sink.recovered`) or a detector's `alert`, to publish on the bus. */
  | { readonly t: 'emit'; readonly event: EvidenceEvent }
  /** A detector failed on an event (the others went on). */
  | { readonly t: 'detect-error'; readonly message: string }
  | { readonly t: 'error'; readonly sink: string; readonly message: string; readonly code?: string }
  | { readonly t: 'stats'; readonly id: number; readonly stats: Readonly<Record<string, SinkStats>> }
  | { readonly t: 'closed' };
