/**
 * One JSON Schema per event type, so a SIEM can validate and map what the sinks send
 * (DESIGN §5). Written once here as zod schemas; `z.toJSONSchema` renders them to
 * docs/schemas/<type>.json (`node dist/src/events/schemas.js --write`). The compile-time
 * checks at the bottom fail the build when a schema and its TypeScript interface drift
 * apart, and test/sinks-schemas.test.ts validates events the real gateway emits.
 */
import { writeFileSync, mkdirSync } from 'node:fs';
import { z } from 'zod';
import { REASON_CODES, type Reason } from '../core/reasons.js';
import type { EventType, ChokepointEvent, LifecycleEvent } from './catalogue.js';

const nstr = z.string().nullable();
const nint = z.number().int().nullable();
const count = z.number().int().min(0);
const base = <T extends string>(type: T) => ({
  v: z.literal(1).describe('Schema version.'),
  type: z.literal(type),
  time: z.iso.datetime({ offset: false }).describe('ISO 8601 UTC with milliseconds.'),
});

const connection = {
  id: z.string().min(1),
  listener: z.string(),
  client_ip: z.string(),
  client_port: z.number().int().min(0).max(65535),
  group: nstr,
  device_id: nstr,
  asset_id: nstr,
  serial: nstr,
  method: nstr,
  host: nstr,
  port: z.number().int().min(0).max(65535).nullable(),
  address: nstr,
};

const reason = z.enum(REASON_CODES as [Reason, ...Reason[]]);
const closeReasons = ['client_closed', 'upstream_closed', 'completed', 'idle_timeout', 'lifetime_exceeded', 'client_error', 'upstream_error', 'shutdown', 'policy_revoked', 'device_revoked', 'refused'] as const;
const lifecycle = <T extends LifecycleEvent['type']>(t: T) => z.strictObject({ ...base(t), listeners: z.array(z.string()).readonly(), version: z.string() });
const refused = <T extends 'identity.enrollment.refused' | 'identity.renewal.refused'>(t: T) =>
  z.strictObject({ ...base(t), code: z.string(), token_id: nstr, device_id: nstr, serial: nstr, client_ip: nstr });
const enrollmentState = <T extends 'identity.enrollment.pending' | 'identity.enrollment.approved' | 'identity.enrollment.denied'>(t: T) =>
  z.strictObject({ ...base(t), request_id: z.string(), device_id: z.string(), group: z.string(), spki_sha256: z.string(), decided_by: nstr });

