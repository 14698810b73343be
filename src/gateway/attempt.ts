/**
 * One attempt (a CONNECT or one absolute-form request) as it moves through the gateway.
 * Fields are filled in as they become known; the attempt then becomes exactly one
 * `gateway.decision` event and, if a tunnel opened, one `gateway.tunnel.closed` event that
 * shares its id (DESIGN §2 step 7).
 */
import { randomUUID } from 'node:crypto';
import type { Reason } from '../core/reasons.js';
import { nowIso } from '../events/bus.js';
import type { Destination } from '../core/destination.js';
import type { CloseReason, ConnectionFields, DecisionEvent, TunnelClosedEvent, TunnelProgressEvent } from '../events/catalogue.js';
import type { GroupMode } from '../policy/types.js';

export class Attempt {
  readonly id = randomUUID();
  readonly startedAt = performance.now();
  group: string | null = null;
  deviceId: string | null = null;
  assetId: string | null = null;
  serial: string | null = null;
  /** mTLS listener: the group the device directory assigned; the policy's `sources` are then never consulted. */
  deviceGroup: string | null = null;
  mode: GroupMode | null = null;
  method: string | null = null;
  dest: Destination | null = null;
  address: string | null = null;
  verdict: 'allow' | 'deny' = 'deny';
  reason: Reason = 'internal_error';
  rule: string | null = null;
  sni: string | null = null;
  tlsVersion: string | null = null;
  addressClass: string | null = null;
  detail: string | null = null;
  status: number | null = null;
  decided = false;

  constructor(
    readonly listener: string,
    readonly clientIp: string,
    readonly clientPort: number,
  ) {}

  /** The fields a decision and its tunnel.closed event share. */
  #connection(): ConnectionFields {
    return {
      id: this.id,
      listener: this.listener,
      client_ip: this.clientIp,
      client_port: this.clientPort,
      group: this.group,
      device_id: this.deviceId,
      asset_id: this.assetId,
      serial: this.serial,
      method: this.method,
      host: this.dest?.host ?? null,
      port: this.dest?.port ?? null,
      address: this.address,
    };
  }

  decisionEvent(): DecisionEvent {
    return {
      v: 1,
      type: 'gateway.decision',
      time: nowIso(),
      ...this.#connection(),
      verdict: this.verdict,
      reason: this.reason,
      rule: this.rule,
      mode: this.mode,
      sni: this.sni,
      tls_version: this.tlsVersion,
      address_class: this.addressClass,
      detail: this.detail,
      status: this.status,
    };
  }

  progressEvent(bytesUp: number, bytesDown: number): TunnelProgressEvent {
    return {
      v: 1,
      type: 'gateway.tunnel.progress',
      time: nowIso(),
      ...this.#connection(),
      protocol: 'connect',
      bytes_up: bytesUp,
      bytes_down: bytesDown,
      duration_ms: Math.round(performance.now() - this.startedAt),
    };
  }

  closedEvent(opts: { protocol: 'connect' | 'http'; bytesUp: number; bytesDown: number; closeReason: CloseReason; status: number | null }): TunnelClosedEvent {
    return {
      v: 1,
      type: 'gateway.tunnel.closed',
      time: nowIso(),
      ...this.#connection(),
      protocol: opts.protocol,
      bytes_up: opts.bytesUp,
      bytes_down: opts.bytesDown,
      duration_ms: Math.round(performance.now() - this.startedAt),
      close_reason: opts.closeReason,
      status: opts.status,
    };
  }
}
