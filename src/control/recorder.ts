/**
 * Stores gateway.decision events (a bounded recent window, for the events query and policy-diff
 * replay) and every alert. Writes are batched off the publisher's path: the bus publish stays
 * synchronous and cheap for the data plane. If the store is down the batch is dropped and
 * counted (these rows are a query cache; the sinks hold the evidence of record) — except
 * alerts, which are kept in memory (bounded) and retried.
 */
import type { EventBus } from '../events/bus.js';
import type { DecisionEvent } from '../events/catalogue.js';
import type { AlertEvent } from '../events/evidence.js';
import type { Store } from '../store/open.js';
import { insertAlert } from '../store/recent.js';

export interface RecorderOptions {
  readonly store: Store;
  readonly bus: EventBus;
  readonly logger?: { error(o: object, m?: string): void; warn(o: object, m?: string): void };
  /** Decisions kept in the store. */
  readonly maxRows?: number;
  readonly flushMs?: number;
}

const MAX_PENDING = 10_000;
const PRUNE_EVERY_ROWS = 2_000;

export class EventRecorder {
  #decisions: DecisionEvent[] = [];
  #alerts: AlertEvent[] = [];
  #timer: NodeJS.Timeout | null = null;
  #flushing: Promise<void> = Promise.resolve();
  #unsub: () => void;
  #sincePrune = 0;
  dropped = 0;

  constructor(readonly opts: RecorderOptions) {
    this.#unsub = opts.bus.subscribe((e) => {
      if (e.type === 'gateway.decision') {
        if (this.#decisions.length >= MAX_PENDING) { this.dropped++; return; }
        this.#decisions.push(e);
      } else if (e.type === 'alert') {
        if (this.#alerts.length >= MAX_PENDING) { this.dropped++; return; }
        this.#alerts.push(e);
      } else return;
      this.#schedule();
    });
  }

  #schedule(): void {
    if (this.#timer) return;
    this.#timer = setTimeout(() => { this.#timer = null; void this.flush(); }, this.opts.flushMs ?? 200);
    this.#timer.unref();
  }

  flush(): Promise<void> {
    this.#flushing = this.#flushing.then(() => this.#flushNow());
    return this.#flushing;
  }

  async #flushNow(): Promise<void> {
    const decisions = this.#decisions.splice(0);
    const alerts = this.#alerts.splice(0);
    if (decisions.length === 0 && alerts.length === 0) return;
    try {
      await this.opts.store.appendDecisions(decisions);
      // Prune by rows written, not by flushes: a few thousand rows at a time keeps each prune
      // short whatever the decision rate.
      this.#sincePrune += decisions.length;
      if (this.#sincePrune >= PRUNE_EVERY_ROWS) {
        this.#sincePrune = 0;
        await this.opts.store.pruneDecisions(this.opts.maxRows ?? 100_000);
      }
    } catch (err) {
      this.dropped += decisions.length;
      this.opts.logger?.warn({ err, dropped: decisions.length }, 'cannot store recent decisions');
    }
    if (alerts.length === 0) return;
    try {
      await this.opts.store.tx(async (trx) => {
        for (const a of alerts) await insertAlert(trx, a);
      });
    } catch (err) {
      this.#alerts.unshift(...alerts.slice(0, MAX_PENDING - this.#alerts.length));
      this.opts.logger?.warn({ err, alerts_kept: alerts.length }, 'cannot store alerts; will retry');
      setTimeout(() => this.#schedule(), 2000).unref();
    }
  }

  async close(): Promise<void> {
    this.#unsub();
    if (this.#timer) { clearTimeout(this.#timer); this.#timer = null; }
    await this.flush();
  }
}
