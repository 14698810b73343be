/**
 * The data plane's long-lived component: listeners, the policy snapshot, limits and the set
 * of live connections. It publishes events and never knows who listens (DESIGN §6.11); the
 * control side swaps policy snapshots in with setPolicy() (DESIGN §1).
 */
import type { AddressInfo, Socket } from 'node:net';
import { X509Certificate } from 'node:crypto';
import { createServer as createTlsServer, type Server as TlsServer, type TLSSocket } from 'node:tls';
import type { DeviceDirectory } from '../core/principal.js';
import { networkInterfaces } from 'node:os';
import type { Config } from '../config/schema.js';
import type { GatewayEvent } from '../events/catalogue.js';
import type { CompiledPolicy } from '../policy/types.js';
import { TLS_VERSION } from './clienthello.js';
import { Attempt } from './attempt.js';
import { clientIpOf, ProxyConnection } from './connection.js';
import { MTLS_CIPHERS, peerInfo } from './peer.js';
import { Resolver } from './resolver.js';
import type { Logger } from './logger.js';
import { LiveSet, type LiveMember } from './live-set.js';
import type { DenyReason } from '../core/reasons.js';
import { SharedCounts } from './shared-counts.js';
import { listenAddress, RawListener, type ProxySocket, type RawSocket } from './raw-socket.js';

export interface GatewayOptions {
  readonly config: Config;
  /** Where the gateway's events go (the event bus, or another thread's through a port). */
  readonly bus: EventSink;
  readonly logger: Logger;
  readonly policy?: CompiledPolicy | null;
  /** Overrides the resolver (tests); by default built from config.dns. */
  readonly resolver?: Resolver;
  /** Told each resolver query's duration and outcome (metrics); the data plane never imports them. */
  readonly observeResolver?: (seconds: number, result: 'ok' | 'error') => void;
  /**
   * The limits' counts, shared with the other data-plane threads (src/cli/proxy-threads.ts);
   * by default the gateway's own.
   */
  readonly counts?: SharedCounts;
  /**
   * Builds every event and drops it instead of publishing: the start-up warm-up's private
   * gateway (warmup.ts) only, which shares the real one's bus object so that the code it
   * warms is the code that serves clients. Never set on a gateway that serves clients.
   */
  readonly discardEvents?: boolean;
}

export interface EventSink {
  publish(e: GatewayEvent): void;
}

export interface MtlsListenOptions {
  readonly host: string;
  readonly port: number;
  readonly name?: string;
  /** The listener's own certificate and key (PEM), issued by the Chokepoint CA so agents can pin it. */
  readonly key: string | Buffer;
  readonly cert: string | Buffer;
  /** The device CA certificates (PEM) that sign client certificates; during rotation, both. */
  readonly ca: readonly (string | Buffer)[];
  /** Certificates above the device CAs (an imported intermediate's enterprise chain), PEM. */
  readonly chain?: readonly (string | Buffer)[];
  readonly directory: DeviceDirectory;
}

/** Something that holds a tunnel slot and can be cut. */
export interface LiveTunnel extends LiveMember {
  readonly startedAt: number;
  cut(reason: 'lifetime_exceeded' | 'shutdown'): void;
  /** Publishes `gateway.tunnel.progress` if one is due by `now` (CONNECT tunnels only). */
  progress?(now: number, everyMs: number): void;
}

