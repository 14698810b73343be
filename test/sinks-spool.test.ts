/**
 * The on-disk spool alone: acknowledged records are never delivered again after a restart,
 * a torn record from a crash mid-write is discarded (never delivered half), and a buffer
 * directory that cannot be written reports its drops as `unwritable` instead of growing.
 */
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { appendFileSync, mkdtempSync, readdirSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Spool, type DropReason } from '../src/sinks/spool.js';

const dirs: string[] = [];
after(() => { for (const d of dirs) rmSync(d, { recursive: true, force: true }); });
const tmp = () => { const d = mkdtempSync(join(tmpdir(), 'cp-spool-')); dirs.push(d); return d; };

function spool(dir: string, drops: [number, DropReason][] = [], errors: Error[] = [], maxMemoryBytes?: number): Spool {
  return new Spool({ dir, maxBytes: 1 << 20, segmentBytes: 4096, fsync: 'always', fsyncIntervalMs: 1000, maxMemoryBytes, onDrop: (n, r) => drops.push([n, r]), onError: (e) => errors.push(e) });
}

async function drain(s: Spool, max = 1000): Promise<string[]> {
  const out: string[] = [];
  // Records still on their way to disk come within a few writes; a buffer that claims pending
  // records it never yields is a bug to report, not to wait for.
  for (let idle = 0; ;) {
    const b = await s.read(max, 1 << 20);
    if (b === null) {
      if (s.pendingEvents === 0) return out;
      if (++idle > 300) throw new Error(`${s.pendingEvents} records pending, none readable for 3 s`);
      await new Promise((r) => setTimeout(r, 10));
      continue;
    }
    idle = 0;
    out.push(...b.lines);
    await s.ack(b);
  }
}

async function settle(s: Spool): Promise<void> {
  for (let i = 0; i < 100 && s.pendingEvents > 0 && (await s.read(1, 1 << 20)) === null; i++) await new Promise((r) => setTimeout(r, 10));
}

