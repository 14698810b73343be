/**
 * The closed table of decision reason codes. The same code appears in the
 * `X-Chokepoint-Reason` header, in the `gateway.decision` event and in the tests'
 * assertions (DESIGN §6.1). Adding a code means adding a row here, to docs/reasons.md
 * and a test that asserts it; an unknown code is a compile error.
 *
 * `status` is the HTTP status used when the deny happens before a tunnel opens.
 * `alert` is the TLS alert used when the deny happens after `200 Connection established`
 * (RFC 8446 §6.2): at that point an HTTP answer can no longer be sent.
 */
export type TlsAlert = 'unrecognized_name' | 'protocol_version' | 'access_denied';

interface ReasonRow {
  readonly verdict: 'allow' | 'deny';
  readonly status: number;
  readonly alert?: TlsAlert;
  /** One line an operator reads in the deny body: what to change. */
  readonly hint: string;
}

const table = {
  // --- allow ------------------------------------------------------------------------
  allowed: { verdict: 'allow', status: 200, hint: 'An allow rule matched.' },

  // --- who is asking ----------------------------------------------------------------
  unauthenticated: {
    verdict: 'deny', status: 403,
    hint: 'The client address is in no group\'s "sources"; add its CIDR to a group.',
  },
  // On the mTLS listener (DESIGN §2 step 1, §4): the certificate must map to an active device.
  client_certificate_required: {
    verdict: 'deny', status: 403,
    hint: 'The mTLS listener needs a device client certificate; enroll the device (chokepoint agent enroll) and present its certificate.',
  },
  certificate_invalid: {
    verdict: 'deny', status: 403,
    hint: 'The client certificate was not issued by a Chokepoint device CA or does not name a device.',
  },
  certificate_expired: {
    verdict: 'deny', status: 403,
    hint: 'The device certificate has expired; renew it before expiry (chokepoint agent renew) or re-enroll.',
  },
  certificate_not_yet_valid: {
    verdict: 'deny', status: 403,
    hint: 'The device certificate is not valid yet; check the device clock.',
  },
  certificate_superseded: {
    verdict: 'deny', status: 403,
    hint: 'This certificate was replaced by a renewal the device has already used; present the current certificate.',
  },
  device_unknown: {
    verdict: 'deny', status: 403,
    hint: 'The certificate serial is not known to this gateway (from another deployment, or its device was deleted); re-enroll the device.',
  },
  device_revoked: {
    verdict: 'deny', status: 403,
    hint: 'The device or this certificate was revoked; re-enroll only if the device is trusted again.',
  },
  device_disabled: {
    verdict: 'deny', status: 403,
    hint: 'The device is disabled by an administrator (chokepoint device enable ID).',
  },
  device_pending: {
    verdict: 'deny', status: 403,
    hint: 'The device\'s enrollment awaits approval (chokepoint device approve ID).',
  },
  group_not_in_policy: {
    verdict: 'deny', status: 403,
    hint: 'The device belongs to a group that the running policy does not define; add the group to the policy.',
  },
  no_policy: {
    verdict: 'deny', status: 403,
    hint: 'The gateway has no valid policy loaded; fix the policy file (chokepoint policy check).',
  },

  // --- what the policy says ---------------------------------------------------------
  no_rule_matched: {
    verdict: 'deny', status: 403,
    hint: 'No allow rule of the group names this host; add one if the destination is expected.',
  },
  port_not_allowed: {
    verdict: 'deny', status: 403,
    hint: 'An allow rule names this host but not this port; add the port to the rule\'s "ports".',
  },
  denied_by_rule: {
    verdict: 'deny', status: 403,
    hint: 'A deny rule matched; deny rules win over allow rules.',
  },
  ip_literal_denied: {
    verdict: 'deny', status: 403,
    hint: 'IP-literal destinations need an "address:" allow rule; prefer a host name.',
  },
  address_denied: {
    verdict: 'deny', status: 403,
    hint: 'The destination resolves to a private, loopback, link-local, metadata or reserved address; add it to "address_exceptions" only if that is intended.',
  },

  // --- TLS checks after 200 (see alert) ---------------------------------------------
  not_tls: {
    verdict: 'deny', status: 403, alert: 'access_denied',
    hint: 'The rule requires TLS but the client did not start with a TLS ClientHello.',
  },
  sni_mismatch: {
    verdict: 'deny', status: 403, alert: 'unrecognized_name',
    hint: 'The TLS SNI is missing or differs from the CONNECT host (domain fronting).',
  },
  tls_version: {
    verdict: 'deny', status: 403, alert: 'protocol_version',
    hint: 'The client offers no TLS version at or above the configured minimum.',
  },
  ech_not_allowed: {
    verdict: 'deny', status: 403, alert: 'access_denied',
    hint: 'The ClientHello offers Encrypted Client Hello, which hides the real destination; set tls.ech: allow to permit it.',
  },
  clienthello_timeout: {
    verdict: 'deny', status: 408, alert: 'access_denied',
    hint: 'The client did not send a complete TLS ClientHello in time.',
  },

  // --- upstream ---------------------------------------------------------------------
  dns_failure: {
    verdict: 'deny', status: 502,
    hint: 'The host name did not resolve through the configured resolvers.',
  },
  connect_failed: {
    verdict: 'deny', status: 502,
    hint: 'The destination refused or reset the connection.',
  },
  connect_timeout: {
    verdict: 'deny', status: 504,
    hint: 'The destination did not accept the connection in time.',
  },
  upstream_bad_response: {
    verdict: 'deny', status: 502,
    hint: 'The destination answered with a malformed or oversized HTTP response, or TLS handshake records that cannot be read.',
  },

  // --- the request itself -----------------------------------------------------------
  bad_request: {
    verdict: 'deny', status: 400,
    hint: 'The request line or headers are malformed (RFC 9112).',
  },
  bad_target: {
    verdict: 'deny', status: 400,
    hint: 'The target is not a valid host and port.',
  },
  origin_form: {
    verdict: 'deny', status: 400,
    hint: 'This is a proxy: send CONNECT host:port or an absolute-form http:// URL.',
  },
  unsupported_scheme: {
    verdict: 'deny', status: 400,
    hint: 'Only http:// URLs are proxied in absolute form; use CONNECT for https.',
  },
  host_mismatch: {
    verdict: 'deny', status: 400,
    hint: 'The Host header disagrees with the request target\'s authority.',
  },
  request_smuggling: {
    verdict: 'deny', status: 400,
    hint: 'Ambiguous message framing (duplicate Content-Length, Content-Length with Transfer-Encoding, a Connection header naming either or Host) is refused.',
  },
  header_too_large: {
    verdict: 'deny', status: 431,
    hint: 'The request head exceeds the configured limit.',
  },
  header_timeout: {
    verdict: 'deny', status: 408,
    hint: 'The request head did not arrive in time.',
  },

  // --- limits and lifecycle ---------------------------------------------------------
  tunnel_limit: {
    verdict: 'deny', status: 429,
    hint: 'The gateway is at its limit of concurrent tunnels; retry later.',
  },
  client_tunnel_limit: {
    verdict: 'deny', status: 429,
    hint: 'This client is at its limit of concurrent tunnels; retry later.',
  },
  client_connection_limit: {
    verdict: 'deny', status: 429,
    hint: 'This client address has too many open connections (limits.max_connections_per_client, or max_connections_unauthenticated for an address in no group); close some and retry.',
  },
  shutting_down: {
    verdict: 'deny', status: 503,
    hint: 'The gateway is shutting down; retry on another instance.',
  },
  internal_error: {
    verdict: 'deny', status: 500,
    hint: 'The gateway failed while deciding; it denied the request (fail closed). See the gateway log.',
  },
} as const satisfies Record<string, ReasonRow>;

export type Reason = keyof typeof table;
export type DenyReason = { [K in Reason]: (typeof table)[K]['verdict'] extends 'deny' ? K : never }[Reason];

export const REASONS: Readonly<Record<Reason, ReasonRow>> = Object.freeze(table);
export const REASON_CODES: readonly Reason[] = Object.freeze(Object.keys(table) as Reason[]);

export function isReason(s: string): s is Reason {
  return Object.prototype.hasOwnProperty.call(table, s);
}
