/**
 * A small EST server (RFC 7030) for the agent tests, written from the RFC: a CA made for this
 * run, /cacerts, /simpleenroll with a bearer token (issue, pending N times, or deny) and
 * /simplereenroll over mTLS. It records what it received so tests can assert the token and
 * key handling. The real control-plane EST endpoint replaces it in the end-to-end test once
 * it exists.
 */
import 'reflect-metadata';
import { randomBytes, webcrypto } from 'node:crypto';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import * as x509 from '@peculiar/x509';
import { base64Lines, certsOnly } from '../../src/identity/pkcs7.js';

x509.cryptoProvider.set(webcrypto as unknown as Crypto);
const alg = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
const DAY = 86_400_000;

export interface TestPki {
  readonly cert: x509.X509Certificate;
  readonly certPem: string;
  readonly fingerprint: string;
  sign(o: { publicKey: x509.PublicKey | CryptoKey; subject: string; sans?: x509.JsonGeneralNames; server?: boolean; notBefore?: Date; notAfter?: Date }): Promise<x509.X509Certificate>;
  serverPair(names: string[]): Promise<{ certPem: string; keyPem: string }>;
}

function serial(): string {
  const b = randomBytes(16);
  b[0] = ((b[0] as number) & 0x7f) | 0x01;
  return b.toString('hex');
}

export async function makePki(name = 'Chokepoint agent test CA'): Promise<TestPki> {
  const keys = await webcrypto.subtle.generateKey(alg, true, ['sign', 'verify']) as unknown as CryptoKeyPair;
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(), name: `CN=${name}`, notBefore: new Date(Date.now() - DAY), notAfter: new Date(Date.now() + 30 * DAY),
    signingAlgorithm: alg, keys,
    extensions: [new x509.BasicConstraintsExtension(true, 0, true), new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true)],
  });
  const sign: TestPki['sign'] = async (o) => x509.X509CertificateGenerator.create({
    serialNumber: serial(), subject: o.subject, issuer: cert.subject,
    notBefore: o.notBefore ?? new Date(Date.now() - 60_000), notAfter: o.notAfter ?? new Date(Date.now() + DAY),
    signingAlgorithm: alg, publicKey: o.publicKey, signingKey: keys.privateKey,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([o.server ? x509.ExtendedKeyUsage.serverAuth : x509.ExtendedKeyUsage.clientAuth]),
      ...(o.sans ? [new x509.SubjectAlternativeNameExtension(o.sans)] : []),
    ],
  });
  return {
    cert, certPem: cert.toString('pem'), fingerprint: Buffer.from(await cert.getThumbprint('SHA-256')).toString('hex'), sign,
    async serverPair(names) {
      const k = await webcrypto.subtle.generateKey(alg, true, ['sign', 'verify']) as unknown as CryptoKeyPair;
      const sans = names.map((n) => (/^[0-9.]+$/.test(n) ? { type: 'ip' as const, value: n } : { type: 'dns' as const, value: n }));
      const c = await sign({ publicKey: k.publicKey, subject: 'CN=chokepoint control', sans, server: true });
      const der = await webcrypto.subtle.exportKey('pkcs8', k.privateKey as unknown as webcrypto.CryptoKey);
      return { certPem: c.toString('pem'), keyPem: x509.PemConverter.encode(der, 'PRIVATE KEY') };
    },
  };
}

export interface EstServer {
  readonly url: string;
  readonly pki: TestPki;
  /** Every Authorization header and CSR key (SPKI hex) seen on /simpleenroll. */
  readonly seen: { auth: string | undefined; spki: string; path: string }[];
  /** issue | deny | pending (answers 202 `pendingPolls` times first) | down (503) */
  mode: 'issue' | 'deny' | 'pending' | 'down';
  pendingPolls: number;
  /** Validity of issued certificates (ms). */
  lifetimeMs: number;
  /** Called with each issued certificate (e.g. to add it to a device directory). */
  onIssue: ((c: x509.X509Certificate, deviceId: string) => void) | null;
  close(): Promise<void>;
}

