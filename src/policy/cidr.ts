/**
 * Addresses and CIDR blocks as numbers, and a binary prefix trie over them.
 *
 * Parsing is strict on purpose: only dotted-quad IPv4 (no octal, hex or short forms, which
 * inet_aton would read differently from a human: DESIGN §2 step 2) and RFC 4291 text IPv6
 * without a zone identifier. An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`, RFC 4291
 * §2.5.5.2) is that IPv4 address, as core/destination.ts already does for targets.
 */
import { isIPv4, isIPv6 } from 'node:net';

export type Family = 4 | 6;

/** An address as 32-bit words, most significant first: one word for IPv4, four for IPv6. */
export interface Ip {
  readonly family: Family;
  readonly words: readonly number[];
}

export interface Cidr {
  readonly family: Family;
  /** The network address (host bits are always zero). */
  readonly words: readonly number[];
  readonly prefix: number;
  /** Canonical text, e.g. `10.0.0.0/8`, `2001:db8::/32`. */
  readonly text: string;
}

export function bitsOf(f: Family): number {
  return f === 4 ? 32 : 128;
}

/** Parses one address; null when it is not a strict IPv4 or IPv6 literal. */
export function parseIp(s: string): Ip | null {
  if (s.length === 0 || s.length > 64) return null;
  if (isIPv4(s)) return { family: 4, words: [parseV4(s)] };
  if (s.includes('%') || !isIPv6(s)) return null;
  const h = parseV6(s);
  if (h === null) return null;
  const w = [
    ((h[0]! << 16) | h[1]!) >>> 0, ((h[2]! << 16) | h[3]!) >>> 0,
    ((h[4]! << 16) | h[5]!) >>> 0, ((h[6]! << 16) | h[7]!) >>> 0,
  ];
  if (w[0] === 0 && w[1] === 0 && w[2] === 0xffff) return { family: 4, words: [w[3]!] };
  return { family: 6, words: w };
}

/** The IPv4 value of a string net.isIPv4 accepted (dotted quad, no leading zeros). */
function parseV4(s: string): number {
  let v = 0;
  let part = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 0x2e) { v = v * 256 + part; part = 0; } else part = part * 10 + (c - 0x30);
  }
  return (v * 256 + part) >>> 0;
}

/** Eight hextets of a string net.isIPv6 accepted (no zone). */
function parseV6(s: string): number[] | null {
  let text = s;
  let v4: number | null = null;
  if (text.includes('.')) {
    const c = text.lastIndexOf(':');
    const tail = text.slice(c + 1);
    if (!isIPv4(tail)) return null;
    v4 = parseV4(tail);
    text = `${text.slice(0, c + 1)}0:0`;
  }
  const dbl = text.indexOf('::');
  const toHex = (p: string): number[] => (p === '' ? [] : p.split(':').map((x) => parseInt(x, 16)));
  let out: number[];
  if (dbl < 0) {
    out = toHex(text);
  } else {
    const head = toHex(text.slice(0, dbl));
    const tail = toHex(text.slice(dbl + 2));
    const fill = 8 - head.length - tail.length;
    if (fill < 1) return null;
    out = [...head, ...new Array<number>(fill).fill(0), ...tail];
  }
  if (out.length !== 8 || out.some((x) => !(x >= 0 && x <= 0xffff))) return null;
  if (v4 !== null) { out[6] = v4 >>> 16; out[7] = v4 & 0xffff; }
  return out;
}

/** Canonical text: dotted quad, or RFC 5952 IPv6 (the same form the WHATWG URL parser writes). */
export function formatIp(ip: Ip): string {
  const w = ip.words;
  if (ip.family === 4) { const v = w[0]!; return `${v >>> 24}.${(v >>> 16) & 255}.${(v >>> 8) & 255}.${v & 255}`; }
  const h: number[] = [];
  for (const x of w) h.push(x >>> 16, x & 0xffff);
  // Longest run of two or more zero hextets, the first one on a tie (RFC 5952 §4.2).
  let best = -1; let bestLen = 1;
  for (let i = 0; i < 8;) {
    if (h[i] !== 0) { i++; continue; }
    let j = i;
    while (j < 8 && h[j] === 0) j++;
    if (j - i > bestLen) { best = i; bestLen = j - i; }
    i = j;
  }
  const hex = (a: number[]): string => a.map((x) => x.toString(16)).join(':');
  if (best < 0) return hex(h);
  return `${hex(h.slice(0, best))}::${hex(h.slice(best + bestLen))}`;
}

/** Bit `i` (0 = most significant) of an address. */
function bit(words: readonly number[], i: number): number {
  return (words[i >>> 5]! >>> (31 - (i & 31))) & 1;
}

function masked(words: readonly number[], prefix: number): number[] {
  return words.map((w, k) => {
    const keep = Math.max(0, Math.min(32, prefix - 32 * k));
    return keep === 0 ? 0 : keep === 32 ? w : (w & ~(0xffffffff >>> keep)) >>> 0;
  });
}

