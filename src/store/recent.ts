/**
 * Recent gateway decisions (for the events query and for replaying real destinations in policy
 * diffs) and alerts. Decisions are a bounded recent window, not the evidence of record: the
 * event sinks are. Rows beyond `maxRows` are pruned oldest first.
 */
import type { DecisionEvent } from '../events/catalogue.js';
import type { AlertEvent } from '../events/evidence.js';
import { CompiledQuery } from 'kysely';
import { jsonOf } from '../events/json.js';
import type { Dialect } from './migrate.js';
import type { Exec } from './open.js';
import type { AlertsTable, EventsTable } from './schema.js';

const DECISION_COLUMNS = ['event_id', 'time', 'verdict', 'reason', 'group_name', 'host', 'port', 'device_id', 'client_ip', 'rule', 'body'] as const;
/**
 * Rows per INSERT. A statement has at most 32766 parameters in SQLite (SQLITE_MAX_VARIABLE_NUMBER)
 * and 65535 in PostgreSQL's protocol; an unchunked burst of a few thousand decisions used to
 * exceed that, and the whole batch was lost.
 */
const ROWS_PER_INSERT = 256;
const insertSql = new Map<string, string>();

/** The INSERT text for `rows` rows, built once per dialect and size. */
function decisionInsertSql(dialect: Dialect, rows: number): string {
  const key = `${dialect}:${rows}`;
  let text = insertSql.get(key);
  if (text === undefined) {
    const w = DECISION_COLUMNS.length;
    const tuple = (r: number) => `(${DECISION_COLUMNS.map((_, c) => (dialect === 'postgres' ? `$${r * w + c + 1}` : '?')).join(', ')})`;
    text = `insert into events (${DECISION_COLUMNS.join(', ')}) values ${Array.from({ length: rows }, (_, r) => tuple(r)).join(', ')}`;
    insertSql.set(key, text);
  }
  return text;
}

/** One decision as the values of DECISION_COLUMNS, in order. */
export function decisionRow(e: DecisionEvent): unknown[] {
  return [
    e.id, Date.parse(e.time) || Date.now(), e.verdict, e.reason, e.group, e.host, e.port,
    // The mTLS listener adds the device to decisions (issue #4); the plain listener has none.
    typeof e.device_id === 'string' ? e.device_id : null,
    e.client_ip, e.rule, jsonOf(e),
  ];
}

/** A one-row insert, for a dialect that caches prepared statements (SQLite, see open.ts). */
export const DECISION_INSERT_ONE = decisionInsertSql('sqlite', 1);

/**
 * Appends decisions to the recent window through Kysely (PostgreSQL, or SQLite while another
 * transaction holds the connection). The statement text is built once per size, not per call.
 */
export async function insertDecisions(db: Exec, dialect: Dialect, events: readonly DecisionEvent[]): Promise<void> {
  for (let i = 0; i < events.length; i += ROWS_PER_INSERT) {
    const chunk = events.slice(i, i + ROWS_PER_INSERT);
    const params: unknown[] = [];
    for (const e of chunk) params.push(...decisionRow(e));
    await db.executeQuery(CompiledQuery.raw(decisionInsertSql(dialect, chunk.length), params));
  }
}

/** Repeats of a stored decision (recorder.ts folds identical decisions into the first one's row). */
export interface DecisionFold {
  /** The stored decision's event id. */
  readonly id: string;
  readonly repeats: number;
  /** Time (ms) of the latest repeat. */
  readonly lastTime: number;
}

/** Adds repeats to a stored decision's row (none when it was pruned meanwhile). */
export const DECISION_FOLD_SQL = 'update events set repeats = repeats + ?, last_time = ? where event_id = ?';

/** Folds per UPDATE on PostgreSQL (three parameters each, well under the protocol's 65535). */
const FOLDS_PER_UPDATE = 1000;

/**
 * Counts folds on their rows through Kysely: on PostgreSQL one UPDATE … FROM (VALUES …) per
 * thousand folds (a busy gateway has thousands of distinct decisions repeating each flush, and
 * a round trip per row would take longer than the flush interval); on SQLite (only while
 * another transaction holds the connection) one statement per fold, in process.
 */
export async function foldDecisions(db: Exec, dialect: Dialect, folds: readonly DecisionFold[]): Promise<void> {
  if (dialect === 'sqlite') {
    for (const f of folds) {
      await db.updateTable('events').set((eb) => ({ repeats: eb('repeats', '+', f.repeats), last_time: f.lastTime })).where('event_id', '=', f.id).execute();
    }
    return;
  }
  for (let i = 0; i < folds.length; i += FOLDS_PER_UPDATE) {
    const chunk = folds.slice(i, i + FOLDS_PER_UPDATE);
    const params: unknown[] = [];
    const rows = chunk.map((f, k) => {
      params.push(f.id, f.repeats, f.lastTime);
      return `($${3 * k + 1}::text, $${3 * k + 2}::integer, $${3 * k + 3}::bigint)`;
    });
    await db.executeQuery(CompiledQuery.raw(
      `update events set repeats = events.repeats + v.repeats, last_time = v.last_time from (values ${rows.join(', ')}) as v(event_id, repeats, last_time) where events.event_id = v.event_id`,
      params,
    ));
  }
}

