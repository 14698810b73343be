/**
 * The storage the identity side needs, as small interfaces (DESIGN §6.9). Row shapes follow the
 * store schema contract shared with the management plane (times in epoch ms, serials lowercase
 * hex without leading zero bytes). `memory-store.ts` implements them for unit tests;
 * `src/store/identity-repo.ts` implements them on the real database.
 */

export type DeviceState = 'pending' | 'active' | 'disabled' | 'revoked';

export interface DeviceRow {
  readonly id: string;
  readonly group_name: string;
  readonly asset_id: string | null;
  readonly tags: readonly string[];
  readonly state: DeviceState;
  readonly created_at: number;
  readonly updated_at: number;
  readonly last_seen_at: number | null;
}

export interface CertificateRow {
  readonly serial: string;
  readonly device_id: string;
  readonly ca_id: string;
  readonly spki_sha256: string;
  readonly not_before: number;
  readonly not_after: number;
  readonly issued_at: number;
  readonly first_used_at: number | null;
  readonly revoked_at: number | null;
  /** `superseded`, `device_revoked`, `key_compromise`, `unspecified`, … (see crl.ts). */
  readonly revocation_reason: string | null;
  readonly pem: string;
}

export interface TokenRow {
  readonly id: string;
  readonly token_hash: string;
  readonly group_name: string;
  readonly asset_id: string | null;
  readonly uses_total: number;
  readonly uses_left: number;
  readonly expires_at: number;
  readonly revoked_at: number | null;
  readonly created_by: string;
  readonly created_at: number;
}

export type RequestState = 'pending' | 'approved' | 'denied' | 'issued';

export interface EnrollmentRequestRow {
  readonly id: string;
  readonly device_id: string;
  readonly token_id: string;
  readonly spki_sha256: string;
  /** base64 of the CSR DER. */
  readonly csr_der: string;
  readonly state: RequestState;
  readonly decided_by: string | null;
  readonly decided_at: number | null;
  readonly created_at: number;
}

export type CaState = 'active' | 'next' | 'retired';

export interface CaRow {
  readonly id: string;
  readonly cert_pem: string;
  readonly state: CaState;
  readonly not_after: number;
  readonly created_at: number;
}

/** What a successful atomic token consumption creates. */
export interface ConsumeInput {
  readonly tokenHash: string;
  readonly now: number;
  readonly device: DeviceRow;
  readonly request: EnrollmentRequestRow;
}

export interface IdentityStore {
  findTokenByHash(hash: string): Promise<TokenRow | null>;
  /**
   * In one transaction: decrement the token's uses_left only if it is > 0, not expired at `now`
   * and not revoked (one conditional UPDATE … RETURNING, so two concurrent enrollments cannot both
   * take the last use), then insert the device and the enrollment request. Returns the updated
   * token, or null when the conditional update matched nothing (nothing is written).
   */
  consumeToken(input: ConsumeInput): Promise<TokenRow | null>;
  findRequestsByToken(tokenId: string): Promise<EnrollmentRequestRow[]>;
  /** Marks a request issued and its device active, and records the certificate, in one transaction. */
  completeEnrollment(input: { requestId: string; deviceId: string; cert: CertificateRow; now: number }): Promise<void>;
  insertCertificate(cert: CertificateRow): Promise<void>;
  getDevice(id: string): Promise<DeviceRow | null>;
  getCertificate(serial: string): Promise<CertificateRow | null>;
  listDevices(): Promise<DeviceRow[]>;
  listCertificates(): Promise<CertificateRow[]>;
  certificatesOf(deviceId: string): Promise<CertificateRow[]>;
  /** Another device's (or any) certificate with this key, for key-reuse refusal. */
  certificatesBySpki(spkiSha256: string): Promise<CertificateRow[]>;
  /**
   * The new serial was seen in use: set its first_used_at (if unset) and revoke the device's older,
   * unrevoked serials with reason `superseded`, in one transaction. Returns the superseded serials.
   */
  markFirstUse(input: { serial: string; deviceId: string; now: number }): Promise<string[]>;
  touchDevice(id: string, now: number): Promise<void>;
  listCas(): Promise<CaRow[]>;
  upsertCa(row: CaRow): Promise<void>;
}
