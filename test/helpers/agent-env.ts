/**
 * A loopback deployment for the agent tests: a device CA made for this run, the real gateway
 * with its mTLS listener and an in-memory device directory, local origins, and an agent
 * directory holding a device key and certificate with private permissions.
 */
import { chmodSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { makeTestCa, type Issued, type TestCa } from './device-pki.js';
import { MemoryDirectory } from './directory.js';
export { MemoryDirectory };
import { startGateway, type TestGateway } from './gateway.js';
import { startEchoOrigin, startHttpOrigin, type Origin } from './origins.js';
import { testDns } from './fixtures.js';
import type { DnsServer } from './dns-server.js';

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
  /** The gateway's policy text (to restore it after a test swaps it). */
  readonly policy: string;
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
  const addr = await tg.gw.listenMtls({ host: '127.0.0.1', port: 0, key: server.keyPem, cert: server.certPem, ca: [ca.certPem], directory });
  return {
    ca, foreign, tg, directory, echo, http, dns, device, policy,
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
