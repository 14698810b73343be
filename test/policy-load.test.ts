/**
 * Loading: every malformed input is a problem with its exact path (and line), all reported
 * at once; warnings are separate; the result is frozen; loadPolicyFile reports I/O failures.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import type { Problem } from '../src/core/errors.js';
import { compilePolicy, loadPolicy, loadPolicyFile, type PolicyDocument } from '../src/policy/index.js';
import { fixturePath, fixtureText, mustLoad } from './fixtures/policy/helpers.js';

function problems(text: string): readonly Problem[] {
  const r = loadPolicy(text);
  assert.equal(r.ok, false, `expected the policy to be refused:\n${text}`);
  return r.ok ? [] : r.problems;
}

function paths(text: string): string[] {
  return problems(text).map((p) => p.path);
}

function one(text: string): Problem {
  const ps = problems(text);
  assert.equal(ps.length, 1, `expected one problem, got ${JSON.stringify(ps, null, 1)}`);
  return ps[0] as Problem;
}

/** A group with one allow list, for rule-level cases. */
function withAllow(allow: string): string {
  return `version: 1\ngroups:\n  - name: g\n    allow:\n${allow.replace(/^/gm, '      ')}\n`;
}

describe('load errors: everything reported at once, with paths and lines', () => {
  it('reports every problem of fixtures/policy/invalid-many.yaml in one pass', () => {
    const ps = problems(fixtureText('invalid-many.yaml'));
    const got = ps.map((p) => [p.path, p.line]);
    assert.deepEqual(got, [
      ['adress_exceptions', 2],
      ['global.deny[0]', 5],
      ['global.deny[1].tls', 7],
      ['groups[0].sources[1]', 10],
      ['groups[0].mode', 11],
      ['groups[0].allow[0].host', 13],
      ['groups[0].allow[1].ports[1]', 15],
      ['groups[0].allow[2].ports[0]', 17],
      ['groups[0].allow[3].host', 18],
      ['groups[0].allow[4].tls', 20],
      ['groups[0].allow[5].host', 21],
      ['groups[0].allow[6].address', 22],
      ['groups[1].name', 23],
      ['groups[1].sources[0]', 24],
      ['groups[1].allow[0]', 25],
      ['groups[1].allow[1]', 25],
      ['groups[1].allow[2]', 25],
    ]);
    const byPath = new Map(ps.map((p) => [p.path, p]));
    assert.equal(byPath.get('adress_exceptions')?.fix, 'did you mean "address_exceptions"?');
    assert.equal(byPath.get('adress_exceptions')?.column, 1);
    assert.equal(byPath.get('groups[0].allow[0].host')?.fix, 'use "example.com"');
    assert.equal(byPath.get('groups[0].allow[0].host')?.column, 15);
    assert.equal(byPath.get('groups[0].sources[1]')?.fix, 'use "10.0.0.0/8" (the network address)');
    assert.match(byPath.get('groups[1].name')?.message ?? '', /duplicate group name "servers" \(first defined at groups\[0\]\.name\)/);
    assert.match(byPath.get('groups[1].sources[0]')?.message ?? '', /10\.1\.0\.0\/16 overlaps 10\.0\.0\.0\/8 at groups\[0\]\.sources\[0\]/);
    assert.match(byPath.get('groups[1].allow[0]')?.message ?? '', /public suffix "co\.uk"/);
    for (const p of ps) assert.ok(p.message.length > 0 && p.line !== undefined && p.column !== undefined, JSON.stringify(p));
  });

  it('refuses a missing, wrong or mistyped version', () => {
    assert.deepEqual(paths('groups: []\n'), ['version']);
    assert.match(one('groups: []\n').message, /missing "version"/);
    assert.deepEqual(paths('version: 2\ngroups: []\n'), ['version']);
    assert.deepEqual(paths('version: "1"\ngroups: []\n'), ['version']);
    assert.equal(one('groups: []\nversion: 3\n').line, 2);
  });

  it('refuses documents that are not a policy mapping', () => {
    assert.deepEqual(paths('version: 1\n'), ['groups']);
    assert.match(one('version: 1\n').message, /missing required key "groups"/);
    assert.deepEqual(paths('- a\n- b\n'), ['']);
    assert.deepEqual(paths('just a string\n'), ['']);
    const empty = loadPolicy('   \n# nothing\n', { sourceName: 'p.yaml' });
    assert.ok(!empty.ok);
    assert.match(empty.problems[0]?.message ?? '', /^p\.yaml is empty/);
  });

  it('refuses unknown keys anywhere, with a suggestion when one is close', () => {
    const ps = problems([
      'version: 1', 'description: top', 'global: {deny: [], allow: []}', 'groups:',
      '  - name: g', '    Mode: report', '    allow:', '      - host: a.example.com', '        port: 443',
      '    deny:', '      - host: b.example.com', '        tls: none',
    ].join('\n'));
    assert.deepEqual(ps.map((p) => [p.path, p.fix]), [
      ['description', undefined],
      ['global.allow', undefined],
      ['groups[0].Mode', 'did you mean "mode"?'],
      ['groups[0].allow[0].port', 'did you mean "ports"?'],
      ['groups[0].deny[0].tls', undefined],
    ]);
    assert.deepEqual(ps.map((p) => p.line), [2, 3, 6, 9, 12]);
  });

  it('accepts description on groups and rules', () => {
    mustLoad('version: 1\ngroups:\n  - name: g\n    description: x\n    allow:\n      - {host: a.example.com, description: y}\n    deny:\n      - {host: b.example.com, description: z}\n');
  });

  it('refuses wrong types with the path of the value', () => {
    assert.deepEqual(paths(withAllow('- host: a.example.com\n  ports: "443"')), ['groups[0].allow[0].ports']);
    assert.deepEqual(paths(withAllow('- host: 7')), ['groups[0].allow[0].host']);
    assert.deepEqual(paths(withAllow('- 7')), ['groups[0].allow[0]']);
    assert.deepEqual(paths(withAllow('- [a.example.com]')), ['groups[0].allow[0]']);
    assert.deepEqual(paths('version: 1\ngroups:\n  - name: g\n    sources: 10.0.0.0/8\n'), ['groups[0].sources']);
    assert.deepEqual(paths('version: 1\ngroups:\n  - name: g\n    allow: {host: a.example.com}\n'), ['groups[0].allow']);
    assert.deepEqual(paths('version: 1\ngroups:\n  - g\n'), ['groups[0]']);
    assert.deepEqual(paths('version: 1\ngroups:\n  - name: 5\n'), ['groups[0].name']);
    assert.deepEqual(paths('version: 1\ngroups:\n  - name: g\n    deny:\n'), ['groups[0].deny']);
    assert.deepEqual(paths('version: 1\nglobal: [x]\ngroups: []\n'), ['global']);
    assert.deepEqual(paths('version: 1\naddress_exceptions: [7]\ngroups: []\n'), ['address_exceptions[0]']);
  });

  it('refuses duplicate group names and invalid ones', () => {
    const ps = problems('version: 1\ngroups:\n  - name: a\n  - name: b\n  - name: a\n  - name: b\n  - name: a.b\n');
    assert.deepEqual(ps.map((p) => p.path), ['groups[2].name', 'groups[3].name', 'groups[4].name']);
    assert.equal(ps[0]?.line, 5);
  });

  it('says what an unquoted wildcard is (YAML reads `*` as an alias), with its line and the fix', () => {
    for (const [text, pattern, line] of [
      ['version: 1\ngroups:\n  - name: a\n    allow: [*.example.com]\n', '*.example.com', 4],
      ['version: 1\ngroups:\n  - name: a\n    allow:\n      - host: **.example.com\n', '**.example.com', 5],
    ] as const) {
      const r = loadPolicy(text);
      assert.ok(!r.ok);
      const p = r.problems[0];
      assert.equal(p?.line, line);
      assert.ok((p?.message ?? '').startsWith(`${pattern} is read by YAML as an alias`), p?.message);
      assert.equal(p?.fix, `quote it: "${pattern}"`);
    }
  });

  it('refuses bad ports', () => {
    for (const bad of ['0', '65536', '1.5', '-1', '.inf', '"443"', 'null', '1e400']) {
      assert.deepEqual(paths(withAllow(`- host: a.example.com\n  ports: [443, ${bad}]`)), ['groups[0].allow[0].ports[1]'], bad);
    }
    assert.deepEqual(paths(withAllow('- host: a.example.com\n  ports: []')), ['groups[0].allow[0].ports']);
    const dup = one(withAllow('- host: a.example.com\n  ports: [80, 443, 80]'));
    assert.deepEqual([dup.path, dup.message], ['groups[0].allow[0].ports[2]', 'duplicate port 80']);
    mustLoad(withAllow('- host: a.example.com\n  ports: [1, 65535]'));
  });

  it('refuses bad tls and mode values', () => {
    assert.deepEqual(paths(withAllow('- host: a.example.com\n  tls: yes')), ['groups[0].allow[0].tls']);
    assert.deepEqual(paths(withAllow('- host: a.example.com\n  tls: REQUIRED')), ['groups[0].allow[0].tls']);
    assert.deepEqual(paths('version: 1\ngroups:\n  - name: g\n    mode: audit\n'), ['groups[0].mode']);
  });

  it('refuses rules with neither or both of host and address', () => {
    assert.deepEqual(paths(withAllow('- ports: [443]')), ['groups[0].allow[0]']);
    assert.deepEqual(paths(withAllow('- {host: a.example.com, address: 192.0.2.1}')), ['groups[0].allow[0]']);
    assert.deepEqual(paths(withAllow('- host: ""')), ['groups[0].allow[0].host']);
    assert.deepEqual(paths(withAllow('- ""')), ['groups[0].allow[0]']);
  });

  it('refuses wildcards over public suffixes and bare wildcards, with the reason', () => {
    for (const p of ['*.com', '**.com', '**.co.uk', '*.github.io', '**.s3.amazonaws.com', '*.corp', '*', '**', '*.', '**.']) {
      const pr = one(withAllow(`- "${p}"`));
      assert.equal(pr.path, 'groups[0].allow[0]', p);
      assert.match(pr.message, /public suffix|every host/, p);
    }
    for (const p of ['*.example.co.uk', '**.github.com', '*.user.github.io', 'github.io', 'com']) mustLoad(withAllow(`- "${p}"`));
  });

  it('refuses wildcards anywhere but the whole first label', () => {
    for (const p of ['a.*.example.com', '*foo.example.com', 'foo*.example.com', '***.example.com', '*.*.example.com', 'example.*']) {
      assert.deepEqual(paths(withAllow(`- host: "${p}"`)), ['groups[0].allow[0].host'], p);
    }
  });

  it('refuses non-canonical hosts with the canonical form as the fix', () => {
    const cases: [string, string][] = [
      ['Example.COM.', 'use "example.com"'],
      ['example.com.', 'use "example.com"'],
      ['bücher.example', 'use "xn--bcher-kva.example"'],
      ['*.Example.com', 'use "*.example.com"'],
      ['**.BÜCHER.example', 'use "**.xn--bcher-kva.example"'],
    ];
    for (const [host, fix] of cases) {
      const p = one(withAllow(`- host: "${host}"`));
      assert.deepEqual([p.path, p.fix], ['groups[0].allow[0].host', fix], host);
    }
  });

  it('refuses IP literals, URLs and host:port in host rules', () => {
    const ip = one(withAllow('- host: 10.1.2.3'));
    assert.equal(ip.fix, 'use address: "10.1.2.3/32"');
    assert.equal(one(withAllow('- host: "0x7f.1"')).fix, 'use address: "127.0.0.1/32"');
    assert.equal(one(withAllow('- host: "[::1]"')).fix, 'use address: "::1/128"');
    assert.equal(one(withAllow('- host: "https://api.example.com/v1"')).fix, 'use "api.example.com" (and "ports:" for the port)');
    assert.equal(one(withAllow('- host: "api.example.com:8443"')).fix, 'use host "api.example.com" with ports: [8443]');
    assert.deepEqual(paths(withAllow('- host: "a b.example.com"')), ['groups[0].allow[0].host']);
  });

  it('refuses bad CIDRs, with the network address as the fix for host bits', () => {
    const cases: [string, string | undefined][] = [
      ['10.0.0.1/8', 'use "10.0.0.0/8" (the network address)'],
      ['2001:db8::1/32', 'use "2001:db8::/32" (the network address)'],
      ['300.1.1.1', undefined],
      ['10.0.0.0/33', undefined],
      ['10.0.0.0/', undefined],
      ['10.0.0.0/08', undefined],
      ['10.0.0.0/-1', undefined],
      ['010.0.0.0/8', undefined],
      ['10.0.0.0 /8', undefined],
      ['fe80::1%eth0', undefined],
      ['::ffff:10.0.0.0/104', 'use "10.0.0.0/8"'],
      ['::ffff:192.0.2.1', 'use "192.0.2.1/32"'],
      ['example.com', undefined],
    ];
    for (const [cidr, fix] of cases) {
      const p = one(`version: 1\naddress_exceptions: ["${cidr}"]\ngroups: []\n`);
      assert.deepEqual([p.path, p.fix, p.line], ['address_exceptions[0]', fix, 2], cidr);
    }
    assert.deepEqual(paths(withAllow('- address: 10.0.0.1/8\n  ports: [8443]')), ['groups[0].allow[0].address']);
    assert.deepEqual(paths('version: 1\ngroups:\n  - name: g\n    deny: [{address: "1.2.3.4/40"}]\n'), ['groups[0].deny[0].address']);
    mustLoad('version: 1\naddress_exceptions: [10.0.0.1, "2001:DB8::1", 0.0.0.0/0]\ngroups: []\n');
  });

  it('refuses overlapping sources across groups, naming both paths', () => {
    const src = (a: string, b: string): string => `version: 1\ngroups:\n  - name: a\n    sources: [${a}]\n  - name: b\n    sources: [${b}]\n`;
    for (const [a, b] of [['10.0.0.0/8', '10.1.0.0/16'], ['10.1.0.0/16', '10.0.0.0/8'], ['10.0.0.0/8', '10.0.0.0/8'], ['0.0.0.0/0', '192.0.2.1'], ['"2001:db8::/32"', '"2001:db8:1::/48"']]) {
      const p = one(src(a as string, b as string));
      assert.equal(p.path, 'groups[1].sources[0]', `${a} ${b}`);
      assert.match(p.message, /at groups\[0\]\.sources\[0\] \(group "a"\)/);
      assert.equal(p.line, 6);
    }
    mustLoad(src('10.0.0.0/16', '10.1.0.0/16'));
    mustLoad(src('10.0.0.0/8', '"::/0"'));
    mustLoad('version: 1\ngroups:\n  - name: a\n    sources: [10.0.0.0/8, 10.1.0.0/16, 10.0.0.0/8]\n');
    mustLoad('version: 1\ngroups:\n  - name: a\n  - name: b\n    sources: []\n');
    const three = problems('version: 1\ngroups:\n  - name: a\n    sources: [10.0.0.0/8]\n  - name: b\n    sources: [10.1.0.0/16]\n  - name: c\n    sources: [10.1.2.0/24, 192.168.0.0/16]\n');
    assert.deepEqual(three.map((p) => p.path), ['groups[1].sources[0]', 'groups[2].sources[0]']);
  });

  it('reports YAML syntax errors, duplicate keys and multiple documents with their line', () => {
    const syn = problems('version: 1\ngroups:\n  - name: g\n    allow: [a.example.com\n');
    assert.ok(syn.length >= 1);
    assert.equal(syn[0]?.path, '');
    assert.ok((syn[0]?.line ?? 0) >= 4);
    const dup = one('version: 1\ngroups:\n  - name: g\n    allow: [a.example.com]\n    allow: [b.example.com]\n');
    assert.deepEqual([dup.path, dup.line], ['', 5]);
    assert.match(dup.message, /duplicate key "allow"/);
    assert.equal(one('version: 1\ngroups: []\n---\nversion: 1\n').line, 3);
    assert.deepEqual(paths('version: 1\ngroups: []\nx: !!binary aGVsbG8=\n'), ['x']);
    assert.equal(one('version: 1\ngroups: []\ny: !custom 1\n').line, 3);
  });

  it('does not interpret YAML merge keys', () => {
    assert.deepEqual(paths('version: 1\ngroups:\n  - name: g\n    <<: {mode: report}\n'), ['groups[0].<<']);
  });

  it('survives an alias expansion bomb with a problem, not a hang or a throw', () => {
    const bomb = ['a: &a ["x","x","x","x","x","x","x","x","x"]', 'b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]', 'c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]',
      'd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]', 'e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]', 'f: [*e,*e,*e,*e,*e,*e,*e,*e,*e]'].join('\n');
    const t = Date.now();
    const p = problems(bomb);
    assert.ok(Date.now() - t < 2000);
    assert.match(p[0]?.message ?? '', /alias/i);
  });

  it('allows a few aliases (shared port lists)', () => {
    mustLoad(withAllow('- {host: a.example.com, ports: &p [443, 8443]}\n- {host: b.example.com, ports: *p}'));
  });

  it('caps a flood of problems with a count of the rest', () => {
    const rules = Array.from({ length: 300 }, (_, i) => `- host: "Bad${i}.example.com"`).join('\n');
    const ps = problems(withAllow(rules));
    assert.equal(ps.length, 201);
    assert.match(ps[200]?.message ?? '', /100 more problems/);
  });
});

