/**
 * The proxy threads in-process, where a thread can be made to die: the others keep their own
 * listening descriptor and go on serving, and the gateway is told to stop.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { parseConfig } from '../src/config/load.js';
import { EventBus } from '../src/events/bus.js';
import type { ChokepointEvent } from '../src/events/catalogue.js';
import { silentLogger } from '../src/gateway/logger.js';
import { Gateway } from '../src/gateway/server.js';
import { ProxyThreads } from '../src/cli/proxy-threads.js';
import { compile, connectStatus } from './helpers/gateway.js';
import { startEchoOrigin, type Origin } from './helpers/origins.js';

let echo: Origin;
before(async () => { echo = await startEchoOrigin(); });
after(async () => { await echo.close(); });

/** A policy allowing localhost on the echo origin's port, with its other hosts after it. */
const allowLocal = (extraHosts = ''): string => `version: 1\naddress_exceptions: [127.0.0.1/32]\ngroups:\n  - name: g\n    sources: [127.0.0.0/8]\n    allow:\n      - host: localhost\n        ports: [${echo.port}]\n        tls: none\n${extraHosts}`;

/** A main-thread gateway and two proxy threads, with what they report. */
async function startThreads(policyText: string | null): Promise<{
  gw: Gateway; threads: ProxyThreads; port: number; events: ChokepointEvent[]; errors: string[]; fatal: Error[]; stop(): Promise<void>;
}> {
  const r = parseConfig('log_level: silent\n');
  assert.ok(r.ok);
  const bus = new EventBus();
  const events: ChokepointEvent[] = [];
  bus.subscribe((e) => events.push(e));
  const errors: string[] = [];
  const fatal: Error[] = [];
  const logger = { ...silentLogger, error: (_o: object, msg?: string) => { errors.push(msg ?? ''); } };
  const gw = new Gateway({ config: r.config, bus, logger: silentLogger, policy: policyText === null ? null : compile(policyText) });
  const threads = await ProxyThreads.start({ gw, threads: 2, host: '127.0.0.1', port: 0, bus, logger, onFatal: (e) => fatal.push(e) });
  return {
    gw, threads, port: threads.address.port, events, errors, fatal,
    stop: async () => {
      await threads.close(1000);
      gw.destroy();
    },
  };
}

describe('proxy threads', () => {
  it('a thread that dies (even the one that bound the socket) leaves the others serving, and the gateway is told', async () => {
    const { threads, port, events, fatal, stop } = await startThreads(allowLocal());
    try {
      const first = await connectStatus(port, `localhost:${echo.port}`);
      assert.equal(first.status, 200);
      first.c.close();
      // The first thread bound the listening socket; the second accepts from its own duplicate.
      await threads.workers[0]?.terminate();
      for (let i = 0; i < 100 && fatal.length === 0; i++) await new Promise((res) => setTimeout(res, 20));
      assert.equal(fatal.length, 1);
      assert.match(fatal[0]?.message ?? '', /proxy thread \d+ exited/);
      // With one descriptor number shared by both threads, the dead thread's teardown closed it
      // and this connection was refused (or, once the number was reused, hung).
      for (let i = 0; i < 10; i++) {
        const b = await connectStatus(port, `localhost:${echo.port}`);
        assert.equal(b.status, 200);
        b.c.data = Buffer.alloc(0);
        b.c.write('still here');
        await b.c.until((x) => x.text() === 'still here');
        b.c.close();
      }
    } finally {
      await stop();
    }
    // The surviving thread's events reached the main thread's bus (the killed thread's last
    // batch, with the first request's decision if it took it, went with it).
    assert.ok(events.filter((e) => e.type === 'gateway.decision').length >= 10);
  });

  it('applyPolicy resolves once every thread enforces the new policy (a large one takes them a while to compile)', async () => {
    // 40,000 other hosts and no localhost: what each thread compiles takes long enough that a
    // change reported before the threads had it would let the next requests through.
    const rules = Array.from({ length: 40_000 }, (_, i) => `      - host: h${i}.example.com\n`).join('');
    const deny = `version: 1\naddress_exceptions: [127.0.0.1/32]\ngroups:\n  - name: g\n    sources: [127.0.0.0/8]\n    allow:\n${rules}`;
    const { gw, threads, port, stop } = await startThreads(allowLocal());
    try {
      const a = await connectStatus(port, `localhost:${echo.port}`);
      assert.equal(a.status, 200);
      a.c.close();
      let acks = 0;
      for (const w of threads.workers) w.on('message', (m: { t: string }) => { if (m.t === 'policy') acks++; });
      await gw.applyPolicy(compile(deny));
      assert.equal(acks, 2, 'applyPolicy resolved before every thread had the policy');
      const statuses: number[] = [];
      for (let i = 0; i < 12; i++) {
        const b = await connectStatus(port, `localhost:${echo.port}`);
        statuses.push(b.status);
        b.c.close();
      }
      assert.deepEqual(statuses, Array(12).fill(403));
    } finally {
      await stop();
    }
  });

  it('a thread that ends holding the limits\' lock does not leave the others (or the main thread) waiting for ever', async () => {
    const { gw, threads, port, errors, stop } = await startThreads(allowLocal());
    try {
      const [w0] = threads.workers;
      assert.ok(w0);
      // As if thread 0 had died inside the critical section: the lock held, in its name.
      const words = new Int32Array(gw.counts.buffer);
      Atomics.store(words, 5, w0.threadId + 1);
      Atomics.store(words, 0, 1);
      await w0.terminate();
      for (let i = 0; i < 100 && !errors.some((m) => /holding the limits' lock/.test(m)); i++) await new Promise((res) => setTimeout(res, 20));
      assert.ok(errors.some((m) => /holding the limits' lock: freed/.test(m)), JSON.stringify(errors));
      // The other thread, and this one, take the lock again.
      assert.deepEqual(gw.counts.of('127.0.0.1'), { connections: 0, tunnels: 0 });
      const b = await connectStatus(port, `localhost:${echo.port}`);
      assert.equal(b.status, 200);
      b.c.close();
    } finally {
      await stop();
    }
  });

  it('a stop ends even when a thread is stuck (the counts\' lock never freed): it is terminated after the deadline', async () => {
    const { gw, threads, port, errors } = await startThreads(null);
    // As if a thread had died inside the lock: the next connection blocks its thread for ever.
    Atomics.store(new Int32Array(gw.counts.buffer), 0, 1);
    const { connect } = await import('node:net');
    const socks = [0, 1, 2, 3].map(() => connect(port, '127.0.0.1').on('error', () => {}));
    await new Promise((res) => setTimeout(res, 300));
    const started = Date.now();
    await threads.close(200, 300);
    assert.ok(Date.now() - started < 5000);
    assert.ok(errors.some((m) => /did not finish draining/.test(m)), JSON.stringify(errors));
    for (const s of socks) s.destroy();
    gw.destroy();
  });
});
