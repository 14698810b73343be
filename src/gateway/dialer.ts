/**
 * Connects to the addresses that passed the checks, in order, within one overall deadline.
 * Only IP literals are dialled (dialTcp takes no names), so no lookup can happen here (DNS
 * rebinding).
 */
import { dialTcp, type RawSocket } from './raw-socket.js';

/** Why a dial in flight was abandoned (DialHolder.cancelDial): the deny reason it is recorded with. */
export type DialCut = 'shutting_down' | 'device_revoked';

/**
 * Who may abandon a dial in flight (the client connection): dial() sets `cancelDial` while it
 * runs and clears it when it ends. A shutdown or a revocation must not wait up to the connect
 * timeout for a dial, and its decision must be recorded before the gateway says it has stopped.
 * (A plain field, not an AbortSignal: every short tunnel dials, and an AbortController with its
 * event listener would be allocated, added and removed for each.)
 */
export interface DialHolder {
  cancelDial: ((cut: DialCut) => void) | null;
}

export type DialResult =
  | { readonly ok: true; readonly socket: RawSocket; readonly address: string }
  | { readonly ok: false; readonly reason: 'connect_failed' | 'connect_timeout' | DialCut; readonly address: string | null; readonly detail: string };

export function dial(addresses: readonly string[], port: number, timeoutMs: number, holder?: DialHolder): Promise<DialResult> {
  const deadline = Date.now() + timeoutMs;
  return new Promise((resolve) => {
    let i = 0;
    let lastErr = 'no address';
    let attempt: { abort(): void } | null = null;
    let timer: NodeJS.Timeout | null = null;
    let done = false;
    const cancel = (cut: DialCut): void => {
      attempt?.abort();
      finish({ ok: false, reason: cut, address: addresses[i - 1] ?? null, detail: 'connection attempt abandoned' });
    };
    const finish = (r: DialResult): void => {
      if (done) return;
      done = true;
      if (timer !== null) clearTimeout(timer);
      if (holder !== undefined && holder.cancelDial === cancel) holder.cancelDial = null;
      resolve(r);
    };
    if (holder !== undefined) holder.cancelDial = cancel;
    const next = (): void => {
      const address = addresses[i++];
      const left = deadline - Date.now();
      if (address === undefined || left <= 0) {
        finish(left <= 0
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
      // The attempt's timer runs to the overall deadline, so its firing is the deadline: no
      // address is left time to try. (Asking Date.now() instead answered connect_failed now and
      // then: timers run on libuv's cached monotonic clock, a millisecond ahead of the wall's.)
      timer = setTimeout(() => {
        attempt?.abort();
        finish({ ok: false, reason: 'connect_timeout', address, detail: 'timeout' });
      }, left);
    };
    next();
  });
}
