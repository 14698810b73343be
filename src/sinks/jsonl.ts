/**
 * JSON lines to stdout or a file. Events are serialized on publish and written in batches
 * once per event-loop turn, so the relay never waits on the disk or a slow pipe. While the
 * destination is backed up, lines queue in memory up to `maxQueueBytes`; past that the
 * oldest are dropped and counted, and the count is reported in-band as a line and through
 * `onDrop` — never silently.
 */
import { createWriteStream, type WriteStream } from 'node:fs';
import type { Writable } from 'node:stream';
import type { ChokepointEvent } from '../events/catalogue.js';
import type { SinkDroppedEvent } from '../events/evidence.js';
import { jsonOf } from '../events/json.js';
import { COALESCE_MS, WRITE_NOW_BYTES } from './types.js';


export interface JsonlSinkOptions {
  /** `-` for stdout, otherwise a file path (appended). */
  readonly target: string;
  /** Name used in `sink.dropped` events; defaults to the target. */
  readonly name?: string;
  readonly maxQueueBytes?: number;
  readonly onDrop?: (dropped: number) => void;
  /** Write a `sink.dropped` line in-band (default); off when onDrop publishes the event itself. */
  readonly inband?: boolean;
  readonly onError?: (err: Error) => void;
}

export class JsonlSink {
  readonly #out: Writable;
  readonly #ownsStream: boolean;
  readonly #max: number;
  #queue: string[] = [];
  #queuedBytes = 0;
  #scheduled = false;
  #soon = false;
  #blocked = false;
  #dropped = 0;
  #closed = false;
  readonly #opts: JsonlSinkOptions;

  constructor(opts: JsonlSinkOptions) {
    this.#opts = opts;
    this.#max = opts.maxQueueBytes ?? 256 * 1024 * 1024;
    if (opts.target === '-') {
      this.#out = process.stdout;
      this.#ownsStream = false;
    } else {
      const ws: WriteStream = createWriteStream(opts.target, { flags: 'a', mode: 0o640 });
      this.#out = ws;
      this.#ownsStream = true;
    }
    this.#out.on('error', (err: Error) => this.#opts.onError?.(err));
    this.#out.on('drain', () => {
      this.#blocked = false;
      this.#schedule();
    });
  }

  readonly write = (e: ChokepointEvent): void => {
    if (this.#closed) return;
    const line = `${jsonOf(e)}\n`;
    this.#queue.push(line);
    this.#queuedBytes += line.length;
    while (this.#queuedBytes > this.#max && this.#queue.length > 1) {
      const old = this.#queue.shift() as string;
      this.#queuedBytes -= old.length;
      this.#dropped++;
    }
    this.#schedule();
  };

  get dropped(): number {
    return this.#dropped;
  }

  #schedule(): void {
    if (this.#blocked) return;
    if (this.#queuedBytes >= WRITE_NOW_BYTES && !this.#soon) {
      // Many lines waiting: write on the next turn (never inside the publisher's call).
      this.#soon = true;
      setImmediate(() => { this.#soon = false; this.#flush(); });
      return;
    }
    if (this.#scheduled) return;
    this.#scheduled = true;
    // Lines of many event-loop turns go out in one write: under load a write per turn costs
    // more than the events themselves.
    setTimeout(() => { this.#scheduled = false; this.#flush(); }, COALESCE_MS);
  }

  readonly #flush = (): void => {
    if (this.#queue.length === 0 || this.#blocked) return;
    if (this.#dropped > 0) {
      const n = this.#dropped;
      this.#dropped = 0;
      this.#opts.onDrop?.(n);
      if (this.#opts.inband !== false) this.#queue.unshift(`${JSON.stringify({ v: 1, type: 'sink.dropped', time: new Date().toISOString(), sink: this.#opts.name ?? this.#opts.target, dropped: n, reason: 'queue_full' } satisfies SinkDroppedEvent)}\n`);
    }
    const chunk = this.#queue.join('');
    this.#queue = [];
    this.#queuedBytes = 0;
    if (!this.#out.write(chunk)) this.#blocked = true;
  };

  /** Writes everything queued and, for a file, closes it. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#blocked = false; // write what is queued even if the stream is backed up: Node buffers it
    this.#flush();
    this.#closed = true;
    await new Promise<void>((resolve) => {
      if (this.#ownsStream) this.#out.end(resolve);
      else if (this.#out.writableNeedDrain) this.#out.once('drain', () => resolve());
      else resolve();
    });
  }
}
