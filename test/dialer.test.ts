/**
 * The dialer (src/gateway/dialer.ts): addresses in order within one deadline, and the reason
 * each way of failing is recorded with. Real sockets on loopback.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type AddressInfo } from 'node:net';
import { dial, type DialHolder } from '../src/gateway/dialer.js';
import { startFullBacklog } from './helpers/origins.js';

async function listening(): Promise<{ port: number; close(): void }> {
  const srv = createServer((s) => s.destroy());
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  return { port: (srv.address() as AddressInfo).port, close: () => srv.close() };
}

describe('dial', () => {
  it('moves on to the next address when one refuses, and connects to the one that accepts', async () => {
    const o = await listening();
    try {
      // Nothing listens on 127.0.0.2 at this port (the origin is bound to 127.0.0.1 only).
      const r = await dial(['127.0.0.2', '127.0.0.1'], o.port, 2000);
      assert.equal(r.ok, true);
      if (r.ok) {
        assert.equal(r.address, '127.0.0.1');
        r.socket.destroy();
      }
    } finally {
      o.close();
    }
  });

  it('answers connect_failed with the last error when every address refuses', async () => {
    const o = await listening();
    o.close(); // the port is now free: nothing accepts on it
    const r = await dial(['127.0.0.2', '127.0.0.1'], o.port, 2000);
    assert.deepEqual(r.ok ? null : { reason: r.reason, address: r.address, detail: r.detail }, { reason: 'connect_failed', address: '127.0.0.1', detail: 'ECONNREFUSED' });
  });

  it('answers connect_timeout at the deadline when an address never accepts, without trying past it', async () => {
    const { port, close } = await startFullBacklog();
    try {
      const r = await dial(['127.0.0.1', '127.0.0.1'], port, 300);
      assert.deepEqual(r.ok ? null : { reason: r.reason, address: r.address }, { reason: 'connect_timeout', address: '127.0.0.1' });
    } finally {
      close();
    }
  });

  it('is abandoned through its holder with the cut as its reason, and lets go of the holder', async () => {
    const { port, close } = await startFullBacklog();
    try {
      const holder: DialHolder = { cancelDial: null };
      const p = dial(['127.0.0.1'], port, 10_000, holder);
      assert.equal(typeof holder.cancelDial, 'function');
      holder.cancelDial?.('shutting_down');
      const r = await p;
      assert.equal(r.ok ? null : r.reason, 'shutting_down');
      assert.equal(holder.cancelDial, null);
    } finally {
      close();
    }
  });
});
