/**
 * Address classification (DESIGN §2 step 4). Every address a name resolves to, and every
 * IP-literal destination, is classified before the gateway dials it: a public name that
 * resolves to 127.0.0.1, 169.254.169.254 or 10.0.0.5 is the classic SSRF / DNS-rebinding
 * path into the gateway's own network (OWASP SSRF; CWE-918).
 *
 * The table is ours, written from the IANA IPv4 and IPv6 Special-Purpose Address
 * Registries (RFC 6890, updated by RFC 8190) and the IANA IPv6 Address Space registry.
 * ipaddr.js's `range()` is used by the tests only to cross-check it: its names are coarser
 * (it has no metadata class, counts documentation ranges as `reserved`, and treats
 * `::/96`, unallocated IPv6 space and the 2001::/23 service blocks differently).
 *
 * Lookup is longest-prefix match, so a narrower row wins over a wider one: metadata
 * 169.254.169.254/32 over link-local 169.254/16, Teredo 2001::/32 over 2001::/23.
 */
import { CidrTrie, parseCidr, parseIp, type Cidr, type Ip } from './cidr.js';
import type { AddressClass } from './types.js';

export interface ClassRow {
  readonly cidr: string;
  readonly class: AddressClass;
  readonly ref: string;
}

export const CLASS_TABLE: readonly ClassRow[] = Object.freeze([
  // ---- IPv4 (IANA IPv4 Special-Purpose Address Registry) ----------------------------------
  { cidr: '0.0.0.0/8', class: 'unspecified', ref: 'RFC 791 §3.2 "this network"; 0.0.0.0/32 RFC 1122 §3.2.1.3. Linux dials 0.0.0.0 as localhost.' },
  { cidr: '10.0.0.0/8', class: 'private', ref: 'RFC 1918' },
  { cidr: '100.64.0.0/10', class: 'cgnat', ref: 'RFC 6598 shared address space' },
  { cidr: '100.100.100.200/32', class: 'metadata', ref: 'Alibaba Cloud ECS instance metadata (inside 100.64/10)' },
  { cidr: '127.0.0.0/8', class: 'loopback', ref: 'RFC 1122 §3.2.1.3' },
  { cidr: '169.254.0.0/16', class: 'link_local', ref: 'RFC 3927' },
  { cidr: '169.254.169.254/32', class: 'metadata', ref: 'AWS / GCP / Azure / OCI / DigitalOcean instance metadata (IMDS)' },
  { cidr: '169.254.170.2/32', class: 'metadata', ref: 'AWS ECS task metadata and credentials endpoint' },
  { cidr: '169.254.170.23/32', class: 'metadata', ref: 'AWS EKS Pod Identity Agent' },
  { cidr: '172.16.0.0/12', class: 'private', ref: 'RFC 1918' },
  // Whole /24 kept reserved, including the globally reachable anycast 192.0.0.9 (RFC 7723)
  // and 192.0.0.10 (RFC 8155): nothing an agent legitimately names.
  { cidr: '192.0.0.0/24', class: 'reserved', ref: 'RFC 6890 §2.1 IETF protocol assignments (DS-Lite RFC 7335, NAT64 discovery RFC 7050...)' },
  { cidr: '192.0.2.0/24', class: 'documentation', ref: 'RFC 5737 TEST-NET-1' },
  { cidr: '192.88.99.0/24', class: 'reserved', ref: 'RFC 7526 deprecated 6to4 relay anycast' },
  { cidr: '192.168.0.0/16', class: 'private', ref: 'RFC 1918' },
  { cidr: '198.18.0.0/15', class: 'reserved', ref: 'RFC 2544 benchmarking' },
  { cidr: '198.51.100.0/24', class: 'documentation', ref: 'RFC 5737 TEST-NET-2' },
  { cidr: '203.0.113.0/24', class: 'documentation', ref: 'RFC 5737 TEST-NET-3' },
  { cidr: '224.0.0.0/4', class: 'multicast', ref: 'RFC 5771' },
  { cidr: '240.0.0.0/4', class: 'reserved', ref: 'RFC 1112 §4 reserved for future use' },
  { cidr: '255.255.255.255/32', class: 'broadcast', ref: 'RFC 919 §7, RFC 8190 limited broadcast' },
  // Globally reachable special-purpose IPv4 blocks left public on purpose: 192.31.196.0/24 and
  // 192.175.48.0/24 (AS112, RFC 7535 / RFC 7534), 192.52.193.0/24 (AMT, RFC 7450).

  // ---- IPv6 (IANA IPv6 Address Space and Special-Purpose Address registries) --------------
  // Only 2000::/3 is allocated for global unicast (RFC 4291 §2.4); everything else that is not
  // named below is "Reserved by IETF" and never a legitimate destination.
  { cidr: '::/0', class: 'reserved', ref: 'IANA IPv6 Address Space: outside 2000::/3 is reserved (RFC 4291 §2.4)' },
  { cidr: '2000::/3', class: 'public', ref: 'IANA IPv6 Address Space: global unicast' },
  { cidr: '::/128', class: 'unspecified', ref: 'RFC 4291 §2.5.2' },
  { cidr: '::1/128', class: 'loopback', ref: 'RFC 4291 §2.5.3' },
  { cidr: '::/96', class: 'ipv4_embedded', ref: 'RFC 4291 §2.5.5.1 IPv4-compatible (deprecated)' },
  // ::ffff:0:0/96 (IPv4-mapped, RFC 4291 §2.5.5.2) never reaches the table: parseIp turns it into IPv4.
  { cidr: '::ffff:0:0:0/96', class: 'ipv4_embedded', ref: 'RFC 2765 §2.1 / RFC 6145 IPv4-translated (SIIT)' },
  { cidr: '64:ff9b::/96', class: 'ipv4_embedded', ref: 'RFC 6052 §2.1 NAT64 well-known prefix' },
  { cidr: '64:ff9b:1::/48', class: 'ipv4_embedded', ref: 'RFC 8215 local-use IPv4/IPv6 translation' },
  { cidr: '100::/64', class: 'reserved', ref: 'RFC 6666 discard-only' },
  // 2001::/23: IETF protocol assignments (RFC 2928). Reserved, except the globally reachable
  // service blocks below, which stay public, and Teredo, which embeds an IPv4 address.
  { cidr: '2001::/23', class: 'reserved', ref: 'RFC 2928 IETF protocol assignments' },
  { cidr: '2001::/32', class: 'ipv4_embedded', ref: 'RFC 4380 Teredo (embeds the client IPv4 address)' },
  { cidr: '2001:1::1/128', class: 'public', ref: 'RFC 7723 PCP anycast (globally reachable)' },
  { cidr: '2001:1::2/128', class: 'public', ref: 'RFC 8155 TURN anycast (globally reachable)' },
  { cidr: '2001:1::3/128', class: 'public', ref: 'RFC 9665 DNS-SD SRP anycast (globally reachable)' },
  { cidr: '2001:2::/48', class: 'reserved', ref: 'RFC 5180 benchmarking' },
  { cidr: '2001:3::/32', class: 'public', ref: 'RFC 7450 AMT (globally reachable)' },
  { cidr: '2001:4:112::/48', class: 'public', ref: 'RFC 7535 AS112-v6 (globally reachable)' },
  // ORCHID (RFC 4843, deprecated), ORCHIDv2 (RFC 7343) and DETs (RFC 9374) are identifiers
  // that are "not routable at the IP layer" (RFC 7343 §1): kept reserved by the /23 row.
  { cidr: '2001:db8::/32', class: 'documentation', ref: 'RFC 3849' },
  { cidr: '2002::/16', class: 'ipv4_embedded', ref: 'RFC 3056 6to4 (embeds an IPv4 address)' },
  { cidr: '3fff::/20', class: 'documentation', ref: 'RFC 9637' },
  { cidr: '5f00::/16', class: 'reserved', ref: 'RFC 9602 SRv6 SIDs' },
  { cidr: 'fc00::/7', class: 'unique_local', ref: 'RFC 4193' },
  { cidr: 'fd00:ec2::254/128', class: 'metadata', ref: 'AWS IMDS over IPv6 (inside fc00::/7)' },
  { cidr: 'fd00:ec2::23/128', class: 'metadata', ref: 'AWS EKS Pod Identity Agent over IPv6' },
  { cidr: 'fe80::/10', class: 'link_local', ref: 'RFC 4291 §2.5.6' },
  { cidr: 'fec0::/10', class: 'reserved', ref: 'RFC 3879 deprecated site-local' },
  { cidr: 'ff00::/8', class: 'multicast', ref: 'RFC 4291 §2.7' },
] satisfies ClassRow[]);

