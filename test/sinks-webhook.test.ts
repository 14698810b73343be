/**
 * Webhook sink against a real local HTTPS receiver (certificate made for this run): signed
 * batches, retries across an outage, 100k events across an outage and a restart with zero
 * loss and order kept, and the bound: oldest dropped, counted and reported.
 */
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConfig } from '../src/config/load.js';
import type { SinkConfig } from '../src/config/evidence.js';
import type { ChokepointEvent } from '../src/events/catalogue.js';
import type { EvidenceEvent } from '../src/events/evidence.js';
import { validateEvent } from '../src/events/schemas.js';
import { backoff, BufferedSink } from '../src/sinks/buffered.js';
import { createSink } from '../src/sinks/factory.js';
import type { Sink } from '../src/sinks/types.js';
import { createHmac } from 'node:crypto';
import { signWebhook, verifyWebhook, WebhookTransport } from '../src/sinks/webhook.js';
import { startWebhookReceiver, type WebhookReceiver } from './helpers/receivers.js';

const SECRET = 'test-secret-0123456789abcdef';
const dirs: string[] = [];
after(() => { for (const d of dirs) rmSync(d, { recursive: true, force: true }); });

function tmp(): string {
  const d = mkdtempSync(join(tmpdir(), 'cp-wh-'));
  dirs.push(d);
  return d;
}

/** A schema-valid event carrying a sequence number (in `down_ms`) to check order. */
function ev(i: number): ChokepointEvent {
  return { v: 1, type: 'sink.recovered', time: new Date().toISOString(), sink: 'synthetic', down_ms: i, pending_events: 0 };
}

function webhookSink(rx: WebhookReceiver, dataDir: string, extra: Record<string, unknown> = {}, emitted: EvidenceEvent[] = []): Sink {
  const c = parseConfig(JSON.stringify({ sinks: [{ type: 'webhook', name: 'hook', url: rx.url, secret: SECRET, tls: { ca: rx.pki.caPath }, retry: { min_delay: '20ms', max_delay: '200ms' }, ...extra }] }));
  if (!c.ok) throw new Error(JSON.stringify(c.problems));
  return createSink(c.config.sinks[0] as SinkConfig, { dataDir, emit: (e) => emitted.push(e), onError: () => {} });
}

/** A receiver and a sink to it for one test (receiver settings applied first); both closed after it. */
async function withWebhook(
  o: { down?: boolean; status?: number; maxBodyBytes?: number; sink?: Record<string, unknown> },
  fn: (t: { rx: WebhookReceiver; sink: Sink; emitted: EvidenceEvent[] }) => Promise<void>,
): Promise<void> {
  const rx = await startWebhookReceiver(SECRET, o.down ? { down: true } : undefined);
  if (o.status !== undefined) rx.status = o.status;
  if (o.maxBodyBytes !== undefined) rx.maxBodyBytes = o.maxBodyBytes;
  const emitted: EvidenceEvent[] = [];
  const sink = webhookSink(rx, tmp(), o.sink, emitted);
  try {
    await fn({ rx, sink, emitted });
  } finally {
    await sink.close();
    await rx.close();
  }
}

