/**
 * The CA on disk: creation, key file permissions, passphrase-encrypted keys, import of an
 * intermediate under an enterprise root (made with openssl), rotation, and server certificates
 * that real TLS clients accept when they trust only the CA.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { once } from 'node:events';
import { createServer } from 'node:https';
import { request } from 'node:https';
import { X509Certificate } from 'node:crypto';
import { ChokepointError } from '../src/core/errors.js';
import { importCa, initCa, loadCaSet, rotateCa } from '../src/identity/ca.js';
import { readState } from '../src/identity/ca-files.js';
import { signDeviceCertificate, signServerCertificate } from '../src/identity/sign.js';
import { validateCsr } from '../src/identity/csr.js';
import { deviceKey, makeCsr, openssl, tempDir } from './helpers/pki.js';

const code = (c: string) => (err: unknown) => err instanceof ChokepointError && err.code === c;
const grant = { deviceId: 'dev-1', group: 'g', assetId: null, validityMs: 3_600_000 };

describe('CA files', () => {
  it('ca init writes a P-256 CA with a 0600 key, refuses a second init, and loads back', async () => {
    const d = tempDir();
    try {
      const ca = await initCa({ dataDir: d.path });
      const keyFile = join(d.path, 'ca', ca.id, 'key.pem');
      assert.equal(statSync(keyFile).mode & 0o777, 0o600);
      assert.equal(statSync(join(d.path, 'ca')).mode & 0o777, 0o700);
      const text = openssl(['x509', '-in', join(d.path, 'ca', ca.id, 'cert.pem'), '-noout', '-text']);
      assert.match(text, /ASN1 OID: prime256v1/);
      assert.match(text, /CA:TRUE/);
      assert.match(text, /Certificate Sign, CRL Sign/);
      await assert.rejects(initCa({ dataDir: d.path }), code('CA_EXISTS'));
      const set = await loadCaSet({ dataDir: d.path });
      assert.equal(set.active.fingerprint256, ca.fingerprint256);
      assert.equal(ca.fingerprint256, new X509Certificate(ca.certPem).fingerprint256.replace(/:/g, '').toLowerCase());
    } finally {
      d.cleanup();
    }
  });

  it('refuses to load a key file readable or writable by group or others', async () => {
    const d = tempDir();
    try {
      const ca = await initCa({ dataDir: d.path });
      const keyFile = join(d.path, 'ca', ca.id, 'key.pem');
      for (const mode of [0o640, 0o604, 0o620, 0o644]) {
        chmodSync(keyFile, mode);
        await assert.rejects(loadCaSet({ dataDir: d.path }), code('CA_KEY_INSECURE'), mode.toString(8));
      }
      chmodSync(keyFile, 0o600);
      await loadCaSet({ dataDir: d.path });
      await assert.rejects(loadCaSet({ dataDir: join(d.path, 'nothing') }), code('CA_MISSING'));
    } finally {
      d.cleanup();
    }
  });

  it('encrypts the key with a passphrase: missing or wrong passphrase is refused, the right one works', async () => {
    const d = tempDir();
    try {
      const ca = await initCa({ dataDir: d.path, passphrase: 'correct horse' });
      const pem = readFileSync(join(d.path, 'ca', ca.id, 'key.pem'), 'utf8');
      assert.match(pem, /^-----BEGIN ENCRYPTED PRIVATE KEY-----/);
      await assert.rejects(loadCaSet({ dataDir: d.path }), code('CA_KEY_PASSPHRASE'));
      await assert.rejects(loadCaSet({ dataDir: d.path, passphrase: 'wrong' }), code('CA_KEY_PASSPHRASE'));
      const set = await loadCaSet({ dataDir: d.path, passphrase: 'correct horse' });
      const csr = validateCsr(await makeCsr(await deviceKey()));
      const leaf = await signDeviceCertificate({ ca: set.active, grant, spkiDer: csr.spkiDer, now: Date.now() });
      assert.ok(new X509Certificate(leaf.der).verify(set.active.cert.publicKey));
    } finally {
      d.cleanup();
    }
  });

  it('imports an intermediate under an enterprise root: issued certificates verify up to the root', async () => {
    const d = tempDir();
    const w = tempDir();
    try {
      const f = (n: string) => join(w.path, n);
      openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', f('root.key'), '-out', f('root.pem'), '-subj', '/CN=Enterprise Root', '-days', '30',
        '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
      openssl(['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', f('int.key'), '-out', f('int.csr'), '-subj', '/CN=Chokepoint Intermediate']);
      writeFileSync(f('ext.cnf'), 'basicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\n');
      openssl(['x509', '-req', '-in', f('int.csr'), '-CA', f('root.pem'), '-CAkey', f('root.key'), '-CAcreateserial', '-out', f('int.pem'), '-days', '20', '-extfile', f('ext.cnf')]);
      const certPem = readFileSync(f('int.pem'), 'utf8') + readFileSync(f('root.pem'), 'utf8');
      // the wrong key is refused, a leaf (not a CA) is refused
      await assert.rejects(importCa({ dataDir: d.path, certPem, keyPem: readFileSync(f('root.key'), 'utf8') }), code('CA_KEY_MISMATCH'));
      openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', f('leaf.key'), '-out', f('leaf.pem'), '-subj', '/CN=leaf', '-addext', 'basicConstraints=CA:FALSE']);
      await assert.rejects(importCa({ dataDir: d.path, certPem: readFileSync(f('leaf.pem'), 'utf8'), keyPem: readFileSync(f('leaf.key'), 'utf8') }), code('CA_INVALID'));
      const ca = await importCa({ dataDir: d.path, certPem, keyPem: readFileSync(f('int.key'), 'utf8') });
      assert.equal(ca.chainPems.length, 1);
      const csr = validateCsr(await makeCsr(await deviceKey()));
      const leaf = await signDeviceCertificate({ ca, grant, spkiDer: csr.spkiDer, now: Date.now() });
      writeFileSync(f('dev.pem'), leaf.pem);
      assert.match(openssl(['verify', '-CAfile', f('root.pem'), '-untrusted', f('int.pem'), '-purpose', 'sslclient', f('dev.pem')]), /OK/);
    } finally {
      d.cleanup();
      w.cleanup();
    }
  });

  it('rotates: stage a next CA (trusted, not issuing), promote it (old one retired but trusted), drop the retired', async () => {
    const d = tempDir();
    try {
      const first = await initCa({ dataDir: d.path });
      await assert.rejects(rotateCa({ dataDir: d.path, step: 'promote' }), code('CA_ROTATION'));
      await rotateCa({ dataDir: d.path, step: 'stage' });
      await assert.rejects(rotateCa({ dataDir: d.path, step: 'stage' }), code('CA_ROTATION'));
      let set = await loadCaSet({ dataDir: d.path });
      assert.equal(set.active.id, first.id);
      assert.ok(set.next);
      assert.equal(set.trusted.length, 2);
      const nextId = set.next.id;
      await rotateCa({ dataDir: d.path, step: 'promote' });
      set = await loadCaSet({ dataDir: d.path });
      assert.equal(set.active.id, nextId);
      assert.deepEqual(set.retired.map((c) => c.id), [first.id]);
      await rotateCa({ dataDir: d.path, step: 'drop' });
      set = await loadCaSet({ dataDir: d.path });
      assert.deepEqual(set.trusted.map((c) => c.id), [nextId]);
      assert.deepEqual(readState(d.path).cas.map((c) => c.state), ['active']);
    } finally {
      d.cleanup();
    }
  });
});

describe('server certificates', () => {
  it('a client that trusts only the CA connects to a listener using one (DNS and IP names)', async () => {
    const d = tempDir();
    try {
      const ca = await initCa({ dataDir: d.path });
      const s = await signServerCertificate({ ca, names: ['localhost', '127.0.0.1'] });
      const text = openssl(['x509', '-noout', '-text'], s.certPem);
      assert.match(text, /DNS:localhost, IP Address:127\.0\.0\.1/);
      assert.match(text, /TLS Web Server Authentication/);
      const server = createServer({ cert: s.certPem, key: s.keyPem }, (_req, res) => res.end('hello'));
      server.listen(0, '127.0.0.1');
      await once(server, 'listening');
      const port = (server.address() as { port: number }).port;
      try {
        for (const host of ['127.0.0.1', 'localhost']) {
          const body = await new Promise<string>((resolve, reject) => {
            const req = request({ host: '127.0.0.1', servername: host === 'localhost' ? 'localhost' : undefined, port, ca: s.caPem, path: '/' }, (res) => {
              let b = '';
              res.on('data', (c) => { b += c; });
              res.on('end', () => resolve(b));
            });
            req.on('error', reject);
            req.end();
          });
          assert.equal(body, 'hello');
        }
      } finally {
        server.close();
      }
    } finally {
      d.cleanup();
    }
  });
});