describe('warnings', () => {
  function warnings(text: string): Problem[] {
    const r = loadPolicy(text);
    assert.ok(r.ok, JSON.stringify(r.ok ? [] : r.problems));
    return r.warnings;
  }

  it('warns about address allow rules in special ranges unless excepted', () => {
    const w = warnings(withAllow('- address: 10.0.0.5/32\n  ports: [8443]\n- address: 93.184.216.34\n- address: "fd00:ec2::254"'));
    assert.deepEqual(w.map((x) => x.path), ['groups[0].allow[0].address', 'groups[0].allow[2].address']);
    assert.match(w[0]?.message ?? '', /private 10\.0\.0\.0\/8/);
    assert.match(w[1]?.message ?? '', /metadata fd00:ec2::254\/128/);
    assert.equal(w[0]?.line, 5);
    assert.deepEqual(warnings(`version: 1\naddress_exceptions: [10.0.0.5/32]\n${withAllow('- address: 10.0.0.5/32').slice(11)}`), []);
    // A public block that contains a special one is still flagged.
    assert.deepEqual(warnings(withAllow('- address: 0.0.0.0/0')).map((x) => x.path), ['groups[0].allow[0].address']);
  });

  it('warns about address exceptions wider than the names need: wide blocks, loopback ranges, IPv4-embedding prefixes', () => {
    const ex = (list: string) => warnings(`version: 1\naddress_exceptions: ${list}\ngroups: []\n`).map((w) => `${w.path} ${w.message}`);
    assert.deepEqual(ex('[127.0.0.1/32, "::1/128", 10.1.2.0/24, 192.0.2.7]'), [], 'single addresses and a /24 are not wide');
    const w = ex('[10.0.0.0/8, 127.0.0.0/8, "64:ff9b::/96", "2001:db8::/32"]');
    assert.equal(w.length, 4, w.join('\n'));
    assert.match(w[0] as string, /^address_exceptions\[0\] 10\.0\.0\.0\/8 is wide \(private addresses\).*DNS rebinding/);
    assert.match(w[1] as string, /^address_exceptions\[1\] .*loopback/);
    assert.match(w[2] as string, /^address_exceptions\[2\] .*ipv4_embedded/);
    assert.match(w[3] as string, /^address_exceptions\[3\] 2001:db8::\/32 is wide/);
  });

  it('warns about groups without allow rules', () => {
    assert.deepEqual(warnings('version: 1\ngroups:\n  - name: a\n  - name: b\n    allow: []\n').map((x) => x.path), ['groups[0]', 'groups[1].allow']);
  });

  it('warns about allow rules a deny rule shadows completely', () => {
    const w = warnings([
      'version: 1', 'global:', '  deny: ["**.bad.example.com"]', 'groups:', '  - name: g', '    allow:',
      '      - api.example.com', '      - "*.bad.example.com"', '      - x.y.bad.example.com', '      - host: web.example.com',
      '        ports: [443, 80]', '      - address: 93.184.216.0/28', '        ports: [8443]', '      - ok.example.com',
      '      - bad.example.com',
      '    deny:', '      - api.example.com', '      - host: web.example.com', '        ports: [80]', '      - address: 93.184.216.0/24',
    ].join('\n'));
    assert.deepEqual(w.map((x) => x.path), ['groups[0].allow[0]', 'groups[0].allow[1]', 'groups[0].allow[2]', 'groups[0].allow[4]']);
    assert.match(w[0]?.message ?? '', /shadowed by deny rule groups\.g\.deny\[0\]/);
    assert.match(w[1]?.message ?? '', /global\.deny\[0\]/);
  });

  it('warns when an exception opens a cloud metadata endpoint', () => {
    const w = warnings('version: 1\naddress_exceptions: [169.254.169.0/24, 10.0.0.0/24]\ngroups: []\n');
    assert.deepEqual(w.map((x) => x.path), ['address_exceptions[0]'], 'the metadata one, not the narrow private one');
    assert.match(w[0]?.message ?? '', /cloud metadata endpoint/);
  });

  it('returns warnings alongside problems too', () => {
    const r = loadPolicy('version: 1\ngroups:\n  - name: a\n  - name: a\n');
    assert.ok(!r.ok);
    assert.deepEqual(r.warnings.map((x) => x.path), ['groups[0]', 'groups[1]']);
  });
});

