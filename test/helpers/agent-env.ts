/**
 * A loopback deployment for the agent tests: a device CA made for this run, the real gateway
 * with its mTLS listener and an in-memory device directory, local origins, and an agent
 * directory holding a device key and certificate with private permissions.
 */
import { chmodSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { DeviceDirectory, IdentifyResult, PeerCertificateInfo } from '../../src/core/principal.js';
import { makeTestCa, type Issued, type TestCa } from './device-pki.js';
import { startGateway, type TestGateway } from './gateway.js';
import { startEchoOrigin, startHttpOrigin, type Origin } from './origins.js';
import { testDns } from './fixtures.js';
import type { DnsServer } from './dns-server.js';

type State = 'active' | 'revoked' | 'disabled';

export class MemoryDirectory implements DeviceDirectory {
  readonly devices = new Map<string, { deviceId: string; group: string; state: State }>();
  #listeners: ((id: string, serial: string | null) => void)[] = [];
  add(serial: string, deviceId: string, group = 'laptops'): void { this.devices.set(serial, { deviceId, group, state: 'active' }); }
  revoke(deviceId: string): void {
    for (const d of this.devices.values()) if (d.deviceId === deviceId) d.state = 'revoked';
    for (const l of this.#listeners) l(deviceId, null);
  }
  identify(cert: PeerCertificateInfo): IdentifyResult {
    const d = this.devices.get(cert.serial);
    if (d === undefined || d.deviceId !== cert.deviceId) return { ok: false, reason: 'device_unknown', deviceId: null };
    if (d.state !== 'active') return { ok: false, reason: `device_${d.state}`, deviceId: d.deviceId };
    return { ok: true, principal: { kind: 'device', deviceId: d.deviceId, assetId: null, group: d.group, serial: cert.serial, notAfter: cert.notAfter } };
  }
  onRevoke(l: (id: string, serial: string | null) => void): () => void {
    this.#listeners.push(l);
    return () => { this.#listeners = this.#listeners.filter((x) => x !== l); };
  }
}

export interface AgentEnv {
  readonly ca: TestCa;
  readonly foreign: TestCa;
  readonly tg: TestGateway;
  readonly directory: MemoryDirectory;
  readonly mtlsPort: number;
  readonly gatewayUrl: string;
  readonly echo: Origin;
  readonly http: Awaited<ReturnType<typeof startHttpOrigin>>;
  readonly dns: DnsServer;
  readonly device: Issued;
  /** A fresh agent directory (0700) with the device's key, certificate and the CA (0600). */
  agentDir(cert?: Issued): string;
  close(): Promise<void>;
}

export async function startAgentEnv(): Promise<AgentEnv> {
  const [ca, foreign] = await Promise.all([makeTestCa(), makeTestCa('Impostor CA')]);
  const server = await ca.issueServer(['localhost', '127.0.0.1']);
  const echo = await startEchoOrigin();
  const http = await startHttpOrigin();
  const dns = await testDns();
  const policy = `version: 1
address_exceptions: [127.0.0.1/32]
groups:
  - name: laptops
    allow:
      - host: echo.test
        ports: [${echo.port}]
        tls: none
      - host: http.test
        ports: [${http.port}]
        tls: none
`;
  const tg = await startGateway(policy, { dns: { resolvers: [dns.address] } });
  const directory = new MemoryDirectory();
  const device = await ca.issueDevice({ deviceId: 'dev-1' });
  directory.add(device.serial, 'dev-1');
  const addr = await tg.gw.listenMtls({ host: '127.0.0.1', port: 0, key: server.keyPem, cert: server.certPem, ca: ca.certPem, directory });
  return {
    ca, foreign, tg, directory, echo, http, dns, device,
    mtlsPort: addr.port,
    gatewayUrl: `https://127.0.0.1:${addr.port}`,
    agentDir(cert = device): string {
      const d = mkdtempSync(join(tmpdir(), 'cp-agent-'));
      chmodSync(d, 0o700);
      writeFileSync(join(d, 'key.pem'), cert.keyPem, { mode: 0o600 });
      writeFileSync(join(d, 'cert.pem'), cert.certPem, { mode: 0o600 });
      writeFileSync(join(d, 'ca.pem'), ca.certPem, { mode: 0o600 });
      return d;
    },
    async close() {
      await tg.close();
      await Promise.all([echo.close(), http.close(), dns.close()]);
    },
  };
}
