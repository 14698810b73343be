/**
 * Events of device identity (issue #4): tokens, enrollment, approval, issuance, renewal,
 * revocation, CRLs. Owned by the identity work; documented in docs/events.md like every event.
 * No event carries a token, a key or a certificate body: ids, serials and fingerprints only.
 */
import type { Base } from './catalogue.js';

export interface IdentityLifecycleEvent extends Base {
  readonly type: 'identity.device.enrolled';
  readonly device_id: string;
  readonly group: string;
  readonly asset_id: string | null;
  readonly serial: string | null;
}

/** An enrollment token was used (one use taken) and a device created for it. */
export interface TokenConsumedEvent extends Base {
  readonly type: 'identity.token.consumed';
  readonly token_id: string;
  readonly device_id: string;
  readonly group: string;
  readonly asset_id: string | null;
  readonly uses_left: number;
  readonly client_ip: string | null;
}

/**
 * An enrollment with a token (`identity.enrollment.refused`: bad token, scope, CSR…) or a renewal was
 * refused; `code` is the error code sent to the client.
 */
export interface EnrollmentRefusedEvent extends Base {
  readonly type: 'identity.enrollment.refused' | 'identity.renewal.refused';
  readonly code: string;
  /** The token's id when the token was known (never the token itself). */
  readonly token_id: string | null;
  readonly device_id: string | null;
  readonly serial: string | null;
  readonly client_ip: string | null;
}

export interface EnrollmentStateEvent extends Base {
  /** pending: waiting for an admin; approved/denied: emitted when the device collects the decision. */
  readonly type: 'identity.enrollment.pending' | 'identity.enrollment.approved' | 'identity.enrollment.denied';
  readonly request_id: string;
  readonly device_id: string;
  readonly group: string;
  readonly spki_sha256: string;
  readonly decided_by: string | null;
}

export interface CertificateIssuedEvent extends Base {
  readonly type: 'identity.certificate.issued';
  /** `enroll` for a first certificate, `renew` for simplereenroll. */
  readonly kind: 'enroll' | 'renew';
  readonly device_id: string;
  readonly group: string;
  readonly asset_id: string | null;
  readonly serial: string;
  readonly ca_id: string;
  readonly spki_sha256: string;
  readonly not_before: string;
  readonly not_after: string;
}

export interface CertificateRenewedEvent extends Base {
  readonly type: 'identity.certificate.renewed';
  readonly device_id: string;
  readonly old_serial: string;
  readonly new_serial: string;
  /** Whether the old certificate had expired and was accepted within the group's grace. */
  readonly in_grace: boolean;
}

/** The new certificate was used for the first time: its older serials are revoked as superseded. */
export interface CertificateSupersededEvent extends Base {
  readonly type: 'identity.certificate.superseded';
  readonly device_id: string;
  readonly serial: string;
  readonly superseded: readonly string[];
}

/** The in-memory directory saw a device revoked or disabled, or one of its serials revoked. */
export interface DeviceRevokedEvent extends Base {
  readonly type: 'identity.device.revoked';
  readonly device_id: string;
  /** The serial revoked, or null when the whole device was revoked or disabled. */
  readonly serial: string | null;
  readonly state: 'revoked' | 'disabled' | 'active' | 'pending';
}

export interface CrlPublishedEvent extends Base {
  readonly type: 'identity.crl.published';
  readonly ca_id: string;
  readonly number: string;
  readonly entries: number;
  readonly this_update: string;
  readonly next_update: string;
  readonly bytes: number;
}

export type IdentityEvent =
  | IdentityLifecycleEvent | TokenConsumedEvent | EnrollmentRefusedEvent | EnrollmentStateEvent
  | CertificateIssuedEvent | CertificateRenewedEvent | CertificateSupersededEvent | DeviceRevokedEvent | CrlPublishedEvent;

export const IDENTITY_EVENT_TYPES: readonly IdentityEvent['type'][] = [
  'identity.device.enrolled',
  'identity.token.consumed',
  'identity.enrollment.refused',
  'identity.renewal.refused',
  'identity.enrollment.pending',
  'identity.enrollment.approved',
  'identity.enrollment.denied',
  'identity.certificate.issued',
  'identity.certificate.renewed',
  'identity.certificate.superseded',
  'identity.device.revoked',
  'identity.crl.published',
];
