/**
 * A TCP connection of the proxy's data plane: a libuv handle with the part of `net.Socket`'s
 * interface the gateway uses (events `data`, `end`, `drain`, `timeout`, `error`, `close`;
 * write, end, destroy, pause, resume, setTimeout, cork), and none of the stream machinery.
 *
 * Why: short CONNECT tunnels are the gateway's costliest workload per byte (issue #2), and most
 * of their CPU was Node's, not ours. Measured on the project's 2-core machine with a bare relay
 * (no policy, no events): two `net.Socket`s per tunnel cost about 87 µs of user and 83 µs of
 * system CPU a tunnel; the same relay on raw handles 27 µs and 63 µs, and made 1.45x the
 * tunnels a second. `net.Socket` is a Readable and a Writable: each tunnel builds their state
 * objects, and every read, write, end and close goes through their buffering and several
 * `process.nextTick` hops. Here a read is one event, a write one call into libuv.
 *
 * Semantics kept from net.Socket (the connection, tunnel and HTTP code rely on them):
 * - half-open always (both listeners and dials used `allowHalfOpen`): `end` on EOF, the socket
 *   closes itself once it has both emitted `end` and finished its own `end()` (net's
 *   autoDestroy);
 * - `write()` returns false once 16 KiB (net's highWaterMark) wait in libuv, and `drain`
 *   follows when all of it is written; write callbacks are never called synchronously;
 * - `destroyed` is true at once; `error` (when given) then `close` follow asynchronously;
 *   callbacks of writes still queued then fail (ECANCELED) after `close`, not before it;
 * - `finish` may be emitted synchronously, from inside `end()` (the peer had already ended);
 * - `setTimeout(ms)` is an idle timer reset by reads and writes; `timeout` fires once per idle
 *   period, and the socket stays open (the owner decides).
 * Differences: pause() stops reading at once (net buffers up to 16 KiB more, which nothing
 * here needs); an `error` event with no listener is dropped instead of thrown (a gateway must
 * not die of one peer's reset).
 * Like net.Socket, a socket reads from the start and holds what arrives (up to 16 KiB, then it
 * stops reading) until a `data` listener is added (`on` or `once`) or `resume()` is called;
 * `end` waits for what is held to be emitted, and a pause while it is emitted holds the rest
 * (and the `end`) until the next resume().
 */
import { EventEmitter } from 'node:events';
import { lookup } from 'node:dns/promises';
import { isIP, isIPv6, type AddressInfo } from 'node:net';
import { constants as osConstants } from 'node:os';
import {
  kLastWriteWasAsync, kReadBytesOrError, ShutdownWrap, streamState, TCP, TCP_SERVER,
  TCP_SOCKET, TCPConnectWrap, UV_EOF, uvError, WriteWrap, type PeerName, type TcpHandle, type UvReq,
} from './uv.js';

/**
 * What the connection, tunnel and HTTP code use of a client or upstream socket: a RawSocket on
 * the plain listener and for every dial, a TLSSocket on the mTLS listener.
 */
export interface ProxySocket {
  readonly destroyed: boolean;
  readonly remoteAddress?: string | undefined;
  readonly remotePort?: number | undefined;
  readonly bytesRead: number;
  readonly bytesWritten: number;
  readonly writableLength: number;
  readonly writableNeedDrain: boolean;
  on(event: string, fn: (...args: any[]) => void): this;
  once(event: string, fn: (...args: any[]) => void): this;
  off(event: string, fn: (...args: any[]) => void): this;
  removeAllListeners(event?: string): this;
  readonly writable: boolean;
  write(data: Buffer | string, cb?: (err?: Error | null) => void): boolean;
  end(cb?: () => void): this;
  end(data: Buffer | string, cb?: () => void): this;
  isPaused(): boolean;
  destroy(err?: Error): this;
  pause(): this;
  resume(): this;
  setTimeout(ms: number): this;
  cork(): void;
  uncork(): void;
}

/** net.Socket's default writable highWaterMark. */
const HIGH_WATER = 16 * 1024;
const UV_ENOTCONN = -osConstants.errno.ENOTCONN;
const UV_EADDRINUSE = -osConstants.errno.EADDRINUSE;

