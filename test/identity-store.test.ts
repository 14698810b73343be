/**
 * Identity on the real store (SQLite file and PostgreSQL): atomic token consumption under
 * concurrency, supersession recorded in the database, and a restart (reopening the same
 * database) that keeps every device, certificate and revocation.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { ChokepointError } from '../src/core/errors.js';
import { identitySchema } from '../src/config/identity.js';
import { EventBus } from '../src/events/bus.js';
import { createIdentity, type Identity } from '../src/control/identity-routes.js';
import { initCa } from '../src/identity/ca.js';
import { insertEnrollmentToken, revokeDeviceCertificates, updateDevice } from '../src/store/devices.js';
import type { Store } from '../src/store/open.js';
import { BACKENDS } from './helpers/store.js';
import { deviceKey, makeCsr } from './helpers/pki.js';

const peer = (serial: string, deviceId: string) => ({ serial, deviceId, notBefore: 0, notAfter: 0, chainVerified: true });

for (const make of BACKENDS) {
  const backend = make();
  describe(`identity on ${backend.name}`, () => {
    it('enrolls, races, supersedes, revokes, and keeps it all across a restart', async (t) => {
      t.after(() => backend.cleanup());
      await initCa({ dataDir: backend.dataDir });
      const config = identitySchema.parse({});
      let store: Store = await backend.open();
      let id: Identity = await createIdentity({ store, dataDir: backend.dataDir, config, bus: new EventBus() });
      try {
        const enroll = async () => {
          const { token } = await insertEnrollmentToken(store.db, { group: 'servers', assetId: 'A-1', uses: 1, ttlMs: 600_000, createdBy: 'test' });
          const r = await id.enroller.enroll({ token, csrDer: await makeCsr(await deviceKey()) });
          if (r.status !== 'issued') throw new Error('expected issued');
          return r;
        };
        const keep = await enroll();
        const revokedDevice = await enroll();
        const revokedCert = await enroll();

        // five devices race for one use: one wins, the others get TOKEN_USED, one device exists
        const { token, info } = await insertEnrollmentToken(store.db, { group: 'servers', assetId: null, uses: 1, ttlMs: 600_000, createdBy: 'test' });
        const csrs = await Promise.all([1, 2, 3, 4, 5].map(async () => makeCsr(await deviceKey())));
        const results = await Promise.allSettled(csrs.map((csrDer) => id.enroller.enroll({ token, csrDer })));
        assert.equal(results.filter((r) => r.status === 'fulfilled').length, 1);
        for (const r of results) if (r.status === 'rejected') assert.ok(r.reason instanceof ChokepointError && r.reason.code === 'TOKEN_USED', String(r.reason));
        const used = await store.db.selectFrom('enrollment_tokens').select('uses_left').where('id', '=', info.id).executeTakeFirstOrThrow();
        assert.equal(Number(used.uses_left), 0);
        const devs = await store.db.selectFrom('enrollment_requests').select('device_id').where('token_id', '=', info.id).execute();
        assert.equal(devs.length, 1);

        // renewal, then first use of the new serial supersedes the old one in the database
        const renewed = await id.renewer.reenroll({ peerCertDer: keep.cert.der, csrDer: await makeCsr(await deviceKey(), { subject: '' }) });
        assert.equal(id.directory.identify(peer(renewed.cert.serial, keep.deviceId), Date.now()).ok, true);
        await id.directory.settled();
        const old = await store.db.selectFrom('certificates').selectAll().where('serial', '=', keep.cert.serial).executeTakeFirstOrThrow();
        assert.equal(old.revocation_reason, 'superseded');

        // the management plane revokes a device and a certificate; the identity side is told
        await updateDevice(store.db, revokedDevice.deviceId, { state: 'revoked' });
        await id.deviceChanged(revokedDevice.deviceId);
        await revokeDeviceCertificates(store.db, revokedCert.deviceId, 'key_compromise');
        await id.deviceChanged(revokedCert.deviceId);
        assert.equal(id.directory.identify(peer(revokedDevice.cert.serial, revokedDevice.deviceId), Date.now()).ok, false);

        const cas = await store.db.selectFrom('cas').selectAll().execute();
        assert.deepEqual(cas.map((c) => c.state), ['active']);
        assert.equal(cas[0]?.cert_pem, id.cas().active.certPem);

        // restart: close everything, reopen the same database
        await id.close();
        await store.close();
        store = await backend.open();
        id = await createIdentity({ store, dataDir: backend.dataDir, config, bus: new EventBus() });
        const now = Date.now();
        const identify = (s: string, d: string) => id.directory.identify(peer(s, d), now);
        assert.deepEqual(identify(renewed.cert.serial, keep.deviceId), {
          ok: true, principal: { kind: 'device', deviceId: keep.deviceId, assetId: 'A-1', group: 'servers', serial: renewed.cert.serial, notAfter: renewed.cert.notAfter },
        });
        assert.deepEqual(identify(keep.cert.serial, keep.deviceId), { ok: false, reason: 'certificate_superseded', deviceId: keep.deviceId });
        assert.deepEqual(identify(revokedDevice.cert.serial, revokedDevice.deviceId), { ok: false, reason: 'device_revoked', deviceId: revokedDevice.deviceId });
        assert.deepEqual(identify(revokedCert.cert.serial, revokedCert.deviceId), { ok: false, reason: 'device_revoked', deviceId: revokedCert.deviceId });
        const crl = id.crl();
        assert.ok(crl);
        const serials = [keep.cert.serial, revokedDevice.cert.serial, revokedCert.cert.serial];
        const hexes = serials.map((s) => Buffer.from(s, 'hex'));
        for (const h of hexes) assert.ok(crl.der.includes(h), 'the CRL lists every revoked serial after the restart');
        assert.equal(crl.entries, 3);
        assert.ok(new X509Certificate(renewed.cert.der).verify(id.cas().active.cert.publicKey));
      } finally {
        await id.close();
        await store.close();
      }
    });
  });
}
