/**
 * An in-memory IdentityStore for unit tests and for the identity code's own checks. Each method
 * reads and writes without an `await` in between, so it is atomic with respect to the others
 * (JavaScript runs one synchronous stretch at a time), which is what the SQL implementation gets
 * from its transactions.
 */
import type {
  CaRow, CertificateRow, ConsumeInput, DeviceRow, EnrollmentRequestRow, IdentityStore, TokenRow,
} from './ports.js';

export class MemoryIdentityStore implements IdentityStore {
  readonly devices = new Map<string, DeviceRow>();
  readonly certificates = new Map<string, CertificateRow>();
  readonly tokens = new Map<string, TokenRow>();
  readonly requests = new Map<string, EnrollmentRequestRow>();
  readonly cas = new Map<string, CaRow>();

  // ---- helpers the management plane would use (tests call these directly) ----
  addToken(t: TokenRow): void {
    this.tokens.set(t.id, t);
  }
  setDeviceState(id: string, state: DeviceRow['state'], now = Date.now()): void {
    const d = this.devices.get(id);
    if (!d) throw new Error(`no device ${id}`);
    this.devices.set(id, { ...d, state, updated_at: now });
  }
  decideRequest(id: string, state: 'approved' | 'denied', by: string, now = Date.now()): void {
    const r = this.requests.get(id);
    if (!r) throw new Error(`no request ${id}`);
    this.requests.set(id, { ...r, state, decided_by: by, decided_at: now });
    if (state === 'denied') this.setDeviceState(r.device_id, 'revoked', now);
  }
  revokeCertificate(serial: string, reason: string, now = Date.now()): void {
    const c = this.certificates.get(serial);
    if (!c) throw new Error(`no certificate ${serial}`);
    this.certificates.set(serial, { ...c, revoked_at: now, revocation_reason: reason });
  }

  // ---- IdentityStore ----
  #token(hash: string): TokenRow | null {
    for (const t of this.tokens.values()) if (t.token_hash === hash) return t;
    return null;
  }
  async findTokenByHash(hash: string): Promise<TokenRow | null> {
    return this.#token(hash);
  }
  async consumeToken(input: ConsumeInput): Promise<TokenRow | null> {
    // No await between the check and the write: that is what makes this atomic.
    const t = this.#token(input.tokenHash);
    if (!t || t.uses_left <= 0 || t.expires_at <= input.now || t.revoked_at !== null) return null;
    const updated = { ...t, uses_left: t.uses_left - 1 };
    this.tokens.set(t.id, updated);
    this.devices.set(input.device.id, input.device);
    this.requests.set(input.request.id, input.request);
    return updated;
  }
  async findRequestsByToken(tokenId: string): Promise<EnrollmentRequestRow[]> {
    return [...this.requests.values()].filter((r) => r.token_id === tokenId);
  }
  async completeEnrollment(input: { requestId: string; deviceId: string; cert: CertificateRow; now: number }): Promise<void> {
    const r = this.requests.get(input.requestId);
    const d = this.devices.get(input.deviceId);
    if (!r || !d) throw new Error('request or device vanished');
    this.requests.set(r.id, { ...r, state: 'issued' });
    if (d.state === 'pending') this.devices.set(d.id, { ...d, state: 'active', updated_at: input.now });
    this.certificates.set(input.cert.serial, input.cert);
  }
  async insertCertificate(cert: CertificateRow): Promise<void> {
    this.certificates.set(cert.serial, cert);
  }
  async getDevice(id: string): Promise<DeviceRow | null> {
    return this.devices.get(id) ?? null;
  }
  async getCertificate(serial: string): Promise<CertificateRow | null> {
    return this.certificates.get(serial) ?? null;
  }
  async listDevices(): Promise<DeviceRow[]> {
    return [...this.devices.values()];
  }
  async listCertificates(): Promise<CertificateRow[]> {
    return [...this.certificates.values()];
  }
  async certificatesOf(deviceId: string): Promise<CertificateRow[]> {
    return [...this.certificates.values()].filter((c) => c.device_id === deviceId);
  }
  async certificatesBySpki(spki: string): Promise<CertificateRow[]> {
    return [...this.certificates.values()].filter((c) => c.spki_sha256 === spki);
  }
  async markFirstUse(input: { serial: string; deviceId: string; now: number }): Promise<string[]> {
    const c = this.certificates.get(input.serial); // synchronous from here on, as above
    if (!c || c.first_used_at !== null) return [];
    this.certificates.set(c.serial, { ...c, first_used_at: input.now });
    const superseded: string[] = [];
    for (const o of this.certificates.values()) {
      if (o.device_id === input.deviceId && o.serial !== input.serial && o.revoked_at === null && o.issued_at <= c.issued_at) {
        this.certificates.set(o.serial, { ...o, revoked_at: input.now, revocation_reason: 'superseded' });
        superseded.push(o.serial);
      }
    }
    return superseded;
  }
  async touchDevice(id: string, now: number): Promise<void> {
    const d = this.devices.get(id);
    if (d) this.devices.set(id, { ...d, last_seen_at: now });
  }
  async listCas(): Promise<CaRow[]> {
    return [...this.cas.values()];
  }
  async upsertCa(row: CaRow): Promise<void> {
    this.cas.set(row.id, row);
  }
}