type WriteCb = (err?: Error | null) => void;
interface PendingWrite extends UvReq { bytes: number; buffer: Buffer | null; cb: WriteCb | undefined }

/**
 * Where every socket reads unless it reads into buffers of its own (bulk.ts); each read is
 * copied out, right-sized, before the next can start (libuv reads one socket at a time, on this
 * thread). Left to itself, Node allocates 64 KiB outside the heap for every read and shrinks it
 * to the bytes read: a malloc, a realloc and external memory the collector accounts for, five
 * times per short tunnel. Measured on a bare relay: 3-4 µs of user and 3 µs of system CPU less
 * per short tunnel, 6% more tunnels a second.
 */
const READ_BUF = Buffer.allocUnsafeSlow(64 * 1024);

/** Reads into caller-owned buffers (bulk.ts): `onRead` gets each read; returning false pauses. */
export interface UserBufferRead {
  buf: Buffer;
  readonly onRead: (n: number, buf: Buffer) => boolean;
  readonly next: () => Buffer;
}

/** `error` (when there is one and someone listens), then `close`: net.Socket's order. */
function emitClose(s: RawSocket, err: Error | undefined): void {
  if (err !== undefined && s.listenerCount('error') > 0) s.emit('error', err);
  s.emit('close', err !== undefined);
}

export class RawSocket extends EventEmitter {
  destroyed = false;
  bytesRead = 0;
  bytesWritten = 0;
  readonly #h: TcpHandle;
  /** readStart() in effect. */
  #reading = false;
  #paused = false;
  /** `data` events are being emitted (a listener was added or resume() called). */
  #flowing = false;
  /** Read before the flow started, in order. */
  #early: Buffer[] | null = null;
  #earlyBytes = 0;
  /** A #flushEarly is scheduled. */
  #flushQueued = false;
  #endEmitted = false;
  /** EOF read: no more data will come. */
  #eof = false;
  /** end() called. */
  #ending = false;
  /** Our side's FIN is out (shutdown completed). */
  #finished = false;
  /** Bytes handed to libuv and not yet written. */
  #pending = 0;
  #needDrain = false;
  #corked: { buf: Buffer; cb: WriteCb | undefined }[] | null = null;
  #corkedBytes = 0;
  #timeoutMs = 0;
  #timer: NodeJS.Timeout | null = null;
  #lastActive = 0;
  #peer: PeerName | null = null;
  #user: UserBufferRead | null = null;

  constructor(handle: TcpHandle) {
    super();
    this.#h = handle;
    handle.onread = () => this.#onRead();
    handle.useUserBuffer(READ_BUF);
    // Reading starts at once, as net.Socket's does: a peer that closes or resets before anyone
    // listens for data (an upstream during the ClientHello wait) is noticed ('end', 'close').
    this.#startReading();
  }

  // --- reading -------------------------------------------------------------------------------

