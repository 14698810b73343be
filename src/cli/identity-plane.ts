/**
 * Device identity inside `chokepoint serve`: the CA set (created on first start, like the first
 * admin), the in-memory device directory the gateway consults, the EST plugin for the control
 * listener, a server certificate from the same CA for the control and mTLS listeners (so agents
 * pin one CA), and the mTLS proxy listener itself.
 */
import { hostname } from 'node:os';
import type { Logger as PinoLogger } from 'pino';
import type { Config } from '../config/schema.js';
import { createIdentity, type Identity } from '../control/identity-routes.js';
import type { EventBus } from '../events/bus.js';
import type { Gateway } from '../gateway/server.js';
import { initCa } from '../identity/ca.js';
import { readState } from '../identity/ca-files.js';
import type { ServerCertificate } from '../identity/sign.js';
import type { Store } from '../store/index.js';

export interface IdentityPlane {
  readonly identity: Identity;
  /** The certificate the control and mTLS listeners present, and the device CAs they trust. */
  credentials(): { key: string; cert: string; ca: string[]; chain: string[] };
  /** Called when the credentials change (renewal, CA rotation). */
  onCredentials(fn: () => void): void;
  /**
   * Re-reads the CA set from the data directory (after `chokepoint ca rotate`, on SIGHUP):
   * the listeners then trust the new set and present a certificate from the active CA.
   */
  reloadCas(): Promise<void>;
  /** `mtls HOST:PORT`, or null when `mtls_listen: off`. */
  readonly listener: string | null;
  close(): Promise<void>;
}

/** Re-checks the listeners' certificate this often; it is re-issued in its last third. */
const RENEW_CHECK_MS = 6 * 3_600_000;

export async function startIdentityPlane(o: { config: Config; gw: Gateway; bus: EventBus; logger: PinoLogger; store: Store; dataDir: string }): Promise<IdentityPlane> {
  const { config, gw, logger } = o;
  // The passphrase of an encrypted CA key comes from the environment, never a flag (argv is
  // readable by every local user through /proc).
  const passphrase = process.env.CHOKEPOINT_CA_PASSPHRASE || undefined;
  if (readState(o.dataDir).cas.length === 0) {
    const ca = await initCa({ dataDir: o.dataDir, passphrase });
    logger.warn({ ca_id: ca.id, fingerprint_sha256: ca.fingerprint256 }, 'created the device CA (first start); agents pin this fingerprint (chokepoint agent enroll --ca-fingerprint)');
    process.stderr.write(`\nchokepoint: created the device CA. Agents pin its SHA-256 fingerprint:\n\n  ${ca.fingerprint256}\n\n`);
  }
  const identity = await createIdentity({ store: o.store, dataDir: o.dataDir, config: config.identity, bus: o.bus, passphrase, logger: { error: (obj: object, msg: string) => logger.error(obj, msg) } });

  const names = [...new Set([...config.mtls_names, ...(['0.0.0.0', '::'].includes(config.control_listen.host) ? [hostname()] : [config.control_listen.host])])];
  let server: ServerCertificate = await identity.issueServerCertificate({ names });
  let issuedAt = Date.now();
  const trusted = (): string[] => identity.cas().trusted.map((c) => c.certPem);
  // Above an imported CA: its enterprise chain, so OpenSSL can complete a device's chain.
  const chain = (): string[] => [...new Set(identity.cas().trusted.flatMap((c) => c.chainPems))];
  const credentials = () => ({ key: server.keyPem, cert: server.certPem, ca: trusted(), chain: chain() });
  const listeners: (() => void)[] = [];
  const changed = (): void => {
    gw.updateMtlsCredentials(credentials());
    for (const l of listeners) l();
  };

  let listener: string | null = null;
  if (config.mtls_listen !== null) {
    const { host, port } = config.mtls_listen;
    const a = await gw.listenMtls({ host, port, key: server.keyPem, cert: server.certPem, ca: trusted(), chain: chain(), directory: identity.directory });
    listener = `mtls ${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}`;
  }

  const timer = setInterval(() => {
    // Re-issue in the last third of the certificate's life, whatever validity it was given.
    if (server.notAfter - Date.now() > (server.notAfter - issuedAt) / 3) return;
    identity.issueServerCertificate({ names }).then((s) => {
      server = s;
      issuedAt = Date.now();
      changed();
      logger.info({ not_after: new Date(s.notAfter).toISOString() }, 'listener certificate renewed');
    }, (err: unknown) => logger.error({ err }, 'listener certificate renewal failed; the current one stays'));
  }, RENEW_CHECK_MS);
  timer.unref();

  return {
    identity,
    credentials,
    onCredentials: (fn) => { listeners.push(fn); },
    reloadCas: async () => {
      await identity.reloadCas();
      server = await identity.issueServerCertificate({ names });
      issuedAt = Date.now();
      changed();
      logger.info({ cas: identity.cas().trusted.map((c) => ({ id: c.id, state: c.state })) }, 'device CAs reloaded');
    },
    listener,
    close: async () => {
      clearInterval(timer);
      await identity.close();
    },
  };
}
