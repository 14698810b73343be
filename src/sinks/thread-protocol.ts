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
   * (severity: RFC 5424, for syslog; JSON never contains a raw tab or newline), as UTF-8. Bytes,
   * not a string: each line decoded on the thread is a string of its own, where slices of one
   * batch string would each keep the whole batch alive (a file sink on a failing disk holds its
   * lines for long: 300 held lines kept 105 MB).
   */
  | { readonly t: 'lines'; readonly data: Uint8Array; readonly events: number }
  /**
   * The detectors take what was handed over before this, save their baselines and stop; the
   * thread answers `detect-closed` after the alerts they raised (the first step of closing).
   */
  | { readonly t: 'close-detect' }
  | { readonly t: 'stats'; readonly id: number }
  | { readonly t: 'close' };

export type FromSinkThread =
  /**
   * A `lines` message was handed to every sink (the sinks' own bounds apply from here on), and
   * what each sink holds only in memory since its destination is failing (Sink.unsaved, in the
   * order of SinkThreadInit.sinks): what the thread's death would lose.
   */
  | { readonly t: 'ack'; readonly events: number; readonly unsaved: readonly number[] }
  /** The same figures when they changed with no hand-over to acknowledge (checked every second). */
  | { readonly t: 'unsaved'; readonly unsaved: readonly number[] }
  | { readonly t: 'detect-closed' }
  /** A health event (`sink.dropped`, `sink.backlog`, `sink.recovered`) or a detector's `alert`, to publish on the bus. */
  | { readonly t: 'emit'; readonly event: EvidenceEvent }
  /** A detector failed on an event (the others went on). */
  | { readonly t: 'detect-error'; readonly message: string }
  | { readonly t: 'error'; readonly sink: string; readonly message: string; readonly code?: string }
  | { readonly t: 'stats'; readonly id: number; readonly stats: Readonly<Record<string, SinkStats>> }
  | { readonly t: 'closed' };
