/**
 * The effective policy: the applied version, except that during a staged rollout the pilot group
 * is defined by the pilot version. Composition is done on the documents (the pilot version's
 * group entry replaces the applied one's) and the result goes through the same loader as any
 * policy, so a composition that would be invalid (e.g. the pilot's sources now overlap another
 * group's) is refused rather than enforced.
 */
import { parse as parseYaml, stringify } from 'yaml';
import { loadPolicyOffThread, type CompiledPolicy } from '../policy/index.js';
import type { Problem } from '../core/errors.js';
import type { Exec } from '../store/open.js';
import { getState, getVersion, type PolicyState } from '../store/policies.js';
import type { PolicyMeta } from './context.js';

export type Effective =
  | { readonly ok: true; readonly compiled: CompiledPolicy; readonly meta: PolicyMeta }
  | { readonly ok: false; readonly problems: readonly Problem[] };

interface Doc { groups?: { name?: unknown }[]; [k: string]: unknown }

export function composePilot(appliedText: string, pilotText: string, group: string): string | null {
  const base = parseYaml(appliedText, { version: '1.2', schema: 'core', merge: false, maxAliasCount: 20 }) as Doc;
  const pilot = parseYaml(pilotText, { version: '1.2', schema: 'core', merge: false, maxAliasCount: 20 }) as Doc;
  const pg = pilot.groups?.find((g) => g.name === group);
  if (!pg) return null;
  const groups = [...(base.groups ?? [])];
  const i = groups.findIndex((g) => g.name === group);
  if (i >= 0) groups[i] = pg; else groups.push(pg);
  return stringify({ ...base, groups });
}

export async function effectiveFor(db: Exec, state: Pick<PolicyState, 'applied_version' | 'pilot_version' | 'pilot_group'>): Promise<Effective | null> {
  if (state.applied_version === null) return null;
  const applied = await getVersion(db, state.applied_version);
  if (!applied) return { ok: false, problems: [{ path: '', message: `applied version ${state.applied_version} is missing` }] };
  let text = applied.text;
  let source = `store:v${applied.version}`;
  if (state.pilot_version !== null && state.pilot_group !== null) {
    const pilot = await getVersion(db, state.pilot_version);
    if (!pilot) return { ok: false, problems: [{ path: '', message: `pilot version ${state.pilot_version} is missing` }] };
    const composed = composePilot(applied.text, pilot.text, state.pilot_group);
    if (composed === null) return { ok: false, problems: [{ path: 'pilot_group', message: `version ${pilot.version} has no group "${state.pilot_group}"` }] };
    text = composed;
    source += `+pilot:v${pilot.version}@${state.pilot_group}`;
  }
  const r = await loadPolicyOffThread(text, { sourceName: source });
  if (!r.ok) return { ok: false, problems: r.problems };
  return {
    ok: true, compiled: r.policy,
    meta: { version: applied.version, pilotVersion: state.pilot_version, pilotGroup: state.pilot_group, digest: r.policy.digest, source },
  };
}

/** The effective policy of the store's current state (what `serve` loads at start). */
export async function loadEffectivePolicy(db: Exec): Promise<Effective | null> {
  return effectiveFor(db, await getState(db));
}
