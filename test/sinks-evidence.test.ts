/**
 * createEvidence() end to end: a real gateway publishes, and the same events reach a webhook
 * receiver (HTTPS), a rotating file and /metrics; a detector's alert follows the event that
 * caused it into every sink; a sink at its bound reports the drop on the bus with an alert.
 */
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Fastify from 'fastify';
import { createEvidence } from '../src/cli/evidence.js';
import { EventBus, nowIso } from '../src/events/bus.js';
import type { ChokepointEvent } from '../src/events/catalogue.js';
import { validateEvent } from '../src/events/schemas.js';
import { silentLogger } from '../src/gateway/logger.js';
import { Gateway } from '../src/gateway/server.js';
import { compile } from './helpers/gateway.js';
import { startEchoOrigin } from './helpers/origins.js';
import { startWebhookReceiver } from './helpers/receivers.js';
import { openTunnel } from './helpers/tunnel.js';
import { config, until } from './helpers/evidence.js';

const SECRET = 'evidence-secret-0123456789';
const cleanup: (() => Promise<void> | void)[] = [];
after(async () => { for (const c of cleanup.reverse()) await c(); });


describe('nowIso', () => {
  it('is the current time as toISOString() gives it, kept per millisecond and new for the next', async () => {
    const before = Date.now();
    const t = nowIso();
    const after = Date.now();
    assert.match(t, /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/);
    const ms = Date.parse(t);
    assert.ok(ms >= before && ms <= after, `${t} within [${before}, ${after}]`);
    // Stepping across a millisecond boundary gives a new text (a cache that never refreshed
    // would stamp every later event with the first time).
    while (Date.now() === after) await new Promise((r) => setImmediate(r));
    const later = nowIso();
    assert.ok(Date.parse(later) > ms, `${later} after ${t}`);
    assert.equal(later, new Date(Date.parse(later)).toISOString());
  });
});

