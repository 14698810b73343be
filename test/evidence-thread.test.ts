/**
 * The evidence thread (src/sinks/threaded.ts) as `serve` wires it (createEvidence): file sinks,
 * the `events:` file and the anomaly detectors run there, not on the proxy's thread. A
 * detector's alert comes back onto the bus (where the metrics and the store see it) and into
 * the sinks after the event that caused it; baselines are saved by the thread at close; a file
 * sink whose directory cannot be made stops the start with a clear error.
 */
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createEvidence } from '../src/cli/evidence.js';
import { ChokepointError } from '../src/core/errors.js';
import { EventBus, nowIso } from '../src/events/bus.js';
import type { ChokepointEvent, DecisionEvent } from '../src/events/catalogue.js';
import { validateEvent } from '../src/events/schemas.js';
import { silentLogger } from '../src/gateway/logger.js';
import { FileSink } from '../src/sinks/file.js';
import { config, until } from './helpers/evidence.js';

const cleanup: (() => Promise<void> | void)[] = [];
after(async () => { for (const c of cleanup.reverse()) await c(); });


function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'cp-evidence-thread-'));
  cleanup.push(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

/** A decision as the gateway publishes it (gateway/attempt.ts). */
function decision(n: number, over: Partial<DecisionEvent> = {}): DecisionEvent {
  return {
    v: 1, type: 'gateway.decision', time: nowIso(), id: `00000000-0000-4000-8000-${String(n).padStart(12, '0')}`,
    listener: 'proxy', client_ip: '10.20.0.7', client_port: 40000 + n, group: 'servers', device_id: null, asset_id: null, serial: null,
    method: 'CONNECT', host: 'api.vendor.example', port: 443, address: '192.0.2.10',
    verdict: 'allow', reason: 'allowed', rule: 'groups.servers.allow[0]', mode: 'enforce',
    sni: null, tls_version: null, address_class: null, detail: null, status: null, ...over,
  };
}

const lines = (file: string): ChokepointEvent[] => readFileSync(file, 'utf8').split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as ChokepointEvent);

