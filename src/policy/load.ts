/**
 * loadPolicy(): YAML text → validated, compiled policy, or every problem with its path and
 * position. Never throws, whatever the input: a policy that fails to load must leave the
 * running one in force (DESIGN §3), so a throw here would be a crash or, worse, a fail-open.
 *
 * YAML hardening: duplicate keys are errors (a second `allow:` silently replacing the first
 * would drop rules); aliases are capped (billion-laughs expansion, CVE-2013-4660-style);
 * YAML 1.2 core schema only, so `<<` merge keys and custom tags are not interpreted.
 */
import { isAlias, isMap, isScalar, isSeq, LineCounter, parseDocument, type Document } from 'yaml';
import type { Problem } from '../core/errors.js';
import { plainPlacer, MAX_PROBLEMS, sha256, validateAndCompile, type LoadResult, type Placer } from './compile.js';
import type { Path } from './problems.js';

export interface LoadOptions {
  /** Names the source in document-level messages (e.g. the file path). */
  readonly sourceName?: string;
}

/** Aliases a policy may use; each expands to at most this many nodes in total. */
export const MAX_ALIAS_COUNT = 20;

export function loadPolicy(text: string, opts: LoadOptions = {}): LoadResult {
  return loadPolicyWithRaw(text, opts).result;
}

/**
 * loadPolicy(), also returning the plain document it parsed (null when YAML parsing failed),
 * so that a worker thread can do the slow YAML part and hand the document back (offthread.ts).
 */
export function loadPolicyWithRaw(text: string, opts: LoadOptions = {}): { result: LoadResult; raw: unknown } {
  let raw: unknown = null;
  const result = load(text, opts, (r) => { raw = r; });
  return { result, raw };
}

function load(text: string, opts: LoadOptions, keep: (raw: unknown) => void): LoadResult {
  const name = opts.sourceName ?? 'the policy';
  try {
    if (typeof text !== 'string') return fail(`${name} is not text`);
    const lc = new LineCounter();
    const doc = parseDocument(text, {
      lineCounter: lc, prettyErrors: false, uniqueKeys: true, strict: true,
      version: '1.2', schema: 'core', merge: false,
    });
    const yamlIssues = [...doc.errors, ...doc.warnings];
    if (yamlIssues.length > 0) {
      const problems: Problem[] = yamlIssues.slice(0, MAX_PROBLEMS).map((e) => {
        const at = lc.linePos(e.pos[0]);
        return { path: '', message: `YAML: ${yamlMessage(e.code, e.message, text.slice(e.pos[0], e.pos[0] + 80))}`, line: at.line, column: at.col };
      });
      return { ok: false, problems, warnings: [] };
    }
    const raw: unknown = doc.toJS({ maxAliasCount: MAX_ALIAS_COUNT });
    if (raw === null || raw === undefined) {
      return { ok: false, problems: [{ path: '', message: `${name} is empty`, fix: 'start with "version: 1" and a "groups:" list' }], warnings: [] };
    }
    keep(raw);
    return validateAndCompile(raw, sha256(text), placer(doc, lc));
  } catch (e) {
    // RangeError from a pathologically deep document, ReferenceError from the alias cap...
    const why = firstLine(e instanceof Error ? e.message : String(e));
    const unresolved = /^Unresolved alias[^:]*: (.*)$/.exec(why);
    if (unresolved) {
      // YAML reads an unquoted `*` as an alias: `- *.example.com` is the commonest typo in a
      // policy, and "too many aliases" would send the author looking for an alias bomb.
      const at = text.indexOf(`*${unresolved[1] as string}`);
      const line = at < 0 ? undefined : text.slice(0, at).split('\n').length;
      return { ok: false, problems: [{ path: '', message: `*${unresolved[1] as string} is read by YAML as an alias, not a host pattern`, fix: `quote it: "*${unresolved[1] as string}"`, ...(line === undefined ? {} : { line }) }], warnings: [] };
    }
    if (e instanceof ReferenceError && /alias/i.test(why)) {
      return fail(`${name} expands YAML aliases too much (limit ${MAX_ALIAS_COUNT}): ${why}`);
    }
    return fail(`${name} cannot be parsed: ${why}`);
  }
}

function yamlMessage(code: string, message: string, at: string): string {
  if (code === 'DUPLICATE_KEY') {
    const key = (/^[^:\n]*/.exec(at)?.[0] ?? '').trim();
    return `duplicate key ${JSON.stringify(key)}: a second one would silently replace the first`;
  }
  if (code === 'MULTIPLE_DOCS') return 'a policy file holds one YAML document; remove the "---" separator and what follows';
  return firstLine(message);
}

function fail(message: string): LoadResult {
  return { ok: false, problems: [{ path: '', message }], warnings: [] };
}

function firstLine(s: string): string {
  const i = s.indexOf('\n');
  return (i < 0 ? s : s.slice(0, i)).trim();
}

function placer(doc: Document, lc: LineCounter): Placer {
  return (p) => {
    const base = plainPlacer(p);
    const off = locate(doc, p.path, p.atKey === true);
    if (off === undefined) return base;
    const at = lc.linePos(off);
    return { ...base, line: at.line, column: at.col };
  };
}

function start(n: unknown): number | undefined {
  const r = (n as { range?: unknown } | null | undefined)?.range;
  return Array.isArray(r) && typeof r[0] === 'number' ? r[0] : undefined;
}

/**
 * Source offset of the node at `path` (or of its key), falling back to the deepest ancestor
 * that exists, so that a missing key points at the mapping that lacks it.
 */
function locate(doc: Document, path: Path, atKey: boolean): number | undefined {
  let node: unknown = doc.contents;
  let off = start(node);
  for (let i = 0; i < path.length; i++) {
    const seg = path[i];
    if (isAlias(node)) node = node.resolve(doc);
    if (isMap(node)) {
      const pair = node.items.find((it) => isScalar(it.key) && String(it.key.value) === String(seg));
      if (pair === undefined) break;
      const last = i === path.length - 1;
      const v = pair.value;
      const vs = start(v);
      if ((last && atKey) || vs === undefined) { off = start(pair.key) ?? off; if (last) break; }
      else off = vs;
      node = v;
    } else if (isSeq(node) && typeof seg === 'number') {
      const it = node.items[seg];
      if (it === undefined) break;
      off = start(it) ?? off;
      node = it;
    } else break;
  }
  return off;
}
