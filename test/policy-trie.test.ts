/**
 * The matching structures on their own: the host trie (including hash collisions between
 * suffixes) and the CIDR prefix trie.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CidrTrie, parseCidr, parseIp } from '../src/policy/cidr.js';
import { parseHostPattern, type HostPattern } from '../src/policy/hostpattern.js';
import { HostTrie, suffixHash } from '../src/policy/hosttrie.js';

function pat(s: string): HostPattern {
  const p = parseHostPattern(s);
  assert.ok(p.ok, s);
  return p.pattern;
}

function matches(t: HostTrie<string>, host: string): [string, number][] {
  const out: string[] = [];
  const scores: number[] = [];
  const n = t.match(host, out, scores, 0);
  return out.slice(0, n).map((r, i) => [r, scores[i] as number]);
}

describe('HostTrie', () => {
  const t = new HostTrie<string>();
  for (const p of ['example.com', '*.example.com', '**.example.com', 'a.example.com', '**.a.example.com', '*.a.example.com']) t.insert(pat(p), p);

  it('matches exact, one label and any depth, with specificity', () => {
    assert.deepEqual(matches(t, 'example.com'), [['example.com', 5]]);
    assert.deepEqual(matches(t, 'a.example.com'), [['**.example.com', 4], ['*.example.com', 5], ['a.example.com', 7]]);
    assert.deepEqual(matches(t, 'b.a.example.com'), [['**.example.com', 4], ['**.a.example.com', 6], ['*.a.example.com', 7]]);
    assert.deepEqual(matches(t, 'c.b.a.example.com'), [['**.example.com', 4], ['**.a.example.com', 6]]);
    assert.deepEqual(matches(t, 'com'), []);
    assert.deepEqual(matches(t, 'xexample.com'), []);
    assert.deepEqual(matches(t, 'example.com.evil'), []);
    assert.deepEqual(matches(t, ''), []);
  });

  it('keeps suffixes whose hashes collide apart', () => {
    // Birthday search for two different labels whose full names hash alike.
    const seen = new Map<number, string>();
    let pair: [string, string] | null = null;
    for (let i = 0; pair === null && i < 2_000_000; i++) {
      const name = `h${i.toString(36)}.example.com`;
      const h = suffixHash(name);
      const other = seen.get(h);
      if (other !== undefined) pair = [other, name];
      else seen.set(h, name);
    }
    assert.ok(pair, 'no collision found');
    const [a, b] = pair;
    const c = new HostTrie<string>();
    c.insert(pat(a), 'A');
    c.insert(pat(`**.${b}`), 'B');
    assert.deepEqual(matches(c, a), [['A', 7]]);
    assert.deepEqual(matches(c, b), []);
    assert.deepEqual(matches(c, `x.${b}`), [['B', 6]]);
    assert.deepEqual(matches(c, `x.${a}`), []);
  });

  it('finds covering rules for shadowing', () => {
    const d = new HostTrie<string>();
    for (const p of ['**.example.com', '*.b.example.com', 'c.example.com']) d.insert(pat(p), p);
    const cover = (s: string) => d.findCovering(pat(s), () => true) ?? null;
    assert.equal(cover('x.example.com'), '**.example.com');
    assert.equal(cover('*.example.com'), '**.example.com');
    assert.equal(cover('**.example.com'), '**.example.com');
    assert.equal(cover('example.com'), null);
    const e = new HostTrie<string>();
    for (const p of ['*.b.example.com', 'c.example.com']) e.insert(pat(p), p);
    const cover2 = (s: string) => e.findCovering(pat(s), () => true) ?? null;
    assert.equal(cover2('a.b.example.com'), '*.b.example.com');
    assert.equal(cover2('*.b.example.com'), '*.b.example.com');
    assert.equal(cover2('**.b.example.com'), null);
    assert.equal(cover2('x.a.b.example.com'), null);
    assert.equal(cover2('c.example.com'), 'c.example.com');
    assert.equal(cover2('*.c.example.com'), null);
  });
});

describe('CidrTrie', () => {
  const t = new CidrTrie<string>();
  for (const c of ['0.0.0.0/0', '10.0.0.0/8', '10.1.0.0/16', '10.1.2.3/32', '::/0', '2001:db8::/32']) {
    const p = parseCidr(c);
    assert.ok(p.ok);
    t.insert(p.cidr, c);
  }
  const ip = (s: string) => { const p = parseIp(s); assert.ok(p); return p; };

  it('returns every containing block, shortest first, per family', () => {
    assert.deepEqual(t.matches(ip('10.1.2.3')), ['0.0.0.0/0', '10.0.0.0/8', '10.1.0.0/16', '10.1.2.3/32']);
    assert.deepEqual(t.matches(ip('10.1.2.4')), ['0.0.0.0/0', '10.0.0.0/8', '10.1.0.0/16']);
    assert.deepEqual(t.matches(ip('11.0.0.0')), ['0.0.0.0/0']);
    assert.deepEqual(t.matches(ip('2001:db8::1')), ['::/0', '2001:db8::/32']);
    assert.deepEqual(t.matches(ip('::ffff:10.1.2.3')), ['0.0.0.0/0', '10.0.0.0/8', '10.1.0.0/16', '10.1.2.3/32']);
  });

  it('finds the longest block and the blocks within one', () => {
    assert.equal(t.longest(ip('10.1.9.9')), '10.1.0.0/16');
    assert.equal(t.longest(ip('2001:db9::')), '::/0');
    const p = parseCidr('10.0.0.0/8');
    assert.ok(p.ok);
    assert.deepEqual(t.within(p.cidr).sort(), ['10.0.0.0/8', '10.1.0.0/16', '10.1.2.3/32']);
  });
});
