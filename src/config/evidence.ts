/**
 * The `sinks:`, `metrics:` and `detect:` sections of the configuration (issue #5). Kept apart
 * from schema.ts so the evidence pipeline's options live in one place; schema.ts mounts them.
 * Every value has a default, so `sinks: []` (the default) keeps the plain `events:` behaviour.
 */
import { z } from 'zod';
import { duration, durationMs, timerDuration } from './fields.js';

/** Parses `512`, `64KiB`, `10MiB`, `1GiB` (binary units; `KB`/`MB`/`GB` are accepted as the same). */
export function parseSize(v: unknown): number | null {
  if (typeof v === 'number') return Number.isSafeInteger(v) && v >= 0 ? v : null;
  if (typeof v !== 'string') return null;
  const m = /^([0-9]+)\s*(B|KiB|MiB|GiB|TiB|KB|MB|GB|TB)?$/.exec(v.trim());
  if (!m) return null;
  const mult = { B: 1, KiB: 1024, KB: 1024, MiB: 1024 ** 2, MB: 1024 ** 2, GiB: 1024 ** 3, GB: 1024 ** 3, TiB: 1024 ** 4, TB: 1024 ** 4 }[(m[2] ?? 'B') as 'B'];
  const n = Number(m[1]) * mult;
  return Number.isSafeInteger(n) ? n : null;
}

const sizeOpt = (min: number) =>
  z.union([z.string(), z.number()])
    .transform((v, ctx) => {
      const n = parseSize(v);
      if (n === null) {
        ctx.addIssue({ code: 'custom', message: `"${String(v)}" is not a size (use e.g. 512KiB, 64MiB, 1GiB)` });
        return z.NEVER;
      }
      if (n < min) {
        ctx.addIssue({ code: 'custom', message: `must be at least ${min} bytes` });
        return z.NEVER;
      }
      return n;
    });
const size = (def: string | number, min: number) => z.union([z.string(), z.number()]).default(def).pipe(sizeOpt(min));

const sinkName = z.string().regex(/^[a-z0-9][a-z0-9_-]{0,62}$/, 'a sink name is 1-63 characters of a-z, 0-9, _ and -, starting with a letter or digit');

/** Which event types a sink takes: exact types or `prefix.*`; empty means all. */
const typeFilter = z.array(z.string().regex(/^[a-z][a-z0-9_.]*(\.\*)?$/, 'an event type such as gateway.decision, or a prefix such as identity.*')).default([]);

/**
 * The on-disk buffer in front of a network sink. `fsync`: `always` after every batch written,
 * `interval` (default) at most once per `fsync_interval`, `never` (leave it to the kernel).
 */
const buffer = z.strictObject({
  max_bytes: size('1GiB', 64 * 1024),
  segment_bytes: size('16MiB', 4096),
  fsync: z.enum(['always', 'interval', 'never']).default('interval'),
  fsync_interval: timerDuration('1s', 10),
}).prefault({});

const retry = z.strictObject({
  min_delay: timerDuration('500ms', 1),
  max_delay: timerDuration('5m', 1),
}).prefault({});

const fileSink = z.strictObject({
  type: z.literal('file'),
  name: sinkName,
  /** A file path, or `-` for stdout (no rotation then). */
  path: z.string().min(1),
  types: typeFilter,
  rotate: z.strictObject({
    max_bytes: size('100MiB', 1024),
    /** 0: no time-based rotation. */
    interval: duration('1d', 0),
    /** Rotated files kept; older ones are deleted. */
    keep: z.number().int().min(0).max(100_000).default(14),
    /** Rotated files older than this are deleted (0: keep by count only). */
    max_age: duration('0s', 0),
  }).prefault({}),
  max_queue_bytes: size('256MiB', 64 * 1024),
});

const tlsClient = z.strictObject({
  /** PEM file of the CA(s) that sign the receiver's certificate; default: the system store. */
  ca: z.string().min(1).optional(),
  /** Client certificate and key (PEM files) for mutual TLS. */
  cert: z.string().min(1).optional(),
  key: z.string().min(1).optional(),
  /** Name to verify in the receiver's certificate; default: the host. */
  server_name: z.string().min(1).optional(),
}).prefault({}).refine((t) => (t.cert === undefined) === (t.key === undefined), { message: 'cert and key go together' });

