/**
 * `Destination`: the one normalized form of a request target (DESIGN §2 step 2, §6.3).
 * Everything after the edge works on this value, never on raw strings, so that case,
 * trailing dots, IDNA and the many spellings of an IP address cannot be used to slip past
 * a rule that names the canonical form.
 */
import { isIPv4, isIPv6 } from 'node:net';
import { domainToASCII } from 'node:url';

export type HostKind = 'name' | 'ipv4' | 'ipv6';

export interface Destination {
  /** Canonical host: lowercase A-label name without trailing dot, dotted-quad IPv4, or compressed IPv6 without brackets. */
  readonly host: string;
  readonly port: number;
  readonly kind: HostKind;
}

export type HostResult =
  | { readonly ok: true; readonly host: string; readonly kind: HostKind }
  | { readonly ok: false; readonly error: string };

const MAX_NAME = 253;
const MAX_LABEL = 63;

/**
 * Normalizes one host as it would be understood by a resolver or a URL parser, so that
 * what we decide on is what we would dial:
 * - lowercase; exactly one trailing dot removed (`example.com.` is `example.com`);
 * - Unicode names to A-labels (UTS #46 via node:url), invalid IDNA refused;
 * - any name whose last label is a number is an IPv4 address in the WHATWG/inet_aton sense
 *   (`2130706433`, `0x7f.1`, `0177.0.0.1`, `127.1` are all 127.0.0.1): getaddrinfo would
 *   dial them as addresses, so they must be judged as addresses, not names;
 * - IPv6 compressed; an IPv4-mapped IPv6 address (`::ffff:7f00:1`) is that IPv4 address.
 */
export function normalizeHost(raw: string): HostResult {
  if (raw.length === 0) return fail('empty host');
  if (raw.length > 1024) return fail('host too long');
  if (raw.charCodeAt(0) === 0x5b /* [ */) {
    if (raw.charCodeAt(raw.length - 1) !== 0x5d) return fail('unterminated IPv6 literal');
    return normalizeIPv6(raw.slice(1, -1));
  }
  // A bare IPv6 (no brackets) is accepted where the caller already split off the port.
  if (raw.includes(':')) return isIPv6(raw) ? normalizeIPv6(raw) : fail('unexpected ":" in host');

  let name = raw;
  if (name.endsWith('.')) name = name.slice(0, -1);
  if (name.length === 0 || name.endsWith('.')) return fail('empty label');

  let ascii = true;
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    if (c >= 0x80) { ascii = false; continue; }
    if (!isHostChar(c)) return fail(`forbidden character ${JSON.stringify(name[i])} in host`);
  }
  // A label starting "xn--" (any case) is an A-label to check; lowercased first, two substring
  // tests say so without a regular expression (every CONNECT comes through here).
  const lower = ascii ? name.toLowerCase() : name;
  if (!ascii || lower.startsWith('xn--') || lower.includes('.xn--')) {
    // domainToASCII applies UTS #46 processing and returns '' for invalid input
    // (including malformed punycode in an xn-- label).
    const a = domainToASCII(name);
    if (a === '') return fail('invalid internationalized name');
    name = a.endsWith('.') ? a.slice(0, -1) : a;
  } else {
    name = lower;
  }

  const labels = name.split('.');
  const last = labels[labels.length - 1] as string;
  if (endsInNumber(last)) {
    const v4 = parseWhatwgIPv4(labels);
    return v4 === null ? fail('invalid IPv4 address') : { ok: true, host: v4, kind: 'ipv4' };
  }
  if (name.length > MAX_NAME) return fail('name longer than 253 octets');
  for (const l of labels) {
    if (l.length === 0) return fail('empty label');
    if (l.length > MAX_LABEL) return fail('label longer than 63 octets');
    for (let i = 0; i < l.length; i++) {
      if (!isLabelChar(l.charCodeAt(i))) return fail(`forbidden character ${JSON.stringify(l[i])} in name`);
    }
    if (l.startsWith('-') || l.endsWith('-')) return fail('label starts or ends with "-"');
  }
  return { ok: true, host: name, kind: 'name' };
}

function normalizeIPv6(inner: string): HostResult {
  // Zone identifiers (`fe80::1%eth0`) select an interface on the gateway: never from a client.
  if (!isIPv6(inner)) return fail('invalid IPv6 address');
  let canon: string;
  try {
    canon = new URL(`http://[${inner}]/`).hostname.slice(1, -1);
  } catch {
    return fail('invalid IPv6 address');
  }
  const mapped = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(canon);
  if (mapped) {
    const hi = parseInt(mapped[1] as string, 16);
    const lo = parseInt(mapped[2] as string, 16);
    return { ok: true, host: `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`, kind: 'ipv4' };
  }
  return { ok: true, host: canon, kind: 'ipv6' };
}

/** WHATWG URL "ends in a number": decimal digits, or 0x followed by hex digits. */
function endsInNumber(label: string): boolean {
  if (label.length === 0) return false;
  // Both forms start with a digit; an ordinary name's last label does not: no pattern to run.
  const c0 = label.charCodeAt(0);
  if (c0 < 0x30 || c0 > 0x39) return false;
  if (/^[0-9]+$/.test(label)) return true;
  return /^0x[0-9a-f]*$/i.test(label);
}

