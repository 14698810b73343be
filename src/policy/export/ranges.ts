/**
 * Address-range arithmetic for exporters whose rule language has no "except" (Windows
 * Firewall: a block rule always wins over an allow rule, so "block everything but X" must be
 * written as "block the complement of X").
 */
import { formatIp, type Family, type Ip } from '../cidr.js';

export function toBig(ip: Ip): bigint {
  let v = 0n;
  for (const w of ip.words) v = (v << 32n) | BigInt(w >>> 0);
  return v;
}

function fromBig(v: bigint, family: Family): Ip {
  const n = family === 4 ? 1 : 4;
  const words: number[] = [];
  for (let i = n - 1; i >= 0; i--) words.push(Number((v >> BigInt(32 * i)) & 0xffffffffn));
  return { family, words };
}

/** Inclusive range of addresses of one family, as integers. */
export interface BigRange { readonly first: bigint; readonly last: bigint }

export function single(ip: Ip): BigRange {
  const v = toBig(ip);
  return { first: v, last: v };
}

/** Every address of `family` outside `holes`, as sorted inclusive ranges. */
export function complement(family: Family, holes: readonly BigRange[]): BigRange[] {
  const max = family === 4 ? (1n << 32n) - 1n : (1n << 128n) - 1n;
  const sorted = [...holes].sort((a, b) => (a.first < b.first ? -1 : a.first > b.first ? 1 : 0));
  const out: BigRange[] = [];
  let next = 0n;
  for (const h of sorted) {
    if (h.first > next) out.push({ first: next, last: h.first - 1n });
    if (h.last + 1n > next) next = h.last + 1n;
  }
  if (next <= max) out.push({ first: next, last: max });
  return out;
}

export function formatRange(r: BigRange, family: Family): string {
  const a = formatIp(fromBig(r.first, family));
  const b = formatIp(fromBig(r.last, family));
  return a === b ? a : `${a}-${b}`;
}

/** Ports 1..65535 not in `allowed`, as `a-b` ranges (empty when every port is allowed). */
export function portComplement(allowed: readonly number[]): string[] {
  const set = [...new Set(allowed)].sort((a, b) => a - b);
  const out: string[] = [];
  let next = 1;
  for (const p of set) {
    if (p > next) out.push(p - 1 === next ? String(next) : `${next}-${p - 1}`);
    next = p + 1;
  }
  if (next <= 65535) out.push(next === 65535 ? '65535' : `${next}-65535`);
  return out;
}
