/**
 * The in-memory device table the gateway consults at every handshake and request
 * (DeviceDirectory, src/core/principal.ts): loaded from the store, answered synchronously, never
 * a database call on the hot path. `refresh()` reloads everything; `refreshDevice(id)` one device
 * (the control API calls it through onDeviceChanged after every state change). A refresh that finds
 * a device newly revoked or disabled, or a serial newly revoked, fires the onRevoke listeners so
 * the gateway cuts that device's live tunnels.
 */
import type { DeviceDirectory, IdentifyResult, PeerCertificateInfo } from '../core/principal.js';
import type { EventBus } from '../events/bus.js';
import { reasonCode, type CrlEntry } from './crl.js';
import type { CertificateRow, DeviceRow, IdentityStore } from './ports.js';

interface DeviceEntry {
  readonly state: DeviceRow['state'];
  readonly group: string;
  readonly assetId: string | null;
  readonly updatedAt: number;
}
interface CertEntry {
  readonly deviceId: string;
  readonly caId: string;
  readonly notBefore: number;
  readonly notAfter: number;
  readonly issuedAt: number;
  firstUsedAt: number | null;
  revokedAt: number | null;
  reason: string | null;
}

export interface DirectoryLogger {
  error(obj: object, msg: string): void;
}

export class IdentityDirectory implements DeviceDirectory {
  readonly #store: IdentityStore;
  readonly #bus: EventBus;
  readonly #log: DirectoryLogger | undefined;
  #devices = new Map<string, DeviceEntry>();
  #certs = new Map<string, CertEntry>();
  #revokeListeners: ((deviceId: string, serial: string | null) => void)[] = [];
  #changeListeners: (() => void)[] = [];
  #pendingWrites = new Set<Promise<void>>();
  #closed = false;
  /**
   * Load ordering. Every load (refresh, refreshDevice) takes a sequence number before it reads.
   * A store read can take a while (a large certificates table on PostgreSQL), so loads finish
   * out of order: a periodic refresh that began before a revocation must not land after the
   * revocation's refreshDevice and put the device back to active (and out of the CRL) until
   * the next refresh. `#applied`: the sequence of the newest full refresh in memory; `#newer`:
   * devices a refreshDevice loaded with a sequence above it.
   */
  #seq = 0;
  #applied = 0;
  #newer = new Map<string, number>();

  constructor(opts: { store: IdentityStore; bus: EventBus; logger?: DirectoryLogger }) {
    this.#store = opts.store;
    this.#bus = opts.bus;
    this.#log = opts.logger;
  }

