/**
 * Network sinks on their own thread (src/sinks/threaded.ts) against a real HTTPS webhook
 * receiver: events cross in order, statistics come back, the hand-over queue is bounded with
 * every refused event reported, and a thread that dies is reported and replaced without
 * losing what its disk buffer held.
 */
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { closeSync, constants as fsConstants, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, readSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConfig } from '../src/config/load.js';
import type { SinkConfig } from '../src/config/evidence.js';
import type { ChokepointEvent } from '../src/events/catalogue.js';
import type { EvidenceEvent } from '../src/events/evidence.js';
import { resolveSink } from '../src/sinks/factory.js';
import { evidenceHeapMb, ThreadedSinks, type ThreadedSinksOptions } from '../src/sinks/threaded.js';
import { formatSyslog, frameOctetCounted } from '../src/sinks/syslog.js';
import { createServer, type AddressInfo } from 'node:net';
import { startWebhookReceiver, type WebhookReceiver } from './helpers/receivers.js';
import { until } from './helpers/evidence.js';

const SECRET = 'test-secret-0123456789abcdef';
const cleanup: (() => unknown)[] = [];
after(async () => { for (const c of cleanup.reverse()) await c(); });

/** A schema-valid event carrying a sequence number (in `down_ms`) and a marker (in `sink`). */
function ev(i: number, sink = 'synthetic'): ChokepointEvent {
  return { v: 1, type: 'sink.recovered', time: new Date().toISOString(), sink, down_ms: i, pending_events: 0 };
}

async function setup(extra: Partial<ThreadedSinksOptions> = {}, sinkExtra: Record<string, unknown> = {}) {
  const dataDir = mkdtempSync(join(tmpdir(), 'cp-sink-thread-'));
  cleanup.push(() => rmSync(dataDir, { recursive: true, force: true }));
  const rx: WebhookReceiver = await startWebhookReceiver(SECRET);
  cleanup.push(() => rx.close());
  const c = parseConfig(JSON.stringify({ sinks: [{ type: 'webhook', name: 'hook', url: rx.url, secret: SECRET, tls: { ca: rx.pki.caPath }, batch_wait: '0s', retry: { min_delay: '20ms', max_delay: '200ms' }, ...sinkExtra }] }));
  if (!c.ok) throw new Error(JSON.stringify(c.problems));
  const emitted: EvidenceEvent[] = [];
  const errors: string[] = [];
  const sinks = new ThreadedSinks({
    sinks: [resolveSink(c.config.sinks[0] as SinkConfig)], dataDir,
    emit: (e) => emitted.push(e), onError: (_sink, err) => errors.push(err.message), ...extra,
  });
  cleanup.push(() => sinks.close());
  return { rx, sinks, emitted, errors, dataDir };
}

const seqs = (rx: WebhookReceiver) => rx.events().map((e) => e.down_ms);
const dropped = (emitted: EvidenceEvent[], reason: string) => emitted.reduce((n, e) => n + (e.type === 'sink.dropped' && e.reason === reason ? e.dropped : 0), 0);

describe('the evidence thread\'s heap limit', () => {
  it('leaves room for every sink\'s own memory bound, and is never below 1 GiB', () => {
    const sinksOf = (obj: Record<string, unknown>) => {
      const c = parseConfig(JSON.stringify({ events: 'none', ...obj }));
      if (!c.ok) throw new Error(JSON.stringify(c.problems));
      return c.config.sinks.map((s) => ({ config: s, tls: {}, hostname: '-' }));
    };
    assert.equal(evidenceHeapMb([]), 1024);
    assert.equal(evidenceHeapMb(sinksOf({ sinks: [{ type: 'file', name: 'a', path: '/tmp/a', max_queue_bytes: '1MiB' }] })), 1024);
    // Three file sinks at the default 256 MiB queue and two network sinks: their bounds come first.
    const many = sinksOf({ sinks: [
      { type: 'file', name: 'a', path: '/tmp/a' }, { type: 'file', name: 'b', path: '/tmp/b' }, { type: 'file', name: 'c', path: '/tmp/c' },
      { type: 'syslog', name: 's', transport: 'tcp', host: '127.0.0.1' }, { type: 'webhook', name: 'w', url: 'https://127.0.0.1:9/x', secret: SECRET },
    ] });
    const held = 3 * 256 * 1.25 + 2 * 72; // held file lines, and two disk buffers' write queues and tails
    assert.ok(evidenceHeapMb(many) > held + 128, `${evidenceHeapMb(many)} MiB leaves room over ${held} MiB held`);
  });
});