describe('spool', () => {
  it('skips a segment damaged behind its back (shorter than recorded), counted, and delivers the next ones', async () => {
    const dir = tmp();
    const a = spool(dir);
    for (let i = 0; i < 300; i++) a.append(`{"n":${i},"pad":"${'x'.repeat(40)}"}\n`);
    await settle(a);
    await a.close();
    const drops: [number, DropReason][] = [];
    const errors: Error[] = [];
    const b = spool(dir, drops, errors);
    await b.ready;
    // Someone truncates the oldest segment in the middle of a record after the scan.
    const segs = readdirSync(dir).filter((f) => f.endsWith('.log')).sort();
    assert.ok(segs.length >= 3, segs.join(','));
    truncateSync(join(dir, segs[0] as string), 10);
    const first = await b.read(1000, 1 << 20);
    assert.ok(first);
    assert.ok(!(first.lines[0] as string).startsWith('{"n":0,'), 'the damaged segment was skipped');
    assert.equal(drops.length, 1);
    assert.equal(drops[0]?.[1], 'unwritable');
    assert.ok((drops[0]?.[0] ?? 0) >= 1);
    assert.match(errors[0]?.message ?? '', /holds no complete record/);
    await b.close();
  });

  it('never redelivers acknowledged records after a restart; delivers the rest in order', async () => {
    const dir = tmp();
    const a = spool(dir);
    for (let i = 0; i < 300; i++) a.append(`{"n":${i}}\n`);
    await settle(a);
    const b1 = await a.read(100, 1 << 20);
    assert.ok(b1);
    await a.ack(b1);
    const inFlight = await a.read(50, 1 << 20); // read but never acknowledged: must come again
    assert.ok(inFlight);
    await a.close();
    const b = spool(dir);
    const rest = await drain(b);
    assert.deepEqual(rest, Array.from({ length: 300 - b1.lines.length }, (_, i) => `{"n":${i + b1.lines.length}}`));
    assert.equal(b.pendingEvents, 0);
    await b.close();
    const c = spool(dir);
    assert.deepEqual(await drain(c), [], 'nothing again after everything was acknowledged');
    await c.close();
  });

  it('regression: a record torn by a crash mid-write is discarded, not delivered half', async () => {
    const dir = tmp();
    const a = spool(dir);
    for (let i = 0; i < 3; i++) a.append(`{"n":${i}}\n`);
    await a.close();
    const seg = readdirSync(dir).filter((f) => f.endsWith('.log')).sort()[0] as string;
    appendFileSync(join(dir, seg), '{"n":3,"trunc'); // the crash
    const b = spool(dir);
    b.append('{"n":4}\n');
    await settle(b);
    assert.deepEqual(await drain(b), ['{"n":0}', '{"n":1}', '{"n":2}', '{"n":4}']);
    await b.close();
  });

  it('a garbage cursor file is ignored (delivery starts at the oldest record), not a crash', async () => {
    const dir = tmp();
    const a = spool(dir);
    a.append('{"n":0}\n');
    await a.close();
    writeFileSync(join(dir, 'cursor.json'), '{"seq":"x"');
    const b = spool(dir);
    assert.deepEqual(await drain(b), ['{"n":0}']);
    await b.close();
  });

  it('a cursor pointing into the middle of a record falls back to the record\'s start (never half a record)', async () => {
    const dir = tmp();
    const a = spool(dir);
    a.append('{"n":0}\n');
    a.append('{"n":1}\n');
    await a.close();
    const seg = Number(readdirSync(dir).find((f) => f.endsWith('.log'))?.slice(0, 16));
    writeFileSync(join(dir, 'cursor.json'), JSON.stringify({ seq: seg, offset: 11 })); // inside {"n":1}
    const b = spool(dir);
    assert.deepEqual(await drain(b), ['{"n":1}']);
    await b.close();
  });

  it('an unwritable buffer directory reports drops as unwritable and stays bounded in memory', async () => {
    const base = tmp();
    const file = join(base, 'not-a-dir');
    writeFileSync(file, 'x');
    const drops: [number, DropReason][] = [];
    const errors: Error[] = [];
    const s = spool(join(file, 'spool'), drops, errors, 1000);
    await s.ready;
    for (let i = 0; i < 100; i++) s.append(`{"n":${i},"pad":"${'x'.repeat(50)}"}\n`);
    assert.ok(errors.length >= 1, 'the failure is reported');
    assert.ok(drops.length > 0 && drops.every(([, r]) => r === 'unwritable'), JSON.stringify(drops));
    assert.ok(s.pendingBytes <= 1000, `bounded: ${s.pendingBytes}`);
    assert.equal(s.pendingEvents + drops.reduce((n, [k]) => n + k, 0), 100, 'every record is either pending or counted as dropped');
    // The operator fixes the directory: what is still in memory is written and readable.
    rmSync(file);
    const kept = s.pendingEvents;
    assert.ok(kept > 0);
    const got = await drain(s);
    assert.equal(got.length, kept);
    assert.deepEqual(got.at(-1), `{"n":99,"pad":"${'x'.repeat(50)}"}`);
    await s.close();
  });

  it('a reader a little behind a steady stream takes its batches from memory, also after the writer moved to a new segment', async () => {
    // Regression: the records kept in memory were dropped at every new segment and taken up
    // again only by a write landing exactly at the acknowledged position, which a reader that
    // is a few records behind never is: from the first new segment on, every batch was read
    // back from the file.
    const s = spool(tmp());
    await s.ready;
    const rec = (n: number) => `{"n":${n},"pad":"${'x'.repeat(30)}"}\n`; // ~50 bytes: 80 a segment
    let next = 0;
    for (; next < 8; next++) s.append(rec(next)); // the reader starts 8 records behind
    const got: string[] = [];
    let batches = 0;
    let fromMemoryAtFirstRotation = -1;
    let batchesAtFirstRotation = 0;
    for (let step = 0; step < 160; step++) {
      for (let i = 0; i < 4; i++) s.append(rec(next++));
      await new Promise((r) => setTimeout(r, 15)); // the buffer writes every 10 ms
      const b = await s.read(4, 1 << 20);
      if (b === null) continue;
      batches++;
      got.push(...b.lines);
      await s.ack(b);
      if (fromMemoryAtFirstRotation < 0 && got.length > 80) {
        fromMemoryAtFirstRotation = s.batchesFromMemory;
        batchesAtFirstRotation = batches;
      }
    }
    got.push(...(await drain(s)));
    // Everything, once, in order.
    assert.deepEqual(got, Array.from({ length: next }, (_, n) => rec(n).slice(0, -1)));
    // After the first segment was full, the file is read only around each change of segment
    // (the records the reader still had to take from the old one: 2–3 batches in 20 here).
    const later = batches - batchesAtFirstRotation;
    const fromMemory = s.batchesFromMemory - fromMemoryAtFirstRotation;
    // A slow machine makes some steps find nothing written yet: the share is what matters.
    assert.ok(later >= 40, `batches after the first segment: ${later}`);
    assert.ok(fromMemory >= later * 0.7, `from memory: ${fromMemory} of ${later} batches after the first segment`);
    await s.close();
  });

  it('delivers every record once and in order whatever the mix of writes, reads, retries and new segments (from memory or from the file)', async () => {
    // Seeded, so that a failure can be replayed; records of varied length and multi-byte text
    // (sizes are UTF-8 bytes, lengths are not), segments of 4 KiB so that many are crossed.
    let seed = 0x2f6b3c1d;
    const rand = () => { seed = (seed * 1103515245 + 12345) >>> 0; return seed / 2 ** 32; };
    const s = spool(tmp());
    await s.ready;
    const sent: string[] = [];
    const got: string[] = [];
    const rec = (n: number) => JSON.stringify({ n, t: 'é€𝄞'.repeat(Math.floor(rand() * 4)), pad: 'x'.repeat(Math.floor(rand() * 300)) });
    for (let step = 0; step < 400; step++) {
      const add = Math.floor(rand() * 6);
      for (let i = 0; i < add; i++) { const r = rec(sent.length); sent.push(r); s.append(`${r}\n`); }
      if (rand() < 0.5) await new Promise((r) => setTimeout(r, 11)); // let the buffer write
      const b = await s.read(1 + Math.floor(rand() * 8), 200 + Math.floor(rand() * 2000));
      if (b === null) continue;
      // A failed send is retried: the same batch comes back until it is acknowledged.
      if (rand() < 0.2) {
        const again = await s.read(1000, 1 << 20);
        assert.ok(again !== null && again.lines[0] === b.lines[0], 'an unacknowledged batch starts the next read again');
        continue;
      }
      got.push(...b.lines);
      await s.ack(b);
    }
    got.push(...(await drain(s)));
    assert.equal(got.length, sent.length);
    assert.deepEqual(got, sent);
    assert.ok(s.batchesFromMemory > 0, 'some batches came from memory');
    await s.close();
  });
});

