/**
 * A network sink: events go through a Spool (bounded, on disk) and one delivery loop sends
 * them in order, batch by batch, retrying a failed batch with exponential backoff and jitter
 * until the destination takes it. `write()` never waits on the network or the disk.
 * Health is reported as events: `sink.backlog` when delivery starts failing (and every minute
 * while it keeps failing), `sink.recovered` when it works again, `sink.dropped` on any drop.
 */
import type { ChokepointEvent } from '../events/catalogue.js';
import type { EvidenceEvent } from '../events/evidence.js';
import { Spool, type DropReason, type SpoolOptions } from './spool.js';
import { jsonOf } from '../events/json.js';
import { typeMatcher, type Sink, type SinkStats } from './types.js';

export interface Transport {
  /**
   * Delivers the records (JSON texts, no newline) or throws; `batchId` is stable across retries.
   * An error with `status: 413` says the destination refuses the batch as too large (RFC 9110
   * §15.5.14): the sink then sends smaller batches.
   */
  send(lines: readonly string[], batchId: string): Promise<void | SendResult>;
  close(): Promise<void>;
}

/**
 * What a transport may report about a batch it sent: records it could never send and skipped
 * (a UDP syslog message larger than a datagram). They are counted and reported as dropped
 * (`rejected`); the rest of the batch is delivered.
 */
export interface SendResult {
  readonly rejected: number;
}

export interface BufferedSinkOptions {
  readonly name: string;
  readonly types?: readonly string[];
  readonly spool: Omit<SpoolOptions, 'onDrop' | 'onError'>;
  readonly transport: Transport;
  readonly batchMax: number;
  readonly batchMaxBytes: number;
  /** When fewer than `batchMax` records are waiting, wait this long for more (fewer, larger requests). */
  readonly batchWaitMs?: number;
  readonly retry: { readonly minDelayMs: number; readonly maxDelayMs: number };
  /** Publishes health events (the caller defers them off the publisher's stack). */
  readonly emit: (e: EvidenceEvent) => void;
  readonly onError?: (err: Error) => void;
  /** Serializes an event into one record; default JSON. */
  readonly format?: (e: ChokepointEvent) => string;
  /** The same from the event's parts (writeText); required with `format` for writeText to be offered. */
  readonly formatText?: (type: string, time: string, severity: number, json: string) => string;
  /**
   * After a 413 lowered the batch limits, how long delivery must go on without another 413
   * before they are doubled back towards batch_max (default 10 minutes).
   */
  readonly regrowAfterMs?: number;
}

const BACKLOG_REPEAT_MS = 60_000;
const REGROW_AFTER_MS = 10 * 60_000;

const tooLarge = (err: unknown): boolean => (err as { status?: unknown } | null)?.status === 413;

/** Exponential backoff with "equal jitter": half fixed, half random, so retries don't synchronize. */
export function backoff(attempt: number, minMs: number, maxMs: number, rand = Math.random): number {
  const cap = Math.min(maxMs, minMs * 2 ** Math.min(attempt, 30));
  return Math.round(cap / 2 + (rand() * cap) / 2);
}

export function errorLabel(err: unknown): string {
  const e = err as { code?: unknown; status?: unknown; message?: unknown };
  if (typeof e?.status === 'number') return `http_${e.status}`;
  if (typeof e?.code === 'string' && /^[A-Z0-9_]{2,40}$/.test(e.code)) return e.code;
  return 'error';
}

export class BufferedSink implements Sink {
  readonly name: string;
  readonly #o: BufferedSinkOptions;
  readonly #spool: Spool;
  readonly #accepts: (type: string) => boolean;
  #dropped = 0;
  #delivered = 0;
  #downSince: number | null = null;
  #lastBacklog = 0;
  #stopped = false;
  #sleepTimer: NodeJS.Timeout | null = null;
  #wakeSleep: (() => void) | null = null;
  readonly #loop: Promise<void>;

