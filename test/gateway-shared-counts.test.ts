import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Worker } from 'node:worker_threads';
import { SharedCounts } from '../src/gateway/shared-counts.js';

test('per-address tunnel and connection counts: limits refuse with their reason, releases give the slot back', () => {
  const c = SharedCounts.create(100);
  assert.equal(c.acquireTunnel('10.0.0.1', 3, 2), null);
  assert.equal(c.acquireTunnel('10.0.0.1', 3, 2), null);
  assert.equal(c.acquireTunnel('10.0.0.1', 3, 2), 'client_tunnel_limit');
  assert.equal(c.acquireTunnel('10.0.0.2', 3, 2), null);
  assert.equal(c.acquireTunnel('10.0.0.3', 3, 2), 'tunnel_limit');
  assert.equal(c.tunnels, 3);
  c.releaseTunnel('10.0.0.1');
  assert.deepEqual(c.of('10.0.0.1'), { connections: 0, tunnels: 1 });
  assert.equal(c.acquireTunnel('10.0.0.3', 3, 2), null);
  // Releasing an address that holds nothing changes nothing (no negative counts).
  c.releaseTunnel('192.0.2.1');
  c.closeConnection('192.0.2.1');
  assert.equal(c.tunnels, 3);
  assert.equal(c.openConnection('::1'), 1);
  assert.equal(c.openConnection('::1'), 2);
  assert.equal(c.connections, 2);
  c.closeConnection('::1');
  assert.deepEqual(c.of('::1'), { connections: 1, tunnels: 0 });
  assert.equal(c.connections, 1);
  // The total cap: refused with -1 and not counted.
  assert.equal(c.openConnection('10.0.0.9', 2), 1);
  assert.equal(c.openConnection('10.0.0.8', 2), -1);
  assert.equal(c.connections, 2);
  assert.deepEqual(c.of('10.0.0.8'), { connections: 0, tunnels: 0 });
});

test('churn through many more addresses than slots: markers are reclaimed and no count is lost', () => {
  const c = SharedCounts.create(10); // 1024 slots
  // Keep 300 addresses live while 50,000 others come and go.
  for (let i = 0; i < 300; i++) assert.equal(c.openConnection(`10.1.${i >> 8}.${i & 255}`), 1);
  for (let i = 0; i < 50_000; i++) {
    const ip = `10.2.${(i >> 8) & 255}.${i & 255}.${i >> 16}`;
    assert.equal(c.openConnection(ip), 1);
    assert.equal(c.acquireTunnel(ip, 10_000, 1), null);
    c.releaseTunnel(ip);
    c.closeConnection(ip);
  }
  for (let i = 0; i < 300; i++) assert.deepEqual(c.of(`10.1.${i >> 8}.${i & 255}`), { connections: 1, tunnels: 0 });
  assert.equal(c.connections, 300);
  assert.equal(c.tunnels, 0);
});

test('releaseIfHeldBy frees the lock only for the thread recorded as holding it', () => {
  const c = new SharedCounts(SharedCounts.create(10).buffer, 7);
  const words = new Int32Array(c.buffer);
  assert.equal(c.acquireTunnel('10.0.0.1', 10, 10), null);
  assert.equal(Atomics.load(words, 5), 0, 'no owner recorded once released');
  // Held by thread 3 (as if it died inside): another thread's id does not free it.
  Atomics.store(words, 5, 4);
  Atomics.store(words, 0, 1);
  assert.equal(c.releaseIfHeldBy(2), false);
  assert.equal(Atomics.load(words, 0), 1);
  assert.equal(c.releaseIfHeldBy(3), true);
  assert.equal(Atomics.load(words, 0), 0);
  assert.equal(c.acquireTunnel('10.0.0.1', 10, 10), null);
  assert.equal(c.tunnels, 2);
});

test('a full table refuses (fails closed) instead of not counting', () => {
  const c = SharedCounts.create(1); // 1024 slots, three quarters usable
  let refused = 0;
  for (let i = 0; i < 1100; i++) if (c.openConnection(`10.3.${i >> 8}.${i & 255}`) === Infinity) refused++;
  assert.ok(refused >= 1100 - 1024, `refused ${refused}`);
  assert.equal(c.acquireTunnel('10.9.9.9', 10, 10), 'client_tunnel_limit');
  assert.throws(() => new SharedCounts(new SharedArrayBuffer(64)), /not a SharedCounts buffer/);
});

test('four threads acquiring and releasing at once keep exact counts and never exceed a limit', async () => {
  const c = SharedCounts.create(1000);
  // Each worker repeatedly takes tunnels for one shared address up to the per-client limit and
  // records the most it ever held at once; with a lost update the final counts would drift.
  const src = `
    const { workerData, parentPort } = require('node:worker_threads');
    import(workerData.mod).then(({ SharedCounts }) => {
      const c = new SharedCounts(workerData.buf);
      let got = 0, refusedClient = 0;
      for (let i = 0; i < 20000; i++) {
        const r = c.acquireTunnel('203.0.113.7', 1000000, 50);
        if (r === null) { got++; if (c.of('203.0.113.7').tunnels > 50) throw new Error('over the limit'); c.releaseTunnel('203.0.113.7'); }
        else refusedClient++;
        // The total cap, checked and taken at once: never more than 3 open across the threads.
        if (c.openConnection('198.51.100.' + (i % 200), 3) > 0) {
          if (c.connections > 3) throw new Error('over max_connections');
          c.closeConnection('198.51.100.' + (i % 200));
        }
      }
      parentPort.postMessage({ got, refusedClient });
    });`;
  const mod = new URL('../src/gateway/shared-counts.js', import.meta.url).href;
  const results = await Promise.all([0, 1, 2, 3].map(() => new Promise<{ got: number }>((resolve, reject) => {
    const w = new Worker(src, { eval: true, workerData: { buf: c.buffer, mod } });
    w.once('message', resolve);
    w.once('error', reject);
  })));
  assert.equal(results.reduce((n, r) => n + r.got, 0) > 0, true);
  assert.equal(c.tunnels, 0);
  assert.equal(c.connections, 0);
  assert.deepEqual(c.of('203.0.113.7'), { connections: 0, tunnels: 0 });
});
