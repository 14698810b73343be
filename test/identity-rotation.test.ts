/**
 * CA rotation with a running identity service: a staged CA is trusted but does not issue; after
 * promotion devices renew onto it with their old-CA certificate; each CA publishes its own CRL;
 * once the retired CA is dropped its certificates are no longer accepted.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { ChokepointError } from '../src/core/errors.js';
import { rotateCa } from '../src/identity/ca.js';
import { addToken, deviceKey, harness, makeCsr } from './helpers/pki.js';

const code = (c: string) => (err: unknown) => err instanceof ChokepointError && err.code === c;

describe('CA rotation', () => {
  it('stage, promote, renew onto the new CA, per-CA CRLs, drop', async (t) => {
    const h = await harness();
    t.after(() => h.close());
    const enroll = async () => {
      const { token } = addToken(h.store, { now: h.clock });
      const r = await h.id.enroller.enroll({ token, csrDer: await makeCsr(await deviceKey()) });
      if (r.status !== 'issued') throw new Error('expected issued');
      return r;
    };
    const oldCa = h.id.cas().active;
    const a = await enroll();

    await rotateCa({ dataDir: h.dir.path, step: 'stage' });
    await h.id.reloadCas();
    const next = h.id.cas().next;
    assert.ok(next);
    assert.equal(h.id.cas().trusted.length, 2);
    const b = await enroll();
    assert.ok(new X509Certificate(b.cert.der).checkIssued(oldCa.cert), 'a staged CA does not issue');
    assert.deepEqual((await h.store.listCas()).map((c) => c.state).sort(), ['active', 'next']);

    await rotateCa({ dataDir: h.dir.path, step: 'promote' });
    await h.id.reloadCas();
    assert.equal(h.id.cas().active.id, next.id);
    const renewed = await h.id.renewer.reenroll({ peerCertDer: a.cert.der, csrDer: await makeCsr(await deviceKey(), { subject: '' }) });
    const rc = new X509Certificate(renewed.cert.der);
    assert.ok(rc.checkIssued(next.cert) && rc.verify(next.cert.publicKey), 'renewed onto the new CA');
    assert.equal(h.store.certificates.get(renewed.cert.serial)?.ca_id, next.id);

    h.store.revokeCertificate(b.cert.serial, 'key_compromise', h.clock);
    await h.id.deviceChanged(b.deviceId);
    h.id.crls.regenerate();
    const oldCrl = h.id.crl(oldCa.id);
    const newCrl = h.id.crl();
    assert.ok(oldCrl && newCrl);
    assert.equal(oldCrl.entries, 1, 'the old CA lists its own revoked certificate');
    assert.equal(newCrl.entries, 0);
    assert.ok(oldCrl.der.includes(Buffer.from(b.cert.serial, 'hex')));

    await rotateCa({ dataDir: h.dir.path, step: 'drop' });
    await h.id.reloadCas();
    assert.equal(h.id.cas().trusted.length, 1);
    await assert.rejects(h.id.renewer.reenroll({ peerCertDer: a.cert.der, csrDer: await makeCsr(await deviceKey(), { subject: '' }) }), code('CLIENT_CERT_UNTRUSTED'));
    assert.equal((await h.store.listCas()).find((c) => c.id === oldCa.id)?.state, 'retired');
  });
});
