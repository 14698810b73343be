/**
 * LiveSet, the gateway's registry of live connections and tunnels (live-set.ts): membership,
 * O(1) delete by swapping the last member into the freed slot, and iteration over a snapshot
 * that survives members being deleted while it is walked (a shutdown cuts every tunnel).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { LiveSet } from '../src/gateway/live-set.js';

class Member {
  liveSlot = -1;
  constructor(readonly name: string) {}
}

describe('LiveSet', () => {
  it('adds once, deletes any member in O(1), and keeps every other member reachable', () => {
    const s = new LiveSet<Member>();
    const m = ['a', 'b', 'c', 'd'].map((n) => new Member(n));
    for (const x of m) s.add(x);
    s.add(m[1] as Member);
    assert.equal(s.size, 4, 'adding a member twice does not duplicate it');
    assert.equal(s.delete(m[1] as Member), true);
    assert.equal(s.delete(m[1] as Member), false, 'deleting a non-member answers false');
    assert.equal(m[1]?.liveSlot, -1);
    assert.deepEqual(s.values().map((x) => x.name).sort(), ['a', 'c', 'd']);
    for (const x of [m[0], m[2], m[3]] as Member[]) assert.equal(s.has(x), true);
    assert.equal(s.delete(m[3] as Member), true, 'the last member');
    assert.equal(s.delete(m[0] as Member), true, 'the first member');
    assert.deepEqual(s.values().map((x) => x.name), ['c']);
    assert.equal(s.has(m[0] as Member), false);
  });

  it('is not fooled by a member of another set with the same slot number', () => {
    const a = new LiveSet<Member>();
    const b = new LiveSet<Member>();
    const x = new Member('x');
    const y = new Member('y');
    a.add(x);
    b.add(y);
    assert.equal(a.has(y), false);
    assert.equal(a.delete(y), false);
    assert.equal(b.size, 1);
  });

  it('iterates a snapshot: deleting members while walking visits each once', () => {
    const s = new LiveSet<Member>();
    const all = Array.from({ length: 50 }, (_, i) => new Member(`m${i}`));
    for (const x of all) s.add(x);
    const seen: string[] = [];
    for (const x of s.values()) {
      seen.push(x.name);
      s.delete(x);
    }
    assert.equal(s.size, 0);
    assert.deepEqual(seen.sort(), all.map((x) => x.name).sort());
  });
});
