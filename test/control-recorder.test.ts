/**
 * The recorder's folding of identical decisions, on both real backends: a run of identical
 * decisions is one row with its count and latest time; anything an investigation pivots on
 * (verdict, destination, resolved address, device, client) makes a new row; a run longer than
 * the window starts a new row; `foldMs: 0` stores each; the fold table is bounded and a
 * decision it forgot is stored, never lost; a failed append is counted and its folds forgotten.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { eventRow } from '../src/cli/remote-evidence.js';
import { EventRecorder } from '../src/control/recorder.js';
import { EventBus } from '../src/events/bus.js';
import type { DecisionEvent } from '../src/events/catalogue.js';
import type { Store } from '../src/store/index.js';
import { queryDecisions } from '../src/store/recent.js';
import { BACKENDS } from './helpers/store.js';

function decision(host: string, over: Partial<DecisionEvent> = {}): DecisionEvent {
  return {
    v: 1, type: 'gateway.decision', time: new Date().toISOString(), id: randomUUID(), listener: 'proxy', client_ip: '10.1.2.3',
    client_port: 30000 + Math.floor(Math.random() * 30000), group: 'servers', device_id: 'dev-1', asset_id: null, serial: null,
    method: 'CONNECT', host, port: 443, address: '192.0.2.7', verdict: 'allow', reason: 'allowed', rule: 'groups.servers.allow[0]',
    mode: 'enforce', sni: host, tls_version: 'TLSv1.3', address_class: null, detail: null, status: null, ...over,
  } as DecisionEvent;
}

for (const make of BACKENDS) {
  const backend = make();
  describe(`decision folding on ${backend.name}`, () => {
    let store: Store;
    const recorders: EventRecorder[] = [];
    const recorder = (o: { foldMs?: number; maxFolds?: number; store?: Store; maxRowsPerClient?: number } = {}) => {
      const bus = new EventBus();
      const r = new EventRecorder({ store: o.store ?? store, bus, flushMs: 5, foldMs: o.foldMs, maxFolds: o.maxFolds, maxRowsPerClient: o.maxRowsPerClient });
      recorders.push(r);
      return { r, bus };
    };
    const rows = (host: string) => queryDecisions(store.db, { host, limit: 1000 });
    before(async () => { store = await backend.open(); });
    after(async () => {
      for (const r of recorders) await r.close();
      await store.close();
      await backend.cleanup();
    });

    it('stores a run of identical decisions once, with its count and the latest time, across flushes', async () => {
      const { r, bus } = recorder();
      const first = decision('run.example.com');
      bus.publish(first);
      for (let i = 0; i < 300; i++) bus.publish(decision('run.example.com'));
      await r.flush();
      for (let i = 0; i < 200; i++) bus.publish(decision('run.example.com'));
      const t = Date.now();
      await r.flush();
      const got = await rows('run.example.com');
      assert.equal(got.length, 1);
      assert.equal(got[0]?.event.id, first.id, 'the row is the first decision, as published');
      assert.deepEqual(got[0]?.event, first);
      assert.equal(got[0]?.repeats, 500);
      assert.ok(got[0]?.lastTime !== null && Math.abs((got[0]?.lastTime ?? 0) - t) < 5000);
    });

    it('stores a new row for anything an investigation pivots on', async () => {
      const { r, bus } = recorder();
      const host = 'pivot.example.com';
      const variants: Partial<DecisionEvent>[] = [
        {}, { verdict: 'deny', reason: 'no_rule_matched', rule: null, status: 403 }, { address: '192.0.2.8' }, { device_id: 'dev-2' },
        { client_ip: '10.1.2.4' }, { port: 8443 }, { method: 'GET' }, { group: 'laptops' }, { mode: 'report' }, { sni: 'other.example.com' },
        { tls_version: 'TLSv1.2' }, { listener: 'mtls' }, { rule: 'groups.servers.allow[1]' },
      ];
      for (const v of variants) for (let i = 0; i < 3; i++) bus.publish(decision(host, v));
      await r.flush();
      const got = await rows(host);
      assert.equal(got.length, variants.length);
      assert.ok(got.every((x) => x.repeats === 2), JSON.stringify(got.map((x) => x.repeats)));
    });

    it('starts a new row when a run outlasts the window; foldMs 0 stores every decision', async () => {
      const { r, bus } = recorder({ foldMs: 100 });
      bus.publish(decision('window.example.com'));
      bus.publish(decision('window.example.com'));
      await sleep(150);
      bus.publish(decision('window.example.com'));
      await r.flush();
      assert.deepEqual((await rows('window.example.com')).map((x) => x.repeats), [0, 1], 'newest first');
      const off = recorder({ foldMs: 0 });
      for (let i = 0; i < 5; i++) off.bus.publish(decision('unfolded.example.com'));
      await off.r.flush();
      assert.deepEqual((await rows('unfolded.example.com')).map((x) => x.repeats), [0, 0, 0, 0, 0]);
    });

    it('a client past its row budget gets one overflow row per verdict and reason; other clients keep theirs; the next window starts afresh', async () => {
      const { r, bus } = recorder({ foldMs: 300, maxRowsPerClient: 5 });
      const sprayer = { device_id: 'dev-spray', verdict: 'deny', reason: 'no_rule_matched', rule: null, status: 403 } as const;
      // A device inventing a new name per request (DNS-tunnel-like or a scan), and a quiet one.
      const firstOver: DecisionEvent[] = [];
      for (let i = 0; i < 40; i++) {
        const d = decision(`x${i}.spray.example`, sprayer);
        if (i === 5) firstOver.push(d);
        bus.publish(d);
      }
      for (let i = 0; i < 3; i++) bus.publish(decision(`q${i}.quiet.example`, { device_id: 'dev-quiet' }));
      bus.publish(decision('x0.spray.example', { ...sprayer, reason: 'address_denied', detail: 'resolved to 10.0.0.1' }));
      await r.flush();
      const all = await queryDecisions(store.db, { device: 'dev-spray', limit: 1000 });
      const named = all.filter((x) => x.event.host !== null);
      const overflow = all.filter((x) => x.event.host === null);
      assert.equal(named.length, 5, 'the budget: five rows with their destinations');
      assert.equal(overflow.length, 2, 'one overflow row per verdict and reason');
      const nrm = overflow.find((x) => x.event.reason === 'no_rule_matched');
      assert.equal(nrm?.repeats, 34, 'the other 35 distinct decisions: one row and 34 repeats');
      assert.equal(nrm?.event.id, firstOver[0]?.id, 'the row is the first decision over the budget');
      assert.match(String(nrm?.event.detail), /max_rows_per_client \(5 rows per window\).*in the sinks/);
      assert.equal(nrm?.event.port, null);
      assert.equal(overflow.find((x) => x.event.reason === 'address_denied')?.repeats, 0);
      // `chokepoint events` says what the row is, rather than `?:?`; named rows keep host:port.
      assert.equal(eventRow({ ...nrm?.event, repeats: nrm?.repeats, last_time: null }).destination, '(over row budget: many)');
      assert.equal(eventRow({ ...named[0]?.event, repeats: 0, last_time: null }).destination, `${named[0]?.event.host}:443`);
      assert.equal(eventRow({ ...named[0]?.event, host: null, port: null, reason: 'header_timeout', repeats: 0, last_time: null }).destination, '-', 'refused before a target was known');
      assert.equal((await queryDecisions(store.db, { device: 'dev-quiet', limit: 1000 })).length, 3, 'another device is not charged');
      // The next window: budgets start again.
      await sleep(350);
      await r.flush();
      bus.publish(decision('late.spray.example', sprayer));
      await r.flush();
      assert.equal((await rows('late.spray.example')).length, 1, 'stored with its destination in the new window');
    });

    it('forgets expired folds at a flush once per window, not only when the table is full', async () => {
      const { r, bus } = recorder({ foldMs: 50 });
      for (let i = 0; i < 20; i++) bus.publish(decision(`e${i}.expire.example.com`));
      await r.flush();
      assert.equal(r.folds, 20);
      await sleep(80);
      bus.publish(decision('late.expire.example.com'));
      await r.flush();
      assert.equal(r.folds, 1, 'only the live one is left');
    });

    it('bounds the fold table: a decision it had to forget is stored again, not lost', async () => {
      const { r, bus } = recorder({ maxFolds: 3 });
      for (const h of ['b1', 'b2', 'b3']) bus.publish(decision(`${h}.bound.example.com`));
      bus.publish(decision('b4.bound.example.com')); // the table is full of live folds: it starts over
      bus.publish(decision('b1.bound.example.com'));
      await r.flush();
      assert.equal((await rows('b1.bound.example.com')).length, 2);
      assert.equal((await rows('b4.bound.example.com')).length, 1);
    });

    it('a decision refused by a full queue takes no repeats: the next of its run is stored', async () => {
      const { r, bus } = recorder();
      for (let i = 0; i < 10_000; i++) bus.publish(decision(`q${i}.queue.example.com`));
      bus.publish(decision('late.queue.example.com'));
      bus.publish(decision('late.queue.example.com'));
      assert.equal(r.dropped, 2, 'the queue (10,000) was full for both');
      await r.flush();
      bus.publish(decision('late.queue.example.com'));
      await r.flush();
      assert.deepEqual((await rows('late.queue.example.com')).map((x) => x.repeats), [0]);
    });

    it('a decision refused by a full queue is not charged to its client\'s row budget', async () => {
      const { r, bus } = recorder({ maxRowsPerClient: 10_001 });
      for (let i = 0; i < 10_000; i++) bus.publish(decision(`b${i}.budget.example.com`, { device_id: 'dev-budget' }));
      for (let i = 0; i < 5; i++) bus.publish(decision(`refused${i}.budget.example.com`, { device_id: 'dev-budget' }));
      assert.equal(r.dropped, 5, 'the queue (10,000) was full');
      await r.flush();
      // 10,000 rows charged of 10,001: one more distinct decision is still stored by name.
      bus.publish(decision('after.budget.example.com', { device_id: 'dev-budget' }));
      await r.flush();
      assert.equal((await rows('after.budget.example.com')).length, 1);
    });

    it('counts what a failed append loses, and stores the next decision of that run anew', async () => {
      let fail = true;
      const flaky: Store = { ...store, appendDecisions: (e) => (fail ? Promise.reject(new Error('store down')) : store.appendDecisions(e)) };
      const { r, bus } = recorder({ store: flaky });
      for (let i = 0; i < 4; i++) bus.publish(decision('flaky.example.com'));
      await r.flush();
      assert.equal(r.dropped, 4, 'the row that would have been stored and the three repeats counted on it');
      assert.equal((await rows('flaky.example.com')).length, 0);
      fail = false;
      bus.publish(decision('flaky.example.com'));
      bus.publish(decision('flaky.example.com'));
      await r.flush();
      assert.deepEqual((await rows('flaky.example.com')).map((x) => x.repeats), [1]);
    });
  });
}
