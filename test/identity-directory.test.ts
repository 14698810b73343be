/**
 * The in-memory device directory the gateway consults: identify() for every deny reason,
 * onRevoke on revocation and disable, refresh after store changes; and the CRL built from it,
 * read and enforced by openssl.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { PeerCertificateInfo } from '../src/core/principal.js';
import { EventBus } from '../src/events/bus.js';
import { IdentityDirectory } from '../src/identity/directory.js';
import { MemoryIdentityStore } from '../src/identity/memory-store.js';
import { addToken, deviceKey, harness, makeCsr, openssl, type Harness } from './helpers/pki.js';

async function enroll(h: Harness, group = 'servers', asset: string | null = null) {
  const { token } = addToken(h.store, { group, asset, now: h.clock });
  const r = await h.id.enroller.enroll({ token, csrDer: await makeCsr(await deviceKey()) });
  if (r.status !== 'issued') throw new Error('expected issued');
  return r;
}

describe('IdentityDirectory.identify', () => {
  let h: Harness;
  before(async () => {
    h = await harness({ groups: { kiosks: { require_approval: true } } });
  });
  after(() => h.close());

  const peer = (serial: string, deviceId: string | null, chainVerified = true): PeerCertificateInfo => ({ serial, deviceId, notBefore: 0, notAfter: 0, chainVerified });

  it('maps an active device\'s certificate to its principal (group and asset from the store)', async () => {
    const r = await enroll(h, 'servers', 'A-9');
    const res = h.id.directory.identify(peer(r.cert.serial, r.deviceId), h.clock);
    assert.deepEqual(res, { ok: true, principal: { kind: 'device', deviceId: r.deviceId, assetId: 'A-9', group: 'servers', serial: r.cert.serial, notAfter: r.cert.notAfter } });
  });

  it('denies with the reason for each state', async () => {
    const r = await enroll(h);
    const id = r.deviceId;
    const s = r.cert.serial;
    assert.deepEqual(h.id.directory.identify(peer(s, id, false), h.clock), { ok: false, reason: 'certificate_invalid', deviceId: null });
    assert.deepEqual(h.id.directory.identify(peer('4abc', id), h.clock), { ok: false, reason: 'device_unknown', deviceId: id });
    assert.deepEqual(h.id.directory.identify(peer(s, 'someone-else'), h.clock), { ok: false, reason: 'certificate_invalid', deviceId: id });
    assert.equal((h.id.directory.identify(peer(s, id), r.cert.notAfter + 1) as { reason: string }).reason, 'certificate_expired');
    assert.equal((h.id.directory.identify(peer(s, id), h.clock - 10 * 60_000) as { reason: string }).reason, 'certificate_not_yet_valid');
    h.store.setDeviceState(id, 'disabled');
    await h.id.deviceChanged(id);
    assert.equal((h.id.directory.identify(peer(s, id), h.clock) as { reason: string }).reason, 'device_disabled');
    h.store.setDeviceState(id, 'active');
    await h.id.deviceChanged(id);
    assert.equal(h.id.directory.identify(peer(s, id), h.clock).ok, true, 'enable restores it');
    h.store.revokeCertificate(s, 'key_compromise');
    await h.id.deviceChanged(id);
    assert.equal((h.id.directory.identify(peer(s, id), h.clock) as { reason: string }).reason, 'device_revoked');
    h.store.setDeviceState(id, 'revoked');
    await h.id.deviceChanged(id);
    assert.equal((h.id.directory.identify(peer(s, id), h.clock) as { reason: string }).reason, 'device_revoked');
  });

  it('a pending device is device_pending', async () => {
    const r = await enroll(h);
    h.store.setDeviceState(r.deviceId, 'pending');
    await h.id.directory.refresh();
    assert.equal((h.id.directory.identify(peer(r.cert.serial, r.deviceId), h.clock) as { reason: string }).reason, 'device_pending');
  });

  it('fires onRevoke once per revocation, disable and serial revocation, not for unrelated changes', async () => {
    const a = await enroll(h);
    const b = await enroll(h);
    const c = await enroll(h);
    const seen: [string, string | null][] = [];
    const off = h.id.directory.onRevoke((d, s) => seen.push([d, s]));
    h.store.setDeviceState(a.deviceId, 'revoked');
    await h.id.deviceChanged(a.deviceId);
    await h.id.deviceChanged(a.deviceId); // no second fire for the same state
    h.store.setDeviceState(b.deviceId, 'disabled');
    await h.id.directory.refresh(); // a full refresh finds it too
    h.store.revokeCertificate(c.cert.serial, 'key_compromise');
    await h.id.deviceChanged(c.deviceId);
    off();
    h.store.setDeviceState(c.deviceId, 'revoked');
    await h.id.deviceChanged(c.deviceId);
    assert.deepEqual(seen, [[a.deviceId, null], [b.deviceId, null], [c.deviceId, c.cert.serial]]);
    assert.ok(h.ofType('identity.device.revoked').some((e) => e.device_id === b.deviceId && e.state === 'disabled'));
  });
});

describe('IdentityDirectory.soonestDeviceExpiry', () => {
  it('is the nearest notAfter among certificates that active devices can still use', async () => {
    const h = await harness({ groups: { short: { cert_validity: '1h' }, long: { cert_validity: '2d' } } });
    try {
      assert.equal(h.id.directory.soonestDeviceExpiry(h.clock), null, 'no devices: no horizon');
      const short = await enroll(h, 'short');
      const long = await enroll(h, 'long');
      assert.ok(short.cert.notAfter < long.cert.notAfter);
      assert.equal(h.id.directory.soonestDeviceExpiry(h.clock), short.cert.notAfter);
      // A disabled device's certificate no longer counts.
      h.store.setDeviceState(short.deviceId, 'disabled');
      await h.id.deviceChanged(short.deviceId);
      assert.equal(h.id.directory.soonestDeviceExpiry(h.clock), long.cert.notAfter);
      // Nor does a revoked serial, nor one past its notAfter.
      h.store.setDeviceState(short.deviceId, 'active');
      await h.id.deviceChanged(short.deviceId);
      assert.equal(h.id.directory.soonestDeviceExpiry(short.cert.notAfter + 1), long.cert.notAfter);
      h.store.revokeCertificate(long.cert.serial, 'key_compromise');
      await h.id.deviceChanged(long.deviceId);
      assert.equal(h.id.directory.soonestDeviceExpiry(short.cert.notAfter + 1), null);
    } finally {
      await h.close();
    }
  });
});

describe('periodic reload', () => {
  it('picks up a revocation made by someone else (another gateway, a restore) and fires onRevoke', async () => {
    const h = await harness({}, { refreshIntervalMs: 50 });
    try {
      const r = await enroll(h);
      const fired = new Promise<string>((resolve) => h.id.directory.onRevoke((d) => resolve(d)));
      h.store.setDeviceState(r.deviceId, 'revoked'); // straight in the store: nobody calls deviceChanged
      // The reload timer is unref'd (it must not keep a process alive): hold the loop open here,
      // and give up after 10 s rather than hang.
      let giveUp: NodeJS.Timeout | undefined;
      const timeout = new Promise<string>((_, reject) => { giveUp = setTimeout(() => reject(new Error('no reload within 10 s')), 10_000); });
      try {
        assert.equal(await Promise.race([fired, timeout]), r.deviceId);
      } finally {
        clearTimeout(giveUp);
      }
      // reloads that find nothing new do not republish the CRL
      await new Promise((r) => setTimeout(r, 200)); // let the revocation's CRL go out
      const published = h.ofType('identity.crl.published').length;
      await new Promise((r) => setTimeout(r, 400)); // several 50 ms reloads
      assert.equal(h.ofType('identity.crl.published').length, published);
      assert.equal((h.id.directory.identify({ serial: r.cert.serial, deviceId: r.deviceId, notBefore: 0, notAfter: 0, chainVerified: true }, h.clock) as { reason: string }).reason, 'device_revoked');
    } finally {
      await h.close();
    }
  });
});

describe('loads that finish out of order', () => {
  // A full reload reads every device and certificate; on PostgreSQL with a large table that takes
  // a while. A revocation's own reload (refreshDevice) landing in the meantime used to be
  // overwritten by the older snapshot: the device was admitted again, and left out of the CRL,
  // until the next reload a minute later.
  function slowStore() {
    const store = new MemoryIdentityStore();
    const now = Date.now();
    store.devices.set('dev1', { id: 'dev1', group_name: 'servers', asset_id: null, tags: [], state: 'active', created_at: now, updated_at: now, last_seen_at: null });
    store.certificates.set('40aa', { serial: '40aa', device_id: 'dev1', ca_id: 'ca', spki_sha256: 'x', not_before: now - 1000, not_after: now + 3_600_000, issued_at: now, first_used_at: now, revoked_at: null, revocation_reason: null, pem: '' });
    const gates: (() => void)[] = [];
    let hold = false;
    // The snapshot is taken when the read starts, as a database read is; the answer waits for a gate.
    const listDevices = store.listDevices.bind(store);
    const listCertificates = store.listCertificates.bind(store);
    const held = <T>(snapshot: Promise<T>) => (hold ? snapshot.then((v) => new Promise<T>((r) => gates.push(() => r(v)))) : snapshot);
    store.listDevices = () => held(listDevices());
    store.listCertificates = () => held(listCertificates());
    const peer = { serial: '40aa', deviceId: 'dev1', notBefore: now - 1000, notAfter: now + 3_600_000, chainVerified: true };
    return { store, peer, holdReads: (v: boolean) => { hold = v; }, release: () => { for (const g of gates.splice(0)) g(); } };
  }

  it('a periodic reload that began before a revocation does not undo it', async () => {
    const { store, peer, holdReads, release } = slowStore();
    const dir = new IdentityDirectory({ store, bus: new EventBus() });
    await dir.refresh();
    const cut: string[] = [];
    dir.onRevoke((id) => cut.push(id));
    holdReads(true);
    const periodic = dir.refresh(); // its snapshot: dev1 active
    holdReads(false);
    store.setDeviceState('dev1', 'revoked'); // the revoke route commits
    await dir.refreshDevice('dev1'); // and reloads the device: tunnels cut
    assert.deepEqual(cut, ['dev1']);
    release();
    await periodic; // the older snapshot lands
    assert.equal((dir.identify(peer, Date.now()) as { reason?: string }).reason, 'device_revoked');
    assert.ok(dir.revocationEntries('ca', Date.now()).some((e) => e.serial === '40aa'), 'still in the CRL');
    await dir.refresh(); // a reload that began after the revocation agrees, and fires nothing more
    assert.equal((dir.identify(peer, Date.now()) as { reason?: string }).reason, 'device_revoked');
    assert.deepEqual(cut, ['dev1']);
  });

  it('an older full reload landing after a newer one is dropped', async () => {
    const { store, peer, holdReads, release } = slowStore();
    const dir = new IdentityDirectory({ store, bus: new EventBus() });
    await dir.refresh();
    holdReads(true);
    const old = dir.refresh(); // snapshot: active
    holdReads(false);
    store.setDeviceState('dev1', 'disabled');
    await dir.refresh(); // snapshot: disabled, lands first
    release();
    await old;
    assert.equal((dir.identify(peer, Date.now()) as { reason?: string }).reason, 'device_disabled');
  });
});

describe('CRL', () => {
  let h: Harness;
  before(async () => {
    h = await harness();
  });
  after(() => h.close());

  it('lists revoked serials and the certificates of revoked and disabled devices; openssl reads and enforces it', async () => {
    const good = await enroll(h);
    const revokedCert = await enroll(h);
    const revokedDevice = await enroll(h);
    const disabled = await enroll(h);
    h.store.revokeCertificate(revokedCert.cert.serial, 'key_compromise', h.clock);
    h.store.setDeviceState(revokedDevice.deviceId, 'revoked', h.clock);
    h.store.setDeviceState(disabled.deviceId, 'disabled', h.clock);
    await h.id.directory.refresh();
    h.id.crls.regenerate();
    const crl = h.id.crl();
    assert.ok(crl);
    const dir = h.dir.path;
    writeFileSync(join(dir, 'crl.der'), crl.der);
    writeFileSync(join(dir, 'crl.pem'), crl.pem);
    writeFileSync(join(dir, 'ca.pem'), h.id.cas().active.certPem);
    assert.match(crl.pem, /^-----BEGIN X509 CRL-----\n/);
    const text = openssl(['crl', '-inform', 'DER', '-in', join(dir, 'crl.der'), '-noout', '-text']);
    assert.match(text, /Version 2/);
    assert.match(text, /X509v3 CRL Number/);
    assert.match(text, /X509v3 Authority Key Identifier/);
    assert.match(text, /Next Update: /);
    for (const r of [revokedCert, revokedDevice, disabled]) assert.match(text, new RegExp(`Serial Number: ${r.cert.serial.toUpperCase()}`));
    assert.doesNotMatch(text, new RegExp(good.cert.serial.toUpperCase()));
    assert.match(text, /Key Compromise/);
    assert.match(text, /Privilege Withdrawn/);
    assert.match(text, /Certificate Hold/);
    // the CRL's signature verifies under the CA
    assert.match(openssl(['crl', '-in', join(dir, 'crl.pem'), '-noout', '-CAfile', join(dir, 'ca.pem')]) + '', /^$/);
    const check = (r: { cert: { pem: string; serial: string } }) => {
      const f = join(dir, `${r.cert.serial}.pem`);
      writeFileSync(f, r.cert.pem);
      try {
        return openssl(['verify', '-crl_check', '-CAfile', join(dir, 'ca.pem'), '-CRLfile', join(dir, 'crl.pem'), f]).trim();
      } catch (err) {
        return String((err as { stdout?: string; stderr?: string }).stdout ?? '') + String((err as { stderr?: string }).stderr ?? '');
      }
    };
    assert.match(check(good), /: OK$/);
    assert.match(check(revokedCert), /certificate revoked/);
    assert.match(check(revokedDevice), /certificate revoked/);
    assert.match(check(disabled), /certificate revoked/);
  });

  it('is regenerated on a change with a larger CRL number', async () => {
    const before = h.id.crl();
    const r = await enroll(h);
    h.store.setDeviceState(r.deviceId, 'revoked', h.clock);
    h.clock += 1000;
    await h.id.deviceChanged(r.deviceId);
    await new Promise((res) => setTimeout(res, 120)); // the publisher coalesces bursts of changes (50 ms)
    const after = h.id.crl();
    assert.ok(before && after && after.number > before.number);
    assert.ok(h.ofType('identity.crl.published').length >= 2);
  });
});
