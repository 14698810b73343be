/**
 * Appends whole records or nothing. A write may take only part of a buffer and still succeed
 * (it returns how much it wrote): that is how a filling disk first shows, and the ENOSPC only
 * comes on the next write. Taking the records as written then lost the rest without a count,
 * and the next append joined two half records into one invalid line.
 *
 * appendWholeSync is for regular files on the evidence thread (the file sink, the disk buffer),
 * where an asynchronous call was two trips through libuv's thread pool and two thread wakeups
 * per write (file.ts has the measurements). appendWhole is for what may block for as long as a
 * reader pleases (a FIFO, a terminal): there it holds a thread-pool thread, not the evidence
 * thread and every other sink and detector on it.
 */
import { ftruncateSync, writeSync } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';

/**
 * Writes all of `chunk` to `fh` (opened for appending, whose size is `sizeBefore`), continuing
 * after short writes; the same contract as appendWholeSync.
 */
export async function appendWhole(fh: FileHandle, chunk: Buffer, sizeBefore: number): Promise<void> {
  let done = 0;
  try {
    while (done < chunk.length) {
      const { bytesWritten } = await fh.write(chunk, done, chunk.length - done);
      if (bytesWritten <= 0) throw Object.assign(new Error('the file system accepted no bytes (disk full?)'), { code: 'ENOSPC' });
      done += bytesWritten;
    }
  } catch (err) {
    if (done > 0) {
      const undone = await fh.truncate(sizeBefore).then(() => true, () => false);
      if (!undone && err !== null && typeof err === 'object') Object.assign(err, { torn: true });
    }
    throw err;
  }
}

/**
 * Writes all of `chunk` to `fd` (opened for appending, whose size is `sizeBefore`), continuing
 * after short writes. If a write fails part-way, the file is truncated back to `sizeBefore`, so
 * it still ends on a record boundary, and the error is thrown: the caller keeps the records.
 * If the truncate fails too (an append-only file, a failing disk), the error carries
 * `torn: true`: the file now ends in part of a record, and nothing may be appended after it as
 * if it ended on a boundary.
 */
export function appendWholeSync(fd: number, chunk: Buffer, sizeBefore: number): void {
  let done = 0;
  try {
    while (done < chunk.length) {
      const n = writeSync(fd, chunk, done, chunk.length - done);
      if (n <= 0) throw Object.assign(new Error('the file system accepted no bytes (disk full?)'), { code: 'ENOSPC' });
      done += n;
    }
  } catch (err) {
    if (done > 0) {
      let undone = true;
      try { ftruncateSync(fd, sizeBefore); } catch { undone = false; }
      if (!undone && err !== null && typeof err === 'object') Object.assign(err, { torn: true });
    }
    throw err;
  }
}
