/** The JSON-lines file sink: rotation by size and by time, retention by count and age, queue bound. */
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ChokepointEvent } from '../src/events/catalogue.js';
import type { EvidenceEvent } from '../src/events/evidence.js';
import { FileSink } from '../src/sinks/file.js';

const dirs: string[] = [];
after(() => { for (const d of dirs) rmSync(d, { recursive: true, force: true }); });
const tmp = () => { const d = mkdtempSync(join(tmpdir(), 'cp-file-')); dirs.push(d); return d; };
const ev = (i: number): ChokepointEvent => ({ v: 1, type: 'sink.recovered', time: '2025-01-01T00:00:00.000Z', sink: 'x'.repeat(50), down_ms: i, pending_events: 0 });
const lines = (p: string) => readFileSync(p, 'utf8').split('\n').filter((l) => l !== '').map((l) => (JSON.parse(l) as { down_ms: number }).down_ms);

function sink(dir: string, rotate: Partial<FileSink extends never ? never : { maxBytes: number; intervalMs: number; keep: number; maxAgeMs: number }>, clock = { t: Date.UTC(2025, 0, 1) }, emitted: EvidenceEvent[] = [], maxQueueBytes = 1 << 20) {
  return new FileSink({ name: 'f', path: join(dir, 'events.jsonl'), rotate: { maxBytes: 1 << 30, intervalMs: 0, keep: 10, maxAgeMs: 0, ...rotate }, maxQueueBytes, emit: (e) => emitted.push(e), onError: (e) => { throw e; }, now: () => clock.t });
}

