/**
 * The data plane's start-up warm-up (src/gateway/warmup.ts): it drives real loopback traffic
 * through a private gateway, leaves nothing behind, and none of it reaches the event bus.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import { parseConfig } from '../src/config/load.js';
import { EventBus } from '../src/events/bus.js';
import type { ChokepointEvent } from '../src/events/catalogue.js';
import type { Logger } from '../src/gateway/logger.js';
import { warmUp } from '../src/gateway/warmup.js';

function config(text = '') {
  const r = parseConfig(text);
  if (!r.ok) throw new Error(JSON.stringify(r.problems));
  return r.config;
}

/** Sockets and servers open in this process, by kind. */
function handles(): string[] {
  return process.getActiveResourcesInfo().filter((k) => k.startsWith('TCP')).sort();
}

/** The handles open once the previous test's have finished closing (none are kept between tests). */
async function baseline(): Promise<string[]> {
  for (let i = 0; i < 100 && handles().length > 0; i++) await new Promise((res) => setTimeout(res, 20));
  return handles();
}

function recordingLogger(): Logger & { lines: string[] } {
  const lines: string[] = [];
  const rec = (level: string) => (o: unknown, msg?: string) => { lines.push(`${level} ${msg ?? ''} ${JSON.stringify(o)}`); };
  return { lines, info: rec('info'), warn: rec('warn'), error: rec('error'), debug: rec('debug') };
}

test('drives every kind of synthetic request through a private gateway without a failure, and publishes nothing', async () => {
  const bus = new EventBus();
  const seen: ChokepointEvent[] = [];
  bus.subscribe((e) => seen.push(e));
  const logger = recordingLogger();
  const before = await baseline();
  // 60 connections: ten of each scenario (TLS and plain tunnels, keep-alive HTTP, a deny).
  const r = await warmUp({ config: config(), bus, logger, connections: 60 });
  assert.deepEqual({ ...r, ms: 0 }, { connections: 60, failed: 0, ms: 0, timedOut: false, firstError: null });
  assert.equal(seen.length, 0, 'the warm-up published events');
  assert.deepEqual(logger.lines.filter((l) => !l.startsWith('debug')), []);
  for (let i = 0; i < 50 && handles().length > before.length; i++) await new Promise((res) => setTimeout(res, 20));
  assert.deepEqual(handles(), before, 'sockets or servers left open');
});

test('runs its clients one at a time when the limits allow one tunnel per client', async () => {
  const r = await warmUp({ config: config('limits:\n  max_tunnels_per_client: 1\n'), bus: new EventBus(), logger: recordingLogger(), connections: 12 });
  assert.equal(r.failed, 0, r.firstError ?? '');
  assert.equal(r.timedOut, false);
});

test('gives up at its deadline and leaves nothing open', async () => {
  const before = await baseline();
  const r = await warmUp({ config: config(), bus: new EventBus(), logger: recordingLogger(), connections: 100_000, timeoutMs: 100 });
  assert.equal(r.timedOut, true);
  assert.ok(r.connections > 0 && r.connections < 100_000, `reports the ${r.connections} it started`);
  for (let i = 0; i < 50 && handles().length > before.length; i++) await new Promise((res) => setTimeout(res, 20));
  assert.deepEqual(handles(), before, 'sockets or servers left open');
});

test('does nothing for 0 connections', async () => {
  const before = await baseline();
  const r = await warmUp({ config: config(), bus: new EventBus(), logger: recordingLogger(), connections: 0 });
  assert.deepEqual(r, { connections: 0, failed: 0, ms: 0, timedOut: false, firstError: null });
  assert.deepEqual(handles(), before);
});

test('reports the first failure and stops early when its requests fail', async () => {
  // Clients sent to a server that refuses everything: each request fails its check.
  const refuser = createServer((c) => c.end('HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n'));
  await new Promise<void>((r) => refuser.listen(0, '127.0.0.1', r));
  const port = (refuser.address() as AddressInfo).port;
  try {
    const r = await warmUp({
      config: config(), bus: new EventBus(), logger: recordingLogger(), connections: 1000,
      dial: () => connect({ host: '127.0.0.1', port }),
    });
    assert.equal(r.timedOut, false);
    assert.match(r.firstError ?? '', /expected (200|403), got "HTTP\/1\.1 502/);
    assert.ok(r.failed >= 10 && r.failed < 100, `stopped after ${r.failed} failures`);
    assert.ok(r.connections < 1000 && r.connections >= r.failed, `started ${r.connections}`);
  } finally {
    refuser.close();
  }
});

test('cuts every connection a local process made to its origins or through its private proxy during the window', async () => {
  const before = await baseline();
  const outsiders: Socket[] = [];
  const r = await warmUp({
    config: config(), bus: new EventBus(), logger: recordingLogger(), connections: 300,
    onListening: ({ proxy, echo, web }) => {
      for (const p of [echo, web]) {
        for (let i = 0; i < 10; i++) {
          const s = connect({ host: '127.0.0.1', port: p });
          s.on('error', () => {});
          s.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
          outsiders.push(s);
        }
      }
      // And a tunnel to the echo origin held open through the private proxy.
      const t = connect({ host: '127.0.0.1', port: proxy });
      t.on('error', () => {});
      t.write(`CONNECT plain.warmup.chokepoint.invalid:${echo} HTTP/1.1\r\nHost: plain.warmup.chokepoint.invalid:${echo}\r\n\r\n`);
      outsiders.push(t);
    },
  });
  assert.equal(r.failed, 0, r.firstError ?? '');
  assert.equal(outsiders.length, 21);
  // Each outside connection ends: the origins and the private proxy closed their side.
  await Promise.all(outsiders.map((s) => new Promise<void>((res, rej) => {
    if (s.destroyed || s.readableEnded) return res();
    const t = setTimeout(() => rej(new Error('an outside connection outlived the warm-up')), 5000);
    s.once('end', () => { clearTimeout(t); res(); });
    s.once('close', () => { clearTimeout(t); res(); });
    s.resume();
  })));
  for (const s of outsiders) s.destroy();
  for (let i = 0; i < 50 && handles().length > before.length; i++) await new Promise((res) => setTimeout(res, 20));
  assert.deepEqual(handles(), before, 'sockets or servers left open');
});

test('an abort signal ends it early and leaves nothing open', async () => {
  const before = await baseline();
  const ac = new AbortController();
  const r = await warmUp({
    config: config(), bus: new EventBus(), logger: recordingLogger(), connections: 100_000, signal: ac.signal,
    onListening: () => setTimeout(() => ac.abort(), 50),
  });
  assert.equal(r.timedOut, false);
  for (let i = 0; i < 50 && handles().length > before.length; i++) await new Promise((res) => setTimeout(res, 20));
  assert.deepEqual(handles(), before, 'sockets or servers left open');
  // Already aborted: nothing at all.
  assert.equal((await warmUp({ config: config(), bus: new EventBus(), logger: recordingLogger(), connections: 10, signal: ac.signal })).connections, 0);
});
