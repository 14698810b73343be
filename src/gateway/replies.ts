/**
 * What the client sees when it is refused before a tunnel opens (DESIGN §2): a readable
 * HTTP answer with the reason code and event id in headers and a short JSON body that says
 * what an operator would change. Internal error text never reaches the wire: only the
 * reason's fixed hint and the parser's fixed detail strings do.
 */
import type { ProxySocket } from './raw-socket.js';
import { STATUS_CODES } from 'node:http';
import { REASONS, type Reason } from '../core/reasons.js';

export const CONNECT_ESTABLISHED = Buffer.from('HTTP/1.1 200 Connection established\r\n\r\n', 'latin1');

export function denyResponse(opts: {
  reason: Reason;
  id: string;
  destination: string | null;
  detail?: string | null;
  status?: number;
}): Buffer {
  const row = REASONS[opts.reason];
  const status = opts.status ?? row.status;
  const body = JSON.stringify({
    code: opts.reason,
    message: row.hint,
    destination: opts.destination,
    ...(opts.detail ? { detail: opts.detail } : {}),
    id: opts.id,
  });
  const head =
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Error'}\r\n` +
    `x-chokepoint-reason: ${opts.reason}\r\n` +
    `x-chokepoint-id: ${opts.id}\r\n` +
    'content-type: application/json\r\n' +
    'cache-control: no-store\r\n' +
    `content-length: ${Buffer.byteLength(body)}\r\n` +
    'connection: close\r\n\r\n';
  return Buffer.from(head + body, 'utf8');
}

/**
 * Ends our side after a final answer and keeps reading (and discarding) for a moment, so the
 * answer is not destroyed by a TCP reset when the client is still sending a body: closing a
 * socket with unread data makes the kernel send RST, which can discard our response at the
 * client (the "lingering close" of RFC 9112 §9.6).
 */
export function lingerClose(socket: ProxySocket, data: Buffer | null, lingerMs = 2000): void {
  if (socket.destroyed) return;
  socket.removeAllListeners('data');
  socket.removeAllListeners('timeout');
  socket.on('data', () => {});
  socket.on('error', () => {});
  // A hard deadline, not an idle timeout: a client that sends a byte now and then would
  // otherwise keep a refused connection (and its slot in max_connections) open for ever.
  socket.setTimeout(0);
  const deadline = setTimeout(() => socket.destroy(), lingerMs);
  deadline.unref();
  socket.once('close', () => clearTimeout(deadline));
  socket.on('end', () => socket.destroy());
  if (data) socket.end(data);
  else socket.end();
  socket.resume();
}
