/**
 * EST (RFC 7030) with real clients over TLS on loopback: openssl makes the key and CSR, curl posts
 * it, openssl reads the PKCS#7 answer — as a device without our agent would. Renewal authenticates
 * with the client certificate curl presents. Error answers are the API envelope with the code.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { X509Certificate } from 'node:crypto';
import Fastify, { type FastifyInstance } from 'fastify';
import { estPlugin } from '../src/control/est.js';
import { addToken, harness, type Harness } from './helpers/pki.js';

interface Ran { code: number; stdout: Buffer; stderr: string }
function run(cmd: string, args: string[], input?: Buffer | string): Promise<Ran> {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    let err = '';
    p.stdout.on('data', (c: Buffer) => out.push(c));
    p.stderr.on('data', (c: Buffer) => { err += c.toString(); });
    p.on('error', reject);
    p.on('close', (code) => resolve({ code: code ?? -1, stdout: Buffer.concat(out), stderr: err }));
    // A command that never reads its stdin (openssl genpkey) may exit and close the pipe before
    // this write lands: EPIPE then is harmless, and an unhandled one failed the test at random.
    p.stdin.on('error', () => {});
    p.stdin.end(input ?? '');
  });
}
async function ok(cmd: string, args: string[], input?: Buffer | string): Promise<Buffer> {
  const r = await run(cmd, args, input);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.code}): ${r.stderr}`);
  return r.stdout;
}

let h: Harness;
let app: FastifyInstance;
let base: string;
let f: (n: string) => string;

/** curl with the CA pinned; returns status, headers and body (`-i` output split). */
async function curl(args: string[]): Promise<{ status: number; headers: string; body: Buffer }> {
  const out = await ok('curl', ['-sS', '-i', '--cacert', f('ca.pem'), ...args]);
  let s = out.toString('latin1');
  // skip interim 100-continue answers
  while (/^HTTP\/\S+ 100/.test(s)) s = s.slice(s.indexOf('\r\n\r\n') + 4);
  const end = s.indexOf('\r\n\r\n');
  const headers = s.slice(0, end);
  return { status: Number(/^HTTP\/\S+ (\d{3})/.exec(headers)?.[1]), headers, body: Buffer.from(s.slice(end + 4), 'latin1') };
}

async function newCsr(name: string, subj = '/CN=device'): Promise<void> {
  await ok('openssl', ['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', f(`${name}.key`)]);
  const der = await ok('openssl', ['req', '-new', '-key', f(`${name}.key`), '-subj', subj, '-outform', 'DER']);
  writeFileSync(f(`${name}.b64`), der.toString('base64'));
}

async function printCerts(b64body: Buffer): Promise<string> {
  const der = Buffer.from(b64body.toString('latin1').replace(/\s+/g, ''), 'base64');
  return (await ok('openssl', ['pkcs7', '-inform', 'DER', '-print_certs'], der)).toString();
}

before(async () => {
  h = await harness({ retry_after: '7s', groups: { kiosks: { require_approval: true } } });
  f = (n) => join(h.dir.path, n);
  const server = await h.id.issueServerCertificate({ names: ['localhost', '127.0.0.1'] });
  writeFileSync(f('ca.pem'), server.caPem);
  app = Fastify({
    https: { cert: server.certPem, key: server.keyPem, requestCert: true, rejectUnauthorized: false, ca: h.id.cas().trusted.map((c) => c.certPem), minVersion: 'TLSv1.2' },
  });
  await app.register(estPlugin(h.id));
  await app.listen({ host: '127.0.0.1', port: 0 });
  base = `https://127.0.0.1:${(app.server.address() as { port: number }).port}`;
});
after(async () => {
  await app.close();
  await h.close();
});

