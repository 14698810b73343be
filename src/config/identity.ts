/**
 * The `identity:` section of the configuration (issue #4): per-group certificate settings.
 * schema.ts mounts it. Every value has a default, so an absent section issues 7-day
 * certificates without approval and refuses renewal after expiry.
 */
import { z } from 'zod';
import { durationMs as dur } from './fields.js';

const MIN_VALIDITY = 5 * 60_000;
const MAX_GRACE = 7 * 86_400_000;

export const identityGroupSchema = z.strictObject({
  /** New devices of this group wait (202 + Retry-After) until an admin approves them. */
  require_approval: z.boolean().default(false),
  /** Device certificate lifetime; the group default otherwise. At least 5 minutes. */
  cert_validity: dur(MIN_VALIDITY).optional(),
  /**
   * How long after expiry a certificate may still renew itself. 0 (the default) means an expired
   * device must enroll again with a new token; bounded at 7 days so a stolen, long-expired
   * certificate can never be turned back into a working one.
   */
  renewal_grace: dur(0, MAX_GRACE).optional(),
});

export const identitySchema = z.strictObject({
  default_cert_validity: z.union([z.string(), z.number()]).default('7d').pipe(dur(MIN_VALIDITY)),
  default_renewal_grace: z.union([z.string(), z.number()]).default('0s').pipe(dur(0, MAX_GRACE)),
  /** Seconds a pending device is told to wait before polling again (Retry-After). */
  retry_after: z.union([z.string(), z.number()]).default('60s').pipe(dur(1000, 86_400_000)),
  /** CRL lifetime (nextUpdate - thisUpdate); a fresh CRL is published at half of it, and on every change. */
  crl_validity: z.union([z.string(), z.number()]).default('24h').pipe(dur(60_000, 30 * 86_400_000)),
  groups: z.record(z.string().min(1), identityGroupSchema).default({}),
}).prefault({});

export type IdentityConfig = z.output<typeof identitySchema>;
