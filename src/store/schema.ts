/**
 * Table types of the store (kysely). Times are epoch milliseconds (numbers in both dialects;
 * PostgreSQL `bigint` is parsed back to a number), ids are random UUIDs (text), JSON values are
 * stored as text. The identity tables (devices … cas) follow the shared contract in
 * /tmp/briefs/tables.md; identity code reads and writes them through `store.db`.
 */
import type { Generated } from 'kysely';

export interface AdminsTable {
  id: string;
  name: string;
  role: 'viewer' | 'operator' | 'security-admin';
  /** JSON text array of device group names; `null` means all groups. */
  scopes: string | null;
  disabled_at: number | null;
  created_by: string;
  created_at: number;
}

export interface ApiTokensTable {
  id: string;
  admin_id: string;
  /** sha256 hex of the whole `cpa_…` string; the token itself is never stored. */
  token_hash: string;
  label: string | null;
  expires_at: number;
  revoked_at: number | null;
  last_used_at: number | null;
  created_at: number;
}

export interface AuditLogTable {
  seq: number;
  time: number;
  actor_id: string | null;
  actor: string;
  role: string;
  action: string;
  target: string | null;
  result: 'ok' | 'denied' | 'error';
  source_ip: string | null;
  /** JSON text (or null): short summaries, never secrets. */
  before: string | null;
  after: string | null;
  detail: string | null;
  /** The API token the actor used (null for system actors and entries before migration 0004). */
  token_id: string | null;
  prev_hash: string;
  hash: string;
}

/** One row (id = 1): the head of the audit chain, row-locked by each append. */
export interface AuditHeadTable {
  id: number;
  seq: number;
  hash: string;
}

export interface PolicyVersionsTable {
  version: number;
  text: string;
  digest: string;
  author: string;
  author_id: string | null;
  reason: string;
  created_at: number;
  /** First time this version became the applied one (or pilot), or null: rollback targets only these. */
  applied_at: number | null;
}

export interface PolicyApprovalsTable {
  version: number;
  approver_id: string;
  approver: string;
  created_at: number;
}

/** One row (id = 1): what is applied; `generation` is the compare-and-set token of every apply. */
export interface PolicyStateTable {
  id: number;
  applied_version: number | null;
  pilot_version: number | null;
  pilot_group: string | null;
  generation: number;
  updated_at: number;
}

export interface EventsTable {
  seq: Generated<number>;
  event_id: string;
  time: number;
  verdict: string;
  reason: string;
  group_name: string | null;
  host: string | null;
  port: number | null;
  device_id: string | null;
  client_ip: string | null;
  rule: string | null;
  /** The whole event as JSON text. */
  body: string;
  /** Identical decisions folded into this one after it (see recorder.ts). */
  repeats: Generated<number>;
  /** Time (ms) of the latest of those, null when there were none. */
  last_time: number | null;
}

export interface AlertsTable {
  id: string;
  time: number;
  detector: string;
  severity: string;
  device_id: string | null;
  group_name: string | null;
  summary: string;
  evidence: string;
  suggested_action: string;
  state: 'open' | 'acknowledged' | 'resolved';
  acked_by: string | null;
  acked_at: number | null;
  resolved_by: string | null;
  resolved_at: number | null;
}

export interface DevicesTable {
  id: string;
  group_name: string;
  asset_id: string | null;
  /** JSON text array. */
  tags: string;
  state: 'pending' | 'active' | 'disabled' | 'revoked';
  created_at: number;
  updated_at: number;
  last_seen_at: number | null;
}

export interface CertificatesTable {
  serial: string;
  device_id: string;
  ca_id: string;
  spki_sha256: string;
  not_before: number;
  not_after: number;
  issued_at: number;
  first_used_at: number | null;
  revoked_at: number | null;
  revocation_reason: string | null;
  pem: string;
}

export interface EnrollmentTokensTable {
  id: string;
  token_hash: string;
  group_name: string;
  asset_id: string | null;
  uses_total: number;
  uses_left: number;
  expires_at: number;
  revoked_at: number | null;
  created_by: string;
  created_at: number;
}

export interface EnrollmentRequestsTable {
  id: string;
  device_id: string;
  token_id: string;
  spki_sha256: string;
  csr_der: string;
  state: 'pending' | 'approved' | 'denied' | 'issued';
  decided_by: string | null;
  decided_at: number | null;
  created_at: number;
}

export interface CasTable {
  id: string;
  cert_pem: string;
  state: 'active' | 'next' | 'retired';
  not_after: number;
  created_at: number;
}

export interface SchemaMigrationsTable {
  id: string;
  applied_at: number;
}

export interface DB {
  schema_migrations: SchemaMigrationsTable;
  admins: AdminsTable;
  api_tokens: ApiTokensTable;
  audit_log: AuditLogTable;
  audit_head: AuditHeadTable;
  policy_versions: PolicyVersionsTable;
  policy_approvals: PolicyApprovalsTable;
  policy_state: PolicyStateTable;
  events: EventsTable;
  alerts: AlertsTable;
  devices: DevicesTable;
  certificates: CertificatesTable;
  enrollment_tokens: EnrollmentTokensTable;
  enrollment_requests: EnrollmentRequestsTable;
  cas: CasTable;
}
