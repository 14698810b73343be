/**
 * Issuance step 2, constrain: the certificate's identity is the store's (device id, group, asset
 * id), never the request's. A request may name nothing, or exactly what the store says; anything
 * else is refused rather than silently dropped, so a device that tries to claim another device's
 * identity is visible in the events.
 */
import { ChokepointError } from '../core/errors.js';
import { DEVICE_URI_PREFIX } from '../core/principal.js';
import type { ValidatedCsr } from './csr.js';
import { ASSET_URI_PREFIX, deviceUris } from './sign.js';
import { x509 } from './x509.js';

const CHOKEPOINT_URN = 'urn:chokepoint:';

/** The asset ids the request claims through `urn:chokepoint:asset:<id>` URIs. */
export function claimedAssets(csr: ValidatedCsr): string[] {
  return csr.sanUris.filter((u) => u.startsWith(ASSET_URI_PREFIX)).map((u) => {
    try {
      return decodeURIComponent(u.slice(ASSET_URI_PREFIX.length));
    } catch {
      return u.slice(ASSET_URI_PREFIX.length);
    }
  });
}

/**
 * First enrollment: the device has no id yet, so a request naming any device URI names someone
 * else's (a cloned request, or an attempt to take over an enrolled device's identity). Asset
 * claims are checked against the token's scope by the caller (TOKEN_SCOPE).
 */
export function constrainEnroll(csr: ValidatedCsr): void {
  const foreign = csr.sanUris.filter((u) => u.toLowerCase().startsWith(CHOKEPOINT_URN) && !u.startsWith(ASSET_URI_PREFIX));
  if (foreign.length > 0) {
    throw new ChokepointError('CSR_IDENTITY_MISMATCH', `the request names ${foreign[0]}: device identities are assigned by the gateway, leave them out of the request`);
  }
}

function nameText(der: Buffer): string | null {
  try {
    return new x509.Name(new Uint8Array(der)).toString();
  } catch {
    return null;
  }
}

/** An empty Name is the DER SEQUENCE `30 00`. */
const EMPTY_NAME = Buffer.from([0x30, 0x00]);

/**
 * Re-enrollment (RFC 7030 §4.2.2): the subject and subjectAltName "MUST be identical" to the
 * current certificate's. We also accept an empty subject and no SAN extension (the identity comes
 * from the store either way), but never a different one.
 */
export function constrainReenroll(csr: ValidatedCsr, current: { subjectDer: Buffer; deviceId: string; assetId: string | null; certUris?: readonly string[] }): void {
  // Compared as names, not bytes: `openssl req` writes UTF8String where we wrote PrintableString,
  // and both spell the same name (RFC 5280 §7.1 comparison rules).
  if (!csr.subjectDer.equals(EMPTY_NAME) && !csr.subjectDer.equals(current.subjectDer) && nameText(csr.subjectDer) !== nameText(current.subjectDer)) {
    throw new ChokepointError('CSR_IDENTITY_MISMATCH', `the request subject "${csr.subject}" differs from the current certificate's`);
  }
  if (!csr.hasSan) return;
  // The names the store gives the device now, or those of the certificate presented (RFC 7030's
  // rule): after an operator changes the device's asset the agent still copies the old one, and
  // refusing it would leave the device unable to renew. The new certificate takes the store's.
  const got = new Set(csr.sanUris);
  const sets = [new Set(deviceUris(current)), ...(current.certUris ? [new Set(current.certUris)] : [])];
  const same = (want: Set<string>) => csr.sanOther.length === 0 && got.size === want.size && [...got].every((u) => want.has(u));
  if (!sets.some(same)) {
    const want = sets[0] as Set<string>;
    const other = [...csr.sanUris, ...csr.sanOther].find((u) => !want.has(u)) ?? '(a missing name)';
    throw new ChokepointError('CSR_IDENTITY_MISMATCH', `the request subjectAltName names ${other}: neither the device's names in the store nor the current certificate's`);
  }
}

export { DEVICE_URI_PREFIX };
