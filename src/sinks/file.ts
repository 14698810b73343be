/**
 * JSON lines to a local file with rotation and retention (or to stdout when the path is `-`).
 * Events are serialized on write and appended in one batch per event-loop turn. The file is
 * rotated (renamed to `<stem>-<UTC time it was opened>.jsonl`) when the next batch would pass `maxBytes` or
 * when it has been open for `intervalMs`; rotated files beyond `keep` or older than `maxAgeMs`
 * are deleted. If the disk is slower than the event rate, lines wait in memory up to
 * `maxQueueBytes`; beyond that the oldest are dropped and reported (`sink.dropped`) — never
 * silently. A local file needs no disk buffer: it is the disk.
 */
import { fstatSync, mkdirSync } from 'node:fs';
import { mkdir, open, readdir, rename, rm, stat, type FileHandle } from 'node:fs/promises';
import { basename, dirname, extname, join } from 'node:path';
import type { ChokepointEvent } from '../events/catalogue.js';
import type { EvidenceEvent } from '../events/evidence.js';
import { appendWhole, appendWholeSync } from './append-whole.js';
import { JsonlSink } from './jsonl.js';
import { jsonOf } from '../events/json.js';
import { COALESCE_MS, typeMatcher, WRITE_NOW_BYTES, type Sink, type SinkStats } from './types.js';

export interface FileSinkOptions {
  readonly name: string;
  readonly path: string;
  readonly types?: readonly string[];
  readonly rotate: { readonly maxBytes: number; readonly intervalMs: number; readonly keep: number; readonly maxAgeMs: number };
  readonly maxQueueBytes: number;
  readonly emit: (e: EvidenceEvent) => void;
  readonly onError: (err: Error) => void;
  /** Injectable clock for rotation tests. */
  readonly now?: () => number;
}

/** After a failed write. */
const RETRY_MS = 1000;
const NEWLINE = Buffer.from('\n');

/**
 * Whether the regular file at `path` (the inode `ino`, `size` bytes long) does not end with a
 * newline. Read through a handle of its own: the sink's is write-only (O_APPEND), and a FIFO or
 * device must not be read at all. When in doubt, no.
 */
async function endsMidRecord(path: string, ino: number, size: number): Promise<boolean> {
  const fh = await open(path, 'r').catch(() => null);
  if (fh === null) return false;
  try {
    if ((await fh.stat()).ino !== ino) return false;
    const last = Buffer.alloc(1);
    const { bytesRead } = await fh.read(last, 0, 1, size - 1);
    return bytesRead === 1 && last[0] !== 0x0a;
  } catch {
    return false;
  } finally {
    await fh.close().catch(() => {});
  }
}

export class FileSink implements Sink {
  readonly name: string;
  readonly #o: FileSinkOptions;
  readonly #accepts: (type: string) => boolean;
  readonly #now: () => number;
  readonly #stdout: JsonlSink | null;
  #queue: string[] = [];
  #queued = 0;
  #dropped = 0;
  #delivered = 0;
  #fh: FileHandle | null = null;
  #size = 0;
  #openedAt = 0;
  #writing = false;
  /** Lines taken from the queue by the write in progress (back in the queue if it fails). */
  #inWrite = 0;
  #scheduled = false;
  #closed = false;
  /** The last write failed: close() must not wait for a disk that may never come back. */
  #failing = false;
  /**
   * The file does not end with a newline: a crash (or a failed write that could not be undone)
   * left part of a record at its end. The next append starts with a newline, so that the
   * fragment stays a line of its own rather than swallowing the first new record.
   */
  #torn = false;
  #idle: (() => void)[] = [];

