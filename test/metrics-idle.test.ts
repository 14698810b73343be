/**
 * Process metrics on an idle gateway: sampling the event loop's delay must not keep waking the
 * proxy's thread (prom-client's default, a 10 ms timer, woke it 100 times a second). A test
 * file of its own: node runs each file in its own process, and the count below is this
 * process's main thread, which nothing else here wakes.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { loopDelayFigures } from '../src/metrics/loop-delay.js';
import { EvidenceMetrics } from '../src/metrics/registry.js';

/** Times this thread gave up the CPU to wait (Linux): each is one wakeup later. */
function wakeups(): number {
  const m = /^voluntary_ctxt_switches:\s+(\d+)$/m.exec(readFileSync('/proc/thread-self/status', 'utf8'));
  assert.ok(m, 'voluntary_ctxt_switches in /proc/thread-self/status');
  return Number(m[1]);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('process metrics on an idle gateway', () => {
  it('wake the thread a few times a second at most, and report how late the loop was (0 when idle, a stall\'s length)', async () => {
    const m = new EvidenceMetrics({ host_labels: false, max_label_values: 100, process: true });
    await sleep(300); // past whatever start-up work is still settling
    const before = wakeups();
    await sleep(2000);
    const perSecond = (wakeups() - before) / 2;
    // 100 ms samples: about 10 a second, and this test's own timer; 10 ms ones made about 100.
    assert.ok(perSecond < 30, `${perSecond} wakeups a second while idle`);
    // The gauges say how late the loop was, not the sampling period: about 0 on an idle loop,
    // and a stall's length when one comes.
    const sampleOf = (body: string, k: string) => Number(new RegExp(`^chokepoint_nodejs_eventloop_lag_${k}_seconds (\\S+)$`, 'm').exec(body)?.[1]);
    const idle = (await m.exposition()).body;
    assert.ok(sampleOf(idle, 'p50') < 0.05, `idle p50 ${sampleOf(idle, 'p50')} s`);
    const stallUntil = Date.now() + 300;
    while (Date.now() < stallUntil) { /* a 300 ms stall of the event loop */ }
    await sleep(250);
    const stalled = (await m.exposition()).body;
    assert.ok(sampleOf(stalled, 'max') >= 0.15, `max ${sampleOf(stalled, 'max')} s after a 300 ms stall`);
    assert.ok(sampleOf(stalled, 'p50') < 0.05, `p50 ${sampleOf(stalled, 'p50')} s: one late sample among on-time ones`);
  });

  it('figures of a window: nearest-rank percentiles, population deviation, zeros for no samples', () => {
    assert.deepEqual(loopDelayFigures([]), { min: 0, max: 0, mean: 0, stddev: 0, p50: 0, p90: 0, p99: 0 });
    // 100 samples, 0 to 99 ms late, in no order.
    const late = Array.from({ length: 100 }, (_, i) => ((i * 37) % 100) / 1000);
    const f = loopDelayFigures(late);
    assert.equal(f.min, 0);
    assert.equal(f.max, 0.099);
    assert.equal(f.p50, 0.049);
    assert.equal(f.p90, 0.089);
    assert.equal(f.p99, 0.098);
    assert.ok(Math.abs(f.mean - 0.0495) < 1e-12);
    assert.ok(Math.abs(f.stddev - Math.sqrt(833.25) / 1000) < 1e-12);
    assert.deepEqual(loopDelayFigures(new Float64Array([0.2])), { min: 0.2, max: 0.2, mean: 0.2, stddev: 0, p50: 0.2, p90: 0.2, p99: 0.2 });
  });
});
