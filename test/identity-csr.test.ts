/**
 * Issuance step 1 on its own: untrusted PKCS#10 DER, with size limits, key type checks and proof
 * of possession. Adversarial inputs are first-class: every one gets its own code, none crashes.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { ChokepointError } from '../src/core/errors.js';
import { children, raw, readTop, seq, type Tlv } from '../src/identity/der.js';
import { decodeBase64Body, MAX_CSR_DER, validateCsr } from '../src/identity/csr.js';
import { deviceKey, makeCsr, tamperSignature, tempDir } from './helpers/pki.js';

const code = (c: string) => (err: unknown) => err instanceof ChokepointError && err.code === c;

describe('validateCsr', () => {
  it('accepts a P-256 request and reads its key, subject and SANs', async () => {
    const csr = validateCsr(await makeCsr(await deviceKey(), { subject: 'CN=box', uris: ['urn:chokepoint:asset:A1'], dns: ['box.example'] }));
    assert.equal(csr.subject, 'CN=box');
    assert.deepEqual(csr.sanUris, ['urn:chokepoint:asset:A1']);
    assert.deepEqual(csr.sanOther, ['dns:box.example']);
    assert.match(csr.spkiSha256, /^[0-9a-f]{64}$/);
  });

  it('refuses RSA, P-384 and Ed25519 keys with distinct codes', async () => {
    assert.throws(() => validateCsr(Buffer.alloc(0)), code('CSR_INVALID'));
    assert.throws(() => validateCsr(Buffer.from([0x30, 0x00])), code('CSR_INVALID'));
    const rsa = await makeCsr(await deviceKey('rsa'));
    assert.throws(() => validateCsr(rsa), code('CSR_KEY_RSA'));
    const p384 = await makeCsr(await deviceKey('p384'));
    assert.throws(() => validateCsr(p384), code('CSR_KEY_CURVE'));
    const ed = await makeCsr(await deviceKey('ed25519'));
    assert.throws(() => validateCsr(ed), code('CSR_KEY_UNSUPPORTED'));
  });

  it('refuses a request whose signature does not verify (no proof of possession)', async () => {
    const tampered = tamperSignature(await makeCsr(await deviceKey()));
    assert.throws(() => validateCsr(tampered), code('CSR_BAD_SIGNATURE'));
  });

  it('refuses a request for one key signed by another key', async () => {
    // Splice: the CertificationRequestInfo of request A with the signature of request B.
    const a = await makeCsr(await deviceKey());
    const b = await makeCsr(await deviceKey());
    const [criA] = children(a, readTop(a));
    const [, algB, sigB] = children(b, readTop(b));
    const spliced = seq(raw(a, criA as Tlv), raw(b, algB as Tlv), raw(b, sigB as Tlv));
    assert.throws(() => validateCsr(spliced), code('CSR_BAD_SIGNATURE'));
  });

  it('refuses an EC key with explicit curve parameters (CVE-2020-0601 style)', () => {
    const dir = tempDir();
    try {
      const key = join(dir.path, 'k.pem');
      execFileSync('openssl', ['ecparam', '-name', 'prime256v1', '-param_enc', 'explicit', '-genkey', '-noout', '-out', key]);
      const der = execFileSync('openssl', ['req', '-new', '-key', key, '-subj', '/CN=x', '-outform', 'DER']);
      assert.throws(() => validateCsr(der), code('CSR_KEY_CURVE'));
    } finally {
      dir.cleanup();
    }
  });

  it('refuses oversized, truncated, trailing-garbage and lying-length DER', async () => {
    const good = await makeCsr(await deviceKey());
    assert.throws(() => validateCsr(Buffer.alloc(MAX_CSR_DER + 1, 0x30)), code('CSR_TOO_LARGE'));
    assert.throws(() => validateCsr(good.subarray(0, good.length - 1)), code('CSR_INVALID'));
    assert.throws(() => validateCsr(Buffer.concat([good, Buffer.from([0])])), code('CSR_INVALID'));
    const lying = Buffer.from(good);
    lying[1] = 0x84; // long form with 4 length bytes claiming ~2 GiB
    assert.throws(() => validateCsr(lying), code('CSR_INVALID'));
    assert.throws(() => validateCsr(Buffer.from([0x30, 0x80, 0x00, 0x00])), code('CSR_INVALID')); // BER indefinite length
  });

  it('survives random and mutated input with a ChokepointError only', async () => {
    const good = await makeCsr(await deviceKey());
    for (let i = 0; i < 2000; i++) {
      let input: Buffer;
      if (i % 2 === 0) input = randomBytes(1 + (i % 400));
      else {
        input = Buffer.from(good);
        for (let k = 0; k < 1 + (i % 4); k++) input[(i * 7919 + k * 104729) % input.length] = (i * 31 + k) & 0xff;
      }
      try {
        validateCsr(input);
      } catch (err) {
        assert.ok(err instanceof ChokepointError, `input ${input.toString('hex')} threw ${String(err)}`);
      }
    }
  });
});

describe('decodeBase64Body', () => {
  it('accepts base64 with line breaks and PEM armour, refuses the rest', async () => {
    const der = await makeCsr(await deviceKey());
    const b64 = der.toString('base64');
    assert.deepEqual(decodeBase64Body(b64.replace(/(.{64})/g, '$1\r\n')), der);
    assert.deepEqual(decodeBase64Body(`-----BEGIN CERTIFICATE REQUEST-----\n${b64}\n-----END CERTIFICATE REQUEST-----\n`), der);
    assert.throws(() => decodeBase64Body('not base64!'), code('CSR_INVALID'));
    assert.throws(() => decodeBase64Body(''), code('CSR_INVALID'));
    assert.throws(() => decodeBase64Body('A'.repeat(20_000)), code('CSR_TOO_LARGE'));
  });
});
