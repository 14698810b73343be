/** Keeps docs/reasons.md and docs/events.md in step with the code, both ways. */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { REASON_CODES, REASONS } from '../src/core/reasons.js';
import { EVENT_TYPES } from '../src/events/catalogue.js';
import { Attempt } from '../src/gateway/attempt.js';

const root = new URL('../../', import.meta.url);
const read = (p: string) => readFileSync(new URL(p, root), 'utf8');

function section(md: string, title: string): string {
  const start = md.indexOf(`## ${title}\n`);
  assert.ok(start >= 0, `docs section "${title}" missing`);
  const rest = md.slice(start + title.length + 4);
  const end = rest.indexOf('\n## ');
  return end < 0 ? rest : rest.slice(0, end);
}

function tableNames(md: string): string[] {
  return [...md.matchAll(/^\| `([a-z_0-9.]+)` \|/gm)].map((m) => m[1] as string);
}

describe('docs', () => {
  it('reasons.md lists exactly the reason codes, with their status', () => {
    const md = read('docs/reasons.md');
    assert.deepEqual(tableNames(md).sort(), [...REASON_CODES].sort());
    for (const code of REASON_CODES) {
      const row = new RegExp(`^\\| \`${code}\` \\| ${REASONS[code].status} \\|`, 'm');
      assert.match(md, row, `status of ${code}`);
    }
  });

  it('events.md documents every event type and exactly the fields of the connection events', () => {
    const md = read('docs/events.md');
    for (const t of EVENT_TYPES) section(md, t);
    const a = new Attempt('proxy', '127.0.0.1', 1);
    assert.deepEqual(tableNames(section(md, 'gateway.decision')).sort(), Object.keys(a.decisionEvent()).sort());
    const closed = a.closedEvent({ protocol: 'connect', bytesUp: 0, bytesDown: 0, closeReason: 'completed', status: null });
    assert.deepEqual(tableNames(section(md, 'gateway.tunnel.closed')).sort(), Object.keys(closed).sort());
  });
});

describe('tests', () => {
  it('assert every deny reason code somewhere in the gateway or policy tests', () => {
    const dir = new URL('test/', root);
    const sources = readdirSync(dir).filter((f) => f.endsWith('.test.ts')).map((f) => readFileSync(new URL(f, dir), 'utf8')).join('\n');
    const missing = REASON_CODES.filter((c) => !new RegExp(`['"\`]${c}['"\`]`).test(sources));
    assert.deepEqual(missing, []);
  });
});
