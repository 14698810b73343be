/**
 * The real sink thread, wrapped so that a test can make it die as a bug or an out-of-memory
 * would: the first batch carrying the marker `"crash.invalid"` ends the thread after the sinks
 * took the batch but before it is acknowledged.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { runSinkThread } from '../../src/sinks/sink-thread.js';
import type { FromSinkThread, SinkThreadInit, ToSinkThread } from '../../src/sinks/thread-protocol.js';

const port = parentPort;
let dying = false;
// `node --test dist/test/` also loads this file on the main thread, as a test file: nothing to do there.
if (port !== null) runSinkThread({
  on: (_event, fn) => port.on('message', (m: ToSinkThread) => {
    if (m.t === 'lines' && Buffer.from(m.data.buffer, m.data.byteOffset, m.data.byteLength).includes('"crash.invalid"')) dying = true;
    fn(m);
  }),
  postMessage: (m: FromSinkThread) => {
    if (dying && m.t === 'ack') process.exit(7);
    port.postMessage(m);
  },
}, workerData as SinkThreadInit);
