import { pino } from 'pino';
import { ChokepointError, formatProblem } from '../core/errors.js';
import { dataDirOf, loadConfig } from '../config/load.js';
import type { Config } from '../config/schema.js';
import { EventBus } from '../events/bus.js';
import { Gateway } from '../gateway/server.js';
import { startControlPlane } from './control-plane.js';
import { createEvidence } from './evidence.js';
import { ProxyThreads } from './proxy-threads.js';
import { VERSION } from './version.js';
import { warmUpDataPlane } from './warmup.js';

interface ServeFlags {
  config?: string;
  policy?: string;
  proxyListen?: string;
  proxyThreads?: string;
  proxyWarmup?: string;
  events?: string;
  logLevel?: string;
  controlListen?: string;
  mtlsListen?: string;
  dataDir?: string;
  database?: string;
}

export async function serveCommand(flags: ServeFlags): Promise<void> {
  // SIGHUP's default action ends the process: a log-rotation HUP that arrives while the gateway
  // starts (store, control plane, proxy threads: seconds) must not kill it. Until it is up,
  // nothing needs reloading: the policy it is loading is already the file's current one.
  let reloadOnHup = (): void => {};
  process.on('SIGHUP', () => reloadOnHup());
  // A stop asked for while the gateway starts is carried out (a drain, its events, exit 0) as
  // soon as it is up; the data plane's warm-up is cut short for it. A start that does not
  // finish within the shutdown deadline after the signal, or a second signal, ends the process
  // as the signal's default action would have.
  const starting = new AbortController();
  let stopAsked: NodeJS.Signals | null = null;
  let startDeadline: NodeJS.Timeout | undefined;
  let onStopSignal = (signal: NodeJS.Signals): void => {
    if (stopAsked !== null) return dieOf(signal);
    stopAsked = signal;
    starting.abort();
    startDeadline = setTimeout(() => dieOf(signal), config?.timeouts.shutdown ?? 30_000).unref();
  };
  process.on('SIGTERM', () => onStopSignal('SIGTERM'));
  process.on('SIGINT', () => onStopSignal('SIGINT'));
  let config: Config | undefined;
  try {
    const overrides = { policy: flags.policy, proxy_listen: flags.proxyListen, proxy_threads: flags.proxyThreads, proxy_warmup: flags.proxyWarmup, events: flags.events, log_level: flags.logLevel, control_listen: flags.controlListen, mtls_listen: flags.mtlsListen, data_dir: flags.dataDir, database: flags.database };
    config = loadConfig(flags.config, overrides);
  } catch (err) {
    if (err instanceof ChokepointError) {
      process.stderr.write(`chokepoint: ${err.message} [${err.code}]\n`);
      for (const p of err.problems) process.stderr.write(`  ${formatProblem(p)}\n`);
      if (err.cause instanceof Error) process.stderr.write(`  ${err.cause.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  const logger = pino({ level: config.log_level, base: { pid: process.pid } }, pino.destination(2));
  const bus = new EventBus({ onSubscriberError: (err) => logger.error({ err }, 'event subscriber failed') });
  // Sinks (events: / --events and sinks:), /metrics and the anomaly detectors (issue #5).
  let evidence;
  try {
    evidence = createEvidence({ config, bus, dataDir: dataDirOf(config), logger });
  } catch (err) {
    // A sink whose secret or TLS file cannot be read: refuse to start rather than run without it.
    if (!(err instanceof ChokepointError)) throw err;
    process.stderr.write(`chokepoint: ${err.message} [${err.code}]\n`);
    process.exit(2);
  }

  const observeResolver = (sec: number, result: 'ok' | 'error'): void => evidence.metrics.observeResolverLatency(sec, result);
  const gw = new Gateway({ config, bus, logger, observeResolver });
  evidence.metrics.setActiveTunnelsSource(() => gw.activeTunnels);
  // Store, first admin, policy from the store (or --policy FILE through it), control API.
  const control = await startControlPlane({ config, gw, bus, logger, plugins: [evidence.metricsPlugin], metrics: evidence.metrics });

  const { host, port } = config.proxy_listen;
  let bound;
  let threads: ProxyThreads | null = null;
  try {
    if (config.proxy_threads === 0) {
      await warmUpDataPlane(config, bus, logger, starting.signal);
      bound = await gw.listen(host, port, 'proxy');
    } else {
      threads = await ProxyThreads.start({
        gw, threads: config.proxy_threads, host, port, bus, logger, observeResolver,
        // A data-plane thread that died took its tunnels with it; its share of the limits'
        // counts can no longer be released. Stop (draining the others) rather than run on
        // with limits that only ever shrink; the supervisor restarts the gateway.
        onFatal: (err) => {
          logger.fatal({ err }, 'a proxy thread died: stopping the gateway');
          process.exitCode = 70;
          void stop('proxy-thread-died');
        },
      });
      bound = threads.address;
    }
  } catch (err) {
    process.stderr.write(`chokepoint: cannot listen on ${host}:${port}: ${(err as Error).message} [LISTEN_FAILED]\n`);
    process.exit(2);
  }
  const listeners = [`proxy ${bound.address}:${bound.port}`, ...(control.mtlsListener ? [control.mtlsListener] : []), control.listener];
  bus.publish({ v: 1, type: 'gateway.started', time: new Date().toISOString(), listeners, version: VERSION });
  logger.info({ listeners, proxy_threads: config.proxy_threads, policy: config.policy, version: VERSION }, 'chokepoint gateway started');
  if (process.platform === 'linux' && process.env.MALLOC_TRIM_THRESHOLD_ === undefined) {
    // Started as `node dist/src/cli.js` rather than bin/chokepoint: glibc will hand relay
    // buffers back to the kernel and fault them in again (see bin/chokepoint).
    logger.warn('MALLOC_TRIM_THRESHOLD_ is unset: start the gateway with bin/chokepoint (the package\'s `chokepoint` command) for full relay throughput');
  }

  reloadOnHup = () => void control.reload('SIGHUP');
  let stopping = false;
  const stop = async (signal: string): Promise<void> => {
    if (stopping) {
      gw.destroy(); // a second signal: stop waiting for tunnels
      threads?.destroy();
      return;
    }
    stopping = true;
    logger.info({ signal, tunnels: gw.activeTunnels, deadline_ms: config.timeouts.shutdown }, 'draining');
    bus.publish({ v: 1, type: 'gateway.stopping', time: new Date().toISOString(), listeners, version: VERSION });
    await Promise.all([gw.close(), threads?.close(config.timeouts.shutdown)]);
    await control.close();
    bus.publish({ v: 1, type: 'gateway.stopped', time: new Date().toISOString(), listeners, version: VERSION });
    // Sinks flush within the same deadline: a write that never returns (a hung network mount,
    // a FIFO nobody reads) must not keep a stopping gateway alive for ever.
    const closed = await Promise.race([
      evidence.close().then(() => true),
      new Promise<false>((r) => setTimeout(() => r(false), Math.max(1000, config.timeouts.shutdown))),
    ]);
    logger.flush();
    if (closed) process.exit(process.exitCode ?? 0);
    // Straight to stderr (synchronous for files and pipes): the logger may not get to write before the kill.
    process.stderr.write('chokepoint: sinks did not finish writing before the shutdown deadline; events still queued in them are lost\n');
    // Not process.exit(): at exit Node waits for libuv's thread pool, and the thread stuck in
    // the write (or the open of a FIFO nobody reads) never returns. A supervisor sees the kill.
    process.kill(process.pid, 'SIGKILL');
  };
  onStopSignal = (signal) => void stop(signal);
  clearTimeout(startDeadline);
  if (stopAsked !== null) void stop(stopAsked);
}

/** Ends the process by `signal`'s default action: handlers off, then the signal again. */
function dieOf(signal: NodeJS.Signals): void {
  process.removeAllListeners(signal);
  process.kill(process.pid, signal);
}
