/**
 * `serve --policy FILE` with a store: the file is read on start, on change and on SIGHUP; a valid
 * file whose content differs from the applied version becomes a new version (author
 * `file:<path>`) and is applied — unless the two-person rule holds it for approval. A file that
 * fails to load never replaces the running policy (the same contract as the plain reloader).
 */
import { watch, type FSWatcher } from 'node:fs';
import { stat } from 'node:fs/promises';
import { basename, dirname, resolve } from 'node:path';
import type { Logger as PinoLogger } from 'pino';
import { formatProblem } from '../core/errors.js';
import type { ControlContext } from '../control/context.js';
import { syncFromFile } from '../control/policy-ops.js';
import type { EventBus } from '../events/bus.js';
import type { Gateway } from '../gateway/server.js';
import { loadPolicyFile } from '../policy/index.js';

const MAX_PROBLEMS = 50;
const MAX_PROBLEM_CHARS = 400;
/** How long the policy file must stay unchanged before a reload reads it, and how often to wait for that. */
const SETTLE_MS = 300;
const SETTLE_TRIES = 20;

export class FilePolicySync {
  readonly #file: string;
  #watcher: FSWatcher | null = null;
  #timer: NodeJS.Timeout | null = null;
  #running: Promise<void> = Promise.resolve();

  constructor(readonly o: { file: string; ctx: ControlContext; gw: Gateway; bus: EventBus; logger: PinoLogger }) {
    this.#file = resolve(o.file);
  }

  reload(why: string): Promise<void> {
    this.#running = this.#running.then(() => this.#load(why)).catch((err: unknown) => {
      this.o.logger.error({ err, file: this.#file, why }, 'policy file sync failed (store unavailable?); the running policy stays in force');
    });
    return this.#running;
  }

  async #load(why: string): Promise<void> {
    const { gw, bus, logger, ctx } = this.o;
    const r = await loadPolicyFile(this.#file);
    if (!r.ok) {
      const running = gw.policy?.digest ?? null;
      // Bounded: the problems quote the offending values, and a large broken file would make
      // one event too large for some sinks (a UDP syslog datagram) to carry.
      const all = r.problems.map((p) => { const t = formatProblem(p); return t.length > MAX_PROBLEM_CHARS ? `${t.slice(0, MAX_PROBLEM_CHARS)}…` : t; });
      const problems = all.length > MAX_PROBLEMS ? [...all.slice(0, MAX_PROBLEMS), `… and ${all.length - MAX_PROBLEMS} more (chokepoint policy check lists them all)`] : all;
      logger.error({ file: this.#file, why, problems, running_digest: running }, running
        ? 'policy rejected; the running policy stays in force'
        : 'policy rejected; no valid policy is loaded, every request is denied');
      bus.publish({ v: 1, type: 'gateway.policy.rejected', time: new Date().toISOString(), source: this.#file, running_digest: running, problems });
      return;
    }
    if (gw.policy?.digest === r.policy.digest) return; // unchanged content (e.g. a touch)
    // The bytes that were checked, not a second read that may have changed meanwhile.
    const result = await syncFromFile(ctx, this.#file, r.text as string);
    if (result === 'awaiting_approval') {
      logger.warn({ file: this.#file, why }, 'policy file proposed as a new version; it awaits approval by a security-admin (two-person rule) and is not applied yet');
    }
  }

  watch(): void {
    if (this.#watcher) return;
    const name = basename(this.#file);
    try {
      this.#watcher = watch(dirname(this.#file), { persistent: false }, (_event, f) => {
        if (f !== null && f.toString() !== name) return;
        if (this.#timer) clearTimeout(this.#timer);
        this.#timer = setTimeout(() => { this.#timer = null; void this.#whenSettled(); }, 150);
      });
      this.#watcher.on('error', (err) => this.o.logger.warn({ err }, 'policy file watch failed; SIGHUP still reloads'));
    } catch (err) {
      this.o.logger.warn({ err }, 'cannot watch the policy file; SIGHUP still reloads');
    }
  }

  /**
   * Reloads once the file has stopped changing: an editor or a script writing it in several
   * steps leaves a prefix that may be valid YAML without the deny rules that come later, and
   * applying it would open what they close until the write finishes. Size and modification
   * time must be the same across SETTLE_MS. (Writing a temporary file and renaming it over the
   * policy is the only way with no window at all; the README says so.)
   */
  async #whenSettled(): Promise<void> {
    const look = () => stat(this.#file).then((s) => `${s.size}:${s.mtimeMs}:${s.ino}`, () => 'missing');
    let before = await look();
    for (let i = 0; i < SETTLE_TRIES; i++) {
      await new Promise((r) => setTimeout(r, SETTLE_MS));
      const now = await look();
      if (now === before) break;
      before = now;
    }
    await this.reload('file changed');
  }

  close(): void {
    this.#watcher?.close();
    this.#watcher = null;
    if (this.#timer) clearTimeout(this.#timer);
  }
}