describe('network sinks on their own thread', () => {
  it('send syslog exactly as formatSyslog would, from the parts handed over (the thread does not parse the JSON)', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'cp-sink-thread-'));
    cleanup.push(() => rmSync(dataDir, { recursive: true, force: true }));
    let got = Buffer.alloc(0);
    const srv = createServer((sock) => { sock.on('data', (d: Buffer) => { got = Buffer.concat([got, d]); }); sock.on('error', () => {}); });
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    cleanup.push(() => new Promise((r) => srv.close(r)));
    const port = (srv.address() as AddressInfo).port;
    const c = parseConfig(JSON.stringify({ sinks: [{ type: 'syslog', name: 'sl', transport: 'tcp', host: '127.0.0.1', port, batch_wait: '0s', hostname: 'gw-1', app_name: 'chokepoint' }] }));
    if (!c.ok) throw new Error(JSON.stringify(c.problems));
    const sinks = new ThreadedSinks({ sinks: [resolveSink(c.config.sinks[0] as SinkConfig, 'gw-1')], dataDir, emit: () => {}, onError: () => {} });
    cleanup.push(() => sinks.close());
    const now = new Date().toISOString();
    const base = { v: 1, type: 'gateway.decision', time: now, id: 'a', listener: 'proxy', client_ip: '127.0.0.1', client_port: 1, group: 'g', device_id: null, asset_id: null, serial: null, method: 'CONNECT', host: 'xn--bcher-kva.example', port: 443, address: null, rule: null, mode: 'enforce', sni: null, tls_version: null, address_class: null, status: null } as const;
    const events = [
      { ...base, verdict: 'allow', reason: 'allowed', detail: null },
      { ...base, id: 'b', verdict: 'deny', reason: 'no_rule_matched', detail: 'tab\there, newline\nthere, ünïcode' },
      { v: 1, type: 'alert', time: now, id: 'c', detector: 'volume', severity: 'critical', device_id: null, group: 'g', summary: 's', evidence: { n: 1 }, suggested_action: 'x' },
      ev(7),
    ] as ChokepointEvent[];
    for (const e of events) sinks.write(e);
    const fmt = { facility: 16, appName: 'chokepoint', hostname: 'gw-1' };
    // The process id in the header is the gateway's (the thread runs in it).
    const want = Buffer.concat(events.map((e) => frameOctetCounted(formatSyslog(e, { ...fmt, procId: String(process.pid) }))));
    await until(() => got.length >= want.length, 'four syslog frames');
    assert.equal(got.toString('utf8'), want.toString('utf8'));
  });


  it('deliver every event in publication order, and report their statistics when asked', async () => {
    const { rx, sinks } = await setup();
    for (let i = 0; i < 2000; i++) {
      sinks.write(ev(i));
      if (i % 500 === 0) await new Promise((r) => setImmediate(r));
    }
    // The last 499 were written since the last turn: still on this side, and counted as pending.
    assert.ok((sinks.views[0]?.stats().pending_events ?? 0) >= 499, 'events waiting for the thread are pending');
    await rx.waitEvents(2000);
    assert.deepEqual(seqs(rx), Array.from({ length: 2000 }, (_, i) => i), 'all of them, once each, in order');
    await until(() => { void sinks.refresh(); return sinks.views[0]?.stats().delivered === 2000; }, 'the thread counts 2000 delivered');
    assert.deepEqual(sinks.views[0]?.stats(), { pending_events: 0, pending_bytes: 0, dropped: 0, delivered: 2000, up: true });
    await sinks.close();
    sinks.write(ev(9999));
    assert.equal(sinks.views[0]?.stats().pending_events, 0, 'nothing is taken after close');
  });

  it('bound the hand-over queue: past it, events are refused, counted and reported as queue_full; the rest arrive', async () => {
    const { rx, sinks, emitted } = await setup({ maxBytes: 4000 });
    // One synchronous burst: nothing reaches the thread until it ends, so the bound is hit.
    for (let i = 0; i < 200; i++) sinks.write(ev(i));
    const refused = sinks.views[0]?.stats().dropped ?? 0;
    assert.ok(refused > 100 && refused < 200, `most of the burst is refused (${refused})`);
    await until(() => dropped(emitted, 'queue_full') === refused, 'the refusals are reported');
    const kept = 200 - refused;
    await rx.waitEvents(kept);
    assert.deepEqual(seqs(rx), Array.from({ length: kept }, (_, i) => i), 'the oldest are kept, the newest refused');
    const reported = emitted.find((e) => e.type === 'sink.dropped');
    assert.ok(reported?.type === 'sink.dropped' && reported.sink === 'hook');
  });

  it('a thread that dies is reported (thread_failed, with what it held) and replaced; later events arrive', async () => {
    const { rx, sinks, emitted, errors } = await setup({ workerUrl: new URL('./helpers/failing-sink-worker.js', import.meta.url) });
    for (let i = 0; i < 10; i++) sinks.write(ev(i));
    await rx.waitEvents(10);
    // One batch: a marker event that kills the thread, with four more.
    sinks.write(ev(100, 'crash.invalid'));
    for (let i = 101; i < 105; i++) sinks.write(ev(i));
    await until(() => dropped(emitted, 'thread_failed') === 5, 'the lost batch is reported');
    assert.ok(errors.some((m) => /evidence thread exited \(code 7\); restarting/.test(m)), errors.join('; '));
    // Written while the replacement starts: queued, then delivered by the new thread.
    for (let i = 200; i < 210; i++) sinks.write(ev(i));
    await rx.waitEvents(20);
    assert.deepEqual(seqs(rx), [...Array.from({ length: 10 }, (_, i) => i), ...Array.from({ length: 10 }, (_, i) => 200 + i)]);
    await sinks.refresh();
    assert.equal(sinks.views[0]?.stats().dropped, 5, 'the statistics count the lost batch');
  });

  it('a thread that dies reports what a failing file sink held only in memory (thread_failed), not only the batch it had not acknowledged', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'cp-sink-thread-'));
    cleanup.push(() => rmSync(dataDir, { recursive: true, force: true }));
    const path = join(dataDir, 'audit.jsonl');
    mkdirSync(path); // a directory where the file should be: every write fails (EISDIR) and the lines wait in memory
    const c = parseConfig(JSON.stringify({ events: 'none', sinks: [{ type: 'file', name: 'audit', path }] }));
    if (!c.ok) throw new Error(JSON.stringify(c.problems));
    const emitted: EvidenceEvent[] = [];
    const errors: string[] = [];
    const sinks = new ThreadedSinks({
      sinks: [resolveSink(c.config.sinks[0] as SinkConfig)], dataDir, workerUrl: new URL('./helpers/failing-sink-worker.js', import.meta.url),
      emit: (e) => emitted.push(e), onError: (_sink, err) => errors.push(err.message),
    });
    cleanup.push(() => sinks.destroy());
    for (let i = 0; i < 20; i++) sinks.write(ev(i));
    await until(() => errors.some((m) => /EISDIR/.test(m)), 'the failed write');
    // More after the failure; their acknowledgement carries what the sink holds in memory.
    for (let i = 20; i < 25; i++) sinks.write(ev(i));
    await new Promise((r) => setTimeout(r, 30)); // after the hand-over's 10 ms timer: the batch is on its way
    await sinks.refresh(); // answered after that batch's acknowledgement (one port, in order)
    assert.equal(sinks.views[0]?.stats().pending_events, 25, '25 lines held by the failing sink');
    sinks.write(ev(100, 'crash.invalid'));
    await until(() => dropped(emitted, 'thread_failed') > 0, 'the loss reported');
    assert.equal(dropped(emitted, 'thread_failed'), 26, 'the 25 held in memory and the batch never acknowledged');
    assert.ok(emitted.every((e) => e.type !== 'sink.dropped' || e.sink === 'audit'));
  });

  it('refusals and losses of events only the detectors take are reported too (sink "detectors")', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'cp-sink-thread-'));
    cleanup.push(() => rmSync(dataDir, { recursive: true, force: true }));
    const c = parseConfig('{}');
    if (!c.ok) throw new Error(JSON.stringify(c.problems));
    const emitted: EvidenceEvent[] = [];
    const sinks = new ThreadedSinks({ sinks: [], dataDir, detect: c.config.detect, maxBytes: 4000, emit: (e) => emitted.push(e), onError: () => {} });
    cleanup.push(() => sinks.close());
    const decision = (i: number): ChokepointEvent => ({
      v: 1, type: 'gateway.decision', time: new Date().toISOString(), id: `d-${i}`, listener: 'proxy', client_ip: '10.0.0.1', client_port: i, group: 'g', device_id: null, asset_id: null, serial: null,
      method: 'CONNECT', host: 'a.example', port: 443, address: null, verdict: 'deny', reason: 'no_rule_matched', rule: null, mode: 'enforce', sni: null, tls_version: null, address_class: null, detail: null, status: 403,
    });
    for (let i = 0; i < 100; i++) sinks.write(decision(i));
    // A type no detector takes is not handed over at all: nothing to refuse.
    for (let i = 0; i < 100; i++) sinks.write(ev(i));
    await until(() => emitted.some((e) => e.type === 'sink.dropped'), 'the refusal reported');
    const refused = emitted.filter((e) => e.type === 'sink.dropped');
    assert.ok(refused.every((e) => e.type === 'sink.dropped' && e.sink === 'detectors' && e.reason === 'queue_full'), JSON.stringify(refused));
    const n = dropped(emitted, 'queue_full');
    assert.ok(n > 80 && n < 100, `most of the 100 decisions refused at a 4,000-byte bound (${n})`);
  });

  it('a thread that dies leaves its disk buffer to the next one: events it had taken but not delivered arrive', async () => {
    const { rx, sinks, emitted } = await setup({ workerUrl: new URL('./helpers/failing-sink-worker.js', import.meta.url) }, { batch_max: 10 });
    rx.status = 503; // the receiver is down: events wait in the disk buffer
    for (let i = 0; i < 30; i++) sinks.write(ev(i));
    await until(() => { void sinks.refresh(); return (sinks.views[0]?.stats().pending_events ?? 0) === 30 && emitted.some((e) => e.type === 'sink.backlog'); }, 'the thread buffers all 30');
    // Give the buffer's writer time to put them on disk, then kill the thread.
    await new Promise((r) => setTimeout(r, 200));
    sinks.write(ev(100, 'crash.invalid'));
    await until(() => dropped(emitted, 'thread_failed') === 1, 'only the marker batch is lost');
    rx.status = 204;
    await rx.waitEvents(30);
    const got = new Set(seqs(rx));
    for (let i = 0; i < 30; i++) assert.ok(got.has(i), `event ${i} survived the thread's death`);
  });
});

