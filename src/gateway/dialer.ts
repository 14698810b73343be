/**
 * Connects to the addresses that passed the checks, in order, within one overall deadline.
 * Only IP literals reach net.connect, so no lookup can happen here (DNS rebinding).
 */
import { connect, type Socket } from 'node:net';

export type DialResult =
  | { readonly ok: true; readonly socket: Socket; readonly address: string }
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
        resolve(left <= 0
          ? { ok: false, reason: 'connect_timeout', address: addresses[i - 2] ?? null, detail: 'timeout' }
          : { ok: false, reason: 'connect_failed', address: addresses[i - 2] ?? null, detail: lastErr });
        return;
      }
      const s = connect({ host: address, port, allowHalfOpen: true, noDelay: true });
      const timer = setTimeout(() => {
        s.destroy();
        lastErr = 'timeout';
        if (Date.now() >= deadline) resolve({ ok: false, reason: 'connect_timeout', address, detail: 'timeout' });
        else next();
      }, left);
      s.once('connect', () => {
        clearTimeout(timer);
        s.removeAllListeners('error');
        resolve({ ok: true, socket: s, address });
      });
      s.once('error', (err: NodeJS.ErrnoException) => {
        clearTimeout(timer);
        s.destroy();
        lastErr = err.code ?? 'error';
        next();
      });
    };
    next();
  });
}
