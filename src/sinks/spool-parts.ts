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

/**
 * The records written to the newest segment since the acknowledged position, kept in memory
 * while the reader keeps up, so steady-state delivery never reads its own writes back from
 * disk. It resets (the reader falls back to the file) when it would pass TAIL_MAX or when
 * writes and acknowledgements stop lining up.
 */
export class SpoolTail {
  #t: { seq: number; start: number; lines: string[]; sizes: number[]; bytes: number } | null = null;

  /** Records `lines` (newline-terminated) just written at `offset` of segment `seq`. */
  remember(cur: Position, seq: number, offset: number, lines: string[], sizes: number[], bytes: number): void {
    const t = this.#t;
    if (t !== null && t.seq === seq && t.start + t.bytes === offset && t.bytes + bytes <= TAIL_MAX) {
      for (let i = 0; i < lines.length; i++) { t.lines.push((lines[i] as string).slice(0, -1)); t.sizes.push(sizes[i] as number); }
      t.bytes += bytes;
    } else if (cur.seq === seq && cur.offset === offset && bytes <= TAIL_MAX) {
      this.#t = { seq, start: offset, lines: lines.map((l) => l.slice(0, -1)), sizes, bytes };
    } else {
      this.#t = null;
    }
  }

  /**
   * A batch from memory when the tail starts exactly at `cur`, else null. `segmentDone`: the
   * tail's segment takes no more records (see Batch.more).
   */
  take(cur: Position, maxRecords: number, maxBytes: number, segmentDone: boolean): Batch | null {
    const t = this.#t;
    if (t === null || t.seq !== cur.seq || t.start !== cur.offset || t.lines.length === 0) return null;
    let n = 0;
    let bytes = 0;
    while (n < t.lines.length && n < maxRecords && (n === 0 || bytes + (t.sizes[n] as number) <= maxBytes)) bytes += t.sizes[n++] as number;
    return { lines: t.lines.slice(0, n), bytes, seq: t.seq, end: t.start + bytes, more: n < t.lines.length || segmentDone };
  }

  /** Forgets what a delivered batch covered. */
  ack(b: Batch): void {
    const t = this.#t;
    if (t !== null && t.seq === b.seq && t.start === b.end - b.bytes) {
      t.lines.splice(0, b.lines.length);
      t.sizes.splice(0, b.lines.length);
      t.start = b.end;
      t.bytes -= b.bytes;
    } else {
      this.#t = null;
    }
  }
}
