/**
 * The data plane's start-up warm-up. V8 runs new code in its interpreter and compiles the hot
 * parts only after they have run a while, so a freshly started gateway serves its first few
 * thousand connections at a fraction of its steady speed, with tail latency several times its
 * steady state, while the optimizing compiler competes with it for the same cores. That is
 * exactly when it is busiest: a gateway restarted under load is met by every agent
 * reconnecting at once. Squid, compiled ahead of time, has no such first seconds.
 *
 * So before the proxy listener opens, warmUp() drives synthetic requests through a private
 * Gateway on loopback: the same classes, hence the same compiled code and type feedback, as
 * the one that will serve clients. The mix follows what clients send: CONNECT tunnels carrying
 * a TLS ClientHello (checked against the SNI rule) and plain ones, keep-alive absolute-form
 * HTTP, and denied requests. None of it is evidence and none of it is visible: the private
 * gateway has its own policy (names under `.invalid`, RFC 6761 §6.4, pinned to loopback
 * origins of its own), its own resolver and limits' counts; it holds the serving gateway's
 * configuration and event sink objects but drops every event before the sink (`discardEvents`);
 * and it is gone, with every connection it or its origins held, before the real listener
 * opens. It never fails the start: a warm-up that fails is logged, and the gateway then starts
 * as it would have without one.
 */
import { connect, createServer, type Server, type Socket } from 'node:net';
import { randomBytes } from 'node:crypto';
import type { Config } from '../config/schema.js';
import { compilePolicy } from '../policy/compile.js';
import type { Logger } from './logger.js';
import { Resolver } from './resolver.js';
import { Gateway, type EventSink } from './server.js';

export interface WarmupOptions {
  /** The serving gateway's own configuration object (not a copy: same shape, same compiled code). */
  readonly config: Config;
  /** The serving gateway's event sink: handed to the private gateway, which drops every event before it. */
  readonly bus: EventSink;
  readonly logger: Logger;
  /** Synthetic client connections to drive through the private gateway; 0 does nothing. */
  readonly connections: number;
  /** Gives up after this long (a loaded host must not hold the start back for long). */
  readonly timeoutMs?: number;
  /** How a synthetic client reaches the private gateway's port (tests put something else there). */
  readonly dial?: (port: number) => Socket;
  /** Ends the warm-up early (the gateway was told to stop while it started). */
  readonly signal?: AbortSignal;
  /** Told where the private gateway and its origins listen, once they do (tests). */
  readonly onListening?: (ports: { readonly proxy: number; readonly echo: number; readonly web: number }) => void;
}

export interface WarmupReport {
  /** Connections started: fewer than asked for when it stopped early (deadline, abort, failures). */
  readonly connections: number;
  readonly failed: number;
  readonly ms: number;
  readonly timedOut: boolean;
  readonly firstError: string | null;
}

const PLAIN = 'plain.warmup.chokepoint.invalid';
const TLS = 'tls.warmup.chokepoint.invalid';
const DENIED = 'denied.warmup.chokepoint.invalid';
/** Concurrent synthetic clients (fewer if the limits allow fewer per client). */
const CONCURRENCY = 16;
/** Requests on each keep-alive HTTP connection. */
const HTTP_REQUESTS = 4;

export async function warmUp(opts: WarmupOptions): Promise<WarmupReport> {
  const started = performance.now();
  if (opts.connections <= 0 || opts.signal?.aborted === true) return { connections: 0, failed: 0, ms: 0, timedOut: false, firstError: null };
  const lim = opts.config.limits;
  const concurrency = Math.max(1, Math.min(CONCURRENCY, lim.max_connections, lim.max_tunnels, lim.max_tunnels_per_client, lim.max_connections_per_client));
  // Every socket the warm-up opens or accepts, destroyed at its end whatever happened: a local
  // process that connects to the origins during the window must not keep a connection (or the
  // memory behind it) past it.
  const open = new Set<Socket>();
  const origins: Server[] = [];
  let gw: Gateway | null = null;
  let failed = 0;
  let firstError: string | null = null;
  let timedOut = false;
  let stop = false;
  let next = 0;
  const halt = (): void => {
    stop = true;
    for (const s of open) s.destroy();
  };
  const deadline = setTimeout(() => { timedOut = true; halt(); }, opts.timeoutMs ?? 5_000);
  opts.signal?.addEventListener('abort', halt, { once: true });
  try {
    const echo = await origin(echoOrigin, open, concurrency, origins);
    const web = await origin(httpOrigin, open, concurrency, origins);
    gw = privateGateway(opts, port(echo), port(web));
    const proxyPort = (await gw.listen('127.0.0.1', 0, 'warmup')).port;
    opts.onListening?.({ proxy: proxyPort, echo: port(echo), web: port(web) });
    const scenarios = [
      (s: Socket) => tunnel(s, TLS, port(echo), clientHello(TLS)),
      (s: Socket) => tunnel(s, PLAIN, port(echo), randomBytes(64)),
      (s: Socket) => keepAlive(s, PLAIN, port(web)),
      (s: Socket) => tunnel(s, TLS, port(echo), clientHello(TLS)),
      (s: Socket) => tunnel(s, PLAIN, port(echo), randomBytes(64)),
      (s: Socket) => denied(s, port(echo)),
    ];
    const dial = opts.dial ?? ((p: number) => connect({ host: '127.0.0.1', port: p, allowHalfOpen: true }));
    const worker = async (): Promise<void> => {
      while (!stop && next < opts.connections) {
        const i = next++;
        const s = dial(proxyPort);
        open.add(s);
        try {
          await (scenarios[i % scenarios.length] as (s: Socket) => Promise<void>)(s);
        } catch (err) {
          failed++;
          firstError ??= (err as Error).message;
          // A data plane that fails most of its loopback requests will not do better with more.
          if (failed >= 10 && failed * 2 > i) stop = true;
        } finally {
          s.destroy();
          open.delete(s);
        }
      }
    };
    await Promise.all(Array.from({ length: concurrency }, worker));
  } finally {
    clearTimeout(deadline);
    opts.signal?.removeEventListener('abort', halt);
    gw?.destroy();
    for (const s of open) s.destroy();
    // Each origin calls back once its last connection has closed; the serving listener opens on
    // a quiet process.
    const closed = Promise.all(origins.map((srv) => new Promise((r) => srv.close(r))));
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([closed, new Promise((r) => { timer = setTimeout(r, 1000); })]);
    clearTimeout(timer);
    // And two turns for libuv to finish closing the handles (theirs and the private gateway's):
    // close callbacks run after the turn's immediates.
    for (let i = 0; i < 2; i++) await new Promise((r) => setImmediate(r));
  }
  return { connections: next, failed, ms: Math.round(performance.now() - started), timedOut, firstError };
}

