/**
 * Decision tables over fixtures (DESIGN §6.15): every row asserts verdict, reason, ruleId and
 * TLS mode. Destinations go through core's parseAuthority first, exactly as the gateway does,
 * so case, trailing dots, IDNA and numeric IPv4 spellings arrive normalized.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parse } from 'yaml';
import { normalizeHost, parseAuthority, type Destination } from '../src/core/destination.js';
import { isReason } from '../src/core/reasons.js';
import type { CompiledPolicy, GroupInfo, Protocol } from '../src/policy/index.js';
import { fixtureText, mustLoad } from './fixtures/policy/helpers.js';

interface Row {
  g: string;
  dest: string;
  p?: Protocol;
  v: 'allow' | 'deny';
  r: string;
  rule: string | null;
  tls: string;
}

const policy = mustLoad(fixtureText('decide.yaml'));
const rows = parse(fixtureText('decide-cases.yaml')) as Row[];

function group(p: CompiledPolicy, name: string): GroupInfo {
  return p.groups.find((g) => g.name === name) ?? { name, mode: 'enforce' };
}

function dest(raw: string): Destination {
  const a = parseAuthority(raw);
  assert.ok(a.ok, `fixture destination ${raw} should parse: ${a.ok ? '' : a.error}`);
  return a.dest;
}

describe('decide: decision table (fixtures/policy/decide-cases.yaml)', () => {
  it('has rows for every reason decide() can return', () => {
    assert.ok(rows.length >= 60);
    const reasons = new Set(rows.map((r) => r.r));
    for (const r of ['allowed', 'no_rule_matched', 'port_not_allowed', 'denied_by_rule', 'ip_literal_denied', 'not_tls']) {
      assert.ok(reasons.has(r), `no row for ${r}`);
    }
    for (const r of reasons) assert.ok(isReason(r), `${r} is not a reason code`);
  });

  for (const row of rows) {
    const protocol = row.p ?? 'connect';
    it(`${row.g} ${row.dest} ${protocol} → ${row.v} ${row.r} ${row.rule ?? '-'}`, () => {
      const d = policy.decide({ group: group(policy, row.g), dest: dest(row.dest), protocol });
      assert.deepEqual(
        { verdict: d.verdict, reason: d.reason, ruleId: d.ruleId, tls: d.tls },
        { verdict: row.v, reason: row.r, ruleId: row.rule, tls: row.tls },
      );
    });
  }
});

describe('decide: inputs as core produces them', () => {
  it('works on normalizeHost output (case, trailing dot, Unicode)', () => {
    const g = group(policy, 'servers');
    for (const raw of ['API.VENDOR.EXAMPLE', 'api.vendor.example.', 'Api.Vendor.Example.']) {
      const h = normalizeHost(raw);
      assert.ok(h.ok && h.kind === 'name');
      const d = policy.decide({ group: g, dest: { host: h.host, port: 443, kind: h.kind }, protocol: 'connect' });
      assert.equal(d.ruleId, 'groups.servers.allow[0]', raw);
    }
  });

  it('never matches a raw (non-normalized) name: normalization is core\'s job, done once', () => {
    const d = policy.decide({ group: group(policy, 'servers'), dest: { host: 'XN--BCHER-KVA.EXAMPLE', port: 443, kind: 'name' }, protocol: 'connect' });
    assert.equal(d.reason, 'no_rule_matched');
  });

  it('never matches a name against address rules, nor an address against host rules', () => {
    // A "name" that happens to look like an address in a rule is still a name.
    const g = group(policy, 'servers');
    const asName = policy.decide({ group: g, dest: { host: '192.0.2.10', port: 8443, kind: 'name' }, protocol: 'connect' });
    assert.equal(asName.reason, 'no_rule_matched');
    const p = mustLoad('version: 1\ngroups:\n  - name: g\n    allow: ["**.example.com"]\n');
    const d = p.decide({ group: p.groups[0] as GroupInfo, dest: { host: '93.184.216.34', port: 443, kind: 'ipv4' }, protocol: 'connect' });
    assert.deepEqual([d.reason, d.ruleId], ['ip_literal_denied', null]);
  });

  it('denies a malformed IP-literal destination instead of throwing', () => {
    const g = group(policy, 'servers');
    for (const host of ['', 'not-an-ip', '999.1.1.1', '::zz']) {
      const d = policy.decide({ group: g, dest: { host, port: 443, kind: 'ipv4' }, protocol: 'connect' });
      assert.equal(d.verdict, 'deny', host);
      assert.equal(d.reason, 'ip_literal_denied', host);
    }
  });

  it('returns frozen decisions', () => {
    const d = policy.decide({ group: group(policy, 'servers'), dest: dest('api.vendor.example:443'), protocol: 'connect' });
    assert.ok(Object.isFrozen(d));
    assert.throws(() => { (d as { verdict: string }).verdict = 'deny'; }, TypeError);
  });

  it('does not apply report mode: the gateway does', () => {
    const labs = group(policy, 'labs');
    assert.equal(labs.mode, 'report');
    const d = policy.decide({ group: labs, dest: dest('unknown.test:443'), protocol: 'connect' });
    assert.deepEqual([d.verdict, d.reason], ['deny', 'no_rule_matched']);
  });
});

describe('groupForSource', () => {
  const cases: [string, string | null][] = [
    ['10.20.1.1', 'servers'],
    ['10.20.255.255', 'servers'],
    ['10.21.0.0', null],
    ['10.19.255.255', null],
    ['127.0.0.1', 'servers'],
    ['127.255.255.254', 'servers'],
    ['::ffff:10.20.1.1', 'servers'],
    ['::ffff:a14:101', 'servers'],
    ['::FFFF:127.0.0.1', 'servers'],
    ['10.30.0.1', 'labs'],
    ['::ffff:10.30.0.1', 'labs'],
    ['2001:db8:1::1', 'labs'],
    ['2001:db8:1:ffff:ffff:ffff:ffff:ffff', 'labs'],
    ['2001:db8:2::1', null],
    ['::1', null],
    ['10.40.0.1', null],
    ['', null],
    ['garbage', null],
    ['10.20.1.1/32', null],
    ['010.020.001.001', null],
    ['fe80::1%eth0', null],
  ];
  for (const [ip, want] of cases) {
    it(`${ip || '(empty)'} → ${want ?? 'none'}`, () => {
      assert.equal(policy.groupForSource(ip)?.name ?? null, want);
    });
  }

  it('returns the group objects listed in policy.groups', () => {
    assert.equal(policy.groupForSource('10.20.0.1'), policy.groups[0]);
    assert.deepEqual(policy.groups.map((g) => [g.name, g.mode]), [['servers', 'enforce'], ['labs', 'report']]);
  });
});