  /** Adding a `data` listener starts the flow, as on a net.Socket that is not paused. */
  override on(event: string | symbol, fn: (...args: any[]) => void): this {
    super.on(event, fn);
    if (event === 'data' && !this.#flowing && !this.#paused) this.#flow();
    return this;
  }

  pause(): this {
    this.#paused = true;
    if (this.#reading) {
      this.#reading = false;
      this.#h.readStop();
    }
    return this;
  }

  resume(): this {
    this.#paused = false;
    // Held bytes (or a held end) left by a pause during the flush go out first.
    if (!this.#flowing || this.#early !== null) this.#flow();
    else this.#startReading();
    return this;
  }

  isPaused(): boolean {
    return this.#paused;
  }

  /**
   * Reads into the caller's buffers from now on (bulk.ts): no allocation per read. Refused
   * (false) while held bytes wait to be emitted: reads handed to the caller would overtake them.
   */
  readInto(u: UserBufferRead): boolean {
    if (this.#early !== null || this.destroyed) return false;
    this.#user = u;
    this.#h.useUserBuffer(u.buf);
    return true;
  }

  get readingIntoUserBuffer(): boolean {
    return this.#user !== null;
  }

  #startReading(): void {
    if (this.#reading || this.#eof || this.destroyed) return;
    this.#reading = true;
    const err = this.#h.readStart();
    if (err !== 0) this.destroy(uvError(err, 'read'));
  }

  /**
   * From now on reads are `data` events. What arrived before is emitted first, on the next
   * tick (never from inside the `on()` or `resume()` call that started the flow).
   */
  #flow(): void {
    this.#flowing = true;
    if (this.#early === null) {
      this.#startReading();
      return;
    }
    if (!this.#flushQueued) {
      this.#flushQueued = true;
      process.nextTick(this.#flushEarly);
    }
  }

  readonly #flushEarly = (): void => {
    this.#flushQueued = false;
    const early = this.#early;
    if (early === null) return;
    while (early.length > 0 && !this.destroyed && !this.#paused) {
      const c = early.shift() as Buffer;
      this.#earlyBytes -= c.length;
      this.emit('data', c);
    }
    if (this.destroyed) return;
    // Paused by a listener with bytes left, or before the end: resume() goes on from here
    // (net.Socket, too, emits `end` only once flowing again).
    if (this.#paused && (early.length > 0 || this.#eof)) return;
    this.#early = null;
    if (this.#eof) this.#emitEnd();
    else if (!this.#paused) this.#startReading();
  };

  #onRead(): Buffer | undefined {
    const n = streamState[kReadBytesOrError] as number;
    if (n > 0) {
      if (this.destroyed) return undefined;
      this.bytesRead += n;
      if (this.#timeoutMs !== 0) this.#touch();
      const u = this.#user;
      if (u !== null) {
        const go = u.onRead(n, u.buf);
        u.buf = u.next();
        if (!go) this.pause();
        return u.buf;
      }
      const chunk = Buffer.allocUnsafe(n); // from Node's pool when small
      READ_BUF.copy(chunk, 0, 0, n);
      if (this.#flowing && this.#early === null) {
        this.emit('data', chunk);
        return undefined;
      }
      // Nobody reads yet: keep it, and stop reading once as much as net.Socket buffers is held.
      (this.#early ??= []).push(chunk);
      this.#earlyBytes += n;
      if (this.#earlyBytes >= HIGH_WATER && this.#reading) {
        this.#reading = false;
        this.#h.readStop();
      }
      return undefined;
    }
    if (n === 0 || this.destroyed) return undefined;
    if (n === UV_EOF) {
      // libuv has stopped reading (uv__stream_eof).
      this.#reading = false;
      this.#eof = true;
      if (this.#early === null) this.#emitEnd(); // else after what is held has been emitted
      return undefined;
    }
    this.destroy(uvError(n, 'read'));
    return undefined;
  }

  #emitEnd(): void {
    if (this.#endEmitted) return;
    this.#endEmitted = true;
    this.emit('end');
    this.#closeIfDone();
  }

  // --- writing -------------------------------------------------------------------------------

  write(data: Buffer | string, encodingOrCb?: BufferEncoding | WriteCb, cb?: WriteCb): boolean {
    const done = typeof encodingOrCb === 'function' ? encodingOrCb : cb;
    if (this.destroyed || this.#ending) {
      if (done) process.nextTick(done, new Error(this.destroyed ? 'write after destroy' : 'write after end'));
      return false;
    }
    const buf = typeof data === 'string' ? Buffer.from(data, typeof encodingOrCb === 'string' ? encodingOrCb : 'utf8') : data;
    this.bytesWritten += buf.length;
    if (this.#timeoutMs !== 0) this.#touch();
    if (this.#corked !== null) {
      this.#corked.push({ buf, cb: done });
      this.#corkedBytes += buf.length;
      // As for any write: past the mark, say stop, and owe a drain once all of it is written.
      if (this.#corkedBytes + this.#pending >= HIGH_WATER) this.#needDrain = true;
      return !this.#needDrain;
    }
    return this.#writeNow(buf, done);
  }

  #writeNow(buf: Buffer, cb: WriteCb | undefined): boolean {
    if (buf.length === 0) {
      if (cb) process.nextTick(cb);
      return !this.#needDrain;
    }
    const req = new WriteWrap() as PendingWrite;
    req.handle = this.#h;
    req.oncomplete = null;
    const err = this.#h.writeBuffer(req, buf);
    if (err !== 0) {
      const e = uvError(err, 'write');
      if (cb) process.nextTick(cb, e);
      this.destroy(e);
      return false;
    }
    if (streamState[kLastWriteWasAsync] === 0) {
      // Written in full already (uv_try_write): nothing to wait for.
      if (cb) process.nextTick(cb);
      // A drain owed (corked writes went past the mark) and nothing left queued: it is due now.
      if (this.#needDrain && this.#pending === 0) process.nextTick(this.#drainIfOwed);
      return !this.#needDrain;
    }
    // Queued in libuv: the buffer must stay alive until it is written.
    req.bytes = buf.length;
    req.buffer = buf;
    req.cb = cb;
    req.oncomplete = (status) => this.#afterWrite(req, status);
    this.#pending += buf.length;
    if (this.#pending >= HIGH_WATER) this.#needDrain = true;
    return !this.#needDrain;
  }

  #afterWrite(req: PendingWrite, status: number): void {
    this.#pending -= req.bytes;
    req.buffer = null;
    if (status < 0) {
      const e = uvError(status, 'write');
      req.cb?.(e);
      this.destroy(e);
      return;
    }
    if (this.#timeoutMs !== 0) this.#touch();
    req.cb?.();
    if (this.#pending === 0 && this.#needDrain && !this.destroyed) {
      this.#needDrain = false;
      this.emit('drain');
    }
  }

  readonly #drainIfOwed = (): void => {
    if (this.#needDrain && this.#pending === 0 && this.#corked === null && !this.destroyed) {
      this.#needDrain = false;
      this.emit('drain');
    }
  };

  get writableLength(): number {
    return this.#pending + this.#corkedBytes;
  }

  get writableNeedDrain(): boolean {
    return this.#needDrain;
  }

  cork(): void {
    this.#corked ??= [];
  }

  /** Sends what was written while corked in one write. */
  uncork(): void {
    const c = this.#corked;
    if (c === null) return;
    this.#corked = null;
    this.#corkedBytes = 0;
    if (c.length === 0 || this.destroyed) return;
    const cbs = c.filter((w) => w.cb !== undefined).map((w) => w.cb as WriteCb);
    const buf = c.length === 1 ? (c[0] as { buf: Buffer }).buf : Buffer.concat(c.map((w) => w.buf));
    this.#writeNow(buf, cbs.length === 0 ? undefined : (err) => { for (const f of cbs) f(err); });
  }

  /** Writes `data` if given, then sends FIN once everything queued is written (uv_shutdown). */
  end(cb?: () => void): this;
  end(data: Buffer | string, cb?: () => void): this;
  end(dataOrCb?: Buffer | string | (() => void), cb?: () => void): this {
    if (typeof dataOrCb === 'function') cb = dataOrCb;
    else if (dataOrCb !== undefined && dataOrCb !== null) this.write(dataOrCb);
    if (cb) this.once('finish', cb);
    if (this.destroyed || this.#ending) return this;
    this.#ending = true;
    this.uncork();
    if (this.destroyed) return this;
    if (this.#endEmitted && this.#pending === 0) {
      // The peer has sent its FIN and everything we wrote is with the kernel: closing the
      // descriptor now sends what is left and then our FIN, exactly as shutdown(2) followed by
      // close(2) would (RFC 9293 §3.6: CLOSE after the remote side closed), and nothing unread
      // can turn it into a reset (EOF was read). It saves the shutdown request, its loop turn
      // and its callback into JavaScript: the second end() of every tunnel comes here.
      this.#afterShutdown();
      return this;
    }
    const req = new ShutdownWrap();
    req.handle = this.#h;
    req.oncomplete = () => this.#afterShutdown();
    const err = this.#h.shutdown(req);
    // 1: done at once; ENOTCONN: the peer already reset (net treats both as finished).
    if (err === 1 || err === UV_ENOTCONN) this.#afterShutdown();
    else if (err !== 0) this.destroy(uvError(err, 'shutdown'));
    return this;
  }

  #afterShutdown(): void {
    if (this.#finished || this.destroyed) return;
    this.#finished = true;
    this.emit('finish');
    this.#closeIfDone();
  }

  get writable(): boolean {
    return !this.destroyed && !this.#ending;
  }

  /**
   * Both directions are done: close, as net.Socket's autoDestroy does — once `end` has been
   * emitted, not merely read: held bytes and the end must reach the owner before `close`.
   */
  #closeIfDone(): void {
    if (this.#endEmitted && this.#finished && !this.destroyed) this.destroy();
  }

  // --- closing -------------------------------------------------------------------------------

  destroy(err?: Error): this {
    if (this.destroyed) return this;
    this.destroyed = true;
    this.#reading = false;
    if (this.#timer !== null) {
      clearTimeout(this.#timer);
      this.#timer = null;
    }
    // uv_close closes the descriptor at once (uv__stream_close); libuv then cancels queued
    // writes (their callbacks get ECANCELED) and frees the handle a loop turn later. `close` is
    // emitted on the next tick rather than from a close callback: given no callback, Node does
    // not call into JavaScript for the handle at all (a MakeCallback per socket, and a symbol
    // property set on the handle object to hold the callback). Nothing waits for the cancelled
    // writes: libuv never touches their buffers again once the descriptor is closed.
    this.#h.close();
    process.nextTick(emitClose, this, err);
    return this;
  }

  // --- idle timeout --------------------------------------------------------------------------

  /** Idle timeout (0: none); `timeout` is emitted once the socket has been idle that long. */
  setTimeout(ms: number, cb?: () => void): this {
    if (cb) this.once('timeout', cb);
    this.#timeoutMs = ms;
    if (this.#timer !== null) {
      clearTimeout(this.#timer);
      this.#timer = null;
    }
    if (ms === 0 || this.destroyed) return this;
    this.#lastActive = performance.now();
    this.#timer = setTimeout(this.#onTimer, ms).unref();
    return this;
  }

  /** Activity: the timer checks the time of the last one when it fires, so nothing is re-armed per read. */
  #touch(): void {
    this.#lastActive = performance.now();
    // After a timeout fired, the next activity starts a new idle period.
    if (this.#timer === null && !this.destroyed) this.#timer = setTimeout(this.#onTimer, this.#timeoutMs).unref();
  }

  readonly #onTimer = (): void => {
    this.#timer = null;
    if (this.destroyed || this.#timeoutMs === 0) return;
    const left = this.#timeoutMs - (performance.now() - this.#lastActive);
    if (left > 1) {
      this.#timer = setTimeout(this.#onTimer, left).unref();
      return;
    }
    this.emit('timeout');
  };

  // --- peer address --------------------------------------------------------------------------

  #peerName(): PeerName {
    if (this.#peer === null) {
      const out: PeerName = {};
      if (this.destroyed || this.#h.getpeername(out) !== 0) return out;
      this.#peer = out;
    }
    return this.#peer;
  }

  get remoteAddress(): string | undefined {
    return this.#peerName().address;
  }

  get remotePort(): number | undefined {
    return this.#peerName().port;
  }
}

/**
 * The address to bind for a configured listen host: raw handles bind IP addresses only, so a
 * name (`localhost` in a configuration) is resolved here, once, at start.
 */
export async function listenAddress(host: string): Promise<string> {
  return isIP(host) !== 0 ? host : (await lookup(host)).address;
}

/**
 * A socket bound to host:port (an IP address), not listening yet: for RawListener, and held by
 * the main thread while the proxy threads take their copies (listener-dup.ts). Throws
 * EADDRINUSE and the like, naming the address.
 */
export function bindTcp(host: string, port: number): TcpHandle {
  const h = new TCP(TCP_SERVER);
  let err = isIPv6(host) ? h.bind6(host, port, 0) : h.bind(host, port);
  // libuv defers EADDRINUSE from bind() to listen() (uv__tcp_bind keeps it on the handle). A
  // socket bound here may never be listened on through this handle (the proxy threads listen
  // on duplicates of its descriptor, which the kernel would then bind to any free port): read
  // back what was bound.
  if (err === 0 && port !== 0) {
    const out: PeerName = {};
    if (h.getsockname(out) !== 0 || out.port !== port) err = UV_EADDRINUSE;
  }
  if (err !== 0) {
    h.close();
    throw uvError(err, 'bind', `${host}:${port}`);
  }
  return h;
}

/** A listening socket whose connections arrive as RawSockets. */
export class RawListener {
  readonly #h: TcpHandle;
  #closed = false;

  private constructor(h: TcpHandle) {
    this.#h = h;
  }

  /**
   * Listens on host:port (an IP address), or on `handle`, a bound socket (listener-dup.ts).
   * Accepted connections have Nagle off (the relay writes what it reads at once).
   */
  static listen(o: { host: string; port: number; handle?: object; backlog: number; onConnection: (s: RawSocket) => void; onError: (err: Error) => void }): RawListener {
    const h = (o.handle as TcpHandle | undefined) ?? bindTcp(o.host, o.port);
    const l = new RawListener(h);
    h.onconnection = (status, client) => {
      if (status !== 0 || client === undefined) {
        // EMFILE and the like: the kernel keeps the connection queued; libuv retries.
        o.onError(uvError(status, 'accept'));
        return;
      }
      if (l.#closed) {
        client.close();
        return;
      }
      client.setNoDelay(true);
      o.onConnection(new RawSocket(client));
    };
    const err = h.listen(o.backlog);
    if (err !== 0) {
      h.close();
      throw uvError(err, 'listen', `${o.host}:${o.port}`);
    }
    return l;
  }

  address(): AddressInfo {
    const out: PeerName = {};
    this.#h.getsockname(out);
    return { address: out.address ?? '', family: out.family ?? '', port: out.port ?? 0 };
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#h.close();
  }
}

/**
 * Connects to an IP address (never a name: the gateway dials exactly the address it checked).
 * `done` gets the connected socket, or an error; `abort()` cancels an attempt in progress.
 */
export function dialTcp(address: string, port: number, done: (err: NodeJS.ErrnoException | null, s: RawSocket | null) => void): { abort(): void } {
  const h = new TCP(TCP_SOCKET);
  const req = new TCPConnectWrap();
  let settled = false;
  let s: RawSocket | null = null;
  const settle = (err: NodeJS.ErrnoException | null, sock: RawSocket | null): void => {
    if (settled) return;
    settled = true;
    done(err, sock);
  };
  req.address = address;
  req.port = port;
  /** Why reading could not start (then the connect is cancelled, and this is the cause to report). */
  let readErr: NodeJS.ErrnoException | null = null;
  // Runs only after connect() returned 0, so `s` exists; a destroyed `s` closed the handle,
  // which cancels the connect (status ECANCELED).
  req.oncomplete = (status) => {
    if (settled) return;
    const sock = s as RawSocket;
    if (status !== 0) {
      sock.destroy();
      settle(readErr ?? uvError(status, 'connect'), null);
      return;
    }
    h.setNoDelay(true);
    settle(null, sock);
  };
  // Checked IP literals only: a colon means IPv6 (node:net's isIPv6 is a regex, a visible cost per tunnel).
  const err = address.includes(':') ? h.connect6(req, address, port) : h.connect(req, address, port);
  if (err !== 0) {
    h.close();
    // Reported asynchronously, as a failed connection is.
    process.nextTick(() => settle(uvError(err, 'connect'), null));
  } else {
    // The socket reads from the start (RawSocket's constructor), and starting now, while the
    // connect is in flight, registers read interest together with the connect's: libuv then
    // changes its epoll entry once when the connect completes, where reading from the
    // completion would drop the entry from its books and add it again (EEXIST, then a
    // modify): one system call per tunnel. Nothing can be read before the connect completes;
    // libuv reports the completion before any read.
    s = new RawSocket(h);
    // Its constructor destroyed it (reading could not start): its `error` comes on the next
    // tick, before libuv cancels the connect. A listener only on this path, not on every dial.
    if (s.destroyed) s.once('error', (e: NodeJS.ErrnoException) => { readErr = e; });
  }
  return {
    abort: () => {
      if (settled) return;
      settled = true;
      if (s !== null) s.destroy();
      else h.close();
    },
  };
}
