/**
 * RawSocket (src/gateway/raw-socket.ts): the data plane's connections on libuv handles. The
 * connection, tunnel and HTTP code were written against net.Socket's behaviour, so these tests
 * pin the parts of it that RawSocket promises to keep — half-close, backpressure and `drain`,
 * asynchronous write callbacks, pause, the idle timer, `error` then one `close` — on real
 * loopback sockets, with net.Socket on the other end.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { constants as osConstants } from 'node:os';
import { dialTcp, RawListener, RawSocket } from '../src/gateway/raw-socket.js';
import { TCP } from '../src/gateway/uv.js';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const tick = (ms = 10) => new Promise((r) => setTimeout(r, ms));
const once = <T = unknown>(e: { once(ev: string, fn: (...a: any[]) => void): unknown }, ev: string): Promise<T> => new Promise((r) => { e.once(ev, (v: T) => r(v)); });

/** A RawListener on a free port, handing its connections out one by one. */
async function rawServer(host = '127.0.0.1'): Promise<{ l: RawListener; port: number; next(): Promise<RawSocket> }> {
  const waiting: RawSocket[] = [];
  const takers: ((s: RawSocket) => void)[] = [];
  const l = RawListener.listen({
    host, port: 0, backlog: 64,
    onConnection: (s) => { const t = takers.shift(); if (t) t(s); else waiting.push(s); },
    onError: (err) => { throw err; },
  });
  return {
    l, port: l.address().port,
    next: () => new Promise((r) => { const s = waiting.shift(); if (s) r(s); else takers.push(r); }),
  };
}

/** A net.Socket connected to port, and the RawSocket the listener accepted for it. */
async function pair(srv: Awaited<ReturnType<typeof rawServer>>, host = '127.0.0.1'): Promise<{ c: Socket; s: RawSocket }> {
  const c = connect({ host, port: srv.port, allowHalfOpen: true });
  await once(c, 'connect');
  return { c, s: await srv.next() };
}

function readAll(s: { on(ev: string, fn: (...a: any[]) => void): unknown }): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    s.on('data', (d: Buffer) => parts.push(d));
    s.on('end', () => resolve(Buffer.concat(parts)));
    s.on('error', reject);
  });
}

