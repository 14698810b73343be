/**
 * Stores gateway.decision events (a bounded recent window, for the events query and policy-diff
 * replay) and every alert. Writes are batched off the publisher's path: the bus publish stays
 * synchronous and cheap for the data plane. If the store is down the batch is dropped and
 * counted (these rows are a query cache; the sinks hold the evidence of record) — except
 * alerts, which are kept in memory (bounded) and retried.
 *
 * Repeats are folded: a decision identical to one stored less than `foldMs` ago (identical as
 * `foldKey` defines it: all but the id, time, client port and detail) is not stored again; the
 * stored row counts it (`repeats`) and keeps the time of the latest (`last_time`). Agents poll the same few destinations all day, so
 * without folding the window filled with copies: at 20,000 decisions a second its 100,000 rows
 * held five seconds of history, writing them was the largest cost after the sockets under
 * keep-alive HTTP load (folded: about 20% less CPU per request, measured), and one device
 * repeating a request could push every other device's decisions out of it in seconds. Every decision still goes to the sinks.
 *
 * Folding cannot help against a client whose every decision is distinct (a random name per
 * request), so each client also has a row budget per fold window (`maxRowsPerClient`): past
 * it, its decisions are counted on one overflow row per verdict and reason.
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
  /** Identical decisions within this many ms of the stored one are counted on it, not stored; 0: store each. */
  readonly foldMs?: number;
  /** Distinct decisions remembered for folding (default 100,000). */
  readonly maxFolds?: number;
  /**
   * Rows one client (its device, else its address) may add to the window per fold window;
   * past it, its further distinct decisions are counted on one overflow row per verdict and
   * reason. 0: no budget. Needs folding on.
   */
  readonly maxRowsPerClient?: number;
}

const MAX_PENDING = 10_000;
const PRUNE_EVERY_ROWS = 2_000;
/** Distinct decisions remembered for folding; past this, expired ones are dropped, then all. */
const MAX_FOLDS = 100_000;

/** The stored row a run of identical decisions is folded into. */
interface Fold {
  readonly id: string;
  /** Folding into this row stops at this time (ms): the next identical decision is stored anew. */
  readonly until: number;
  /** Repeats not yet written to the row. */
  repeats: number;
  lastTime: number;
  dirty: boolean;
}

/**
 * What makes two decisions the same for folding: everything an investigation filters or pivots
 * on — not the id, time, client port or free-text detail. The resolved address is part of it,
 * so a name that starts resolving elsewhere (DNS rebinding, a hijacked record) is a new row.
 */
function foldKey(e: DecisionEvent): string {
  return [e.verdict, e.reason, e.rule, e.mode, e.group, e.device_id, e.listener, e.client_ip, e.method, e.host, e.port, e.address, e.sni, e.tls_version].join('\u0000');
}

/** Who a row budget is charged to: the device when one was identified, else the client address. */
const clientOf = (e: DecisionEvent): string => e.device_id ?? e.client_ip;

/**
 * The row a client's decisions past its budget are counted on: the first of them, with what
 * varies between them (destination, rule, method, SNI) cleared and the detail saying so. One
 * per client, verdict and reason, so a device spraying random names still shows as "device X,
 * deny no_rule_matched, N times" without pushing other devices' rows out of the window.
 */
/** How an overflow row's `detail` begins (readers such as `chokepoint events` recognize the row by it). */
export const OVERFLOW_DETAIL = 'over recent_decisions.max_rows_per_client';

function overflowRow(e: DecisionEvent, budget: number): DecisionEvent {
  return {
    ...e, method: null, host: null, port: null, address: null, rule: null, sni: null, tls_version: null, address_class: null,
    detail: `${OVERFLOW_DETAIL} (${budget} rows per window): this client's further distinct ${e.verdict} ${e.reason} decisions are counted here (repeats), not stored one by one; every one is in the sinks`,
  };
}

export class EventRecorder {
  #decisions: DecisionEvent[] = [];
  #alerts: AlertEvent[] = [];
  #folds = new Map<string, Fold>();
  /** Folds with repeats to write at the next flush. */
  #dirty: Fold[] = [];
  #timer: NodeJS.Timeout | null = null;
  #flushing: Promise<void> = Promise.resolve();
  #unsub: () => void;
  #sincePrune = 0;
  #lastSweep = Date.now();
  /** Rows each client added since the last sweep (the row budget). */
  #rowsByClient = new Map<string, number>();
  /** The options with their defaults, resolved once. */
  readonly #foldMs: number;
  readonly #maxFolds: number;
  readonly #budget: number;
  dropped = 0;