/** No TLS setting given (for links that do not use TLS, where one would be silently ignored). */
const tlsUnset = (t: z.output<typeof tlsClient>): boolean => Object.values(t).every((v) => v === undefined);

const syslogSink = z.strictObject({
  type: z.literal('syslog'),
  name: sinkName,
  /**
   * udp (RFC 5426), tcp (RFC 6587 octet counting), tls (RFC 5425): delivery confirmed to our
   * kernel only. relp, relp-tls: rsyslog's RELP, every message acknowledged by the receiver.
   */
  transport: z.enum(['udp', 'tcp', 'tls', 'relp', 'relp-tls']).default('tcp'),
  host: z.string().min(1),
  /** Default: 514 (udp, tcp), 6514 (tls), 2514 (relp, relp-tls). */
  port: z.number().int().min(1).max(65535).optional(),
  /** RFC 5424 facility number (16 = local0). */
  facility: z.number().int().min(0).max(23).default(16),
  app_name: z.string().regex(/^[!-~]{1,48}$/, 'APP-NAME is 1-48 printable US-ASCII characters (RFC 5424 §6.2.5)').default('chokepoint'),
  hostname: z.string().regex(/^[!-~]{1,255}$/, 'HOSTNAME is 1-255 printable US-ASCII characters (RFC 5424 §6.2.4)').optional(),
  types: typeFilter,
  tls: tlsClient,
  timeout: timerDuration('10s', 100),
  batch_max: z.number().int().min(1).max(100_000).default(1000),
  /** How long a small batch waits for more events before it is sent. */
  batch_wait: timerDuration('200ms', 0),
  buffer,
  retry,
})
  // TLS settings on a plain transport would be ignored: an operator who wrote `tls:` under
  // `transport: relp` (or tcp) believing the link encrypted would send evidence in clear text.
  .refine((s) => s.transport === 'tls' || s.transport === 'relp-tls' || tlsUnset(s.tls), {
    path: ['tls'], message: 'tls settings apply only to transport tls or relp-tls; set one of those or remove them',
  });

