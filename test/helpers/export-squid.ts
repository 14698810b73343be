/**
 * A small interpreter of the Squid ACL subset the exporter emits (acl types src, dst -n,
 * dstdomain -n, dstdom_regex -n, port, method; http_access first match), written from
 * Squid's documented semantics, so the exported ACLs can be compared with decide().
 */
import { isIP } from 'node:net';
import { normalizeHost, type Destination } from '../../src/core/destination.js';
import { parseCidr, parseIp } from '../../src/policy/cidr.js';

interface Acl { readonly type: string; readonly values: string[] }
interface Access { readonly verb: 'allow' | 'deny'; readonly conds: { name: string; neg: boolean }[] }
export interface SquidConf { readonly acls: Map<string, Acl[]>; readonly access: Access[] }

export function parseSquid(text: string): SquidConf {
  const acls = new Map<string, Acl[]>();
  const access: Access[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const w = line.split(/\s+/);
    if (w[0] === 'acl') {
      const [, name, type, ...rest] = w as [string, string, string, ...string[]];
      const flags = rest.filter((x) => x === '-n');
      if (type !== 'method' && type !== 'port' && type !== 'src' && flags.length !== 1) throw new Error(`acl ${name}: expected -n (no lookups): ${line}`);
      const list = acls.get(name) ?? [];
      list.push({ type, values: rest.filter((x) => x !== '-n') });
      acls.set(name, list);
    } else if (w[0] === 'http_access') {
      const verb = w[1];
      if (verb !== 'allow' && verb !== 'deny') throw new Error(`bad verb: ${line}`);
      access.push({ verb, conds: w.slice(2).map((c) => ({ name: c.replace(/^!/, ''), neg: c.startsWith('!') })) });
    } else throw new Error(`unexpected line: ${line}`);
  }
  return { acls, access };
}

function inCidr(ip: string, cidr: string): boolean {
  const p = parseIp(ip);
  const c = parseCidr(cidr);
  if (p === null || !c.ok || p.family !== c.cidr.family) return false;
  const bits = p.family === 4 ? 32 : 128;
  let pv = 0n; let cv = 0n;
  for (const x of p.words) pv = (pv << 32n) | BigInt(x >>> 0);
  for (const x of c.cidr.words) cv = (cv << 32n) | BigInt(x >>> 0);
  const shift = BigInt(bits - c.cidr.prefix);
  return (pv >> shift) === (cv >> shift);
}

export interface SquidRequest { readonly src: string; readonly host: string; readonly port: number; readonly method: string }

function matchAcl(a: Acl, r: SquidRequest): boolean {
  const host = r.host.toLowerCase();
  switch (a.type) {
    case 'src': return a.values.some((v) => inCidr(r.src, v));
    case 'port': return a.values.some((v) => Number(v) === r.port);
    case 'method': return a.values.includes(r.method);
    // -n: an IP-literal request never matches a name, and a name never matches an address.
    case 'dst': return isIP(host) !== 0 && a.values.some((v) => inCidr(host, v));
    case 'dstdomain': return a.values.some((v) => (v.startsWith('.') ? host === v.slice(1) || host.endsWith(v) : host === v));
    case 'dstdom_regex': return a.values.some((v) => new RegExp(v).test(host));
    default: throw new Error(`acl type ${a.type} not modelled`);
  }
}

export function squidDecide(conf: SquidConf, r: SquidRequest): 'allow' | 'deny' {
  for (const line of conf.access) {
    const ok = line.conds.every((c) => {
      if (c.name === 'all') return !c.neg;
      const defs = conf.acls.get(c.name);
      if (defs === undefined) throw new Error(`undefined acl ${c.name}`);
      const m = defs.some((d) => matchAcl(d, r));
      return c.neg ? !m : m;
    });
    if (ok) return line.verb;
  }
  return 'deny';
}

export function parseDestination(host: string, port: number): Destination {
  const n = normalizeHost(host);
  if (!n.ok) throw new Error(n.error);
  return { host: n.host, port, kind: n.kind };
}