describe('createEvidence', () => {
  it('a real gateway\'s events reach the webhook, the file and /metrics; a drift alert follows into every sink', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'cp-evidence-'));
    cleanup.push(() => rmSync(dataDir, { recursive: true, force: true }));
    const rx = await startWebhookReceiver(SECRET);
    cleanup.push(() => rx.close());
    const origin = await startEchoOrigin();
    cleanup.push(() => origin.close());
    const cfg = config({
      events: 'none',
      sinks: [
        { type: 'webhook', name: 'siem', url: rx.url, secret: SECRET, tls: { ca: rx.pki.caPath }, retry: { min_delay: '20ms', max_delay: '100ms' } },
        { type: 'file', name: 'audit-file', path: join(dataDir, 'out', 'events.jsonl') },
      ],
      metrics: { access: 'viewer' },
      detect: { defaults: { drift_window: '1h' } },
    });
    const bus = new EventBus({ onSubscriberError: (err) => { throw err; } });
    const ev = createEvidence({ config: cfg, bus, dataDir, logger: silentLogger });
    cleanup.push(() => ev.close());
    const policy = `version: 1\naddress_exceptions: [127.0.0.1/32]\ngroups:\n  - name: local\n    sources: [127.0.0.0/8]\n    allow:\n      - address: 127.0.0.1/32\n        ports: [${origin.port}]\n        tls: none\n`;
    const gw = new Gateway({ config: cfg, bus, logger: silentLogger, policy: compile(policy) });
    const { port } = await gw.listen('127.0.0.1', 0);
    cleanup.push(async () => { gw.destroy(); await gw.close(0); });

    const t = await openTunnel(port, `127.0.0.1:${origin.port}`);
    assert.equal(t.status, 200);
    t.socket.resume();
    t.socket.end('x');
    for (let i = 0; i < 3; i++) {
      const d = await openTunnel(port, 'exfil.evil.example:443');
      assert.equal(d.status, 403);
      d.socket.destroy();
    }
    const types = () => rx.events().map((e) => `${e.type}${e.type === 'alert' ? `:${String(e.detector)}` : ''}`);
    await until(() => types().includes('gateway.tunnel.closed') && types().filter((x) => x === 'alert:destination_drift').length === 1 && types().filter((x) => x === 'gateway.decision').length === 4, 'events at the webhook');
    const seen = types();
    assert.equal(seen.filter((x) => x === 'alert:destination_drift').length, 1, 'three attempts, one alert');
    assert.ok(seen.indexOf('alert:destination_drift') > seen.indexOf('gateway.decision'), 'the alert follows its cause');
    for (const e of rx.events()) assert.deepEqual(validateEvent(e), [], JSON.stringify(e));
    const alert = rx.events().find((e) => e.type === 'alert') as Record<string, unknown>;
    assert.equal(alert.device_id, '127.0.0.1');
    assert.equal(alert.group, 'local');

    const file = join(dataDir, 'out', 'events.jsonl');
    await until(() => existsSync(file) && readFileSync(file, 'utf8').includes('destination_drift'), 'the file sink');

    const app = Fastify();
    await app.register(ev.metricsPlugin);
    // The receiver has every event; the sink learns its last batch was accepted a moment later.
    let res = await app.inject({ method: 'GET', url: '/metrics' });
    for (let i = 0; i < 100 && !/chokepoint_sink_backlog_events\{sink="siem"\} 0/.test(res.body); i++) {
      await new Promise((r) => setTimeout(r, 50));
      res = await app.inject({ method: 'GET', url: '/metrics' });
    }
    await app.close();
    assert.equal(res.statusCode, 200);
    assert.match(res.body, /chokepoint_decisions_total\{verdict="deny",reason="no_rule_matched",group="local"\} 3/);
    assert.match(res.body, /chokepoint_alerts_total\{detector="destination_drift",severity="medium"\} 1/);
    assert.match(res.body, /chokepoint_sink_backlog_events\{sink="siem"\} 0/);
    assert.match(res.body, /chokepoint_sink_up\{sink="siem"\} 1/);
    ev.metrics.setCertificateExpiry('ca', new Date(Date.now() + 86_400_000));

    await ev.close();
    assert.ok(existsSync(join(dataDir, 'detect-baselines.json')), 'baselines saved at close');
  });

  it('a sink at its bound publishes sink.dropped and a sink_drop alert on the bus, which the other sinks record', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'cp-evidence-'));
    cleanup.push(() => rmSync(dataDir, { recursive: true, force: true }));
    const rx = await startWebhookReceiver(SECRET, { down: true });
    cleanup.push(() => rx.close());
    const cfg = config({
      events: 'none',
      sinks: [
        { type: 'webhook', name: 'down', url: rx.url, secret: SECRET, tls: { ca: rx.pki.caPath }, buffer: { max_bytes: '64KiB', segment_bytes: '4KiB' }, retry: { min_delay: '1s', max_delay: '1s' } },
        { type: 'file', name: 'local', path: join(dataDir, 'local.jsonl'), types: ['sink.*', 'alert'] },
      ],
      detect: { enabled: false },
    });
    const bus = new EventBus();
    const onBus: ChokepointEvent[] = [];
    bus.subscribe((e) => { if (e.type.startsWith('sink.') || e.type === 'alert') onBus.push(e); });
    const ev = createEvidence({ config: cfg, bus, dataDir, logger: silentLogger });
    cleanup.push(() => ev.close());
    for (let i = 0; i < 3000; i++) {
      bus.publish({ v: 1, type: 'gateway.started', time: new Date().toISOString(), listeners: [`proxy 127.0.0.1:${i}`], version: '0' });
      if (i % 300 === 0) await new Promise((r) => setImmediate(r));
    }
    await until(() => onBus.some((e) => e.type === 'sink.dropped') && onBus.some((e) => e.type === 'alert') && onBus.some((e) => e.type === 'sink.backlog'), 'drop and backlog events');
    const alert = onBus.find((e) => e.type === 'alert');
    assert.ok(alert?.type === 'alert' && alert.detector === 'sink_drop' && alert.severity === 'high');
    assert.ok(onBus.some((e) => e.type === 'sink.backlog' && e.sink === 'down'));
    // The file sink creates its file with its first write, which may come after the bus saw the events.
    await until(() => existsSync(join(dataDir, 'local.jsonl')) && readFileSync(join(dataDir, 'local.jsonl'), 'utf8').includes('"sink_drop"'), 'the local file records the drop');
    // The webhook runs on the sink thread: its figures come over when asked for. Every drop it
    // counted is on the bus once the health events queued before that answer are published.
    // (Health events go to this sink too and can cause later drops: compare until both settle.)
    const onBusDropped = () => onBus.filter((e) => e.type === 'sink.dropped').reduce((n, e) => n + (e.type === 'sink.dropped' ? e.dropped : 0), 0);
    const counted = () => ev.sinks.find((s) => s.name === 'down')?.stats().dropped ?? -1;
    for (let i = 0; i < 100; i++) {
      await ev.refreshSinkStats();
      await new Promise((r) => setTimeout(r, 20));
      if (counted() === onBusDropped()) break;
    }
    assert.ok(counted() > 0, 'the thread reports its drops in the sink statistics');
    assert.equal(onBusDropped(), counted(), 'every counted drop is published');
    await ev.close();
  });
});
