/**
 * Child processes a test file starts (gateways, agents) are killed with it. The test runner
 * ends a file that overruns its timeout with SIGTERM, which skips every `finally` and `after`:
 * without this, the gateways it had started kept running (and holding ports and CPU) through
 * the rest of the suite and after it.
 */
import type { ChildProcess } from 'node:child_process';

const children = new Set<ChildProcess>();
let installed = false;

/** Kills `proc` if this test process is ended by a signal while it runs; returns it. */
export function killedWithTest<T extends ChildProcess>(proc: T): T {
  children.add(proc);
  proc.once('exit', () => children.delete(proc));
  if (!installed) {
    installed = true;
    for (const sig of ['SIGTERM', 'SIGINT'] as const) {
      process.once(sig, () => {
        for (const c of children) c.kill('SIGKILL');
        process.exit(1);
      });
    }
  }
  return proc;
}