describe('the evidence thread', () => {
  it('runs the detectors: a policy deny raises one drift alert, which reaches the bus and then the file after its cause; baselines are saved at close', async () => {
    const dataDir = tempDir();
    const file = join(dataDir, 'events.jsonl');
    const cfg = config({ events: file, detect: { defaults: { drift_window: '1h' } } });
    const bus = new EventBus({ onSubscriberError: (err) => { throw err; } });
    const ev = createEvidence({ config: cfg, bus, dataDir, logger: silentLogger });
    cleanup.push(() => ev.close());
    // Neither the file nor the detectors are written or run from this thread.
    assert.equal(ev.sinks.some((s) => s instanceof FileSink), false, 'no file sink on the publishing thread');
    const onBus: ChokepointEvent[] = [];
    bus.subscribe((e) => { onBus.push(e); });

    bus.publish(decision(1));
    for (let i = 2; i <= 4; i++) bus.publish(decision(i, { host: 'exfil.evil.example', address: null, verdict: 'deny', reason: 'no_rule_matched', rule: null, status: 403 }));
    await until(() => onBus.some((e) => e.type === 'alert'), 'the alert back on the bus');
    const alerts = onBus.filter((e) => e.type === 'alert');
    assert.equal(alerts.length, 1, 'three denied attempts in the window: one alert');
    const alert = alerts[0] as ChokepointEvent & { detector: string; device_id: string | null; group: string | null };
    assert.equal(alert.detector, 'destination_drift');
    assert.equal(alert.device_id, '10.20.0.7');
    assert.equal(alert.group, 'servers');
    assert.deepEqual(validateEvent(alert), []);
    assert.ok(onBus.indexOf(alert) > 3, 'after the decisions that caused it');

    await ev.close();
    const written = lines(file);
    assert.deepEqual(written.map((e) => e.type), ['gateway.decision', 'gateway.decision', 'gateway.decision', 'gateway.decision', 'alert'], 'the file has every event once, the alert last');
    assert.deepEqual(written.slice(0, 4).map((e) => (e as DecisionEvent).id), [1, 2, 3, 4].map((n) => decision(n).id), 'in publication order');
    assert.equal((written[4] as { id: string }).id, (alert as { id: string }).id);
    const baselines = JSON.parse(readFileSync(join(dataDir, 'detect-baselines.json'), 'utf8')) as Record<string, unknown>;
    assert.equal(baselines.v, 1, 'saved by the thread at close');
  });

  it('records the alerts raised on the last events before a close: the detectors stop first, the sinks after', async () => {
    const dataDir = tempDir();
    const file = join(dataDir, 'events.jsonl');
    const bus = new EventBus({ onSubscriberError: (err) => { throw err; } });
    const ev = createEvidence({ config: config({ events: file }), bus, dataDir, logger: silentLogger });
    cleanup.push(() => ev.close());
    bus.publish(decision(1, { host: 'exfil.evil.example', address: null, verdict: 'deny', reason: 'denied_by_rule', rule: 'global.deny[0]', status: 403 }));
    await ev.close(); // at once: the decision is still waiting for its hand-over
    assert.deepEqual(lines(file).map((e) => e.type), ['gateway.decision', 'alert'], 'the alert it caused is in the file, after it');
  });

  it('starts for the detectors alone (no sink but stdout or none) and for a file sink alone (detectors off)', async () => {
    const dataDir = tempDir();
    const bus = new EventBus({ onSubscriberError: (err) => { throw err; } });
    const detectOnly = createEvidence({ config: config({ events: 'none' }), bus, dataDir, logger: silentLogger });
    cleanup.push(() => detectOnly.close());
    const onBus: ChokepointEvent[] = [];
    bus.subscribe((e) => { onBus.push(e); });
    bus.publish(decision(1, { host: 'exfil.evil.example', verdict: 'deny', reason: 'denied_by_rule', rule: 'global.deny[0]' }));
    await until(() => onBus.some((e) => e.type === 'alert'), 'an alert with no sink configured');
    await detectOnly.close();

    const file = join(dataDir, 'out', 'audit.jsonl');
    const bus2 = new EventBus({ onSubscriberError: (err) => { throw err; } });
    const fileOnly = createEvidence({ config: config({ events: 'none', detect: { enabled: false }, sinks: [{ type: 'file', name: 'audit', path: file }] }), bus: bus2, dataDir, logger: silentLogger });
    cleanup.push(() => fileOnly.close());
    for (let i = 1; i <= 50; i++) bus2.publish(decision(i));
    await fileOnly.refreshSinkStats();
    await until(() => existsSync(file) && lines(file).length === 50, 'the file sink, written by the thread');
    await fileOnly.refreshSinkStats();
    const view = fileOnly.sinks.find((s) => s.name === 'audit');
    assert.equal(view?.stats().delivered, 50, 'its statistics come from the thread');
    await fileOnly.close();
    assert.deepEqual(lines(file).map((e) => (e as DecisionEvent).client_port), Array.from({ length: 50 }, (_, i) => 40001 + i));
  });

  it('goes on while the publishing thread is blocked: the detectors save their baselines and the file is written without it', async () => {
    const dataDir = tempDir();
    const file = join(dataDir, 'events.jsonl');
    const baselines = join(dataDir, 'detect-baselines.json');
    const bus = new EventBus({ onSubscriberError: (err) => { throw err; } });
    const ev = createEvidence({ config: config({ events: file, detect: { persist_interval: '1s' } }), bus, dataDir, logger: silentLogger });
    cleanup.push(() => ev.close());
    for (let i = 1; i <= 20; i++) bus.publish(decision(i));
    // Hand the events over (the hand-over waits for a timer on this thread), then never yield
    // again until the thread has done both. Saving baselines (a JSON text of every tracked
    // device, written synchronously: measured at 15–30 ms for 10,000 devices and 200–380 ms for
    // 100,000) and writing files must not need, nor stall, the thread that relays tunnels.
    await new Promise((r) => setTimeout(r, 50));
    const deadline = Date.now() + 20_000;
    const written = () => existsSync(file) && readFileSync(file, 'utf8').split('\n').length === 21;
    while (!(existsSync(baselines) && written()) && Date.now() < deadline) { /* this thread stays busy */ }
    assert.ok(existsSync(baselines), 'baselines saved while this thread never yielded');
    assert.ok(written(), 'the 20 events written while this thread never yielded');
    await ev.close();
  });

  it('a file sink whose directory cannot be made stops the start with CONFIG_INVALID naming the sink', () => {
    const dataDir = tempDir();
    const notADir = join(dataDir, 'plain-file');
    writeFileSync(notADir, 'x');
    const cfg = config({ events: 'none', detect: { enabled: false }, sinks: [{ type: 'file', name: 'audit', path: join(notADir, 'sub', 'events.jsonl') }] });
    assert.throws(() => createEvidence({ config: cfg, bus: new EventBus(), dataDir, logger: silentLogger }), (err: unknown) => {
      assert.ok(err instanceof ChokepointError);
      assert.equal(err.code, 'CONFIG_INVALID');
      assert.match(err.message, /sink "audit": cannot create the directory of .*events\.jsonl/);
      return true;
    });
    // The `events:` target too.
    const cfg2 = config({ events: join(notADir, 'events.jsonl'), detect: { enabled: false } });
    assert.throws(() => createEvidence({ config: cfg2, bus: new EventBus(), dataDir, logger: silentLogger }), (err: unknown) => {
      assert.ok(err instanceof ChokepointError && err.code === 'CONFIG_INVALID');
      assert.match(err.message, /^events: cannot create the directory of .*plain-file\/events\.jsonl: EEXIST/);
      return true;
    });
  });
});