function parseIPv4Part(s: string): number | null {
  if (s.length === 0) return null;
  let radix = 10;
  let digits = s;
  if (/^0x/i.test(s)) { radix = 16; digits = s.slice(2); if (digits === '') return 0; }
  else if (s.length > 1 && s.startsWith('0')) { radix = 8; digits = s.slice(1); }
  const re = radix === 16 ? /^[0-9a-f]+$/i : radix === 8 ? /^[0-7]+$/ : /^[0-9]+$/;
  if (!re.test(digits)) return null;
  const n = parseInt(digits, radix);
  return Number.isSafeInteger(n) ? n : null;
}

/** The WHATWG IPv4 parser (URL Standard §3.5), which matches inet_aton's forms. */
function parseWhatwgIPv4(labels: readonly string[]): string | null {
  if (labels.length > 4) return null;
  const nums: number[] = [];
  for (const l of labels) {
    const n = parseIPv4Part(l);
    if (n === null) return null;
    nums.push(n);
  }
  const last = nums.pop() as number;
  for (const n of nums) if (n > 255) return null;
  if (last >= 256 ** (4 - nums.length)) return null;
  let v = last;
  nums.forEach((n, i) => { v += n * 256 ** (3 - i); });
  return `${Math.floor(v / 16777216) % 256}.${Math.floor(v / 65536) % 256}.${Math.floor(v / 256) % 256}.${v % 256}`;
}

function isHostChar(c: number): boolean {
  return isLabelChar(c) || c === 0x2e /* . */ || (c >= 0x41 && c <= 0x5a);
}
function isLabelChar(c: number): boolean {
  return (c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) || c === 0x2d || c === 0x5f;
}
function fail(error: string): HostResult {
  return { ok: false, error };
}

export function parsePort(s: string): number | null {
  // One to five ASCII digits (no sign, space, exponent or hex that Number() would take).
  if (s.length === 0 || s.length > 5) return null;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x30 || c > 0x39) return null;
  }
  const n = Number(s);
  return n >= 1 && n <= 65535 ? n : null;
}

export type DestinationResult =
  | { readonly ok: true; readonly dest: Destination }
  | { readonly ok: false; readonly error: string };

/**
 * Parses an authority `host:port` (CONNECT, RFC 9110 §9.3.6: the port is required) or, with
 * `defaultPort`, `host[:port]` (a Host header or URL authority). Userinfo is refused.
 */
export function parseAuthority(raw: string, defaultPort?: number): DestinationResult {
  if (raw.includes('@')) return { ok: false, error: 'userinfo is not allowed in the authority' };
  let hostPart: string;
  let portPart: string | undefined;
  if (raw.startsWith('[')) {
    const end = raw.indexOf(']');
    if (end < 0) return { ok: false, error: 'unterminated IPv6 literal' };
    hostPart = raw.slice(0, end + 1);
    const rest = raw.slice(end + 1);
    if (rest !== '') {
      if (!rest.startsWith(':')) return { ok: false, error: 'garbage after IPv6 literal' };
      portPart = rest.slice(1);
    }
  } else {
    const colon = raw.lastIndexOf(':');
    if (colon >= 0) {
      hostPart = raw.slice(0, colon);
      portPart = raw.slice(colon + 1);
      if (hostPart.includes(':')) return { ok: false, error: 'IPv6 literal must be in brackets' };
    } else {
      hostPart = raw;
    }
  }
  let port: number | null;
  if (portPart === undefined || portPart === '') {
    if (defaultPort === undefined) return { ok: false, error: 'port is required' };
    port = defaultPort;
  } else {
    port = parsePort(portPart);
    if (port === null) return { ok: false, error: 'invalid port' };
  }
  const h = normalizeHost(hostPart);
  if (!h.ok) return h;
  return { ok: true, dest: { host: h.host, port, kind: h.kind } };
}

export interface AbsoluteTarget {
  readonly dest: Destination;
  /** origin-form path and query to send upstream (RFC 9112 §3.2.1). */
  readonly path: string;
}

export type AbsoluteResult =
  | { readonly ok: true; readonly target: AbsoluteTarget }
  | { readonly ok: false; readonly error: string; readonly scheme?: boolean };

/** Parses an absolute-form request target `http://authority[/path][?query]`. */
export function parseAbsoluteTarget(raw: string): AbsoluteResult {
  const sep = raw.indexOf('://');
  if (sep < 0) return { ok: false, error: 'not an absolute URL' };
  const scheme = raw.slice(0, sep).toLowerCase();
  if (scheme !== 'http') return { ok: false, error: `scheme "${scheme}" is not proxied`, scheme: true };
  const rest = raw.slice(sep + 3);
  let end = rest.length;
  for (let i = 0; i < rest.length; i++) {
    const c = rest.charCodeAt(i);
    if (c === 0x2f || c === 0x3f || c === 0x23) { end = i; break; }
  }
  const authority = rest.slice(0, end);
  let path = rest.slice(end);
  const hash = path.indexOf('#');
  if (hash >= 0) path = path.slice(0, hash); // fragments are never sent (RFC 9110 §4.2.4)
  if (path === '') path = '/';
  else if (path.startsWith('?')) path = `/${path}`;
  const a = parseAuthority(authority, 80);
  if (!a.ok) return a;
  return { ok: true, target: { dest: a.dest, path } };
}

export function sameDestination(a: Destination, b: Destination): boolean {
  return a.host === b.host && a.port === b.port;
}

/** `host:port` with IPv6 bracketed, for logs and bodies. */
export function formatDestination(d: Destination): string {
  return d.kind === 'ipv6' ? `[${d.host}]:${d.port}` : `${d.host}:${d.port}`;
}
