/**
 * The decision steps shared by CONNECT and absolute-form requests (DESIGN §2 steps 1, 3, 4):
 * who is asking, what the policy says, and — only for an allowed name — where it resolves
 * and whether each address may be dialed. Deny is the starting value: a missing policy, a
 * missing group or any exception denies (DESIGN §6.2).
 */
import type { Destination } from '../core/destination.js';
import type { DenyReason } from '../core/reasons.js';
import type { CompiledPolicy, GroupInfo, Protocol, TlsMode } from '../policy/types.js';
import type { Attempt } from './attempt.js';
import type { Resolution, Resolver } from './resolver.js';

export type Admission =
  | { readonly ok: true; readonly addresses: readonly string[]; readonly tls: TlsMode; readonly report: boolean }
  | { readonly ok: false; readonly reason: DenyReason };

/** Read live (the Gateway itself): `policy` is read again after the resolver's await. */
export interface AdmissionContext {
  readonly policy: CompiledPolicy | null;
  readonly resolver: Resolver;
  readonly self: ReadonlySet<string>;
}

/**
 * Steps 1 and 3, the synchronous part: fills the attempt's group, mode, rule and reason and
 * returns the deny, or the TLS requirement to apply. A would-be deny in report mode still
 * has its ClientHello inspected and recorded when there is one (`optional`), but nothing
 * is enforced.
 */
export function decide(ctx: AdmissionContext, a: Attempt, dest: Destination, protocol: Protocol): { deny: DenyReason } | { tls: TlsMode } {
  const policy = ctx.policy;
  if (policy === null) return { deny: 'no_policy' };
  let group;
  if (a.deviceGroup !== null) {
    // A device's group comes from the store via its certificate, never from its address.
    group = groupByName(policy, a.deviceGroup);
    if (group === null) return { deny: 'group_not_in_policy' };
  } else {
    group = policy.groupForSource(a.clientIp);
    if (group === null) return { deny: 'unauthenticated' };
  }
  a.group = group.name;
  a.mode = group.mode;
  const d = policy.decide({ group, dest, protocol });
  a.rule = d.ruleId;
  a.reason = d.reason;
  if (d.verdict === 'allow') return { tls: d.tls };
  if (group.mode === 'enforce') return { deny: d.reason as DenyReason };
  return { tls: 'optional' };
}

/**
 * Steps 1–4. On success the attempt's reason is `allowed` (or, in report mode, the would-be
 * deny reason) and the returned addresses are exactly those that passed the address checks.
 */
export async function admit(ctx: AdmissionContext, a: Attempt, dest: Destination, protocol: Protocol): Promise<Admission> {
  const d = decide(ctx, a, dest, protocol);
  if ('deny' in d) {
    // An IP literal refused as such is still classified for the evidence: a raw 169.254.169.254
    // reads `address_class: metadata`, which detectors and investigators key on.
    if (d.deny === 'ip_literal_denied' && dest.kind !== 'name' && ctx.policy !== null) a.addressClass = ctx.policy.checkAddress(dest.host, ctx.self).class;
    return { ok: false, reason: d.deny };
  }
  let policy = ctx.policy as CompiledPolicy;
  let report = a.mode === 'report';
  let tls = d.tls;

  let candidates: readonly string[];
  if (dest.kind === 'name') {
    const res: Resolution = ctx.resolver.cached(dest.host) ?? (await ctx.resolver.resolve(dest.host));
    if (!res.ok) {
      a.detail = res.detail;
      return { ok: false, reason: 'dns_failure' };
    }
    candidates = res.addresses;
  } else {
    candidates = [dest.host];
  }
  if (ctx.policy !== policy) {
    // The policy changed while the resolver answered (a slow or timing-out resolver makes that
    // seconds): decide again, as for a request arriving now. Otherwise a change reported as
    // loaded, say one removing a host being exfiltrated to, would still let through every
    // request that was waiting for DNS, up to dns.timeout after the change.
    const again = decide(ctx, a, dest, protocol);
    if ('deny' in again) return { ok: false, reason: again.deny };
    policy = ctx.policy as CompiledPolicy;
    report = a.mode === 'report';
    tls = again.tls;
  }
  // Check every address with that policy. Addresses are never authorized by their reverse DNS.
  const allowed: string[] = [];
  let firstClass: string | null = null;
  let firstDenied: string | null = null;
  for (const ip of candidates) {
    const v = policy.checkAddress(ip, ctx.self);
    if (v.allowed) allowed.push(ip);
    else if (firstClass === null) {
      firstClass = v.class;
      firstDenied = ip;
    }
  }
  if (allowed.length === 0) {
    a.addressClass = firstClass;
    a.address = firstDenied;
    return { ok: false, reason: 'address_denied' };
  }
  return { ok: true, addresses: allowed, tls, report };
}

const byName = new WeakMap<CompiledPolicy, ReadonlyMap<string, GroupInfo>>();

/** The policy's group of that name, indexed once per policy snapshot. */
function groupByName(policy: CompiledPolicy, name: string): GroupInfo | null {
  let m = byName.get(policy);
  if (m === undefined) {
    m = new Map(policy.groups.map((g) => [g.name, g]));
    byName.set(policy, m);
  }
  return m.get(name) ?? null;
}
