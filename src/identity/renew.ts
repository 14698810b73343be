/**
 * Renewal (RFC 7030 §4.2.2 simplereenroll): the device authenticates with its current certificate
 * on the TLS connection. We check the chain ourselves (the control listener requests but does not
 * require client certificates, so the handshake proves only possession of the key), then the
 * store's view: the serial, its device, the device's state, the validity window.
 */
import { X509Certificate } from 'node:crypto';
import { ChokepointError, type ErrorCode } from '../core/errors.js';
import { DEVICE_URI_PREFIX, normalizeSerial } from '../core/principal.js';
import type { CaSet, LoadedCa } from './ca.js';
import { constrainReenroll } from './constrain.js';
import { validateCsr } from './csr.js';
import { children, readTop } from './der.js';
import type { IssuerDeps } from './enroll.js';
import type { CertificateRow } from './ports.js';
import { signDeviceCertificate, type IssuedCertificate } from './sign.js';
import { x509 } from './x509.js';

const iso = (ms: number) => new Date(ms).toISOString();
/** Renewed certificates a device may hold without having used any of them. */
export const MAX_UNUSED_RENEWALS = 3;

/** The CA among `cas` that issued and signed `cert`, or null. */
export function issuerOf(cert: X509Certificate, cas: CaSet): LoadedCa | null {
  for (const ca of cas.trusted) {
    try {
      if (cert.checkIssued(ca.cert) && cert.verify(ca.cert.publicKey)) return ca;
    } catch {
      // a malformed certificate cannot have been issued by us
    }
  }
  return null;
}

/** Device id from the URI SAN, read with a real parser (not by splitting the printed SAN string). */
export function deviceIdOf(der: Uint8Array): string | null {
  try {
    const ext = new x509.X509Certificate(new Uint8Array(der)).getExtension(x509.SubjectAlternativeNameExtension);
    const uris = ext?.names.items.filter((n) => n.type === 'url' && n.value.startsWith(DEVICE_URI_PREFIX)) ?? [];
    return uris.length === 1 ? (uris[0] as { value: string }).value.slice(DEVICE_URI_PREFIX.length) : null;
  } catch {
    return null;
  }
}

/** Every URI in the certificate's subjectAltName (for the re-enrollment comparison). */
function uriSansOf(der: Uint8Array): string[] {
  try {
    const ext = new x509.X509Certificate(new Uint8Array(der)).getExtension(x509.SubjectAlternativeNameExtension);
    return ext?.names.items.filter((n) => n.type === 'url').map((n) => n.value) ?? [];
  } catch {
    return [];
  }
}

function subjectDerOf(der: Buffer): Buffer {
  const top = readTop(der);
  const tbs = children(der, top)[0];
  if (!tbs) throw new Error('no TBSCertificate');
  const f = children(der, tbs);
  const s = f[(f[0]?.tag === 0xa0 ? 1 : 0) + 4];
  if (!s) throw new Error('no subject');
  return der.subarray(s.start, s.end);
}

export type RenewResult = { readonly deviceId: string; readonly oldSerial: string; readonly cert: IssuedCertificate; readonly inGrace: boolean };

export class Renewer {
  readonly #d: IssuerDeps;
  constructor(deps: IssuerDeps) {
    this.#d = deps;
  }