describe('spool id', () => {
  it('is random per directory and kept across restarts (batch ids built on positions alone repeat in a new directory)', async () => {
    const a = mkdtempSync(join(tmpdir(), 'cp-spool-id-'));
    const b = mkdtempSync(join(tmpdir(), 'cp-spool-id-'));
    try {
      const opts = (dir: string) => ({ dir, maxBytes: 1 << 20, segmentBytes: 4096, fsync: 'never' as const, fsyncIntervalMs: 1000, onDrop: () => {}, onError: () => {} });
      const s1 = new Spool(opts(a));
      const s2 = new Spool(opts(b));
      await Promise.all([s1.ready, s2.ready]);
      assert.match(s1.id, /^[0-9a-f]{16}$/);
      assert.notEqual(s1.id, s2.id);
      const first = s1.id;
      await s1.close();
      await s2.close();
      const again = new Spool(opts(a));
      await again.ready;
      assert.equal(again.id, first);
      await again.close();
    } finally {
      rmSync(a, { recursive: true, force: true });
      rmSync(b, { recursive: true, force: true });
    }
  });
});

describe('a file system that takes part of a write (a disk filling up)', () => {
  // The kernel's file size limit (ulimit -f) gives exactly what a filling disk gives: the first
  // write that crosses it is cut short and succeeds, the next fails (EFBIG here, ENOSPC there).
  // Both the disk buffer and the file sink must keep whole records on disk and every record
  // either written or still held — none taken as written and lost.
  function underLimit(body: string): { lines: string[]; report: Record<string, number> } {
    const dir = mkdtempSync(join(tmpdir(), 'cp-short-write-'));
    try {
      const script = join(dir, 'run.mjs');
      writeFileSync(script, `process.on('SIGXFSZ', () => {});
const dir = ${JSON.stringify(dir)};
const { Spool } = await import(${JSON.stringify(new URL('../src/sinks/spool.js', import.meta.url).href)});
const { FileSink } = await import(${JSON.stringify(new URL('../src/sinks/file.js', import.meta.url).href)});
const pause = (ms) => new Promise((r) => setTimeout(r, ms));
${body}`);
      // 8 blocks of 512 bytes (dash's unit): files stop at 4096 bytes.
      const r = spawnSync('sh', ['-c', `ulimit -f 8; exec "${process.execPath}" "${script}"`], { encoding: 'utf8', timeout: 60_000 });
      assert.equal(r.status, 0, r.stderr);
      const report = JSON.parse(r.stdout.trim().split('\n').at(-1) as string) as Record<string, number>;
      const file = readdirSync(join(dir, 'out')).filter((f) => f.endsWith('.log') || f.endsWith('.jsonl')).sort().map((f) => readFileSync(join(dir, 'out', f), 'utf8')).join('');
      assert.ok(file.length <= 4096, `${file.length} bytes`);
      assert.ok(file === '' || file.endsWith('\n'), 'the file ends on a record boundary');
      return { lines: file.split('\n').filter((l) => l !== ''), report };
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
  const record = (i: number) => JSON.stringify({ n: i, pad: 'x'.repeat(90) });

  it('the disk buffer keeps whole records on disk and the rest in memory', () => {
    const { lines, report } = underLimit(`
const errors = [];
const s = new Spool({ dir: dir + '/out', maxBytes: 1 << 20, segmentBytes: 1 << 20, fsync: 'never', fsyncIntervalMs: 1000, onDrop: () => {}, onError: (e) => errors.push(e.code) });
await s.ready;
// 20 records fit; the next 80 cross the limit part-way through their write.
for (let i = 0; i < 20; i++) s.append(JSON.stringify({ n: i, pad: 'x'.repeat(90) }) + '\\n');
await pause(200);
for (let i = 20; i < 100; i++) s.append(JSON.stringify({ n: i, pad: 'x'.repeat(90) }) + '\\n');
await pause(300);
console.log(JSON.stringify({ pending: s.pendingEvents, errors: errors.length }));
process.exit(0);`);
    for (const l of lines) JSON.parse(l); // every line a whole record
    assert.deepEqual(lines.map((l) => (JSON.parse(l) as { n: number }).n), lines.map((_, i) => i), 'in order, none joined');
    assert.equal(lines.length, 20, 'the first write whole; the part of the second that fitted was taken back');
    assert.equal(report.pending, 100, 'nothing acknowledged: all 100 are pending, on disk or in memory');
    assert.ok((report.errors as number) >= 1, 'the failure is reported');
    assert.equal(lines[0], record(0));
  });

  it('closing the disk buffer on a full disk reports what it could not write as dropped (unwritable)', () => {
    const { lines, report } = underLimit(`
const drops = [];
const s = new Spool({ dir: dir + '/out', maxBytes: 1 << 20, segmentBytes: 1 << 20, fsync: 'never', fsyncIntervalMs: 1000, onDrop: (n, reason) => drops.push([n, reason]), onError: () => {} });
await s.ready;
for (let i = 0; i < 100; i++) s.append(JSON.stringify({ n: i, pad: 'x'.repeat(90) }) + '\\n');
await pause(300);
const before = s.pendingEvents;
await s.close(); // a shutdown: what memory holds cannot wait for the disk
console.log(JSON.stringify({ before, dropped: drops.reduce((n, [k]) => n + k, 0), reasons: drops.filter(([, r]) => r !== 'unwritable').length }));
process.exit(0);`);
    assert.equal(report.before, 100);
    assert.equal(report.reasons, 0, 'reported as unwritable');
    assert.ok(lines.length < 100, 'the disk could not take all of them');
    assert.equal(lines.length + (report.dropped as number), 100, 'every record is on disk or reported as dropped');
  });

  it('the disk buffer moves to a new segment when a failed write cannot be undone (no record joined to a fragment)', (t) => {
    // An append-only file (chattr +a) takes appends but refuses the truncate that would take
    // the part of a record a short write left behind: the segment no longer ends on a boundary.
    const dir = mkdtempSync(join(tmpdir(), 'cp-torn-'));
    const seg = join(dir, 'out', '0000000000000001.log');
    try {
      const probe = join(dir, 'probe');
      writeFileSync(probe, '');
      if (spawnSync('chattr', ['+a', probe]).status !== 0) return t.skip('needs chattr +a (root, a file system with attributes)');
      spawnSync('chattr', ['-a', probe]);
      const script = join(dir, 'run.mjs');
      writeFileSync(script, `process.on('SIGXFSZ', () => {});
const { Spool } = await import(${JSON.stringify(new URL('../src/sinks/spool.js', import.meta.url).href)});
const pause = (ms) => new Promise((r) => setTimeout(r, ms));
const errors = [];
const s = new Spool({ dir: ${JSON.stringify(join(dir, 'out'))}, maxBytes: 1 << 20, segmentBytes: 1 << 20, fsync: 'never', fsyncIntervalMs: 1000, onDrop: () => {}, onError: (e) => errors.push(e.code) });
await s.ready;
(await import('node:child_process')).execFileSync('chattr', ['+a', ${JSON.stringify(seg)}]);
for (let i = 0; i < 20; i++) s.append(JSON.stringify({ n: i, pad: 'x'.repeat(90) }) + '\\n');
await pause(200);
// These cross the file size limit part-way: a short write, then EFBIG, then a refused truncate.
// (25 records: once the first segment is left, they fit in a new one under the limit.)
for (let i = 20; i < 45; i++) s.append(JSON.stringify({ n: i, pad: 'x'.repeat(90) }) + '\\n');
await pause(1600);
// Reading retires (deletes) the first segment: let it be deleted again.
(await import('node:child_process')).execFileSync('chattr', ['-a', ${JSON.stringify(seg)}]);
const torn = !(await import('node:fs')).readFileSync(${JSON.stringify(seg)}, 'utf8').endsWith('\\n');
const got = [];
for (;;) { const b = await s.read(1000, 1 << 20); if (!b || b.lines.length === 0) break; got.push(...b.lines); await s.ack(b); }
console.log(JSON.stringify({ got, errors, torn }));
process.exit(0);`);
      const r = spawnSync('sh', ['-c', `ulimit -f 8; exec "${process.execPath}" "${script}"`], { encoding: 'utf8', timeout: 60_000 });
      assert.equal(r.status, 0, r.stderr);
      const report = JSON.parse(r.stdout.trim().split('\n').at(-1) as string) as { got: string[]; errors: string[]; torn: boolean };
      assert.ok(report.errors.length >= 1, 'the failed write is reported');
      assert.equal(report.torn, true, 'the first segment ends in a fragment');
      // Every record read back is whole and in order, and none is missing: the fragment was
      // never read, nothing was joined to it, and the records it held were written again.
      const ns = report.got.map((l) => (JSON.parse(l) as { n: number }).n);
      assert.deepEqual(ns, Array.from({ length: 45 }, (_, i) => i));
    } finally {
      spawnSync('chattr', ['-a', seg]);
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('the file sink rolls a failed write back to the file\'s real size (someone truncated it meanwhile: copytruncate)', () => {
    const { lines } = underLimit(`
const f = new FileSink({ name: 'f', path: dir + '/out/events.jsonl', rotate: { maxBytes: 1 << 30, intervalMs: 0, keep: 1, maxAgeMs: 0 }, maxQueueBytes: 1 << 20, emit: () => {}, onError: () => {} });
const ev = (i) => ({ v: 1, type: 'sink.recovered', time: new Date(0).toISOString(), sink: 'x'.repeat(60), down_ms: i, pending_events: 0 });
for (let i = 0; i < 20; i++) f.write(ev(i));
await pause(200);
(await import('node:fs')).truncateSync(dir + '/out/events.jsonl', 0);
for (let i = 20; i < 100; i++) f.write(ev(i));
await pause(300);
console.log(JSON.stringify({}));
process.exit(0);`);
    assert.deepEqual(lines, [], 'no half record left behind');
  });

  it('the file sink writes whole lines and counts only what it wrote', () => {
    const { lines, report } = underLimit(`
const errors = [];
const f = new FileSink({ name: 'f', path: dir + '/out/events.jsonl', rotate: { maxBytes: 1 << 30, intervalMs: 0, keep: 1, maxAgeMs: 0 }, maxQueueBytes: 1 << 20, emit: () => {}, onError: (e) => errors.push(e.code) });
const ev = (i) => ({ v: 1, type: 'sink.recovered', time: new Date(0).toISOString(), sink: 'x'.repeat(60), down_ms: i, pending_events: 0 });
for (let i = 0; i < 20; i++) f.write(ev(i));
await pause(200);
for (let i = 20; i < 100; i++) f.write(ev(i));
await pause(300);
const st = f.stats();
console.log(JSON.stringify({ delivered: st.delivered, pending: st.pending_events, dropped: st.dropped, errors: errors.length }));
process.exit(0);`);
    const seen = lines.map((l) => (JSON.parse(l) as { down_ms: number }).down_ms);
    assert.deepEqual(seen, seen.map((_, i) => i), 'whole lines, in order');
    assert.equal(seen.length, 20, 'the first write whole; the part of the second that fitted was taken back');
    assert.equal(report.delivered, seen.length, 'delivered counts what is in the file');
    assert.equal((report.delivered as number) + (report.pending as number) + (report.dropped as number), 100, 'every event written, held or counted as dropped');
    assert.ok((report.errors as number) >= 1);
  });
});
