/**
 * Enrollment with a one-time token (DESIGN §4): validate the CSR, check the token, consume it
 * atomically together with creating the device, then issue — or park the request for approval,
 * bound to the CSR's key. A poll (the same token and the same key, RFC 7030 §4.2.3) picks up the
 * decision. Every refusal is an error with its own code and an `identity.enrollment.refused` event.
 */
import { createHash, randomUUID } from 'node:crypto';
import { ChokepointError, type ErrorCode } from '../core/errors.js';
import type { EventBus } from '../events/bus.js';
import type { CaSet } from './ca.js';
import { claimedAssets, constrainEnroll } from './constrain.js';
import { validateCsr, type ValidatedCsr } from './csr.js';
import type { CertificateRow, DeviceRow, EnrollmentRequestRow, IdentityStore, TokenRow } from './ports.js';
import type { IdentitySettings } from './settings.js';
import { signDeviceCertificate, type IssuedCertificate } from './sign.js';

export type EnrollResult =
  | { readonly status: 'issued'; readonly deviceId: string; readonly cert: Pick<IssuedCertificate, 'serial' | 'pem' | 'der' | 'notAfter'> }
  | { readonly status: 'pending'; readonly deviceId: string; readonly requestId: string; readonly retryAfterSec: number };

export interface IssuerDeps {
  readonly store: IdentityStore;
  readonly cas: () => CaSet;
  readonly settings: IdentitySettings;
  readonly bus: EventBus;
  readonly now?: () => number;
  /** Called after a certificate is recorded, so the in-memory directory learns it at once. */
  readonly onIssued?: (deviceId: string) => Promise<void> | void;
}

export const hashToken = (token: string): string => createHash('sha256').update(token, 'utf8').digest('hex');
const iso = (ms: number) => new Date(ms).toISOString();

export class Enroller {
  readonly #d: IssuerDeps;
  /** One issuance at a time per request: two concurrent polls of an approved request get one certificate. */
  readonly #inflight = new Map<string, Promise<EnrollResult>>();

  constructor(deps: IssuerDeps) {
    this.#d = deps;
  }

  #now(): number {
    return (this.#d.now ?? Date.now)();
  }

  async enroll(input: { token: string | null; csrDer: Uint8Array; clientIp?: string | null }): Promise<EnrollResult> {
    let tokenId: string | null = null;
    let deviceId: string | null = null;
    try {
      if (input.token === null || input.token === '') throw new ChokepointError('TOKEN_MISSING', 'send the enrollment token as the HTTP Basic password or as "Authorization: Bearer cpe_…"');
      // The token is checked before the request is parsed: an unauthenticated caller learns nothing
      // about how we parse CSRs. Tokens are looked up by their SHA-256 only (tables contract).
      const tok = await this.#d.store.findTokenByHash(hashToken(input.token));
      if (!tok) throw new ChokepointError('TOKEN_UNKNOWN', 'the enrollment token is not known');
      tokenId = tok.id;
      const csr = validateCsr(input.csrDer);
      const requests = await this.#d.store.findRequestsByToken(tok.id);
      const mine = requests.find((r) => r.spki_sha256 === csr.spkiSha256);
      if (mine) {
        deviceId = mine.device_id;
        return await this.#once(mine.id, () => this.#poll(mine, csr));
      }
      const r = await this.#first(tok, requests, csr, input.clientIp ?? null);
      deviceId = r.deviceId;
      return r;
    } catch (err) {
      if (err instanceof ChokepointError) this.#refused('identity.enrollment.refused', err.code, tokenId, deviceId, null, input.clientIp ?? null);
      throw err;
    }
  }

