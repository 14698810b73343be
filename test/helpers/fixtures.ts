/** Shared set-up for gateway tests: a DNS server with test names and a policy that uses them. */
import { startDnsServer, type DnsServer } from './dns-server.js';

export const TEST_NAMES: Record<string, string[]> = {
  'echo.test': ['127.0.0.1'],
  'tls.test': ['127.0.0.1'],
  'http.test': ['127.0.0.1'],
  'other.test': ['127.0.0.1'],
  'loop2.test': ['127.0.0.2'],
  'private.test': ['10.1.2.3'],
  'metadata.test': ['169.254.169.254'],
  'cgnat.test': ['100.64.0.1'],
  'mixed.test': ['10.9.9.9', '127.0.0.1'],
  'v6loop.test': ['::1'],
  'upload.updates.vendor.test': ['127.0.0.1'],
  'a.updates.vendor.test': ['127.0.0.1'],
  'x.evil.test': ['127.0.0.1'],
};

export async function testDns(): Promise<DnsServer> {
  return startDnsServer(TEST_NAMES);
}

export interface Ports {
  echo: number;
  tls: number;
  http: number;
}

export function basePolicy(p: Ports, extra = ''): string {
  return `version: 1
address_exceptions: [127.0.0.1/32]
groups:
  - name: servers
    sources: [127.0.0.0/8]
    allow:
      - host: echo.test
        ports: [${p.echo}]
        tls: none
      - host: tls.test
        ports: [${p.tls}]
        tls: required
      - host: http.test
        ports: [${p.http}]
        tls: none
      - host: other.test
        ports: [${p.http}, ${p.echo}]
        tls: none
      - host: loop2.test
        ports: [${p.echo}]
        tls: none
      - host: private.test
        ports: [${p.echo}]
        tls: none
      - host: metadata.test
        ports: [80, ${p.echo}]
        tls: none
      - host: cgnat.test
        ports: [${p.echo}]
        tls: none
      - host: mixed.test
        ports: [${p.echo}]
        tls: none
      - host: v6loop.test
        ports: [${p.echo}]
        tls: none
      - host: nxdomain.test
        ports: [${p.echo}]
        tls: none
      - host: "**.updates.vendor.test"
        ports: [${p.echo}]
        tls: none
      - host: x.evil.test
        ports: [${p.echo}]
        tls: none
${extra}    deny:
      - host: upload.updates.vendor.test
global:
  deny: ["**.evil.test"]
`;
}