describe('RawSocket', () => {
  let srv: Awaited<ReturnType<typeof rawServer>>;
  before(async () => { srv = await rawServer(); });
  after(() => srv.l.close());

  it('carries data both ways, counts bytes and knows its peer', async () => {
    const { c, s } = await pair(srv);
    assert.equal(s.remoteAddress, '127.0.0.1');
    assert.equal(s.remotePort, c.localPort);
    const up = randomBytes(300_000);
    const down = randomBytes(200_000);
    const gotUp = readAll(s);
    const gotDown = readAll(c);
    const closed = once(s, 'close');
    c.end(up);
    assert.equal(sha(await gotUp), sha(up));
    s.end(down);
    assert.equal(sha(await gotDown), sha(down));
    await closed;
    assert.equal(s.bytesRead, up.length);
    assert.equal(s.bytesWritten, down.length);
    c.destroy();
  });

  it('half-close: end from the peer, writes still go out, and the socket closes once both sides are done', async () => {
    const { c, s } = await pair(srv);
    let closes = 0;
    s.on('close', () => closes++);
    const ended = once(s, 'end');
    s.on('data', () => {});
    c.end('bye');
    await ended;
    assert.equal(s.destroyed, false, 'half-open: still writable after the peer\'s FIN');
    const got = readAll(c);
    assert.equal(s.write('still here'), true);
    s.end();
    assert.equal((await got).toString(), 'still here');
    await tick(50);
    assert.equal(closes, 1);
    assert.equal(s.destroyed, true);
    c.destroy();
  });

  it('end() after the peer\'s FIN closes at once: what was written arrives whole, then a clean FIN (no reset), finish before close', async () => {
    // Written all at once (10 bytes) and left queued in libuv (8 MiB to a peer not reading yet).
    for (const size of [10, 8 * 1024 * 1024]) {
      const { c, s } = await pair(srv);
      const events: string[] = [];
      s.on('finish', () => events.push('finish'));
      s.on('close', (hadError: boolean) => events.push(`close:${hadError}`));
      s.on('error', (e: Error) => events.push(`error:${e.message}`));
      const ended = once(s, 'end');
      s.on('data', () => {});
      c.pause();
      c.end('bye');
      await ended;
      const data = randomBytes(size);
      s.write(data);
      s.end();
      await tick(20);
      const got = readAll(c); // flowing from here: a reset would fail it with ECONNRESET
      c.resume();
      assert.equal(sha(await got), sha(data), `${size} bytes`);
      await tick(20);
      assert.deepEqual(events, ['finish', 'close:false'], `${size} bytes`);
      c.destroy();
    }
  });

  it('our end() alone does not close: the peer may still send, and the socket closes after its FIN', async () => {
    const { c, s } = await pair(srv);
    const fromPeer = readAll(s);
    const closed = once(s, 'close');
    s.end('first');
    assert.equal((await readAll(c)).toString(), 'first');
    await tick(20);
    assert.equal(s.destroyed, false);
    c.end('late reply');
    assert.equal((await fromPeer).toString(), 'late reply');
    await closed;
  });

  it('backpressure: write() turns false past 16 KiB queued, drain comes once all is written, callbacks in order and never synchronous', async () => {
    const { c, s } = await pair(srv);
    c.pause(); // the peer reads nothing: the kernel buffers fill, then libuv queues
    const order: number[] = [];
    let sync = true;
    let returned = true;
    let i = 0;
    const chunk = randomBytes(64 * 1024);
    while (returned && i < 1000) {
      const n = i++;
      returned = s.write(chunk, () => { assert.equal(sync, false, 'callback called synchronously'); order.push(n); });
    }
    sync = false;
    assert.equal(returned, false, 'write() said stop');
    assert.equal(s.writableNeedDrain, true);
    assert.ok(s.writableLength >= 16 * 1024);
    const drained = once(s, 'drain');
    const got = readAll(c);
    c.resume();
    await drained;
    assert.equal(s.writableLength, 0);
    assert.deepEqual(order, Array.from({ length: i }, (_, k) => k));
    s.end();
    assert.equal((await got).length, chunk.length * i);
    c.destroy();
  });

  it('pause stops data events until resume; nothing is lost', async () => {
    const { c, s } = await pair(srv);
    const parts: Buffer[] = [];
    let whilePaused = 0;
    s.on('data', (d: Buffer) => { parts.push(d); if (s.isPaused()) whilePaused++; });
    s.pause();
    assert.equal(s.isPaused(), true);
    const body = randomBytes(500_000);
    c.write(body);
    await tick(50);
    assert.equal(parts.length, 0);
    const ended = once(s, 'end');
    s.resume();
    c.end();
    await ended;
    assert.equal(whilePaused, 0);
    assert.equal(sha(Buffer.concat(parts)), sha(body));
    s.destroy();
    c.destroy();
  });

  it('idle timeout: fires once when idle, not while data flows, and again only after new activity', async () => {
    const { c, s } = await pair(srv);
    let fired = 0;
    s.on('timeout', () => fired++);
    s.on('data', () => {});
    s.setTimeout(120);
    for (let k = 0; k < 6; k++) { c.write('x'); await tick(40); }
    assert.equal(fired, 0, 'activity every 40 ms keeps a 120 ms idle timer from firing');
    await tick(250);
    assert.equal(fired, 1, 'idle: fired once, and not again without activity');
    c.write('y');
    await tick(250);
    assert.equal(fired, 2, 'activity after a timeout starts a new idle period');
    s.setTimeout(0);
    c.write('z');
    await tick(200);
    assert.equal(fired, 2, 'setTimeout(0) stops it');
    s.destroy();
    c.destroy();
  });

  it('a peer reset: error (ECONNRESET) then one close; without an error listener nothing is thrown', async () => {
    for (const listen of [true, false]) {
      const { c, s } = await pair(srv);
      const events: string[] = [];
      if (listen) s.on('error', (e: NodeJS.ErrnoException) => events.push(`error:${e.code}`));
      s.on('close', () => events.push('close'));
      s.on('data', () => {});
      c.resetAndDestroy();
      await once(s, 'close');
      await tick(10);
      assert.deepEqual(events, listen ? ['error:ECONNRESET', 'close'] : ['close']);
    }
  });

  it('destroy with writes queued: destroyed at once, each callback gets an error, one close', async () => {
    const { c, s } = await pair(srv);
    c.pause();
    const errs: (Error | null | undefined)[] = [];
    const chunk = Buffer.alloc(1024 * 1024);
    for (let k = 0; k < 8; k++) s.write(chunk, (e) => errs.push(e));
    let closes = 0;
    s.on('close', () => closes++);
    s.destroy();
    assert.equal(s.destroyed, true);
    await tick(50);
    assert.equal(closes, 1);
    assert.equal(errs.length, 8);
    assert.ok(errs.some((e) => e instanceof Error), 'queued writes are reported as failed');
    c.destroy();
  });

  it('write after end or destroy: false and an error to the callback, no throw', async () => {
    const { c, s } = await pair(srv);
    s.end();
    const e1 = await new Promise<Error | null | undefined>((r) => assert.equal(s.write('late', r), false));
    assert.match(String(e1?.message), /after end/);
    s.destroy();
    const e2 = await new Promise<Error | null | undefined>((r) => assert.equal(s.write('later', r), false));
    assert.match(String(e2?.message), /after destroy/);
    c.destroy();
  });

  it('cork gathers writes into one write; uncork sends them in order and calls every callback', async () => {
    const { c, s } = await pair(srv);
    const got = readAll(c);
    let called = 0;
    s.cork();
    s.write('a', () => called++);
    s.write(Buffer.from('b'));
    s.write('c', () => called++);
    assert.equal(s.writableLength, 3);
    s.uncork();
    s.end();
    assert.equal((await got).toString(), 'abc');
    assert.equal(called, 2);
    c.destroy();
  });

  it('corked writes past the mark: write() says stop, and drain follows the uncork even when libuv writes it all at once', async () => {
    const { c, s } = await pair(srv);
    const got = readAll(c);
    s.cork();
    assert.equal(s.write(Buffer.alloc(10 * 1024)), true);
    assert.equal(s.write(Buffer.alloc(10 * 1024)), false, 'stop at 20 KiB corked');
    assert.equal(s.writableNeedDrain, true);
    const drained = once(s, 'drain');
    s.uncork();
    await drained;
    assert.equal(s.writableNeedDrain, false);
    s.end();
    assert.equal((await got).length, 20 * 1024);
    c.destroy();
  });

  it('holds what arrives before anyone listens, and reports a peer\'s FIN with no listener for data', async () => {
    const { c, s } = await pair(srv);
    c.write('early');
    await tick(30);
    const ended = once(s, 'end');
    c.end();
    await tick(30);
    // Not flowing yet: the FIN waits behind the held bytes.
    const got = readAll(s);
    await ended;
    assert.equal((await got).toString(), 'early');
    const { c: c2, s: s2 } = await pair(srv);
    const ended2 = once(s2, 'end');
    c2.end(); // nothing sent: the FIN alone is reported at once, as net.Socket does
    await ended2;
    s.destroy();
    s2.destroy();
    c.destroy();
    c2.destroy();
  });

  it('readInto: reads land in the caller\'s buffers, which it may switch after each read', async () => {
    const { c, s } = await pair(srv);
    const a = Buffer.alloc(4096);
    const b = Buffer.alloc(4096);
    const seen: string[] = [];
    const parts: Buffer[] = [];
    let next = b;
    s.readInto({ buf: a, onRead: (n, buf) => { seen.push(buf === a ? 'a' : 'b'); parts.push(Buffer.from(buf.subarray(0, n))); next = buf === a ? b : a; return true; }, next: () => next });
    assert.equal(s.readingIntoUserBuffer, true);
    const ended = once(s, 'end');
    const body = randomBytes(100_000);
    c.end(body);
    await ended;
    assert.equal(sha(Buffer.concat(parts)), sha(body));
    assert.ok(seen.includes('a') && seen.includes('b'), 'both buffers were read into');
    s.destroy();
  });
});

