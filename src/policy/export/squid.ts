/**
 * The policy as Squid ACLs, for sites that keep a Squid in front of some hosts. Each line is
 * written to decide exactly as the gateway does, or is left out with a comment saying why.
 *
 * Host patterns, carefully: Squid's `dstdomain .example.com` matches the apex `example.com`
 * as well, while Chokepoint's `**.example.com` does not (DESIGN §3). So `**.` becomes the
 * dotted domain *minus* the apex, and `*.` (exactly one label) becomes an anchored regex.
 * Every name ACL carries `-n`: without it, Squid reverse-resolves an IP-literal request to
 * match it against names, i.e. authorizes by PTR records an attacker may control.
 *
 * Squid's http_access is first match, so lines follow the gateway's precedence: global deny,
 * group deny, then group allows from the most specific pattern down (the most specific rule
 * decides the TLS requirement), then `deny all`.
 */
import { ChokepointError } from '../../core/errors.js';
import type { GroupModel, RuleModel } from '../analyze.js';
import type { ExportInput } from './inputs.js';
import { selectGroups } from './inputs.js';

function escapeRegex(s: string): string {
  return s.replace(/[.\\^$|?*+()[\]{}]/g, '\\$&');
}

const KIND_RANK = { exact: 0, one: 1, any: 2 } as const;

/** Engine order for allows: exact, then `*.`, then `**.`, longer base first, then file order. */
function bySpecificity(a: RuleModel, b: RuleModel): number {
  if (a.host !== null && b.host !== null) {
    return KIND_RANK[a.host.kind] - KIND_RANK[b.host.kind] || b.host.base.length - a.host.base.length || a.index - b.index;
  }
  if (a.address !== null && b.address !== null) return b.address.prefix - a.address.prefix || a.index - b.index;
  return a.host !== null ? -1 : 1;
}

class Writer {
  readonly lines: string[] = [];
  acl(name: string, type: string, values: string): string {
    this.lines.push(`acl ${name} ${type} ${values}`);
    return name;
  }
  /** ACL conditions that match a rule's destination (host or address). */
  target(name: string, r: RuleModel): string[] {
    if (r.host !== null) {
      const h = r.host;
      if (h.kind === 'exact') return [this.acl(name, 'dstdomain -n', h.base)];
      if (h.kind === 'one') return [this.acl(name, 'dstdom_regex -n', `^[^.]+\\.${escapeRegex(h.base)}$`)];
      const d = this.acl(name, 'dstdomain -n', `.${h.base}`);
      const apex = this.acl(`${name}_apex`, 'dstdomain -n', h.base);
      return [d, `!${apex}`];
    }
    // `dst -n` matches only IP-literal requests: Chokepoint's address rules never match a name
    // that happens to resolve into the range.
    if (r.address !== null) return [this.acl(name, 'dst -n', r.address.text)];
    throw new Error('rule without host or address');
  }
  ports(name: string, ports: readonly number[] | null): string[] {
    return ports === null ? [] : [this.acl(name, 'port', ports.join(' '))];
  }
  comment(s: string): void { this.lines.push(`# ${s}`); }
  access(verb: 'allow' | 'deny', conds: readonly string[]): void { this.lines.push(`http_access ${verb} ${conds.join(' ')}`); }
  blank(): void { this.lines.push(''); }
}

function ruleLabel(r: RuleModel): string {
  const what = r.host?.text ?? r.address?.text ?? '?';
  return `${r.list}[${r.index}]: ${what}${r.ports === null ? '' : ` ports ${r.ports.join(',')}`}`;
}

function aclBase(r: RuleModel): string {
  // Group names may be "global": prefix them so their ACLs never collide with global.deny's.
  return `cp_${r.list.replace(/^groups\./, 'g_').replace(/\./g, '_')}_${r.index}`;
}

/** The TLS mode per port of an allow rule (no `tls:` → required on 443, none elsewhere). */
function requiredPorts(r: RuleModel): { required: number[]; other: number[] } {
  const ports = r.ports ?? [443];
  if (r.tls !== null) return r.tls === 'required' ? { required: [...ports], other: [] } : { required: [], other: [...ports] };
  return { required: ports.filter((p) => p === 443), other: ports.filter((p) => p !== 443) };
}

