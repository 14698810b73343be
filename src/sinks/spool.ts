/**
 * A bounded on-disk FIFO of JSON lines in front of a network sink, so that a destination that
 * is down costs disk space, not events (DESIGN §5: never lose an event silently).
 *
 * Layout: `<dir>/<16-digit seq>.log` segment files of newline-terminated records, and
 * `<dir>/cursor.json` = `{seq, offset}`, the first byte not yet acknowledged by the
 * destination. `append()` is synchronous and only queues in memory; one writer at a time
 * appends queued lines to the newest segment once per event-loop turn. Readers see only bytes
 * already written. A restart scans the segments, truncates a torn last record (a crash in the
 * middle of a write) and opens a new segment; delivery resumes from the cursor, so events come
 * out in the order they went in, at least once (a crash between a delivery and the cursor
 * write repeats that batch).
 *
 * Bound: when the segments exceed `maxBytes`, whole oldest segments are deleted and the
 * records in them that were not yet acknowledged are reported through `onDrop` — counted
 * conservatively (a batch in flight at that moment may still arrive). While the disk itself
 * fails, lines wait in memory up to `maxMemoryBytes`, then the oldest are dropped and reported.
 *
 * fsync: `always` — after every write and cursor update (survives power loss, slowest);
 * `interval` — at most once per `fsyncIntervalMs` (a power loss loses at most that window;
 * a process crash loses nothing the kernel accepted); `never` — left to the kernel.
 */
