/** Shared request schemas (zod): strict objects, bounded strings, durations with limits. */
import { z } from 'zod';
import { parseDuration } from '../config/duration.js';

/** A duration string (`10m`, `90d`) within [min, max] milliseconds. */
export const duration = (min: number, max: number) => z.string().max(32).transform((v, c) => {
  const ms = parseDuration(v);
  if (ms === null) { c.addIssue({ code: 'custom', message: `"${v}" is not a duration (e.g. 10m, 12h, 90d)` }); return z.NEVER; }
  if (ms < min || ms > max) { c.addIssue({ code: 'custom', message: `must be between ${min / 1000}s and ${max / 86_400_000}d` }); return z.NEVER; }
  return ms;
});

/** Names shown in the audit log and CLI: printable, no control characters (log injection). */
export const name = z.string().min(1).max(64).regex(/^[A-Za-z0-9][A-Za-z0-9._@-]*$/, 'use letters, digits, ".", "_", "@", "-"');
export const groupName = z.string().min(1).max(128).regex(/^[^\u0000-\u001f\u007f]+$/, 'control characters are not allowed');
export const reason = z.string().trim().min(1, 'a reason is required').max(1000).regex(/^[^\u0000-\u0008\u000b-\u001f\u007f]*$/, 'control characters are not allowed');
export const uuid = z.string().regex(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/, 'not an id');
export const limit = z.coerce.number().int().min(1).max(1000).default(100);
export const versionNumber = z.coerce.number().int().min(1).max(2 ** 31 - 1);
export const idParams = z.strictObject({ id: uuid });

/** Opaque cursors: base64url JSON, so clients do not build them (and we can change them). */
export function encodeCursor(v: unknown): string {
  return Buffer.from(JSON.stringify(v)).toString('base64url');
}
export const cursor = <T extends z.ZodType>(inner: T) => z.string().max(512).transform((s, c) => {
  try {
    const r = inner.safeParse(JSON.parse(Buffer.from(s, 'base64url').toString('utf8')));
    if (r.success) return r.data as z.output<T>;
  } catch { /* fall through */ }
  c.addIssue({ code: 'custom', message: 'invalid cursor' });
  return z.NEVER;
});
