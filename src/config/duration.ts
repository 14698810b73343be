/** Parses a duration such as `250ms`, `10s`, `5m`, `2h`, `1d` (or a bare number of ms) to milliseconds. */
export function parseDuration(v: unknown): number | null {
  if (typeof v === 'number') return Number.isInteger(v) && v >= 0 ? v : null;
  if (typeof v !== 'string') return null;
  const m = /^([0-9]+(?:\.[0-9]+)?)(ms|s|m|h|d)$/.exec(v.trim());
  if (!m) return null;
  const n = Number(m[1]);
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[m[2] as 'ms' | 's' | 'm' | 'h' | 'd'];
  const ms = Math.round(n * unit);
  return Number.isSafeInteger(ms) ? ms : null;
}