  async reenroll(input: { peerCertDer: Uint8Array | null; csrDer: Uint8Array; clientIp?: string | null }): Promise<RenewResult> {
    let deviceId: string | null = null;
    let serial: string | null = null;
    try {
      if (!input.peerCertDer || input.peerCertDer.length === 0) {
        throw new ChokepointError('CLIENT_CERT_REQUIRED', 'present the current device certificate on the TLS connection');
      }
      let peer: X509Certificate;
      try {
        peer = new X509Certificate(input.peerCertDer);
      } catch (err) {
        throw new ChokepointError('CLIENT_CERT_UNTRUSTED', 'the client certificate cannot be parsed', { cause: err });
      }
      serial = normalizeSerial(peer.serialNumber);
      if (!issuerOf(peer, this.#d.cas())) throw new ChokepointError('CLIENT_CERT_UNTRUSTED', 'the client certificate was not issued by a device CA of this gateway');
      const row = await this.#d.store.getCertificate(serial);
      if (!row) throw new ChokepointError('DEVICE_UNKNOWN', 'no device holds this certificate');
      deviceId = row.device_id;
      if (deviceIdOf(peer.raw) !== row.device_id) throw new ChokepointError('CLIENT_CERT_UNTRUSTED', 'the certificate does not name the device it was issued to');
      const device = await this.#d.store.getDevice(row.device_id);
      if (!device) throw new ChokepointError('DEVICE_UNKNOWN', 'the device of this certificate no longer exists');
      if (device.state === 'revoked') throw new ChokepointError('DEVICE_REVOKED', 'the device was revoked');
      if (device.state === 'disabled') throw new ChokepointError('DEVICE_DISABLED', 'the device is disabled');
      if (device.state === 'pending') throw new ChokepointError('DEVICE_PENDING', 'the device is waiting for approval');
      if (row.revoked_at !== null) throw new ChokepointError('CERTIFICATE_REVOKED', `this certificate was revoked (${row.revocation_reason ?? 'unspecified'}): renew with the newest one`);
      const now = (this.#d.now ?? Date.now)();
      const s = this.#d.settings.group(device.group_name);
      if (now < row.not_before) throw new ChokepointError('CERTIFICATE_NOT_YET_VALID', `the certificate is valid from ${iso(row.not_before)}`);
      const inGrace = now > row.not_after;
      if (inGrace && now > row.not_after + s.renewalGraceMs) {
        throw new ChokepointError('CERTIFICATE_EXPIRED', `the certificate expired at ${iso(row.not_after)}: enroll again with a new token`);
      }
      // A valid certificate must not be a way to mint certificates without end (store and CRL
      // growth): a few retries are allowed (a lost answer), then the device must use a new one.
      // Counted per device, whichever certificate is presented: counting only those newer than
      // the presented one let a device renew with each new, unused certificate in turn.
      const unused = (await this.#d.store.certificatesOf(device.id)).filter((c) => c.serial !== row.serial && c.revoked_at === null && c.first_used_at === null && c.not_after >= now);
      if (unused.length >= MAX_UNUSED_RENEWALS) {
        throw new ChokepointError('RENEWAL_LIMIT', `${unused.length} certificates of this device are unused: connect with the newest one before renewing again`);
      }
      const csr = validateCsr(input.csrDer);
      constrainReenroll(csr, { subjectDer: subjectDerOf(Buffer.from(peer.raw)), deviceId: device.id, assetId: device.asset_id, certUris: uriSansOf(peer.raw) });
      const others = await this.#d.store.certificatesBySpki(csr.spkiSha256);
      if (others.some((c) => c.device_id !== device.id)) throw new ChokepointError('CSR_KEY_REUSED', 'this key is already certified for another device: make a new key');
      const ca = this.#d.cas().active;
      const cert = await signDeviceCertificate({ ca, grant: { deviceId: device.id, group: device.group_name, assetId: device.asset_id, validityMs: s.validityMs }, spkiDer: csr.spkiDer, now });
      const newRow: CertificateRow = {
        serial: cert.serial, device_id: device.id, ca_id: ca.id, spki_sha256: csr.spkiSha256, not_before: cert.notBefore, not_after: cert.notAfter,
        issued_at: now, first_used_at: null, revoked_at: null, revocation_reason: null, pem: cert.pem,
      };
      await this.#d.store.insertCertificate(newRow);
      await this.#d.onIssued?.(device.id);
      this.#d.bus.publish({
        v: 1, type: 'identity.certificate.issued', time: iso(now), kind: 'renew', device_id: device.id, group: device.group_name, asset_id: device.asset_id,
        serial: cert.serial, ca_id: ca.id, spki_sha256: csr.spkiSha256, not_before: iso(cert.notBefore), not_after: iso(cert.notAfter),
      });
      this.#d.bus.publish({ v: 1, type: 'identity.certificate.renewed', time: iso(now), device_id: device.id, old_serial: serial, new_serial: cert.serial, in_grace: inGrace });
      return { deviceId: device.id, oldSerial: serial, cert, inGrace };
    } catch (err) {
      if (err instanceof ChokepointError) {
        this.#d.bus.publish({ v: 1, type: 'identity.renewal.refused', time: iso((this.#d.now ?? Date.now)()), code: err.code as ErrorCode, token_id: null, device_id: deviceId, serial, client_ip: input.clientIp ?? null });
      }
      throw err;
    }
  }
}