/** Rows deleted per statement when pruning: each statement holds SQLite's (synchronous) connection. */
const PRUNE_CHUNK = 1000;

/**
 * Deletes the oldest decisions so that about `maxRows` remain (sequence numbers only grow, so
 * the newest `maxRows` are those above `max(seq) - maxRows`). In chunks, yielding between them:
 * on SQLite every statement runs on the event loop, and one large DELETE stalled the proxy for
 * tens of milliseconds.
 */
export async function pruneDecisions(db: Exec, maxRows: number, pause: () => Promise<void> = yieldTurn): Promise<number> {
  // Two queries, not `SELECT min(seq), max(seq)`: SQLite answers a lone min() or max() from
  // the primary key's b-tree, but both in one statement scan the whole table (every row of
  // the window, at every prune).
  const lo = await db.selectFrom('events').select((eb) => eb.fn.min('seq').as('v')).executeTakeFirst();
  const hi = await db.selectFrom('events').select((eb) => eb.fn.max('seq').as('v')).executeTakeFirst();
  let deleted = 0;
  for (const upTo of pruneBounds(lo?.v, hi?.v, maxRows)) {
    const res = await db.deleteFrom('events').where('seq', '<=', upTo).executeTakeFirst();
    deleted += Number(res.numDeletedRows);
    await pause();
  }
  return deleted;
}

/**
 * The `seq <= x` bound of each chunked DELETE that keeps the newest `maxRows` of the rows
 * `lo..hi` (shared with the SQLite helper thread, which runs the same prune on its connection).
 */
export function pruneBounds(lo: number | string | null | undefined, hi: number | string | null | undefined, maxRows: number): number[] {
  if (lo === null || lo === undefined || hi === null || hi === undefined) return [];
  const cut = Number(hi) - maxRows;
  const bounds: number[] = [];
  for (let from = Number(lo); from <= cut; from += PRUNE_CHUNK) bounds.push(Math.min(cut, from + PRUNE_CHUNK - 1));
  return bounds;
}

/** Lets the event loop run (the proxy's sockets) between chunks of store work. */
export function yieldTurn(): Promise<void> {
  return new Promise((r) => setImmediate(r));
}

export interface DecisionQuery {
  readonly verdict?: 'allow' | 'deny';
  readonly reason?: string;
  readonly group?: string;
  readonly host?: string;
  readonly device?: string;
  readonly client?: string;
  /** Restricts to these groups (an admin's scopes); undefined = all, [] = none. */
  readonly groups?: readonly string[];
  readonly since?: number;
  readonly until?: number;
  /** Rows strictly older (lower seq) than this. */
  readonly beforeSeq?: number;
  readonly limit: number;
}

/** A stored decision: the event, and how often it repeated (folded) until `lastTime` (ms, null: never). */
export interface StoredDecision {
  readonly seq: number;
  readonly event: DecisionEvent;
  readonly repeats: number;
  readonly lastTime: number | null;
}

export async function queryDecisions(db: Exec, q: DecisionQuery): Promise<StoredDecision[]> {
  if (q.groups !== undefined && q.groups.length === 0) return [];
  let s = db.selectFrom('events').select(['seq', 'body', 'repeats', 'last_time']).orderBy('seq', 'desc').limit(q.limit);
  if (q.verdict !== undefined) s = s.where('verdict', '=', q.verdict);
  if (q.reason !== undefined) s = s.where('reason', '=', q.reason);
  if (q.group !== undefined) s = s.where('group_name', '=', q.group);
  if (q.host !== undefined) s = s.where('host', '=', q.host);
  if (q.device !== undefined) s = s.where('device_id', '=', q.device);
  if (q.client !== undefined) s = s.where('client_ip', '=', q.client);
  // In the query, not after it: filtering a page after LIMIT gave a scoped admin short or
  // empty pages while older rows of its groups existed. Rows without a group (a client no
  // group claims) belong to no scope.
  if (q.groups !== undefined) s = s.where('group_name', 'in', [...q.groups]);
  // A row stands for a run of identical decisions from `time` to `last_time`: it matches a
  // range its run overlaps, so "did this device reach that host since 10:00" finds a run that
  // began at 09:59 and repeated at 10:00:30.
  const since = q.since;
  if (since !== undefined) s = s.where((eb) => eb.or([eb('time', '>=', since), eb('last_time', '>=', since)]));
  if (q.until !== undefined) s = s.where('time', '<', q.until);
  if (q.beforeSeq !== undefined) s = s.where('seq', '<', q.beforeSeq);
  return (await s.execute()).map((r) => ({
    seq: Number(r.seq), event: JSON.parse(r.body) as DecisionEvent, repeats: Number(r.repeats), lastTime: r.last_time === null ? null : Number(r.last_time),
  }));
}

