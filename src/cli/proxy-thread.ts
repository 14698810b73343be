/**
 * One data-plane thread (proxy-threads.ts starts them): a Gateway serving the plain proxy
 * listener, with its own policy matcher, resolver cache and tunnels, and the limits' counts in
 * memory shared with every other thread. Its events go to the main thread's bus in batches,
 * once per turn of this thread's event loop, so that the relay never waits for evidence.
 */
import { parentPort, workerData, threadId } from 'node:worker_threads';
import { pino } from 'pino';
import type { Config } from '../config/schema.js';
import { jsonOf } from '../events/json.js';
import { Gateway, type EventSink } from '../gateway/server.js';
import { SharedCounts } from '../gateway/shared-counts.js';
import { compileModel } from '../policy/compile.js';
import { duplicateListener } from './listener-dup.js';
import { warmUpDataPlane } from './warmup.js';
import type { CompiledPolicy } from '../policy/types.js';
import type { ProxyThreadData, ToProxyThread, FromProxyThread, PolicySource } from './proxy-threads.js';

const data = workerData as ProxyThreadData;
const port = parentPort;
if (port === null) throw new Error('proxy-thread.js runs as a worker thread');
const config = data.config as Config;
const logger = pino({ level: config.log_level, base: { pid: process.pid, thread: threadId } }, pino.destination(2));

// Events cross as their JSON text, serialized here rather than on the busier main thread: the
// sinks need that text anyway, and the main thread parses it and remembers it as the event's
// JSON (eventFromJson), so it is not serialized twice. (Against cloning the objects, the CPU per
// tunnel measured the same within noise.)
let batch: string[] = [];
let dns: number[] = [];
let scheduled = false;
const flush = (): void => {
  scheduled = false;
  if (batch.length === 0 && dns.length === 0) return;
  const m: FromProxyThread = { t: 'events', events: batch, dns };
  batch = [];
  dns = [];
  port.postMessage(m);
};
const later = (): void => {
  if (!scheduled) {
    scheduled = true;
    setImmediate(flush);
  }
};

function compiled(p: PolicySource | null): CompiledPolicy | null {
  return p === null ? null : compileModel(p.model, p.digest).policy;
}

const bus: EventSink = { publish: (e) => { batch.push(jsonOf(e)); later(); } };
const gw = new Gateway({
  config,
  logger,
  counts: new SharedCounts(data.counts, threadId),
  policy: compiled(data.policy),
  bus,
  // Seconds and 1/0 for ok/error, in pairs: the metrics live on the main thread.
  observeResolver: (sec, result) => { dns.push(sec, result === 'ok' ? 1 : 0); later(); },
});

port.on('message', (m: ToProxyThread) => {
  switch (m.t) {
    case 'policy': {
      gw.setPolicy(compiled(m.policy));
      const ack: FromProxyThread = { t: 'policy', seq: m.seq, digest: m.policy?.digest ?? null };
      port.postMessage(ack);
      break;
    }
    case 'close':
      void gw.close(m.deadlineMs).then(settle);
      break;
    case 'destroy':
      gw.destroy();
      void settle();
      break;
  }
});

/** Waits (briefly) for the cut tunnels' sockets to close so their events are in the last batch. */
async function settle(): Promise<void> {
  for (let i = 0; i < 100 && gw.connections.size > 0; i++) await new Promise((r) => setTimeout(r, 10));
  await new Promise((r) => setImmediate(r));
  flush();
  const m: FromProxyThread = { t: 'closed' };
  port?.postMessage(m);
}

try {
  await warmUpDataPlane(config, bus, logger);
  // Every thread listens on its own duplicate of the socket the main thread bound.
  const address = await gw.listen(data.host, data.port, data.name, { handle: await duplicateListener(data.fd) });
  const m: FromProxyThread = { t: 'listening', address };
  port.postMessage(m);
} catch (err) {
  const m: FromProxyThread = { t: 'listen-error', message: (err as Error).message };
  port.postMessage(m);
}
