/**
 * Large policies are parsed on a worker thread (policy/offthread.ts) so a reload does not
 * freeze live tunnels; the result must be exactly what loadPolicy() gives in place.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { loadPolicy, loadPolicyOffThread, OFFTHREAD_MIN_BYTES } from '../src/policy/index.js';

function bigPolicy(n: number, broken = false): string {
  const rules: string[] = [];
  for (let i = 0; i < n; i++) rules.push(`      - host: h${i}.vendor${i % 97}.example\n        ports: [443]`);
  if (broken) rules.push('      - host: "*.com"');
  return `version: 1\ngroups:\n  - name: g\n    sources: [10.0.0.0/8]\n    allow:\n${rules.join('\n')}\n`;
}

describe('loadPolicyOffThread', () => {
  it('loads a policy above the threshold with the same decisions and digest as in place', async () => {
    const text = bigPolicy(3000);
    assert.ok(text.length >= OFFTHREAD_MIN_BYTES, 'the fixture is big enough to use the worker');
    const off = await loadPolicyOffThread(text);
    const here = loadPolicy(text);
    assert.ok(off.ok && here.ok);
    assert.equal(off.policy.digest, here.policy.digest);
    const g = off.policy.groupForSource('10.1.1.1');
    assert.ok(g);
    const dest = { kind: 'name', host: 'h2999.vendor89.example', port: 443 } as const;
    assert.equal(off.policy.decide({ group: g, dest, protocol: 'connect' }).verdict, 'allow');
    assert.equal(off.policy.decide({ group: g, dest: { ...dest, host: 'h3000.vendor0.example' }, protocol: 'connect' }).reason, 'no_rule_matched');
  });

  it('reports problems found on the worker with their path and line', async () => {
    const text = bigPolicy(3000, true);
    const r = await loadPolicyOffThread(text);
    assert.equal(r.ok, false);
    if (r.ok) return;
    const p = r.problems.find((x) => x.path === 'groups[0].allow[3000].host');
    assert.ok(p, JSON.stringify(r.problems));
    assert.equal(p.line, text.split('\n').findIndex((l) => l.includes('"*.com"')) + 1);
  });

  it('never throws on input that is not text', async () => {
    const r = await loadPolicyOffThread(42 as unknown as string);
    assert.equal(r.ok, false);
  });
});
