/**
 * Who is asking (DESIGN §2 step 1). On the plain listener the source address selects a group
 * through the policy's `sources:`; on the mTLS listener a verified client certificate maps to a
 * device and its group through an in-memory device table (never a database call on the hot path).
 */

/** A device proven by its client certificate on the mTLS listener. */
export interface DevicePrincipal {
  readonly kind: 'device';
  readonly deviceId: string;
  readonly assetId: string | null;
  /** The policy group the store assigns the device to (never what the device asked for). */
  readonly group: string;
  /** Certificate serial, lowercase hex without separators or leading zero bytes. */
  readonly serial: string;
  /** Certificate notAfter, ms since the epoch. */
  readonly notAfter: number;
}

/** Why a presented certificate does not identify an active device. Each is a gateway reason code. */
export type DeviceDenyReason =
  | 'client_certificate_required'
  | 'certificate_invalid'
  | 'certificate_expired'
  | 'certificate_not_yet_valid'
  | 'certificate_superseded'
  | 'device_unknown'
  | 'device_revoked'
  | 'device_disabled'
  | 'device_pending';

/** What the data plane knows of a peer certificate after the TLS handshake. */
export interface PeerCertificateInfo {
  /** Lowercase hex, no separators, no leading zero bytes. */
  readonly serial: string;
  /** From the URI SAN `urn:chokepoint:device:<id>`, or null when absent. */
  readonly deviceId: string | null;
  readonly notBefore: number;
  readonly notAfter: number;
  /** Whether the chain verified against the trusted device CA(s). */
  readonly chainVerified: boolean;
}

export type IdentifyResult =
  | { readonly ok: true; readonly principal: DevicePrincipal }
  | { readonly ok: false; readonly reason: DeviceDenyReason; readonly deviceId: string | null };

/**
 * The in-memory device table the control side keeps current and the gateway consults at each
 * handshake and request. Implementations must answer synchronously from memory.
 */
export interface DeviceDirectory {
  identify(cert: PeerCertificateInfo, now: number): IdentifyResult;
  /**
   * Called with a device id whenever that device is revoked or disabled, or one of its serials is
   * revoked; the gateway cuts that device's live tunnels at once. Returns an unsubscribe function.
   */
  onRevoke(listener: (deviceId: string, serial: string | null) => void): () => void;
}

/**
 * A certificate serial as the store spells it: lowercase hex, no separators, no leading zero
 * bytes (Node prints serials in uppercase, sometimes with a 00 sign byte). The gateway and the
 * identity side must agree byte for byte, or a revoked serial would not be found.
 */
export function normalizeSerial(hex: string): string {
  let s = hex.toLowerCase().replace(/[^0-9a-f]/g, '');
  if (s.length % 2 === 1) s = `0${s}`;
  while (s.length > 2 && s.startsWith('00')) s = s.slice(2);
  return s;
}

/** The URI SAN that names a device in its certificate (DESIGN §4). */
export const DEVICE_URI_PREFIX = 'urn:chokepoint:device:';
