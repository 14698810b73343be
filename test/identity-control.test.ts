/**
 * The contract between the management plane and identity, end to end on a real SQLite store:
 * a token made through the API, EST enrollment through the control server (its role guard and
 * error envelope), approval and revocation through the API, and what the identity side does
 * about them (certificate on the next poll, directory refusal, onRevoke, CRL entry).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { identitySchema } from '../src/config/identity.js';
import { EventBus } from '../src/events/bus.js';
import { buildControlServer } from '../src/control/server.js';
import { createIdentity } from '../src/control/identity-routes.js';
import { initCa } from '../src/identity/ca.js';
import { bootstrapAdmin } from '../src/store/admins.js';
import { sqliteBackend } from './helpers/store.js';
import { deviceKey, makeCsr } from './helpers/pki.js';

/** certs-only PKCS#7 → the first certificate (the answer of simpleenroll has exactly one). */
function leafOf(b64: string): X509Certificate {
  const der = Buffer.from(b64.replace(/\s+/g, ''), 'base64');
  const i = der.indexOf(Buffer.from([0xa0]), 20); // [0] IMPLICIT certificates
  const start = der.indexOf(Buffer.from([0x30, 0x82]), i);
  const len = der.readUInt16BE(start + 2) + 4;
  return new X509Certificate(der.subarray(start, start + len));
}

describe('identity behind the control server', () => {
  it('token from the API, 202 pending, approval, certificate, revocation', async (t) => {
    const backend = sqliteBackend();
    t.after(() => backend.cleanup());
    await initCa({ dataDir: backend.dataDir });
    const store = await backend.open();
    const bus = new EventBus();
    const id = await createIdentity({ store, dataDir: backend.dataDir, config: identitySchema.parse({ groups: { kiosks: { require_approval: true } } }), bus });
    const revoked: [string, string | null][] = [];
    id.directory.onRevoke((d, s) => revoked.push([d, s]));
    const app = await buildControlServer({ store, bus, plugins: [id.estPlugin], onDeviceChanged: (d) => id.deviceChanged(d) });
    t.after(async () => {
      await app.close();
      await id.close();
      await store.close();
    });
    const admin = await bootstrapAdmin(store) as string;
    const api = (method: 'GET' | 'POST', url: string, payload?: unknown) =>
      app.inject({ method, url, headers: { authorization: `Bearer ${admin}` }, ...(payload === undefined ? {} : { payload: payload as object }) });

    const tok = await api('POST', '/api/v1/enrollment-tokens', { group: 'kiosks', ttl: '10m', uses: 1 });
    assert.equal(tok.statusCode, 201, tok.body);
    const token = (tok.json() as { token: string }).token;

    const csr = (await makeCsr(await deviceKey())).toString('base64');
    const enroll = () => app.inject({ method: 'POST', url: '/.well-known/est/simpleenroll', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/pkcs10' }, payload: csr });
    const pending = await enroll();
    assert.equal(pending.statusCode, 202, pending.body);
    assert.equal(pending.headers['retry-after'], '60');
    const deviceId = (pending.json() as { device_id: string }).device_id;
    assert.equal((await enroll()).statusCode, 202);

    const approve = await api('POST', `/api/v1/devices/${deviceId}/approve`, {});
    assert.equal(approve.statusCode, 200, approve.body);
    const issued = await enroll();
    assert.equal(issued.statusCode, 200, issued.body);
    assert.match(String(issued.headers['content-type']), /^application\/pkcs7-mime; smime-type=certs-only/);
    const cert = leafOf(issued.body);
    assert.match(cert.subjectAltName ?? '', new RegExp(`urn:chokepoint:device:${deviceId}`));
    const serial = cert.serialNumber.toLowerCase();
    const info = { serial, deviceId, notBefore: 0, notAfter: 0, chainVerified: true };
    assert.equal(id.directory.identify(info, Date.now()).ok, true);

    const shown = await api('GET', `/api/v1/devices/${deviceId}`);
    assert.equal((shown.json() as { state: string }).state, 'active');

    const rev = await api('POST', `/api/v1/devices/${deviceId}/revoke`, { reason: 'lost laptop' });
    assert.equal(rev.statusCode, 200, rev.body);
    assert.deepEqual(id.directory.identify(info, Date.now()), { ok: false, reason: 'device_revoked', deviceId });
    assert.deepEqual(revoked, [[deviceId, null]]);
    await new Promise((r) => setTimeout(r, 120)); // CRL regeneration is coalesced (50 ms)
    const crl = await app.inject({ method: 'GET', url: '/crl' });
    assert.equal(crl.statusCode, 200);
    assert.ok(crl.rawPayload.includes(Buffer.from(serial, 'hex')), 'the revoked serial is in the CRL');

    // public EST routes need no admin token; admin routes still do
    assert.equal((await app.inject({ method: 'GET', url: '/.well-known/est/cacerts' })).statusCode, 200);
    assert.equal((await app.inject({ method: 'GET', url: '/api/v1/devices' })).statusCode, 401);
    const reuse = await app.inject({ method: 'POST', url: '/.well-known/est/simpleenroll', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/pkcs10' }, payload: (await makeCsr(await deviceKey())).toString('base64') });
    assert.equal(reuse.statusCode, 403);
    assert.equal((reuse.json() as { code: string }).code, 'TOKEN_USED');

    // hostile requests: a specific 4xx and code each, never a 500
    const url = '/.well-known/est/simpleenroll';
    const cases: [Record<string, string>, string | Buffer, number, string][] = [
      [{ authorization: 'Basic !!!!', 'content-type': 'application/pkcs10' }, csr, 401, 'TOKEN_MISSING'],
      [{ authorization: 'Bearer', 'content-type': 'application/pkcs10' }, csr, 401, 'TOKEN_MISSING'],
      [{ authorization: `Bearer cpe_${'A'.repeat(4000)}`, 'content-type': 'application/pkcs10' }, csr, 401, 'TOKEN_UNKNOWN'],
      [{ authorization: `Bearer ${token}`, 'content-type': 'application/json' }, '{"csr":1}', 400, 'CSR_INVALID'],
      [{ authorization: `Bearer ${token}`, 'content-type': 'application/pkcs10' }, Buffer.from([0xff, 0xfe, 0x00, 0x41]), 400, 'CSR_INVALID'],
      [{ authorization: `Bearer ${token}`, 'content-type': 'application/pkcs10' }, Buffer.alloc(100_000, 0x41), 413, 'CSR_TOO_LARGE'],
    ];
    for (const [headers, payload, status, c] of cases) {
      const r = await app.inject({ method: 'POST', url, headers, payload });
      assert.equal(r.statusCode, status, `${JSON.stringify(headers).slice(0, 80)} → ${r.body}`);
      assert.equal((r.json() as { code: string }).code, c);
    }
    const noCert = await app.inject({ method: 'POST', url: '/.well-known/est/simplereenroll', headers: { 'content-type': 'application/pkcs10' }, payload: csr });
    assert.equal(noCert.statusCode, 401);
    assert.equal((noCert.json() as { code: string }).code, 'CLIENT_CERT_REQUIRED');
  });
});