  constructor(o: BufferedSinkOptions) {
    this.name = o.name;
    this.#o = o;
    this.#accepts = typeMatcher(o.types ?? []);
    this.#spool = new Spool({
      ...o.spool,
      onDrop: (n, reason) => this.#onDrop(n, reason),
      onError: (err) => o.onError?.(err),
    });
    this.#loop = this.#run();
    // Offered when a record can be made from the parts: plain JSON, or a text formatter.
    const formatText = o.formatText;
    if (o.format === undefined || formatText !== undefined) {
      this.writeText = (type, time, severity, json) => {
        if (this.#stopped || !this.#accepts(type)) return;
        this.#spool.append(`${formatText ? formatText(type, time, severity, json) : json}\n`);
      };
    }
  }

  readonly write = (e: ChokepointEvent): void => {
    if (this.#stopped || !this.#accepts(e.type)) return;
    this.#spool.append(`${this.#o.format ? this.#o.format(e) : jsonOf(e)}\n`);
  };

  readonly writeText?: (type: string, time: string, severity: number, json: string) => void;

  stats(): SinkStats {
    return { pending_events: this.#spool.pendingEvents, pending_bytes: this.#spool.pendingBytes, dropped: this.#dropped, delivered: this.#delivered, up: this.#downSince === null };
  }

  #onDrop(n: number, reason: DropReason | 'rejected'): void {
    this.#dropped += n;
    this.#o.emit({ v: 1, type: 'sink.dropped', time: new Date().toISOString(), sink: this.name, dropped: n, reason });
  }

  async #run(): Promise<void> {
    await this.#spool.ready;
    let lingered = false;
    // Halved when the destination refuses a batch as too large (413), doubled back after
    // `regrowAfterMs` without another: a receiver's body limit may be raised, or the 413 may
    // have come from a proxy in between for a while, and a sink left at tiny batches for the
    // rest of its life would fall behind under load until its buffer overflowed. A limit that
    // still holds costs one refused request (retried smaller, nothing lost) per period.
    let maxRecords = this.#o.batchMax;
    let maxBytes = this.#o.batchMaxBytes;
    const regrowMs = this.#o.regrowAfterMs ?? REGROW_AFTER_MS;
    let resizedAt = 0;
    while (!this.#stopped) {
      let batch;
      try {
        batch = await this.#spool.read(maxRecords, maxBytes);
      } catch (err) {
        this.#o.onError?.(err as Error);
        await this.#sleep(1000);
        continue;
      }
      if (batch === null) {
        await this.#spool.waitForData();
        continue;
      }
      // A small batch (everything there was, under batch_max) waits once for more to gather,
      // then goes with whatever is there. One that waiting cannot fill (`more`: cut by a limit
      // while more records wait, or ending a segment that takes no more) goes at once. (Waiting
      // on those too made a sink deliver one batch per batch_wait — after a 413, with large
      // events, through a backlog in small segments — and fall behind for good under load.)
      if (!lingered && !batch.more && batch.lines.length < maxRecords && (this.#o.batchWaitMs ?? 0) > 0) {
        lingered = true;
        await this.#sleep(this.#o.batchWaitMs as number);
        continue;
      }
      lingered = false;
      // Start and end: a batch re-read after a restart (or a 413) may start at the same record
      // but hold more or fewer, and must not look like a duplicate of the one sent before.
      const batchId = `${this.#spool.id}-${batch.seq}-${batch.end - batch.bytes}-${batch.end}`;
      for (let attempt = 0; !this.#stopped && !this.#spool.isStale(batch); attempt++) {
        try {
          const r = await this.#o.transport.send(batch.lines, batchId);
          const rejected = r ? r.rejected : 0;
          this.#delivered += batch.lines.length - rejected;
          await this.#spool.ack(batch);
          if (rejected > 0) this.#onDrop(rejected, 'rejected');
          this.#up();
          if ((maxRecords < this.#o.batchMax || maxBytes < this.#o.batchMaxBytes) && Date.now() - resizedAt >= regrowMs) {
            maxRecords = Math.min(this.#o.batchMax, maxRecords * 2);
            maxBytes = Math.min(this.#o.batchMaxBytes, maxBytes * 2);
            resizedAt = Date.now();
          }
          break;
        } catch (err) {
          if (tooLarge(err)) {
            // Retrying the same bytes can never succeed (a receiver's body limit below
            // batch_max_bytes would wedge the sink until its buffer overflowed): halve the
            // batches. A single record refused as too large can never be delivered: it is
            // dropped, counted and reported, and the records after it go on.
            if (batch.lines.length > 1) {
              maxRecords = Math.max(1, Math.floor(batch.lines.length / 2));
              maxBytes = Math.max(1, Math.floor(batch.bytes / 2));
              resizedAt = Date.now();
              this.#o.onError?.(new Error(`sink ${this.name}: the destination refused ${batch.lines.length} events (${batch.bytes} bytes) as too large (413); sending at most ${maxRecords} events, ${maxBytes} bytes a batch, larger again after ${Math.round(regrowMs / 1000)} s without a 413`));
            } else {
              await this.#spool.ack(batch);
              this.#onDrop(1, 'rejected');
            }
            break;
          }
          this.#down(err);
          await this.#sleep(backoff(attempt, this.#o.retry.minDelayMs, this.#o.retry.maxDelayMs));
        }
      }
    }
  }

  #down(err: unknown): void {
    const now = Date.now();
    if (this.#downSince === null) this.#downSince = now;
    if (now - this.#lastBacklog >= BACKLOG_REPEAT_MS || this.#lastBacklog < this.#downSince) {
      this.#lastBacklog = now;
      this.#o.emit({ v: 1, type: 'sink.backlog', time: new Date(now).toISOString(), sink: this.name, pending_events: this.#spool.pendingEvents, pending_bytes: this.#spool.pendingBytes, error: errorLabel(err) });
    }
  }

  #up(): void {
    if (this.#downSince === null) return;
    const down = Date.now() - this.#downSince;
    this.#downSince = null;
    this.#o.emit({ v: 1, type: 'sink.recovered', time: new Date().toISOString(), sink: this.name, down_ms: down, pending_events: this.#spool.pendingEvents });
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((r) => {
      this.#wakeSleep = r;
      this.#sleepTimer = setTimeout(r, ms);
    });
  }

  /** Stops delivering after the batch in flight (bounded by the transport's timeout) and keeps the rest on disk. */
  async close(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    if (this.#sleepTimer) clearTimeout(this.#sleepTimer);
    this.#wakeSleep?.();
    await this.#spool.close();
    await this.#loop;
    await this.#o.transport.close();
  }

  /** Like close() without waiting for the batch in flight: the transport is cut at once. */
  destroy(): void {
    void this.#o.transport.close();
    void this.close();
  }
}
