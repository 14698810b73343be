/**
 * The plain proxy listener on more than one thread (`proxy_threads`). One JavaScript thread
 * cannot use more than one core: on a host with cores to spare, it is what limits the rate.
 * (Where the cores are already busy, threads add CPU per tunnel and lower it: README,
 * Performance.) Each data-plane thread runs its own Gateway (proxy-thread.ts):
 *
 * - one listening socket, accepted from by every thread (bound for them, then each listens on
 *   its own duplicate of the descriptor, listener-dup.ts; the kernel hands each connection to
 *   one of them);
 * - the policy compiled in each thread from the same model, sent on every change (the main
 *   thread's Gateway is the source: `followPolicy`);
 * - resolver cache and live tunnels per thread;
 * - limits counted in one SharedCounts for all threads and listeners;
 * - events batched to the main thread's bus, so sinks, metrics, detectors and the store see one
 *   stream, as from a single thread.
 *
 * The mTLS listener, revocation and certificate updates stay on the main thread.
 */
import type { AddressInfo } from 'node:net';
import { Worker } from 'node:worker_threads';
import type { Config } from '../config/schema.js';
import type { GatewayEvent } from '../events/catalogue.js';
import { eventFromJson } from '../events/json.js';
import type { Logger } from '../gateway/logger.js';
import type { Gateway, EventSink } from '../gateway/server.js';
import type { Model } from '../policy/analyze.js';
import { sourceOf } from '../policy/compile.js';
import { bindListener, closeHandle, handleFd } from './listener-dup.js';
import type { CompiledPolicy } from '../policy/types.js';

export interface PolicySource {
  readonly model: Model;
  readonly digest: string;
}

export interface ProxyThreadData {
  readonly config: Config;
  readonly counts: SharedArrayBuffer;
  readonly policy: PolicySource | null;
  readonly host: string;
  readonly port: number;
  readonly name: string;
  /** The bound socket's descriptor, held by the main thread while the threads start: each copies it. */
  readonly fd: number;
}

export type ToProxyThread =
  /** `seq` numbers the changes; the thread acknowledges each once it enforces it. */
  | { readonly t: 'policy'; readonly seq: number; readonly policy: PolicySource | null }
  | { readonly t: 'close'; readonly deadlineMs: number }
  | { readonly t: 'destroy' };

export type FromProxyThread =
  | { readonly t: 'listening'; readonly address: AddressInfo }
  | { readonly t: 'listen-error'; readonly message: string }
  /** Events as their JSON text (see proxy-thread.ts). */
  | { readonly t: 'events'; readonly events: string[]; readonly dns: number[] }
  | { readonly t: 'policy'; readonly seq: number; readonly digest: string | null }
  | { readonly t: 'closed' };

export interface ProxyThreadsOptions {
  /** The main thread's gateway: its policy, counts and configuration are the threads'. */
  readonly gw: Gateway;
  readonly threads: number;
  readonly host: string;
  readonly port: number;
  readonly name?: string;
  readonly bus: EventSink;
  readonly logger: Logger;
  readonly observeResolver?: (seconds: number, result: 'ok' | 'error') => void;
  /** A thread died: its tunnels are gone and its counts cannot be trusted; the caller stops the gateway. */
  readonly onFatal: (err: Error) => void;
}

interface Thread {
  readonly worker: Worker;
  closed: boolean;
  readonly done: Promise<void>;
  /** The last policy change (seq) this thread acknowledged. */
  applied: number;
}

export class ProxyThreads {
  readonly address: AddressInfo;
  readonly #threads: Thread[];
  readonly #logger: Logger;
  #stopping = false;

  private constructor(address: AddressInfo, threads: Thread[], logger: Logger) {
    this.address = address;
    this.#threads = threads;
    this.#logger = logger;
  }

