/**
 * What the values of a policy document mean, checked on the raw parsed value so that it runs
 * even when the shape check (schema.ts) failed elsewhere: one pass reports every problem
 * (DESIGN §3: "every malformed input is a load error that names the path"). The pass also
 * builds the Model that compile.ts turns into a matcher; the Model is only used when neither
 * pass found a problem.
 */
import { formatPath } from '../core/errors.js';
import { cidrContains, parseCidr, type Cidr } from './cidr.js';
import { specialRowsOverlapping } from './classify.js';
import { parseHostPattern, type HostPattern } from './hostpattern.js';
import { isRecord, own, problem, type Path, type RawProblem } from './problems.js';
import type { GroupMode, TlsMode } from './types.js';

export interface RuleModel {
  /** `global.deny`, `groups.servers.allow`: with the index, the rule id (ruleId()). */
  readonly list: string;
  /** Index in the YAML list. */
  readonly index: number;
  /** Path of the list; the rule's own path is rulePath(). Kept apart to spare 100k arrays. */
  readonly listPath: Path;
  readonly host: HostPattern | null;
  readonly address: Cidr | null;
  /** null: every port (a deny rule without `ports`). */
  readonly ports: readonly number[] | null;
  /** The explicit `tls:` of an allow rule; null means the per-port default. */
  readonly tls: TlsMode | null;
}

export interface Located<T> { readonly value: T; readonly path: Path }

export interface GroupModel {
  readonly name: string;
  readonly mode: GroupMode;
  readonly path: Path;
  readonly sources: readonly Located<Cidr>[];
  readonly allow: readonly RuleModel[];
  readonly deny: readonly RuleModel[];
}

export interface Model {
  readonly exceptions: readonly Located<Cidr>[];
  readonly globalDeny: readonly RuleModel[];
  readonly groups: readonly GroupModel[];
}

export interface Analysis {
  readonly model: Model;
  readonly problems: readonly RawProblem[];
  readonly warnings: readonly RawProblem[];
}

const DEFAULT_ALLOW_PORTS: readonly number[] = Object.freeze([443]);

/** `groups.servers.allow[2]` */
export function ruleId(r: { readonly list: string; readonly index: number }): string {
  return `${r.list}[${r.index}]`;
}

export function rulePath(r: RuleModel): Path {
  return [...r.listPath, r.index];
}