describe('the compiled policy', () => {
  const text = fixtureText('decide.yaml');
  const policy = mustLoad(text);

  it('has version 1 and the sha256 of the source text as digest', () => {
    assert.equal(policy.version, 1);
    assert.equal(policy.digest, createHash('sha256').update(text).digest('hex'));
    assert.notEqual(mustLoad(`${text}\n# changed\n`).digest, policy.digest);
  });

  it('is deeply frozen', () => {
    const seen = new Set<unknown>();
    const walk = (v: unknown, path: string): void => {
      if ((typeof v !== 'object' && typeof v !== 'function') || v === null || seen.has(v)) return;
      seen.add(v);
      assert.ok(Object.isFrozen(v), `${path} is not frozen`);
      for (const k of Reflect.ownKeys(v)) walk((v as Record<PropertyKey, unknown>)[k], `${path}.${String(k)}`);
    };
    walk(policy, 'policy');
    // Its methods live on its class's prototype: frozen too, with the class itself.
    walk(Object.getPrototypeOf(policy), 'prototype');
    assert.ok(seen.size >= 8);
    assert.throws(() => { (policy.groups as GroupInfoLike[]).push({ name: 'x', mode: 'enforce' }); }, TypeError);
    assert.throws(() => { (policy.groups[0] as GroupInfoLike).mode = 'report'; }, TypeError);
    assert.throws(() => { (policy as { decide: unknown }).decide = () => null; }, TypeError);
  });

  it('applies defaults: mode enforce, ports [443], tls by port', () => {
    const p = mustLoad(withAllow('- a.example.com\n- {host: b.example.com, ports: [80]}'));
    const g = p.groups[0]!;
    assert.equal(g.mode, 'enforce');
    const d = (host: string, port: number) => p.decide({ group: g, dest: { host, port, kind: 'name' }, protocol: 'connect' });
    assert.deepEqual([d('a.example.com', 443).tls, d('a.example.com', 80).reason, d('b.example.com', 80).tls], ['required', 'port_not_allowed', 'none']);
  });
});