  constructor(o: FileSinkOptions) {
    this.name = o.name;
    this.#o = o;
    this.#accepts = typeMatcher(o.types ?? []);
    this.#now = o.now ?? Date.now;
    this.#stdout = o.path === '-'
      ? new JsonlSink({ target: '-', name: o.name, maxQueueBytes: o.maxQueueBytes, onError: o.onError, onDrop: (n) => this.#reportDrop(n), inband: false })
      : null;
    if (!this.#stdout) {
      mkdirSync(dirname(o.path), { recursive: true, mode: 0o750 });
      this.writeText = (type, _time, _severity, json) => {
        if (!this.#closed && this.#accepts(type)) this.#enqueue(`${json}\n`);
      };
    }
  }

  readonly write = (e: ChokepointEvent): void => {
    if (this.#closed || !this.#accepts(e.type)) return;
    if (this.#stdout) return this.#stdout.write(e);
    this.#enqueue(`${jsonOf(e)}\n`);
  };

  /**
   * The same from the event's JSON text, on the evidence thread (sink-thread.ts), which then
   * never parses it. Offered by a file sink only: stdout stays on the gateway's thread.
   */
  readonly writeText?: (type: string, time: string, severity: number, json: string) => void;

  #enqueue(line: string): void {
    this.#queue.push(line);
    this.#queued += line.length;
    let n = 0;
    while (this.#queued > this.#o.maxQueueBytes && this.#queue.length > 1) {
      this.#queued -= (this.#queue.shift() as string).length;
      n++;
    }
    if (n > 0) this.#reportDrop(n);
    this.#schedule();
  }

  #reportDrop(n: number, reason: 'queue_full' | 'unwritable' = 'queue_full'): void {
    this.#dropped += n;
    this.#o.emit({ v: 1, type: 'sink.dropped', time: new Date().toISOString(), sink: this.name, dropped: n, reason });
  }

  unsaved(): number {
    return this.#failing ? this.#queue.length + this.#inWrite : 0;
  }

  stats(): SinkStats {
    return { pending_events: this.#queue.length, pending_bytes: this.#queued, dropped: this.#dropped, delivered: this.#delivered, up: true };
  }

  #schedule(delayMs = COALESCE_MS): void {
    if (this.#scheduled || this.#writing) return;
    this.#scheduled = true;
    // A short delay coalesces the lines of many event-loop turns into one write.
    setTimeout(() => { this.#scheduled = false; void this.#flush(); }, delayMs);
  }

  async #flush(): Promise<void> {
    if (this.#writing) return;
    this.#writing = true;
    let retryMs: number | null = null;
    try {
      while (this.#queue.length > 0) {
        const lines = this.#queue;
        this.#queue = [];
        this.#queued = 0;
        this.#inWrite = lines.length;
        try {
          const chunk = Buffer.from(lines.join(''));
          await this.#rotateIfDue(chunk.length);
          if (this.#fh === null) await this.#open();
          // The size to roll back to is the file's own, not the one we believe: someone may
          // have truncated it (copytruncate) or appended to it since.
          let fh = this.#fh as FileHandle;
          // The stat, and the write to a regular file, are synchronous calls. This sink runs on
          // the evidence thread (threaded.ts), where blocking for them holds up no tunnel, and
          // each asynchronous call was two trips through libuv's thread pool and two thread
          // wakeups: measured on the evidence bench (file sink, 3,000 short tunnels a second,
          // seven alternating pairs), about 270 fewer context switches a second and 1–36 ms
          // less CPU a second for the process (of about 100), lower in every pair. A disk that
          // hangs now holds this thread, where it held thread-pool threads that the proxy's own
          // name lookups (getaddrinfo) share. A FIFO or a device is written asynchronously: a
          // reader that stops reading would otherwise stop every sink and detector on the thread.
          let st = fstatSync(fh.fd);
          if (st.nlink === 0) {
            // The file (or its directory) was removed: lines written through this handle would
            // go to an inode nobody can read, counted as delivered. Open the path again.
            await fh.close().catch(() => {});
            this.#fh = null;
            await this.#open();
            fh = this.#fh as unknown as FileHandle;
            st = fstatSync(fh.fd);
          }
          const data = this.#torn && st.size > 0 ? Buffer.concat([NEWLINE, chunk]) : chunk;
          if (st.isFile()) appendWholeSync(fh.fd, data, st.size);
          else await appendWhole(fh, data, st.size);
          this.#torn = false;
          this.#size += data.length;
          this.#delivered += lines.length;
          this.#inWrite = 0;
          this.#failing = false;
        } catch (err) {
          // Not written: the lines go back in front (within the memory bound, drops reported)
          // and the write is retried; the file is reopened (it may have been removed, or the
          // disk fixed).
          this.#requeue(lines);
          this.#inWrite = 0;
          this.#failing = true;
          this.#o.onError(err as Error);
          await this.#fh?.close().catch(() => {});
          this.#fh = null;
          retryMs = RETRY_MS;
          break;
        }
        // Under load, do not chase the queue one write per few events: each write is a trip
        // through libuv's thread pool, which cost more CPU than the gateway's own work per
        // tunnel (measured). Let lines gather for COALESCE_MS unless many are waiting already.
        if (this.#queued < WRITE_NOW_BYTES) break;
      }
    } finally {
      this.#writing = false;
      this.#inWrite = 0;
      if (this.#queue.length > 0 && !this.#closed) this.#schedule(retryMs ?? COALESCE_MS);
      for (const r of this.#idle.splice(0)) r();
    }
  }

  #requeue(lines: string[]): void {
    this.#queue = lines.concat(this.#queue);
    this.#queued = this.#queue.reduce((n, l) => n + l.length, 0);
    let n = 0;
    while (this.#queued > this.#o.maxQueueBytes && this.#queue.length > 1) {
      this.#queued -= (this.#queue.shift() as string).length;
      n++;
    }
    if (n > 0) this.#reportDrop(n);
  }

  async #open(): Promise<void> {
    // Its directory may have been removed since the start (a cleanup job): make it again.
    await mkdir(dirname(this.#o.path), { recursive: true, mode: 0o750 });
    this.#fh = await open(this.#o.path, 'a', 0o640);
    const st = await this.#fh.stat();
    this.#size = st.size;
    this.#openedAt = this.#now();
    this.#torn = st.isFile() && st.size > 0 && await endsMidRecord(this.#o.path, st.ino, st.size);
  }

  async #rotateIfDue(incoming: number): Promise<void> {
    if (this.#fh === null) await this.#open();
    const r = this.#o.rotate;
    const bySize = this.#size > 0 && this.#size + incoming > r.maxBytes;
    const byTime = r.intervalMs > 0 && this.#size > 0 && this.#now() - this.#openedAt >= r.intervalMs;
    if (!bySize && !byTime) return;
    await (this.#fh as FileHandle).close();
    this.#fh = null;
    const ext = extname(this.#o.path) || '.jsonl';
    const stem = basename(this.#o.path, extname(this.#o.path));
    // Named after when the file was opened: its first event is no older than that.
    const stamp = new Date(this.#openedAt).toISOString().replace(/[-:]/g, '').replace('.', '');
    // Same stamp twice (fast size rotation): a suffix above every existing one, so that the
    // newest always sorts last even after retention deleted older ones.
    const prefix = `${stem}-${stamp}`;
    let n = -1;
    for (const f of await readdir(dirname(this.#o.path))) {
      if (f === `${prefix}${ext}`) n = Math.max(n, 0);
      const m = f.startsWith(`${prefix}-`) && f.endsWith(ext) ? /^(\d+)$/.exec(f.slice(prefix.length + 1, f.length - ext.length)) : null;
      if (m) n = Math.max(n, Number(m[1]));
    }
    const target = join(dirname(this.#o.path), n < 0 ? `${prefix}${ext}` : `${prefix}-${n + 1}${ext}`);
    await rename(this.#o.path, target);
    await this.#open();
    await this.#retain(stem, ext);
  }

  /** Deletes rotated files beyond `keep` (oldest first) and older than `maxAgeMs`. */
  async #retain(stem: string, ext: string): Promise<void> {
    const dir = dirname(this.#o.path);
    const re = new RegExp(`^${stem.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}-\\d{8}T\\d{9}Z(-\\d+)?${ext.replace('.', '\\.')}$`);
    // Oldest first: by time stamp, then by the numeric suffix that disambiguates equal stamps.
    const key = (f: string) => { const m = /-(\d{8}T\d{9}Z)(?:-(\d+))?\.[^.]*$/.exec(f); return [m?.[1] ?? '', Number(m?.[2] ?? 0)] as const; };
    const rotated = (await readdir(dir)).filter((f) => re.test(f)).sort((a, b) => {
      const [sa, na] = key(a);
      const [sb, nb] = key(b);
      return sa < sb ? -1 : sa > sb ? 1 : na - nb;
    });
    const excess = rotated.length - this.#o.rotate.keep;
    for (const [i, f] of rotated.entries()) {
      const p = join(dir, f);
      const old = this.#o.rotate.maxAgeMs > 0 && this.#now() - (await stat(p)).mtimeMs > this.#o.rotate.maxAgeMs;
      if (i < excess || old) await rm(p, { force: true });
    }
  }

  /** Resolves when everything queued so far is written, or a write has failed. */
  async flushed(): Promise<void> {
    while (this.#writing || ((this.#queue.length > 0 || this.#scheduled) && !this.#failing)) {
      await new Promise<void>((r) => (this.#writing ? this.#idle.push(r) : setImmediate(r)));
    }
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    if (this.#stdout) { this.#closed = true; return this.#stdout.close(); }
    await this.flushed();
    this.#closed = true;
    // Lines a failing disk never took are lost with the process: say so, never silently.
    if (this.#queue.length > 0) this.#reportDrop(this.#queue.length, 'unwritable');
    this.#queue = [];
    this.#queued = 0;
    await this.#fh?.close();
    this.#fh = null;
  }

  destroy(): void {
    void this.close();
  }
}