  static async start(o: ProxyThreadsOptions): Promise<ProxyThreads> {
    const name = o.name ?? 'proxy';
    const policy = (): PolicySource | null => toSource(o.gw.policy, o.logger);
    const threads: Thread[] = [];
    let owner: ProxyThreads | null = null;
    // Following before the first thread starts: the control plane (file watcher, API) is already
    // running, and a policy applied while threads start must reach them too. A thread gets the
    // policy of the moment it is spawned, then every later one in order (a worker's port queues
    // messages until its thread reads them).
    let seq = 0;
    const waiters: { seq: number; resolve: () => void }[] = [];
    const settle = (): void => {
      for (const w of [...waiters]) {
        if (threads.every((t) => t.closed || t.applied >= w.seq)) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve();
        }
      }
    };
    const unfollow = o.gw.followPolicy(() => {
      const m: ToProxyThread = { t: 'policy', seq: ++seq, policy: policy() };
      for (const t of threads) if (!t.closed) t.worker.postMessage(m);
      // Resolves once every live thread enforces it: the control plane reports a change as
      // applied only then (a thread still on the old policy would allow what it no longer does).
      // A thread that does not answer (stuck) must not hold the control plane for ever.
      return new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          o.logger.error({ seq: m.seq }, 'a proxy thread has not acknowledged a policy change after 30 s');
          resolve();
        }, 30_000);
        timer.unref();
        waiters.push({ seq: m.seq, resolve: () => { clearTimeout(timer); resolve(); } });
        settle();
      });
    });
    const spawn = (fd: number): Promise<{ address: AddressInfo }> => {
      const data: ProxyThreadData = { config: o.gw.config, counts: o.gw.counts.buffer, policy: policy(), host: o.host, port: o.port, name, fd };
      const worker = new Worker(new URL('./proxy-thread.js', import.meta.url), { workerData: data });
      const id = worker.threadId; // -1 once it has exited
      let closed!: () => void;
      // A thread starts with the policy of this moment, which every change so far produced.
      const t: Thread = { worker, closed: false, done: new Promise<void>((r) => { closed = r; }), applied: seq };
      threads.push(t);
      return new Promise((resolve, reject) => {
        worker.on('message', (m: FromProxyThread) => {
          switch (m.t) {
            case 'events':
              for (const text of m.events) o.bus.publish(eventFromJson(text) as GatewayEvent);
              for (let i = 0; i + 1 < m.dns.length; i += 2) o.observeResolver?.(m.dns[i] as number, m.dns[i + 1] === 1 ? 'ok' : 'error');
              break;
            case 'listening': resolve(m); break;
            case 'listen-error': reject(new Error(m.message)); break;
            case 'policy':
              t.applied = m.seq;
              o.logger.debug({ thread: id, digest: m.digest }, 'proxy thread applied the policy');
              settle();
              break;
            case 'closed': t.closed = true; closed(); settle(); break;
          }
        });
        const died = (err: Error): void => {
          if (o.gw.counts.releaseIfHeldBy(id)) o.logger.error({ thread: id }, 'a proxy thread ended holding the limits\' lock: freed');
          t.closed = true;
          closed();
          settle();
          reject(err);
          if (owner !== null && !owner.#stopping) o.onFatal(err);
        };
        worker.on('error', (err) => died(err));
        worker.on('exit', (code) => died(new Error(`proxy thread ${id} exited (code ${code})`)));
      });
    };
    // Bound here and held until every thread has its own copy (listener-dup.ts).
    let bound: object;
    try {
      bound = await bindListener(o.host, o.port);
    } catch (err) {
      unfollow();
      throw err;
    }
    try {
      const fd = handleFd(bound);
      const up = await Promise.all(Array.from({ length: o.threads }, () => spawn(fd)));
      // A thread that died after it reported listening: a start-up failure, not a silent loss.
      if (threads.some((t) => t.closed)) throw new Error('a proxy thread ended while the threads were starting');
      owner = new ProxyThreads((up[0] as { address: AddressInfo }).address, threads, o.logger);
    } catch (err) {
      // A failed start leaves nothing behind: no threads, and no follower posting to them.
      unfollow();
      for (const t of threads) void t.worker.terminate();
      throw err;
    } finally {
      closeHandle(bound);
    }
    return owner;
  }

  get threads(): number {
    return this.#threads.length;
  }

  /** The threads' workers (diagnostics, tests). */
  get workers(): readonly Worker[] {
    return this.#threads.map((t) => t.worker);
  }

  /**
   * Drains every thread (stop accepting, let tunnels finish until the deadline, cut the rest).
   * A thread that has not reported its end a few seconds past the deadline (stuck: say, waiting
   * for ever on the counts' lock that a dead thread held) is terminated, so that a stop always
   * ends; the events of its last tunnels are then lost, and the log says so.
   */
  async close(deadlineMs: number, graceMs = 5000): Promise<void> {
    this.#stopping = true;
    const m: ToProxyThread = { t: 'close', deadlineMs };
    for (const t of this.#threads) if (!t.closed) t.worker.postMessage(m);
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<'late'>((r) => { timer = setTimeout(() => r('late'), deadlineMs + graceMs); });
    const ended = await Promise.race([Promise.all(this.#threads.map((t) => t.done)), late]);
    clearTimeout(timer);
    if (ended === 'late') {
      for (const t of this.#threads) {
        if (t.closed) continue;
        this.#logger.error({ thread: t.worker.threadId }, 'a proxy thread did not finish draining: terminated; events of its last tunnels are lost');
        await t.worker.terminate();
      }
      return;
    }
    // Drained and idle; unreferenced, they end with the process (after the sinks' last writes).
    for (const t of this.#threads) t.worker.unref();
  }

  /** Cuts everything now (a second stop signal). */
  destroy(): void {
    this.#stopping = true;
    const m: ToProxyThread = { t: 'destroy' };
    for (const t of this.#threads) if (!t.closed) t.worker.postMessage(m);
  }
}

/** The plain model behind a compiled policy; a policy without one is sent as none (deny all: fails closed). */
function toSource(p: CompiledPolicy | null, logger: Logger): PolicySource | null {
  if (p === null) return null;
  const s = sourceOf(p);
  if (s === null) logger.error({ digest: p.digest }, 'policy has no model to send to the proxy threads: they deny everything');
  return s;
}
