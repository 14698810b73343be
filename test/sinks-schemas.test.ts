/**
 * The event catalogue, its JSON Schemas and docs/events.md stay in step both ways, and events
 * the real gateway emits (allow, deny, tunnel close, lifecycle) validate against the schemas.
 */
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EVENT_TYPES, type ChokepointEvent } from '../src/events/catalogue.js';
import { eventFromJson, jsonOf } from '../src/events/json.js';
import { EVENT_SCHEMAS, jsonSchemaOf, validateEvent, writeSchemas, type SchemaEventType } from '../src/events/schemas.js';
import { startGateway } from './helpers/gateway.js';
import { startEchoOrigin } from './helpers/origins.js';
import { openTunnel } from './helpers/tunnel.js';

const root = new URL('../../', import.meta.url);
const md = readFileSync(new URL('docs/events.md', root), 'utf8');

function section(title: string): string | null {
  const start = md.indexOf(`## ${title}\n`);
  if (start < 0) return null;
  const rest = md.slice(start + title.length + 4);
  const end = rest.indexOf('\n## ');
  return end < 0 ? rest : rest.slice(0, end);
}

describe('event schemas', () => {
  it('exist for exactly the catalogue\'s event types', () => {
    assert.deepEqual(Object.keys(EVENT_SCHEMAS).sort(), [...EVENT_TYPES].sort());
  });

  it('docs/events.md has a section for each schema and no section without one', () => {
    const headings = [...md.matchAll(/^## (\S+)$/gm)].map((m) => m[1]);
    assert.deepEqual(headings.sort(), Object.keys(EVENT_SCHEMAS).sort());
  });

  it('docs/events.md names every field of every event; a field table lists exactly the schema\'s fields', () => {
    for (const t of Object.keys(EVENT_SCHEMAS) as SchemaEventType[]) {
      let text = section(t);
      assert.ok(text !== null, `docs/events.md has no section for ${t}`);
      const same = /Same fields as `([a-z.]+)`/.exec(text);
      if (same) text = section(same[1] as string);
      assert.ok(text !== null);
      const fields = Object.keys(EVENT_SCHEMAS[t].shape);
      const table = [...text.matchAll(/^\| `([a-z_0-9]+)` \|/gm)].map((m) => m[1]);
      if (table.length > 0) assert.deepEqual(table.sort(), [...fields].sort(), `fields of ${t}`);
      else for (const f of fields.filter((f) => !['v', 'type', 'time'].includes(f))) assert.ok(text.includes(`\`${f}\``), `${t}: field ${f} undocumented`);
    }
  });

  it('docs/schemas/*.json are exactly what the code generates (run `node dist/src/events/schemas.js --write`)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'cp-schemas-'));
    try {
      writeSchemas(dir);
      const want = readdirSync(dir).sort();
      assert.deepEqual(readdirSync(new URL('docs/schemas/', root)).sort(), want);
      for (const f of want) assert.equal(readFileSync(new URL(`docs/schemas/${f}`, root), 'utf8'), readFileSync(join(dir, f), 'utf8'), f);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('JSON Schemas are closed objects with an id, a version and every field required', () => {
    const s = jsonSchemaOf('gateway.decision');
    assert.equal(s.$id, 'urn:chokepoint:event:gateway.decision:v1');
    assert.equal(s.additionalProperties, false);
    assert.deepEqual((s.required as string[]).sort(), Object.keys(EVENT_SCHEMAS['gateway.decision'].shape).sort());
  });

  it('rejects malformed events with the offending path', () => {
    const ok = { v: 1, type: 'sink.dropped', time: '2025-01-01T00:00:00.000Z', sink: 'siem', dropped: 3, reason: 'buffer_full' };
    assert.deepEqual(validateEvent(ok), []);
    assert.match(validateEvent({ ...ok, dropped: 0 })[0] as string, /^dropped:/);
    assert.match(validateEvent({ ...ok, reason: 'oops' })[0] as string, /^reason:/);
    assert.match(validateEvent({ ...ok, extra: 1 })[0] as string, /extra/);
    assert.match(validateEvent({ ...ok, time: '2025-01-01T00:00:00+01:00' })[0] as string, /^time:/);
    assert.match(validateEvent({ ...ok, v: 2 })[0] as string, /^v:/);
    assert.deepEqual(validateEvent({ type: 'nope' }), ['unknown event type "nope"']);
    assert.deepEqual(validateEvent(null), ['unknown event type undefined']);
  });
});

describe('events the gateway really emits validate', () => {
  const cleanup: (() => Promise<void>)[] = [];
  after(async () => { for (const c of cleanup) await c(); });

  it('allow + tunnel close + deny + policy loaded', async () => {
    const origin = await startEchoOrigin();
    cleanup.push(() => origin.close());
    const policy = `version: 1\naddress_exceptions: [127.0.0.1/32]\ngroups:\n  - name: local\n    sources: [127.0.0.0/8]\n    allow:\n      - address: 127.0.0.1/32\n        ports: [${origin.port}]\n        tls: none\n`;
    const gw = await startGateway(policy);
    cleanup.push(() => gw.close());
    const t = await openTunnel(gw.port, `127.0.0.1:${origin.port}`);
    assert.equal(t.status, 200);
    t.socket.resume();
    t.socket.end('hello');
    await gw.waitClosed();
    const denied = await openTunnel(gw.port, 'forbidden.example:443');
    assert.equal(denied.status, 403);
    denied.socket.destroy();
    await gw.waitDecision((e) => e.verdict === 'deny');
    const types = new Set(gw.events.map((e) => e.type));
    for (const t of ['gateway.decision', 'gateway.tunnel.closed']) assert.ok(types.has(t as never), t);
    for (const e of gw.events) assert.deepEqual(validateEvent(JSON.parse(JSON.stringify(e))), [], JSON.stringify(e));
  });
});

describe('one JSON text per event', () => {
  it('serializes each event to its own text, however the sinks interleave their requests', () => {
    const a = { v: 1, type: 'sink.dropped', time: '2026-01-01T00:00:00.000Z', sink: 'a', dropped: 1, reason: 'queue_full' } as unknown as ChokepointEvent;
    const b = { ...a, sink: 'b' } as ChokepointEvent;
    const ta = jsonOf(a);
    assert.equal(jsonOf(a), ta);
    assert.equal(JSON.parse(jsonOf(b)).sink, 'b');
    // a, then b, then a again: the remembered text must not leak from one event to another
    assert.equal(jsonOf(a), ta);
    assert.equal(JSON.parse(jsonOf(b)).sink, 'b');
  });

  it('keeps the exact text an event was parsed from (a sink thread writes the bytes it received)', () => {
    const text = '{"v":1,"type":"sink.dropped","time":"2026-01-01T00:00:00.000Z","sink":"caf\\u00e9","dropped":1,"reason":"queue_full"}';
    const e = eventFromJson(text);
    assert.equal(jsonOf(e), text);
    assert.notEqual(JSON.stringify(e), text); // re-serializing would have changed the bytes
  });
});
