/**
 * compile(): the validated Model (analyze.ts) → the immutable CompiledPolicy the gateway
 * holds (DESIGN §6.4). Everything reachable from the returned object is frozen; the tries
 * live in closures and cannot be reached from outside.
 */
import { createHash } from 'node:crypto';
import type { Problem } from '../core/errors.js';
import { formatPath } from '../core/errors.js';
import { analyze, ruleId, rulePath, type Model, type RuleModel } from './analyze.js';
import { CidrTrie, formatIp, parseIp, type Cidr, type Ip } from './cidr.js';
import { classifyIp } from './classify.js';
import { decide, type CGroup, type CRule, type Engine } from './engine.js';
import { HostTrie } from './hosttrie.js';
import { zodProblems, type RawProblem } from './problems.js';
import { PolicyFileSchema, type PolicyDocument } from './schema.js';
import type { AddressClass, AddressVerdict, CompiledPolicy, Decision, DecideInput, GroupInfo } from './types.js';

export type LoadResult =
  | { readonly ok: true; readonly policy: CompiledPolicy; readonly warnings: Problem[] }
  | { readonly ok: false; readonly problems: Problem[]; readonly warnings: Problem[] };

/** Turns a raw problem into a Problem; load.ts adds the line and column. */
export type Placer = (p: RawProblem) => Problem;

export const plainPlacer: Placer = (p) => ({ path: formatPath(p.path), message: p.message, ...(p.fix !== undefined ? { fix: p.fix } : {}) });

/** Past this many, one more problem says how many were left out (a broken 100k-rule file). */
export const MAX_PROBLEMS = 200;

/** Placed problems in source order (stable; unplaced ones keep their order at the end). */
function capped(list: readonly RawProblem[], place: Placer, kind: string): Problem[] {
  const placed = list.map(place).sort((a, b) => (a.line ?? Infinity) - (b.line ?? Infinity) || (a.column ?? 0) - (b.column ?? 0));
  const out = placed.slice(0, MAX_PROBLEMS);
  if (list.length > MAX_PROBLEMS) out.push({ path: '', message: `… and ${list.length - MAX_PROBLEMS} more ${kind} not shown` });
  return out;
}

/** Shape check, meaning check and compile of a parsed document; never throws. */
export function validateAndCompile(raw: unknown, digest: string, place: Placer): LoadResult {
  const shape = PolicyFileSchema.safeParse(raw);
  const problems: RawProblem[] = shape.success ? [] : zodProblems(raw, shape.error.issues);
  const a = analyze(raw);
  problems.push(...a.problems);
  if (problems.length > 0) return { ok: false, problems: capped(problems, place, 'problems'), warnings: capped(a.warnings, place, 'warnings') };
  const c = compileModel(a.model, digest);
  return { ok: true, policy: c.policy, warnings: capped([...a.warnings, ...c.warnings], place, 'warnings') };
}

/**
 * Validates and compiles a policy given as a value (the same model as the YAML file, e.g.
 * from the control plane). The digest is the sha256 of its JSON text. Never throws.
 */
export function compilePolicy(doc: PolicyDocument): LoadResult {
  try {
    const digest = createHash('sha256').update(JSON.stringify(doc) ?? '').digest('hex');
    return validateAndCompile(doc, digest, plainPlacer);
  } catch (e) {
    return { ok: false, problems: [{ path: '', message: `the policy value cannot be read: ${(e as Error)?.message ?? String(e)}` }], warnings: [] };
  }
}

export function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

function crule(r: RuleModel, deny: boolean): CRule {
  return { list: r.list, index: r.index, deny, ports: r.ports, tls: r.tls, prefix: r.address?.prefix ?? 0, cache: null };
}

interface Built {
  readonly hosts: HostTrie<CRule>;
  readonly addresses: CidrTrie<CRule>;
  /** Allow rules with their model, in document order (for shadowing warnings). */
  readonly allow: readonly (readonly [CRule, RuleModel])[];
  readonly denies: number;
}

function build(allow: readonly RuleModel[], deny: readonly RuleModel[]): Built {
  const hosts = new HostTrie<CRule>();
  const addresses = new CidrTrie<CRule>();
  const add = (r: RuleModel, isDeny: boolean): CRule => {
    const c = crule(r, isDeny);
    if (r.host !== null) hosts.insert(r.host, c);
    else if (r.address !== null) addresses.insert(r.address, c);
    return c;
  };
  for (const r of deny) add(r, true);
  return { hosts, addresses, allow: allow.map((r) => [add(r, false), r] as const), denies: deny.length };
}

/**
 * The model each compiled policy was built from: plain data, so another data-plane thread can
 * be sent it and compile the same matcher (a compiled policy holds closures and cannot cross).
 */
const models = new WeakMap<CompiledPolicy, { readonly model: Model; readonly digest: string }>();

export function sourceOf(p: CompiledPolicy): { readonly model: Model; readonly digest: string } | null {
  return models.get(p) ?? null;
}

