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

export function nowIso(): string {
  return new Date().toISOString();
}
