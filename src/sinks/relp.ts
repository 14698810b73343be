/**
 * Syslog over RELP (rsyslog's Reliable Event Logging Protocol; imrelp receives it), plain or in
 * TLS. Unlike TCP syslog (RFC 6587), the receiver answers every message: a batch counts as
 * delivered only when each of its messages has its own `200 OK`, so a receiver that dies
 * mid-batch costs a resend, never an event. Delivery is at least once: a batch that fails part
 * way is sent again whole, and the receiver may see its first messages twice.
 *
 * Session: `open` with our offers (relp_version=0, commands=syslog), then `syslog` commands,
 * at most WINDOW unanswered at once; responses come in order. A `500`, a response out of
 * order, `serverclose`, a malformed frame or a timeout ends the session and fails the batch
 * (the sink retries it on a new session). `close` says goodbye when the sink stops.
 */
import { connect as tcpConnect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import type { Transport } from './buffered.js';
import { encodeFrame, MAX_TXNR, parseResponse, RelpFrameParser, RelpProtocolError, type RelpFrame } from './relp-frame.js';

export interface RelpTransportOptions {
  readonly host: string;
  readonly port: number;
  readonly timeoutMs: number;
  /** Present for RELP over TLS: PEM contents (read at start by the factory). */
  readonly tls?: { ca?: Buffer; cert?: Buffer; key?: Buffer; serverName?: string } | null;
}

/** librelp's default window: messages sent and not yet answered. */
const WINDOW = 128;
const OFFERS = 'relp_version=0\nrelp_software=chokepoint\ncommands=syslog';

const fail = (message: string, code: string): Error => Object.assign(new Error(message), { code });

class Session {
  readonly #sock: Socket;
  readonly #parser = new RelpFrameParser();
  #txnr = 0;
  /** Unanswered commands, oldest first. */
  readonly #waiting: { txnr: number; resolve: (f: RelpFrame) => void; reject: (e: Error) => void }[] = [];
  #dead: Error | null = null;

  constructor(sock: Socket) {
    this.#sock = sock;
    sock.on('data', (chunk: Buffer) => {
      let frames: RelpFrame[];
      try {
        frames = this.#parser.push(chunk);
      } catch (err) {
        this.kill(err as Error);
        return;
      }
      for (const f of frames) this.#onFrame(f);
    });
    sock.on('error', (err) => this.kill(err));
    sock.on('close', () => this.kill(fail('the RELP server closed the connection', 'ECONNRESET')));
  }

  get alive(): boolean {
    return this.#dead === null;
  }

  #onFrame(f: RelpFrame): void {
    if (f.command === 'serverclose') {
      this.kill(fail('the RELP server is closing the session', 'RELP_SERVERCLOSE'));
      return;
    }
    const w = this.#waiting[0];
    if (f.command !== 'rsp' || w === undefined || f.txnr !== w.txnr) {
      this.kill(new RelpProtocolError(`unexpected ${f.command} for txnr ${f.txnr}${w ? ` (waiting for ${w.txnr})` : ''}`));
      return;
    }
    this.#waiting.shift();
    w.resolve(f);
  }

  /** Sends one command; resolves with its response frame. */
  command(command: string, data: string): Promise<RelpFrame> {
    if (this.#dead) return Promise.reject(this.#dead);
    this.#txnr = this.#txnr >= MAX_TXNR ? 1 : this.#txnr + 1;
    const txnr = this.#txnr;
    return new Promise<RelpFrame>((resolve, reject) => {
      this.#waiting.push({ txnr, resolve, reject });
      this.#sock.write(encodeFrame(txnr, command, data));
    });
  }

  kill(err: Error): void {
    if (this.#dead) return;
    this.#dead = err;
    this.#sock.destroy();
    for (const w of this.#waiting.splice(0)) w.reject(err);
  }

  async goodbye(ms: number): Promise<void> {
    if (this.#dead) return;
    const t = setTimeout(() => this.kill(fail('close timed out', 'ETIMEDOUT')), ms);
    await this.command('close', '').catch(() => {});
    clearTimeout(t);
    this.kill(fail('closed', 'ECLOSED'));
  }
}

const ok = (f: RelpFrame, what: string): void => {
  const r = parseResponse(f.data);
  if (r.code !== 200) throw fail(`RELP server refused ${what}: ${r.code} ${r.text}`.trim(), `RELP_${r.code}`);
};

export class RelpTransport implements Transport {
  readonly #o: RelpTransportOptions;
  #session: Session | null = null;
  #closed = false;

  constructor(o: RelpTransportOptions) {
    this.#o = o;
  }

  async send(lines: readonly string[]): Promise<void> {
    if (this.#closed) throw fail('closed', 'ECLOSED');
    const s = this.#session?.alive ? this.#session : await this.#open();
    // The timeout is for a lack of progress, not for the whole batch: a receiver that answers
    // slowly but steadily must not have every batch time out and be sent again for ever.
    let timer = setTimeout(() => s.kill(fail('RELP send timed out', 'ETIMEDOUT')), this.#o.timeoutMs);
    const progressed = (): void => {
      clearTimeout(timer);
      timer = setTimeout(() => s.kill(fail('RELP send timed out', 'ETIMEDOUT')), this.#o.timeoutMs);
    };
    try {
      // Up to WINDOW commands in flight; each answer lets the next one go. The first refusal is
      // kept here, not left to a race: several answers can settle in one read, and a 500 that
      // settled with a 200 before it was taken out of the race and swallowed (the message lost
      // while the batch counted as delivered).
      let next = 0;
      let failure: Error | null = null;
      const inFlight = new Set<Promise<void>>();
      while ((next < lines.length || inFlight.size > 0) && failure === null) {
        while (next < lines.length && inFlight.size < WINDOW) {
          const p: Promise<void> = s.command('syslog', lines[next++] as string)
            .then((f) => { ok(f, 'a message'); progressed(); })
            .catch((err: Error) => { failure ??= err; })
            .finally(() => inFlight.delete(p));
          inFlight.add(p);
        }
        await Promise.race(inFlight);
      }
      if (failure !== null) throw failure;
    } catch (err) {
      s.kill(err as Error); // whatever was in flight is resent with the batch
      throw err;
    } finally {
      clearTimeout(timer);
    }
  }

  async #open(): Promise<Session> {
    const o = this.#o;
    const sock = await new Promise<Socket>((resolve, reject) => {
      let s: Socket | undefined;
      const t = setTimeout(() => { s?.destroy(); reject(fail('RELP connect timed out', 'ETIMEDOUT')); }, o.timeoutMs);
      const ready = () => { clearTimeout(t); s?.off('error', onErr); resolve(s as Socket); };
      const onErr = (err: Error) => { clearTimeout(t); s?.destroy(); reject(err); };
      s = o.tls
        ? tlsConnect({
          host: o.host, port: o.port, minVersion: 'TLSv1.2',
          servername: o.tls.serverName ?? (/^[0-9.]+$|:/.test(o.host) ? undefined : o.host),
          ca: o.tls.ca, cert: o.tls.cert, key: o.tls.key,
        }, ready)
        : tcpConnect({ host: o.host, port: o.port }, ready);
      s.once('error', onErr);
    });
    const session = new Session(sock);
    const t = setTimeout(() => session.kill(fail('RELP open timed out', 'ETIMEDOUT')), o.timeoutMs);
    try {
      const f = await session.command('open', OFFERS);
      ok(f, 'the session');
      // The server repeats the offers it accepts: without `syslog` it would refuse every message.
      if (!/(^|\n)commands=([^\n]*,)?syslog(,|\n|$)/.test(parseResponse(f.data).rest)) throw fail('the RELP server does not offer the syslog command', 'RELP_OFFERS');
    } catch (err) {
      session.kill(err as Error);
      throw err;
    } finally {
      clearTimeout(t);
    }
    this.#session = session;
    return session;
  }

  async close(): Promise<void> {
    this.#closed = true;
    const s = this.#session;
    this.#session = null;
    await s?.goodbye(Math.min(this.#o.timeoutMs, 2000));
  }
}
