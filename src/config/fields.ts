/**
 * Field types shared by every section of the configuration, so that a duration is parsed,
 * bounded and reported the same way wherever it appears.
 */
import { z } from 'zod';
import { parseDuration } from './duration.js';

/**
 * The longest delay a Node timer takes (2^31 - 1 ms, about 24.8 days). A longer one does not
 * wait longer: setTimeout fires after 1 ms instead (TimeoutOverflowWarning), so a header
 * timeout of 30d would cut every connection at once. Durations used as timers are capped here.
 */
export const MAX_TIMER_MS = 2_147_483_647;

/** A duration (`500ms`, `10s`, `5m`, `1h`, `1d`, or milliseconds) → milliseconds, within [min, max]. */
export const durationMs = (min = 0, max = Number.MAX_SAFE_INTEGER) =>
  z.union([z.string(), z.number()]).transform((v, ctx) => {
    const ms = parseDuration(v);
    if (ms === null) {
      ctx.addIssue({ code: 'custom', message: `"${String(v)}" is not a duration (use e.g. 500ms, 10s, 5m, 1h, 7d)` });
      return z.NEVER;
    }
    if (ms < min || ms > max) {
      const message = ms > max ? (max === Number.MAX_SAFE_INTEGER ? 'is too large' : max === MAX_TIMER_MS ? 'must be at most 24d (2147483647ms, the longest timer Node keeps)' : `must be at most ${max}ms`)
        : max === Number.MAX_SAFE_INTEGER ? `must be at least ${min}ms` : `must be between ${min}ms and ${max}ms`;
      ctx.addIssue({ code: 'custom', message });
      return z.NEVER;
    }
    return ms;
  });

/** The same with a default (written as a duration, e.g. `'30s'`). */
export const duration = (def: string, min = 0, max = Number.MAX_SAFE_INTEGER) =>
  z.union([z.string(), z.number()]).default(def).pipe(durationMs(min, max));

/** A duration that becomes a timer's delay: at most MAX_TIMER_MS. */
export const timerDuration = (def: string, min = 0) => duration(def, min, MAX_TIMER_MS);