const webhookSink = z.strictObject({
  type: z.literal('webhook'),
  name: sinkName,
  url: z.url({ protocol: /^https?$/, error: 'url must be an http(s) URL' }),
  /** HMAC-SHA256 key, inline or (better) from a file. Exactly one. */
  secret: z.string().min(16, 'secret must be at least 16 characters').optional(),
  secret_file: z.string().min(1).optional(),
  types: typeFilter,
  tls: tlsClient,
  timeout: timerDuration('10s', 100),
  batch_max: z.number().int().min(1).max(100_000).default(500),
  batch_wait: timerDuration('200ms', 0),
  batch_max_bytes: size('4MiB', 1024),
  buffer,
  retry,
}).refine((w) => (w.secret === undefined) !== (w.secret_file === undefined), { message: 'give exactly one of secret and secret_file' })
  // Plain http would hand every event (and the replayable signature) to anyone on the path.
  .refine((w) => !w.url.startsWith('http:') || /^http:\/\/(127(\.\d{1,3}){3}|localhost|\[::1\])(:\d+)?\//i.test(w.url), { path: ['url'], message: 'plain http is allowed only to a loopback address; use https' })
  // TLS settings on an http:// URL would be ignored (the same trap as on a plain syslog transport).
  .refine((w) => !w.url.startsWith('http:') || tlsUnset(w.tls), {
    path: ['tls'], message: 'tls settings apply only to an https URL; use https or remove them',
  });

export const sinksSchema = z.array(z.discriminatedUnion('type', [fileSink, syslogSink, webhookSink]))
  .default([])
  .superRefine((sinks, ctx) => {
    const seen = new Set<string>();
    sinks.forEach((s, i) => {
      if (seen.has(s.name)) ctx.addIssue({ code: 'custom', path: [i, 'name'], message: `duplicate sink name "${s.name}"` });
      seen.add(s.name);
    });
  });

export const metricsSchema = z.strictObject({
  /** Who may read /metrics on the control listener: `public` (no auth) or `viewer` (a viewer bearer token). */
  access: z.enum(['public', 'viewer']).default('viewer'),
  /** Label decisions with the destination host. Off by default: hosts are unbounded. */
  host_labels: z.boolean().default(false),
  /** Distinct values kept per label; later ones are counted under `other`. */
  max_label_values: z.number().int().min(1).max(10_000).default(100),
  /** Include Node.js process metrics (CPU, memory, event loop lag). */
  process: z.boolean().default(true),
}).prefault({});

const hhmm = z.string().regex(/^([01][0-9]|2[0-3]):[0-5][0-9]$/, 'a time of day as HH:MM (24h)');
const weekday = z.enum(['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun']);

/** Thresholds: with defaults (`defaults:`), or all optional (a group overrides only what it names). */
function thresholdShape(d: boolean) {
  const dur = (def: string, min: number) => (d ? duration(def, min) : durationMs(min).optional());
  const num = (t: z.ZodNumber, def: number) => (d ? t.default(def) : t.optional());
  return {
    drift_window: dur('1h', 1000),
    /** A group's first-use alerts start only after it has been observed this long. */
    drift_learning: dur('1d', 0),
    volume_window: dur('1h', 1000),
    volume_factor: num(z.number().min(1).max(1_000_000), 5),
    volume_floor_bytes: d ? size('100MiB', 0) : sizeOpt(0).optional(),
    volume_min_windows: num(z.number().int().min(1).max(10_000), 3),
    /** EWMA weight of the newest window (0 < alpha <= 1). */
    volume_alpha: num(z.number().gt(0).max(1), 0.3),
    tls_window: dur('5m', 1000),
    tls_min_devices: num(z.number().int().min(1).max(1_000_000), 10),
    enroll_window: dur('1h', 1000),
    enroll_max_new: num(z.number().int().min(1).max(1_000_000), 50),
    enroll_max_bad_tokens: num(z.number().int().min(1).max(1_000_000), 5),
    admin_window: dur('10m', 1000),
    admin_max_weight: num(z.number().int().min(1).max(1_000_000), 30),
    /** Expected check-in interval; a device silent for longer is reported offline (0: off). */
    offline_after: dur('24h', 0),
    /** Working hours; connections outside them are reported. Absent: any time. */
    hours: z.strictObject({
      from: hhmm,
      to: hhmm,
      days: z.array(weekday).min(1).default(['mon', 'tue', 'wed', 'thu', 'fri']),
      /** Offset of local time from UTC in minutes (e.g. 60 for CET). */
      utc_offset_minutes: z.number().int().min(-14 * 60).max(14 * 60).default(0),
    }).optional(),
  };
}

const defaultsSchema = z.strictObject(thresholdShape(true)).prefault({});
const groupOverride = z.strictObject(thresholdShape(false));

export const detectSchema = z.strictObject({
  enabled: z.boolean().default(true),
  /** How often baselines are written to the data directory. */
  persist_interval: timerDuration('1m', 1000),
  /** How often time-driven checks (offline devices) run. */
  tick_interval: timerDuration('30s', 100),
  defaults: defaultsSchema,
  groups: z.record(z.string().min(1), groupOverride).default({}),
}).prefault({});

export type SinkConfig = z.output<typeof sinksSchema>[number];
export type MetricsConfig = z.output<typeof metricsSchema>;
export type DetectConfig = z.output<typeof detectSchema>;
type RawThresholds = z.output<typeof defaultsSchema>;
/** Every threshold has a value after defaults; only `hours` may be absent. */
export type Thresholds = { readonly [K in Exclude<keyof RawThresholds, 'hours'>]-?: Exclude<RawThresholds[K], undefined> } & { readonly hours?: Exclude<RawThresholds['hours'], undefined> };