export async function startEstServer(o: { pki?: TestPki; tlsPki?: TestPki; token?: string } = {}): Promise<EstServer> {
  const pki = o.pki ?? await makePki();
  const tls = await (o.tlsPki ?? pki).serverPair(['localhost', '127.0.0.1']);
  const token = o.token ?? 'tok-123';
  let n = 0;
  const st: EstServer = {
    url: '', pki, seen: [], mode: 'issue', pendingPolls: 0, lifetimeMs: DAY, onIssue: null,
    close: async () => { server.closeAllConnections(); await new Promise<void>((r) => server.close(() => r())); },
  };
  const server: Server = createServer({ cert: tls.certPem, key: tls.keyPem, requestCert: true, rejectUnauthorized: false, ca: pki.certPem }, (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', async () => {
      const answer = (status: number, body: string, headers: Record<string, string> = {}): void => { res.writeHead(status, headers); res.end(body); };
      try {
        if (st.mode === 'down') return answer(503, 'maintenance', { 'retry-after': '1' });
        const p = req.url ?? '';
        if (req.method === 'GET' && p === '/.well-known/est/cacerts') {
          return answer(200, base64Lines(certsOnly([new Uint8Array(pki.cert.rawData)])), { 'content-type': 'application/pkcs7-mime', 'content-transfer-encoding': 'base64' });
        }
        const csr = new x509.Pkcs10CertificateRequest(Buffer.from(Buffer.concat(chunks).toString('utf8'), 'base64'));
        if (!(await csr.verify())) return answer(400, 'bad CSR signature');
        const spki = Buffer.from(csr.publicKey.rawData).toString('hex');
        if (req.method === 'POST' && p === '/.well-known/est/simpleenroll') {
          st.seen.push({ auth: req.headers.authorization, spki, path: p });
          if (req.headers.authorization !== `Bearer ${token}`) return answer(401, 'token refused');
          if (st.mode === 'deny') return answer(403, 'enrollment denied by an administrator');
          if (st.mode === 'pending' && st.pendingPolls > 0) { st.pendingPolls--; return answer(202, '', { 'retry-after': '1' }); }
          const id = `dev-${++n}`;
          const c = await pki.sign({ publicKey: csr.publicKey, subject: `CN=${id}`, sans: [{ type: 'url', value: `urn:chokepoint:device:${id}` }], notAfter: new Date(Date.now() + st.lifetimeMs) });
          st.onIssue?.(c, id);
          return answer(200, base64Lines(certsOnly([new Uint8Array(c.rawData)])), { 'content-type': 'application/pkcs7-mime; smime-type=certs-only' });
        }
        if (req.method === 'POST' && p === '/.well-known/est/simplereenroll') {
          const sock = req.socket as TLSSocket;
          if (!sock.authorized) return answer(401, `client certificate required: ${String(sock.authorizationError)}`);
          const cur = new x509.X509Certificate(sock.getPeerCertificate().raw);
          if (csr.subject !== cur.subject) return answer(400, 'subject differs from the current certificate (RFC 7030 §4.2.2)');
          const uri = cur.getExtension(x509.SubjectAlternativeNameExtension)?.names.items.find((i) => i.type === 'url')?.value ?? '';
          const c = await pki.sign({ publicKey: csr.publicKey, subject: cur.subject, sans: [{ type: 'url', value: uri }], notAfter: new Date(Date.now() + st.lifetimeMs) });
          st.onIssue?.(c, uri.replace('urn:chokepoint:device:', ''));
          return answer(200, base64Lines(certsOnly([new Uint8Array(c.rawData)])), { 'content-type': 'application/pkcs7-mime; smime-type=certs-only' });
        }
        answer(404, 'not found');
      } catch (e) {
        answer(400, (e as Error).message);
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  (st as { url: string }).url = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return st;
}
