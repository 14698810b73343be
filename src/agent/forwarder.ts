/**
 * The local forwarder (`chokepoint agent forward`): a plain HTTP proxy on loopback that
 * carries every client connection, byte for byte, inside a TLS connection to the gateway's
 * mTLS listener authenticated with the device certificate. Any program that honours
 * HTTP(S)_PROXY thereby uses the device identity without knowing about certificates.
 *
 * Why a byte relay and not a second proxy: the gateway is the one place that parses and
 * decides (DESIGN §2). Relaying the client's CONNECT or absolute-form request unchanged
 * means its deny answers (status, X-Chokepoint-Reason, body) reach the client unchanged, and
 * there is no second HTTP parser here to disagree with the gateway's (request smuggling).
 *
 * The key, certificate and pinned CA are re-read for every new connection (a cheap stat and
 * read; the TLS context is rebuilt only when they changed), so a renewal is picked up at
 * once while tunnels already open keep the TLS session they started with.
 */
import { createServer, isIP, type AddressInfo, type Server, type Socket } from 'node:net';
import { connect as tlsConnect, createSecureContext, type SecureContext, type TLSSocket } from 'node:tls';
import { ChokepointError } from '../core/errors.js';
import { readIdentity, type Identity } from './files.js';
import { isLoopbackAddress } from './loopback.js';
import { silentAgentLogger, type AgentLogger } from './logger.js';

export interface ForwarderOptions {
  readonly listenHost: string;
  readonly listenPort: number;
  /** `https://HOST:PORT` of the gateway's mTLS listener. */
  readonly gateway: string;
  readonly dir: string;
  readonly logger?: AgentLogger;
}

/** Header the forwarder sets on answers it makes itself (the gateway's own answers carry X-Chokepoint-Reason). */
export const AGENT_ERROR_HEADER = 'X-Chokepoint-Agent-Error';

export function parseGatewayUrl(text: string): { host: string; port: number; servername: string | undefined } {
  let u: URL;
  try { u = new URL(text); } catch { throw new ChokepointError('USAGE', `--gateway "${text}" is not a URL (https://HOST:PORT)`); }
  if (u.protocol !== 'https:') throw new ChokepointError('USAGE', `--gateway must be https:// (the mTLS listener); got ${u.protocol}`);
  if (u.username || u.password || (u.pathname !== '/' && u.pathname !== '') || u.search || u.hash) {
    throw new ChokepointError('USAGE', '--gateway is https://HOST:PORT only');
  }
  const host = u.hostname.startsWith('[') ? u.hostname.slice(1, -1) : u.hostname;
  return { host, port: u.port === '' ? 443 : Number(u.port), servername: isIP(host) === 0 ? host : undefined };
}

export class Forwarder {
  readonly #opts: ForwarderOptions;
  readonly #log: AgentLogger;
  readonly #gw: ReturnType<typeof parseGatewayUrl>;
  readonly #server: Server;
  readonly #live = new Set<Socket>();
  #ctx: { id: string; ctx: SecureContext } | null = null;
  #closed = false;

  constructor(opts: ForwarderOptions) {
    if (!isLoopbackAddress(opts.listenHost)) {
      throw new ChokepointError('AGENT_LISTEN_REFUSED', `refusing to listen on ${opts.listenHost}: the forwarder lends the device identity to whoever connects, so it listens on loopback only (127.0.0.1 or ::1)`);
    }
    this.#opts = opts;
    this.#log = opts.logger ?? silentAgentLogger;
    this.#gw = parseGatewayUrl(opts.gateway);
    this.#server = createServer({ allowHalfOpen: true, pauseOnConnect: true }, (s) => this.#accept(s));
  }

