/**
 * The identity side wired together: CA set, in-memory directory, enrollment, renewal, CRLs and
 * server certificates. `chokepoint serve` creates one (through createIdentity in
 * src/control/identity-routes.ts, which adds the EST plugin) and hands `directory` to the gateway.
 */
import type { IdentityConfig } from '../config/identity.js';
import type { EventBus } from '../events/bus.js';
import { caRow, loadCaSet, type CaSet } from './ca.js';
import { CrlPublisher, type PublishedCrl } from './crl-publisher.js';
import { IdentityDirectory, type DirectoryLogger } from './directory.js';
import { Enroller } from './enroll.js';
import type { IdentityStore } from './ports.js';
import { Renewer } from './renew.js';
import { identitySettings, type IdentitySettings } from './settings.js';
import { signServerCertificate, type ServerCertificate } from './sign.js';

export interface IdentityServiceOptions {
  readonly store: IdentityStore;
  readonly dataDir: string;
  readonly config: IdentityConfig;
  readonly bus: EventBus;
  readonly logger?: DirectoryLogger;
  /** Decrypts the CA key files when they are passphrase-protected. */
  readonly passphrase?: string;
  readonly now?: () => number;
  /**
   * Full reload of the device table this often (default 60 s; 0 = never). Changes made through
   * this process's API arrive at once through deviceChanged(); this catches the rest (another
   * gateway on the same PostgreSQL, a restore). A failed reload keeps the last table.
   */
  readonly refreshIntervalMs?: number;
}

export interface IdentityService {
  readonly directory: IdentityDirectory;
  readonly enroller: Enroller;
  readonly renewer: Renewer;
  readonly crls: CrlPublisher;
  readonly settings: IdentitySettings;
  cas(): CaSet;
  /** The active CA's current CRL. */
  crl(caId?: string): PublishedCrl | null;
  issueServerCertificate(opts: { names: readonly string[]; validityMs?: number }): Promise<ServerCertificate>;
  /** Call after any device or certificate change made elsewhere (the control API's onDeviceChanged). */
  deviceChanged(deviceId: string): Promise<void>;
  /** Re-reads the CA set from the data directory (after `ca rotate`) and republishes CRLs. */
  reloadCas(): Promise<void>;
  close(): Promise<void>;
}

export async function createIdentityService(o: IdentityServiceOptions): Promise<IdentityService> {
  let cas = await loadCaSet({ dataDir: o.dataDir, passphrase: o.passphrase });
  const syncCas = async () => {
    // The store mirrors the CA certificates (never the keys) for the API and dashboard.
    const inFiles = new Set(cas.trusted.map((c) => c.id));
    for (const c of cas.trusted) await o.store.upsertCa(caRow(c));
    for (const r of await o.store.listCas()) if (!inFiles.has(r.id) && r.state !== 'retired') await o.store.upsertCa({ ...r, state: 'retired' });
  };
  await syncCas();
  const settings = identitySettings(o.config);
  const directory = new IdentityDirectory({ store: o.store, bus: o.bus, logger: o.logger });
  await directory.refresh();
  const crls = new CrlPublisher({ cas: () => cas, directory, bus: o.bus, validityMs: settings.crlValidityMs, now: o.now });
  crls.regenerate();
  const deps = { store: o.store, cas: () => cas, settings, bus: o.bus, now: o.now, onIssued: (id: string) => directory.refreshDevice(id) };
  let closed = false;
  const every = o.refreshIntervalMs ?? 60_000;
  const timer = every > 0 ? setInterval(() => {
    directory.refresh().catch((err: unknown) => o.logger?.error({ err }, 'device table reload failed; keeping the last one'));
  }, every) : null;
  timer?.unref();
  return {
    directory,
    enroller: new Enroller(deps),
    renewer: new Renewer(deps),
    crls,
    settings,
    cas: () => cas,
    crl: (caId) => crls.current(caId),
    issueServerCertificate: (opts) => signServerCertificate({ ca: cas.active, names: opts.names, validityMs: opts.validityMs }),
    deviceChanged: (id) => directory.refreshDevice(id),
    reloadCas: async () => {
      cas = await loadCaSet({ dataDir: o.dataDir, passphrase: o.passphrase });
      await syncCas();
      crls.regenerate();
    },
    close: async () => {
      if (closed) return;
      closed = true;
      if (timer) clearInterval(timer);
      crls.close();
      await directory.close();
    },
  };
}
