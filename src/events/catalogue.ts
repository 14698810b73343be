/**
 * The typed catalogue of every event the gateway emits (schema version 1). docs/events.md
 * documents each field; test/events-docs.test.ts keeps the two in step. Field names are
 * snake_case and flat so that a SIEM can index them without a mapping.
 */
import type { Reason } from '../core/reasons.js';
import { CONTROL_EVENT_TYPES, type ControlEvent } from './control.js';
import { IDENTITY_EVENT_TYPES, type IdentityEvent } from './identity.js';
import { EVIDENCE_EVENT_TYPES, type EvidenceEvent } from './evidence.js';

export const EVENT_SCHEMA_VERSION = 1;

export interface Base {
  readonly v: 1;
  /** ISO 8601 UTC with milliseconds. */
  readonly time: string;
}

/** Fields shared by a decision and the close of the tunnel it opened. */
export interface ConnectionFields {
  /** Shared by the decision and its tunnel.closed event. */
  readonly id: string;
  readonly listener: string;
  readonly client_ip: string;
  readonly client_port: number;
  /** The group the client belongs to, or null when unauthenticated. */
  readonly group: string | null;
  /** mTLS listener: the device id from the store (null on the plain listener or before identification). */
  readonly device_id: string | null;
  /** mTLS listener: the device's asset id, when it has one. */
  readonly asset_id: string | null;
  /** mTLS listener: the client certificate serial (lowercase hex), also when the device was refused. */
  readonly serial: string | null;
  /** `CONNECT` or the HTTP method of an absolute-form request; null when the request line was unreadable. */
  readonly method: string | null;
  /** Normalized destination host, or null when the target could not be parsed. */
  readonly host: string | null;
  readonly port: number | null;
  /** The address dialed (after resolution and checks), or null when none was. */
  readonly address: string | null;
}

export interface DecisionEvent extends Base, ConnectionFields {
  readonly type: 'gateway.decision';
  readonly verdict: 'allow' | 'deny';
  /** `allowed`, or the deny reason; in report mode an allowed connection carries its would-be deny reason. */
  readonly reason: Reason;
  readonly rule: string | null;
  readonly mode: 'enforce' | 'report' | null;
  readonly sni: string | null;
  readonly tls_version: string | null;
  /** For `address_denied`: why the address is special (private, loopback, metadata, …). */
  readonly address_class: string | null;
  /** Short, non-sensitive detail for request errors (which header, which check). */
  readonly detail: string | null;
  /** HTTP status sent to the client for a deny answered in HTTP; null otherwise. */
  readonly status: number | null;
}

export type CloseReason =
  | 'client_closed' | 'upstream_closed' | 'completed' | 'idle_timeout' | 'lifetime_exceeded'
  | 'client_error' | 'upstream_error' | 'shutdown' | 'policy_revoked' | 'device_revoked'
  /** The ClientHello check refused a tunnel after the server had already spoken (`tls: optional`). */
  | 'refused';

export interface TunnelClosedEvent extends Base, ConnectionFields {
  readonly type: 'gateway.tunnel.closed';
  /** `connect` for a CONNECT tunnel, `http` for one forwarded absolute-form request/response exchange. */
  readonly protocol: 'connect' | 'http';
  /** Bytes from the client to the destination (after the CONNECT head / including the forwarded request). */
  readonly bytes_up: number;
  /** Bytes from the destination to the client. */
  readonly bytes_down: number;
  readonly duration_ms: number;
  readonly close_reason: CloseReason;
  /** HTTP status from the destination (http exchanges only). */
  readonly status: number | null;
}

/**
 * A CONNECT tunnel still open after `timeouts.progress`, and every `timeouts.progress` after
 * that: its byte counts so far (cumulative), so that a long-lived tunnel is visible (and its
 * volume counted by the detectors) before it closes. Shares the attempt's id.
 */
export interface TunnelProgressEvent extends Base, ConnectionFields {
  readonly type: 'gateway.tunnel.progress';
  readonly protocol: 'connect';
  readonly bytes_up: number;
  readonly bytes_down: number;
  readonly duration_ms: number;
}

export interface PolicyLoadedEvent extends Base {
  readonly type: 'gateway.policy.loaded';
  readonly source: string;
  readonly digest: string;
  readonly groups: number;
  readonly warnings: readonly string[];
}

export interface PolicyRejectedEvent extends Base {
  readonly type: 'gateway.policy.rejected';
  readonly source: string;
  /** The digest of the policy that stays in force, or null when there is none (deny all). */
  readonly running_digest: string | null;
  readonly problems: readonly string[];
}

export interface LifecycleEvent extends Base {
  readonly type: 'gateway.started' | 'gateway.stopping' | 'gateway.stopped';
  readonly listeners: readonly string[];
  readonly version: string;
}

/**
 * A TLS handshake on the mTLS listener failed before any request could be read (no decision
 * was possible). A surge across many clients suggests interception, certificate trouble or
 * an attack; the anomaly detectors and metrics count these.
 */
export interface HandshakeFailedEvent extends Base {
  readonly type: 'gateway.tls.handshake_failed';
  readonly listener: string;
  readonly client_ip: string;
  readonly client_port: number;
  /** OpenSSL's error code, e.g. `ERR_SSL_WRONG_VERSION_NUMBER`, or `ECONNRESET`, `timeout`. */
  readonly error: string;
}

export type GatewayEvent = DecisionEvent | TunnelClosedEvent | TunnelProgressEvent | PolicyLoadedEvent | PolicyRejectedEvent | LifecycleEvent | HandshakeFailedEvent;

/**
 * Every event of the system. Each domain declares its events in its own file (control.ts,
 * identity.ts, evidence.ts) with the same conventions: `v`, `type`, `time`, flat snake_case fields.
 */
export type ChokepointEvent = GatewayEvent | ControlEvent | IdentityEvent | EvidenceEvent;
export type EventType = ChokepointEvent['type'];

const GATEWAY_EVENT_TYPES: readonly GatewayEvent['type'][] = [
  'gateway.decision',
  'gateway.tunnel.closed',
  'gateway.tunnel.progress',
  'gateway.policy.loaded',
  'gateway.policy.rejected',
  'gateway.started',
  'gateway.stopping',
  'gateway.stopped',
  'gateway.tls.handshake_failed',
];

/** Every event type, for documentation checks and sink routing. */
export const EVENT_TYPES: readonly EventType[] = Object.freeze([
  ...GATEWAY_EVENT_TYPES,
  ...CONTROL_EVENT_TYPES,
  ...IDENTITY_EVENT_TYPES,
  ...EVIDENCE_EVENT_TYPES,
]);
