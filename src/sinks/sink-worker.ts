/** The network sinks' thread script (threaded.ts starts it; sink-thread.ts is what it runs). */
import { parentPort, workerData } from 'node:worker_threads';
import { runSinkThread, type SinkThreadPort } from './sink-thread.js';
import type { SinkThreadInit } from './thread-protocol.js';

if (parentPort === null) throw new Error('sink-worker.js runs as a worker thread');
runSinkThread(parentPort as unknown as SinkThreadPort, workerData as SinkThreadInit);
