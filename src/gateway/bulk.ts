/**
 * Bulk relay: a tunnel direction that is moving a lot of data reads into one large buffer of its
 * own instead of a fresh 64 KiB allocation per read.
 *
 * Why: Node reads a socket 64 KiB at a time into a newly allocated buffer, which the relay writes
 * on and the garbage collector later frees. For a single stream that is tens of thousands of
 * reads, writes, allocations and callbacks per second. Measured on a bare relay on this project's
 * machine (one stream, 2 GB up): 1.5 GB/s and 0.6 s of CPU per GB that way; reading into a reused
 * 256 KiB buffer, 2.3 GB/s and 0.33 s per GB — faster than Squid on the same machine.
 *
 * How: Node's `onread` mechanism (a user buffer the handle reads into, and a callback instead of
 * `data` events), switched on for a socket that is already open. That uses two of `net.Socket`'s
 * own symbol-keyed fields (`kBuffer`, `kBufferCb`) and the handle's `useUserBuffer`: internals,
 * so they are looked up defensively, and when any is missing (another Node version) the relay
 * stays on `data` events as before. Only plain TCP sockets are switched (not TLS ones).
 *
 * Safety, the one rule: the buffer is overwritten by the next read, so it must never be read
 * again while a write of it is pending. After handing a slice to the other socket, if that
 * socket has anything queued, reading pauses and resumes only when its queue is empty.
 *
 * Memory: buffers come from a bounded pool (POOL_MAX of BUFFER_BYTES) and go back when both
 * sockets of the direction have closed; with the pool empty a direction simply stays on `data`
 * events. Idle and short tunnels never take one (promotion needs a full 64 KiB read first).
 */
import type { Socket } from 'node:net';
import { TLSSocket } from 'node:tls';

export const BUFFER_BYTES = 256 * 1024;
const POOL_MAX = 64;
/** Node's read size without a user buffer: a read that fills it means more is waiting. */
export const DEFAULT_READ_BYTES = 64 * 1024;

const free: Buffer[] = [];
let lent = 0;

function take(): Buffer | null {
  const b = free.pop();
  if (b !== undefined) { lent++; return b; }
  if (lent >= POOL_MAX) return null;
  lent++;
  return Buffer.allocUnsafeSlow(BUFFER_BYTES);
}

function give(b: Buffer): void {
  lent--;
  free.push(b);
}

/** Buffers lent out now (tests, metrics). */
export function bulkBuffersInUse(): number {
  return lent;
}

type ReadCb = (n: number, buf: Buffer) => boolean;
interface Internals { kBuffer: symbol; kBufferCb: symbol }
let internals: Internals | null | undefined;

function findInternals(s: Socket): Internals | null {
  if (internals !== undefined) return internals;
  const syms = Object.getOwnPropertySymbols(s);
  const kBuffer = syms.find((x) => x.description === 'kBuffer');
  const kBufferCb = syms.find((x) => x.description === 'kBufferCb');
  internals = kBuffer && kBufferCb ? { kBuffer, kBufferCb } : null;
  return internals;
}

/**
 * Switches `src` to read into a pooled buffer and write each read to `dst`, in place of its
 * `data` events. Returns false (and changes nothing) when the pool is empty or either socket
 * cannot take part. Byte counts are unaffected (the sockets count on their handles).
 */
export function promoteToBulk(src: Socket, dst: Socket): boolean {
  // Both plain TCP: a TLS socket's handle reads through OpenSSL, and whether a TLS write is done
  // with our bytes when its queue empties is not something this module should have to know.
  if (src instanceof TLSSocket || dst instanceof TLSSocket || src.destroyed || dst.destroyed) return false;
  const handle = (src as unknown as { _handle?: { useUserBuffer?: (b: Buffer) => void } | null })._handle;
  if (!handle || typeof handle.useUserBuffer !== 'function') return false;
  const k = findInternals(src);
  if (k === null) return false;
  const s = src as unknown as Record<symbol, unknown>;
  if (s[k.kBuffer] !== null && s[k.kBuffer] !== undefined) return false; // already switched
  const buf = take();
  if (buf === null) return false;
  let paused = false;
  const afterWrite = (): void => {
    // Every write of the buffer has left the queue: reading into it is safe again.
    if (paused && dst.writableLength === 0 && !src.destroyed) {
      paused = false;
      src.resume();
    }
  };
  const onRead: ReadCb = (n) => {
    dst.write(buf.subarray(0, n), afterWrite);
    if (dst.writableLength === 0) return true;
    paused = true;
    src.pause(); // stops the handle reading (socket.pause knows the user-buffer mode)
    return false;
  };
  s[k.kBuffer] = buf;
  s[k.kBufferCb] = onRead;
  handle.useUserBuffer(buf);
  // Back to the pool once neither socket can touch it: src reads into it, dst's queue points at it.
  let open = 2;
  const closed = (): void => { if (--open === 0) give(buf); };
  src.once('close', closed);
  dst.once('close', closed);
  return true;
}
