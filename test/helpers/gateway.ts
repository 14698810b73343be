/**
 * Starts a real gateway in-process on a loopback port with a policy text and captures its
 * events, and a raw client that speaks bytes to it.
 */
import { connect, type Socket } from 'node:net';
import { parseConfig } from '../../src/config/load.js';
import type { ConfigInput } from '../../src/config/schema.js';
import { EventBus } from '../../src/events/bus.js';
import type { DecisionEvent, ChokepointEvent, TunnelClosedEvent } from '../../src/events/catalogue.js';
import { silentLogger } from '../../src/gateway/logger.js';
import { Gateway } from '../../src/gateway/server.js';
import { loadPolicy } from '../../src/policy/index.js';

export interface TestGateway {
  readonly gw: Gateway;
  readonly bus: EventBus;
  readonly port: number;
  readonly proxy: string; // http://127.0.0.1:PORT
  readonly events: ChokepointEvent[];
  decisions(): DecisionEvent[];
  closes(): TunnelClosedEvent[];
  /** Resolves with the decision event for `id`, or the next one. */
  waitDecision(pred?: (e: DecisionEvent) => boolean, ms?: number): Promise<DecisionEvent>;
  /** Any event of this type matching pred (already seen or to come). */
  waitFor(type: ChokepointEvent['type'], pred?: (e: Record<string, unknown>) => boolean, ms?: number): Promise<ChokepointEvent>;
  waitClosed(pred?: (e: TunnelClosedEvent) => boolean, ms?: number): Promise<TunnelClosedEvent>;
  setPolicy(text: string): void;
  close(): Promise<void>;
}

export function compile(text: string) {
  const r = loadPolicy(text);
  if (!r.ok) throw new Error(`test policy invalid: ${JSON.stringify(r.problems)}`);
  return r.policy;
}

export async function startGateway(policyText: string | null, config: Record<string, unknown> = {}): Promise<TestGateway> {
  const c = parseConfig(null, {});
  if (!c.ok) throw new Error('default config invalid');
  const merged = parseConfigObject(config);
  const bus = new EventBus();
  const events: ChokepointEvent[] = [];
  const waiters: { pred: (e: ChokepointEvent) => boolean; resolve: (e: ChokepointEvent) => void }[] = [];
  bus.subscribe((e) => {
    events.push(e);
    for (const w of [...waiters]) {
      if (w.pred(e)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(e);
      }
    }
  });
  const gw = new Gateway({ config: merged, bus, logger: silentLogger, policy: policyText === null ? null : compile(policyText) });
  const addr = await gw.listen('127.0.0.1', 0);
  const wait = <T extends ChokepointEvent>(type: T['type'], pred: (e: T) => boolean, ms: number): Promise<T> => {
    const found = events.find((e) => e.type === type && pred(e as T));
    if (found) return Promise.resolve(found as T);
    return new Promise<T>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`no ${type} event within ${ms}ms; have: ${JSON.stringify(events)}`)), ms);
      waiters.push({
        pred: (e) => e.type === type && pred(e as T),
        resolve: (e) => {
          clearTimeout(t);
          resolve(e as T);
        },
      });
    });
  };
  return {
    gw,
    bus,
    port: addr.port,
    proxy: `http://127.0.0.1:${addr.port}`,
    events,
    decisions: () => events.filter((e): e is DecisionEvent => e.type === 'gateway.decision'),
    closes: () => events.filter((e): e is TunnelClosedEvent => e.type === 'gateway.tunnel.closed'),
    waitDecision: (pred = () => true, ms = 5000) => wait<DecisionEvent>('gateway.decision', pred, ms),
    waitFor: (type, pred = () => true, ms = 5000) => wait(type, (e) => pred(e as unknown as Record<string, unknown>), ms),
    waitClosed: (pred = () => true, ms = 5000) => wait<TunnelClosedEvent>('gateway.tunnel.closed', pred, ms),
    setPolicy: (text) => gw.setPolicy(compile(text)),
    close: async () => {
      gw.destroy();
      await gw.close(0);
    },
  };
}

function parseConfigObject(obj: Record<string, unknown>) {
  const r = parseConfig(JSON.stringify(obj));
  if (!r.ok) throw new Error(`test config invalid: ${JSON.stringify(r.problems)}`);
  return r.config;
}

export type { ConfigInput };

/** Opens a raw CONNECT to `target` through the proxy at `port`: the client, the answer's status and reason. */
export async function connectStatus(port: number, target: string): Promise<{ c: RawClient; status: number; reason: string | undefined }> {
  const c = await RawClient.connect(port);
  c.write(`CONNECT ${target} HTTP/1.1\r\n\r\n`);
  const h = await c.head();
  return { c, status: h.status, reason: h.headers['x-chokepoint-reason'] };
}

/** A raw client: sends bytes, collects everything received, knows when the peer closed. */
export class RawClient {
  readonly socket: Socket;
  data = Buffer.alloc(0);
  ended = false;
  closed = false;
  #waiters: (() => void)[] = [];

  private constructor(socket: Socket) {
    this.socket = socket;
    socket.on('data', (c: Buffer) => {
      this.data = Buffer.concat([this.data, c]);
      this.#wake();
    });
    socket.on('end', () => {
      // Like ordinary clients, close our side when the peer has finished.
      this.ended = true;
      socket.end();
      this.#wake();
    });
    socket.on('error', () => {});
    socket.on('close', () => {
      this.closed = true;
      this.#wake();
    });
  }

  static connect(port: number, host = '127.0.0.1'): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const s = connect({ port, host, allowHalfOpen: true }, () => resolve(new RawClient(s)));
      s.once('error', reject);
    });
  }

  #wake(): void {
    const w = this.#waiters;
    this.#waiters = [];
    for (const f of w) f();
  }

  write(b: string | Buffer): void {
    this.socket.write(b);
  }

  text(): string {
    return this.data.toString('latin1');
  }

  /** Waits until the predicate on received data holds, or the peer closes, or timeout. */
  async until(pred: (c: RawClient) => boolean, ms = 5000): Promise<void> {
    const deadline = Date.now() + ms;
    while (!pred(this)) {
      if (this.closed) return;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timeout waiting; received so far: ${JSON.stringify(this.text().slice(0, 500))}`);
      await new Promise<void>((r) => {
        const t = setTimeout(r, left);
        this.#waiters.push(() => {
          clearTimeout(t);
          r();
        });
      });
    }
  }

  /** Waits for a full HTTP response head and returns status and headers. */
  async head(ms = 5000): Promise<{ status: number; headers: Record<string, string>; body: string }> {
    await this.until((c) => c.text().includes('\r\n\r\n'), ms);
    const t = this.text();
    const end = t.indexOf('\r\n\r\n');
    if (end < 0) throw new Error(`no response head; got ${JSON.stringify(t)}`);
    const lines = t.slice(0, end).split('\r\n');
    const status = Number((lines[0] ?? '').split(' ')[1]);
    const headers: Record<string, string> = {};
    for (const l of lines.slice(1)) {
      const i = l.indexOf(':');
      headers[l.slice(0, i).toLowerCase()] = l.slice(i + 1).trim();
    }
    const len = Number(headers['content-length'] ?? 0);
    if (len > 0) await this.until((c) => c.data.length >= Buffer.byteLength(t.slice(0, end + 4), 'latin1') + len, ms);
    const body = this.text().slice(end + 4, end + 4 + len);
    return { status, headers, body };
  }

  waitClosed(ms = 5000): Promise<void> {
    return this.until((c) => c.closed, ms);
  }

  close(): void {
    this.socket.destroy();
  }
}