function privateGateway(opts: WarmupOptions, echoPort: number, webPort: number): Gateway {
  const config = opts.config;
  const compiled = compilePolicy({
    version: 1,
    address_exceptions: ['127.0.0.1/32'],
    groups: [{
      name: 'warmup',
      sources: ['127.0.0.0/8'],
      allow: [
        { host: PLAIN, ports: [echoPort, webPort], tls: 'none' },
        { host: TLS, ports: [echoPort], tls: 'required' },
      ],
    }],
  });
  if (!compiled.ok) throw new Error(`warm-up policy: ${compiled.problems.map((p) => p.message).join('; ')}`);
  const dns = config.dns;
  const resolver = new Resolver({
    servers: [], cacheTtlMs: dns.cache_ttl, minTtlMs: dns.min_ttl, maxTtlMs: dns.max_ttl,
    negativeTtlMs: dns.negative_ttl, timeoutMs: dns.timeout, cacheSize: 16,
  });
  for (const name of [PLAIN, TLS]) resolver.pin(name, ['127.0.0.1']);
  // The operator's configuration object itself, timeouts, TLS settings and limits included
  // (a copy would have other hidden classes, and V8 would deoptimize what the warm-up
  // compiled at the first real client); the limits' counts are the private gateway's own.
  return new Gateway({ config, bus: opts.bus, discardEvents: true, logger: opts.logger, policy: compiled.policy, resolver });
}

// ---- the synthetic clients ----------------------------------------------------------------

/** CONNECT, then `payload` through the tunnel and back from the echo origin. */
async function tunnel(s: Socket, host: string, port: number, payload: Buffer): Promise<void> {
  const r = new Reader(s);
  s.write(`CONNECT ${host}:${port} HTTP/1.1\r\nHost: ${host}:${port}\r\n\r\n`);
  expectStatus(await r.head(), 200);
  s.write(payload);
  await r.take(payload.length);
  s.end();
  await r.closed();
}

async function keepAlive(s: Socket, host: string, port: number): Promise<void> {
  const r = new Reader(s);
  for (let i = 0; i < HTTP_REQUESTS; i++) {
    s.write(`GET http://${host}:${port}/warmup/${i} HTTP/1.1\r\nHost: ${host}:${port}\r\nUser-Agent: chokepoint-warmup\r\n\r\n`);
    const head = await r.head();
    expectStatus(head, 200);
    await r.take(contentLength(head));
  }
  s.end();
  await r.closed();
}

async function denied(s: Socket, port: number): Promise<void> {
  const r = new Reader(s);
  s.write(`CONNECT ${DENIED}:${port} HTTP/1.1\r\nHost: ${DENIED}:${port}\r\n\r\n`);
  const head = await r.head();
  expectStatus(head, 403);
  await r.take(contentLength(head));
  s.end();
  await r.closed();
}

function expectStatus(head: string, status: number): void {
  if (!head.startsWith(`HTTP/1.1 ${status} `)) throw new Error(`expected ${status}, got ${JSON.stringify(head.slice(0, 40))}`);
}

function contentLength(head: string): number {
  const m = /\r\ncontent-length: *([0-9]+)/i.exec(head);
  if (m === null) throw new Error('response without Content-Length');
  return Number(m[1]);
}

