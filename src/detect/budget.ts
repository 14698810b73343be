/**
 * An alert budget per key and window: the first `perWindow` alerts go out, the rest are counted
 * (with a few samples) and reported in one summary when the window ends, so that many sources
 * at once cannot flood the alert channel, and what was held back still reaches someone.
 */
import { boundedSet, MAX_TRACKED } from './types.js';

type Report = (held: number, sample: readonly string[], windowStart: number) => void;

interface Entry { start: number; readonly window: number; n: number; held: number; readonly sample: string[]; readonly report: Report }

const SAMPLE = 5;

export class AlertBudget {
  readonly #m = new Map<string, Entry>();
  constructor(readonly perWindow: number) {}

  /**
   * When an alert for `key` may go out now: which one it is in its window (1 to perWindow) and
   * when the window began; null when it is counted against the summary instead.
   */
  take(key: string, now: number, window: number, what: string, report: Report): { readonly n: number; readonly windowStart: number } | null {
    let e = this.#m.get(key);
    if (e && now - e.start >= e.window) {
      this.#report(e);
      e = undefined;
    }
    if (!e) {
      e = { start: now, window, n: 0, held: 0, sample: [], report };
      boundedSet(this.#m, key, e, MAX_TRACKED, (old) => this.#report(old));
    }
    if (e.n < this.perWindow) {
      e.n++;
      return { n: e.n, windowStart: e.start };
    }
    e.held++;
    if (e.sample.length < SAMPLE) e.sample.push(what);
    return null;
  }

  /** Reports and forgets the windows that have ended. */
  tick(now: number): void {
    for (const [k, e] of this.#m) {
      if (now - e.start < e.window) continue;
      this.#report(e);
      this.#m.delete(k);
    }
  }

  #report(e: Entry): void {
    if (e.held === 0) return;
    const held = e.held;
    e.held = 0;
    e.report(held, [...e.sample], e.start);
  }
}