/** Distinct recent (group, host, port) triples, newest first, for replay in policy diffs; `groups` restricts them (undefined = all). */
export async function recentDestinations(db: Exec, limit: number, groups?: readonly string[]): Promise<Pick<EventsTable, 'group_name' | 'host' | 'port' | 'client_ip'>[]> {
  if (groups !== undefined && groups.length === 0) return [];
  let q = db.selectFrom('events').select(['group_name', 'host', 'port', 'client_ip', 'body'])
    .where('host', 'is not', null).where('port', 'is not', null);
  // An admin's scopes: another group's traffic is not its to see, even replayed in a diff.
  if (groups !== undefined) q = q.where('group_name', 'in', [...groups]);
  const rows = await q.orderBy('seq', 'desc').limit(limit * 10).execute();
  const seen = new Set<string>();
  const out: Pick<EventsTable, 'group_name' | 'host' | 'port' | 'client_ip'>[] = [];
  for (const r of rows) {
    const k = `${r.group_name ?? ''}\u0000${r.host}\u0000${r.port}`;
    if (seen.has(k)) continue;
    seen.add(k);
    out.push({ group_name: r.group_name, host: r.host, port: r.port === null ? null : Number(r.port), client_ip: r.client_ip });
    if (out.length >= limit) break;
  }
  return out;
}

// ---- alerts ----

export type Alert = Omit<AlertsTable, 'evidence'> & { evidence: unknown };

function toAlert(r: AlertsTable): Alert {
  return {
    ...r, evidence: JSON.parse(r.evidence) as unknown, time: Number(r.time),
    acked_at: r.acked_at === null ? null : Number(r.acked_at), resolved_at: r.resolved_at === null ? null : Number(r.resolved_at),
  };
}

export async function insertAlert(db: Exec, e: AlertEvent): Promise<void> {
  await db.insertInto('alerts').values({
    id: e.id, time: Date.parse(e.time) || Date.now(), detector: e.detector, severity: e.severity, device_id: e.device_id, group_name: e.group,
    summary: e.summary, evidence: JSON.stringify(e.evidence ?? {}), suggested_action: e.suggested_action, state: 'open',
    acked_by: null, acked_at: null, resolved_by: null, resolved_at: null,
  }).onConflict((oc) => oc.column('id').doNothing()).execute();
}

/** `groups`: restricts to alerts of these groups (an admin's scopes); undefined = all, including alerts of no group. */
export async function listAlerts(db: Exec, f: { state?: string; severity?: string; detector?: string; device?: string; group?: string; groups?: readonly string[]; after?: { time: number; id: string }; limit: number }): Promise<Alert[]> {
  if (f.groups !== undefined && f.groups.length === 0) return [];
  let q = db.selectFrom('alerts').selectAll().orderBy('time', 'desc').orderBy('id').limit(f.limit);
  if (f.state !== undefined) q = q.where('state', '=', f.state as AlertsTable['state']);
  if (f.severity !== undefined) q = q.where('severity', '=', f.severity);
  if (f.detector !== undefined) q = q.where('detector', '=', f.detector);
  if (f.device !== undefined) q = q.where('device_id', '=', f.device);
  if (f.group !== undefined) q = q.where('group_name', '=', f.group);
  if (f.groups !== undefined) q = q.where('group_name', 'in', [...f.groups]);
  // Keyset pagination in the sort order (time desc, id asc): rows sharing the last time are
  // continued by id, not skipped.
  const after = f.after;
  if (after !== undefined) q = q.where((eb) => eb.or([eb('time', '<', after.time), eb.and([eb('time', '=', after.time), eb('id', '>', after.id)])]));
  return (await q.execute()).map(toAlert);
}

export async function getAlert(db: Exec, id: string): Promise<Alert | null> {
  const r = await db.selectFrom('alerts').selectAll().where('id', '=', id).executeTakeFirst();
  return r ? toAlert(r) : null;
}

export async function setAlertState(db: Exec, id: string, state: 'acknowledged' | 'resolved', by: string, now = Date.now()): Promise<void> {
  const set = state === 'acknowledged' ? { state, acked_by: by, acked_at: now } : { state, resolved_by: by, resolved_at: now };
  await db.updateTable('alerts').set(set).where('id', '=', id).execute();
}