type GroupInfoLike = { name: string; mode: string };

describe('compilePolicy and loadPolicyFile', () => {
  it('compiles a document value with the same rules and problems (without lines)', () => {
    const doc: PolicyDocument = {
      version: 1,
      groups: [{ name: 'g', sources: ['10.0.0.0/8'], allow: ['api.example.com', { host: '*.cdn.example.com', ports: [443, 8443], tls: 'optional' }] }],
      global: { deny: [{ address: '192.0.2.1', ports: [22] }] },
    };
    const r = compilePolicy(doc);
    assert.ok(r.ok);
    const g = r.policy.groupForSource('10.1.1.1')!;
    assert.equal(r.policy.decide({ group: g, dest: { host: 'a.cdn.example.com', port: 8443, kind: 'name' }, protocol: 'connect' }).ruleId, 'groups.g.allow[1]');
    assert.equal(r.policy.digest.length, 64);
    const bad = compilePolicy({ version: 1, groups: [{ name: 'g', allow: ['*.com'], extra: 1 }] } as unknown as PolicyDocument);
    assert.ok(!bad.ok);
    assert.deepEqual(bad.problems.map((p) => [p.path, p.line]), [['groups[0].extra', undefined], ['groups[0].allow[0]', undefined]]);
  });

  it('never throws on hostile values', () => {
    const circular: Record<string, unknown> = { version: 1 };
    circular.groups = [circular];
    const throwing = { version: 1, get groups(): never { throw new Error('boom'); } };
    for (const v of [null, undefined, 1, 'x', [], circular, throwing, { version: 1n, groups: [] }, Object.create(null)]) {
      const r = compilePolicy(v as PolicyDocument);
      assert.equal(r.ok, false);
    }
  });

  it('loads a file', async () => {
    const r = await loadPolicyFile(fixturePath('example.yaml'));
    assert.ok(r.ok, JSON.stringify(r.ok ? null : r.problems));
    assert.deepEqual(r.warnings.map((w) => w.path), ['groups[0].allow[2].address']);
  });

  it('reports an unreadable file as POLICY_UNREADABLE', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cp-policy-'));
    const latin1 = join(dir, 'latin1.yaml');
    writeFileSync(latin1, Buffer.from([0x76, 0x3a, 0x20, 0xe9, 0x0a]));
    for (const [p, why] of [[join(dir, 'missing.yaml'), /ENOENT/], [dir, /EISDIR/], [latin1, /UTF-8/]] as const) {
      const r = await loadPolicyFile(p);
      assert.ok(!r.ok);
      assert.equal(r.problems.length, 1);
      assert.match(r.problems[0]?.message ?? '', /^POLICY_UNREADABLE: /);
      assert.match(r.problems[0]?.message ?? '', why);
    }
  });

  it('reports problems of a file with their lines', async () => {
    const r = await loadPolicyFile(fixturePath('invalid-many.yaml'));
    assert.ok(!r.ok);
    assert.equal(r.problems.length, 17);
  });
});
