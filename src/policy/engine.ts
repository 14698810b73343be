/**
 * decide(): the hot path. Pure, synchronous, allocation-light: decisions are frozen values
 * made once per rule and reused, and matching walks tries (hosttrie.ts, cidr.ts), never the
 * rule list.
 *
 * Precedence (DESIGN §3, §2 step 3): global deny, then the group's deny, then the group's
 * allow; otherwise `no_rule_matched`. Names are matched only by host rules and IP literals
 * only by address rules: a name is never compared with an address rule (no reverse DNS),
 * and an IP literal never matches a name pattern.
 */
import type { Destination } from '../core/destination.js';
import type { Reason } from '../core/reasons.js';
import { ruleId } from './analyze.js';
import { CidrTrie, parseIp } from './cidr.js';
import { HostTrie } from './hosttrie.js';
import type { Decision, DecideInput, TlsMode } from './types.js';

export interface CRule {
  /** `groups.servers.allow`: the id is `${list}[${index}]`, built only when a decision needs it. */
  readonly list: string;
  /** Index in its YAML list: ties are broken by document order. */
  readonly index: number;
  readonly deny: boolean;
  /** Sorted; null means every port (deny rules without `ports`). */
  readonly ports: readonly number[] | null;
  readonly tls: TlsMode | null;
  /** Prefix length of an address rule (its specificity); 0 for host rules. */
  readonly prefix: number;
  /** Frozen decisions made on first use; reused so decide() does not allocate. */
  cache: Decision[] | null;
}

export interface CGroup {
  readonly hosts: HostTrie<CRule>;
  readonly addresses: CidrTrie<CRule>;
}

export interface Engine {
  readonly globalHosts: HostTrie<CRule>;
  readonly globalAddresses: CidrTrie<CRule>;
  readonly groups: ReadonlyMap<string, CGroup>;
}

function decision(verdict: 'allow' | 'deny', reason: Reason, ruleId: string | null, tls: TlsMode): Decision {
  return Object.freeze({ verdict, reason, ruleId, tls });
}

const NO_RULE = decision('deny', 'no_rule_matched', null, 'none');
const IP_LITERAL = decision('deny', 'ip_literal_denied', null, 'none');
const INTERNAL = decision('deny', 'internal_error', null, 'none');

// Slots of CRule.cache.
const DENIED = 0, PORT = 1, NOT_TLS = 2, ALLOW_REQUIRED = 3, ALLOW_OPTIONAL = 4, ALLOW_NONE = 5;

function cached(r: CRule, slot: number): Decision {
  const c = (r.cache ??= []);
  let d = c[slot];
  if (d === undefined) {
    const id = ruleId(r);
    switch (slot) {
      case DENIED: d = decision('deny', 'denied_by_rule', id, 'none'); break;
      case PORT: d = decision('deny', 'port_not_allowed', id, 'none'); break;
      case NOT_TLS: d = decision('deny', 'not_tls', id, 'none'); break;
      case ALLOW_REQUIRED: d = decision('allow', 'allowed', id, 'required'); break;
      case ALLOW_OPTIONAL: d = decision('allow', 'allowed', id, 'optional'); break;
      default: d = decision('allow', 'allowed', id, 'none');
    }
    c[slot] = d;
  }
  return d;
}

/** The TLS mode of a rule at a port: its `tls:` or, without one, required on 443 only. */
export function tlsAt(r: { readonly tls: TlsMode | null }, port: number): TlsMode {
  return r.tls ?? (port === 443 ? 'required' : 'none');
}

function hasPort(r: CRule, port: number): boolean {
  return r.ports === null || r.ports.includes(port);
}

// Reused match buffers: decide() is synchronous, so one set per module is enough. `count`
// says how much of them is valid; they are overwritten, never truncated.
const hits: CRule[] = [];
const scores: number[] = [];
let count = 0;

/** The matching deny rule that comes first in the document, or null. */
function firstDeny(port: number): CRule | null {
  let best: CRule | null = null;
  for (let i = 0; i < count; i++) {
    const r = hits[i] as CRule;
    if (r.deny && hasPort(r, port) && (best === null || r.index < best.index)) best = r;
  }
  return best;
}

function collect(hosts: HostTrie<CRule> | undefined, addresses: CidrTrie<CRule> | undefined, dest: Destination): boolean {
  count = 0;
  if (dest.kind === 'name') {
    if (hosts !== undefined) count = hosts.match(dest.host, hits, scores, 0);
    return true;
  }
  const ip = parseIp(dest.host);
  if (ip === null) return false;
  if (addresses !== undefined && addresses.size > 0) {
    // For addresses the specificity is the prefix length: the longest block wins.
    for (const r of addresses.matches(ip)) { hits[count] = r; scores[count++] = r.prefix; }
  }
  return true;
}

export function decide(e: Engine, input: DecideInput): Decision {
  try {
    const dest = input.dest;
    const port = dest.port;
    const isName = dest.kind === 'name';
    if (!collect(e.globalHosts, e.globalAddresses, dest)) return IP_LITERAL;
    const gd = firstDeny(port);
    if (gd !== null) return cached(gd, DENIED);

    const g = e.groups.get(input.group.name);
    if (g === undefined) return isName ? NO_RULE : IP_LITERAL;
    collect(g.hosts, g.addresses, dest);
    const d = firstDeny(port);
    if (d !== null) return cached(d, DENIED);

    let best: CRule | null = null;
    let bestScore = -1;
    let firstHost: CRule | null = null;
    for (let i = 0; i < count; i++) {
      const r = hits[i] as CRule;
      if (r.deny) continue;
      if (firstHost === null || r.index < firstHost.index) firstHost = r;
      if (!hasPort(r, port)) continue;
      const s = scores[i] as number;
      if (s > bestScore || (s === bestScore && best !== null && r.index < best.index)) { best = r; bestScore = s; }
    }
    if (best === null) {
      if (firstHost !== null) return cached(firstHost, PORT);
      return isName ? NO_RULE : IP_LITERAL;
    }
    const tls = tlsAt(best, port);
    // An absolute-form request is plain text by definition: a rule that requires TLS at this
    // port refuses it here, before anything is dialed (DESIGN §2 step 5). Any protocol value
    // other than `connect` counts as plain text (fail closed).
    if (input.protocol !== 'connect' && tls === 'required') return cached(best, NOT_TLS);
    return cached(best, tls === 'required' ? ALLOW_REQUIRED : tls === 'optional' ? ALLOW_OPTIONAL : ALLOW_NONE);
  } catch {
    return INTERNAL; // fail closed (DESIGN §6.2)
  }
}