export function compileModel(model: Model, digest: string): { policy: CompiledPolicy; warnings: RawProblem[] } {
  const global = build([], model.globalDeny);
  const groups = new Map<string, CGroup>();
  const infos: GroupInfo[] = [];
  const sources = new CidrTrie<GroupInfo>();
  const warnings: RawProblem[] = [];
  for (const g of model.groups) {
    const info: GroupInfo = Object.freeze({ name: g.name, mode: g.mode });
    infos.push(info);
    for (const s of g.sources) sources.insert(s.value, info);
    const b = build(g.allow, g.deny);
    groups.set(g.name, { hosts: b.hosts, addresses: b.addresses });
    shadowWarnings(b, global, warnings);
  }
  const engine: Engine = { globalHosts: global.hosts, globalAddresses: global.addresses, groups };
  const exceptions = new CidrTrie<Cidr>();
  for (const e of model.exceptions) exceptions.insert(e.value, e.value);

  const policy = Object.freeze(new Compiled(digest, Object.freeze(infos), engine, sources, exceptions));
  models.set(policy, { model, digest });
  return { policy, warnings };
}

/** An allow rule that a deny rule (global or of its group) fully covers can never allow. */
function shadowWarnings(b: Built, global: Built, out: RawProblem[]): void {
  if (b.denies === 0 && global.denies === 0) return;
  for (const [c, m] of b.allow) {
    const ports = c.ports ?? [];
    const covers = (d: CRule): boolean => d.deny && (d.ports === null || ports.every((p) => d.ports?.includes(p)));
    let by: CRule | undefined;
    if (m.host !== null) {
      by = (global.denies > 0 ? global.hosts.findCovering(m.host, covers) : undefined)
        ?? (b.denies > 0 ? b.hosts.findCovering(m.host, covers) : undefined);
    } else if (m.address !== null) {
      const a = m.address;
      const net: Ip = { family: a.family, words: a.words };
      const within = (d: CRule): boolean => d.prefix <= a.prefix && covers(d);
      by = global.addresses.matches(net).find(within) ?? b.addresses.matches(net).find(within);
    }
    if (by !== undefined) {
      const what = m.host?.text ?? m.address?.text ?? '';
      out.push({ path: rulePath(m), message: `${ruleId(m)} (${what}) is shadowed by deny rule ${ruleId(by)}: it can never allow anything`, fix: 'remove one of the two rules' });
    }
  }
}

const PUBLIC: AddressVerdict = Object.freeze({ allowed: true, class: 'public' });
const DENIED = new Map<AddressClass, AddressVerdict>();
function denied(c: AddressClass): AddressVerdict {
  let v = DENIED.get(c);
  if (v === undefined) { v = Object.freeze({ allowed: false, class: c }); DENIED.set(c, v); }
  return v;
}

/** Canonical forms of a `self` set, remembered per set (the gateway swaps in a new set). */
const selfKeys = new WeakMap<ReadonlySet<string>, { size: number; keys: Set<string> }>();
function isSelf(ip: string, p: Ip, self: ReadonlySet<string>): boolean {
  if (self.has(ip)) return true;
  let k = selfKeys.get(self);
  if (k === undefined || k.size !== self.size) {
    const keys = new Set<string>();
    for (const s of self) { const q = typeof s === 'string' ? parseIp(s.split('%')[0] as string) : null; if (q) keys.add(formatIp(q)); }
    k = { size: self.size, keys };
    selfKeys.set(self, k);
  }
  return k.keys.has(formatIp(p));
}

/**
 * A compiled policy. A class rather than an object of closures: every policy (each reload, the
 * start-up warm-up's own) then has the same methods, so the optimized code that calls them
 * stays valid when one policy replaces another instead of being thrown away (V8 deoptimizes a
 * call site specialized to one closure when it meets another).
 */
class Compiled implements CompiledPolicy {
  readonly version = 1 as const;
  readonly #engine: Engine;
  readonly #sources: CidrTrie<GroupInfo>;
  readonly #exceptions: CidrTrie<Cidr>;
  /** Verdicts for excepted addresses, one frozen object per class and exception. */
  readonly #excepted = new Map<string, AddressVerdict>();

  constructor(readonly digest: string, readonly groups: readonly GroupInfo[], engine: Engine, sources: CidrTrie<GroupInfo>, exceptions: CidrTrie<Cidr>) {
    this.#engine = engine;
    this.#sources = sources;
    this.#exceptions = exceptions;
  }

  groupForSource(ip: string): GroupInfo | null {
    const p = typeof ip === 'string' ? parseIp(ip) : null;
    return p === null ? null : (this.#sources.longest(p) ?? null);
  }

  decide(input: DecideInput): Decision {
    return decide(this.#engine, input);
  }

  checkAddress(ip: string, self?: ReadonlySet<string>): AddressVerdict {
    const p = typeof ip === 'string' ? parseIp(ip) : null;
    if (p === null) return denied('reserved'); // not an address: fail closed
    const cls: AddressClass = self !== undefined && self !== null && self.size > 0 && isSelf(ip, p, self) ? 'self' : classifyIp(p);
    if (cls === 'public') return PUBLIC;
    const ex = this.#exceptions.size > 0 ? this.#exceptions.longest(p) : undefined;
    if (ex === undefined) return denied(cls);
    const key = `${cls} ${ex.text}`;
    let v = this.#excepted.get(key);
    if (v === undefined) { v = Object.freeze({ allowed: true, class: cls, exception: ex.text }); this.#excepted.set(key, v); }
    return v;
  }
}
// Nobody swaps a method of every policy at once either.
for (const m of ['groupForSource', 'decide', 'checkAddress'] as const) Object.freeze(Compiled.prototype[m]);
Object.freeze(Compiled.prototype);
Object.freeze(Compiled);
