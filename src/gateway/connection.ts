/**
 * One client connection on a proxy listener: reads request heads, decides each request on
 * its own (a kept-alive connection is never trusted for a second destination), and hands
 * the socket to a CONNECT tunnel or an HTTP exchange. Any exception on this path denies
 * with `internal_error` and closes: the gateway fails closed.
 */
import type { ProxySocket } from './raw-socket.js';
import type { DeviceDirectory, DeviceDenyReason, PeerCertificateInfo } from '../core/principal.js';
import { parseAbsoluteTarget, parseAuthority, formatDestination, type Destination } from '../core/destination.js';
import { REASONS, type DenyReason } from '../core/reasons.js';
import { Attempt } from './attempt.js';
import { getHeader, parseRequestHead, type RequestHead } from './http1.js';
import { denyResponse, lingerClose } from './replies.js';
import type { Gateway } from './server.js';
import { handleConnect } from './tunnel.js';
import { handleHttp, type KeptUpstream } from './http-exchange.js';
import type { DialCut, DialHolder } from './dialer.js';

/** Who receives the client's bytes and socket events once a request has been admitted. */
export interface ClientOwner {
  onData(chunk: Buffer): void;
  onEnd(): void;
  onTimeout(): void;
  onClose(): void;
  /** The client socket drained its write buffer (backpressure released). */
  onDrain(): void;
  /** Cuts at once (device revoked); the owner records the close reason. */
  cut?(reason: 'device_revoked'): void;
}

/** What an mTLS connection knows of its client after the handshake. */
export interface MtlsPeer {
  readonly directory: DeviceDirectory;
  /** null when the client presented no certificate. */
  readonly cert: PeerCertificateInfo | null;
  /** OpenSSL's verification error code, when the chain did not verify. */
  readonly authError: string | null;
}

type State = 'head' | 'busy' | 'owned' | 'closed';

/** The client's address as policies and events spell it. */
export function clientIpOf(socket: ProxySocket): string {
  const ra = socket.remoteAddress ?? '';
  // A dual-stack listener reports IPv4 clients as IPv4-mapped IPv6; sources are IPv4 CIDRs.
  return ra.startsWith('::ffff:') && ra.includes('.') ? ra.slice(7) : ra;
}

export class ProxyConnection implements DialHolder {
  /** This object's slot in the gateway's LiveSet (live-set.ts). */
  liveSlot = -1;
  readonly clientIp: string;
  readonly clientPort: number;
  /** Bytes received and not yet consumed by a request head, body or tunnel. */
  #buf: Buffer | null = null;
  #state: State = 'head';
  #owner: ClientOwner | null = null;
  #headTimer: NodeJS.Timeout | null = null;
  #clientEnded = false;
  #draining = false;
  /** The upstream of the previous absolute-form request, kept for reuse to the same destination. */
  upstream: KeptUpstream | null = null;

