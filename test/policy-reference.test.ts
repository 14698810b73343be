/**
 * Differential test: the compiled matcher (tries) against a literal, linear reading of the
 * semantics in DESIGN §3, on random policies and destinations drawn from a small alphabet so
 * that overlaps, ties and near misses are frequent.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Destination } from '../src/core/destination.js';
import { cidrContains, parseCidr, parseIp } from '../src/policy/cidr.js';
import { parseHostPattern, patternMatches } from '../src/policy/hostpattern.js';
import { compilePolicy, loadPolicy, type CompiledPolicy, type Decision, type Protocol } from '../src/policy/index.js';

type Rule = { host?: string; address?: string; ports?: number[]; tls?: 'required' | 'optional' | 'none' };
type Doc = { version: 1; global?: { deny: Rule[] }; groups: { name: string; sources: string[]; allow: Rule[]; deny: Rule[] }[] };

function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const SEED = Number(process.env.POLICY_FUZZ_SEED ?? 20240501);

/** The semantics, read literally: filter every rule, then pick. No tries, no scores. */
function reference(doc: Doc, group: string, d: Destination, protocol: Protocol): Pick<Decision, 'verdict' | 'reason' | 'ruleId' | 'tls'> {
  const deny = (reason: Decision['reason'], ruleId: string | null) => ({ verdict: 'deny' as const, reason, ruleId, tls: 'none' as const });
  const isName = d.kind === 'name';
  const matches = (r: Rule): boolean => {
    if (isName) {
      if (r.host === undefined) return false;
      const p = parseHostPattern(r.host);
      return p.ok && patternMatches(p.pattern, d.host);
    }
    if (r.address === undefined) return false;
    const c = parseCidr(r.address);
    const ip = parseIp(d.host);
    return c.ok && ip !== null && cidrContains(c.cidr, ip);
  };
  const denyPort = (r: Rule): boolean => r.ports === undefined || r.ports.includes(d.port);
  const gi = (doc.global?.deny ?? []).findIndex((r) => matches(r) && denyPort(r));
  if (gi >= 0) return deny('denied_by_rule', `global.deny[${gi}]`);
  const g = doc.groups.find((x) => x.name === group);
  const none = isName ? deny('no_rule_matched', null) : deny('ip_literal_denied', null);
  if (!g) return none;
  const di = g.deny.findIndex((r) => matches(r) && denyPort(r));
  if (di >= 0) return deny('denied_by_rule', `groups.${g.name}.deny[${di}]`);
  const hostHits = g.allow.map((r, i) => ({ r, i })).filter(({ r }) => matches(r));
  if (hostHits.length === 0) return none;
  const portHits = hostHits.filter(({ r }) => (r.ports ?? [443]).includes(d.port));
  if (portHits.length === 0) return deny('port_not_allowed', `groups.${g.name}.allow[${hostHits[0]?.i}]`);
  // Most specific: exact > *. > **., then the longer base; for addresses the longer prefix.
  const rank = (r: Rule): [number, number] => {
    if (r.address !== undefined) return [0, Number(r.address.split('/')[1])];
    const h = r.host as string;
    const kind = h.startsWith('**.') ? 0 : h.startsWith('*.') ? 1 : 2;
    return [kind, h.split('.').length];
  };
  let best = portHits[0] as { r: Rule; i: number };
  for (const x of portHits.slice(1)) {
    const [a, b] = [rank(x.r), rank(best.r)];
    if (a[0] > b[0] || (a[0] === b[0] && a[1] > b[1])) best = x;
  }
  const tls = best.r.tls ?? (d.port === 443 ? 'required' : 'none');
  const id = `groups.${g.name}.allow[${best.i}]`;
  if (protocol === 'http' && tls === 'required') return deny('not_tls', id);
  return { verdict: 'allow', reason: 'allowed', ruleId: id, tls };
}

