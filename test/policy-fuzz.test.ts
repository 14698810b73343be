/**
 * loadPolicy, decide, groupForSource and checkAddress never throw, whatever the input: a
 * policy that fails to load must leave the running one in force, and the data plane must fail
 * closed (DESIGN §3, §6.2, §6.13). Deterministic by default; set POLICY_FUZZ_SEED to explore.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isReason } from '../src/core/reasons.js';
import { loadPolicy, type CompiledPolicy, type LoadResult } from '../src/policy/index.js';
import { fixtureText, mustLoad } from './fixtures/policy/helpers.js';

const SEED = Number(process.env.POLICY_FUZZ_SEED ?? 7);

function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const rand = prng(SEED);
const int = (n: number): number => Math.floor(rand() * n);
const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)] as T;

const SEEDS = ['decide.yaml', 'invalid-many.yaml', 'example.yaml'].map(fixtureText);
const YAML_BITS = [':', '-', '- ', '[', ']', '{', '}', '&a ', '*a', '!', '!!str ', '|', '>', '"', "'", '#', '\n', ' ', '  ', '\t', '%YAML 1.1\n',
  '@', '`', '?', ',', '<<: ', '---\n', '...\n', '\u0000', '\uFEFF', '\u2028', 'ü', '1e400', '0x1F', '.nan', '-.inf', '~', 'null', 'true',
  '99999999999999999999999', '**.', '*.', '/33', '::', '10.0.0.0/8', 'version: 1\n', 'groups:\n', '__proto__: ', 'constructor: '];

function mutate(text: string): string {
  let s = text;
  for (let k = 0, n = 1 + int(6); k < n; k++) {
    const at = int(s.length + 1);
    switch (int(6)) {
      case 0: s = s.slice(0, at) + s.slice(at + 1 + int(20)); break; // delete
      case 1: s = s.slice(0, at) + pick(YAML_BITS) + s.slice(at); break; // insert a YAML-significant bit
      case 2: { // duplicate a line
        const lines = s.split('\n'); const i = int(lines.length);
        lines.splice(i, 0, lines[i] ?? ''); s = lines.join('\n'); break;
      }
      case 3: { // swap two lines
        const lines = s.split('\n'); const i = int(lines.length); const j = int(lines.length);
        [lines[i], lines[j]] = [lines[j] as string, lines[i] as string]; s = lines.join('\n'); break;
      }
      case 4: { // change a line's indentation
        const lines = s.split('\n'); const i = int(lines.length);
        lines[i] = ' '.repeat(int(9)) + (lines[i] ?? '').trimStart(); s = lines.join('\n'); break;
      }
      default: s = s.slice(0, at) + String.fromCharCode(int(0x3000)) + s.slice(at); // any character
    }
  }
  return s;
}

function randomBytes(): string {
  const n = int(600);
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = int(256);
  return rand() < 0.5 ? b.toString('utf8') : b.toString('latin1');
}

function randomValue(depth: number): unknown {
  const r = rand();
  if (depth > 6 || r < 0.3) return pick<unknown>([1, -1, 0, 1.5, 1e308, 65535, 65536, 443, 'x', '', '*.com', '10.0.0.0/8', 'api.example.com', null, true, []]);
  if (r < 0.6) return Array.from({ length: int(4) }, () => randomValue(depth + 1));
  const keys = ['version', 'groups', 'global', 'deny', 'allow', 'host', 'address', 'ports', 'tls', 'mode', 'name', 'sources', 'address_exceptions', 'zzz'];
  return Object.fromEntries(Array.from({ length: int(5) }, () => [pick(keys), randomValue(depth + 1)]));
}

function nasty(): string[] {
  const deep = 5000;
  return [
    '['.repeat(deep), '{a: '.repeat(deep), `${'['.repeat(deep)}${']'.repeat(deep)}`,
    Array.from({ length: 2000 }, (_, i) => `${' '.repeat(i)}- x`).join('\n'),
    Array.from({ length: 300 }, (_, i) => `${'  '.repeat(i)}a${i}:`).join('\n'),
    `version: 1${'0'.repeat(400)}\ngroups: []\n`,
    'version: 1\ngroups:\n  - name: g\n    allow:\n      - host: a.example.com\n        ports: [1e400, -0, 0x1bb, 0o773, .inf, .nan]\n',
    `version: 1\ngroups:\n  - name: ${'g'.repeat(100_000)}\n`,
    `version: 1\ngroups:\n  - name: g\n    allow: ["${'a.'.repeat(200)}example.com", "${'x'.repeat(70)}.example.com"]\n`,
    'a: &a [*a]\n', '&a a: *a\n', 'version: 1\ngroups: &g [*g]\n',
    ['a: &a [x,x,x,x,x,x,x,x,x,x]', 'b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]', 'c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]', 'd: [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]'].join('\n'),
    '__proto__: {polluted: true}\nversion: 1\ngroups: []\n',
    'version: 1\ngroups:\n  - __proto__: {name: x}\n    name: g\n',
    'version: 1\ngroups:\n  - name: constructor\n  - name: __proto__\n  - name: hasOwnProperty\n',
    'version: 1\ngroups: []\n? [a, b]\n: c\n', 'version: 1\ngroups: []\n? {a: 1}\n: c\n', '{version: 1, groups: [], 1: 2}',
    '%YAML 1.1\n---\nversion: 1\ngroups: []\n', '%TAG !e! tag:example.com,2000:\n---\nversion: !e!x 1\ngroups: []\n',
    '\uFEFFversion: 1\ngroups: []\n', 'version: 1\r\ngroups: []\r\n', '\u0000', '', ' ', '---', '...', '#', '~', 'null', '[]', '{}', '"', "'",
  ];
}

function checkShape(r: LoadResult, what: string): void {
  assert.equal(typeof r.ok, 'boolean', what);
  assert.ok(Array.isArray(r.warnings), what);
  const list = r.ok ? r.warnings : [...r.problems, ...r.warnings];
  if (!r.ok) assert.ok(r.problems.length >= 1, what);
  for (const p of list) {
    assert.equal(typeof p.path, 'string', what);
    assert.ok(typeof p.message === 'string' && p.message.length > 0, what);
    if (p.line !== undefined) assert.ok(Number.isInteger(p.line) && p.line >= 1, what);
  }
  if (r.ok) exercise(r.policy, what);
}

function randomHost(): string {
  switch (int(6)) {
    case 0: return '';
    case 1: return 'a.'.repeat(int(3000)) + 'example.com';
    case 2: return pick(['.', '..', '.example.com', 'example.com.', 'x..y', '*.vendor.example', '**', '[::1]', '::1', '999.1.1.1', '\u0000']);
    case 3: return randomBytes().slice(0, 80);
    default: return `${pick(['api', 'a.b', 'x', 'upload.updates'])}.${pick(['vendor.example', 'evil.example', 'updates.vendor.example', 'cdn.vendor.example'])}`;
  }
}

function exercise(p: CompiledPolicy, what: string): void {
  const groups = [...p.groups, { name: 'ghost', mode: 'enforce' as const }, { name: '__proto__', mode: 'report' as const }];
  for (let i = 0; i < 5; i++) {
    const d = p.decide({
      group: pick(groups),
      dest: { host: randomHost(), port: pick([443, 80, 0, -1, 65536, Number.NaN, 1.5, 8443]), kind: pick(['name', 'ipv4', 'ipv6', 'bogus'] as never[]) },
      protocol: pick(['connect', 'http', 'gopher'] as never[]),
    });
    assert.ok(isReason(d.reason) && (d.verdict === 'allow' || d.verdict === 'deny'), what);
    assert.ok(d.verdict === 'deny' || d.reason === 'allowed', what);
    const g = p.groupForSource(pick(['10.20.0.1', '::ffff:10.20.0.1', '', 'x', randomHost()]));
    assert.ok(g === null || p.groups.includes(g), what);
    const v = p.checkAddress(pick(['127.0.0.1', '8.8.8.8', '', randomHost(), '::']), new Set(['127.0.0.1', 'junk', '']));
    assert.equal(typeof v.allowed, 'boolean', what);
  }
}

describe(`fuzz (seed ${SEED})`, () => {
  it('loadPolicy never throws on 2000 random, mutated and hostile inputs', () => {
    const inputs: string[] = [...nasty()];
    while (inputs.length < 700) inputs.push(randomBytes());
    while (inputs.length < 1700) inputs.push(mutate(pick(SEEDS)));
    while (inputs.length < 2000) inputs.push(JSON.stringify(randomValue(0)) ?? 'null');
    let loaded = 0;
    for (const [i, text] of inputs.entries()) {
      let r: LoadResult;
      try {
        r = loadPolicy(text);
      } catch (e) {
        assert.fail(`seed ${SEED} input #${i} threw ${String(e)}: ${JSON.stringify(text.slice(0, 300))}`);
      }
      checkShape(r, `seed ${SEED} input #${i}`);
      if (r.ok) loaded++;
    }
    assert.equal(inputs.length, 2000);
    assert.equal(({} as Record<string, unknown>).polluted, undefined);
    // Mutations must leave some inputs valid, or decide() is not exercised on odd policies.
    assert.ok(loaded >= 20, `only ${loaded} inputs loaded`);
  });

  it('decide, groupForSource and checkAddress never throw on hostile arguments', () => {
    const p = mustLoad(fixtureText('decide.yaml'));
    for (let i = 0; i < 3000; i++) exercise(p, `seed ${SEED} call #${i}`);
    const odd = [undefined, null, 42, {}, { name: 'servers' }];
    for (const group of odd) {
      for (const dest of odd) {
        const d = p.decide({ group, dest, protocol: 'connect' } as never);
        assert.equal(d.verdict, 'deny');
      }
      assert.equal(p.groupForSource(group as never), null);
      assert.equal(p.checkAddress(group as never).allowed, false);
    }
  });
});
