/**
 * Parts of the Spool (spool.ts) that are easier to read alone: the segment naming, the scan
 * that rebuilds the state from the directory at start, and the in-memory tail.
 */
import { readdir, readFile, rm, truncate } from 'node:fs/promises';
import { join } from 'node:path';

export interface Segment { seq: number; size: number; records: number }
export interface Position { seq: number; offset: number; consumed: number }
export interface Batch {
  readonly lines: string[];
  readonly bytes: number;
  readonly seq: number;
  readonly end: number;
  /**
   * Waiting would not make this batch fuller: records after it were already readable (it
   * stopped at a limit, records or bytes), or it ends a segment that takes no more. The sink
   * sends it at once instead of waiting batch_wait for more.
   */
  readonly more: boolean;
}

export const segmentName = (seq: number) => `${String(seq).padStart(16, '0')}.log`;
export const SEGMENT_RE = /^(\d{16})\.log$/;

function countLines(buf: Buffer, end = buf.length): number {
  let n = 0;
  for (let i = buf.indexOf(0x0a); i >= 0 && i < end; i = buf.indexOf(0x0a, i + 1)) n++;
  return n;
}

/**
 * Rebuilds segments and cursor from the directory. A torn last record (a crash in the middle
 * of a write) is truncated: it was never complete, so it never counted. Segments before the
 * cursor are deleted. A cursor that is unreadable, or that does not sit on a record boundary,
 * falls back to the segment's start (or the record's start): better once more than half.
 */
export async function scanSpool(dir: string): Promise<{ segs: Segment[]; cur: Position | null; lastSeq: number }> {
  const seqs = (await readdir(dir)).map((f) => SEGMENT_RE.exec(f)?.[1]).filter((s): s is string => s !== undefined).map(Number).sort((a, b) => a - b);
  let cursor = { seq: 0, offset: 0 };
  try {
    const c = JSON.parse(await readFile(join(dir, 'cursor.json'), 'utf8')) as { seq?: unknown; offset?: unknown };
    if (Number.isSafeInteger(c.seq) && Number.isSafeInteger(c.offset) && (c.offset as number) >= 0) cursor = { seq: c.seq as number, offset: c.offset as number };
  } catch { /* no cursor yet: start at the oldest segment */ }
  const segs: Segment[] = [];
  let cur: Position | null = null;
  for (const seq of seqs) {
    const path = join(dir, segmentName(seq));
    let buf = await readFile(path);
    const last = buf.lastIndexOf(0x0a) + 1;
    if (last < buf.length) {
      await truncate(path, last);
      buf = buf.subarray(0, last);
    }
    if (seq < cursor.seq || buf.length === 0 || (seq === cursor.seq && cursor.offset >= buf.length)) {
      await rm(path, { force: true });
      continue;
    }
    if (cur === null) {
      let offset = seq === cursor.seq ? cursor.offset : 0;
      if (offset > 0 && buf[offset - 1] !== 0x0a) offset = buf.lastIndexOf(0x0a, offset - 1) + 1;
      cur = { seq, offset, consumed: countLines(buf, offset) };
    }
    segs.push({ seq, size: buf.length, records: countLines(buf) });
  }
  return { segs, cur, lastSeq: seqs.at(-1) ?? 0 };
}

const TAIL_MAX = 8 * 1024 * 1024;

interface Tail { readonly seq: number; start: number; lines: string[]; sizes: number[]; bytes: number }

/**
 * The newest records written to the buffer (at most TAIL_MAX bytes of them, all in one segment),
 * kept in memory so that a reader at or near the writer takes its batches from here instead
 * of reading its own writes back from the file (an open, a read and a close on the thread pool
 * per batch, and every record decoded again).
 *
 * The tail follows the writer, not the reader: it starts again at each new segment, keeps the
 * newest records when it passes its bound, and serves a reader as soon as the acknowledged
 * position reaches it. (It used to start only when a write began exactly at the acknowledged
 * position, and to reset at a new segment; under a steady stream the reader is never exactly
 * there when a write lands, so after the first new segment every batch came from the file.)
 * The price: while delivery lags (a destination down), each disk buffer keeps its newest
 * TAIL_MAX bytes of records in memory, where the old tail let go of them.
 */
export class SpoolTail {
  #t: Tail | null = null;
  #served = 0;

  /** Batches served from memory (tests, diagnostics). */
  get served(): number {
    return this.#served;
  }

  /** Records `lines` (newline-terminated, UTF-8 `sizes`) just written at `offset` of segment `seq`. */
  remember(seq: number, offset: number, lines: readonly string[], sizes: readonly number[], bytes: number): void {
    let t = this.#t;
    // A new segment, or writes that do not follow on from the last: start again from here.
    if (t === null || t.seq !== seq || t.start + t.bytes !== offset) t = this.#t = { seq, start: offset, lines: [], sizes: [], bytes: 0 };
    for (let i = 0; i < lines.length; i++) { t.lines.push((lines[i] as string).slice(0, -1)); t.sizes.push(sizes[i] as number); }
    t.bytes += bytes;
    if (t.bytes > TAIL_MAX) {
      // A reader further behind than this reads the file; the newest records stay.
      let k = 0;
      let drop = 0;
      while (k < t.lines.length && t.bytes - drop > TAIL_MAX) drop += t.sizes[k++] as number;
      this.#drop(t, k, drop);
    }
  }

  /**
   * A batch from memory when the tail starts at `cur`, else null (the caller reads the file).
   * The acknowledged position moves only by `ack` (which forgets what it covered here too) or
   * to the start of the next segment, so a tail that holds `cur` starts there. `segmentDone`:
   * the tail's segment takes no more records (see Batch.more).
   */
  take(cur: Position, maxRecords: number, maxBytes: number, segmentDone: boolean): Batch | null {
    const t = this.#t;
    if (t === null || t.seq !== cur.seq || t.start !== cur.offset || t.lines.length === 0) return null;
    let n = 0;
    let bytes = 0;
    while (n < t.lines.length && n < maxRecords && (n === 0 || bytes + (t.sizes[n] as number) <= maxBytes)) bytes += t.sizes[n++] as number;
    this.#served++;
    return { lines: t.lines.slice(0, n), bytes, seq: t.seq, end: t.start + bytes, more: n < t.lines.length || segmentDone };
  }

  /** Forgets what a delivered batch covered (from memory or from the file). */
  ack(b: Batch): void {
    const t = this.#t;
    if (t !== null && t.seq === b.seq) this.#forget(t, b.end);
  }

  /** Drops the records before `offset`: they are acknowledged. */
  #forget(t: Tail, offset: number): void {
    let k = 0;
    let drop = 0;
    while (k < t.lines.length && t.start + drop + (t.sizes[k] as number) <= offset) drop += t.sizes[k++] as number;
    this.#drop(t, k, drop);
    // `offset` inside a record the tail holds: positions and records no longer line up (it
    // cannot happen with whole-record writes). Forget everything; the file is the truth.
    if (t.start < offset && t.lines.length > 0) this.#t = null;
  }

  #drop(t: Tail, k: number, bytes: number): void {
    if (k === 0) return;
    t.lines.splice(0, k);
    t.sizes.splice(0, k);
    t.start += bytes;
    t.bytes -= bytes;
  }
}
