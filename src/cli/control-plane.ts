/**
 * The management plane inside `chokepoint serve`: opens the store, creates the first admin,
 * keeps the gateway's policy snapshot in step with the store (and with `--policy FILE` through
 * the store), records recent decisions and alerts, and serves the control API.
 *
 * The gateway only ever holds an in-memory snapshot: if the store becomes unreachable it keeps
 * enforcing the last good one (it never fails open, never stops); the outage is logged and shows
 * in /readyz.
 */
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { resolve } from 'node:path';
import type { FastifyBaseLogger, FastifyInstance, FastifyPluginAsync } from 'fastify';
import type { Logger as PinoLogger } from 'pino';
import type { Config } from '../config/schema.js';
import { dataDirOf } from '../config/load.js';
import { ChokepointError } from '../core/errors.js';
import { buildControlServer, EventRecorder, loadEffectivePolicy, type PolicyMeta } from '../control/index.js';
import type { EventBus } from '../events/bus.js';
import type { Gateway } from '../gateway/server.js';
import type { CompiledPolicy } from '../policy/index.js';
import { bootstrapAdmin, openStore, type Store } from '../store/index.js';
import type { Identity } from '../control/identity-routes.js';
import { FilePolicySync } from './control-plane-file.js';
import { startControlListener, type ControlListener } from './control-listener.js';
import { startIdentityPlane, type IdentityPlane } from './identity-plane.js';

export interface ControlPlaneOptions {
  readonly config: Config;
  readonly gw: Gateway;
  readonly bus: EventBus;
  readonly logger: PinoLogger;
  /** Extra control API plugins (EST, /metrics). */
  readonly plugins?: readonly FastifyPluginAsync[];
  /** Gauges the control side keeps current: applied policy version, CA expiry. */
  readonly metrics?: { setPolicyVersion(v: number): void; setCertificateExpiry(kind: string, notAfter: Date): void };
  /** The identity side's reaction to a device change (directory refresh, CRL). */
  readonly onDeviceChanged?: (deviceId: string) => void | Promise<void>;
}

export interface ControlPlane {
  readonly store: Store;
  readonly app: FastifyInstance;
  /** `control HOST:PORT` for the gateway.started listeners. */
  readonly listener: string;
  /** `mtls HOST:PORT`, or null when the mTLS listener is off. */
  readonly mtlsListener: string | null;
  readonly identity: Identity;
  /** Re-reads the policy file and (on SIGHUP) the device CA set. */
  reload(why: string): Promise<void>;
  close(): Promise<void>;
}

const HEALTH_INTERVAL_MS = 5000;

export function isLoopback(host: string): boolean {
  if (host === 'localhost') return true;
  if (isIP(host) === 4) return host.startsWith('127.');
  return host === '::1';
}

/** Refuses to start (exit 2) with a one-line reason. */
function refuse(code: string, message: string): never {
  process.stderr.write(`chokepoint: ${message} [${code}]\n`);
  process.exit(2);
}

