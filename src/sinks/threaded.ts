/**
 * The evidence thread: every sink that writes to a file or the network (file, syslog, webhook)
 * and the anomaly detectors run on a thread of their own, so that the proxy's thread does not
 * spend on them the CPU its tunnels need (issue #2: short CONNECT tunnels a second against
 * Squid; issue #5: all sinks on must stay within 5% of none). Measured on the sinks bench: in
 * the gateway's thread the network sinks cost 25–35 µs of CPU per short tunnel each (the disk
 * buffer's writes and reads, syslog framing, TLS and HTTP); the events file and the detectors
 * there cost it about 10 µs of its 174 per short tunnel in the comparison run (README,
 * Performance), and saving the detectors' baselines stalled it for 15–380 ms once a minute.
 * The gateway's thread only serializes each event once and hands the texts over every
 * COALESCE_MS in one message; the thread does the rest, parsing an event again only for the
 * detectors. What stays on the gateway's thread: the metrics (served by the control plane's
 * HTTP server there), the store's recorder, and a file sink writing to stdout.
 *
 * Nothing is lost silently on the way:
 * - Texts waiting here or not yet taken by the thread are bounded (`maxBytes`); past it the
 *   newest are refused and reported as `sink.dropped` (`queue_full`) for every sink that
 *   would have taken them, as the in-thread bounds do.
 * - If the thread dies (a bug, memory), the events it had not yet taken are reported as
 *   `sink.dropped` (`thread_failed`) and a new thread starts, after a backoff, on the same disk
 *   buffers: what they hold is delivered. Events the dead thread had taken but not yet written
 *   to its buffer or file (at most one write interval) are lost as in a process crash; the
 *   detectors start again from their baselines as last saved.
 * - Sink statistics live in the thread; `refresh()` fetches them (the metrics scrape awaits it),
 *   `stats()` returns the last ones plus what waits here.
 */
import { Worker } from 'node:worker_threads';
import type { DetectConfig } from '../config/evidence.js';
import { DetectEngine } from '../detect/engine.js';
import type { EvidenceEvent } from '../events/evidence.js';
import type { ChokepointEvent } from '../events/catalogue.js';
import { jsonOf } from '../events/json.js';
import { severityOf } from './syslog.js';
import type { ResolvedSink } from './factory.js';
import type { FromSinkThread, SinkThreadInit, ToSinkThread } from './thread-protocol.js';
import { COALESCE_MS, typeMatcher, WRITE_NOW_BYTES, type SinkStats } from './types.js';

/** What the metrics and the control plane see of a sink. */
export interface SinkView {
  readonly name: string;
  stats(): SinkStats;
}

export interface ThreadedSinksOptions {
  readonly sinks: readonly ResolvedSink[];
  readonly dataDir: string;
  readonly emit: (e: EvidenceEvent) => void;
  readonly onError: (sink: string, err: Error) => void;
  /** The anomaly detectors' settings, to run them on the thread; null or absent: none. */
  readonly detect?: DetectConfig | null;
  /** A detector failed on an event. */
  readonly onDetectError?: (err: Error) => void;
  /** Event texts waiting for the thread, at most (default 64 MiB, like a disk buffer's memory queue). */
  readonly maxBytes?: number;
  /** How long `refresh()` waits for the thread's answer. */
  readonly statsTimeoutMs?: number;
  /** The thread's script (tests wrap it to make the thread fail); default sink-worker.js. */
  readonly workerUrl?: URL;
}

/**
 * Texts handed over (or about to be) in one message, and how many events and bytes each
 * consumer (each sink, then the detectors) gets of them.
 */
interface Batch { texts: string[]; bytes: number; readonly events: number[]; readonly eventBytes: number[] }

/**
 * The name drops of the detectors' input are reported under (`sink.dropped`): the detectors are
 * accounted as one more consumer of the hand-over, after the sinks, and no sink may take the
 * name while they run.
 */
export const DETECTORS = 'detectors';

/**
 * What a network sink may hold in memory, generously: its disk buffer's write queue (64 MiB
 * while the disk is slow), the in-memory tail (8 MiB of UTF-8, up to twice that as strings) and
 * a batch in flight.
 */
const NETWORK_SINK_MIB = 96;

/**
 * The evidence thread's heap limit in MiB: room to work (256 MiB) plus what its sinks may hold
 * by their own bounds — a file sink's queue while its file cannot be written (`max_queue_bytes`
 * counts characters; held lines take about 1.25 times that, taken as 1.5) and each network
 * sink's share — and never less than 1 GiB. Below the sum, a disk failing for every file sink
 * would end the thread (and lose what the queues held) before any bound reported a drop.
 */
