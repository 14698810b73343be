/**
 * The proxy threads' listening socket: bound once, and one duplicate descriptor per thread
 * (Node 20 has no SO_REUSEPORT, so threads share one socket to spread connections).
 *
 * Why duplicates and not the same number: every thread's handle closes its descriptor when the
 * thread ends or drains. With one shared number, the first thread to close it (one that died,
 * or drained first) would leave the others polling a closed number, which the next socket
 * opened anywhere in the process then reuses: measured, a surviving thread spun at 100% CPU and
 * a relayed request hung.
 *
 * The main thread binds the socket in-process (bindTcp; no listen) and holds it while the
 * threads start: a thread that dies during start-up cannot take the socket the others still
 * need to copy. Node can only duplicate a descriptor by passing it over an IPC channel
 * (SCM_RIGHTS), so for each thread a short-lived child process is given that descriptor and
 * sends it back as a raw handle, which arrives as a new descriptor owned by the receiving
 * thread alone; the thread then listens on its copy (the first listen() puts the socket in
 * LISTEN state).
 * The child never listens or accepts, so no connection can be lost to it, and it is killed as
 * soon as the handle arrives. It runs without NODE_OPTIONS: a preload (an APM agent) could keep
 * it alive, and a live child would hold the socket after the gateway ends.
 */
import { spawn } from 'node:child_process';
import { bindTcp, listenAddress } from '../gateway/raw-socket.js';

// `process.binding('tcp_wrap')`: the raw handle type Node's IPC sends as `net.Native` (DEP0111,
// a documentation-only deprecation; src/gateway/uv.ts). Wrapping a socket with it does not listen.
const CHILD = `
const { TCP, constants } = process.binding('tcp_wrap');
const h = new TCP(constants.SERVER);
const err = h.open(3);
if (err !== 0) {
  const { getSystemErrorName } = require('node:util');
  process.stderr.write(getSystemErrorName(err));
  process.exit(3);
}
process.send('listener', h);
`;

function viaHelper(fd: number, timeoutMs: number): Promise<object> {
  return new Promise((resolve, reject) => {
    const env = { ...process.env };
    delete env.NODE_OPTIONS;
    const stdio: ('ignore' | 'pipe' | 'ipc' | number)[] = ['ignore', 'ignore', 'pipe', fd, 'ipc'];
    const child = spawn(process.execPath, ['--no-warnings', '-e', CHILD], { stdio, env });
    let settled = false;
    let stderr = '';
    child.stderr?.on('data', (c: Buffer) => { stderr += c.toString(); });
    const timer = setTimeout(() => finish(new Error(`the listening-socket helper did not answer within ${timeoutMs} ms`)), timeoutMs);
    const finish = (err: Error | null, handle?: object): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      // The handle has arrived (or never will): the child has nothing left to do.
      child.kill('SIGKILL');
      if (err !== null) reject(err);
      else resolve(handle as object);
    };
    // Settled on the message itself: the child's exit can be reported before its last message is read.
    child.on('message', (_m, h) => {
      if (h !== undefined && h !== null && typeof h === 'object') finish(null, h);
    });
    child.once('error', (err) => finish(err));
    // 'close' comes after every message and stdio stream: anything sent has been received by then.
    child.once('close', (code, signal) => finish(new Error(`the listening-socket helper ended (${signal ?? `exit ${code}`})${stderr === '' ? '' : `: ${stderr.trim()}`}`)));
  });
}

/** A socket bound to host:port (not yet listening), as a raw handle held by this thread. */
export async function bindListener(host: string, port: number): Promise<object> {
  return bindTcp(await listenAddress(host), port);
}

/** A raw handle on a new descriptor for the same socket as `fd` (for Gateway.listen's `from`). */
export function duplicateListener(fd: number, timeoutMs = 10_000): Promise<object> {
  return viaHelper(fd, timeoutMs);
}

/** The descriptor of a raw handle received from bindListener(). */
export function handleFd(handle: object): number {
  const fd = (handle as { fd?: unknown }).fd;
  if (typeof fd !== 'number' || fd < 0) throw new Error('the listening handle has no descriptor');
  return fd;
}

/** Closes this thread's copy of the socket (the threads' copies keep it open). */
export function closeHandle(handle: object): void {
  (handle as { close?: () => void }).close?.();
}
