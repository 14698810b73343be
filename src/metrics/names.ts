/**
 * Every Prometheus metric Chokepoint exports, in one list (DESIGN §5). Names follow the
 * Prometheus conventions (base units, `_total` for counters) and are checked by
 * `promtool check metrics` in test/metrics-exposition.test.ts.
 */
export const METRICS = {
  decisions: { name: 'chokepoint_decisions_total', help: 'Connection decisions by verdict, reason and group (and host when metrics.host_labels is on).' },
  tunnelsActive: { name: 'chokepoint_tunnels_active', help: 'Tunnels (and forwarded HTTP exchanges) open now.' },
  tunnelsClosed: { name: 'chokepoint_tunnels_closed_total', help: 'Tunnels closed, by close reason and group.' },
  tunnelBytes: { name: 'chokepoint_tunnel_bytes_total', help: 'Bytes relayed through tunnels, by direction (up: client to destination) and group.' },
  tlsFailures: { name: 'chokepoint_tls_handshake_failures_total', help: 'Refused or failed TLS handshakes (ClientHello checks, client certificates), by reason.' },
  resolverLatency: { name: 'chokepoint_resolver_latency_seconds', help: 'DNS resolution time, by result (ok, error).' },
  sinkBacklogEvents: { name: 'chokepoint_sink_backlog_events', help: 'Events accepted by a sink and not yet delivered.' },
  sinkBacklogBytes: { name: 'chokepoint_sink_backlog_bytes', help: 'Bytes of events waiting in a sink buffer.' },
  sinkDropped: { name: 'chokepoint_sink_dropped_events_total', help: 'Events a sink discarded because its bound was reached, by reason.' },
  sinkUp: { name: 'chokepoint_sink_up', help: '1 while a sink delivers, 0 while its destination fails.' },
  certExpiry: { name: 'chokepoint_certificate_expiry_seconds', help: 'Seconds until the nearest expiry of a certificate kind (ca, server, device_min).' },
  policyInfo: { name: 'chokepoint_policy_info', help: 'The policy in force: 1 for its digest.' },
  policyVersion: { name: 'chokepoint_policy_version', help: 'Version number of the applied policy (from the management plane).' },
  policyLoaded: { name: 'chokepoint_policy_loaded_timestamp_seconds', help: 'When the policy in force was applied (Unix time).' },
  policyRejected: { name: 'chokepoint_policy_rejections_total', help: 'Policies that failed to load (the running one stayed).' },
  alerts: { name: 'chokepoint_alerts_total', help: 'Alerts raised, by detector and severity.' },
  events: { name: 'chokepoint_events_total', help: 'Events published on the bus, by type.' },
} as const;

/** Prefix of the Node.js process metrics (CPU, memory, event loop lag, handles). */
export const PROCESS_PREFIX = 'chokepoint_';
