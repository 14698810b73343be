/**
 * Connects to the addresses that passed the checks, in order, within one overall deadline.
 * Only IP literals are dialled (dialTcp takes no names), so no lookup can happen here (DNS
 * rebinding).
 */
import { dialTcp, type RawSocket } from './raw-socket.js';

export type DialResult =
  | { readonly ok: true; readonly socket: RawSocket; readonly address: string }
  | { readonly ok: false; readonly reason: 'connect_failed' | 'connect_timeout'; readonly address: string | null; readonly detail: string };

export function dial(addresses: readonly string[], port: number, timeoutMs: number): Promise<DialResult> {
  const deadline = Date.now() + timeoutMs;
  return new Promise((resolve) => {
    let i = 0;
    let lastErr = 'no address';
    const next = (): void => {
      const address = addresses[i++];
      const left = deadline - Date.now();
      if (address === undefined || left <= 0) {
        // An attempt's timer runs to the overall deadline, so its firing is the deadline even
        // when Date.now() (wall clock) still reads a millisecond short of it (timers run on
        // libuv's monotonic clock): that was answered connect_failed, now and then.
        resolve(left <= 0 || lastErr === 'timeout'
          ? { ok: false, reason: 'connect_timeout', address: addresses[i - 2] ?? null, detail: 'timeout' }
          : { ok: false, reason: 'connect_failed', address: addresses[i - 2] ?? null, detail: lastErr });
        return;
      }
      const attempt = dialTcp(address, port, (err, socket) => {
        clearTimeout(timer);
        if (socket !== null) {
          resolve({ ok: true, socket, address });
          return;
        }
        lastErr = err?.code ?? 'error';
        next();
      });
      const timer = setTimeout(() => {
        attempt.abort();
        lastErr = 'timeout';
        if (Date.now() >= deadline) resolve({ ok: false, reason: 'connect_timeout', address, detail: 'timeout' });
        else next();
      }, left);
    };
    next();
  });
}
