/**
 * Loads the gateway configuration: file (optional) + command-line overrides (flags win),
 * validated once, every problem named by its path, result deeply frozen (DESIGN §6.5).
 * `chokepoint config check` uses exactly this loader.
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { parseDocument } from 'yaml';
import { ChokepointError, formatPath, type Problem } from '../core/errors.js';
import { configSchema, type Config } from './schema.js';

export interface Overrides {
  policy?: string;
  proxy_listen?: string;
  proxy_threads?: string;
  proxy_warmup?: string;
  events?: string;
  log_level?: string;
  control_listen?: string;
  mtls_listen?: string;
  data_dir?: string;
  database?: string;
}

export type ConfigResult = { ok: true; config: Config } | { ok: false; problems: Problem[] };

export function parseConfig(text: string | null, overrides: Overrides = {}): ConfigResult {
  let raw: unknown = {};
  if (text !== null) {
    const doc = parseDocument(text, { uniqueKeys: true });
    // Warnings too (an unresolved tag such as `!weird debug` is one): read past them, the value
    // is not what the author wrote, as the policy loader also refuses.
    const issues = [...doc.errors, ...doc.warnings];
    if (issues.length > 0) {
      return { ok: false, problems: issues.map((e) => ({ path: '', message: e.message.split('\n')[0] ?? e.message, line: e.linePos?.[0]?.line, column: e.linePos?.[0]?.col })) };
    }
    raw = doc.toJS({ maxAliasCount: 100 }) ?? {};
    if (typeof raw !== 'object' || Array.isArray(raw)) {
      return { ok: false, problems: [{ path: '', message: 'the configuration must be a mapping' }] };
    }
  }
  const merged: Record<string, unknown> = { ...(raw as Record<string, unknown>) };
  for (const [k, v] of Object.entries(overrides)) if (v !== undefined) merged[k] = v;
  const r = configSchema.safeParse(merged);
  if (!r.success) {
    return {
      ok: false,
      problems: r.error.issues.map((i) => ({
        path: formatPath(i.path),
        message: i.code === 'unrecognized_keys' ? `unknown key${i.keys.length > 1 ? 's' : ''} ${i.keys.map((k) => `"${k}"`).join(', ')}` : i.message,
      })),
    };
  }
  return { ok: true, config: deepFreeze(r.data) };
}

/** Where state lives (SQLite store, CA, spools, baselines): `data_dir`, else `./data`, absolute. */
export function dataDirOf(config: Config): string {
  return resolve(config.data_dir ?? './data');
}

export function loadConfig(file: string | undefined, overrides: Overrides = {}): Config {
  let text: string | null = null;
  if (file !== undefined) {
    try {
      text = readFileSync(file, 'utf8');
    } catch (cause) {
      throw new ChokepointError('CONFIG_UNREADABLE', `cannot read config file ${file}`, { cause });
    }
  }
  const r = parseConfig(text, overrides);
  if (!r.ok) throw new ChokepointError('CONFIG_INVALID', `invalid configuration${file ? ` in ${file}` : ''}`, { problems: r.problems });
  return r.config;
}

export function deepFreeze<T>(o: T): T {
  if (o && typeof o === 'object' && !Object.isFrozen(o)) {
    Object.freeze(o);
    for (const v of Object.values(o as object)) deepFreeze(v);
  }
  return o;
}