export function evidenceHeapMb(sinks: readonly ResolvedSink[]): number {
  let mib = 256;
  for (const s of sinks) mib += s.config.type === 'file' ? Math.ceil((s.config.max_queue_bytes * 1.5) / 2 ** 20) : NETWORK_SINK_MIB;
  return Math.max(1024, mib);
}

const RESTART_MIN_MS = 1000;
const RESTART_MAX_MS = 60_000;
const ZERO: SinkStats = { pending_events: 0, pending_bytes: 0, dropped: 0, delivered: 0, up: true };

export class ThreadedSinks {
  readonly views: readonly SinkView[];
  readonly #o: ThreadedSinksOptions;
  /** The consumers the hand-over accounts for: every sink (in SinkThreadInit order), then the detectors when on. */
  readonly #names: readonly string[];
  readonly #accepts: readonly ((type: string) => boolean)[];
  /** The consumers (indices) that take each event type, worked out once per type (the catalogue is finite). */
  readonly #routes = new Map<string, readonly number[]>();
  readonly #maxBytes: number;
  #worker: Worker | null = null;
  /** Waiting for the next hand-over. */
  #queued: Batch;
  /** Handed over, not yet acknowledged by the thread: oldest first. */
  #inflight: Batch[] = [];
  #inflightBytes = 0;
  #droppedHere: number[];
  #dropReport: number[];
  /** Per sink: what it held only in memory at the thread's last word (Sink.unsaved). */
  #unsaved: readonly number[] = [];
  #detectClosed: (() => void) | null = null;
  #timer: NodeJS.Timeout | null = null;
  #remote: Readonly<Record<string, SinkStats>> = {};
  #statsId = 0;
  /** The one stats request in flight (refresh() shares it), answered by its id. */
  #statsWaiter: { readonly id: number; readonly done: () => void } | null = null;
  #refreshing: Promise<void> | null = null;
  #restartDelay = RESTART_MIN_MS;
  #restartTimer: NodeJS.Timeout | null = null;
  #startedAt = 0;
  #closing: Promise<void> | null = null;
  #closed: (() => void) | null = null;

