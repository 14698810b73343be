/**
 * A duplicate of a listening socket's descriptor, for a proxy thread that accepts from the
 * socket another thread bound (Node 20 has no SO_REUSEPORT).
 *
 * Why a duplicate and not the same number: every thread's handle closes its descriptor when the
 * thread ends or drains. With one shared number, the first thread to close it (one that died,
 * or drained first) would leave the others polling a closed number, which the next socket
 * opened anywhere in the process then reuses: measured, a surviving thread spun at 100% CPU and
 * a relayed request hung. Node can only duplicate a descriptor by passing it over an IPC
 * channel (SCM_RIGHTS), so a short-lived child process is handed the descriptor and sends it
 * back as a raw handle, which arrives as a new descriptor owned by the receiving thread alone.
 * The child never listens or accepts, so no connection can be lost to it.
 */
import { spawn } from 'node:child_process';

// `process.binding('tcp_wrap')`: the raw handle type Node's IPC sends as `net.Native`. Opening
// it on the inherited descriptor does not listen; it only wraps the descriptor for sending.
const CHILD = `
const { TCP, constants } = process.binding('tcp_wrap');
const h = new TCP(constants.SERVER);
const err = h.open(3);
if (err !== 0) { process.stderr.write('cannot wrap the listening descriptor: ' + err); process.exit(3); }
process.send('listener', h);
`;

/** Resolves with a raw listening handle on a new descriptor (pass it to `net.Server.listen`). */
export function duplicateListener(fd: number, timeoutMs = 10_000): Promise<object> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--no-warnings', '-e', CHILD], { stdio: ['ignore', 'ignore', 'pipe', fd, 'ipc'] });
    let handle: object | null = null;
    let stderr = '';
    child.stderr?.on('data', (c: Buffer) => { stderr += c.toString(); });
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('message', (_m, h) => {
      if (h !== undefined && h !== null && typeof h === 'object') handle = h;
      child.disconnect();
    });
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      if (handle !== null) resolve(handle);
      else reject(new Error(`could not duplicate the listening socket (helper exited ${signal ?? code}${stderr === '' ? '' : `: ${stderr.trim()}`})`));
    });
  });
}