describe('file sinks on the evidence thread', () => {
  it('a file sink on a FIFO whose reader stops reading holds up no other sink on the thread', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'cp-fifo-'));
    cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
    const fifo = join(dir, 'pipe');
    if (spawnSync('mkfifo', [fifo]).status !== 0) return t.skip('needs mkfifo');
    // A reader that does not read: once the pipe holds what it can (64 KiB on Linux), a write
    // to it waits. (Non-blocking, so that opening it does not wait for the writer.)
    const reader = openSync(fifo, fsConstants.O_RDONLY | fsConstants.O_NONBLOCK);
    const plain = join(dir, 'plain.jsonl');
    const c = parseConfig(JSON.stringify({ sinks: [{ type: 'file', name: 'pipe', path: fifo }, { type: 'file', name: 'plain', path: plain }] }));
    if (!c.ok) throw new Error(JSON.stringify(c.problems));
    const sinks = new ThreadedSinks({ sinks: c.config.sinks.map((s) => resolveSink(s as SinkConfig)), dataDir: dir, emit: () => {}, onError: () => {} });
    const drain = Buffer.alloc(1 << 16);
    let draining: NodeJS.Timeout | null = null;
    cleanup.push(async () => {
      // Let the pipe's writes finish, so that the sinks can close.
      draining ??= setInterval(() => { try { while (readSync(reader, drain) > 0); } catch { /* EAGAIN: empty for now */ } }, 5);
      await sinks.close();
      clearInterval(draining);
      closeSync(reader);
    });
    // About 600 bytes each: 400 of them are several times what the pipe holds.
    for (let i = 0; i < 400; i++) {
      sinks.write(ev(i, 'x'.repeat(500)));
      if (i % 50 === 0) await new Promise((r) => setTimeout(r, 5));
    }
    const lines = () => (existsSync(plain) ? readFileSync(plain, 'utf8').split('\n').length - 1 : 0);
    await until(() => lines() === 400, 'all 400 events in the other sink\'s file', 10_000);
    assert.deepEqual(readFileSync(plain, 'utf8').trim().split('\n').map((l) => (JSON.parse(l) as { down_ms: number }).down_ms), Array.from({ length: 400 }, (_, i) => i));
  });
});