describe('dialTcp', () => {
  let origin: Server;
  let port: number;
  before(async () => {
    origin = createServer((sock) => sock.end('hello from origin'));
    await new Promise<void>((r) => origin.listen(0, '127.0.0.1', r));
    port = (origin.address() as AddressInfo).port;
  });
  after(() => origin.close());

  const dialP = (address: string, p: number) => new Promise<{ err: NodeJS.ErrnoException | null; s: RawSocket | null }>((r) => { dialTcp(address, p, (err, s) => r({ err, s })); });

  it('connects; reading waits for a data listener, so nothing sent before it is lost', async () => {
    const { err, s } = await dialP('127.0.0.1', port);
    assert.equal(err, null);
    assert.ok(s);
    await tick(50); // the origin's bytes and FIN are waiting in the kernel
    assert.equal((await readAll(s)).toString(), 'hello from origin');
    s.destroy();
  });

  it('held bytes and the end survive every pause, resume and end interleaving, in order (as net.Socket)', async () => {
    // The origin sends three chunks and its FIN before anyone reads; each scenario then reads
    // them in its own way. All must see the three chunks' bytes in order, then one end, and a
    // socket whose own side ended must not close before delivering them. (How the bytes are cut
    // into reads is the kernel's business: on a loaded machine two chunks can arrive as one.)
    const sender = createServer({ allowHalfOpen: true }, async (sock) => {
      sock.on('error', () => {});
      sock.resume();
      for (let k = 0; k < 3; k++) { sock.write(Buffer.alloc(2000, 0x61 + k)); await tick(15); }
      sock.end();
    });
    await new Promise<void>((r) => sender.listen(0, '127.0.0.1', r));
    const sp = (sender.address() as AddressInfo).port;
    const scenarios: Record<string, (s: RawSocket, onData: (c: Buffer) => void) => Promise<void>> = {
      'listener, then pause before the flush, resume later': async (s, onData) => { s.on('data', onData); s.pause(); await tick(30); s.resume(); },
      'pause in every data handler, resume on a timer': async (s, onData) => { s.on('data', (c: Buffer) => { onData(c); s.pause(); setTimeout(() => s.resume(), 10); }); },
      'pause, listener, resume': async (s, onData) => { s.pause(); s.on('data', onData); await tick(30); s.resume(); },
      'our end() while everything is held, listener later': async (s, onData) => { s.end(); await tick(80); s.on('data', onData); },
    };
    try {
      for (const [name, run] of Object.entries(scenarios)) {
        const { s } = await dialP('127.0.0.1', sp);
        assert.ok(s);
        const seen: string[] = [];
        s.on('end', () => seen.push('end'));
        s.on('close', () => seen.push('close'));
        await tick(120); // all three chunks and the FIN are held by now
        await run(s, (c) => seen.push(`data:${c.toString('latin1')}`));
        await tick(200);
        const events = seen.filter((e) => e !== 'close');
        assert.equal(events.at(-1), 'end', `${name}: the end comes last`);
        assert.equal(events.filter((e) => e === 'end').length, 1, `${name}: one end`);
        const bytes = events.slice(0, -1).map((e) => e.slice('data:'.length)).join('');
        assert.equal(bytes, 'a'.repeat(2000) + 'b'.repeat(2000) + 'c'.repeat(2000), `${name}: every byte, in order`);
        s.destroy();
      }
      // Reads into the caller's buffers would overtake held bytes: refused until they are out.
      const { s } = await dialP('127.0.0.1', sp);
      assert.ok(s);
      await tick(120);
      assert.equal(s.readInto({ buf: Buffer.alloc(1024), onRead: () => true, next: () => Buffer.alloc(1024) }), false);
      const got = readAll(s);
      assert.equal((await got).length, 6000);
      s.destroy();
    } finally {
      sender.close();
    }
  });

  it('a refused connection reports ECONNREFUSED', async () => {
    const probe = createServer();
    await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
    const closedPort = (probe.address() as AddressInfo).port;
    await new Promise((r) => probe.close(r));
    const { err, s } = await dialP('127.0.0.1', closedPort);
    assert.equal(s, null);
    assert.equal(err?.code, 'ECONNREFUSED');
  });

  it('reading that cannot start fails the dial once, with the read error (not the cancelled connect\'s)', async () => {
    // The socket starts reading while its connect is in flight; a refusal there (forced here:
    // libuv refuses only a closing or unconnectable handle) must be what the dialer hears.
    const orig = TCP.prototype.readStart;
    let refuse = true;
    TCP.prototype.readStart = function (this: unknown) {
      if (refuse) { refuse = false; return -osConstants.errno.EINVAL; }
      return orig.call(this);
    };
    try {
      const calls: { err: NodeJS.ErrnoException | null; s: RawSocket | null }[] = [];
      dialTcp('127.0.0.1', port, (err, s) => calls.push({ err, s }));
      await tick(100);
      assert.equal(calls.length, 1);
      assert.equal(calls[0]?.s, null);
      assert.equal(calls[0]?.err?.code, 'EINVAL');
      assert.equal(calls[0]?.err?.syscall, 'read');
    } finally {
      TCP.prototype.readStart = orig;
    }
  });

  it('abort: the callback is never called', async () => {
    let called = false;
    const d = dialTcp('127.0.0.1', port, () => { called = true; });
    d.abort();
    await tick(50);
    assert.equal(called, false);
  });

  it('IPv6: listens and dials on ::1', async () => {
    const v6 = await rawServer('::1');
    try {
      assert.equal(v6.l.address().family, 'IPv6');
      const { err, s } = await dialP('::1', v6.port);
      assert.equal(err, null);
      const acc = await v6.next();
      assert.equal(acc.remoteAddress, '::1');
      const got = readAll(acc);
      s?.end('over v6');
      assert.equal((await got).toString(), 'over v6');
      acc.destroy();
      s?.destroy();
    } finally {
      v6.l.close();
    }
  });
});

describe('RawListener', () => {
  it('a port in use fails with EADDRINUSE; a closed listener refuses connections', async () => {
    const a = await rawServer();
    assert.throws(() => RawListener.listen({ host: '127.0.0.1', port: a.port, backlog: 8, onConnection: () => {}, onError: () => {} }), (e: NodeJS.ErrnoException) => e.code === 'EADDRINUSE' && e.message.includes(`127.0.0.1:${a.port}`));
    a.l.close();
    await tick(20);
    const c = connect({ host: '127.0.0.1', port: a.port });
    const err = await once<NodeJS.ErrnoException>(c, 'error');
    assert.equal(err.code, 'ECONNREFUSED');
  });
});