  constructor(
    readonly gw: Gateway,
    readonly socket: ProxySocket,
    readonly listener: string,
    /** Set on the mTLS listener: every request is identified against the device table. */
    readonly mtls: MtlsPeer | null = null,
    /** clientIpOf(socket), when the caller has it already (the listener counted the address). */
    clientIp = clientIpOf(socket),
  ) {
    this.clientIp = clientIp;
    this.clientPort = socket.remotePort ?? 0;
    socket.setTimeout(gw.config.timeouts.header);
    socket.on('data', this.#onData);
    socket.on('end', this.#onEnd);
    socket.on('timeout', this.#onTimeout);
    socket.on('error', () => {}); // 'close' follows; the owner records the error as its close reason
    socket.on('close', this.#onClose);
    socket.on('drain', () => this.#owner?.onDrain());
  }

  get closed(): boolean {
    return this.#state === 'closed' || this.socket.destroyed;
  }

  get clientEnded(): boolean {
    return this.#clientEnded;
  }

  readonly #onData = (chunk: Buffer): void => {
    if (this.#owner !== null) {
      this.#owner.onData(chunk);
      return;
    }
    const first = this.#buf === null;
    this.#buf = first ? chunk : Buffer.concat([this.#buf as Buffer, chunk]);
    // A head can only complete in a chunk that carries a LF; re-parsing only then keeps a
    // client that sends one byte at a time from costing quadratic time. The size limit is
    // still enforced as soon as it is passed.
    if (this.#state === 'head' && (first || chunk.includes(0x0a) || this.#buf.length > this.gw.config.limits.max_header_bytes)) this.#parse();
    else if (this.#state === 'head' && this.#headTimer === null) this.#headTimer = setTimeout(this.#headTimeout, this.gw.config.timeouts.header);
    else if (this.#buf.length > this.gw.config.limits.max_header_bytes + 65536) this.socket.pause();
  };

  readonly #onEnd = (): void => {
    this.#clientEnded = true;
    if (this.#owner !== null) this.#owner.onEnd();
    else if (this.#state === 'head') this.socket.destroy();
  };

  readonly #onTimeout = (): void => {
    if (this.#owner !== null) {
      this.#owner.onTimeout();
      return;
    }
    if (this.#state === 'head' && this.#buf !== null && this.#buf.length > 0) {
      this.#headTimeout();
    } else if (this.#state === 'head') {
      this.socket.destroy(); // an idle kept-alive connection: nothing to answer
    }
  };

  readonly #onClose = (): void => {
    this.#state = 'closed';
    this.#clearHeadTimer();
    this.gw.connections.delete(this);
    if (this.upstream) {
      this.upstream.destroy();
      this.upstream = null;
    }
    const o = this.#owner;
    this.#owner = null;
    o?.onClose();
  };

  #headTimeout = (): void => {
    this.#headTimer = null;
    if (this.#state !== 'head') return;
    const a = new Attempt(this.listener, this.clientIp, this.clientPort);
    this.deny(a, 'header_timeout');
  };

  #clearHeadTimer(): void {
    if (this.#headTimer !== null) {
      clearTimeout(this.#headTimer);
      this.#headTimer = null;
    }
  }

  #parse(): void {
    const buf = this.#buf;
    if (buf === null || buf.length === 0) return;
    const r = parseRequestHead(buf, this.gw.config.limits.max_header_bytes);
    if (r.kind === 'incomplete' && this.#clientEnded) {
      // The client closed its side mid-head: no request can complete (an unfinished head is
      // not a request, as when the client closes before sending one). Answers already written go out.
      this.socket.end();
      return;
    }
    if (r.kind === 'incomplete') {
      // An absolute deadline for the whole head: socket idle timeouts alone would let a
      // slowloris client keep a connection by sending one byte at a time.
      if (this.#headTimer === null) this.#headTimer = setTimeout(this.#headTimeout, this.gw.config.timeouts.header);
      return;
    }
    this.#clearHeadTimer();
    const a = new Attempt(this.listener, this.clientIp, this.clientPort);
    if (r.kind === 'error') {
      a.detail = r.detail;
      this.deny(a, r.reason);
      return;
    }
    this.#buf = r.head.headLength < buf.length ? buf.subarray(r.head.headLength) : null;
    this.#state = 'busy';
    try {
      this.#dispatch(a, r.head);
    } catch (err) {
      this.gw.logger.error({ err, id: a.id }, 'request handling failed');
      this.deny(a, 'internal_error');
    }
  }

  /** The device (and its certificate serial) of the last identified request, for cutting it when it is revoked. */
  deviceId: string | null = null;
  serial: string | null = null;

  /**
   * Identifies the client of an mTLS connection, on every request rather than once per
   * handshake: a kept-alive connection or a resumed TLS session (RFC 8446 §2.2) must not
   * outlive a revocation. Time is checked before the chain so that an expired certificate
   * gets the reason an operator can act on.
   */
  #identify(a: Attempt, m: MtlsPeer): DeviceDenyReason | null {
    const cert = m.cert;
    if (cert === null) return 'client_certificate_required';
    a.serial = cert.serial;
    // A claimed device id is recorded only from a certificate our CA signed.
    if (cert.chainVerified) a.deviceId = cert.deviceId;
    const now = Date.now();
    if (!(now <= cert.notAfter)) return 'certificate_expired';
    if (!(now >= cert.notBefore)) return 'certificate_not_yet_valid';
    if (!cert.chainVerified || cert.deviceId === null) {
      // OpenSSL's verification code (e.g. UNABLE_TO_VERIFY_LEAF_SIGNATURE) tells an operator
      // why without revealing anything about our CA.
      a.detail = cert.chainVerified ? 'no urn:chokepoint:device URI in the certificate' : m.authError;
      return 'certificate_invalid';
    }
    const r = m.directory.identify(cert, now);
    if (!r.ok) {
      a.deviceId = r.deviceId ?? cert.deviceId;
      return r.reason;
    }
    const p = r.principal;
    a.deviceId = p.deviceId;
    a.assetId = p.assetId;
    a.deviceGroup = p.group;
    this.deviceId = p.deviceId;
    this.serial = cert.serial;
    return null;
  }

  /**
   * On the mTLS listener, identifies the device (after the target is parsed, so that a
   * refusal's event still says where the client wanted to go) and denies when it cannot.
   */
  #identified(a: Attempt): boolean {
    if (this.mtls === null) return true;
    const refused = this.#identify(a, this.mtls);
    if (refused === null) return true;
    this.deny(a, refused);
    return false;
  }

  #dispatch(a: Attempt, head: RequestHead): void {
    a.method = head.method;
    if (this.#draining || this.gw.draining) {
      this.deny(a, 'shutting_down');
      return;
    }
    if (head.method === 'CONNECT') {
      const t = parseAuthority(head.target);
      if (!t.ok) {
        a.detail = t.error;
        this.deny(a, 'bad_target');
        return;
      }
      a.dest = t.dest;
      if (!this.#identified(a)) return;
      handleConnect(this, a, t.dest).catch((err: unknown) => this.#fail(a, err));
      return;
    }
    if (head.target.startsWith('/') || head.target === '*') {
      this.deny(a, 'origin_form');
      return;
    }
    const t = parseAbsoluteTarget(head.target);
    if (!t.ok) {
      a.detail = t.error;
      this.deny(a, t.scheme ? 'unsupported_scheme' : 'bad_target');
      return;
    }
    a.dest = t.target.dest;
    // RFC 9112 §3.2.2: a proxy must ignore a Host header that disagrees with the
    // absolute-form target; we refuse instead, because the disagreement is itself the
    // signature of an attempt to have the origin serve a different virtual host.
    const host = getHeader(head, 'host');
    if (host === undefined && head.version === 1) {
      // RFC 9112 §3.2: a server must answer 400 to an HTTP/1.1 request without Host. Passing
      // it on would let the origin pick a default virtual host the policy never named.
      a.detail = 'HTTP/1.1 request without a Host header (RFC 9112 §3.2)';
      this.deny(a, 'bad_request');
      return;
    }
    if (host !== undefined && !sameAuthority(host, t.target.dest)) {
      a.detail = 'Host header does not match the request target';
      this.deny(a, 'host_mismatch');
      return;
    }
    if (!this.#identified(a)) return;
    handleHttp(this, a, head, t.target.path).catch((err: unknown) => this.#fail(a, err));
  }

  #fail(a: Attempt, err: unknown): void {
    this.gw.logger.error({ err, id: a.id }, 'request handling failed');
    if (!a.decided) this.deny(a, 'internal_error');
    else this.destroy();
  }

  /** Gives the client's bytes and events to a tunnel or exchange; returns what is buffered. */
  takeOver(owner: ClientOwner): Buffer | null {
    this.#owner = owner;
    this.#state = 'owned';
    const b = this.#buf;
    this.#buf = null;
    if (this.socket.isPaused()) this.socket.resume();
    return b;
  }

  /** Called by an HTTP exchange when it is done and the connection may carry another request. */
  release(rest: Buffer | null): void {
    this.#owner = null;
    if (this.#state === 'closed') return;
    // A client may close its side right after pipelining several requests (RFC 9112 §9.3.2):
    // each one still gets its answer and its record, and the connection ends after the last.
    if (this.#draining || this.gw.draining || (this.#clientEnded && (rest === null || rest.length === 0))) {
      this.socket.end();
      return;
    }
    this.#state = 'head';
    this.#buf = rest;
    this.socket.setTimeout(this.#buf === null ? this.gw.config.timeouts.keepalive : this.gw.config.timeouts.header);
    if (this.socket.isPaused()) this.socket.resume();
    if (this.#buf !== null) this.#parse();
  }

  /** Publishes the deny decision, answers in HTTP and closes. */
  deny(a: Attempt, reason: DenyReason, status?: number): void {
    a.verdict = 'deny';
    a.reason = reason;
    a.status = status ?? REASONS[reason].status;
    this.emitDecision(a);
    this.#state = 'closed';
    this.#owner = null;
    this.#clearHeadTimer();
    const body = denyResponse({ reason, id: a.id, destination: a.dest ? formatDestination(a.dest) : null, detail: a.detail, status: a.status });
    lingerClose(this.socket, body);
  }

  emitDecision(a: Attempt): void {
    if (a.decided) return;
    a.decided = true;
    this.gw.publish(a.decisionEvent());
  }

  /** Stop taking new requests: idle connections close now, busy ones after their request. */
  drain(): void {
    this.#draining = true;
    if (this.#state === 'head' && (this.#buf === null || this.#buf.length === 0)) this.socket.destroy();
  }

  destroy(): void {
    this.socket.destroy();
  }

  /** The device was revoked or disabled: cut its tunnel (recording why) and the connection. */
  revoke(): void {
    this.cutReason ??= 'device_revoked';
    this.cancelDial?.('device_revoked');
    const o = this.#owner;
    if (o?.cut) o.cut('device_revoked');
    this.socket.destroy();
  }

  /** Shutdown's deadline passed: cut now, recording why (a dial in flight is abandoned and recorded). */
  shutdown(): void {
    this.cutReason ??= 'shutdown';
    this.cancelDial?.('shutting_down');
    this.socket.destroy();
  }

  /**
   * Why the gateway cut this connection (revocation, shutdown), for a request whose upstream
   * connected just as it was cut: its close event says so rather than `client_closed`.
   */
  cutReason: 'device_revoked' | 'shutdown' | null = null;
  /** Abandons this connection's dial in flight (set by dial(): DialHolder). */
  cancelDial: ((cut: DialCut) => void) | null = null;
}

function sameAuthority(hostHeader: string, dest: Destination): boolean {
  const h = parseAuthority(hostHeader, 80);
  return h.ok && h.dest.host === dest.host && h.dest.port === dest.port;
}