export type CidrResult =
  | { readonly ok: true; readonly cidr: Cidr }
  | { readonly ok: false; readonly message: string; readonly fix?: string };

/**
 * Parses `a.b.c.d/n` or `x::y/n`; a bare address is a /32 or /128. Host bits set (`10.0.0.1/8`)
 * are refused with the network address as the fix: such a typo usually means the author
 * meant something narrower, and silently widening it would allow more than they wrote.
 */
export function parseCidr(raw: string): CidrResult {
  const slash = raw.indexOf('/');
  const addrText = slash < 0 ? raw : raw.slice(0, slash);
  const ip = parseIp(addrText);
  if (ip === null) return { ok: false, message: `"${addrText}" is not an IPv4 or IPv6 address` };
  if (ip.family === 4 && addrText.includes(':')) {
    const p = slash < 0 ? 128 : Number(raw.slice(slash + 1));
    const fix = Number.isInteger(p) && p >= 96 && p <= 128 ? { fix: `use "${formatIp({ family: 4, words: masked(ip.words, p - 96) })}/${p - 96}"` } : {};
    return { ok: false, message: 'IPv4-mapped IPv6 addresses arrive as IPv4, so this would never match', ...fix };
  }
  const max = bitsOf(ip.family);
  let prefix = max;
  if (slash >= 0) {
    const p = raw.slice(slash + 1);
    if (!/^(0|[1-9][0-9]{0,2})$/.test(p) || Number(p) > max) {
      return { ok: false, message: `prefix length "${p}" must be an integer from 0 to ${max}` };
    }
    prefix = Number(p);
  }
  const net = masked(ip.words, prefix);
  const text = `${formatIp({ family: ip.family, words: net })}/${prefix}`;
  if (net.some((w, k) => w !== ip.words[k])) {
    return { ok: false, message: `"${raw}" has host bits set`, fix: `use "${text}" (the network address)` };
  }
  return { ok: true, cidr: { family: ip.family, words: net, prefix, text } };
}

export function cidrContains(outer: Cidr, inner: { family: Family; words: readonly number[]; prefix?: number }): boolean {
  if (outer.family !== inner.family) return false;
  if ((inner.prefix ?? bitsOf(inner.family)) < outer.prefix) return false;
  const m = masked(inner.words, outer.prefix);
  return m.every((w, k) => w === outer.words[k]);
}

interface TrieNode<T> {
  zero: TrieNode<T> | null;
  one: TrieNode<T> | null;
  values: T[] | null;
}

/**
 * A binary prefix trie: lookups walk at most 32 or 128 bits whatever the number of blocks,
 * so a large list of sources or address rules never makes a decision slower than a handful.
 */
export class CidrTrie<T> {
  readonly #roots: { 4: TrieNode<T>; 6: TrieNode<T> } = { 4: node(), 6: node() };
  #size = 0;

  get size(): number {
    return this.#size;
  }

  insert(c: Cidr, value: T): void {
    let n = this.#roots[c.family];
    for (let i = 0; i < c.prefix; i++) {
      if (bit(c.words, i) === 0) n = n.zero ??= node();
      else n = n.one ??= node();
    }
    (n.values ??= []).push(value);
    this.#size++;
  }

  /** Values of every block containing `ip`, shortest prefix first. */
  matches(ip: Ip, out: T[] = []): T[] {
    let n: TrieNode<T> | null = this.#roots[ip.family];
    const max = bitsOf(ip.family);
    for (let i = 0; n !== null; i++) {
      if (n.values !== null) for (const v of n.values) out.push(v);
      if (i === max) break;
      n = bit(ip.words, i) === 0 ? n.zero : n.one;
    }
    return out;
  }

  /** The first value of the longest block containing `ip`. */
  longest(ip: Ip): T | undefined {
    let n: TrieNode<T> | null = this.#roots[ip.family];
    const max = bitsOf(ip.family);
    let found: T | undefined;
    for (let i = 0; n !== null; i++) {
      if (n.values !== null) found = n.values[0];
      if (i === max) break;
      n = bit(ip.words, i) === 0 ? n.zero : n.one;
    }
    return found;
  }

  /** Values of every block inside `c` (including `c` itself). */
  within(c: Cidr): T[] {
    let n: TrieNode<T> | null = this.#roots[c.family];
    for (let i = 0; i < c.prefix && n !== null; i++) n = bit(c.words, i) === 0 ? n.zero : n.one;
    const out: T[] = [];
    const stack = n === null ? [] : [n];
    while (stack.length > 0) {
      const x = stack.pop() as TrieNode<T>;
      if (x.values !== null) out.push(...x.values);
      if (x.zero !== null) stack.push(x.zero);
      if (x.one !== null) stack.push(x.one);
    }
    return out;
  }
}

function node<T>(): TrieNode<T> {
  return { zero: null, one: null, values: null };
}
