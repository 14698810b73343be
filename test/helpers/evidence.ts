/** Small helpers the evidence pipeline's tests (sinks, their thread, RELP, createEvidence) share. */
import { parseConfig } from '../../src/config/load.js';
import type { Config } from '../../src/config/schema.js';

/** A validated configuration from a plain object (throws with the problems otherwise). */
export function config(obj: Record<string, unknown>): Config {
  const r = parseConfig(JSON.stringify(obj));
  if (!r.ok) throw new Error(JSON.stringify(r.problems));
  return r.config;
}

/** Polls `pred` every 20 ms; fails with `what` after `ms`. */
export async function until(pred: () => boolean, what: string, ms = 30_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
