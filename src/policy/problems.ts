/**
 * Problems before they are placed in the source: a path as an array (so the YAML locator can
 * walk it), a prose message and a fix. zod issues are turned into these with messages an
 * operator can act on, one problem per unknown key, and union errors flattened to the branch
 * the author evidently meant (a string is a host pattern, a mapping is a rule).
 */
import type * as z from 'zod';
import { KNOWN_KEYS } from './schema.js';

export type Path = readonly (string | number)[];

export interface RawProblem {
  readonly path: Path;
  readonly message: string;
  readonly fix?: string;
  /** Point at the key rather than its value (unknown keys). */
  readonly atKey?: boolean;
}

export function problem(path: Path, message: string, fix?: string): RawProblem {
  return fix === undefined ? { path, message } : { path, message, fix };
}

export function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export function own(o: Record<string, unknown>, k: string): unknown {
  return Object.prototype.hasOwnProperty.call(o, k) ? o[k] : undefined;
}

function valueAt(root: unknown, path: Path): unknown {
  let v = root;
  for (const seg of path) {
    if (Array.isArray(v) && typeof seg === 'number') v = v[seg];
    else if (isRecord(v)) v = own(v, String(seg));
    else return undefined;
  }
  return v;
}

export function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'a mapping';
  if (typeof v === 'string') return v.length > 40 ? `"${v.slice(0, 40)}…"` : JSON.stringify(v);
  return String(v);
}

export function zodProblems(root: unknown, issues: readonly z.core.$ZodIssue[], base: Path = []): RawProblem[] {
  const out: RawProblem[] = [];
  for (const iss of issues) {
    const path: Path = [...base, ...iss.path.map((s) => (typeof s === 'number' ? s : String(s)))];
    switch (iss.code) {
      case 'unrecognized_keys':
        for (const k of iss.keys) {
          const near = suggestKey(k);
          out.push({ path: [...path, k], message: `unknown key "${k}"`, atKey: true, ...(near ? { fix: `did you mean "${near}"?` } : {}) });
        }
        break;
      case 'invalid_union': {
        const v = valueAt(root, path);
        const branch = typeof v === 'string' ? 0 : isRecord(v) ? 1 : -1;
        const sub = branch >= 0 ? iss.errors[branch] : undefined;
        if (sub !== undefined) out.push(...zodProblems(root, sub, path));
        else out.push(problem(path, `expected a host pattern string or a rule mapping, got ${describe(v)}`, 'write "api.example.com" or {host: api.example.com, ports: [443]}'));
        break;
      }
      case 'invalid_type': {
        const v = valueAt(root, path);
        const last = path[path.length - 1];
        if (v === undefined && typeof last === 'string') out.push(problem(path, `missing required key "${last}"`));
        else if (iss.message.startsWith('Invalid input')) out.push(problem(path, `expected ${iss.expected}, got ${describe(v)}`));
        else out.push(problem(path, `${iss.message} (got ${describe(v)})`));
        break;
      }
      case 'invalid_value': {
        const v = valueAt(root, path);
        out.push(problem(path, v === undefined ? iss.message : `${iss.message} (got ${describe(v)})`));
        break;
      }
      default:
        out.push(problem(path, iss.message));
    }
  }
  return out;
}

/** A known key within edit distance 2 (or differing only in case or `-` for `_`). */
function suggestKey(k: string): string | null {
  const norm = k.toLowerCase().replace(/-/g, '_');
  let best: string | null = null;
  let bestD = 3;
  for (const known of KNOWN_KEYS) {
    if (known === k) continue;
    const d = known === norm ? 0 : editDistance(norm, known, bestD);
    if (d < bestD) { best = known; bestD = d; }
  }
  return best;
}

function editDistance(a: string, b: string, cap: number): number {
  if (Math.abs(a.length - b.length) >= cap || a.length > 64) return cap;
  let prev = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = cur;
  }
  return prev[b.length]!;
}
