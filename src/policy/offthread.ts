/**
 * Loads a large policy without stalling the data plane. Parsing YAML is the slow part of a
 * 100k-rule policy (seconds); done on the gateway's thread it would freeze every live tunnel
 * for that long on each reload. A worker thread parses and validates it (with line positions
 * for any problem); the main thread then only validates and compiles the plain document it
 * gets back, which takes a fraction of the time. Small policies load in place: a worker costs
 * more to start than they take to parse.
 */
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import type { Problem } from '../core/errors.js';
import { plainPlacer, sha256, validateAndCompile, type LoadResult } from './compile.js';
import { loadPolicy, loadPolicyWithRaw, type LoadOptions } from './load.js';

/** Texts at least this long are parsed on a worker thread. */
export const OFFTHREAD_MIN_BYTES = 64 * 1024;

interface Job { readonly text: string; readonly opts: LoadOptions }
interface Reply { readonly ok: boolean; readonly problems: Problem[]; readonly warnings: Problem[]; readonly raw: unknown }

export async function loadPolicyOffThread(text: string, opts: LoadOptions = {}): Promise<LoadResult> {
  if (typeof text !== 'string' || text.length < OFFTHREAD_MIN_BYTES) return loadPolicy(text, opts);
  let reply: Reply;
  try {
    reply = await new Promise<Reply>((resolve, reject) => {
      const w = new Worker(new URL(import.meta.url), { workerData: { text, opts } satisfies Job });
      w.once('message', (m: Reply) => { resolve(m); void w.terminate(); });
      w.once('error', reject);
      w.once('exit', (code) => reject(new Error(`policy worker exited with code ${code}`)));
    });
  } catch {
    // A worker that cannot start (resource limits) must not stop a reload: parse in place.
    return loadPolicy(text, opts);
  }
  if (!reply.ok) return { ok: false, problems: reply.problems, warnings: reply.warnings };
  // The worker validated it already; compiling needs the same pure steps on this thread.
  const r = validateAndCompile(reply.raw, sha256(text), plainPlacer);
  return r.ok ? { ok: true, policy: r.policy, warnings: reply.warnings } : r;
}

if (!isMainThread && parentPort !== null && (workerData as Job | undefined)?.text !== undefined) {
  const job = workerData as Job;
  const { result, raw } = loadPolicyWithRaw(job.text, job.opts);
  const reply: Reply = result.ok
    ? { ok: true, problems: [], warnings: result.warnings, raw }
    : { ok: false, problems: result.problems, warnings: result.warnings, raw: null };
  parentPort.postMessage(reply);
}
