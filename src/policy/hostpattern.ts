/**
 * Host patterns (DESIGN §3): `example.com` (exact), `*.example.com` (exactly one more label),
 * `**.example.com` (any depth of subdomain, not the apex). A pattern is checked once when the
 * policy loads; what is accepted here is exactly what the matcher compares against
 * Destination.host, which core has already normalized (lowercase, no trailing dot, A-labels).
 */
import { getPublicSuffix } from 'tldts';
import { normalizeHost } from '../core/destination.js';

export type PatternKind = 'exact' | 'one' | 'any';

export interface HostPattern {
  readonly kind: PatternKind;
  /** Canonical base name: the whole host for `exact`, the part after `*.`/`**.` otherwise. */
  readonly base: string;
  /** The pattern as written (already canonical). */
  readonly text: string;
}

export type PatternResult =
  | { readonly ok: true; readonly pattern: HostPattern }
  | { readonly ok: false; readonly message: string; readonly fix?: string };

const PREFIX: Record<PatternKind, string> = { exact: '', one: '*.', any: '**.' };

export function parseHostPattern(raw: string): PatternResult {
  if (raw.length === 0) return { ok: false, message: 'host is empty' };
  if (raw === '*' || raw === '**' || raw === '*.' || raw === '**.') {
    return { ok: false, message: `"${raw}" would match every host; a default-deny policy names its destinations` };
  }
  let kind: PatternKind = 'exact';
  let base = raw;
  if (raw.startsWith('**.')) { kind = 'any'; base = raw.slice(3); } else if (raw.startsWith('*.')) { kind = 'one'; base = raw.slice(2); }
  if (base.includes('*')) {
    return {
      ok: false,
      message: `"${raw}": "*" and "**" are only allowed as the whole first label`,
      fix: 'write "*.example.com" (one label) or "**.example.com" (any depth)',
    };
  }
  const n = normalizeHost(base);
  if (!n.ok) return invalid(raw, kind, base, n.error);
  if (n.kind !== 'name') {
    const bits = n.kind === 'ipv4' ? 32 : 128;
    return {
      ok: false,
      message: `"${raw}" is an IP address; host rules match names only`,
      ...(kind === 'exact' ? { fix: `use address: "${n.host}/${bits}"` } : {}),
    };
  }
  const text = PREFIX[kind] + n.host;
  if (n.host !== base) {
    return { ok: false, message: `"${raw}" is not in canonical form (lowercase, A-labels, no trailing dot)`, fix: `use "${text}"` };
  }
  if (kind !== 'exact') {
    // With allowPrivateDomains, `*.github.io` is refused too: each github.io subdomain belongs
    // to a different owner (Public Suffix List, private section). A name the list does not
    // know falls under its default rule "*", so any single-label base is a suffix as well.
    const suffix = getPublicSuffix(n.host, {
      allowPrivateDomains: true, extractHostname: false, validateHostname: false, detectIp: false,
    });
    if (suffix === n.host) {
      return {
        ok: false,
        message: `"${raw}" covers the public suffix "${n.host}": it would match domains of unrelated owners`,
        fix: `name a registered domain under it, e.g. "${PREFIX[kind]}example.${n.host}"`,
      };
    }
  }
  return { ok: true, pattern: { kind, base: n.host, text } };
}

/** A refused pattern, with a fix when it is recognizably a URL or a host:port. */
function invalid(raw: string, kind: PatternKind, base: string, error: string): PatternResult {
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(base)) {
    let fix: string | undefined;
    try { fix = `use "${PREFIX[kind]}${new URL(base).hostname}" (and "ports:" for the port)`; } catch { /* no fix */ }
    return { ok: false, message: `"${raw}" is a URL; a host rule names a host only`, ...(fix !== undefined ? { fix } : {}) };
  }
  const hp = /^([^:[\]]+):([0-9]{1,5})$/.exec(base);
  if (hp) return { ok: false, message: `"${raw}" includes a port`, fix: `use host "${PREFIX[kind]}${hp[1]}" with ports: [${hp[2]}]` };
  return { ok: false, message: `"${raw}" is not a valid host name: ${error}` };
}

/** Does a pattern match a canonical host name? (Reference implementation for tests and warnings.) */
export function patternMatches(p: HostPattern, host: string): boolean {
  if (p.kind === 'exact') return host === p.base;
  if (!host.endsWith(`.${p.base}`)) return false;
  const head = host.slice(0, host.length - p.base.length - 1);
  return p.kind === 'any' || !head.includes('.');
}
