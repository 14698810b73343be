/**
 * The DeviceDirectory contract kept in memory (serial → device), for tests of the gateway's
 * mTLS listener and of the agent against it. The real one (src/identity/directory.ts) is
 * tested on its own against the store.
 */
import type { DeviceDirectory, IdentifyResult, PeerCertificateInfo } from '../../src/core/principal.js';

export type DeviceState = 'active' | 'disabled' | 'revoked' | 'pending';

export class MemoryDirectory implements DeviceDirectory {
  readonly devices = new Map<string, { deviceId: string; group: string; assetId: string | null; state: DeviceState }>();
  #listeners: ((id: string, serial: string | null) => void)[] = [];

  add(serial: string, deviceId: string, group = 'laptops', state: DeviceState = 'active', assetId: string | null = null): void {
    this.devices.set(serial, { deviceId, group, assetId, state });
  }

  /** Sets every certificate of the device to a state; revoked and disabled fire onRevoke. */
  set(deviceId: string, state: DeviceState): void {
    for (const d of this.devices.values()) if (d.deviceId === deviceId) d.state = state;
    if (state === 'revoked' || state === 'disabled') for (const l of this.#listeners) l(deviceId, null);
  }

  revoke(deviceId: string): void {
    this.set(deviceId, 'revoked');
  }

  /** One certificate revoked, the device still active (a key reported lost after a renewal). */
  revokeSerial(serial: string): void {
    const d = this.devices.get(serial);
    if (!d) return;
    this.devices.delete(serial);
    for (const l of this.#listeners) l(d.deviceId, serial);
  }

  identify(cert: PeerCertificateInfo): IdentifyResult {
    const d = this.devices.get(cert.serial);
    if (d === undefined || d.deviceId !== cert.deviceId) return { ok: false, reason: 'device_unknown', deviceId: null };
    if (d.state !== 'active') return { ok: false, reason: `device_${d.state}`, deviceId: d.deviceId };
    return { ok: true, principal: { kind: 'device', deviceId: d.deviceId, assetId: d.assetId, group: d.group, serial: cert.serial, notAfter: cert.notAfter } };
  }

  onRevoke(l: (id: string, serial: string | null) => void): () => void {
    this.#listeners.push(l);
    return () => { this.#listeners = this.#listeners.filter((x) => x !== l); };
  }
}