function writeGroup(w: Writer, g: GroupModel, dedicated: boolean): void {
  w.blank();
  w.comment(`---- group ${g.name} (${g.mode}) ----`);
  const who: string[] = [];
  if (g.sources.length > 0) who.push(w.acl(`cp_g_${g.name}_src`, 'src', g.sources.map((s) => s.value.text).join(' ')));
  else if (dedicated) w.comment('this group has no sources (device certificates only): its rules apply to every client of this Squid');
  for (const r of g.deny) {
    w.comment(ruleLabel(r));
    const base = aclBase(r);
    w.access('deny', [...who, ...w.target(base, r), ...w.ports(`${base}_ports`, r.ports)]);
  }
  for (const r of [...g.allow].sort(bySpecificity)) {
    w.comment(ruleLabel(r));
    const base = aclBase(r);
    const t = w.target(base, r);
    const { required, other } = requiredPorts(r);
    if (required.length > 0) {
      const p = w.ports(`${base}_tls_ports`, required);
      // tls: required refuses plain-text absolute-form requests (not_tls); only CONNECT passes.
      // The ClientHello checks (SNI equals the host, minimum version, no ECH) need ssl_bump
      // peek and are NOT reproduced here: Squid relays whatever the client sends.
      w.access('allow', [...who, ...t, ...p, 'cp_connect']);
      w.access('deny', [...who, ...t, ...p]);
    }
    if (other.length > 0) w.access('allow', [...who, ...t, ...w.ports(`${base}_ports`, other)]);
  }
}

export function exportSquid(input: ExportInput): string {
  const groups = selectGroups(input);
  const dedicated = input.group !== null;
  const report = groups.filter((g) => g.mode === 'report');
  if (report.length > 0) {
    throw new ChokepointError('EXPORT_INVALID', `group(s) ${report.map((g) => g.name).join(', ')} in report mode: Squid has no log-only equivalent (the gateway lets those requests through and records the would-be deny); export with --group naming an enforce group, or switch the group to enforce`);
  }
  const w = new Writer();
  w.comment('Chokepoint policy as Squid ACLs (generated by `chokepoint policy export --format squid`).');
  w.comment(`policy sha256 ${input.digest}; group(s): ${groups.map((g) => g.name).join(', ')}`);
  w.comment('Include this before any other http_access line: Squid stops at the first match.');
  w.comment('Not reproduced (the gateway does these, Squid does not):');
  w.comment('  - ClientHello checks on tls: required rules (SNI = host, tls.min_version, ECH);');
  w.comment('  - refusing names that resolve to private, loopback, link-local, metadata and other special');
  w.comment(`    addresses${input.model.exceptions.length > 0 ? ` (address_exceptions: ${input.model.exceptions.map((e) => e.value.text).join(', ')})` : ''};`);
  w.comment('  - report mode, per-device identity, byte accounting and events.');
  w.blank();
  w.acl('cp_connect', 'method', 'CONNECT');
  // The gateway treats `a.example.` as `a.example`; Squid compares the name as sent, so a
  // trailing dot could dodge a deny rule. Refusing such names is stricter, never looser.
  w.comment('names with a trailing dot are refused (the gateway would judge them without the dot)');
  w.acl('cp_trailing_dot', 'dstdom_regex -n', '\\.$');
  w.access('deny', ['cp_trailing_dot']);
  if (input.model.globalDeny.length > 0) {
    w.blank();
    w.comment('---- global deny ----');
    for (const r of input.model.globalDeny) {
      w.comment(ruleLabel(r));
      const base = aclBase(r);
      w.access('deny', [...w.target(base, r), ...w.ports(`${base}_ports`, r.ports)]);
    }
  }
  for (const g of groups) {
    if (!dedicated && g.sources.length === 0) {
      w.blank();
      w.comment(`group ${g.name} has no sources (device certificates only): not exported; use --group ${g.name} for a Squid dedicated to it`);
      continue;
    }
    writeGroup(w, g, dedicated);
  }
  w.blank();
  w.comment('default deny (no_rule_matched, port_not_allowed)');
  w.access('deny', ['all']);
  return `${w.lines.join('\n')}\n`;
}