  constructor(readonly opts: RecorderOptions) {
    this.#foldMs = opts.foldMs ?? 60_000;
    this.#maxFolds = opts.maxFolds ?? MAX_FOLDS;
    // A budget is counted in fold windows and enforced through folding: none without folding.
    this.#budget = this.#foldMs > 0 ? opts.maxRowsPerClient ?? 0 : 0;
    this.#unsub = opts.bus.subscribe((e) => {
      if (e.type === 'gateway.decision') {
        let row: DecisionEvent = e;
        let key = this.#fold(e);
        if (key === null) { this.#schedule(); return; }
        const full = this.#decisions.length >= MAX_PENDING;
        if (key !== '') {
          // A row the full queue refuses is not charged: the store failing for a while must
          // not leave clients over budget once it recovers.
          const over = this.#overBudget(e, !full);
          if (over !== null) {
            if (this.#countOn(over)) { this.#schedule(); return; }
            row = overflowRow(e, this.#budget);
            key = over;
          }
        }
        if (full) { this.dropped++; return; }
        this.#decisions.push(row);
        // Only a decision that is queued for storage may take repeats.
        if (key !== '') this.#remember(key, row.id);
      } else if (e.type === 'alert') {
        if (this.#alerts.length >= MAX_PENDING) { this.dropped++; return; }
        this.#alerts.push(e);
      } else return;
      this.#schedule();
    });
  }

  /**
   * Counts `e` on the row of an identical recent decision and answers null; otherwise answers
   * its fold key (empty when folding is off), for #remember once it is queued.
   */
  #fold(e: DecisionEvent): string | null {
    if (this.#foldMs <= 0) return '';
    const key = foldKey(e);
    return this.#countOn(key) ? null : key;
  }

  /** Counts one repeat on the live row of `key`; false when there is none. */
  #countOn(key: string): boolean {
    const f = this.#folds.get(key);
    const now = Date.now();
    if (f === undefined || now >= f.until) return false;
    f.repeats++;
    f.lastTime = now;
    if (!f.dirty) {
      f.dirty = true;
      this.#dirty.push(f);
    }
    return true;
  }

  /**
   * Charges a new row to its client's budget (when `charge`); over budget, answers the key of the client's
   * overflow row for this verdict and reason instead (the row is not charged again).
   */
  #overBudget(e: DecisionEvent, charge: boolean): string | null {
    if (this.#budget <= 0) return null;
    const client = clientOf(e);
    const n = this.#rowsByClient.get(client) ?? 0;
    if (n >= this.#budget) return `\u0001overflow\u0000${client}\u0000${e.verdict}\u0000${e.reason}\u0000${e.group}`;
    // Bounded like the fold table: past it, new clients go uncounted until the next sweep.
    if (charge && (n > 0 || this.#rowsByClient.size < this.#maxFolds)) this.#rowsByClient.set(client, n + 1);
    return null;
  }

  #remember(key: string, id: string): void {
    const now = Date.now();
    if (!this.#folds.has(key) && this.#folds.size >= this.#maxFolds) this.#sweep(now);
    this.#folds.set(key, { id, until: now + this.#foldMs, repeats: 0, lastTime: now, dirty: false });
  }

  /** Distinct decisions the fold table remembers now (for tests and diagnostics). */
  get folds(): number {
    return this.#folds.size;
  }

  /** Forgets expired folds; if every one is live (a flood of distinct decisions), forgets all. */
  #sweep(now: number): void {
    this.#lastSweep = now;
    for (const [k, f] of this.#folds) if (now >= f.until) this.#folds.delete(k);
    if (this.#folds.size >= this.#maxFolds) this.#folds.clear();
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
    // Expired folds are forgotten once per window, so a past burst of distinct decisions does
    // not hold its keys until the table fills.
    const now = Date.now();
    if (now - this.#lastSweep >= this.#foldMs) {
      this.#sweep(now);
      // Row budgets are per window: each client starts the next one afresh.
      this.#rowsByClient.clear();
    }
    const decisions = this.#decisions.splice(0);
    const alerts = this.#alerts.splice(0);
    const folds = this.#dirty.splice(0).map((f) => {
      const r = { id: f.id, repeats: f.repeats, lastTime: f.lastTime };
      f.repeats = 0;
      f.dirty = false;
      return r;
    });
    if (decisions.length === 0 && alerts.length === 0 && folds.length === 0) return;
    let stored = false;
    try {
      // Rows first: a fold may count repeats of a decision queued in this same batch.
      if (decisions.length > 0) await this.opts.store.appendDecisions(decisions);
      stored = true;
      if (folds.length > 0) await this.opts.store.foldDecisions(folds);
      // Prune by rows written, not by flushes: a few thousand rows at a time keeps each prune
      // short whatever the decision rate.
      this.#sincePrune += decisions.length;
      if (this.#sincePrune >= PRUNE_EVERY_ROWS) {
        this.#sincePrune = 0;
        await this.opts.store.pruneDecisions(this.opts.maxRows ?? 100_000);
      }
    } catch (err) {
      const lost = (stored ? 0 : decisions.length) + folds.reduce((n, f) => n + f.repeats, 0);
      this.dropped += lost;
      // Rows that were not stored cannot take repeats: the next of each is stored anew.
      if (!stored) this.#folds.clear();
      this.opts.logger?.warn({ err, dropped: lost }, 'cannot store recent decisions');
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