async function until(pred: () => boolean, ms = 30_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('webhook signature', () => {
  it('is HMAC-SHA256 over "<timestamp>.<batch>.<body>", refused when tampered, re-keyed, stale or re-labelled', () => {
    const body = Buffer.from('[{"a":1}]');
    const batch = '0123456789abcdef-1-0-9';
    const sig = signWebhook(SECRET, 1_700_000_000, batch, body);
    // The contract, computed independently: what a receiver in any language does.
    assert.equal(sig, `v2=${createHmac('sha256', SECRET).update(`1700000000.${batch}.[{"a":1}]`).digest('hex')}`);
    const h = { timestamp: '1700000000', signature: sig, batch };
    assert.equal(verifyWebhook(SECRET, { ...h, batch: '0123456789abcdef-1-0-10' }, body, 1_700_000_010), false, 'a replay under another batch id (to get past deduplication)');
    assert.equal(verifyWebhook(SECRET, h, body, 1_700_000_010), true);
    assert.equal(verifyWebhook(SECRET, h, Buffer.from('[{"a":2}]'), 1_700_000_010), false, 'tampered body');
    assert.equal(verifyWebhook('another-secret-0123456789', h, body, 1_700_000_010), false, 'wrong key');
    assert.equal(verifyWebhook(SECRET, h, body, 1_700_000_000 + 301), false, 'replayed after the tolerance');
    assert.equal(verifyWebhook(SECRET, { ...h, timestamp: '1700000001' }, body, 1_700_000_010), false, 'timestamp is signed');
    assert.equal(verifyWebhook(SECRET, { timestamp: 'x', signature: sig, batch }, body, 1_700_000_010), false);
  });

  it('backoff grows exponentially with jitter and is capped', () => {
    assert.equal(backoff(0, 100, 10_000, () => 0), 50);
    assert.equal(backoff(0, 100, 10_000, () => 1), 100);
    assert.equal(backoff(3, 100, 10_000, () => 1), 800);
    assert.equal(backoff(50, 100, 10_000, () => 1), 10_000);
    assert.equal(backoff(50, 100, 10_000, () => 0), 5_000);
  });
});

describe('webhook config', () => {
  it('refuses bad settings with their path: plain http off loopback, no secret, short secret, bad sizes', () => {
    const problems = (sink: Record<string, unknown>) => {
      const r = parseConfig(JSON.stringify({ sinks: [{ type: 'webhook', name: 'w', ...sink }] }));
      return r.ok ? [] : r.problems.map((p) => `${p.path}: ${p.message}`);
    };
    assert.deepEqual(problems({ url: 'http://siem.example/x', secret: SECRET }), ['sinks[0].url: plain http is allowed only to a loopback address; use https']);
    assert.deepEqual(problems({ url: 'http://127.0.0.1:9/x', secret: SECRET }), []);
    // TLS settings on an http:// URL would be ignored and the events sent in clear text.
    assert.deepEqual(problems({ url: 'http://127.0.0.1:9/x', secret: SECRET, tls: { ca: '/etc/ca.pem' } }), ['sinks[0].tls: tls settings apply only to an https URL; use https or remove them']);
    assert.deepEqual(problems({ url: 'https://siem.example/x', secret: SECRET, tls: { ca: '/etc/ca.pem' } }), []);
    assert.deepEqual(problems({ url: 'https://siem.example/x' }), ['sinks[0]: give exactly one of secret and secret_file']);
    assert.match(problems({ url: 'https://siem.example/x', secret: 'short' })[0] as string, /^sinks\[0\]\.secret: secret must be at least 16/);
    assert.match(problems({ url: 'ftp://x/', secret: SECRET })[0] as string, /^sinks\[0\]\.url:/);
    assert.match(problems({ url: 'https://x/', secret: SECRET, buffer: { max_bytes: '12 parsecs' } })[0] as string, /^sinks\[0\]\.buffer\.max_bytes: "12 parsecs" is not a size/);
    assert.match(problems({ url: 'https://x/', secret: SECRET, typo: 1 })[0] as string, /^sinks\[0\]: unknown key "typo"/);
    const dup = parseConfig(JSON.stringify({ sinks: [{ type: 'file', name: 'a', path: '/tmp/x' }, { type: 'file', name: 'a', path: '/tmp/y' }] }));
    assert.ok(!dup.ok && dup.problems.some((p) => p.path === 'sinks[1].name' && /duplicate sink name/.test(p.message)));
    // The events: target is a sink too (`events`, or `stdout` for `-`, the default): its name is taken.
    const named = (events: string, name: string) => {
      const r = parseConfig(JSON.stringify({ events, sinks: [{ type: 'file', name, path: '/tmp/x' }] }));
      return r.ok ? [] : r.problems.map((p) => `${p.path}: ${p.message}`);
    };
    assert.deepEqual(named('/var/log/chokepoint/events.jsonl', 'events'), ['sinks[0].name: "events" is the name of the events: target (/var/log/chokepoint/events.jsonl); name this sink otherwise, or set events: none']);
    assert.deepEqual(named('-', 'stdout'), ['sinks[0].name: "stdout" is the name of the events: target (-); name this sink otherwise, or set events: none']);
    assert.deepEqual(named('-', 'events'), []);
    assert.deepEqual(named('none', 'events'), []);
    // Drops of the detectors' input are reported as sink `detectors`.
    assert.deepEqual(named('none', 'detectors'), ['sinks[0].name: "detectors" is where drops of the detectors\' input are reported; name this sink otherwise']);
    const off = parseConfig(JSON.stringify({ events: 'none', detect: { enabled: false }, sinks: [{ type: 'file', name: 'detectors', path: '/tmp/x' }] }));
    assert.ok(off.ok, 'free while the detectors are off');
  });
});

describe('webhook sink', () => {
  it('delivers signed, schema-valid batches in order over HTTPS', () =>
    withWebhook({}, async ({ rx, sink }) => {
      for (let i = 0; i < 1200; i++) sink.write(ev(i));
      await rx.waitEvents(1200);
      assert.ok(rx.batches.length >= 3, 'batches of at most batch_max (500)');
      assert.ok(rx.batches.every((b) => b.verified), 'every batch verifies');
      assert.deepEqual(rx.events().map((e) => e.down_ms), Array.from({ length: 1200 }, (_, i) => i));
      assert.deepEqual(validateEvent(rx.events()[0]), []);
      assert.equal(new Set(rx.batches.map((b) => b.id)).size, rx.batches.length, 'batch ids are distinct');
      assert.ok(rx.batches.every((b) => /^[0-9a-f]{16}-\d+-\d+-\d+$/.test(b.id)), 'each id starts with its disk buffer\'s own random name');
    }));

  it('a destination that refuses batches as too large (413) gets smaller ones: everything arrives, in order, none dropped', () =>
    // 3000 bytes: far below batch_max_bytes (4 MiB), a receiver's body limit.
    withWebhook({ maxBodyBytes: 3000, sink: { batch_wait: '50ms' } }, async ({ rx, sink, emitted }) => {
      for (let i = 0; i < 300; i++) sink.write(ev(i));
      await rx.waitEvents(300);
      assert.ok(rx.requests.some((r) => r.status === 413), 'the first batch was refused');
      assert.ok(rx.requests.filter((r) => r.status !== 413).every((r) => r.bytes <= 3000), 'accepted batches fit the limit');
      assert.deepEqual(rx.events().map((e) => e.down_ms), Array.from({ length: 300 }, (_, i) => i));
      assert.equal(sink.stats().dropped, 0);
      assert.equal(emitted.filter((e) => e.type === 'sink.dropped').length, 0);
      assert.equal(new Set(rx.batches.map((b) => b.id)).size, rx.batches.length, 'a smaller batch from the same start has its own id');
    }));

  it('regression: a batch cut by batch_max_bytes while more events wait goes at once, not after batch_wait', () =>
    // An hour's batch_wait: a sink that lingered on every byte-limited batch (as it did) would
    // deliver one 2 KiB batch an hour and never reach the 200th event in this test's time.
    withWebhook({ sink: { batch_wait: '1h', batch_max_bytes: '2KiB' } }, async ({ rx, sink }) => {
      for (let i = 0; i < 200; i++) sink.write(ev(i));
      const lastFull = 200 - 20; // the tail end (under 2 KiB) may wait for more: that is batch_wait's job
      await rx.waitEvents(lastFull, 30_000);
      assert.ok(rx.batches.length >= 10, `byte-limited batches (${rx.batches.length})`);
      assert.ok(rx.requests.every((r) => r.bytes <= 2048), 'each within batch_max_bytes');
      assert.deepEqual(rx.events().map((e) => e.down_ms), Array.from({ length: rx.events().length }, (_, i) => i), 'in order');
    }));

  it('regression: a backlog in small disk-buffer segments drains at once, not one segment per batch_wait', async () => {
    // 4 KiB segments (about 34 of these events each) and an hour's batch_wait. Reads never cross
    // a segment, and a batch that ended one was taken for the end of the backlog and waited
    // (found by review): the backlog drained one segment per batch_wait.
    const rx = await startWebhookReceiver(SECRET, { down: true });
    const dataDir = tmp();
    const opts = { batch_wait: '1h', buffer: { segment_bytes: '4KiB' } };
    const first = webhookSink(rx, dataDir, opts);
    for (let i = 0; i < 300; i++) first.write(ev(i));
    await first.close(); // the destination was down: all 300 are in the buffer, about 9 segments
    assert.equal(rx.events().length, 0);
    await rx.start();
    const second = webhookSink(rx, dataDir, opts);
    try {
      await rx.waitEvents(300 - 40, 30_000); // the last segment's events may wait: batch_wait's job
      assert.ok(rx.batches.length >= 7, `one batch per segment at least (${rx.batches.length})`);
      assert.deepEqual(rx.events().map((e) => e.down_ms), Array.from({ length: rx.events().length }, (_, i) => i), 'in order');
    } finally {
      await second.close();
      await rx.close();
    }
  });

  it('after a 413, batches grow back once the destination has taken smaller ones for the regrowth period', async () => {
    const rx = await startWebhookReceiver(SECRET);
    rx.maxBodyBytes = 3000;
    const errors: string[] = [];
    const sink = new BufferedSink({
      name: 'hook', spool: { dir: tmp(), maxBytes: 1 << 24, segmentBytes: 1 << 20, fsync: 'never', fsyncIntervalMs: 1000 },
      transport: new WebhookTransport({ url: rx.url, secret: SECRET, timeoutMs: 5000, tls: { ca: Buffer.from(rx.pki.caCert) } }),
      batchMax: 500, batchMaxBytes: 4 << 20, batchWaitMs: 20, retry: { minDelayMs: 20, maxDelayMs: 200 },
      emit: () => {}, onError: (e) => errors.push(e.message), regrowAfterMs: 100,
    });
    try {
      for (let i = 0; i < 300; i++) sink.write(ev(i));
      await rx.waitEvents(300);
      assert.ok(rx.requests.some((r) => r.status === 413), 'refused while the limit held');
      assert.ok(errors.some((m) => /413.*larger again after 0 s/.test(m)), errors.join('\n'));
      // The receiver's limit is lifted. Small batches go on being delivered while the period
      // runs; after it, each success doubles the limits until a batch carries the backlog.
      rx.maxBodyBytes = Infinity;
      for (let round = 0; round < 12; round++) {
        await new Promise((r) => setTimeout(r, 120));
        for (let i = 0; i < 300; i++) sink.write(ev(300 + round * 300 + i));
      }
      await rx.waitEvents(300 + 12 * 300);
      const late = rx.requests.slice(-3).map((r) => r.bytes);
      assert.ok(late.some((b) => b > 3000 * 4), `batches grew back (last: ${late.join(', ')} bytes)`);
      assert.deepEqual(rx.events().map((e) => e.down_ms), Array.from({ length: 300 + 12 * 300 }, (_, i) => i), 'in order, none lost');
      assert.equal(sink.stats().dropped, 0);
    } finally {
      await sink.close();
      await rx.close();
    }
  });

  it('a single event refused as too large (413) is dropped, counted and reported (rejected); the ones after it arrive', () =>
    withWebhook({ maxBodyBytes: 3000, sink: { batch_wait: '50ms' } }, async ({ rx, sink, emitted }) => {
      for (let i = 0; i < 10; i++) sink.write(ev(i));
      sink.write({ v: 1, type: 'sink.recovered', time: new Date().toISOString(), sink: 'x'.repeat(5000), down_ms: 10, pending_events: 0 });
      for (let i = 11; i < 20; i++) sink.write(ev(i));
      await rx.waitEvents(19);
      await until(() => emitted.some((e) => e.type === 'sink.dropped'));
      assert.deepEqual(rx.events().map((e) => e.down_ms), [...Array.from({ length: 10 }, (_, i) => i), ...Array.from({ length: 9 }, (_, i) => 11 + i)]);
      const dropped = emitted.filter((e) => e.type === 'sink.dropped');
      assert.equal(dropped.length, 1);
      assert.ok(dropped[0]?.type === 'sink.dropped' && dropped[0].reason === 'rejected' && dropped[0].dropped === 1 && dropped[0].sink === 'hook');
      assert.deepEqual(validateEvent(dropped[0]), []);
      assert.equal(sink.stats().dropped, 1);
      // The receiver has the last batch a moment before the sink has its answer and moves its
      // cursor: wait for that, and fail if the refused event stays pending.
      await until(() => sink.stats().pending_events === 0, 5000).catch(() => {});
      assert.equal(sink.stats().pending_events, 0, 'the refused event is not left pending');
    }));

  it('retries through 503s, reports sink.backlog then sink.recovered, and loses nothing', () =>
    withWebhook({ status: 503 }, async ({ rx, sink, emitted }) => {
      for (let i = 0; i < 100; i++) sink.write(ev(i));
      await until(() => emitted.some((e) => e.type === 'sink.backlog'));
      const backlog = emitted.find((e) => e.type === 'sink.backlog');
      assert.equal(backlog?.type === 'sink.backlog' && backlog.error, 'http_503');
      assert.equal(sink.stats().up, false);
      rx.status = 204;
      await rx.waitEvents(100);
      await until(() => emitted.some((e) => e.type === 'sink.recovered'));
      assert.deepEqual(rx.events().map((e) => e.down_ms), Array.from({ length: 100 }, (_, i) => i));
      assert.equal(sink.stats().up, true);
      assert.equal(sink.stats().pending_events, 0);
      for (const e of emitted) assert.deepEqual(validateEvent(e), []);
    }));

  it('regression: 100k events across an outage and a restart arrive, none lost, in order', async () => {
    const dataDir = tmp();
    const rx = await startWebhookReceiver(SECRET, { down: true });
    const N = 100_000;
    // First process: destination down the whole time; half the events, then a shutdown.
    const first = webhookSink(rx, dataDir, { batch_max: 2000, buffer: { segment_bytes: '1MiB' } });
    for (let i = 0; i < N / 2; i++) first.write(ev(i));
    await first.close();
    assert.equal(rx.events().length, 0);
    assert.ok(readdirSync(join(dataDir, 'spool/hook')).some((f) => f.endsWith('.log')), 'the backlog is on disk');
    // Second process over the same directory: the rest, then the destination comes back.
    const second = webhookSink(rx, dataDir, { batch_max: 2000, buffer: { segment_bytes: '1MiB' } });
    try {
      for (let i = N / 2; i < N; i++) second.write(ev(i));
      await rx.start();
      await rx.waitEvents(N, 120_000);
      const seq = rx.events().map((e) => e.down_ms as number);
      assert.equal(seq.length, N, 'no duplicates');
      for (let i = 0; i < N; i++) if (seq[i] !== i) assert.fail(`order broken at ${i}: ${seq[i]}`);
      await until(() => second.stats().pending_events === 0);
      assert.equal(second.stats().dropped, 0);
    } finally {
      await second.close();
      await rx.close();
    }
  });

  it('at the bound drops the oldest whole segments, counts them, emits sink.dropped; the rest arrive in order', () =>
    withWebhook({ down: true, sink: { buffer: { max_bytes: '64KiB', segment_bytes: '4KiB' } } }, async ({ rx, sink, emitted }) => {
      const N = 5000;
      for (let i = 0; i < N; i++) {
        sink.write(ev(i));
        if (i % 500 === 0) await new Promise((r) => setImmediate(r));
      }
      // Once the writer has caught up, the buffer is within its bound (plus the open segment).
      // "Caught up" means nothing moves any more (the writer coalesces for 10 ms between writes,
      // so a single reading within the bound can still have records in memory, whose write
      // would drop more segments after `kept` is computed).
      let last = '';
      let still = 0;
      await until(() => {
        const st = sink.stats();
        const now = `${st.dropped}/${st.pending_events}/${st.pending_bytes}`;
        still = now === last ? still + 1 : 0;
        last = now;
        return st.dropped > 0 && st.pending_bytes <= 64 * 1024 + 4096 && still >= 5;
      });
      assert.equal(sink.stats().pending_events + sink.stats().dropped, N, 'pending + dropped = written');
      const reported = emitted.filter((e) => e.type === 'sink.dropped').reduce((n, e) => n + (e.type === 'sink.dropped' ? e.dropped : 0), 0);
      assert.equal(reported, sink.stats().dropped, 'every drop is reported');
      assert.ok(emitted.every((e) => e.type !== 'sink.dropped' || e.reason === 'buffer_full'));
      await rx.start();
      const kept = N - sink.stats().dropped;
      await rx.waitEvents(kept);
      await new Promise((r) => setTimeout(r, 200));
      const seq = rx.events().map((e) => e.down_ms as number);
      assert.equal(seq.length, kept, 'dropped + delivered = written');
      assert.deepEqual(seq, Array.from({ length: kept }, (_, i) => N - kept + i), 'the newest survive, in order');
    }));
});
