import { createServer, type AddressInfo } from 'node:net';

/** A loopback TCP port free at the time of the call (for servers a test starts outside Node). */
export async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const p = (s.address() as AddressInfo).port;
  await new Promise((r) => s.close(r));
  return p;
}
