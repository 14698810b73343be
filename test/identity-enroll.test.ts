/**
 * Enrollment and renewal on the in-memory store: the full flow, every token refusal, approval and
 * denial bound to the key, foreign identities, renewal overlap, expiry and grace.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { ChokepointError } from '../src/core/errors.js';
import { addToken, deviceKey, harness, makeCsr, type DeviceKey, type Harness } from './helpers/pki.js';

const code = (c: string) => (err: unknown) => err instanceof ChokepointError && err.code === c;
const DAY = 86_400_000;

async function enrollOk(h: Harness, key: DeviceKey, opts: { group?: string; asset?: string | null } = {}) {
  const { token } = addToken(h.store, { ...opts, now: h.clock });
  const r = await h.id.enroller.enroll({ token, csrDer: await makeCsr(key) });
  assert.equal(r.status, 'issued');
  return { token, ...(r as Extract<typeof r, { status: 'issued' }>) };
}

describe('enrollment', () => {
  let h: Harness;
  before(async () => {
    h = await harness({ groups: { kiosks: { require_approval: true }, short: { cert_validity: '10m', renewal_grace: '1h' } } });
  });
  after(() => h.close());

  it('issues a P-256 clientAuth certificate naming the store\'s device and asset, not the request\'s subject', async () => {
    const key = await deviceKey();
    const { token, row } = addToken(h.store, { group: 'servers', asset: 'SRV-0042', now: h.clock });
    const r = await h.id.enroller.enroll({ token, csrDer: await makeCsr(key, { subject: 'CN=root,O=Evil Corp', uris: ['urn:chokepoint:asset:SRV-0042'] }), clientIp: '127.0.0.1' });
    assert.equal(r.status, 'issued');
    if (r.status !== 'issued') return;
    const cert = new X509Certificate(r.cert.der);
    assert.equal(cert.subject, `CN=${r.deviceId}`);
    assert.equal(cert.subjectAltName, `URI:urn:chokepoint:device:${r.deviceId}, URI:urn:chokepoint:asset:SRV-0042`);
    assert.equal(cert.ca, false);
    assert.deepEqual(cert.keyUsage, ['1.3.6.1.5.5.7.3.2']); // node names the EKU "keyUsage": clientAuth only
    assert.ok(cert.checkIssued(h.id.cas().active.cert) && cert.verify(h.id.cas().active.cert.publicKey));
    const nb = Date.parse(cert.validFrom);
    const na = Date.parse(cert.validTo);
    assert.ok(nb <= h.clock - 4 * 60_000 && nb >= h.clock - 6 * 60_000, 'notBefore backdated about 5 minutes');
    assert.ok(Math.abs(na - (h.clock + 7 * DAY)) < 2000, 'default validity 7 days');
    const dev = h.store.devices.get(r.deviceId);
    assert.equal(dev?.state, 'active');
    assert.equal(dev?.group_name, 'servers');
    assert.equal(h.store.tokens.get(row.id)?.uses_left, 0);
    assert.equal(h.store.certificates.get(r.cert.serial)?.device_id, r.deviceId);
    assert.match(r.cert.serial, /^[4-7][0-9a-f]{31}$/);
    const consumed = h.ofType('identity.token.consumed').at(-1);
    assert.equal(consumed?.token_id, row.id);
    assert.equal(consumed?.client_ip, '127.0.0.1');
    assert.equal(h.ofType('identity.device.enrolled').at(-1)?.serial, r.cert.serial);
    assert.ok(!JSON.stringify(h.events).includes(token), 'no event carries the token');
  });

  it('honours the group\'s validity', async () => {
    const r = await enrollOk(h, await deviceKey(), { group: 'short' });
    assert.ok(Math.abs(r.cert.notAfter - (h.clock + 10 * 60_000)) < 2000);
  });

  it('refuses a missing, unknown, used, expired and revoked token with distinct codes', async () => {
    const csr = await makeCsr(await deviceKey());
    await assert.rejects(h.id.enroller.enroll({ token: null, csrDer: csr }), code('TOKEN_MISSING'));
    await assert.rejects(h.id.enroller.enroll({ token: 'cpe_nope', csrDer: csr }), code('TOKEN_UNKNOWN'));
    const used = await enrollOk(h, await deviceKey());
    await assert.rejects(h.id.enroller.enroll({ token: used.token, csrDer: await makeCsr(await deviceKey()) }), code('TOKEN_USED'));
    const exp = addToken(h.store, { ttlMs: 1000, now: h.clock - 2000 });
    await assert.rejects(h.id.enroller.enroll({ token: exp.token, csrDer: csr }), code('TOKEN_EXPIRED'));
    const rev = addToken(h.store, { now: h.clock });
    h.store.tokens.set(rev.row.id, { ...rev.row, revoked_at: h.clock });
    await assert.rejects(h.id.enroller.enroll({ token: rev.token, csrDer: csr }), code('TOKEN_REVOKED'));
    const refused = h.ofType('identity.enrollment.refused').map((e) => e.code);
    for (const c of ['TOKEN_MISSING', 'TOKEN_UNKNOWN', 'TOKEN_USED', 'TOKEN_EXPIRED', 'TOKEN_REVOKED']) assert.ok(refused.includes(c), c);
    assert.equal(h.ofType('identity.enrollment.refused').find((e) => e.code === 'TOKEN_REVOKED')?.token_id, rev.row.id);
  });

  it('a multi-use token enrolls that many devices, then refuses', async () => {
    const { token } = addToken(h.store, { uses: 2, now: h.clock });
    for (let i = 0; i < 2; i++) assert.equal((await h.id.enroller.enroll({ token, csrDer: await makeCsr(await deviceKey()) })).status, 'issued');
    await assert.rejects(h.id.enroller.enroll({ token, csrDer: await makeCsr(await deviceKey()) }), code('TOKEN_USED'));
  });

  it('concurrent enrollments race for the last use: exactly one wins', async () => {
    const { token } = addToken(h.store, { uses: 1, now: h.clock });
    const csrs = await Promise.all([1, 2, 3, 4, 5].map(async () => makeCsr(await deviceKey())));
    const results = await Promise.allSettled(csrs.map((csrDer) => h.id.enroller.enroll({ token, csrDer })));
    assert.equal(results.filter((r) => r.status === 'fulfilled').length, 1);
    for (const r of results) if (r.status === 'rejected') assert.ok(code('TOKEN_USED')(r.reason), String(r.reason));
  });

  it('refuses an asset claim outside the token\'s scope', async () => {
    const scoped = addToken(h.store, { asset: 'A-1', now: h.clock });
    await assert.rejects(h.id.enroller.enroll({ token: scoped.token, csrDer: await makeCsr(await deviceKey(), { uris: ['urn:chokepoint:asset:A-2'] }) }), code('TOKEN_SCOPE'));
    const unscoped = addToken(h.store, { now: h.clock });
    await assert.rejects(h.id.enroller.enroll({ token: unscoped.token, csrDer: await makeCsr(await deviceKey(), { uris: ['urn:chokepoint:asset:A-1'] }) }), code('TOKEN_SCOPE'));
    // a refused scope does not consume the token
    assert.equal(h.store.tokens.get(scoped.row.id)?.uses_left, 1);
  });

  it('refuses a request naming a device identity (a foreign identity), and a reused key', async () => {
    const victim = await enrollOk(h, await deviceKey());
    const t = addToken(h.store, { now: h.clock });
    await assert.rejects(h.id.enroller.enroll({ token: t.token, csrDer: await makeCsr(await deviceKey(), { uris: [`urn:chokepoint:device:${victim.deviceId}`] }) }), code('CSR_IDENTITY_MISMATCH'));
    const key = await deviceKey();
    await enrollOk(h, key);
    await assert.rejects(h.id.enroller.enroll({ token: t.token, csrDer: await makeCsr(key) }), code('CSR_KEY_REUSED'));
    assert.equal(h.store.tokens.get(t.row.id)?.uses_left, 1);
  });

  it('refuses weak and wrong keys before consuming the token', async () => {
    const t = addToken(h.store, { now: h.clock });
    await assert.rejects(h.id.enroller.enroll({ token: t.token, csrDer: await makeCsr(await deviceKey('rsa')) }), code('CSR_KEY_RSA'));
    await assert.rejects(h.id.enroller.enroll({ token: t.token, csrDer: await makeCsr(await deviceKey('p384')) }), code('CSR_KEY_CURVE'));
    await assert.rejects(h.id.enroller.enroll({ token: t.token, csrDer: Buffer.from('garbage') }), code('CSR_INVALID'));
    assert.equal(h.store.tokens.get(t.row.id)?.uses_left, 1);
  });
});

describe('approval', () => {
  let h: Harness;
  before(async () => {
    h = await harness({ retry_after: '30s', groups: { kiosks: { require_approval: true } } });
  });
  after(() => h.close());

  it('answers pending, binds the request to the key, and issues after approval', async () => {
    const key = await deviceKey();
    const { token } = addToken(h.store, { group: 'kiosks', now: h.clock });
    const csr = await makeCsr(key);
    const p = await h.id.enroller.enroll({ token, csrDer: csr });
    assert.equal(p.status, 'pending');
    if (p.status !== 'pending') return;
    assert.equal(p.retryAfterSec, 30);
    assert.equal(h.store.devices.get(p.deviceId)?.state, 'pending');
    // poll before a decision: still pending
    assert.equal((await h.id.enroller.enroll({ token, csrDer: await makeCsr(key) })).status, 'pending');
    // a poll with another key does not get anything
    await assert.rejects(h.id.enroller.enroll({ token, csrDer: await makeCsr(await deviceKey()) }), code('ENROLLMENT_KEY_MISMATCH'));
    h.store.decideRequest(p.requestId, 'approved', 'alice');
    const mismatched = h.id.enroller.enroll({ token, csrDer: await makeCsr(await deviceKey()) });
    await assert.rejects(mismatched, code('ENROLLMENT_KEY_MISMATCH'));
    const r = await h.id.enroller.enroll({ token, csrDer: csr });
    assert.equal(r.status, 'issued');
    assert.equal(r.deviceId, p.deviceId);
    assert.equal(h.store.devices.get(p.deviceId)?.state, 'active');
    assert.equal(h.ofType('identity.enrollment.approved').at(-1)?.decided_by, 'alice');
    // the answer was lost: the same key polls again and gets the same certificate
    const again = await h.id.enroller.enroll({ token, csrDer: csr });
    assert.equal(again.status === 'issued' && again.cert.serial, r.status === 'issued' && r.cert.serial);
    assert.equal([...h.store.certificates.values()].filter((c) => c.device_id === p.deviceId).length, 1);
  });

  it('a denied request is refused on the next poll', async () => {
    const key = await deviceKey();
    const { token } = addToken(h.store, { group: 'kiosks', now: h.clock });
    const p = await h.id.enroller.enroll({ token, csrDer: await makeCsr(key) });
    assert.equal(p.status, 'pending');
    if (p.status !== 'pending') return;
    h.store.decideRequest(p.requestId, 'denied', 'bob');
    await assert.rejects(h.id.enroller.enroll({ token, csrDer: await makeCsr(key) }), code('ENROLLMENT_DENIED'));
    assert.equal(h.ofType('identity.enrollment.denied').at(-1)?.decided_by, 'bob');
    assert.equal([...h.store.certificates.values()].filter((c) => c.device_id === p.deviceId).length, 0);
  });

  it('concurrent polls of an approved request get one certificate', async () => {
    const key = await deviceKey();
    const { token } = addToken(h.store, { group: 'kiosks', now: h.clock });
    const csr = await makeCsr(key);
    const p = await h.id.enroller.enroll({ token, csrDer: csr });
    if (p.status !== 'pending') throw new Error('expected pending');
    h.store.decideRequest(p.requestId, 'approved', 'alice');
    const rs = await Promise.all([1, 2, 3].map(() => h.id.enroller.enroll({ token, csrDer: csr })));
    const serials = new Set(rs.map((r) => (r.status === 'issued' ? r.cert.serial : 'pending')));
    assert.equal(serials.size, 1);
    assert.equal([...h.store.certificates.values()].filter((c) => c.device_id === p.deviceId).length, 1);
  });
});

describe('renewal', () => {
  let h: Harness;
  before(async () => {
    h = await harness({ groups: { graceful: { cert_validity: '1h', renewal_grace: '2h' }, strict: { cert_validity: '1h' } } });
  });
  after(() => h.close());

  it('renews before expiry onto a new serial; old and new overlap until the new one is used', async () => {
    const key = await deviceKey();
    const first = await enrollOk(h, key, { group: 'strict' });
    const peer = new X509Certificate(first.cert.der);
    const newKey = await deviceKey();
    const r = await h.id.renewer.reenroll({ peerCertDer: first.cert.der, csrDer: await makeCsr(newKey, { subject: peer.subject.replace(/\n/g, ',') }) });
    assert.notEqual(r.cert.serial, first.cert.serial);
    assert.equal(r.deviceId, first.deviceId);
    const info = (serial: string) => ({ serial, deviceId: first.deviceId, notBefore: h.clock - 1000, notAfter: h.clock + 1000, chainVerified: true });
    assert.equal(h.id.directory.identify(info(first.cert.serial), h.clock).ok, true, 'old still valid');
    assert.equal(h.id.directory.identify(info(r.cert.serial), h.clock).ok, true, 'new valid');
    await h.id.directory.settled();
    const old = h.id.directory.identify(info(first.cert.serial), h.clock);
    assert.deepEqual(old, { ok: false, reason: 'certificate_superseded', deviceId: first.deviceId }, 'old superseded once the new one is used');
    assert.equal(h.store.certificates.get(first.cert.serial)?.revocation_reason, 'superseded');
    assert.deepEqual(h.ofType('identity.certificate.superseded').at(-1)?.superseded, [first.cert.serial]);
    // the superseded certificate can no longer renew
    await assert.rejects(h.id.renewer.reenroll({ peerCertDer: first.cert.der, csrDer: await makeCsr(await deviceKey(), { subject: '' }) }), code('CERTIFICATE_REVOKED'));
  });

  it('stops renewing after three unused renewals (no minting without end)', async () => {
    const a = await enrollOk(h, await deviceKey(), { group: 'strict' });
    for (let i = 0; i < 3; i++) await h.id.renewer.reenroll({ peerCertDer: a.cert.der, csrDer: await makeCsr(await deviceKey(), { subject: '' }) });
    await assert.rejects(h.id.renewer.reenroll({ peerCertDer: a.cert.der, csrDer: await makeCsr(await deviceKey(), { subject: '' }) }), code('RENEWAL_LIMIT'));
  });

  it('counts unused certificates per device: renewing with each new certificate in turn does not get past the limit', async () => {
    const a = await enrollOk(h, await deviceKey(), { group: 'strict' });
    const saved = h.clock;
    try {
      let current = a.cert.der;
      for (let i = 0; i < 3; i++) {
        h.clock += 1000; // each certificate newer than the last, as in real time
        current = (await h.id.renewer.reenroll({ peerCertDer: current, csrDer: await makeCsr(await deviceKey(), { subject: '' }) })).cert.der;
      }
      h.clock += 1000;
      await assert.rejects(h.id.renewer.reenroll({ peerCertDer: current, csrDer: await makeCsr(await deviceKey(), { subject: '' }) }), code('RENEWAL_LIMIT'));
    } finally {
      h.clock = saved;
    }
  });

  it('refuses renewal after expiry, and allows it within the group\'s grace', async () => {
    const strict = await enrollOk(h, await deviceKey(), { group: 'strict' });
    const graceful = await enrollOk(h, await deviceKey(), { group: 'graceful' });
    const saved = h.clock;
    try {
      h.clock = saved + 90 * 60_000; // 30 minutes past expiry
      await assert.rejects(h.id.renewer.reenroll({ peerCertDer: strict.cert.der, csrDer: await makeCsr(await deviceKey(), { subject: '' }) }), code('CERTIFICATE_EXPIRED'));
      const r = await h.id.renewer.reenroll({ peerCertDer: graceful.cert.der, csrDer: await makeCsr(await deviceKey(), { subject: '' }) });
      assert.equal(r.inGrace, true);
      h.clock = saved + 4 * 3_600_000; // past the 2 h grace
      await assert.rejects(h.id.renewer.reenroll({ peerCertDer: graceful.cert.der, csrDer: await makeCsr(await deviceKey(), { subject: '' }) }), code('CERTIFICATE_EXPIRED'));
    } finally {
      h.clock = saved;
    }
    assert.ok(h.ofType('identity.renewal.refused').some((e) => e.code === 'CERTIFICATE_EXPIRED' && e.serial === strict.cert.serial));
  });

  it('refuses a missing or foreign client certificate, a changed identity, and a revoked or disabled device', async () => {
    const csr = await makeCsr(await deviceKey(), { subject: '' });
    await assert.rejects(h.id.renewer.reenroll({ peerCertDer: null, csrDer: csr }), code('CLIENT_CERT_REQUIRED'));
    const other = await harness();
    try {
      const foreign = await enrollOk(other, await deviceKey());
      await assert.rejects(h.id.renewer.reenroll({ peerCertDer: foreign.cert.der, csrDer: csr }), code('CLIENT_CERT_UNTRUSTED'));
    } finally {
      await other.close();
    }
    const a = await enrollOk(h, await deviceKey(), { group: 'strict' });
    const b = await enrollOk(h, await deviceKey(), { group: 'strict' });
    await assert.rejects(h.id.renewer.reenroll({ peerCertDer: a.cert.der, csrDer: await makeCsr(await deviceKey(), { subject: `CN=${b.deviceId}` }) }), code('CSR_IDENTITY_MISMATCH'));
    await assert.rejects(h.id.renewer.reenroll({ peerCertDer: a.cert.der, csrDer: await makeCsr(await deviceKey(), { subject: '', uris: [`urn:chokepoint:device:${b.deviceId}`] }) }), code('CSR_IDENTITY_MISMATCH'));
    // SANs identical to the current certificate's are accepted
    await h.id.renewer.reenroll({ peerCertDer: a.cert.der, csrDer: await makeCsr(await deviceKey(), { subject: `CN=${a.deviceId}`, uris: [`urn:chokepoint:device:${a.deviceId}`] }) });
    // An operator changed the device's asset: the agent copies its current certificate's names
    // (RFC 7030 §4.2.2) and still renews; the new certificate carries the store's asset.
    const c = await enrollOk(h, await deviceKey(), { group: 'strict', asset: 'A-OLD' });
    const row = h.store.devices.get(c.deviceId);
    if (row) h.store.devices.set(c.deviceId, { ...row, asset_id: 'A-NEW' });
    const copied = [`urn:chokepoint:device:${c.deviceId}`, 'urn:chokepoint:asset:A-OLD'];
    const renewed = await h.id.renewer.reenroll({ peerCertDer: c.cert.der, csrDer: await makeCsr(await deviceKey(), { subject: '', uris: copied }) });
    assert.ok(new X509Certificate(renewed.cert.der).subjectAltName?.includes('urn:chokepoint:asset:A-NEW'), 'the store\'s asset');
    await assert.rejects(h.id.renewer.reenroll({ peerCertDer: c.cert.der, csrDer: await makeCsr(await deviceKey(), { subject: '', uris: [`urn:chokepoint:device:${c.deviceId}`, 'urn:chokepoint:asset:A-THIRD'] }) }), code('CSR_IDENTITY_MISMATCH'));
    h.store.setDeviceState(b.deviceId, 'disabled');
    await assert.rejects(h.id.renewer.reenroll({ peerCertDer: b.cert.der, csrDer: csr }), code('DEVICE_DISABLED'));
    h.store.setDeviceState(b.deviceId, 'revoked');
    await assert.rejects(h.id.renewer.reenroll({ peerCertDer: b.cert.der, csrDer: csr }), code('DEVICE_REVOKED'));
  });
});
