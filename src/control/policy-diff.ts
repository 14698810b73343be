/**
 * What a policy change would do: rules added and removed per group (by their normalized content,
 * so reordering is not a change), groups added/removed, mode changes, and which recent real
 * destinations (from stored decision events) would get a different verdict — replayed through
 * decide() of both compiled versions.
 */
import { parse as parseYaml } from 'yaml';
import { parseAuthority } from '../core/destination.js';
import type { CompiledPolicy, GroupInfo } from '../policy/index.js';

interface Doc {
  groups?: { name: string; mode?: string; allow?: unknown[]; deny?: unknown[]; sources?: unknown[] }[];
  global?: { deny?: unknown[] };
  address_exceptions?: unknown[];
}

export interface GroupDiff {
  readonly group: string;
  readonly status: 'added' | 'removed' | 'changed';
  readonly added: string[];
  readonly removed: string[];
  readonly mode?: { from: string | null; to: string | null };
}

export interface DestinationChange {
  readonly group: string | null;
  readonly host: string;
  readonly port: number;
  readonly from: { verdict: string; reason: string; rule: string | null };
  readonly to: { verdict: string; reason: string; rule: string | null };
}

/** Stable text of a rule or list item, keys sorted. */
function canon(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canon).join(',')}]`;
  if (v && typeof v === 'object') return `{${Object.keys(v).sort().map((k) => `${k}:${canon((v as Record<string, unknown>)[k])}`).join(',')}}`;
  return JSON.stringify(v);
}

function rules(g: Doc['groups'] extends (infer G)[] | undefined ? G : never): string[] {
  return [
    ...(g.allow ?? []).map((r) => `allow ${canon(r)}`),
    ...(g.deny ?? []).map((r) => `deny ${canon(r)}`),
    ...(g.sources ?? []).map((s) => `source ${canon(s)}`),
  ];
}

function minus(a: string[], b: string[]): string[] {
  const s = new Set(b);
  return a.filter((x) => !s.has(x));
}

export function ruleDiff(fromText: string, toText: string): GroupDiff[] {
  const parse = (t: string) => (parseYaml(t, { version: '1.2', schema: 'core', merge: false, maxAliasCount: 20 }) ?? {}) as Doc;
  const a = parse(fromText);
  const b = parse(toText);
  const out: GroupDiff[] = [];
  const ga = new Map((a.groups ?? []).map((g) => [g.name, g]));
  const gb = new Map((b.groups ?? []).map((g) => [g.name, g]));
  for (const [n, g] of gb) {
    const old = ga.get(n);
    if (!old) { out.push({ group: n, status: 'added', added: rules(g), removed: [] }); continue; }
    const added = minus(rules(g), rules(old));
    const removed = minus(rules(old), rules(g));
    const ma = old.mode ?? 'enforce';
    const mb = g.mode ?? 'enforce';
    if (added.length || removed.length || ma !== mb) out.push({ group: n, status: 'changed', added, removed, ...(ma !== mb ? { mode: { from: ma, to: mb } } : {}) });
  }
  for (const [n, g] of ga) if (!gb.has(n)) out.push({ group: n, status: 'removed', added: [], removed: rules(g) });
  const globalA = [...(a.global?.deny ?? []).map((r) => `deny ${canon(r)}`), ...(a.address_exceptions ?? []).map((x) => `address_exception ${canon(x)}`)];
  const globalB = [...(b.global?.deny ?? []).map((r) => `deny ${canon(r)}`), ...(b.address_exceptions ?? []).map((x) => `address_exception ${canon(x)}`)];
  const gAdded = minus(globalB, globalA);
  const gRemoved = minus(globalA, globalB);
  if (gAdded.length || gRemoved.length) out.push({ group: '(global)', status: 'changed', added: gAdded, removed: gRemoved });
  return out;
}

export interface RecentDestination {
  readonly group_name: string | null;
  readonly host: string | null;
  readonly port: number | null;
  readonly client_ip: string | null;
}

function groupIn(p: CompiledPolicy, d: RecentDestination, byName: boolean): GroupInfo | null {
  // Device traffic (mTLS) keeps its group by name; plain-listener traffic is re-mapped through
  // the version's own `sources`, since a change of sources moves clients between groups.
  if (byName || d.client_ip === null) return p.groups.find((g) => g.name === d.group_name) ?? null;
  return p.groupForSource(d.client_ip);
}

export function replayDestinations(from: CompiledPolicy, to: CompiledPolicy, recent: readonly RecentDestination[], opts: { byName?: (d: RecentDestination) => boolean } = {}): DestinationChange[] {
  const out: DestinationChange[] = [];
  for (const d of recent) {
    if (d.host === null || d.port === null) continue;
    const dest = parseAuthority(d.host.includes(':') ? `[${d.host}]:${d.port}` : `${d.host}:${d.port}`);
    if (!dest.ok) continue;
    const byName = opts.byName?.(d) ?? false;
    const decide = (p: CompiledPolicy) => {
      const g = groupIn(p, d, byName);
      if (!g) return { verdict: 'deny', reason: 'unauthenticated', rule: null };
      const r = p.decide({ group: g, dest: dest.dest, protocol: 'connect' });
      return { verdict: r.verdict, reason: r.reason, rule: r.ruleId };
    };
    const a = decide(from);
    const b = decide(to);
    if (a.verdict !== b.verdict || a.reason !== b.reason) out.push({ group: d.group_name, host: d.host, port: d.port, from: a, to: b });
  }
  return out;
}