export function analyze(raw: unknown): Analysis {
  const problems: RawProblem[] = [];
  const warnings: RawProblem[] = [];
  const root = isRecord(raw) ? raw : {};

  const exceptions = cidrList(own(root, 'address_exceptions'), ['address_exceptions'], problems);
  for (const e of exceptions) {
    const rows = specialRowsOverlapping(e.value);
    const meta = rows.filter((r) => r.class === 'metadata');
    if (meta.length > 0) {
      warnings.push(problem(e.path, `${e.value.text} covers cloud metadata endpoint ${meta.map((m) => m.cidr).join(', ')}: credentials on that endpoint become reachable`, 'narrow the exception'));
    }
    // An exception applies to every allowed name: any of them that resolves inside it (a DNS
    // answer the name's owner controls: rebinding) reaches those addresses. Wide ones deserve a
    // word even when no metadata endpoint is inside.
    const wide = e.value.family === 4 ? e.value.prefix < 24 : e.value.prefix < 64;
    const single = e.value.prefix === (e.value.family === 4 ? 32 : 128);
    // Loopback and IPv4-embedding prefixes (NAT64, 6to4, Teredo: they carry any IPv4 address,
    // metadata and private ones too) are wide whatever their length.
    const risky = rows.some((r) => r.class === 'loopback' || r.class === 'ipv4_embedded');
    if (wide || (risky && !single)) {
      const what = [...new Set(rows.filter((r) => r.class !== 'metadata').map((r) => r.class))].join(', ') || 'public';
      warnings.push(problem(e.path, `${e.value.text} is wide (${what} addresses): any allowed name that resolves inside it reaches them (DNS rebinding)`, 'except only the addresses the allowed names should resolve to (a /32 or /128 each)'));
    }
  }

  const g = own(root, 'global');
  const globalDeny = isRecord(g) ? ruleList(own(g, 'deny'), ['global', 'deny'], 'global.deny', false, problems) : [];

  const groups: GroupModel[] = [];
  const rawGroups = own(root, 'groups');
  const seen = new Map<string, Path>();
  if (Array.isArray(rawGroups)) {
    rawGroups.forEach((rg, i) => {
      if (!isRecord(rg)) return;
      const path: Path = ['groups', i];
      const nameV = own(rg, 'name');
      const name = typeof nameV === 'string' ? nameV : `#${i}`;
      if (typeof nameV === 'string') {
        const first = seen.get(nameV);
        if (first) problems.push(problem([...path, 'name'], `duplicate group name "${nameV}" (first defined at ${formatPath(first)})`, 'give each group a unique name'));
        else seen.set(nameV, [...path, 'name']);
      }
      const modeV = own(rg, 'mode');
      const allowV = own(rg, 'allow');
      const group: GroupModel = {
        name,
        mode: modeV === 'report' ? 'report' : 'enforce',
        path,
        sources: cidrList(own(rg, 'sources'), [...path, 'sources'], problems),
        allow: ruleList(allowV, [...path, 'allow'], `groups.${name}.allow`, true, problems),
        deny: ruleList(own(rg, 'deny'), [...path, 'deny'], `groups.${name}.deny`, false, problems),
      };
      groups.push(group);
      if (allowV === undefined || (Array.isArray(allowV) && allowV.length === 0)) {
        warnings.push(problem(allowV === undefined ? path : [...path, 'allow'], `group "${name}" has no allow rules: every destination is denied for it`));
      }
      for (const r of group.allow) addressWarning(r, exceptions, warnings);
    });
  }
  overlappingSources(groups, problems);
  return { model: { exceptions, globalDeny, groups }, problems, warnings };
}

function cidrList(v: unknown, path: Path, problems: RawProblem[]): Located<Cidr>[] {
  const out: Located<Cidr>[] = [];
  if (!Array.isArray(v)) return out;
  v.forEach((s, i) => {
    if (typeof s !== 'string') return;
    const c = parseCidr(s);
    if (c.ok) out.push({ value: c.cidr, path: [...path, i] });
    else problems.push(problem([...path, i], c.message, c.fix));
  });
  return out;
}

function ruleList(v: unknown, listPath: Path, list: string, isAllow: boolean, problems: RawProblem[]): RuleModel[] {
  const out: RuleModel[] = [];
  if (!Array.isArray(v)) return out;
  for (let i = 0; i < v.length; i++) {
    const r = rule(v[i], listPath, list, i, isAllow, problems);
    if (r) out.push(r);
  }
  return out;
}