export class Gateway {
  readonly config: Config;
  readonly bus: EventSink;
  readonly logger: Logger;
  readonly resolver: Resolver;
  readonly minTlsVersion: number;
  #policy: CompiledPolicy | null;
  #self: ReadonlySet<string> = new Set();
  /** Plain and mTLS listeners. */
  #servers: (RawListener | TlsServer)[] = [];
  // LiveSets, not Sets: see live-set.ts (a churning Set keeps dead tunnels alive across scavenges).
  readonly connections = new LiveSet<ProxyConnection>();
  /** This thread's tunnels (lifetimes, progress, shutdown); the limits count every thread's in `counts`. */
  readonly #tunnels = new LiveSet<LiveTunnel>();
  /** Open connections and tunnels, in total and per client address, across all data-plane threads. */
  readonly counts: SharedCounts;
  #sweeper: NodeJS.Timeout | null = null;
  /** The sweeper's period: lifetimes and progress reports are checked this often. */
  get #sweepEvery(): number {
    const t = this.config.timeouts;
    return Math.max(100, Math.min(1000, t.lifetime, t.progress > 0 ? t.progress : 1000));
  }
  #unsubscribe: (() => void)[] = [];
  #mtlsServers: TlsServer[] = [];
  /** The device CAs a client certificate must be signed by directly. */
  #issuers: readonly X509Certificate[] = [];
  #draining = false;
  #closed: Promise<void> | null = null;
  readonly #discardEvents: boolean;

  constructor(opts: GatewayOptions) {
    this.config = opts.config;
    this.bus = opts.bus;
    this.logger = opts.logger;
    this.#policy = opts.policy ?? null;
    this.#discardEvents = opts.discardEvents === true;
    this.counts = opts.counts ?? SharedCounts.create(opts.config.limits.max_connections);
    const dns = opts.config.dns;
    this.resolver = opts.resolver ?? new Resolver({
      servers: dns.resolvers,
      cacheTtlMs: dns.cache_ttl,
      minTtlMs: dns.min_ttl,
      maxTtlMs: dns.max_ttl,
      negativeTtlMs: dns.negative_ttl,
      timeoutMs: dns.timeout,
      cacheSize: dns.cache_size,
      observe: opts.observeResolver,
    });
    this.minTlsVersion = TLS_VERSION[opts.config.tls.min_version];
    this.refreshSelfAddresses();
  }

  get policy(): CompiledPolicy | null {
    return this.#policy;
  }

  /** Swaps the policy snapshot. Live tunnels keep running; the next request sees the new one. */
  setPolicy(p: CompiledPolicy | null): void {
    void this.applyPolicy(p);
  }

  /**
   * setPolicy(), resolving once every follower (the other data-plane threads) enforces it too.
   * The swap on this thread is immediate, before the first await.
   */
  async applyPolicy(p: CompiledPolicy | null): Promise<void> {
    this.#policy = p;
    await Promise.all(this.#policyFollowers.map((f) => f(p)));
  }

  readonly #policyFollowers: ((p: CompiledPolicy | null) => void | Promise<void>)[] = [];

  /** Calls `fn` with each policy set from now on (the other data-plane threads follow this one). */
  followPolicy(fn: (p: CompiledPolicy | null) => void | Promise<void>): () => void {
    this.#policyFollowers.push(fn);
    return () => {
      const i = this.#policyFollowers.indexOf(fn);
      if (i >= 0) this.#policyFollowers.splice(i, 1);
    };
  }

  get self(): ReadonlySet<string> {
    return this.#self;
  }

  get draining(): boolean {
    return this.#draining;
  }

  /** Tunnels held across all data-plane threads (the limits' count). */
  get activeTunnels(): number {
    return this.counts.tunnels;
  }

  /**
   * The gateway's own addresses: a name that resolves to one of them would make the gateway
   * connect to itself (or to services bound on its host), so they are denied like loopback.
   */
  refreshSelfAddresses(): void {
    const s = new Set<string>();
    for (const list of Object.values(networkInterfaces())) {
      // Loopback interfaces are already classified as loopback, which names them better.
      for (const i of list ?? []) if (!i.internal) s.add(i.address.split('%')[0] as string);
    }
    for (const srv of this.#servers) {
      const a = srv.address();
      if (a !== null && typeof a === 'object' && a.address !== '' && a.address !== '0.0.0.0' && a.address !== '::') s.add(a.address);
    }
    this.#self = s;
  }

  publish(e: GatewayEvent): void {
    if (this.#discardEvents) return;
    this.bus.publish(e);
  }

  /** Reserves a tunnel slot for a client, or says which limit refuses it. */
  acquire(clientIp: string, t: LiveTunnel): DenyReason | null {
    const lim = this.config.limits;
    if (this.#draining) return 'shutting_down';
    const refused = this.counts.acquireTunnel(clientIp, lim.max_tunnels, lim.max_tunnels_per_client);
    if (refused !== null) return refused;
    this.#tunnels.add(t);
    return null;
  }

  release(clientIp: string, t: LiveTunnel): void {
    if (this.#tunnels.delete(t)) this.counts.releaseTunnel(clientIp);
  }

  /**
   * Opens the plain proxy listener. Resolves with the bound address. With `handle` (a raw
   * listening handle on its own descriptor: src/cli/listener-dup.ts), accepts from the socket
   * bound for all the proxy threads instead of binding one.
   */
  async listen(host: string, port: number, name = 'proxy', from?: { readonly handle: object }): Promise<AddressInfo> {
    const ip = from !== undefined ? host : await listenAddress(host);
    const srv = RawListener.listen({
      host: ip, port, handle: from?.handle, backlog: 4096,
      onConnection: (socket) => this.#accept(socket, name),
      onError: (err) => this.logger.error({ err }, 'listener error'),
    });
    this.#servers.push(srv);
    this.refreshSelfAddresses();
    this.#startSweeper();
    return srv.address();
  }

  #startSweeper(): void {
    if (this.#sweeper === null) {
      // One coarse timer for tunnel lifetimes instead of one timer per tunnel.
      this.#sweeper = setInterval(() => this.#sweep(), this.#sweepEvery).unref();
    }
  }

  /**
   * Opens the mTLS proxy listener (DESIGN §2 step 1, §4): an HTTPS proxy that asks every
   * client for a certificate issued by a device CA. The handshake completes even without one
   * (`rejectUnauthorized: false`) so that the refusal is a readable 403 with its reason rather
   * than a bare TLS alert; nothing is relayed for an unidentified client because every
   * request is identified before it is decided.
   */
  async listenMtls(opts: MtlsListenOptions): Promise<AddressInfo> {
    const name = opts.name ?? 'mtls';
    this.#issuers = opts.ca.map((c) => new X509Certificate(c));
    const srv: TlsServer = createTlsServer({
      key: opts.key,
      cert: opts.cert,
      ca: [...opts.ca, ...(opts.chain ?? [])],
      requestCert: true,
      rejectUnauthorized: false,
      minVersion: 'TLSv1.2',
      ciphers: MTLS_CIPHERS,
      honorCipherOrder: true,
      handshakeTimeout: this.config.timeouts.header,
      allowHalfOpen: true,
    });
    this.#mtlsServers.push(srv);
    // Before the handshake: a source must not fill max_connections with handshakes either.
    srv.on('connection', (raw: Socket) => {
      const ip = clientIpOf(raw);
      const over = this.#countConnection(raw, ip, false);
      if (over === null) return;
      if (over === 'total') {
        this.#refuseOverTotal(raw);
        return;
      }
      const a = new Attempt(name, ip, raw.remotePort ?? 0);
      a.verdict = 'deny';
      a.reason = 'client_connection_limit';
      a.status = 429;
      a.decided = true;
      this.publish(a.decisionEvent());
      raw.destroy(); // no TLS yet, so no HTTP answer: the refusal is in the event
    });
    srv.on('secureConnection', (socket: TLSSocket) => {
      if (this.#draining) {
        socket.destroy();
        return;
      }
      socket.setNoDelay(true);
      const authError = socket.authorizationError;
      const c = new ProxyConnection(this, socket, name, {
        directory: opts.directory,
        cert: peerInfo(socket, this.#issuers),
        authError: authError === null || authError === undefined ? null : String(authError),
      });
      this.connections.add(c);
    });
    srv.on('tlsClientError', (err: Error & { code?: string }, socket: TLSSocket) => {
      // A failed handshake is not a request: nothing was decided, so no decision event, but
      // its own event (a surge of these is a signal: interception, certificate trouble).
      const code = err.code ?? (/timed? ?out/i.test(err.message) ? 'timeout' : 'unknown');
      this.logger.debug({ err: err.message, code }, 'mTLS handshake failed');
      const peer = tlsPeer(socket);
      this.publish({
        v: 1, type: 'gateway.tls.handshake_failed', time: new Date().toISOString(), listener: name,
        client_ip: peer.ip, client_port: peer.port, error: code,
      });
      // Node leaves the socket open after a failed handshake (and with allowHalfOpen a client's
      // FIN does not close it either): without this it stays in CLOSE-WAIT, holding a
      // descriptor and its count, and enough of them lock every listener out of max_connections.
      socket.destroy();
    });
    await new Promise<void>((resolve, reject) => {
      srv.once('error', reject);
      srv.listen({ host: opts.host, port: opts.port, backlog: 4096 }, () => {
        srv.off('error', reject);
        resolve();
      });
    });
    srv.on('error', (err) => this.logger.error({ err }, 'listener error'));
    this.#servers.push(srv);
    this.#unsubscribe.push(opts.directory.onRevoke((deviceId, serial) => this.revokeDevice(deviceId, serial)));
    this.refreshSelfAddresses();
    this.#startSweeper();
    return srv.address() as AddressInfo;
  }

  /**
   * Swaps the mTLS listeners' certificate and trusted device CAs (server certificate renewal,
   * CA rotation). Handshakes from now on use them; established connections are unaffected.
   */
  updateMtlsCredentials(c: { key: string | Buffer; cert: string | Buffer; ca: readonly (string | Buffer)[]; chain?: readonly (string | Buffer)[] }): void {
    this.#issuers = c.ca.map((x) => new X509Certificate(x));
    for (const srv of this.#mtlsServers) {
      srv.setSecureContext({ key: c.key, cert: c.cert, ca: [...c.ca, ...(c.chain ?? [])], minVersion: 'TLSv1.2', ciphers: MTLS_CIPHERS, honorCipherOrder: true });
    }
  }

  /**
   * Cuts every live connection and tunnel of a device now (revocation, disable). New
   * requests are refused by the directory; this handles those already admitted.
   */
  revokeDevice(deviceId: string, serial: string | null = null): number {
    let n = 0;
    for (const c of this.connections.values()) {
      // A revoked serial cuts only what that certificate opened; a revoked device, everything.
      if (c.mtls !== null && c.deviceId === deviceId && (serial === null || c.serial === serial)) {
        c.revoke();
        n++;
      }
    }
    if (n > 0) this.logger.info({ device_id: deviceId, serial, connections: n }, 'device revoked: live connections cut');
    return n;
  }

  addresses(): AddressInfo[] {
    return this.#servers.map((s) => s.address() as AddressInfo);
  }

  #accept(socket: RawSocket, listener: string): void {
    if (this.#draining) {
      socket.destroy();
      return;
    }
    const ip = clientIpOf(socket);
    const over = this.#countConnection(socket, ip, true);
    if (over === 'total') {
      this.#refuseOverTotal(socket);
      return;
    }
    const c = new ProxyConnection(this, socket, listener, null, ip);
    this.connections.add(c);
    if (over === 'client') {
      // The group its address belongs to, so the refusal is counted against the right group
      // (and a group's clients hitting the cap are told apart from strangers in no group).
      const a = new Attempt(listener, c.clientIp, c.clientPort);
      const g = this.#policy?.groupForSource(ip) ?? null;
      if (g !== null) {
        a.group = g.name;
        a.mode = g.mode;
      }
      c.deny(a, 'client_connection_limit');
    }
  }

  #overTotalLoggedAt = -Infinity;

  /**
   * Closes a connection over `max_connections` unanswered (answering would cost what the cap
   * protects, and there is no request yet to decide). No event per connection, which a flood
   * would multiply; an error log at most every 10 s says that the cap is refusing clients.
   */
  #refuseOverTotal(socket: ProxySocket): void {
    socket.destroy();
    const now = performance.now();
    if (now - this.#overTotalLoggedAt < 10_000) return;
    this.#overTotalLoggedAt = now;
    this.logger.error({ max_connections: this.config.limits.max_connections, open: this.counts.connections }, 'max_connections reached: new connections are closed unanswered');
  }

  /**
   * Counts an accepted TCP connection (until it closes) and says which cap it is over, if any.
   *
   * `total`: `max_connections`, one count across every listener and thread (which is why it is
   * not Node's per-server `maxConnections`); the caller closes it unanswered
   * (#refuseOverTotal). Not counted.
   *
   * `client`: its address's cap. `max_connections` is global: without a cap per address, one
   * source (even one in no group, which can never be allowed anything) could hold every slot
   * by opening connections and sending a byte now and then, and lock out every other client.
   * Counted on the TCP socket, before any TLS handshake, so handshakes in progress count too.
   */
  #countConnection(socket: ProxySocket, ip: string, plain: boolean): 'total' | 'client' | null {
    const lim = this.config.limits;
    const n = this.counts.openConnection(ip, lim.max_connections);
    if (n < 0) return 'total';
    if (n !== Infinity) socket.once('close', () => this.counts.closeConnection(ip));
    // The group lookup only once an address has more than the unauthenticated allowance.
    return n > lim.max_connections_per_client
      || (plain && n > lim.max_connections_unauthenticated && (this.#policy === null || this.#policy.groupForSource(ip) === null))
      ? 'client' : null;
  }

  #sweep(): void {
    const now = performance.now();
    const limit = now - this.config.timeouts.lifetime;
    const every = this.config.timeouts.progress;
    for (const t of this.#tunnels.values()) {
      // One tunnel's failure must not stop the sweep for the others, nor take the process down.
      try {
        if (t.startedAt <= limit) t.cut('lifetime_exceeded');
        // Interim counts for long tunnels (like a firewall's interim log records): volume that
        // leaves through a tunnel open for hours must not stay invisible until it closes.
        else if (every > 0 && t.progress) t.progress(now, every);
      } catch (err) {
        this.logger.error({ err }, 'tunnel sweep failed for one tunnel');
      }
    }
  }

  /**
   * Drains: stops accepting, closes idle keep-alive connections, lets tunnels finish until
   * the deadline, then cuts what is left. Idempotent.
   */
  close(deadlineMs = this.config.timeouts.shutdown): Promise<void> {
    if (this.#closed) return this.#closed;
    this.#draining = true;
    this.#closed = (async () => {
      // server.close() only calls back once every connection has ended, so do not wait for
      // it before asking the connections to drain.
      for (const s of this.#servers) s.close();
      for (const c of this.connections.values()) c.drain();
      const until = Date.now() + deadlineMs;
      while (this.connections.size > 0 && Date.now() < until) await sleep(50);
      this.destroy();
      // Dials abandoned by destroy() record their decisions in the continuations of their
      // awaits: let those run before saying the gateway has stopped (the process exits next).
      await new Promise((r) => setImmediate(r));
    })();
    return this.#closed;
  }

  /** Cuts everything now. Idempotent. */
  destroy(): void {
    this.#draining = true;
    if (this.#sweeper) clearInterval(this.#sweeper);
    this.#sweeper = null;
    for (const u of this.#unsubscribe) u();
    this.#unsubscribe = [];
    for (const s of this.#servers) s.close();
    for (const t of this.#tunnels.values()) {
      try { t.cut('shutdown'); } catch (err) { this.logger.error({ err }, 'cutting a tunnel at shutdown failed'); }
    }
    for (const c of this.connections.values()) c.shutdown();
  }
}

/**
 * The client of a TLS connection on the mTLS listener. A TLS socket asks the kernel for its peer
 * when first asked (getpeername on the descriptor it shares with its TCP socket), which fails
 * once the client has reset: a handshake cut short by a reset would be recorded as "" port 0.
 * The listener's `connection` handler has already read the address from the TCP socket, which
 * keeps it (Node's TLSSocket holds that socket as `_parent`).
 */
function tlsPeer(socket: TLSSocket): { ip: string; port: number } {
  const ip = clientIpOf(socket);
  if (ip !== '') return { ip, port: socket.remotePort ?? 0 };
  const raw = (socket as TLSSocket & { _parent?: Socket | null })._parent;
  return raw ? { ip: clientIpOf(raw), port: raw.remotePort ?? 0 } : { ip: '', port: 0 };
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
