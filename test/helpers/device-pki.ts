/**
 * A device PKI made per test run with @peculiar/x509 (never a checked-in key): a CA, a server
 * certificate for the gateway's TLS listener, and device certificates with any validity,
 * serial and SAN — including the broken ones the gateway must refuse.
 */
import 'reflect-metadata';
import { webcrypto, randomBytes } from 'node:crypto';
import * as x509 from '@peculiar/x509';

x509.cryptoProvider.set(webcrypto as unknown as Crypto);

const alg = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
const DAY = 86_400_000;

export interface Issued {
  readonly certPem: string;
  readonly keyPem: string;
  /** Lowercase hex, no leading zero bytes. */
  readonly serial: string;
}

export interface TestCa {
  readonly certPem: string;
  issueDevice(o: { deviceId?: string | null; assetId?: string; notBefore?: Date; notAfter?: Date; extraUris?: string[]; serial?: string }): Promise<Issued>;
  issueServer(names: string[]): Promise<Issued>;
  /** A CA below this one (pathlen 0), e.g. the device CA imported under an enterprise root. */
  issueIntermediate(name: string): Promise<TestCa>;
}

async function keyPem(k: CryptoKey): Promise<string> {
  const der = await webcrypto.subtle.exportKey('pkcs8', k as unknown as webcrypto.CryptoKey);
  return x509.PemConverter.encode(der, 'PRIVATE KEY');
}

function newSerial(): string {
  const b = randomBytes(16);
  b[0] = (b[0] as number) & 0x7f | 0x01; // positive and no leading zero byte (RFC 5280 §4.1.2.2)
  return b.toString('hex');
}

export async function makeTestCa(name = 'Chokepoint test device CA', parent?: { cert: x509.X509Certificate; key: CryptoKey }): Promise<TestCa> {
  const caKeys = await webcrypto.subtle.generateKey(alg, true, ['sign', 'verify']) as unknown as CryptoKeyPair;
  const caExtensions = [
    new x509.BasicConstraintsExtension(true, parent ? 0 : 1, true),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
    await x509.SubjectKeyIdentifierExtension.create(caKeys.publicKey),
  ];
  const validity = { notBefore: new Date(Date.now() - DAY), notAfter: new Date(Date.now() + 30 * DAY) };
  const ca = parent
    ? await x509.X509CertificateGenerator.create({
      serialNumber: newSerial(), subject: `CN=${name}`, issuer: parent.cert.subject, ...validity,
      signingAlgorithm: alg, publicKey: caKeys.publicKey, signingKey: parent.key,
      extensions: [...caExtensions, await x509.AuthorityKeyIdentifierExtension.create(parent.cert)],
    })
    : await x509.X509CertificateGenerator.createSelfSigned({ serialNumber: newSerial(), name: `CN=${name}`, ...validity, signingAlgorithm: alg, keys: caKeys, extensions: caExtensions });

  async function issue(o: { cn: string; sans: x509.JsonGeneralName[]; eku: string; notBefore: Date; notAfter: Date; serial?: string }): Promise<Issued> {
    const keys = await webcrypto.subtle.generateKey(alg, true, ['sign', 'verify']) as unknown as CryptoKeyPair;
    const serial = o.serial ?? newSerial();
    const cert = await x509.X509CertificateGenerator.create({
      serialNumber: serial,
      subject: `CN=${o.cn}`,
      issuer: ca.subject,
      notBefore: o.notBefore,
      notAfter: o.notAfter,
      signingAlgorithm: alg,
      publicKey: keys.publicKey,
      signingKey: caKeys.privateKey,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
        new x509.ExtendedKeyUsageExtension([o.eku]),
        ...(o.sans.length > 0 ? [new x509.SubjectAlternativeNameExtension(o.sans)] : []),
        await x509.AuthorityKeyIdentifierExtension.create(ca),
      ],
    });
    return { certPem: cert.toString('pem'), keyPem: await keyPem(keys.privateKey), serial };
  }

  return {
    certPem: ca.toString('pem'),
    issueDevice: (o) => {
      const sans: x509.JsonGeneralName[] = [];
      if (o.deviceId !== null) sans.push({ type: 'url', value: `urn:chokepoint:device:${o.deviceId ?? 'dev-1'}` });
      if (o.assetId) sans.push({ type: 'url', value: `urn:chokepoint:asset:${o.assetId}` });
      for (const u of o.extraUris ?? []) sans.push({ type: 'url', value: u });
      return issue({
        cn: o.deviceId ?? 'device',
        sans,
        eku: x509.ExtendedKeyUsage.clientAuth,
        notBefore: o.notBefore ?? new Date(Date.now() - 5 * 60_000),
        notAfter: o.notAfter ?? new Date(Date.now() + DAY),
        ...(o.serial ? { serial: o.serial } : {}),
      });
    },
    issueIntermediate: (n) => makeTestCa(n, { cert: ca, key: caKeys.privateKey }),
    issueServer: (names) => issue({
      cn: names[0] ?? 'localhost',
      sans: names.map((n) => (/^[0-9.]+$|:/.test(n) ? { type: 'ip', value: n } : { type: 'dns', value: n })),
      eku: x509.ExtendedKeyUsage.serverAuth,
      notBefore: new Date(Date.now() - 5 * 60_000),
      notAfter: new Date(Date.now() + DAY),
    }),
  };
}
