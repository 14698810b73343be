/**
 * `chokepoint policy export`: nftables checked by nft itself (in a network namespace this test
 * creates, since `nft -c` needs CAP_NET_ADMIN), Windows Firewall and Squid against golden
 * files, and the Squid ACLs run through a small interpreter of Squid's first-match semantics
 * and compared with the gateway's own decide() over a decision table.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { renderExport } from '../src/cli/export.js';
import { parseDestination, parseSquid, squidDecide } from './helpers/export-squid.js';
import { loadPolicy, type GroupInfo } from '../src/policy/index.js';

const FIX = join(process.cwd(), 'test/fixtures/export');
const POLICY = join(FIX, 'policy.yaml');
const CLI = join(process.cwd(), 'dist/src/cli.js');
const GW = '10.0.0.5:3129,[2001:db8::5]:3129';

function golden(name: string, actual: string): void {
  const file = join(FIX, name);
  if (process.env.CHOKEPOINT_UPDATE_GOLDEN === '1') writeFileSync(file, actual);
  assert.equal(actual, readFileSync(file, 'utf8'), `${name} differs from the golden file (CHOKEPOINT_UPDATE_GOLDEN=1 rewrites it after review)`);
}

function cli(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, 'policy', 'export', ...args], { encoding: 'utf8' });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function nftCheck(text: string): { ok: boolean; skip?: string; out: string } {
  const dir = mkdtempSync(join(tmpdir(), 'cp-nft-'));
  const f = join(dir, 'rules.nft');
  writeFileSync(f, text);
  const which = spawnSync('sh', ['-c', 'command -v nft'], { encoding: 'utf8' });
  if (which.status !== 0) return { ok: false, skip: 'nft is not installed (Debian package nftables; .ci/run installs it)', out: '' };
  // A private network namespace: the check needs CAP_NET_ADMIN there, never on the host.
  const r = spawnSync('unshare', ['--net', '--map-root-user', 'nft', '-c', '-f', f], { encoding: 'utf8' });
  if (r.status !== 0 && /unshare failed|Operation not permitted/.test(r.stderr)) return { ok: false, skip: `cannot create a network namespace: ${r.stderr.trim()}`, out: '' };
  return { ok: r.status === 0, out: r.stdout + r.stderr };
}

describe('policy export --format nftables', () => {
  it('passes nft -c -f and allows only the gateway, resolvers, loopback and established', async (t) => {
    const text = await renderExport({ format: 'nftables', policy: POLICY, gateway: GW, resolver: '10.0.0.53,[2001:db8::53]' });
    const c = nftCheck(text);
    if (c.skip) return t.skip(c.skip);
    assert.ok(c.ok, c.out);
    assert.match(text, /policy drop;/);
    assert.match(text, /^\t\tip daddr 10\.0\.0\.5 tcp dport 3129 accept$/m);
    assert.match(text, /^\t\tip6 daddr 2001:db8::5 tcp dport 3129 accept$/m);
    assert.match(text, /^\t\tip6 daddr 2001:db8::53 udp dport 53 accept$/m);
    assert.match(text, /^\t\tct state established accept$/m);
    // Only these accept lines: nothing else may open a way out.
    const accepts = text.split('\n').filter((l) => /\baccept$/.test(l)).map((l) => l.trim());
    assert.deepEqual(accepts, [
      'oif "lo" accept', 'ct state established accept', 'ct state related meta l4proto { icmp, ipv6-icmp } accept',
      // Neighbour discovery only on the link (a raw socket could otherwise carry data in a
      // solicitation to any routed address), and to an on-link gateway by its own address.
      'icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-solicit } ip6 hoplimit 255 ip6 daddr { fe80::/10, ff02::/16 } accept',
      'ip6 daddr 2001:db8::5 icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert } ip6 hoplimit 255 accept',
      'ip daddr 10.0.0.5 tcp dport 3129 accept', 'ip6 daddr 2001:db8::5 tcp dport 3129 accept',
      'ip daddr 10.0.0.53 udp dport 53 accept', 'ip daddr 10.0.0.53 tcp dport 53 accept',
      'ip6 daddr 2001:db8::53 udp dport 53 accept', 'ip6 daddr 2001:db8::53 tcp dport 53 accept',
    ]);
  });

  it('loads for real in a namespace, twice (idempotent), and drops a non-gateway destination', (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'cp-nft-'));
    const f = join(dir, 'rules.nft');
    return renderExport({ format: 'nftables', policy: POLICY, gateway: '10.77.0.5:3129' }).then((text) => {
      writeFileSync(f, text);
      if (nftCheck(text).skip) return t.skip('no network namespace / nft');
      // A veth pair gives the namespace a non-loopback route. Whether the drop rule saw a probe
      // is read from its counter (a dropped UDP send also fails at once with EPERM, a dropped
      // TCP SYN is only retried); IPv6 is off on the link so that no router solicitation or
      // MLD report moves the counter meanwhile.
      const count = 'nft list chain inet chokepoint_egress output | sed -n "s/.*counter packets \\([0-9]*\\).*/\\1/p"';
      const probe = (proto: 'tcp' | 'udp', ip: string, port: number): string => [
        `before=$(${count})`,
        `python3 -c "import socket\ns=socket.socket(socket.AF_INET, socket.SOCK_${proto === 'tcp' ? 'STREAM' : 'DGRAM'}); s.settimeout(0.5)\ntry:\n  s.${proto === 'tcp' ? 'connect' : 'sendto'}(${proto === 'tcp' ? '' : "b'x', "}('${ip}', ${port}))\nexcept OSError:\n  pass"`,
        `after=$(${count})`,
        'if [ "$after" -gt "$before" ]; then echo dropped; else echo passed; fi',
      ].join('\n');
      const script = [
        'set -e', 'sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1',
        'ip link set lo up', 'ip link add v0 type veth peer name v1', 'ip addr add 10.77.0.1/24 dev v0',
        'ip link set v0 up', 'ip link set v1 up',
        `nft -f ${f}`, `nft -f ${f}`,
        probe('udp', '10.77.0.9', 9), probe('tcp', '10.77.0.9', 3129), probe('udp', '10.77.0.5', 3129), probe('tcp', '10.77.0.5', 3129),
        'nft list tables',
      ].join('\n');
      const r = spawnSync('unshare', ['--net', '--map-root-user', 'sh', '-c', script], { encoding: 'utf8' });
      assert.equal(r.status, 0, r.stderr);
      const lines = r.stdout.trim().split('\n');
      assert.deepEqual(lines.slice(0, 4), ['dropped', 'dropped', 'dropped', 'passed'], r.stdout);
      assert.deepEqual(lines.slice(4), ['table inet chokepoint_egress'], 'loading twice leaves exactly one table');
    });
  });

  it('refuses a gateway named by host name, a missing gateway, a bad port', async () => {
    const bad = [
      { gateway: 'gw.example:3129', re: /not an IP address/ },
      { gateway: undefined, re: /at least one --gateway/ },
      { gateway: '10.0.0.5:99999', re: /port must be 1 to 65535/ },
      { gateway: '10.0.0.5', re: /a port is required/ },
      { gateway: '2001:db8::1:3129', re: /in brackets/ },
      { gateway: '010.0.0.5:3129', re: /not an IP address/ },
    ];
    for (const b of bad) {
      await assert.rejects(renderExport({ format: 'nftables', policy: POLICY, ...(b.gateway ? { gateway: b.gateway } : {}) }), (e: Error & { code?: string }) => {
        assert.equal(e.code, 'EXPORT_INVALID');
        assert.match(e.message, b.re);
        return true;
      });
    }
  });

  it('CLI: exit 2 with the code on bad input, POLICY_INVALID for a policy that does not load', () => {
    const r = cli(['--format', 'nftables', '--policy', POLICY, '--gateway', 'gw.example:3129']);
    assert.equal(r.status, 2);
    assert.match(r.stderr, /^chokepoint: EXPORT_INVALID: /);
    assert.equal(r.stdout, '');
    const dir = mkdtempSync(join(tmpdir(), 'cp-exp-'));
    writeFileSync(join(dir, 'bad.yaml'), 'version: 1\ngroups:\n  - name: a\n    allow: ["*.com"]\n');
    const p = cli(['--format', 'squid', '--policy', join(dir, 'bad.yaml')]);
    assert.equal(p.status, 1);
    assert.match(p.stderr, /POLICY_INVALID: .*public suffix/);
    const u = cli(['--format', 'squid', '--policy', join(dir, 'missing.yaml')]);
    assert.match(u.stderr, /POLICY_UNREADABLE: .*ENOENT/);
  });
});