  get size(): { devices: number; certificates: number } {
    return { devices: this.#devices.size, certificates: this.#certs.size };
  }

  /**
   * The nearest notAfter among the certificates active devices can still use (not revoked,
   * not expired), or null when there is none: the "expiry horizon" an operator watches so that
   * devices whose renewal is failing are noticed before they fall off the network.
   */
  soonestDeviceExpiry(now: number): number | null {
    let min: number | null = null;
    for (const c of this.#certs.values()) {
      if (c.revokedAt !== null || c.notAfter < now) continue;
      if (this.#devices.get(c.deviceId)?.state !== 'active') continue;
      if (min === null || c.notAfter < min) min = c.notAfter;
    }
    return min;
  }

  identify(cert: PeerCertificateInfo, now: number): IdentifyResult {
    const deny = (reason: Exclude<IdentifyResult, { ok: true }>['reason'], deviceId: string | null): IdentifyResult => ({ ok: false, reason, deviceId });
    // A certificate that does not chain to a device CA tells us nothing, not even a device id.
    if (!cert.chainVerified) return deny('certificate_invalid', null);
    const c = this.#certs.get(cert.serial);
    if (!c) return deny('device_unknown', cert.deviceId);
    // The URI SAN must name the device the store recorded for this serial: a certificate is not
    // trusted to say whose it is.
    if (cert.deviceId !== c.deviceId) return deny('certificate_invalid', c.deviceId);
    const d = this.#devices.get(c.deviceId);
    if (!d) return deny('device_unknown', c.deviceId);
    if (d.state === 'revoked') return deny('device_revoked', c.deviceId);
    if (d.state === 'disabled') return deny('device_disabled', c.deviceId);
    if (d.state === 'pending') return deny('device_pending', c.deviceId);
    // A renewed device's older serial: say so, rather than alarm an operator with "revoked".
    if (c.revokedAt !== null) return deny(c.reason === 'superseded' ? 'certificate_superseded' : 'device_revoked', c.deviceId);
    if (now < c.notBefore) return deny('certificate_not_yet_valid', c.deviceId);
    if (now > c.notAfter) return deny('certificate_expired', c.deviceId);
    if (c.firstUsedAt === null) this.#firstUse(cert.serial, c, now);
    return { ok: true, principal: { kind: 'device', deviceId: c.deviceId, assetId: d.assetId, group: d.group, serial: cert.serial, notAfter: c.notAfter } };
  }

  onRevoke(listener: (deviceId: string, serial: string | null) => void): () => void {
    this.#revokeListeners = [...this.#revokeListeners, listener];
    return () => { this.#revokeListeners = this.#revokeListeners.filter((l) => l !== listener); };
  }

  /** Any change that can alter a CRL (used by the CRL publisher). */
  onChange(listener: () => void): () => void {
    this.#changeListeners = [...this.#changeListeners, listener];
    return () => { this.#changeListeners = this.#changeListeners.filter((l) => l !== listener); };
  }

  /**
   * First use of a new serial (DESIGN §4: old and new overlap until the new one is used). Marked
   * in memory at once so it happens once; persisted in the background, which also revokes the
   * device's older serials as superseded. Supersession does not fire onRevoke: the tunnels opened
   * with the old certificate belong to the same device, which just proved it holds the new key.
   */
  #firstUse(serial: string, c: CertEntry, now: number): void {
    c.firstUsedAt = now;
    const p = (async () => {
      const superseded = await this.#store.markFirstUse({ serial, deviceId: c.deviceId, now });
      await this.#store.touchDevice(c.deviceId, now);
      for (const s of superseded) {
        const o = this.#certs.get(s);
        if (o) {
          o.revokedAt = now;
          o.reason = 'superseded';
        }
      }
      if (superseded.length > 0) {
        this.#bus.publish({ v: 1, type: 'identity.certificate.superseded', time: new Date(now).toISOString(), device_id: c.deviceId, serial, superseded });
        this.#changed();
      }
    })().catch((err: unknown) => this.#log?.error({ err, serial }, 'cannot record the first use of a certificate'));
    this.#pendingWrites.add(p);
    void p.finally(() => this.#pendingWrites.delete(p));
  }

  /** Resolves when background first-use writes are done (tests, and close()). */
  async settled(): Promise<void> {
    while (this.#pendingWrites.size > 0) await Promise.all([...this.#pendingWrites]);
  }

  #changed(): void {
    for (const l of this.#changeListeners) {
      try {
        l();
      } catch (err) {
        this.#log?.error({ err }, 'directory change listener failed');
      }
    }
  }

  #fire(deviceId: string, serial: string | null, state: DeviceRow['state']): void {
    this.#bus.publish({ v: 1, type: 'identity.device.revoked', time: new Date().toISOString(), device_id: deviceId, serial, state });
    for (const l of this.#revokeListeners) {
      try {
        l(deviceId, serial);
      } catch (err) {
        this.#log?.error({ err, deviceId }, 'revocation listener failed');
      }
    }
  }

  static #certEntry(r: CertificateRow): CertEntry {
    return { deviceId: r.device_id, caId: r.ca_id, notBefore: r.not_before, notAfter: r.not_after, issuedAt: r.issued_at, firstUsedAt: r.first_used_at, revokedAt: r.revoked_at, reason: r.revocation_reason };
  }
  static #deviceEntry(r: DeviceRow): DeviceEntry {
    return { state: r.state, group: r.group_name, assetId: r.asset_id, updatedAt: r.updated_at };
  }

  /** Compares one device's old and new view and fires what became revoked. */
  #diff(id: string, before: DeviceEntry | undefined, after: DeviceEntry | undefined, certsBefore: Map<string, CertEntry>, certsAfter: Iterable<[string, CertEntry]>): void {
    if (after && before && (after.state === 'revoked' || after.state === 'disabled') && before.state !== after.state) {
      this.#fire(id, null, after.state);
      return; // the whole device is cut: its serials revoked in the same change need no second signal
    } else if (!after && before && before.state === 'active') {
      this.#fire(id, null, 'revoked'); // a device deleted from the store is as good as revoked
      return;
    }
    for (const [serial, c] of certsAfter) {
      const old = certsBefore.get(serial);
      if (old && old.revokedAt === null && c.revokedAt !== null && c.reason !== 'superseded') this.#fire(id, serial, after?.state ?? 'revoked');
    }
  }

  async refresh(): Promise<void> {
    const seq = ++this.#seq;
    const [devices, certs] = await Promise.all([this.#store.listDevices(), this.#store.listCertificates()]);
    if (this.#closed || seq < this.#applied) return; // a refresh that began later has landed
    const first = this.#devices.size === 0 && this.#certs.size === 0;
    const nd = new Map(devices.map((d) => [d.id, IdentityDirectory.#deviceEntry(d)]));
    const nc = new Map(certs.map((c) => [c.serial, IdentityDirectory.#certEntry(c)]));
    // Devices reloaded on their own after this refresh began are newer in memory than in its
    // snapshot: they keep their entries and certificates.
    const keep = new Map<string, number>();
    for (const [id, n] of this.#newer) if (n > seq) keep.set(id, n);
    if (keep.size > 0) {
      for (const id of keep.keys()) {
        const d = this.#devices.get(id);
        if (d) nd.set(id, d);
        else nd.delete(id);
      }
      for (const [s, c] of nc) if (keep.has(c.deviceId)) nc.delete(s);
      for (const [s, c] of this.#certs) if (keep.has(c.deviceId)) nc.set(s, c);
    }
    this.#applied = seq;
    this.#newer = keep;
    // Keep first uses recorded in memory whose write has not landed yet.
    for (const [s, c] of nc) if (c.firstUsedAt === null) c.firstUsedAt = this.#certs.get(s)?.firstUsedAt ?? null;
    const [od, oc] = [this.#devices, this.#certs];
    this.#devices = nd;
    this.#certs = nc;
    if (!first) {
      const byDevice = new Map<string, [string, CertEntry][]>();
      for (const [s, c] of nc) {
        const list = byDevice.get(c.deviceId);
        if (list) list.push([s, c]);
        else byDevice.set(c.deviceId, [[s, c]]);
      }
      for (const id of new Set([...od.keys(), ...nd.keys()])) this.#diff(id, od.get(id), nd.get(id), oc, byDevice.get(id) ?? []);
    }
    // The periodic reload usually finds nothing new: only a real change republishes the CRLs.
    if (first || IdentityDirectory.#differs(od, nd, oc, nc)) this.#changed();
  }

  /** Whether anything a CRL or a decision depends on differs between two loads. */
  static #differs(od: Map<string, DeviceEntry>, nd: Map<string, DeviceEntry>, oc: Map<string, CertEntry>, nc: Map<string, CertEntry>): boolean {
    if (od.size !== nd.size || oc.size !== nc.size) return true;
    for (const [id, d] of nd) {
      const o = od.get(id);
      if (!o || o.state !== d.state || o.updatedAt !== d.updatedAt || o.group !== d.group || o.assetId !== d.assetId) return true;
    }
    for (const [s, c] of nc) {
      const o = oc.get(s);
      if (!o || o.revokedAt !== c.revokedAt || o.reason !== c.reason) return true;
    }
    return false;
  }

  async refreshDevice(id: string): Promise<void> {
    const seq = ++this.#seq;
    const [d, certs] = await Promise.all([this.#store.getDevice(id), this.#store.certificatesOf(id)]);
    if (this.#closed) return;
    // A load of this device (or of all) that began later has landed already: this one is older.
    if (Math.max(this.#applied, this.#newer.get(id) ?? 0) > seq) return;
    this.#newer.set(id, seq);
    const before = this.#devices.get(id);
    const after = d ? IdentityDirectory.#deviceEntry(d) : undefined;
    if (after) this.#devices.set(id, after);
    else this.#devices.delete(id);
    const fresh: [string, CertEntry][] = certs.map((c) => [c.serial, IdentityDirectory.#certEntry(c)]);
    const oldCerts = new Map<string, CertEntry>();
    for (const [s] of fresh) {
      const o = this.#certs.get(s);
      if (o) oldCerts.set(s, { ...o });
    }
    for (const [s, c] of fresh) {
      if (c.firstUsedAt === null) c.firstUsedAt = this.#certs.get(s)?.firstUsedAt ?? null;
      this.#certs.set(s, c);
    }
    this.#diff(id, before, after, oldCerts, fresh);
    this.#changed();
  }

  /**
   * What a CRL of CA `caId` lists at `now`: revoked serials, and the live serials of revoked
   * (privilegeWithdrawn) and disabled (certificateHold, which RFC 5280 §5.3.1 lets a later CRL
   * drop when the device is enabled again) devices. Expired serials are left out (§5: a CRL need
   * not list a certificate after its expiry), which keeps the list bounded.
   */
  revocationEntries(caId: string, now: number): CrlEntry[] {
    const out: CrlEntry[] = [];
    for (const [serial, c] of this.#certs) {
      if (c.caId !== caId || c.notAfter < now) continue;
      if (c.revokedAt !== null) {
        out.push({ serial, revokedAt: c.revokedAt, reason: reasonCode(c.reason) });
        continue;
      }
      const d = this.#devices.get(c.deviceId);
      if (d?.state === 'revoked') out.push({ serial, revokedAt: d.updatedAt, reason: reasonCode('device_revoked') });
      else if (d?.state === 'disabled') out.push({ serial, revokedAt: d.updatedAt, reason: reasonCode('device_disabled') });
    }
    return out;
  }

  async close(): Promise<void> {
    await this.settled();
    this.#closed = true;
  }
}
