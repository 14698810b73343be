/**
 * Keeps the gateway's policy snapshot in step with the policy file: on start, on SIGHUP and
 * when the file changes (the directory is watched, so editors' and config managers' atomic
 * rename-into-place is seen). A policy that fails to load is reported and never replaces
 * the running one; with no valid policy at all the gateway denies everything.
 */
import { watch, type FSWatcher } from 'node:fs';
import { basename, dirname, resolve } from 'node:path';
import { formatProblem } from '../core/errors.js';
import type { EventBus } from '../events/bus.js';
import type { Gateway } from '../gateway/server.js';
import type { Logger } from '../gateway/logger.js';
import { loadPolicyFile } from '../policy/index.js';

export class PolicyReloader {
  readonly #file: string;
  #watcher: FSWatcher | null = null;
  #timer: NodeJS.Timeout | null = null;
  #running: Promise<void> = Promise.resolve();

  constructor(
    file: string,
    readonly gw: Gateway,
    readonly bus: EventBus,
    readonly logger: Logger,
  ) {
    this.#file = resolve(file);
  }

  /** Loads now; reloads are serialized so that the last file content wins. */
  reload(why: string): Promise<void> {
    this.#running = this.#running.then(() => this.#load(why));
    return this.#running;
  }

  async #load(why: string): Promise<void> {
    const r = await loadPolicyFile(this.#file);
    const time = new Date().toISOString();
    if (!r.ok) {
      const running = this.gw.policy?.digest ?? null;
      const problems = r.problems.map(formatProblem);
      this.logger.error({ file: this.#file, why, problems, running_digest: running }, running
        ? 'policy rejected; the running policy stays in force'
        : 'policy rejected; no valid policy is loaded, every request is denied');
      this.bus.publish({ v: 1, type: 'gateway.policy.rejected', time, source: this.#file, running_digest: running, problems });
      return;
    }
    if (this.gw.policy?.digest === r.policy.digest) return; // unchanged content (e.g. a touch)
    this.gw.setPolicy(r.policy);
    const warnings = r.warnings.map(formatProblem);
    this.logger.info({ file: this.#file, why, digest: r.policy.digest, groups: r.policy.groups.length, warnings }, 'policy loaded');
    this.bus.publish({ v: 1, type: 'gateway.policy.loaded', time, source: this.#file, digest: r.policy.digest, groups: r.policy.groups.length, warnings });
  }

  watch(): void {
    if (this.#watcher) return;
    const name = basename(this.#file);
    try {
      this.#watcher = watch(dirname(this.#file), { persistent: false }, (_event, f) => {
        if (f !== null && f.toString() !== name) return;
        // Debounce: writers often truncate then write, or write then rename.
        if (this.#timer) clearTimeout(this.#timer);
        this.#timer = setTimeout(() => {
          this.#timer = null;
          void this.reload('file changed');
        }, 150);
      });
      this.#watcher.on('error', (err) => this.logger.warn({ err }, 'policy file watch failed; SIGHUP still reloads'));
    } catch (err) {
      this.logger.warn({ err }, 'cannot watch the policy file; SIGHUP still reloads');
    }
  }

  close(): void {
    this.#watcher?.close();
    this.#watcher = null;
    if (this.#timer) clearTimeout(this.#timer);
  }
}