describe('file sink', () => {
  it('rotates by size; every event is in exactly one file, in order; keeps `keep` rotated files', async () => {
    const dir = tmp();
    const s = sink(dir, { maxBytes: 2048, keep: 3 });
    for (let i = 0; i < 200; i++) { s.write(ev(i)); await s.flushed(); }
    await s.close();
    const files = readdirSync(dir).sort();
    assert.ok(files.includes('events.jsonl'));
    const rotated = files.filter((f) => f !== 'events.jsonl');
    assert.equal(rotated.length, 3, files.join(' '));
    for (const f of rotated) assert.match(f, /^events-20250101T000000000Z(-\d+)?\.jsonl$/);
    const order = (f: string) => Number(/-(\d+)\.jsonl$/.exec(f)?.[1] ?? 0);
    const all = [...rotated.sort((a, b) => order(a) - order(b)), 'events.jsonl'].flatMap((f) => lines(join(dir, f)));
    assert.deepEqual(all, Array.from({ length: all.length }, (_, i) => 200 - all.length + i), 'the newest, contiguous, in order');
    for (const f of files) assert.ok(readFileSync(join(dir, f)).length <= 2048, `${f} within max_bytes`);
  });

  it('rotates by time and deletes rotated files older than max_age', async () => {
    const dir = tmp();
    const clock = { t: Date.UTC(2025, 0, 1) };
    const s = sink(dir, { intervalMs: 3_600_000, maxAgeMs: 2 * 3_600_000, keep: 100 }, clock);
    for (let h = 0; h < 5; h++) {
      s.write(ev(h));
      await s.flushed();
      // Give each rotated file the age the clock says it has.
      for (const f of readdirSync(dir)) if (f !== 'events.jsonl') { const m = /T(\d\d)/.exec(f); if (m) { const t = new Date(Date.UTC(2025, 0, 1, Number(m[1]))); utimesSync(join(dir, f), t, t); } }
      clock.t += 3_600_000;
    }
    await s.close();
    const rotated = readdirSync(dir).filter((f) => f !== 'events.jsonl').sort();
    assert.deepEqual(rotated, ['events-20250101T020000000Z.jsonl', 'events-20250101T030000000Z.jsonl'], 'one file per hour, older than two hours deleted');
    assert.deepEqual(lines(join(dir, 'events.jsonl')), [4]);
  });

  it('past its memory bound drops the oldest and reports it (never silently)', async () => {
    const dir = tmp();
    const emitted: EvidenceEvent[] = [];
    const s = sink(dir, {}, undefined, emitted, 1000);
    for (let i = 0; i < 100; i++) s.write(ev(i)); // one turn: nothing written yet
    await s.close();
    const got = lines(join(dir, 'events.jsonl'));
    const dropped = emitted.reduce((n, e) => n + (e.type === 'sink.dropped' ? e.dropped : 0), 0);
    assert.ok(dropped > 0);
    assert.equal(got.length + dropped, 100);
    assert.equal(s.stats().dropped, dropped);
    assert.deepEqual(got, Array.from({ length: got.length }, (_, i) => 100 - got.length + i));
  });

  it('a removed file, or a removed directory, is made again: lines are not written into an inode nobody can read', async () => {
    const root = tmp();
    const dir = join(root, 'logs');
    const s = new FileSink({ name: 'f', path: join(dir, 'events.jsonl'), rotate: { maxBytes: 1 << 30, intervalMs: 0, keep: 1, maxAgeMs: 0 }, maxQueueBytes: 1 << 20, emit: () => {}, onError: () => {} });
    for (let i = 0; i < 10; i++) s.write(ev(i));
    await s.flushed();
    rmSync(join(dir, 'events.jsonl'));
    for (let i = 10; i < 20; i++) s.write(ev(i));
    await s.flushed();
    assert.deepEqual(lines(join(dir, 'events.jsonl')), Array.from({ length: 10 }, (_, i) => 10 + i), 'the path holds what came after the removal');
    rmSync(dir, { recursive: true });
    for (let i = 20; i < 30; i++) s.write(ev(i));
    await s.flushed();
    assert.deepEqual(lines(join(dir, 'events.jsonl')), Array.from({ length: 10 }, (_, i) => 20 + i), 'the directory is made again');
    assert.equal(s.stats().delivered, 30);
    await s.close();
  });

  it('a file whose end is part of a record (a crash mid-write) keeps the fragment on its own line: no new record is joined to it', async () => {
    const dir = tmp();
    const path = join(dir, 'events.jsonl');
    writeFileSync(path, `${JSON.stringify(ev(0))}\n{"v":1,"type":"sink.reco`);
    const s = sink(dir, {});
    for (let i = 1; i <= 3; i++) s.write(ev(i));
    await s.close();
    const text = readFileSync(path, 'utf8').split('\n');
    assert.deepEqual(text, [JSON.stringify(ev(0)), '{"v":1,"type":"sink.reco', JSON.stringify(ev(1)), JSON.stringify(ev(2)), JSON.stringify(ev(3)), '']);
    // A file that ends on a boundary gets no blank line.
    const s2 = sink(dir, {});
    s2.write(ev(4));
    await s2.close();
    assert.deepEqual(readFileSync(path, 'utf8').split('\n').slice(-3), [JSON.stringify(ev(3)), JSON.stringify(ev(4)), '']);
  });

  it('takes only the configured event types', async () => {
    const dir = tmp();
    const s = new FileSink({ name: 'f', path: join(dir, 'a.jsonl'), types: ['alert', 'gateway.*'], rotate: { maxBytes: 1 << 20, intervalMs: 0, keep: 1, maxAgeMs: 0 }, maxQueueBytes: 1 << 20, emit: () => {}, onError: () => {} });
    s.write(ev(1));
    s.write({ v: 1, type: 'gateway.started', time: '2025-01-01T00:00:00.000Z', listeners: [], version: '0' });
    await s.close();
    assert.deepEqual(readFileSync(join(dir, 'a.jsonl'), 'utf8').split('\n').filter(Boolean).map((l) => (JSON.parse(l) as { type: string }).type), ['gateway.started']);
  });

  it('keeps the lines of a failed write and writes them once the file can be opened again (no loss)', async () => {
    const dir = tmp();
    const errors: string[] = [];
    const emitted: EvidenceEvent[] = [];
    const s = new FileSink({ name: 'f', path: join(dir, 'sub', 'events.jsonl'), rotate: { maxBytes: 1 << 30, intervalMs: 0, keep: 1, maxAgeMs: 0 }, maxQueueBytes: 1 << 20, emit: (e) => emitted.push(e), onError: (e) => errors.push((e as NodeJS.ErrnoException).code ?? e.message) });
    // The directory's place is taken by a file before the first write: it cannot be made again.
    rmSync(join(dir, 'sub'), { recursive: true });
    writeFileSync(join(dir, 'sub'), 'not a directory');
    for (let i = 0; i < 50; i++) s.write(ev(i));
    while (errors.length === 0) await new Promise((r) => setTimeout(r, 5));
    assert.ok(['EEXIST', 'ENOTDIR'].includes(errors[0] as string), errors[0]);
    assert.equal(s.stats().pending_events, 50, 'the failed batch is back in the queue');
    rmSync(join(dir, 'sub'));
    mkdirSync(join(dir, 'sub'));
    for (let i = 50; i < 60; i++) s.write(ev(i));
    // The retry (about a second later) writes everything, in order.
    while (s.stats().delivered < 60) await new Promise((r) => setTimeout(r, 20));
    await s.close();
    assert.deepEqual(lines(join(dir, 'sub', 'events.jsonl')), Array.from({ length: 60 }, (_, i) => i));
    assert.equal(emitted.filter((e) => e.type === 'sink.dropped').length, 0);
  });

  it('on a disk that never takes the lines, close() returns and reports them as dropped (unwritable)', async () => {
    const emitted: EvidenceEvent[] = [];
    const errors: string[] = [];
    // /dev/full: every write fails with ENOSPC.
    const s = new FileSink({ name: 'full', path: '/dev/full', rotate: { maxBytes: 1 << 30, intervalMs: 0, keep: 1, maxAgeMs: 0 }, maxQueueBytes: 1 << 20, emit: (e) => emitted.push(e), onError: (e) => errors.push((e as NodeJS.ErrnoException).code ?? e.message) });
    for (let i = 0; i < 10; i++) s.write(ev(i));
    while (errors.length === 0) await new Promise((r) => setTimeout(r, 5));
    await s.close();
    assert.equal(errors[0], 'ENOSPC');
    const drops = emitted.filter((e) => e.type === 'sink.dropped');
    assert.deepEqual(drops.map((e) => e.type === 'sink.dropped' && [e.dropped, e.reason]), [[10, 'unwritable']]);
    assert.equal(s.stats().dropped, 10);
    assert.equal(s.stats().delivered, 0);
  });
});