describe('EST with curl and openssl', () => {
  let deviceId: string;

  it('GET /cacerts returns the CA as base64 certs-only PKCS#7', async () => {
    const r = await curl([`${base}/.well-known/est/cacerts`]);
    assert.equal(r.status, 200);
    assert.match(r.headers, /content-type: application\/pkcs7-mime; smime-type=certs-only/i);
    const pems = await printCerts(r.body);
    const pem = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/.exec(pems)?.[0] ?? '';
    assert.equal(new X509Certificate(pem).fingerprint256, h.id.cas().active.cert.fingerprint256);
  });

  it('simpleenroll with the token as the Basic password issues a certificate openssl verifies', async () => {
    const { token } = addToken(h.store, { group: 'servers', asset: 'A-7', now: h.clock });
    await newCsr('dev');
    const r = await curl(['-u', `device:${token}`, '-H', 'Content-Type: application/pkcs10', '--data-binary', `@${f('dev.b64')}`, `${base}/.well-known/est/simpleenroll`]);
    assert.equal(r.status, 200, r.body.toString());
    assert.match(r.headers, /content-type: application\/pkcs7-mime; smime-type=certs-only/i);
    const pem = await printCerts(r.body);
    writeFileSync(f('dev.pem'), pem);
    const v = await ok('openssl', ['verify', '-CAfile', f('ca.pem'), '-purpose', 'sslclient', f('dev.pem')]);
    assert.match(v.toString(), /OK/);
    const text = (await ok('openssl', ['x509', '-in', f('dev.pem'), '-noout', '-text'])).toString();
    deviceId = /URI:urn:chokepoint:device:([0-9a-f-]+)/.exec(text)?.[1] as string;
    assert.ok(deviceId);
    assert.match(text, /URI:urn:chokepoint:asset:A-7/);
    // the same token again, with a new key: refused, as the envelope says
    await newCsr('dev2');
    const again = await curl(['-H', `Authorization: Bearer ${token}`, '-H', 'Content-Type: application/pkcs10', '--data-binary', `@${f('dev2.b64')}`, `${base}/.well-known/est/simpleenroll`]);
    assert.equal(again.status, 403);
    assert.deepEqual(JSON.parse(again.body.toString()), { code: 'TOKEN_USED', message: 'the enrollment token has no uses left', statusCode: 403 });
  });

  it('simplereenroll authenticates with the client certificate and issues a new serial', async () => {
    await newCsr('renew', `/CN=${deviceId}`);
    const r = await curl(['--cert', f('dev.pem'), '--key', f('dev.key'), '-H', 'Content-Type: application/pkcs10', '--data-binary', `@${f('renew.b64')}`, `${base}/.well-known/est/simplereenroll`]);
    assert.equal(r.status, 200, r.body.toString());
    const pem = await printCerts(r.body);
    writeFileSync(f('renew.pem'), pem);
    const oldSerial = (await ok('openssl', ['x509', '-in', f('dev.pem'), '-noout', '-serial'])).toString();
    const newSerial = (await ok('openssl', ['x509', '-in', f('renew.pem'), '-noout', '-serial'])).toString();
    assert.notEqual(newSerial, oldSerial);
    assert.match((await ok('openssl', ['x509', '-in', f('renew.pem'), '-noout', '-subject'])).toString(), new RegExp(deviceId));
    // without a client certificate: 401
    const none = await curl(['-H', 'Content-Type: application/pkcs10', '--data-binary', `@${f('renew.b64')}`, `${base}/.well-known/est/simplereenroll`]);
    assert.equal(none.status, 401);
    assert.equal(JSON.parse(none.body.toString()).code, 'CLIENT_CERT_REQUIRED');
    // a subject naming someone else: refused
    await newCsr('evil', '/CN=another-device');
    const evil = await curl(['--cert', f('dev.pem'), '--key', f('dev.key'), '-H', 'Content-Type: application/pkcs10', '--data-binary', `@${f('evil.b64')}`, `${base}/.well-known/est/simplereenroll`]);
    assert.equal(evil.status, 400);
    assert.equal(JSON.parse(evil.body.toString()).code, 'CSR_IDENTITY_MISMATCH');
  });

  it('a self-signed client certificate with a forged device URI is refused', async () => {
    await ok('openssl', ['req', '-x509', '-key', f('dev.key'), '-out', f('forged.pem'), '-subj', `/CN=${deviceId}`, '-days', '1', '-addext', `subjectAltName=URI:urn:chokepoint:device:${deviceId}`]);
    const r = await curl(['--cert', f('forged.pem'), '--key', f('dev.key'), '-H', 'Content-Type: application/pkcs10', '--data-binary', `@${f('renew.b64')}`, `${base}/.well-known/est/simplereenroll`]);
    assert.equal(r.status, 403);
    assert.equal(JSON.parse(r.body.toString()).code, 'CLIENT_CERT_UNTRUSTED');
  });

  it('a group requiring approval answers 202 with Retry-After until approved', async () => {
    const { token } = addToken(h.store, { group: 'kiosks', now: h.clock });
    await newCsr('kiosk');
    const args = ['-u', `:${token}`, '-H', 'Content-Type: application/pkcs10', '--data-binary', `@${f('kiosk.b64')}`, `${base}/.well-known/est/simpleenroll`];
    const p = await curl(args);
    assert.equal(p.status, 202);
    assert.match(p.headers, /retry-after: 7/i);
    const body = JSON.parse(p.body.toString()) as { request_id: string };
    h.store.decideRequest(body.request_id, 'approved', 'alice');
    const r = await curl(args);
    assert.equal(r.status, 200);
    assert.match(await printCerts(r.body), /BEGIN CERTIFICATE/);
  });

  it('refuses bad input with specific codes', async () => {
    const post = (extra: string[], data: string) => curl([...extra, '-H', 'Content-Type: application/pkcs10', '--data-binary', data, `${base}/.well-known/est/simpleenroll`]);
    const noToken = await post([], 'AAAA');
    assert.equal(noToken.status, 401);
    assert.match(noToken.headers, /www-authenticate: Basic/i);
    assert.equal(JSON.parse(noToken.body.toString()).code, 'TOKEN_MISSING');
    const { token } = addToken(h.store, { now: h.clock });
    assert.equal(JSON.parse((await post(['-u', `:${token}`], 'not base64!')).body.toString()).code, 'CSR_INVALID');
    assert.equal(JSON.parse((await post(['-u', `:${token}`], 'MIIB')).body.toString()).code, 'CSR_INVALID');
    const big = await post(['-u', `:${token}`], 'A'.repeat(20_000));
    assert.equal(big.status, 413);
    assert.equal(JSON.parse(big.body.toString()).code, 'CSR_TOO_LARGE');
    assert.equal(JSON.parse((await post(['-u', ':cpe_unknown'], readFileSync(f('dev2.b64'), 'utf8'))).body.toString()).code, 'TOKEN_UNKNOWN');
  });

  it('GET /crl serves DER by default and PEM on request; openssl accepts both', async () => {
    const der = await curl([`${base}/crl`]);
    assert.equal(der.status, 200);
    assert.match(der.headers, /content-type: application\/pkix-crl/i);
    assert.match((await ok('openssl', ['crl', '-inform', 'DER', '-noout', '-text'], der.body)).toString(), /Certificate Revocation List/);
    const pem = await curl([`${base}/crl?format=pem`]);
    assert.match(pem.body.toString(), /^-----BEGIN X509 CRL-----/);
    const viaAccept = await curl(['-H', 'Accept: application/x-pem-file', `${base}/crl`]);
    assert.match(viaAccept.body.toString(), /^-----BEGIN X509 CRL-----/);
    // an unknown CA id is a 404, and does not make the server build any CRL
    const published = h.ofType('identity.crl.published').length;
    const unknown = await curl([`${base}/crl?ca=not-a-ca`]);
    assert.equal(unknown.status, 404);
    assert.equal(JSON.parse(unknown.body.toString()).code, 'CA_MISSING');
    assert.equal(h.ofType('identity.crl.published').length, published);
    writeFileSync(f('crl.pem'), pem.body);
    assert.match((await ok('openssl', ['verify', '-crl_check', '-CAfile', f('ca.pem'), '-CRLfile', f('crl.pem'), f('renew.pem')])).toString(), /OK/);
  });
});
