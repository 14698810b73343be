/**
 * The event bus: publishers (the data plane) never know who listens (DESIGN §6.11).
 * publish() is synchronous and cheap; subscribers must not block (sinks queue and write
 * asynchronously). A subscriber that throws is isolated: the publisher never sees it.
 */
import type { ChokepointEvent } from './catalogue.js';

export type Subscriber = (e: ChokepointEvent) => void;

export class EventBus {
  #subs: Subscriber[] = [];
  #onSubscriberError: (err: unknown) => void;

  constructor(opts: { onSubscriberError?: (err: unknown) => void } = {}) {
    this.#onSubscriberError = opts.onSubscriberError ?? (() => {});
  }

  subscribe(fn: Subscriber): () => void {
    this.#subs = [...this.#subs, fn];
    return () => { this.#subs = this.#subs.filter((s) => s !== fn); };
  }

  publish(e: ChokepointEvent): void {
    for (const s of this.#subs) {
      try {
        s(e);
      } catch (err) {
        this.#onSubscriberError(err);
      }
    }
  }
}

let isoMs = Number.NaN;
let isoText = '';

/**
 * The current time as an event's `time` (ISO 8601, UTC, milliseconds). Formatting a Date costs
 * about a microsecond on this project's machine, and every short tunnel stamps two events: the
 * text is kept for the millisecond it names, which at a few thousand events a second serves
 * most of them. Same output as `new Date().toISOString()`, also when the clock steps back.
 */
export function nowIso(): string {
  const ms = Date.now();
  if (ms !== isoMs) {
    isoText = new Date(ms).toISOString();
    isoMs = ms;
  }
  return isoText;
}