  constructor(o: ThreadedSinksOptions) {
    this.#o = o;
    // The detectors' own answer, from an engine that only answers it (no baselines, no timers).
    const probe = o.detect ? new DetectEngine({ config: o.detect, dataDir: null, publish: () => {}, timers: false }) : null;
    this.#names = [...o.sinks.map((s) => s.config.name), ...(probe ? [DETECTORS] : [])];
    this.#accepts = [...o.sinks.map((s) => typeMatcher(s.config.types)), ...(probe ? [(type: string) => probe.accepts(type as ChokepointEvent['type'])] : [])];
    this.#maxBytes = o.maxBytes ?? 64 * 1024 * 1024;
    const zeros = () => this.#names.map(() => 0);
    this.#queued = this.#emptyBatch();
    this.#droppedHere = zeros();
    this.#dropReport = zeros();
    this.views = o.sinks.map((s, i) => ({ name: s.config.name, stats: () => this.#stats(s.config.name, i) }));
    this.#start();
  }

  #route(type: ChokepointEvent['type']): readonly number[] {
    let r = this.#routes.get(type);
    if (r === undefined) {
      r = this.#accepts.flatMap((a, i) => (a(type) ? [i] : []));
      this.#routes.set(type, r);
    }
    return r;
  }

  /** Bus subscriber: serializes (once, shared with a stdout sink) and queues; never blocks. */
  readonly write = (e: ChokepointEvent): void => {
    if (this.#closing !== null) return;
    const route = this.#route(e.type);
    if (route.length === 0) return;
    // The thread gets what its sinks need besides the JSON (type, time, severity) in front of it,
    // so that it parses the JSON again only for the detectors: that parse, and the WeakMap entry
    // remembering the text for it, were about a sixth of the thread's CPU per event. JSON never
    // contains a raw tab or newline, nor do event types and ISO times.
    const type = e.type;
    const text = `${type}\t${e.time}\t${severityOf(e)}\t${jsonOf(e)}`;
    // UTF-16 units, not UTF-8 bytes: exact for ASCII, within 3x for the rest; enough for a memory bound.
    const bytes = text.length + 1;
    const q = this.#queued;
    const full = q.bytes + this.#inflightBytes + bytes > this.#maxBytes;
    for (const i of route) {
      if (full) {
        (this.#droppedHere[i] as number)++;
        (this.#dropReport[i] as number)++;
      } else {
        (q.events[i] as number)++;
        q.eventBytes[i] = (q.eventBytes[i] as number) + bytes;
      }
    }
    if (!full) {
      q.texts.push(text);
      q.bytes += bytes;
    }
    if (q.bytes >= WRITE_NOW_BYTES) this.#flush();
    else this.#timer ??= setTimeout(() => this.#flush(), COALESCE_MS);
  };

  /** Fetches the thread's current statistics (bounded wait; the last ones stay on timeout). */
  refresh(): Promise<void> {
    const w = this.#worker;
    if (w === null || this.#closing !== null) return Promise.resolve();
    this.#refreshing ??= new Promise<void>((resolve) => {
      const id = ++this.#statsId;
      const done = () => { clearTimeout(t); this.#statsWaiter = null; this.#refreshing = null; resolve(); };
      const t = setTimeout(done, this.#o.statsTimeoutMs ?? 1000);
      this.#statsWaiter = { id, done };
      w.postMessage({ t: 'stats', id } satisfies ToSinkThread);
    });
    return this.#refreshing;
  }

  /**
   * The first step of closing: hands over what is queued and waits (at most `waitMs`) until the
   * detectors have taken it, saved their baselines and stopped. The alerts they raised come
   * before the answer (emit), so a caller that lets them reach the bus and then closes the sinks
   * records them. Events keep being accepted meanwhile. Resolves at once without detectors.
   */
  closeDetectors(waitMs = 5000): Promise<void> {
    const w = this.#worker;
    if (!this.#o.detect || w === null || this.#closing !== null) return Promise.resolve();
    this.#flush();
    return new Promise<void>((resolve) => {
      const done = () => { clearTimeout(t); this.#detectClosed = null; resolve(); };
      const t = setTimeout(done, waitMs);
      this.#detectClosed = done;
      w.postMessage({ t: 'close-detect' } satisfies ToSinkThread);
    });
  }

  /** Hands over what is queued, then lets every sink drain (bounded by the sinks' own timeouts). Idempotent. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      this.#flush();
      if (this.#restartTimer) clearTimeout(this.#restartTimer);
      const w = this.#worker;
      if (w === null) {
        // Closing while a failed thread waits for its restart: what is queued has nowhere to go.
        this.#lose([this.#queued], false);
        this.#queued = this.#emptyBatch();
        return;
      }
      w.ref(); // waiting for the thread's answer must keep the process alive until it comes
      const closed = new Promise<void>((resolve) => { this.#closed = resolve; });
      w.postMessage({ t: 'close' } satisfies ToSinkThread);
      await closed;
      await w.terminate();
    })();
    return this.#closing;
  }

  /**
   * Stops the thread at once; what it holds in memory is lost (the detectors' state since
   * their last save too: only close() saves it), its disk buffers stay.
   */
  destroy(): void {
    this.#closing ??= Promise.resolve();
    if (this.#timer) clearTimeout(this.#timer);
    if (this.#restartTimer) clearTimeout(this.#restartTimer);
    const w = this.#worker;
    this.#worker = null;
    void w?.terminate();
    this.#closed?.();
  }

  /** The thread's figures, plus the events for this sink still on this side (queued or unacknowledged). */
  #stats(name: string, i: number): SinkStats {
    const r = this.#remote[name] ?? ZERO;
    let events = 0;
    let bytes = 0;
    for (const b of [this.#queued, ...this.#inflight]) {
      events += b.events[i] as number;
      bytes += b.eventBytes[i] as number;
    }
    return {
      pending_events: r.pending_events + events,
      pending_bytes: r.pending_bytes + bytes,
      dropped: r.dropped + (this.#droppedHere[i] as number),
      delivered: r.delivered,
      up: r.up,
    };
  }

  #flush(): void {
    if (this.#timer) { clearTimeout(this.#timer); this.#timer = null; }
    this.#reportDrops('queue_full', this.#dropReport);
    const b = this.#queued;
    if (b.texts.length === 0 || this.#worker === null) return;
    const text = b.texts.join('\n');
    // A buffer of its own (never Node's shared pool), moved to the thread rather than copied.
    const data = Buffer.allocUnsafeSlow(Buffer.byteLength(text));
    data.write(text);
    this.#worker.postMessage({ t: 'lines', data, events: b.texts.length } satisfies ToSinkThread, [data.buffer]);
    b.texts = []; // the thread has its own copy; only the counts are kept until it acknowledges
    this.#inflight.push(b);
    this.#inflightBytes += b.bytes;
    this.#queued = this.#emptyBatch();
  }

  #emptyBatch(): Batch {
    return { texts: [], bytes: 0, events: this.#names.map(() => 0), eventBytes: this.#names.map(() => 0) };
  }

  /**
   * Events that will never reach their sinks, counted and reported per sink: those in `batches`
   * and, when the thread died, what each sink held only in memory (`withUnsaved`).
   */
  #lose(batches: readonly Batch[], withUnsaved: boolean): void {
    const lost = this.#names.map((_, i) => batches.reduce((n, b) => n + (b.events[i] as number), 0) + (withUnsaved ? this.#unsaved[i] ?? 0 : 0));
    if (withUnsaved) this.#unsaved = [];
    lost.forEach((n, i) => { this.#droppedHere[i] = (this.#droppedHere[i] as number) + n; });
    this.#reportDrops('thread_failed', lost);
  }

  #reportDrops(reason: 'queue_full' | 'thread_failed', counts: number[]): void {
    for (let i = 0; i < counts.length; i++) {
      const n = counts[i] as number;
      if (n === 0) continue;
      counts[i] = 0;
      this.#o.emit({ v: 1, type: 'sink.dropped', time: new Date().toISOString(), sink: this.#names[i] as string, dropped: n, reason });
    }
  }

  #start(): void {
    const init: SinkThreadInit = { sinks: this.#o.sinks, dataDir: this.#o.dataDir, detect: this.#o.detect ?? null };
    const w = new Worker(this.#o.workerUrl ?? new URL('./sink-worker.js', import.meta.url), {
      workerData: init,
      // A thread that outgrows this ends alone, reported and restarted, instead of taking the
      // gateway's heap with it; it is sized so that the sinks' own bounds come first.
      resourceLimits: { maxOldGenerationSizeMb: evidenceHeapMb(this.#o.sinks) },
    });
    this.#worker = w;
    // Like every other timer of the evidence pipeline, the thread alone keeps no process alive.
    w.unref();
    this.#startedAt = Date.now();
    w.on('message', (m: FromSinkThread) => this.#onMessage(m));
    w.on('error', (err) => this.#o.onError(this.#label(), new Error(`evidence thread failed: ${err.message}`)));
    w.on('exit', (code) => this.#onExit(w, code));
    // Texts queued while no thread ran (a restart) go first.
    this.#flush();
  }

  #onMessage(m: FromSinkThread): void {
    switch (m.t) {
      case 'ack': {
        const b = this.#inflight.shift();
        if (b !== undefined) this.#inflightBytes -= b.bytes;
        this.#unsaved = m.unsaved;
        return;
      }
      case 'unsaved': this.#unsaved = m.unsaved; return;
      case 'detect-closed': this.#detectClosed?.(); return;
      case 'emit': this.#o.emit(m.event); return;
      case 'detect-error': this.#o.onDetectError?.(new Error(m.message)); return;
      case 'error': {
        const err = new Error(m.message) as NodeJS.ErrnoException;
        if (m.code !== undefined) err.code = m.code;
        this.#o.onError(m.sink, err);
        return;
      }
      case 'stats': {
        this.#remote = m.stats;
        if (this.#statsWaiter?.id === m.id) this.#statsWaiter.done();
        return;
      }
      case 'closed': this.#closed?.(); return;
    }
  }

  /** Who an error of the thread itself concerns, for the log. */
  #label(): string {
    return this.#names.join(',');
  }

  #onExit(w: Worker, code: number): void {
    if (this.#worker !== w) return; // destroyed
    this.#worker = null;
    this.#statsWaiter?.done();
    if (this.#closing !== null) { this.#closed?.(); return; }
    // Whatever the thread had not acknowledged, or held only in memory, is gone with it: say so, per sink.
    this.#detectClosed?.();
    this.#lose(this.#inflight, true);
    this.#inflight = [];
    this.#inflightBytes = 0;
    this.#o.onError(this.#label(), new Error(`evidence thread exited (code ${code}); restarting${this.#o.detect ? ' (the detectors start again from their baselines as last saved)' : ''}`));
    // A thread that ran a while gets a quick restart; one that keeps dying backs off.
    if (Date.now() - this.#startedAt > RESTART_MAX_MS) this.#restartDelay = RESTART_MIN_MS;
    this.#restartTimer = setTimeout(() => { this.#restartTimer = null; this.#start(); }, this.#restartDelay);
    this.#restartDelay = Math.min(RESTART_MAX_MS, this.#restartDelay * 2);
  }
}