describe('policy export --format windows-firewall', () => {
  it('matches the golden script', async () => {
    const text = await renderExport({ format: 'windows-firewall', policy: POLICY, gateway: GW, resolver: '10.0.0.53', program: 'C:\\Program Files\\Agent\\agent\'s.exe' });
    golden('windows-firewall.ps1', text);
  });
  it('quotes typographic single quotes too (PowerShell ends a string on U+2018–U+201B)', async () => {
    const program = 'C:\\Agent\\a\u2019; Set-NetFirewallProfile -DefaultOutboundAction Allow; \u2019.exe';
    const text = await renderExport({ format: 'windows-firewall', policy: POLICY, gateway: GW, program });
    const line = text.split('\n').find((l) => l.includes('Set-NetFirewallProfile -DefaultOutboundAction Allow')) as string;
    assert.ok(line, 'the path is in the script');
    // Every quote inside the literal is doubled, so the literal runs to its final ASCII quote.
    const literal = /'((?:[^'\u2018-\u201B]|['\u2018-\u201B]{2})*)'/.exec(line.slice(line.indexOf("'")));
    assert.ok(literal && literal[1]?.includes('Set-NetFirewallProfile'), line);
    assert.match(line, /a\u2019\u2019; Set-NetFirewallProfile -DefaultOutboundAction Allow; \u2019\u2019\.exe'/);
  });

  it('needs an absolute --program', async () => {
    await assert.rejects(renderExport({ format: 'windows-firewall', policy: POLICY, gateway: GW, program: 'agent.exe' }), /not an absolute Windows path/);
    await assert.rejects(renderExport({ format: 'windows-firewall', policy: POLICY, gateway: GW }), /needs --program/);
  });
});

describe('policy export --format squid', () => {
  it('matches the golden ACLs (all groups, and one group)', async () => {
    golden('squid.conf', await renderExport({ format: 'squid', policy: POLICY }));
    golden('squid-devices.conf', await renderExport({ format: 'squid', policy: POLICY, group: 'devices' }));
  });

  it('refuses a report-mode group and an unknown group', async () => {
    await assert.rejects(renderExport({ format: 'squid', policy: join(FIX, 'report.yaml') }), /report mode: Squid has no log-only equivalent/);
    await assert.rejects(renderExport({ format: 'squid', policy: POLICY, group: 'nope' }), /"nope" is not in the policy \(groups: servers, devices\)/);
  });

  it('decides exactly as the gateway over a decision table (apex vs **., one label, ports, tls, IP literals)', async () => {
    const text = await renderExport({ format: 'squid', policy: POLICY });
    const conf = parseSquid(text);
    const r = loadPolicy(readFileSync(POLICY, 'utf8'));
    if (!r.ok) throw new Error('fixture policy does not load');
    const hosts = [
      'api.vendor.example', 'x.api.vendor.example', 'vendor.example',
      'updates.vendor.example', 'a.updates.vendor.example', 'a.b.updates.vendor.example', 'upload.updates.vendor.example', 'x.upload.updates.vendor.example',
      'cdn.vendor.example', 'a.cdn.vendor.example', 'a.b.cdn.vendor.example',
      'evil.example', 'x.evil.example', 'api.vendor.example.evil.example', 'xupdates.vendor.example',
      '192.0.2.10', '192.0.2.11',
    ];
    let n = 0;
    for (const host of hosts) {
      for (const port of [80, 443, 8443, 22]) {
        for (const protocol of ['connect', 'http'] as const) {
          for (const src of ['10.20.1.1', '10.30.0.1']) {
            const dest = parseDestination(host, port);
            const group: GroupInfo | null = r.policy.groupForSource(src);
            const gw: string = group === null ? 'deny' : r.policy.decide({ group, dest, protocol }).verdict;
            const sq = squidDecide(conf, { src, host, port, method: protocol === 'connect' ? 'CONNECT' : 'GET' });
            assert.equal(sq, gw, `${src} ${protocol} ${host}:${port}: squid ${sq}, gateway ${gw}`);
            n++;
          }
        }
      }
    }
    assert.equal(n, hosts.length * 16);
  });

  it('a trailing-dot name is refused rather than dodging a deny rule', () => {
    return renderExport({ format: 'squid', policy: POLICY }).then((text) => {
      const conf = parseSquid(text);
      assert.equal(squidDecide(conf, { src: '10.20.1.1', host: 'upload.updates.vendor.example.', port: 443, method: 'CONNECT' }), 'deny');
      assert.equal(squidDecide(conf, { src: '10.20.1.1', host: 'a.updates.vendor.example', port: 443, method: 'CONNECT' }), 'allow');
    });
  });
});
