/**
 * The audit log's hash chain, pure (the CLI's `audit verify` recomputes it on its side too).
 * hash = sha256(prev_hash ‖ "\n" ‖ canonical(entry)), where canonical() is the JSON array of
 * the entry's fields in a fixed order: an array has no key-order ambiguity, and JSON escapes
 * every separator, so two different entries never serialize alike. Editing, deleting,
 * inserting or reordering a row breaks the chain at that row (tamper evidence, not prevention:
 * an attacker who can rewrite the whole table can rewrite the chain; exporting the head hash to
 * an outside sink — the `audit.entry` event — is what pins it).
 */
import { createHash } from 'node:crypto';

export const GENESIS_HASH = '0'.repeat(64);

export interface ChainEntry {
  readonly seq: number;
  readonly time: number;
  readonly actor_id: string | null;
  readonly actor: string;
  readonly role: string;
  readonly action: string;
  readonly target: string | null;
  readonly result: string;
  readonly source_ip: string | null;
  readonly before: string | null;
  readonly after: string | null;
  readonly detail: string | null;
  /** The API token used; absent or null for system actors and entries written before it existed. */
  readonly token_id?: string | null;
}

export interface ChainedEntry extends ChainEntry {
  readonly prev_hash: string;
  readonly hash: string;
}

export function canonicalEntry(e: ChainEntry): string {
  const fields: unknown[] = [e.seq, e.time, e.actor_id, e.actor, e.role, e.action, e.target, e.result, e.source_ip, e.before, e.after, e.detail];
  // token_id joined the entry later: it is appended only when set, so every entry written
  // before it (and every system entry) keeps its hash, and a 13-element array can never
  // serialize like a 12-element one.
  if (e.token_id != null) fields.push(e.token_id);
  return JSON.stringify(fields);
}

export function chainHash(prevHash: string, e: ChainEntry): string {
  return createHash('sha256').update(prevHash).update('\n').update(canonicalEntry(e)).digest('hex');
}

export type VerifyResult =
  | { readonly ok: true; readonly entries: number; readonly head: string }
  | { readonly ok: false; readonly entries: number; readonly seq: number; readonly problem: string };

/** Checks rows in ascending seq order, starting at seq 1 with the genesis hash. */
export function verifyChain(rows: Iterable<ChainedEntry>): VerifyResult {
  let prev = GENESIS_HASH;
  let expectSeq = 1;
  let n = 0;
  for (const r of rows) {
    if (r.seq !== expectSeq) return { ok: false, entries: n, seq: r.seq, problem: `expected entry ${expectSeq} next, found ${r.seq} (an entry was deleted or inserted)` };
    if (r.prev_hash !== prev) return { ok: false, entries: n, seq: r.seq, problem: 'prev_hash does not match the hash of the entry before it' };
    const h = chainHash(prev, r);
    if (h !== r.hash) return { ok: false, entries: n, seq: r.seq, problem: 'the entry does not match its hash (it was edited)' };
    prev = h;
    expectSeq++;
    n++;
  }
  return { ok: true, entries: n, head: prev };
}