  async listen(): Promise<AddressInfo> {
    await new Promise<void>((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen({ host: this.#opts.listenHost, port: this.#opts.listenPort }, () => { this.#server.off('error', reject); resolve(); });
    });
    return this.#server.address() as AddressInfo;
  }

  get liveConnections(): number { return this.#live.size; }

  /** Stops accepting; open tunnels finish on their own. Idempotent. */
  close(): Promise<void> {
    this.#closed = true;
    return new Promise((r) => { if (!this.#server.listening) r(); else this.#server.close(() => r()); });
  }

  /** Stops accepting and cuts every open connection. Idempotent. */
  async destroy(): Promise<void> {
    const p = this.close();
    for (const s of this.#live) s.destroy();
    await p;
  }

  async #context(retry = true): Promise<SecureContext> {
    const id: Identity = await readIdentity(this.#opts.dir);
    try {
      return this.#build(id);
    } catch (e) {
      // Renewal replaces key.pem, then cert.pem: between the two renames the pair does not
      // match. Read again once, shortly after, rather than fail the connection.
      if (!retry) throw new ChokepointError('AGENT_NOT_ENROLLED', `the key and certificate in ${this.#opts.dir} do not form a usable pair: ${(e as Error).message}`);
      await new Promise((r) => setTimeout(r, 100));
      return this.#context(false);
    }
  }

  #build(id: Identity): SecureContext {
    const key = `${id.key}\0${id.cert}\0${id.ca}`;
    if (this.#ctx?.id !== key) {
      this.#ctx = { id: key, ctx: createSecureContext({ key: id.key, cert: id.cert, ca: id.ca, minVersion: 'TLSv1.2' }) };
      this.#log.info({ event: 'identity_loaded' }, 'device certificate loaded');
    }
    return this.#ctx.ctx;
  }

  #accept(client: Socket): void {
    // Loopback-only listen address is the main guard; this one also holds if the kernel
    // routes something unexpected to the socket (e.g. a DNAT rule pointing at it).
    if (this.#closed || !isLoopbackAddress(client.remoteAddress)) {
      this.#log.warn({ remote: client.remoteAddress }, 'refused a connection that is not from loopback');
      client.destroy();
      return;
    }
    this.#live.add(client);
    client.on('close', () => this.#live.delete(client));
    client.on('error', () => {});
    this.#context().then((ctx) => this.#relay(client, ctx), (e: unknown) => {
      const code = e instanceof ChokepointError ? e.code : 'INTERNAL';
      this.#log.error({ code, err: e instanceof Error ? e.message : String(e) }, 'cannot load the device identity');
      reply(client, 502, code, e instanceof ChokepointError ? e.message : 'the device identity cannot be loaded');
    });
  }

  #relay(client: Socket, ctx: SecureContext): void {
    const gw = this.#gw;
    let request = '';
    let answered = false;
    let up = 0;
    let down = 0;
    const sniffReq = (c: Buffer): void => { if (request === '') request = firstLine(c); };
    client.on('data', sniffReq);
    const tls: TLSSocket = tlsConnect({
      host: gw.host, port: gw.port, ...(gw.servername ? { servername: gw.servername } : {}),
      secureContext: ctx, minVersion: 'TLSv1.2',
    });
    tls.on('secureConnect', () => {
      client.pipe(tls);
      tls.pipe(client);
      client.resume();
    });
    tls.on('data', (c: Buffer) => {
      down += c.length;
      if (!answered) {
        answered = true;
        const head = c.subarray(0, 4096).toString('latin1');
        const status = Number(/^HTTP\/1\.[01] ([0-9]{3})/.exec(head)?.[1] ?? 0);
        const reason = /\r\nx-chokepoint-reason: *([^\r\n]*)/i.exec(head)?.[1];
        if (status >= 400) this.#log.warn({ request, status, reason }, 'gateway refused');
        else this.#log.debug({ request, status }, 'gateway answered');
      }
    });
    client.on('data', (c: Buffer) => { up += c.length; });
    tls.on('error', (e: Error & { code?: string }) => {
      if (!answered && down === 0 && !client.destroyed) {
        // No byte of the gateway's has reached the client: a readable answer is still possible.
        const bad = /CERT|SELF_SIGNED|UNABLE_TO|HOSTNAME|IP:|ERR_TLS_CERT/i.test(`${e.code ?? ''} ${e.message}`);
        this.#log.error({ request, code: e.code, err: e.message }, bad ? 'the gateway certificate is not from the pinned CA' : 'cannot reach the gateway');
        reply(client, 502, bad ? 'AGENT_TLS_FAILED' : 'gateway_unreachable',
          bad ? `the gateway's certificate was refused (${e.code ?? e.message}): it is not from the pinned CA, or names another host` : `cannot reach the gateway: ${e.code ?? e.message}`);
        answered = true;
        return;
      }
      this.#log.warn({ request, code: e.code, err: e.message, bytes_up: up, bytes_down: down }, 'gateway connection failed mid-stream');
      client.destroy();
    });
    tls.on('close', () => {
      if (client.destroyed) return;
      if (down === 0 && !answered) {
        answered = true;
        reply(client, 502, 'gateway_closed', 'the gateway closed the connection without an answer');
        return;
      }
      this.#log.info({ request, bytes_up: up, bytes_down: down }, 'gateway closed the connection');
      client.end();
    });
    client.on('close', () => tls.destroy());
  }
}

function firstLine(c: Buffer): string {
  const s = c.subarray(0, 512).toString('latin1');
  const i = s.indexOf('\r\n');
  return (i < 0 ? s : s.slice(0, i)).replace(/[^\x20-\x7e]/g, '?');
}

function reply(client: Socket, status: number, code: string, message: string): void {
  if (client.destroyed) return;
  client.unpipe();
  client.resume(); // drain what the client sent so that closing does not turn into a reset
  const body = `${JSON.stringify({ error: code, message })}\n`;
  client.end(`HTTP/1.1 ${status} ${status === 502 ? 'Bad Gateway' : 'Error'}\r\n${AGENT_ERROR_HEADER}: ${code}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
}