function rule(entry: unknown, listPath: Path, list: string, index: number, isAllow: boolean, problems: RawProblem[]): RuleModel | null {
  const at = (...rest: (string | number)[]): Path => [...listPath, index, ...rest];
  const defaultPorts = isAllow ? DEFAULT_ALLOW_PORTS : null;
  if (typeof entry === 'string') {
    const p = parseHostPattern(entry);
    if (!p.ok) { problems.push(problem(at(), p.message, p.fix)); return null; }
    return { list, index, listPath, host: p.pattern, address: null, ports: defaultPorts, tls: null };
  }
  if (!isRecord(entry)) return null;
  const host = own(entry, 'host');
  const address = own(entry, 'address');
  let ok = true;
  if (host === undefined && address === undefined) {
    problems.push(problem(at(), 'a rule needs "host" or "address"', 'add host: "api.example.com" (or address: "192.0.2.10/32")'));
    ok = false;
  } else if (host !== undefined && address !== undefined) {
    problems.push(problem(at(), 'a rule names either "host" or "address", not both', 'split it into two rules'));
    ok = false;
  }
  let pattern: HostPattern | null = null;
  let cidr: Cidr | null = null;
  if (typeof host === 'string') {
    const p = parseHostPattern(host);
    if (p.ok) pattern = p.pattern; else { problems.push(problem(at('host'), p.message, p.fix)); ok = false; }
  } else if (host !== undefined) ok = false;
  if (typeof address === 'string') {
    const c = parseCidr(address);
    if (c.ok) cidr = c.cidr; else { problems.push(problem(at('address'), c.message, c.fix)); ok = false; }
  } else if (address !== undefined) ok = false;
  let ports = defaultPorts;
  const portsV = own(entry, 'ports');
  if (Array.isArray(portsV)) {
    const seen = new Set<unknown>();
    portsV.forEach((p, j) => {
      if (seen.has(p)) { problems.push(problem(at('ports', j), `duplicate port ${String(p)}`, 'list each port once')); ok = false; }
      seen.add(p);
    });
    if (portsV.every((p) => Number.isInteger(p) && p >= 1 && p <= 65535) && portsV.length > 0) ports = Object.freeze([...portsV as number[]].sort((a, b) => a - b));
    else ok = false;
  } else if (portsV !== undefined) ok = false;
  const tlsV = own(entry, 'tls');
  const tls: TlsMode | null = tlsV === 'required' || tlsV === 'optional' || tlsV === 'none' ? tlsV : null;
  if (!ok) return null;
  return { list, index, listPath, host: pattern, address: cidr, ports, tls };
}

/** An allow rule for an address that checkAddress will refuse anyway: say so now. */
function addressWarning(r: RuleModel, exceptions: readonly Located<Cidr>[], warnings: RawProblem[]): void {
  if (r.address === null) return;
  const a = r.address;
  if (exceptions.some((e) => cidrContains(e.value, a))) return;
  const special = specialRowsOverlapping(a);
  if (special.length === 0) return;
  const what = special.slice(0, 3).map((s) => `${s.class} ${s.cidr}`).join(', ');
  warnings.push(problem([...rulePath(r), 'address'],
    `${a.text} lies in a special range (${what}${special.length > 3 ? ', …' : ''}): the gateway refuses it at connect time unless address_exceptions covers it`,
    `add "${a.text}" to address_exceptions if this destination is intended`));
}

/**
 * Sources of different groups must not overlap at all: a client address has to map to exactly
 * one group, or which rules apply would depend on lookup order. CIDRs either nest or are
 * disjoint, so after sorting by (network, prefix) a stack of open blocks finds every
 * containing block in O(n log n).
 */
function overlappingSources(groups: readonly GroupModel[], problems: RawProblem[]): void {
  interface Src { c: Cidr; path: Path; g: number }
  const all: Src[] = [];
  groups.forEach((g, gi) => { for (const s of g.sources) all.push({ c: s.value, path: s.path, g: gi }); });
  all.sort((x, y) => x.c.family - y.c.family || compareWords(x.c.words, y.c.words) || x.c.prefix - y.c.prefix);
  const stack: Src[] = [];
  const reported = new Set<Src>();
  for (const s of all) {
    while (stack.length > 0 && !cidrContains((stack[stack.length - 1] as Src).c, s.c)) stack.pop();
    for (const o of stack) {
      if (o.g === s.g) continue;
      const [first, second] = o.g < s.g ? [o, s] : [s, o];
      if (reported.has(second)) continue;
      reported.add(second);
      problems.push(problem(second.path,
        `${second.c.text} overlaps ${first.c.text} at ${formatPath(first.path)} (group "${groups[first.g]?.name}"): a client address must belong to exactly one group`,
        'make the sources of different groups disjoint'));
    }
    stack.push(s);
  }
}

function compareWords(a: readonly number[], b: readonly number[]): number {
  for (let i = 0; i < a.length; i++) { const d = (a[i] as number) - (b[i] as number); if (d !== 0) return d; }
  return 0;
}