/** Buffers what a socket receives and hands it out by message. */
class Reader {
  #buf: Buffer = Buffer.alloc(0);
  #ended = false;
  #error: Error | null = null;
  #wake: (() => void) | null = null;

  constructor(s: Socket) {
    s.on('data', (d: Buffer) => {
      this.#buf = this.#buf.length === 0 ? d : Buffer.concat([this.#buf, d]);
      this.#notify();
    });
    s.on('end', () => { this.#ended = true; this.#notify(); });
    s.on('error', (err) => { this.#error = err; this.#notify(); });
    s.on('close', () => { this.#ended = true; this.#notify(); });
  }

  #notify(): void {
    const w = this.#wake;
    this.#wake = null;
    w?.();
  }

  async #until(ready: () => boolean, what: string): Promise<void> {
    while (!ready()) {
      if (this.#error !== null) throw this.#error;
      if (this.#ended) throw new Error(`connection closed before ${what}`);
      await new Promise<void>((r) => { this.#wake = r; });
    }
  }

  async head(): Promise<string> {
    await this.#until(() => this.#buf.indexOf('\r\n\r\n') >= 0, 'a response head');
    const end = this.#buf.indexOf('\r\n\r\n') + 4;
    const head = this.#buf.subarray(0, end).toString('latin1');
    this.#buf = this.#buf.subarray(end);
    return head;
  }

  async take(n: number): Promise<void> {
    await this.#until(() => this.#buf.length >= n, `${n} bytes`);
    this.#buf = this.#buf.subarray(n);
  }

  async closed(): Promise<void> {
    await this.#until(() => this.#ended, 'the close');
  }
}

// ---- the origins --------------------------------------------------------------------------

/**
 * A loopback origin for the warm-up's requests. Other local processes can reach it while it
 * listens, so it holds few connections (twice the warm-up's own), each tracked in `open`.
 */
function origin(serve: (s: Socket) => void, open: Set<Socket>, concurrency: number, all: Server[]): Promise<Server> {
  const srv = createServer({ allowHalfOpen: true }, (s) => {
    open.add(s);
    s.on('close', () => open.delete(s));
    s.on('error', () => s.destroy());
    serve(s);
  });
  srv.maxConnections = 2 * concurrency;
  srv.on('error', () => {}); // accept errors (EMFILE): the warm-up's own requests then fail and say so
  all.push(srv);
  return new Promise((resolve, reject) => {
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      srv.off('error', reject);
      resolve(srv);
    });
  });
}

/** Sends back what it receives, no faster than the peer reads it. */
function echoOrigin(s: Socket): void {
  s.on('data', (d: Buffer) => {
    if (!s.write(d)) s.pause();
  });
  s.on('drain', () => s.resume());
  s.on('end', () => s.end());
}

/** The most a request head may take: the warm-up's are about 100 bytes. */
const MAX_HEAD = 4096;

/** Answers each GET (no bodies in the warm-up's requests) with a two-byte body, keeping the connection. */
function httpOrigin(s: Socket): void {
  let pending = '';
  s.setEncoding('latin1');
  s.on('data', (d: string) => {
    pending += d;
    let end;
    while ((end = pending.indexOf('\r\n\r\n')) >= 0) {
      pending = pending.slice(end + 4);
      if (!s.write('HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok')) s.pause();
    }
    if (pending.length > MAX_HEAD) s.destroy();
  });
  s.on('drain', () => s.resume());
  s.on('end', () => s.end());
}

function port(srv: Server): number {
  return (srv.address() as { port: number }).port;
}

/**
 * A minimal TLS 1.3 ClientHello (RFC 8446 §4.1.2) naming `host`: enough for the gateway's
 * checks (SNI, offered versions, no ECH); the echo origin never answers it as TLS.
 */
function clientHello(host: string): Buffer {
  const name = Buffer.from(host, 'latin1');
  const ext = (type: number, data: Buffer): Buffer => Buffer.concat([u16(type), u16(data.length), data]);
  const sni = Buffer.concat([u16(name.length + 3), Buffer.from([0]), u16(name.length), name]);
  const versions = Buffer.from([2, 0x03, 0x04]);
  const extensions = Buffer.concat([ext(0x0000, sni), ext(0x002b, versions)]);
  const body = Buffer.concat([
    Buffer.from([0x03, 0x03]), randomBytes(32), // legacy_version, random
    Buffer.from([0]), // legacy_session_id
    u16(2), Buffer.from([0x13, 0x01]), // cipher_suites: TLS_AES_128_GCM_SHA256
    Buffer.from([1, 0]), // legacy_compression_methods: null
    u16(extensions.length), extensions,
  ]);
  const hs = Buffer.concat([Buffer.from([1, body.length >> 16, (body.length >> 8) & 0xff, body.length & 0xff]), body]);
  return Buffer.concat([Buffer.from([0x16, 0x03, 0x01]), u16(hs.length), hs]);
}

function u16(n: number): Buffer {
  return Buffer.from([n >> 8, n & 0xff]);
}
