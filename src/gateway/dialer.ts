/**
 * Connects to the addresses that passed the checks, in order, within one overall deadline.
 * Only IP literals are dialled (dialTcp takes no names), so no lookup can happen here (DNS
 * rebinding).
 */
import { dialTcp, type RawSocket } from './raw-socket.js';

/** Why a dial in flight was abandoned (ProxyConnection.abortDial): the deny reason it is recorded with. */
export type DialCut = 'shutting_down' | 'device_revoked';

export type DialResult =
  | { readonly ok: true; readonly socket: RawSocket; readonly address: string }
  | { readonly ok: false; readonly reason: 'connect_failed' | 'connect_timeout' | DialCut; readonly address: string | null; readonly detail: string };

/**
 * `signal`: aborting it abandons the attempt in flight (its reason, a DialCut, becomes the
 * result's): a shutdown or a revocation must not wait up to the connect timeout for a dial,
 * and its decision must be recorded before the gateway says it has stopped.
 */
export function dial(addresses: readonly string[], port: number, timeoutMs: number, signal?: AbortSignal): Promise<DialResult> {
  const deadline = Date.now() + timeoutMs;
  return new Promise((resolve) => {
    let i = 0;
    let lastErr = 'no address';
    let attempt: { abort(): void } | null = null;
    let timer: NodeJS.Timeout | null = null;
    let done = false;
    const finish = (r: DialResult): void => {
      if (done) return;
      done = true;
      if (timer !== null) clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      resolve(r);
    };
    const onAbort = (): void => {
      attempt?.abort();
      const cut: DialCut = signal?.reason === 'device_revoked' ? 'device_revoked' : 'shutting_down';
      finish({ ok: false, reason: cut, address: addresses[i - 1] ?? null, detail: 'connection attempt abandoned' });
    };
    if (signal?.aborted) {
      onAbort();
      return;
    }
    signal?.addEventListener('abort', onAbort, { once: true });
    const next = (): void => {
      const address = addresses[i++];
      const left = deadline - Date.now();
      if (address === undefined || left <= 0) {
        // An attempt's timer runs to the overall deadline, so its firing is the deadline even
        // when Date.now() (wall clock) still reads a millisecond short of it (timers run on
        // libuv's monotonic clock): that was answered connect_failed, now and then.
        finish(left <= 0 || lastErr === 'timeout'
          ? { ok: false, reason: 'connect_timeout', address: addresses[i - 2] ?? null, detail: 'timeout' }
          : { ok: false, reason: 'connect_failed', address: addresses[i - 2] ?? null, detail: lastErr });
        return;
      }
      attempt = dialTcp(address, port, (err, socket) => {
        if (timer !== null) clearTimeout(timer);
        if (socket !== null) {
          if (done) socket.destroy(); // abandoned meanwhile (cannot happen: abort() stops the callback)
          else finish({ ok: true, socket, address });
          return;
        }
        lastErr = err?.code ?? 'error';
        next();
      });
      timer = setTimeout(() => {
        attempt?.abort();
        lastErr = 'timeout';
        if (Date.now() >= deadline) finish({ ok: false, reason: 'connect_timeout', address, detail: 'timeout' });
        else next();
      }, left);
    };
    next();
  });
}