interface Row { readonly cidr: Cidr; readonly class: AddressClass }

function buildTable(): CidrTrie<Row> {
  const t = new CidrTrie<Row>();
  for (const r of CLASS_TABLE) {
    const c = parseCidr(r.cidr);
    if (!c.ok) throw new Error(`classification table: bad row ${r.cidr}: ${c.message}`);
    t.insert(c.cidr, { cidr: c.cidr, class: r.class });
  }
  return t;
}

const TABLE = buildTable();

/** Class of a parsed address: longest matching row; IPv4 not in the table is public. */
export function classifyIp(ip: Ip): AddressClass {
  return TABLE.longest(ip)?.class ?? 'public';
}

/**
 * Classifies one address. Input that is not a strict IPv4 or IPv6 literal is `reserved`:
 * never `public`, so a caller that forgets to validate still fails closed (DESIGN §6.2).
 */
export function classifyAddress(ip: string): AddressClass {
  const p = parseIp(ip);
  return p === null ? 'reserved' : classifyIp(p);
}

/** Every non-public row that overlaps `c` (for the load-time warning about address rules). */
export function specialRowsOverlapping(c: Cidr): readonly { cidr: string; class: AddressClass }[] {
  const out: { cidr: string; class: AddressClass }[] = [];
  const outer = TABLE.longest(c);
  if (outer !== undefined && outer.class !== 'public') out.push({ cidr: outer.cidr.text, class: outer.class });
  for (const r of TABLE.within(c)) {
    if (r.class !== 'public' && r !== outer) out.push({ cidr: r.cidr.text, class: r.class });
  }
  return out;
}