export const EVENT_SCHEMAS = {
  'gateway.decision': z.strictObject({
    ...base('gateway.decision'), ...connection,
    verdict: z.enum(['allow', 'deny']), reason, rule: nstr, mode: z.enum(['enforce', 'report']).nullable(),
    sni: nstr, tls_version: nstr, address_class: nstr, detail: nstr, status: nint,
  }),
  'gateway.tunnel.closed': z.strictObject({
    ...base('gateway.tunnel.closed'), ...connection,
    protocol: z.enum(['connect', 'http']), bytes_up: count, bytes_down: count, duration_ms: count,
    close_reason: z.enum(closeReasons), status: nint,
  }),
  'gateway.tunnel.progress': z.strictObject({
    ...base('gateway.tunnel.progress'), ...connection,
    protocol: z.literal('connect'), bytes_up: count, bytes_down: count, duration_ms: count,
  }),
  'gateway.policy.loaded': z.strictObject({ ...base('gateway.policy.loaded'), source: z.string(), digest: z.string(), groups: count, warnings: z.array(z.string()).readonly() }),
  'gateway.policy.rejected': z.strictObject({ ...base('gateway.policy.rejected'), source: z.string(), running_digest: nstr, problems: z.array(z.string()).readonly() }),
  'gateway.started': lifecycle('gateway.started'),
  'gateway.stopping': lifecycle('gateway.stopping'),
  'gateway.stopped': lifecycle('gateway.stopped'),
  'gateway.tls.handshake_failed': z.strictObject({
    ...base('gateway.tls.handshake_failed'), listener: z.string(), client_ip: z.string(), client_port: z.number().int().min(0).max(65535), error: z.string(),
  }),
  'audit.entry': z.strictObject({
    ...base('audit.entry'), seq: count, actor: z.string(), role: z.string(), action: z.string(), target: nstr,
    result: z.enum(['ok', 'denied', 'error']), source_ip: nstr, token_id: nstr, hash: z.string(),
  }),
  'identity.device.enrolled': z.strictObject({ ...base('identity.device.enrolled'), device_id: z.string(), group: z.string(), asset_id: nstr, serial: nstr }),
  'identity.token.consumed': z.strictObject({ ...base('identity.token.consumed'), token_id: z.string(), device_id: z.string(), group: z.string(), asset_id: nstr, uses_left: count, client_ip: nstr }),
  'identity.enrollment.refused': refused('identity.enrollment.refused'),
  'identity.renewal.refused': refused('identity.renewal.refused'),
  'identity.enrollment.pending': enrollmentState('identity.enrollment.pending'),
  'identity.enrollment.approved': enrollmentState('identity.enrollment.approved'),
  'identity.enrollment.denied': enrollmentState('identity.enrollment.denied'),
  'identity.certificate.issued': z.strictObject({
    ...base('identity.certificate.issued'), kind: z.enum(['enroll', 'renew']), device_id: z.string(), group: z.string(), asset_id: nstr,
    serial: z.string(), ca_id: z.string(), spki_sha256: z.string(), not_before: z.string(), not_after: z.string(),
  }),
  'identity.certificate.renewed': z.strictObject({ ...base('identity.certificate.renewed'), device_id: z.string(), old_serial: z.string(), new_serial: z.string(), in_grace: z.boolean() }),
  'identity.certificate.superseded': z.strictObject({ ...base('identity.certificate.superseded'), device_id: z.string(), serial: z.string(), superseded: z.array(z.string()).readonly() }),
  'identity.device.revoked': z.strictObject({ ...base('identity.device.revoked'), device_id: z.string(), serial: nstr, state: z.enum(['revoked', 'disabled', 'active', 'pending']) }),
  'identity.crl.published': z.strictObject({
    ...base('identity.crl.published'), ca_id: z.string(), number: z.string(), entries: count, this_update: z.string(), next_update: z.string(), bytes: count,
  }),
  alert: z.strictObject({
    ...base('alert'), id: z.string().min(1), detector: z.string().min(1), severity: z.enum(['low', 'medium', 'high', 'critical']),
    device_id: nstr, group: nstr, summary: z.string(), evidence: z.record(z.string(), z.unknown()).readonly(), suggested_action: z.string(),
  }),
  'sink.dropped': z.strictObject({ ...base('sink.dropped'), sink: z.string(), dropped: z.number().int().min(1), reason: z.enum(['buffer_full', 'queue_full', 'unwritable', 'thread_failed', 'rejected']) }),
  'sink.backlog': z.strictObject({ ...base('sink.backlog'), sink: z.string(), pending_events: count, pending_bytes: count, error: z.string() }),
  'sink.recovered': z.strictObject({ ...base('sink.recovered'), sink: z.string(), down_ms: count, pending_events: count }),
} satisfies Partial<Record<EventType, z.ZodType>>;

export type SchemaEventType = keyof typeof EVENT_SCHEMAS;

/** The JSON Schema (draft 2020-12) of one event type, with its id and version. */
export function jsonSchemaOf(type: SchemaEventType): Record<string, unknown> {
  const js = z.toJSONSchema(EVENT_SCHEMAS[type], { target: 'draft-2020-12' }) as Record<string, unknown>;
  return { ...js, $id: `urn:chokepoint:event:${type}:v1`, title: type };
}

/** Validates one event (or anything) against the schema of its `type`; problems as strings. */
export function validateEvent(e: unknown): string[] {
  const type = (e as { type?: unknown } | null)?.type;
  if (typeof type !== 'string' || !(type in EVENT_SCHEMAS)) return [`unknown event type ${JSON.stringify(type)}`];
  const r = EVENT_SCHEMAS[type as SchemaEventType].safeParse(e);
  return r.success ? [] : r.error.issues.map((i) => `${i.path.join('.') || '(event)'}: ${i.message}`);
}

export function writeSchemas(dir: string): void {
  mkdirSync(dir, { recursive: true });
  for (const t of Object.keys(EVENT_SCHEMAS) as SchemaEventType[]) writeFileSync(`${dir}/${t}.json`, `${JSON.stringify(jsonSchemaOf(t), null, 2)}\n`);
}

// ---- compile-time agreement between each schema and its interface (both directions) ----
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
type Out<T extends SchemaEventType> = z.output<(typeof EVENT_SCHEMAS)[T]>;
type EventOf<K extends string> = ChokepointEvent extends infer E ? (E extends { type: infer T } ? (K extends T ? Omit<E, 'type'> & { readonly type: K } : never) : never) : never;
type Assert<T extends true> = T;
/** Fails to compile when any schema's output differs from its interface, either way. */
export type SchemasAgree = Assert<{ [K in SchemaEventType]: Same<Out<K>, EventOf<K>> }[SchemaEventType]>;

if (process.argv[1] && import.meta.url === `file://${process.argv[1]}` && process.argv.includes('--write')) {
  const dir = new URL('../../../docs/schemas', import.meta.url).pathname;
  writeSchemas(dir);
  process.stdout.write(`wrote ${Object.keys(EVENT_SCHEMAS).length} schemas to ${dir}\n`);
}
