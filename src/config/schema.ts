/**
 * The gateway configuration file (YAML, snake_case) and its validated, frozen model.
 * Every field has a safe default, so an empty file (or none) is a valid configuration.
 */
import { isIP } from 'node:net';
import { z } from 'zod';
import { MAX_TUNNELS_LIMIT } from '../core/limits.js';
import { duration, timerDuration } from './fields.js';
import { parseListen } from './listen.js';
import { identitySchema } from './identity.js';
import { detectSchema, metricsSchema, sinksSchema } from './evidence.js';

const listen = (def: string) => z.string().default(def).transform((v, ctx) => {
  const l = parseListen(v);
  if (typeof l === 'string') {
    ctx.addIssue({ code: 'custom', message: l });
    return z.NEVER;
  }
  return l;
});

const int = (def: number, min: number, max: number) => z.number().int().min(min).max(max).default(def);

const RESOLVER_HINT = 'resolver must be an IP address with an optional port, e.g. 127.0.0.1:53 or [::1]:53';
/** Checked as `serve` will use it (an IP literal, a port 1–65535), so `config check` agrees with it. */
const resolverAddr = z.string().superRefine((v, ctx) => {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([0-9.]+))(?::([0-9]{1,5}))?$/.exec(v);
  const ip = m?.[1] ?? m?.[2];
  const port = m?.[3] === undefined ? 53 : Number(m[3]);
  if (!m || ip === undefined || isIP(ip) !== (m[1] !== undefined ? 6 : 4) || port < 1 || port > 65535) ctx.addIssue({ code: 'custom', message: RESOLVER_HINT });
});

