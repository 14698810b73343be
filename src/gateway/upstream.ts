/**
 * An upstream connection used by absolute-form requests. It holds a tunnel slot for as long
 * as it is open, may be kept between requests to the same destination (each request is
 * still decided on its own), and dispatches its socket events to the current exchange.
 * While idle, any byte from the server or its close ends it: an idle upstream has nothing
 * legitimate to say.
 */
import type { ProxySocket } from './raw-socket.js';
import type { Destination } from '../core/destination.js';
import type { Gateway, LiveTunnel } from './server.js';

export interface UpstreamOwner {
  onUpData(chunk: Buffer): void;
  onUpEnd(): void;
  onUpClose(): void;
  onUpDrain(): void;
}

export class Upstream implements LiveTunnel {
  /** This object's slot in the gateway's LiveSet (live-set.ts). */
  liveSlot = -1;
  readonly startedAt = performance.now();
  #owner: UpstreamOwner | null = null;
  #closed = false;

  constructor(
    readonly gw: Gateway,
    readonly clientIp: string,
    readonly socket: ProxySocket,
    readonly dest: Destination,
    readonly address: string,
  ) {
    socket.on('data', (c: Buffer) => {
      if (this.#owner) this.#owner.onUpData(c);
      else this.destroy();
    });
    socket.on('end', () => {
      if (this.#owner) this.#owner.onUpEnd();
      else this.destroy();
    });
    socket.on('drain', () => this.#owner?.onUpDrain());
    socket.on('error', () => {});
    socket.on('timeout', () => { if (this.#owner === null) this.destroy(); });
    socket.on('close', () => {
      this.#closed = true;
      gw.release(clientIp, this);
      const o = this.#owner;
      this.#owner = null;
      o?.onUpClose();
    });
  }

  get alive(): boolean {
    return !this.#closed && !this.socket.destroyed && this.socket.writable;
  }

  own(o: UpstreamOwner): void {
    this.#owner = o;
    this.socket.setTimeout(0);
    if (this.socket.isPaused()) this.socket.resume();
  }

  /** Parks the connection for reuse by the next request on the same client connection. */
  park(): void {
    this.#owner = null;
    this.socket.setTimeout(this.gw.config.timeouts.keepalive);
    if (this.socket.isPaused()) this.socket.resume();
  }

  /** Set when the gateway cut this connection (lifetime, shutdown), for the exchange's close reason. */
  cutReason: 'lifetime_exceeded' | 'shutdown' | null = null;

  cut(reason: 'lifetime_exceeded' | 'shutdown'): void {
    this.cutReason = reason;
    this.destroy();
  }

  destroy(): void {
    this.socket.destroy();
  }
}
