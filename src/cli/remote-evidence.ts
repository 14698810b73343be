/** `chokepoint token|audit|alert|events …` (control API client). */
import type { Command } from 'commander';
import { parseDuration } from '../config/duration.js';
import { OVERFLOW_DETAIL } from '../control/recorder.js';
import { verifyChain, type ChainedEntry } from '../store/audit-chain.js';
import { action, ApiClient, CliError, out, remote, table, when, type RemoteFlags } from './client.js';

const enc = encodeURIComponent;

/** `--since 2h` (that long ago) or an ISO time, as the API's milliseconds. */
function instant(flag: string, v: string, now = Date.now()): number {
  const ago = parseDuration(v);
  if (ago !== null) return now - ago;
  const t = /^\d{4}-\d{2}-\d{2}T/.test(v) ? Date.parse(v) : Number.NaN;
  if (Number.isNaN(t)) throw new CliError('USAGE', `${flag} must be a duration ago (15m, 2h, 1d) or an ISO time (2026-11-30T10:00:00Z), not ${JSON.stringify(v)}`, 2);
  return t;
}

type EventsFlags = RemoteFlags & { verdict?: string; reason?: string; group?: string; host?: string; device?: string; client?: string; since?: string; until?: string; limit: string };

export function registerEvidenceCommands(program: Command): void {
  const token = program.command('token').description('device enrollment tokens (control API client)');
  remote(token.command('create').description('create an enrollment token; prints it once')
    .requiredOption('--group <group>', 'the group enrolled devices join').option('--asset <id>', 'bind to one asset id')
    .option('--ttl <duration>', 'lifetime', '10m').option('--uses <n>', 'how many enrollments', '1'))
    .action(action(async (f: RemoteFlags & { group: string; asset?: string; ttl: string; uses: string }) => {
      const uses = Number(f.uses);
      if (!Number.isInteger(uses)) throw new CliError('USAGE', '--uses must be an integer', 2);
      const r = await new ApiClient(f).call('POST', '/api/v1/enrollment-tokens', { group: f.group, ttl: f.ttl, uses, ...(f.asset ? { asset_id: f.asset } : {}) });
      out(f, r, () => `enrollment token ${r.id} for group ${r.group_name} (${r.uses_total} use${r.uses_total === 1 ? '' : 's'}, expires ${when(r.expires_at)})\ntoken (shown once): ${r.token}`);
    }));
  remote(token.command('list').description('list enrollment tokens (never the secrets)'))
    .action(action(async (f: RemoteFlags) => {
      const r = await new ApiClient(f).call('GET', '/api/v1/enrollment-tokens');
      out(f, r, () => table(r.items.map((t: Record<string, number>) => ({ ...t, expires: when(t.expires_at), revoked: when(t.revoked_at) })), ['id', 'group_name', 'asset_id', 'uses_left', 'expires', 'revoked', 'created_by']));
    }));
  remote(token.command('revoke <id>').description('revoke an enrollment token'))
    .action(action(async (id: string, f: RemoteFlags) => {
      const r = await new ApiClient(f).call('DELETE', `/api/v1/enrollment-tokens/${enc(id)}`);
      out(f, r, () => `revoked enrollment token ${id}`);
    }));

  const audit = program.command('audit').description('the hash-chained audit log (control API client)');
  remote(audit.command('list').description('audit entries, oldest first').option('--limit <n>', 'how many', '100').option('--after <seq>', 'entries after this sequence number').option('--actor <name>').option('--action <action>').option('--by-token <id>', 'entries made with this API token id (see admin tokens)'))
    .action(action(async (f: RemoteFlags & { limit: string; after?: string; actor?: string; action?: string; byToken?: string }) => {
      const q = new URLSearchParams({ limit: f.limit });
      if (f.after) q.set('after', f.after);
      if (f.actor) q.set('actor', f.actor);
      if (f.action) q.set('action', f.action);
      if (f.byToken) q.set('token', f.byToken);
      const r = await new ApiClient(f).call('GET', `/api/v1/audit?${q}`);
      out(f, r, () => table(r.items.map((e: Record<string, number>) => ({ ...e, time: when(e.time) })), ['seq', 'time', 'actor', 'token_id', 'role', 'action', 'target', 'result', 'source_ip', 'detail']));
    }));
  remote(audit.command('verify').description('fetch the whole audit log and recompute its hash chain here; exit 1 at the first broken link'))
    .action(action(async (f: RemoteFlags) => {
      const c = new ApiClient(f);
      const rows: ChainedEntry[] = [];
      let after = 0;
      for (;;) {
        const r = await c.call<{ items: ChainedEntry[]; next: number | null }>('GET', `/api/v1/audit?limit=5000&after=${after}`);
        rows.push(...r.items);
        if (r.next === null) break;
        after = r.next;
      }
      const v = verifyChain(rows);
      if (!v.ok) {
        out(f, v, () => `audit chain BROKEN at entry ${v.seq}: ${v.problem} (${v.entries} entries before it verify)`);
        throw new CliError('AUDIT_CHAIN_BROKEN', `the audit log hash chain is broken at entry ${v.seq}`);
      }
      out(f, v, () => `audit chain ok: ${v.entries} entries, head ${v.head}`);
    }));

  remote(program.command('events').description('recent decisions from the store, newest first; identical decisions within recent_decisions.fold are one row with their count (REPEATS) and the latest time (LAST)')
    .option('--verdict <v>', 'allow | deny').option('--reason <code>', 'a reason code (docs/reasons.md)').option('--group <g>')
    .option('--host <name>', 'the destination host').option('--device <id>').option('--client <ip>', 'the client address')
    .option('--since <when>', 'a duration ago (15m, 2h, 1d) or an ISO time').option('--until <when>', 'likewise').option('--limit <n>', 'how many', '50'))
    .action(action(async (f: EventsFlags) => {
      const q = new URLSearchParams({ limit: f.limit });
      for (const k of ['verdict', 'reason', 'group', 'host', 'device', 'client'] as const) if (f[k]) q.set(k, f[k] as string);
      if (f.since) q.set('since', String(instant('--since', f.since)));
      if (f.until) q.set('until', String(instant('--until', f.until)));
      const r = await new ApiClient(f).call('GET', `/api/v1/events?${q}`);
      out(f, r, () => table(r.items.map(eventRow), ['time', 'last', 'repeats', 'verdict', 'reason', 'group', 'who', 'destination', 'rule']));
    }));

  const alert = program.command('alert').description('anomaly alerts (control API client)');
  remote(alert.command('list').description('alerts, newest first').option('--state <state>', 'open | acknowledged | resolved').option('--severity <s>').option('--device <id>').option('--group <g>').option('--limit <n>', 'how many', '100'))
    .action(action(async (f: RemoteFlags & { state?: string; severity?: string; device?: string; group?: string; limit: string }) => {
      const q = new URLSearchParams({ limit: f.limit });
      for (const k of ['state', 'severity', 'device', 'group'] as const) if (f[k]) q.set(k, f[k] as string);
      const r = await new ApiClient(f).call('GET', `/api/v1/alerts?${q}`);
      out(f, r, () => table(r.items.map((a: Record<string, number>) => ({ ...a, time: when(a.time) })), ['id', 'time', 'severity', 'state', 'detector', 'group_name', 'device_id', 'summary']));
    }));
  for (const [verb, path] of [['ack', 'ack'], ['resolve', 'resolve']] as const) {
    remote(alert.command(`${verb} <id>`).description(`${verb === 'ack' ? 'acknowledge' : 'resolve'} an alert`))
      .action(action(async (id: string, f: RemoteFlags) => {
        const r = await new ApiClient(f).call('POST', `/api/v1/alerts/${enc(id)}/${path}`, {});
        out(f, r, () => `alert ${r.id}: ${r.state}`);
      }));
  }
}

/**
 * One row of `chokepoint events`' table. A decision refused before its target was known (a
 * malformed request, a header timeout) has no destination: `-`. A client's decisions past its
 * row budget are counted on one row with no destination either: it says so, because `?:?`
 * read as a bug and hid that the row stands for many destinations (`--json` has the detail).
 */
export function eventRow(e: Record<string, unknown>): Record<string, unknown> {
  const overflow = typeof e.detail === 'string' && e.detail.startsWith(OVERFLOW_DETAIL);
  const destination = overflow ? '(over row budget: many)'
    : e.host === null || e.host === undefined ? '-'
    : e.port === null || e.port === undefined ? String(e.host) : `${String(e.host)}:${String(e.port)}`;
  return {
    time: when(Date.parse(String(e.time))), last: e.last_time === null || e.last_time === undefined ? null : when(Date.parse(String(e.last_time))), repeats: e.repeats,
    verdict: e.verdict, reason: e.reason, group: e.group, who: e.device_id ?? e.client_ip, destination, rule: e.rule,
  };
}