import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { open, readdir, readFile, rename, rm, stat, writeFile, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { scanSpool, SEGMENT_RE, segmentName as name, SpoolTail, type Batch, type Position, type Segment } from './spool-parts.js';
import { appendWholeSync } from './append-whole.js';
import { COALESCE_MS, WRITE_NOW_BYTES } from './types.js';

export type { Batch } from './spool-parts.js';

export type DropReason = 'buffer_full' | 'queue_full' | 'unwritable';

export interface SpoolOptions {
  readonly dir: string;
  readonly maxBytes: number;
  readonly segmentBytes: number;
  readonly fsync: 'always' | 'interval' | 'never';
  readonly fsyncIntervalMs: number;
  readonly maxMemoryBytes?: number;
  readonly onDrop: (n: number, reason: DropReason) => void;
  readonly onError: (err: Error) => void;
}

export class Spool {
  readonly #o: SpoolOptions;
  readonly #segBytes: number;
  readonly #maxMem: number;
  #segs: Segment[] = [];
  /** Acknowledged position: segment seq and byte offset, and records before it in that segment. */
  #cur: Position = { seq: 0, offset: 0, consumed: 0 };
  #mem: string[] = [];
  /** UTF-8 byte length of each #mem line, computed once. */
  #memSizes: number[] = [];
  #memBytes = 0;
  readonly #tail = new SpoolTail();
  #fh: FileHandle | null = null;
  #writing = false;
  #scheduled = false;
  #dirty = false;
  #writeFailed = false;
  /** The last write left part of a record at the end of its segment (appendWholeSync's `torn`). */
  #torn = false;
  #closed = false;
  #waiters: (() => void)[] = [];
  #fsyncTimer: NodeJS.Timeout | null = null;
  #saving: Promise<void> = Promise.resolve();
  readonly ready: Promise<void>;

  constructor(o: SpoolOptions) {
    this.#o = o;
    // A segment is the unit of dropping: keep several within the bound so a drop is a small part.
    this.#segBytes = Math.max(4096, Math.min(o.segmentBytes, Math.floor(o.maxBytes / 4)));
    this.#maxMem = o.maxMemoryBytes ?? 64 * 1024 * 1024;
    this.ready = this.#init().catch((err: Error) => { this.#writeFailed = true; o.onError(err); });
    if (o.fsync === 'interval') {
      this.#fsyncTimer = setInterval(() => void this.#sync(), o.fsyncIntervalMs);
      this.#fsyncTimer.unref();
    }
  }

  /** Events not yet acknowledged (on disk and in memory). */
  get pendingEvents(): number {
    return this.#segs.reduce((n, s) => n + s.records, 0) - this.#cur.consumed + this.#mem.length;
  }

  /** Batches `read()` took from the records kept in memory rather than from the file (tests, diagnostics). */
  get batchesFromMemory(): number {
    return this.#tail.served;
  }

  get pendingBytes(): number {
    return this.#segs.reduce((n, s) => n + s.size, 0) - this.#cur.offset + this.#memBytes;
  }

  /** Queues one newline-terminated record. Synchronous and cheap: no I/O here. */
  append(line: string): void {
    if (this.#closed) return;
    const size = Buffer.byteLength(line);
    this.#mem.push(line);
    this.#memSizes.push(size);
    this.#memBytes += size;
    if (this.#memBytes > this.#maxMem) {
      let n = 0;
      while (this.#memBytes > this.#maxMem && this.#mem.length > 1) {
        this.#mem.shift();
        this.#memBytes -= this.#memSizes.shift() as number;
        n++;
      }
      if (n > 0) this.#o.onDrop(n, this.#writeFailed ? 'unwritable' : 'queue_full');
    }
    this.#schedule();
  }

  #schedule(): void {
    if (this.#scheduled || this.#writing) return;
    this.#scheduled = true;
    // A short delay coalesces the records of many event-loop turns into one write.
    setTimeout(() => { this.#scheduled = false; void this.#write(); }, COALESCE_MS);
  }

  /**
   * This buffer's own random name, kept in `<dir>/id` across restarts. Positions (segment and
   * offset) start again at 1 in a new directory (a new container, a reset) and repeat across
   * gateways, so batch ids built on them alone could name a real new batch as a duplicate.
   */
  id = '';

  async #init(): Promise<void> {
    mkdirSync(this.#o.dir, { recursive: true, mode: 0o700 });
    this.id = await spoolId(this.#o.dir);
    const { segs, cur, lastSeq } = await scanSpool(this.#o.dir);
    this.#segs = segs;
    if (cur !== null) this.#cur = cur;
    await this.#openSegment(lastSeq + 1);
  }

  async #openSegment(seq: number): Promise<void> {
    await this.#fh?.close();
    this.#fh = await open(join(this.#o.dir, name(seq)), 'a', 0o600);
    this.#segs.push({ seq, size: 0, records: 0 });
    if (this.#segs.length === 1) this.#cur = { seq, offset: 0, consumed: 0 };
  }

  async #write(): Promise<void> {
    if (this.#writing || this.#mem.length === 0 || this.#closed) return;
    this.#writing = true;
    try {
      await this.ready;
      if (this.#fh === null) await this.#init(); // the directory failed at start: try again (it may be fixed)
      let owed = this.#mem.length;
      while (this.#mem.length > 0 && this.#fh !== null) {
        let seg = this.#segs.at(-1) as Segment;
        // After a write that left part of a record behind (see appendWholeSync), the segment's end
        // is no longer a record boundary: what follows goes to a new one, and readers stop at
        // the recorded size, before the fragment.
        if (seg.size >= this.#segBytes || this.#torn) {
          await this.#openSegment(seg.seq + 1);
          this.#torn = false;
          seg = this.#segs.at(-1) as Segment;
        }
        // Take lines up to the segment's room (at least one line, however long).
        let bytes = 0;
        let n = 0;
        const room = this.#segBytes - seg.size;
        while (n < this.#mem.length) {
          const b = this.#memSizes[n] as number;
          if (n > 0 && bytes + b > room) break;
          bytes += b;
          n++;
        }
        const taken = this.#mem.slice(0, n);
        const sizes = this.#memSizes.slice(0, n);
        const chunk = Buffer.from(taken.join(''));
        // Synchronous, like the file sink's appends (file.ts): a disk buffer lives on the
        // evidence thread, where an asynchronous write was two trips through libuv's thread pool.
        appendWholeSync(this.#fh.fd, chunk, seg.size);
        this.#mem.splice(0, n);
        this.#memSizes.splice(0, n);
        this.#memBytes -= bytes;
        this.#tail.remember(seg.seq, seg.size, taken, sizes, chunk.length);
        seg.size += chunk.length;
        seg.records += n;
        this.#writeFailed = false;
        if (this.#o.fsync === 'always') await this.#fh.datasync();
        else this.#dirty = true;
        this.#enforceBound();
        this.#wake();
        // Write what was queued when this write began (across segment boundaries); records
        // that arrived meanwhile wait for the next one, so that under load they gather rather
        // than go a few per thread-pool trip (see FileSink) — unless many are waiting.
        owed -= n;
        if (owed <= 0 && this.#memBytes < WRITE_NOW_BYTES) break;
      }
    } catch (err) {
      if ((err as { torn?: boolean }).torn === true) this.#torn = true;
      this.#writeFailed = true;
      this.#o.onError(err as Error);
      setTimeout(() => this.#schedule(), 1000).unref();
    } finally {
      this.#writing = false;
      if (this.#mem.length > 0 && !this.#writeFailed) this.#schedule();
    }
  }

  #enforceBound(): void {
    let total = this.#segs.reduce((n, s) => n + s.size, 0);
    let dropped = 0;
    while (total > this.#o.maxBytes && this.#segs.length > 1) {
      const old = this.#segs.shift() as Segment;
      total -= old.size;
      dropped += old.seq === this.#cur.seq ? old.records - this.#cur.consumed : old.records;
      const next = this.#segs[0] as Segment;
      this.#cur = { seq: next.seq, offset: 0, consumed: 0 };
      void rm(join(this.#o.dir, name(old.seq)), { force: true });
    }
    if (dropped > 0) {
      void this.#saveCursor();
      this.#o.onDrop(dropped, 'buffer_full');
    }
  }

  /** The next batch after the acknowledged position, or null when nothing is written yet. */
  async read(maxRecords: number, maxBytes: number): Promise<Batch | null> {
    await this.ready;
    for (;;) {
      const seg = this.#segs.find((s) => s.seq === this.#cur.seq);
      if (!seg) return null;
      const fromMemory = this.#tail.take(this.#cur, maxRecords, maxBytes, this.#segmentDone(seg));
      if (fromMemory) return fromMemory;
      if (this.#cur.offset < seg.size) {
        try {
          return await this.#readFrom(seg, maxRecords, maxBytes);
        } catch (err) {
          // A damaged segment that is no longer written to is skipped, counted and reported, so
          // that one bad file does not hold back every record after it for good. (The segment
          // being written to keeps failing loudly: its next records would land after the damage.)
          if ((err as { code?: string }).code !== 'SPOOL_DAMAGED' || seg === this.#segs.at(-1)) throw err;
          this.#o.onError(err as Error);
          this.#o.onDrop(Math.max(1, seg.records - this.#cur.consumed), 'unwritable');
          await this.#retireFirst();
          continue;
        }
      }
      if (seg === this.#segs.at(-1)) return null;
      await this.#retireFirst();
    }
  }

  /**
   * The segment takes no more records: a later one exists, or it is full and the next write
   * opens one. A batch that ends it cannot grow by waiting (reads never cross a segment), so
   * it goes at once; waiting there made a backlog drain one segment per batch_wait.
   */
  #segmentDone(seg: Segment): boolean {
    return seg !== this.#segs.at(-1) || seg.size >= this.#segBytes;
  }

  async #readFrom(seg: Segment, maxRecords: number, maxBytes: number): Promise<Batch> {
    const fh = await open(join(this.#o.dir, name(seg.seq)), 'r');
    try {
      const start = this.#cur.offset;
      let len = Math.min(Math.max(maxBytes, 1024), seg.size - start);
      for (;;) {
        const buf = Buffer.allocUnsafe(len);
        const { bytesRead } = await fh.read(buf, 0, len, start);
        const data = buf.subarray(0, bytesRead);
        const lines: string[] = [];
        let pos = 0;
        while (lines.length < maxRecords) {
          const nl = data.indexOf(0x0a, pos);
          if (nl < 0 || (lines.length > 0 && nl + 1 > maxBytes)) break;
          lines.push(data.toString('utf8', pos, nl));
          pos = nl + 1;
        }
        if (lines.length > 0) return { lines, bytes: pos, seq: seg.seq, end: start + pos, more: start + pos < seg.size || this.#segmentDone(seg) };
        if (bytesRead < len || len >= seg.size - start) {
          // No complete record up to where the segment should end: the file is shorter than
          // recorded or damaged (whole-record appends cannot leave this). Say so and let the
          // sink retry after its pause, rather than loop here asking for bytes that are not there.
          throw Object.assign(new Error(`disk buffer segment ${name(seg.seq)} holds no complete record after byte ${start} (${bytesRead} bytes read, ${seg.size - start} expected)`), { code: 'SPOOL_DAMAGED' });
        }
        len = Math.min(len * 2, seg.size - start); // one record longer than maxBytes: read all of it
      }
    } finally {
      await fh.close();
    }
  }

  /** True when the batch's records were dropped by the bound after it was read: stop retrying it. */
  isStale(b: Batch): boolean {
    return b.seq < this.#cur.seq;
  }

  /** Marks a batch delivered; a batch whose segment was dropped meanwhile changes nothing. */
  async ack(b: Batch): Promise<void> {
    if (b.seq !== this.#cur.seq || b.end <= this.#cur.offset) return;
    this.#cur = { seq: b.seq, offset: b.end, consumed: this.#cur.consumed + b.lines.length };
    this.#tail.ack(b);
    const seg = this.#segs[0] as Segment;
    if (this.#cur.offset >= seg.size && this.#segs.length > 1) await this.#retireFirst();
    else await this.#saveCursor();
  }

  async #retireFirst(): Promise<void> {
    const old = this.#segs.shift() as Segment;
    const next = this.#segs[0] as Segment;
    this.#cur = { seq: next.seq, offset: 0, consumed: 0 };
    await this.#saveCursor(); // cursor first: a crash between the two steps repeats nothing
    await rm(join(this.#o.dir, name(old.seq)), { force: true });
  }

  /** Cursor writes are chained: two at once would race on the temporary file. */
  #saveCursor(): Promise<void> {
    this.#saving = this.#saving.then(() => this.#writeCursor()).catch((err: Error) => this.#o.onError(err));
    return this.#saving;
  }

  async #writeCursor(): Promise<void> {
    const tmp = join(this.#o.dir, 'cursor.json.tmp');
    const body = JSON.stringify({ seq: this.#cur.seq, offset: this.#cur.offset });
    if (this.#o.fsync === 'always') {
      const fh = await open(tmp, 'w', 0o600);
      try { await fh.writeFile(body); await fh.datasync(); } finally { await fh.close(); }
      await rename(tmp, join(this.#o.dir, 'cursor.json'));
    } else {
      // Synchronous (see #write): after every delivered batch, four thread-pool trips otherwise.
      writeFileSync(tmp, body, { mode: 0o600 });
      renameSync(tmp, join(this.#o.dir, 'cursor.json'));
    }
  }

  async #sync(): Promise<void> {
    if (!this.#dirty || this.#fh === null) return;
    this.#dirty = false;
    await this.#fh.datasync().catch((err: Error) => this.#o.onError(err));
  }

  /** Resolves when new records are readable, or at close. */
  waitForData(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    return new Promise((r) => this.#waiters.push(r));
  }

  #wake(): void {
    const w = this.#waiters;
    this.#waiters = [];
    for (const r of w) r();
  }

  /**
   * Writes everything queued to disk and closes; the records stay for the next start. Records
   * the disk does not take even now are lost with the process: they are reported as dropped
   * (`unwritable`), never silently. Idempotent.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    await this.ready;
    // A disk that failed earlier gets one more try: it may have room again.
    let retried = !this.#writeFailed;
    while (this.#writing || this.#mem.length > 0) {
      if (this.#writing) await new Promise((r) => setImmediate(r));
      else if (!this.#writeFailed) await this.#write();
      else if (!retried) {
        retried = true;
        this.#writeFailed = false;
        await this.#write();
      } else break;
    }
    this.#closed = true;
    if (this.#mem.length > 0) {
      const n = this.#mem.length;
      this.#mem = [];
      this.#memSizes = [];
      this.#memBytes = 0;
      this.#o.onDrop(n, 'unwritable');
    }
    if (this.#fsyncTimer) clearInterval(this.#fsyncTimer);
    this.#wake();
    await this.#saving;
    if (this.#fh) {
      await this.#fh.datasync().catch(() => {});
      await this.#fh.close();
      this.#fh = null;
    }
  }
}

/** Size of a spool directory's segments, for diagnostics. */
export async function spoolBytes(dir: string): Promise<number> {
  let n = 0;
  for (const f of await readdir(dir).catch(() => [] as string[])) if (SEGMENT_RE.test(f)) n += (await stat(join(dir, f))).size;
  return n;
}

async function spoolId(dir: string): Promise<string> {
  const file = join(dir, 'id');
  const old = await readFile(file, 'utf8').then((t) => t.trim(), () => '');
  if (/^[0-9a-f]{16}$/.test(old)) return old;
  const id = randomBytes(8).toString('hex');
  // Not fatal: on a full disk the buffer must still start and drain what it holds (which frees
  // the space); the id then lives for this run only.
  await writeFile(file, `${id}\n`, { mode: 0o600 }).catch(() => {});
  return id;
}
