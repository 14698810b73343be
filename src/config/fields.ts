/**
 * Field types shared by every section of the configuration, so that a duration is parsed,
 * bounded and reported the same way wherever it appears.
 */
import { z } from 'zod';
import { parseDuration } from './duration.js';

/** A duration (`500ms`, `10s`, `5m`, `1h`, `1d`, or milliseconds) → milliseconds, within [min, max]. */
export const durationMs = (min = 0, max = Number.MAX_SAFE_INTEGER) =>
  z.union([z.string(), z.number()]).transform((v, ctx) => {
    const ms = parseDuration(v);
    if (ms === null) {
      ctx.addIssue({ code: 'custom', message: `"${String(v)}" is not a duration (use e.g. 500ms, 10s, 5m, 1h, 7d)` });
      return z.NEVER;
    }
    if (ms < min || ms > max) {
      ctx.addIssue({ code: 'custom', message: max === Number.MAX_SAFE_INTEGER ? `must be at least ${min}ms` : `must be between ${min}ms and ${max}ms` });
      return z.NEVER;
    }
    return ms;
  });

/** The same with a default (written as a duration, e.g. `'30s'`). */
export const duration = (def: string, min = 0, max = Number.MAX_SAFE_INTEGER) =>
  z.union([z.string(), z.number()]).default(def).pipe(durationMs(min, max));
