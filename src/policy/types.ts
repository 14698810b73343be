/**
 * The in-memory model of a compiled policy: what the gateway consumes. The file format
 * (versioned YAML, snake_case) lives in schema.ts; compile() turns one into the other
 * (DESIGN §6.4). Everything here is pure: no I/O, no clock.
 */
import type { Destination } from '../core/destination.js';
import type { Reason } from '../core/reasons.js';

export type TlsMode = 'required' | 'optional' | 'none';
export type GroupMode = 'enforce' | 'report';
export type Protocol = 'connect' | 'http';

export interface GroupInfo {
  readonly name: string;
  readonly mode: GroupMode;
}

export interface DecideInput {
  readonly group: GroupInfo;
  readonly dest: Destination;
  /** `http` is an absolute-form (plain-text) request: a `tls: required` rule denies it with `not_tls`. */
  readonly protocol: Protocol;
}

/** A decision is a value, never a boolean (DESIGN §6.1). */
export interface Decision {
  readonly verdict: 'allow' | 'deny';
  readonly reason: Reason;
  /** Stable id of the deciding rule, e.g. `global.deny[0]`, `groups.servers.allow[2]`; null when none. */
  readonly ruleId: string | null;
  /** For an allow: the TLS requirement of the matched rule at this port. `none` for denies. */
  readonly tls: TlsMode;
}

/** Why an address is special. `public` is the only class allowed without an exception. */
export type AddressClass =
  | 'public'
  | 'unspecified'      // 0.0.0.0/8, ::
  | 'private'          // RFC 1918
  | 'loopback'         // 127/8, ::1
  | 'link_local'       // 169.254/16, fe80::/10
  | 'metadata'         // 169.254.169.254, fd00:ec2::254, and other cloud metadata endpoints
  | 'cgnat'            // 100.64/10 (RFC 6598)
  | 'multicast'        // 224/4, ff00::/8
  | 'broadcast'        // 255.255.255.255
  | 'reserved'         // 240/4, benchmarking, IETF protocol assignments, 6to4 relay...
  | 'documentation'    // TEST-NET-1/2/3, 2001:db8::/32
  | 'unique_local'     // fc00::/7
  | 'ipv4_embedded'    // NAT64 64:ff9b::/96 and /48, IPv4-compatible ::/96, 6to4 2002::/16, Teredo 2001::/32
  | 'self';            // an address of the gateway's own host

export interface AddressVerdict {
  readonly allowed: boolean;
  readonly class: AddressClass;
  /** The address_exceptions entry that allowed a special address, if any. */
  readonly exception?: string;
}

export interface CompiledPolicy {
  readonly version: 1;
  /** sha256 (hex) of the source text, for events and reload logs. */
  readonly digest: string;
  readonly groups: readonly GroupInfo[];
  /** The group whose `sources` contain this client address (IPv4-mapped IPv6 is treated as IPv4); null if none. */
  groupForSource(ip: string): GroupInfo | null;
  decide(input: DecideInput): Decision;
  /**
   * Classifies one resolved (or literal) address and applies `address_exceptions`.
   * `self` lists the gateway's own addresses (denied like loopback unless excepted).
   */
  checkAddress(ip: string, self?: ReadonlySet<string>): AddressVerdict;
}