export async function startControlPlane(o: ControlPlaneOptions): Promise<ControlPlane> {
  const { config, gw, bus, logger } = o;
  const { host, port } = config.control_listen;
  // TLS on the control listener: the operator's certificate (control_tls) or, by default, one
  // from the built-in CA. Plain HTTP is accepted only on loopback and only without control_tls.
  let ownTls: { cert: Buffer; key: Buffer } | undefined;
  if (config.control_tls) {
    try {
      ownTls = { cert: readFileSync(config.control_tls.cert), key: readFileSync(config.control_tls.key) };
    } catch (err) {
      refuse('CONFIG_INVALID', `control_tls: cannot read the certificate or key: ${(err as Error).message}`);
    }
  }
  const allowPlain = ownTls === undefined && isLoopback(host);

  const explicitStore = config.data_dir !== undefined || config.database !== undefined;
  if (config.policy === undefined && !explicitStore) {
    refuse('USAGE', 'no policy: pass --policy FILE (or "policy:" in the config file), or --data-dir/--database to serve the policy applied in the store');
  }
  const dataDir = dataDirOf(config);
  let store: Store;
  try {
    store = await openStore({ dataDir, database: config.database, backgroundCheckpoints: { onError: (message) => logger.error({ store: 'sqlite' }, message) } });
  } catch (err) {
    const e = err instanceof ChokepointError ? err : new ChokepointError('STORE_UNAVAILABLE', 'cannot open the store', { cause: err });
    logger.error({ err: e.cause ?? e }, e.message);
    refuse(e.code, e.message);
  }

  const token = await bootstrapAdmin(store);
  if (token !== null) {
    // stderr, not stdout: stdout may carry the event stream (--events -).
    process.stderr.write(`\nchokepoint: created the first security-admin "admin". Its API token is shown only this once:\n\n  ${token}\n\n  export CHOKEPOINT_TOKEN=${token}\n\n`);
    logger.warn({ admin: 'admin' }, 'first security-admin created; its API token was printed once on stderr');
  }

  let identity: IdentityPlane;
  try {
    identity = await startIdentityPlane({ config, gw, bus, logger, store, dataDir });
  } catch (err) {
    const e = err instanceof ChokepointError ? err : new ChokepointError('INTERNAL', 'device identity failed to start', { cause: err });
    logger.error({ err: e.cause ?? e }, e.message);
    await store.close().catch(() => {});
    refuse(e.code, e.message);
  }

  const caExpiry = (): void => {
    for (const c of identity.identity.cas().trusted) o.metrics?.setCertificateExpiry(`ca_${c.state}`, new Date(c.notAfter));
  };
  caExpiry();
  identity.onCredentials(caExpiry);
  // The device certificate expiry horizon: recomputed from the in-memory table each minute.
  const deviceExpiry = (): void => {
    const t = identity.identity.directory.soonestDeviceExpiry(Date.now());
    if (t !== null) o.metrics?.setCertificateExpiry('device_min', new Date(t));
  };
  deviceExpiry();
  const expiryTimer = setInterval(deviceExpiry, 60_000);
  expiryTimer.unref();

  let policyFileSource: string | null = null;
  const onPolicyApplied = async (compiled: CompiledPolicy, meta: PolicyMeta): Promise<void> => {
    // Reported as loaded once every proxy thread enforces it too (this thread's swap is at once).
    await gw.applyPolicy(compiled);
    o.metrics?.setPolicyVersion(meta.version);
    const source = policyFileSource !== null && meta.pilotVersion === null ? `${policyFileSource} (${meta.source})` : meta.source;
    logger.info({ source, digest: compiled.digest, groups: compiled.groups.length }, 'policy applied');
    bus.publish({ v: 1, type: 'gateway.policy.loaded', time: new Date().toISOString(), source, digest: compiled.digest, groups: compiled.groups.length, warnings: [] });
  };

  const onDeviceChanged = async (deviceId: string): Promise<void> => {
    await identity.identity.deviceChanged(deviceId);
    await o.onDeviceChanged?.(deviceId);
  };
  const app = await buildControlServer({
    store, bus, logger: logger as unknown as FastifyBaseLogger, plugins: [...(o.plugins ?? []), identity.identity.estPlugin], twoPerson: config.policy_change.two_person,
    onPolicyApplied, onDeviceChanged,
    policyLoaded: () => gw.policy !== null,
  });
  const rd = config.recent_decisions;
  const recorder = new EventRecorder({ store, bus, logger, maxRows: rd.max_rows, foldMs: rd.fold, maxRowsPerClient: rd.max_rows_per_client ?? Math.floor(rd.max_rows / 10) });

  let file: FilePolicySync | null = null;
  if (config.policy !== undefined) {
    policyFileSource = resolve(config.policy);
    file = new FilePolicySync({ file: config.policy, ctx: app.control, gw, bus, logger });
    await file.reload('start');
    file.watch();
  } else {
    const eff = await loadEffectivePolicy(store.db);
    if (eff === null) logger.warn({}, 'the store has no applied policy: every request is denied until one is applied (chokepoint policy push FILE --reason …)');
    else if (!eff.ok) logger.error({ problems: eff.problems }, 'the applied policy in the store does not load; every request is denied');
    else {
      const s = await store.db.selectFrom('policy_state').select('generation').where('id', '=', 1).executeTakeFirstOrThrow();
      await app.control.deliver(Number(s.generation), eff);
    }
  }

  // Outages show in the log once per transition (not once per failed query).
  let healthy = true;
  const health = setInterval(() => {
    store.ping().then(() => {
      if (!healthy) logger.warn({ store: store.location }, 'store reachable again');
      healthy = true;
    }, (err: unknown) => {
      if (healthy) logger.error({ err, store: store.location }, 'store unreachable: the gateway keeps enforcing the last good policy; the control API answers 503');
      healthy = false;
    });
  }, HEALTH_INTERVAL_MS);
  health.unref();

  let front: ControlListener;
  const tlsFor = () => (ownTls ? { ...ownTls, ca: identity.credentials().ca } : identity.credentials());
  try {
    await app.ready();
    front = await startControlListener({ host, port, http: app.server, tls: tlsFor(), allowPlain });
  } catch (err) {
    refuse('LISTEN_FAILED', `cannot listen on ${host}:${port} (control API): ${(err as Error).message}`);
  }
  identity.onCredentials(() => front.setTls(tlsFor()));
  const a = front.address;
  const bound = `${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}`;
  logger.info({ control: bound, plain_http: allowPlain, store: store.location, mtls: identity.listener }, 'control API listening');

  let closed = false;
  return {
    store, app, listener: `control ${bound}`, mtlsListener: identity.listener, identity: identity.identity,
    reload: async (why) => {
      await file?.reload(why);
      if (why === 'SIGHUP') await identity.reloadCas().catch((err: unknown) => logger.error({ err }, 'reloading the device CAs failed; the current set stays'));
    },
    close: async () => {
      if (closed) return;
      closed = true;
      clearInterval(health);
      clearInterval(expiryTimer);
      file?.close();
      await front.close().catch(() => {});
      await app.close().catch(() => {});
      await identity.close().catch(() => {});
      await recorder.close().catch(() => {});
      await store.close().catch(() => {});
    },
  };
}