export const configSchema = z.strictObject({
  policy: z.string().min(1).optional(),
  proxy_listen: listen('127.0.0.1:3128'),
  /**
   * Threads serving the plain proxy listener. 0: the main thread serves it, next to the
   * evidence pipeline, the control plane and the mTLS listener. N: N data-plane threads accept
   * from it (src/cli/proxy-threads.ts), with limits shared between them.
   */
  proxy_threads: z.preprocess((v) => (typeof v === 'string' && /^[0-9]{1,3}$/.test(v) ? Number(v) : v), z.number().int().min(0).max(64)).default(0),
  /**
   * Synthetic connections driven through a private copy of the data plane before the proxy
   * listener opens (src/gateway/warmup.ts), so the first clients after a start meet compiled
   * code rather than V8's interpreter. 0 turns it off. 6000 rather than 2000: in fresh 5 s
   * runs it gave a lower short-tunnel p99 in 7 alternating pairs of 7 and a higher rate in 6
   * (README, "The eighth session"), for about two more seconds of start-up.
   */
  proxy_warmup: z.preprocess((v) => (typeof v === 'string' && /^[0-9]{1,6}$/.test(v) ? Number(v) : v), z.number().int().min(0).max(100_000)).default(6000),
  /**
   * The mTLS proxy listener (devices present certificates from the built-in CA), or `off`.
   * Its server certificate is issued by the same CA for `mtls_names`, so agents pin one CA.
   */
  mtls_listen: z.string().default('127.0.0.1:3129').transform((v, ctx) => {
    if (v === 'off') return null;
    const l = parseListen(v);
    if (typeof l === 'string') {
      ctx.addIssue({ code: 'custom', message: `${l} (or "off")` });
      return z.NEVER;
    }
    return l;
  }),
  mtls_names: z.array(z.string().min(1).max(253)).min(1).default(['localhost', '127.0.0.1', '::1']),
  /** `-` for stdout, a file path, or `none`. */
  events: z.string().min(1).default('-'),
  log_level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  dns: z.strictObject({
    /** Empty: the system resolver (getaddrinfo, honours /etc/hosts), cached for `cache_ttl`. */
    resolvers: z.array(resolverAddr).default([]),
    cache_ttl: duration('30s'),
    min_ttl: duration('5s'),
    max_ttl: duration('5m'),
    negative_ttl: duration('5s'),
    timeout: timerDuration('5s', 100),
    cache_size: int(10_000, 0, 10_000_000),
  }).prefault({}),
  tls: z.strictObject({
    min_version: z.enum(['1.0', '1.1', '1.2', '1.3']).default('1.2'),
    /** Encrypted Client Hello hides the real destination from the gateway (see docs). */
    ech: z.enum(['deny', 'allow']).default('deny'),
    clienthello_timeout: timerDuration('10s', 100),
  }).prefault({}),
  timeouts: z.strictObject({
    header: timerDuration('10s', 100),
    keepalive: timerDuration('60s', 100),
    connect: timerDuration('10s', 100),
    idle: duration('15m', 1000),
    lifetime: duration('24h', 1000),
    /** A CONNECT tunnel open this long reports its byte counts (gateway.tunnel.progress), then again at this interval; 0s = never. */
    // At least a second: each report is an event to every sink, per open tunnel.
    progress: duration('5m', 0).refine((ms) => ms === 0 || ms >= 1000, 'must be 0s (off) or at least 1s'),
    shutdown: timerDuration('30s', 0),
  }).prefault({}),
  limits: z.strictObject({
    max_header_bytes: int(32 * 1024, 1024, 1024 * 1024),
    max_connections: int(20_000, 1, 1_000_000),
    max_tunnels: int(10_000, 1, MAX_TUNNELS_LIMIT),
    max_tunnels_per_client: int(2_000, 1, 1_000_000),
    /** Open client connections per client address (one source must not take every slot of max_connections). */
    max_connections_per_client: int(4_000, 1, 1_000_000),
    /** The same for a plain-listener address in no group: it can only ever be refused. */
    max_connections_unauthenticated: int(64, 1, 1_000_000),
  }).prefault({}),
  // Evidence pipeline (issue #5): extra sinks, /metrics, anomaly detectors (src/config/evidence.ts).
  sinks: sinksSchema,
  metrics: metricsSchema,
  detect: detectSchema,
  // Device identity (issue #4): per-group certificate validity, approval, renewal grace (src/config/identity.ts).
  identity: identitySchema,
  // Management plane (issue #3): control API listener, store, policy change control.
  control_listen: listen('127.0.0.1:8080'),
  /** Where the SQLite store (and other state) lives; `./data` when neither this nor `database` is set. */
  data_dir: z.string().min(1).optional(),
  database: z.string().regex(/^postgres(ql)?:\/\/\S+$/, 'must be a postgres:// URL').optional(),
  control_tls: z.strictObject({ cert: z.string().min(1), key: z.string().min(1) }).optional(),
  policy_change: z.strictObject({ two_person: z.boolean().default(false) }).prefault({}),
  /**
   * The store's window of recent decisions, for the events query and policy-diff replays (the
   * sinks keep every decision). Identical decisions within `fold` of the stored one are counted
   * on it (`repeats`, `last_time`) instead of stored again; `0s` stores each.
   */
  recent_decisions: z.strictObject({
    max_rows: int(100_000, 100, 100_000_000),
    fold: duration('60s', 0, 24 * 3600_000),
    // Rows one client may add per fold window; unset: a tenth of max_rows; 0: no budget.
    max_rows_per_client: z.number().int().min(0).max(100_000_000).optional(),
  })
    // The budget is counted per fold window and enforced by folding: with folding off it would
    // be silently ignored, and an operator relying on it would have no protection.
    .refine((r) => r.fold > 0 || !r.max_rows_per_client, {
      path: ['max_rows_per_client'], message: 'needs folding on (fold above 0s); set a fold window or remove it',
    })
    .prefault({}),
})
  // The `events:` target is a sink named `events` (`stdout` for `-`), and drops of the
  // detectors' input are reported as sink `detectors`: a configured sink of the same name would
  // share their statistics and metrics labels, and an operator could not tell which one dropped
  // or fell behind.
  .superRefine((c, ctx) => {
    const taken = new Map<string, string>();
    if (c.events !== 'none') taken.set(c.events === '-' ? 'stdout' : 'events', `the name of the events: target (${c.events}); name this sink otherwise, or set events: none`);
    if (c.detect.enabled) taken.set('detectors', 'where drops of the detectors\' input are reported; name this sink otherwise');
    c.sinks.forEach((s, i) => {
      const why = taken.get(s.name);
      if (why !== undefined) ctx.addIssue({ code: 'custom', path: ['sinks', i, 'name'], message: `"${s.name}" is ${why}` });
    });
  });

export type ConfigInput = z.input<typeof configSchema>;
export type Config = z.output<typeof configSchema>;