  #refused(type: 'identity.enrollment.refused' | 'identity.renewal.refused', code: ErrorCode, tokenId: string | null, deviceId: string | null, serial: string | null, ip: string | null): void {
    this.#d.bus.publish({ v: 1, type, time: iso(this.#now()), code, token_id: tokenId, device_id: deviceId, serial, client_ip: ip });
  }

  async #once(key: string, fn: () => Promise<EnrollResult>): Promise<EnrollResult> {
    const running = this.#inflight.get(key);
    if (running) await running.catch(() => undefined);
    const p = fn();
    this.#inflight.set(key, p);
    try {
      return await p;
    } finally {
      if (this.#inflight.get(key) === p) this.#inflight.delete(key);
    }
  }

  /** Why a token cannot be used now; null when it can. */
  #tokenProblem(tok: TokenRow, now: number): ChokepointError | null {
    if (tok.revoked_at !== null) return new ChokepointError('TOKEN_REVOKED', 'the enrollment token was revoked');
    if (tok.expires_at <= now) return new ChokepointError('TOKEN_EXPIRED', `the enrollment token expired at ${iso(tok.expires_at)}`);
    if (tok.uses_left <= 0) return new ChokepointError('TOKEN_USED', 'the enrollment token has no uses left');
    return null;
  }

  async #first(tok: TokenRow, requests: readonly EnrollmentRequestRow[], csr: ValidatedCsr, ip: string | null): Promise<EnrollResult> {
    const now = this.#now();
    const problem = this.#tokenProblem(tok, now);
    if (problem) {
      // A pending request already holds this token: the poll came with another key.
      // (A request is only "held" while it waits for an admin or was approved: in a group without
      // approval a pending request is just one being issued right now, by a racing enrollment.)
      const awaitingDecision = this.#d.settings.group(tok.group_name).requireApproval;
      if (problem.code === 'TOKEN_USED' && requests.some((r) => r.state === 'approved' || (r.state === 'pending' && awaitingDecision))) {
        throw new ChokepointError('ENROLLMENT_KEY_MISMATCH', 'this token\'s pending request is bound to another key: poll with the key of the original request');
      }
      throw problem;
    }
    const claimed = claimedAssets(csr);
    if (claimed.some((a) => a !== tok.asset_id)) {
      throw new ChokepointError('TOKEN_SCOPE', tok.asset_id === null
        ? `the token is not scoped to an asset; the request claims asset "${claimed[0]}"`
        : `the token is scoped to another asset than "${claimed.find((a) => a !== tok.asset_id)}"`);
    }
    constrainEnroll(csr);
    await this.#checkKeyFree(csr, null);
    const deviceId = randomUUID();
    const device: DeviceRow = { id: deviceId, group_name: tok.group_name, asset_id: tok.asset_id, tags: [], state: 'pending', created_at: now, updated_at: now, last_seen_at: null };
    const request: EnrollmentRequestRow = {
      id: randomUUID(), device_id: deviceId, token_id: tok.id, spki_sha256: csr.spkiSha256, csr_der: csr.der.toString('base64'),
      state: 'pending', decided_by: null, decided_at: null, created_at: now,
    };
    const updated = await this.#d.store.consumeToken({ tokenHash: tok.token_hash, now, device, request });
    if (!updated) {
      // Lost a race for the last use (or it expired/was revoked meanwhile): say which.
      const again = await this.#d.store.findTokenByHash(tok.token_hash);
      throw (again && this.#tokenProblem(again, now)) ?? new ChokepointError('TOKEN_USED', 'the enrollment token has no uses left');
    }
    this.#d.bus.publish({ v: 1, type: 'identity.token.consumed', time: iso(now), token_id: tok.id, device_id: deviceId, group: tok.group_name, asset_id: tok.asset_id, uses_left: updated.uses_left, client_ip: ip });
    if (this.#d.settings.group(tok.group_name).requireApproval) return this.#pending(request, tok.group_name);
    return this.#once(request.id, () => this.#issue(request, device, csr));
  }

  #pending(request: EnrollmentRequestRow, group: string): EnrollResult {
    this.#d.bus.publish({ v: 1, type: 'identity.enrollment.pending', time: iso(this.#now()), request_id: request.id, device_id: request.device_id, group, spki_sha256: request.spki_sha256, decided_by: null });
    return { status: 'pending', deviceId: request.device_id, requestId: request.id, retryAfterSec: this.#d.settings.retryAfterSec };
  }

  /** A key may belong to one device only (a cloned key on two devices would make them indistinguishable), and never the CA's. */
  async #checkKeyFree(csr: ValidatedCsr, deviceId: string | null): Promise<void> {
    for (const ca of this.#d.cas().trusted) {
      const caSpki = createHash('sha256').update(ca.cert.publicKey.export({ type: 'spki', format: 'der' })).digest('hex');
      if (caSpki === csr.spkiSha256) throw new ChokepointError('CSR_KEY_REUSED', 'the request carries the CA\'s own public key');
    }
    const users = await this.#d.store.certificatesBySpki(csr.spkiSha256);
    if (users.some((c) => c.device_id !== deviceId)) throw new ChokepointError('CSR_KEY_REUSED', 'this key is already certified for another device: make a new key');
  }

  async #poll(req: EnrollmentRequestRow, csr: ValidatedCsr): Promise<EnrollResult> {
    // Re-read: another poll may have just completed it.
    const fresh = (await this.#d.store.findRequestsByToken(req.token_id)).find((r) => r.id === req.id) ?? req;
    const device = await this.#d.store.getDevice(fresh.device_id);
    if (!device) throw new ChokepointError('DEVICE_UNKNOWN', 'the device of this enrollment request no longer exists');
    const decided = { v: 1 as const, time: iso(this.#now()), request_id: fresh.id, device_id: device.id, group: device.group_name, spki_sha256: fresh.spki_sha256, decided_by: fresh.decided_by };
    // A denial is reported as such even when the management plane also revoked the device.
    if (fresh.state === 'denied') {
      this.#d.bus.publish({ ...decided, type: 'identity.enrollment.denied' });
      throw new ChokepointError('ENROLLMENT_DENIED', 'an administrator denied this enrollment request');
    }
    if (device.state === 'revoked') throw new ChokepointError('DEVICE_REVOKED', 'the device was revoked');
    if (device.state === 'disabled') throw new ChokepointError('DEVICE_DISABLED', 'the device is disabled');
    switch (fresh.state) {
      case 'pending':
        if (this.#d.settings.group(device.group_name).requireApproval) return this.#pending(fresh, device.group_name);
        return this.#issue(fresh, device, csr); // approval not required (any more): finish what a failed attempt left
      case 'approved':
        this.#d.bus.publish({ ...decided, type: 'identity.enrollment.approved' });
        return this.#issue(fresh, device, csr);
      case 'issued': {
        // The answer to an earlier attempt was lost: give the same certificate back to the holder of its key.
        const now = this.#now();
        const certs = (await this.#d.store.certificatesOf(device.id))
          .filter((c) => c.spki_sha256 === csr.spkiSha256 && c.revoked_at === null && c.not_after > now)
          .sort((a, b) => b.issued_at - a.issued_at);
        const c = certs[0];
        if (!c || device.state !== 'active') throw new ChokepointError('TOKEN_USED', 'the enrollment token was already used: renew with simplereenroll, or ask for a new token');
        return { status: 'issued', deviceId: device.id, cert: { serial: c.serial, pem: c.pem, der: pemToDer(c.pem), notAfter: c.not_after } };
      }
    }
    throw new ChokepointError('INTERNAL', 'unknown enrollment request state');
  }

  async #issue(req: EnrollmentRequestRow, device: DeviceRow, csr: ValidatedCsr): Promise<EnrollResult> {
    const now = this.#now();
    const ca = this.#d.cas().active;
    const s = this.#d.settings.group(device.group_name);
    const cert = await signDeviceCertificate({ ca, grant: { deviceId: device.id, group: device.group_name, assetId: device.asset_id, validityMs: s.validityMs }, spkiDer: csr.spkiDer, now });
    const row: CertificateRow = {
      serial: cert.serial, device_id: device.id, ca_id: ca.id, spki_sha256: csr.spkiSha256, not_before: cert.notBefore, not_after: cert.notAfter,
      issued_at: now, first_used_at: null, revoked_at: null, revocation_reason: null, pem: cert.pem,
    };
    await this.#d.store.completeEnrollment({ requestId: req.id, deviceId: device.id, cert: row, now });
    await this.#d.onIssued?.(device.id);
    const t = iso(now);
    this.#d.bus.publish({
      v: 1, type: 'identity.certificate.issued', time: t, kind: 'enroll', device_id: device.id, group: device.group_name, asset_id: device.asset_id,
      serial: cert.serial, ca_id: ca.id, spki_sha256: csr.spkiSha256, not_before: iso(cert.notBefore), not_after: iso(cert.notAfter),
    });
    this.#d.bus.publish({ v: 1, type: 'identity.device.enrolled', time: t, device_id: device.id, group: device.group_name, asset_id: device.asset_id, serial: cert.serial });
    return { status: 'issued', deviceId: device.id, cert };
  }
}

export function pemToDer(pem: string): Buffer {
  const m = /-----BEGIN CERTIFICATE-----([\s\S]+?)-----END CERTIFICATE-----/.exec(pem);
  return Buffer.from((m?.[1] ?? '').replace(/\s+/g, ''), 'base64');
}