function generate(rand: () => number): { doc: Doc; dests: Destination[] } {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)] as T;
  const labels = ['a', 'b', 'c', 'xn--bcher-kva'];
  const bases = ['ex.test', 'ex2.test', 'sub.ex.test'];
  const name = (n: number): string => [...Array.from({ length: n }, () => pick(labels)), pick(bases)].join('.');
  const ports = (): number[] | undefined => {
    if (rand() < 0.4) return undefined;
    const set = new Set<number>();
    for (let i = 0, n = 1 + Math.floor(rand() * 2); i < n; i++) set.add(pick([80, 443, 8443]));
    return [...set];
  };
  const tls = (): Rule['tls'] => (rand() < 0.5 ? undefined : pick(['required', 'optional', 'none'] as const));
  const v4 = (): string => `192.0.2.${Math.floor(rand() * 256)}`;
  const v6 = (): string => `2001:db8::${Math.floor(rand() * 256).toString(16)}`;
  const cidr = (): string => {
    const six = rand() < 0.3;
    const prefix = six ? 120 + Math.floor(rand() * 9) : 24 + Math.floor(rand() * 9);
    const c = parseCidr(`${six ? v6() : v4()}/${prefix}`);
    if (c.ok) return c.cidr.text;
    const net = /^use "([^"]+)"/.exec(c.fix ?? '')?.[1]; // host bits set: take the network the fix names
    if (net === undefined) throw new Error(`unexpected: ${c.message}`);
    return net;
  };
  const rule = (allow: boolean): Rule => {
    const r: Rule = {};
    if (rand() < 0.8) {
      const kind = pick(['', '', '*.', '**.']);
      r.host = kind + name(Math.floor(rand() * 2));
    } else {
      r.address = cidr();
    }
    const p = ports();
    if (p) r.ports = p;
    if (allow) { const t = tls(); if (t) r.tls = t; }
    return r;
  };
  const list = (n: number, allow: boolean): Rule[] => Array.from({ length: n }, () => rule(allow));
  const doc: Doc = {
    version: 1,
    global: { deny: list(Math.floor(rand() * 3), false) },
    groups: [
      { name: 'g1', sources: ['10.1.0.0/16'], allow: list(Math.floor(rand() * 12), true), deny: list(Math.floor(rand() * 3), false) },
      { name: 'g2', sources: ['10.2.0.0/16'], allow: list(Math.floor(rand() * 6), true), deny: [] },
    ],
  };
  const dests: Destination[] = [];
  for (let i = 0; i < 60; i++) {
    const port = pick([80, 443, 8443, 22]);
    const r = rand();
    if (r < 0.75) dests.push({ host: name(Math.floor(rand() * 4)), port, kind: 'name' });
    else if (r < 0.9) dests.push({ host: v4(), port, kind: 'ipv4' });
    else dests.push({ host: v6(), port, kind: 'ipv6' });
  }
  return { doc, dests };
}

describe('decide() agrees with a literal reading of the semantics', () => {
  it(`on 400 random policies × 60 destinations × 2 protocols × 3 groups (seed ${SEED})`, () => {
    const rand = prng(SEED);
    let compared = 0;
    const reasons = new Set<string>();
    for (let n = 0; n < 400; n++) {
      const { doc, dests } = generate(rand);
      const viaYaml = loadPolicy(JSON.stringify(doc));
      const viaValue = compilePolicy(doc);
      assert.ok(viaYaml.ok && viaValue.ok, `generated policy refused: ${JSON.stringify(viaYaml.ok ? null : viaYaml.problems)}`);
      for (const policy of [viaYaml.policy, viaValue.policy] as CompiledPolicy[]) {
        for (const dest of dests) {
          for (const protocol of ['connect', 'http'] as const) {
            for (const group of ['g1', 'g2', 'nope']) {
              const got = policy.decide({ group: { name: group, mode: 'enforce' }, dest, protocol });
              const want = reference(doc, group, dest, protocol);
              assert.deepEqual({ ...got }, want, `seed ${SEED} policy #${n} ${group} ${dest.host}:${dest.port} ${protocol}\n${JSON.stringify(doc)}`);
              reasons.add(got.reason);
              compared++;
            }
          }
        }
      }
    }
    assert.ok(compared > 100_000);
    // The generator must reach every reason, or the comparison proves little.
    assert.deepEqual([...reasons].sort(), ['allowed', 'denied_by_rule', 'ip_literal_denied', 'no_rule_matched', 'not_tls', 'port_not_allowed']);
  });
});
