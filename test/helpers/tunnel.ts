import { connect, type Socket } from 'node:net';

/**
 * Opens a CONNECT tunnel and returns the bare socket positioned after the 200 answer, with
 * no listeners left on it (so TLS can be layered on top), or the deny head.
 */
export function openTunnel(proxyPort: number, target: string): Promise<{ socket: Socket; status: number; head: string }> {
  return new Promise((resolve, reject) => {
    const s = connect({ port: proxyPort, host: '127.0.0.1' }, () => {
      s.write(`CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n\r\n`);
    });
    let buf = Buffer.alloc(0);
    const onData = (c: Buffer): void => {
      buf = Buffer.concat([buf, c]);
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      s.off('data', onData);
      s.off('error', reject);
      s.pause();
      const head = buf.subarray(0, end).toString('latin1');
      const rest = buf.subarray(end + 4);
      if (rest.length > 0) s.unshift(rest);
      resolve({ socket: s, status: Number(head.split(' ')[1]), head });
    };
    s.on('data', onData);
    s.on('error', reject);
  });
}

/** Reads until the peer closes; returns everything received. */
export function readAll(s: Socket, ms = 5000): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const t = setTimeout(() => reject(new Error(`readAll timeout; got ${Buffer.concat(chunks).toString('latin1')}`)), ms);
    s.on('data', (c: Buffer) => chunks.push(c));
    s.on('error', () => {});
    s.on('close', () => {
      clearTimeout(t);
      resolve(Buffer.concat(chunks));
    });
    s.resume();
  });
}
