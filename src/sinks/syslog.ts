/**
 * Syslog: RFC 5424 messages over UDP (RFC 5426, one message per datagram), TCP with
 * octet-counting framing (RFC 6587 §3.4.1: `MSG-LEN SP SYSLOG-MSG`, so a message may contain
 * any byte and a receiver never mis-splits) and TLS (RFC 5425, the same framing inside TLS 1.2+,
 * the receiver's certificate verified against the configured CA).
 *
 * Limits to know: UDP has no delivery feedback at all (a datagram the network drops is gone;
 * use TCP or TLS for evidence). TCP and TLS confirm delivery only to our kernel: a receiver
 * that dies after reading but before writing can lose the batch in flight (RFC 6587 has no
 * application acknowledgement). A receiver that closes the connection is noticed before the
 * next batch, which then goes out on a fresh connection.
 */
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { connect as tcpConnect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import type { ChokepointEvent } from '../events/catalogue.js';
import type { SendResult, Transport } from './buffered.js';
import { jsonOf } from '../events/json.js';
import { Scratch } from './scratch.js';

export interface SyslogFormat {
  /** RFC 5424 §6.2.1 facility (16 = local0). */
  readonly facility: number;
  readonly appName: string;
  readonly hostname: string;
  readonly procId: string;
}

/** RFC 5424 §6.2.1 severities: 2 critical, 3 error, 4 warning, 5 notice, 6 informational. */
export function severityOf(e: ChokepointEvent): number {
  switch (e.type) {
    case 'alert': return { critical: 2, high: 3, medium: 4, low: 5 }[e.severity];
    case 'gateway.decision': return e.verdict === 'deny' ? 4 : 6;
    case 'sink.dropped': case 'gateway.policy.rejected': return 3;
    case 'sink.backlog': return 4;
    default: return typeSeverity(e.type);
  }
}

/**
 * Severity by type name, once per type: severityOf runs on the proxy's thread for every event
 * handed to the sinks' thread (two per tunnel), and the regex needs to see each type only once.
 */
const byType = new Map<string, number>();
function typeSeverity(type: string): number {
  let v = byType.get(type);
  if (v === undefined) {
    v = /refused|revoked|denied/.test(type) ? 4 : 6;
    if (byType.size < 256) byType.set(type, v);
  }
  return v;
}

/** Keeps only printable US-ASCII (RFC 5424 §6: PRINTUSASCII) for header fields, `-` when empty. */
function field(s: string, max: number): string {
  const clean = s.replace(/[^!-~]/g, '').slice(0, max);
  return clean === '' ? '-' : clean;
}

/**
 * `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID - MSG` with the event type as MSGID, no
 * structured data, and the event's JSON as MSG (UTF-8; JSON never contains a raw newline).
 */
export function formatSyslog(e: ChokepointEvent, f: SyslogFormat): string {
  return syslogFormatter(f)(e);
}

/**
 * formatSyslog for one sink: the header fields that never change (hostname, app name, process
 * id) are cleaned once, and each event type's MSGID once, instead of four regex passes on every
 * event (two per tunnel, on the sinks' thread).
 */
export function syslogFormatter(f: SyslogFormat): (e: ChokepointEvent) => string {
  const text = syslogTextFormatter(f);
  return (e) => text(e.type, e.time, severityOf(e), jsonOf(e));
}

/**
 * The same from what the sinks' thread receives (threaded.ts): the event's type, time,
 * severity and JSON text, so that the thread formats without parsing the JSON again.
 */
export function syslogTextFormatter(f: SyslogFormat): (type: string, time: string, severity: number, json: string) => string {
  const fixed = `${field(f.hostname, 255)} ${field(f.appName, 48)} ${field(f.procId, 128)}`;
  const msgIds = new Map<string, string>();
  return (type, time, severity, json) => {
    let id = msgIds.get(type);
    if (id === undefined) {
      id = field(type, 32);
      if (msgIds.size < 256) msgIds.set(type, id);
    }
    return `<${f.facility * 8 + severity}>1 ${time} ${fixed} ${id} - ${json}`;
  };
}

/** The largest UDP payload over IPv4 (65,535 less the IP and UDP headers). */
export const MAX_UDP_MESSAGE = 65_507;

/** RFC 6587 §3.4.1 octet counting: the length is of the message's bytes, not its characters. */
export function frameOctetCounted(msg: string): Buffer {
  const body = Buffer.from(msg, 'utf8');
  return Buffer.concat([Buffer.from(`${body.length} `, 'ascii'), body]);
}

export interface SyslogTransportOptions {
  readonly transport: 'udp' | 'tcp' | 'tls';
  readonly host: string;
  readonly port: number;
  readonly timeoutMs: number;
  /** PEM contents (read at start-up by the factory, so a missing file fails fast). */
  readonly tls?: { ca?: Buffer; cert?: Buffer; key?: Buffer; serverName?: string };
}

export class SyslogTransport implements Transport {
  readonly #o: SyslogTransportOptions;
  #sock: Socket | null = null;
  #udp: UdpSocket | null = null;
  #closed = false;
  /** A connection attempt in progress, so close() can abort it (and its timer) at once. */
  #abortConnect: (() => void) | null = null;
  readonly #scratch = new Scratch();

  constructor(o: SyslogTransportOptions) {
    this.#o = o;
  }

  async send(lines: readonly string[]): Promise<void | SendResult> {
    if (this.#closed) throw Object.assign(new Error('closed'), { code: 'ECLOSED' });
    if (this.#o.transport === 'udp') return this.#sendUdp(lines);
    const sock = this.#sock ?? (await this.#connect());
    // One buffer, one write: `LEN SP MSG` per record, LEN counted in UTF-8 bytes.
    const frames = this.#frames(lines);
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => { sock.destroy(); reject(Object.assign(new Error('syslog write timed out'), { code: 'ETIMEDOUT' })); }, this.#o.timeoutMs);
      // The callback comes once the kernel has every byte, or once the socket is destroyed (it
      // writes nothing more then, so the next batch may reuse the buffer either way). A socket
      // destroyed mid-write (the receiver closed or reset: see `forget` below) gets its callback
      // *without* an error from Node, though part of the batch never left this process: that is
      // a failed send, retried (at least once), not a delivery.
      sock.write(frames, (err) => {
        clearTimeout(t);
        if (err) reject(err);
        else if (sock.destroyed) reject(Object.assign(new Error('syslog connection closed before the batch was written'), { code: 'ECONNRESET' }));
        else resolve();
      });
    });
  }

  /** RFC 6587 octet-counted frames of the records, in the transport's reusable buffer. */
  #frames(lines: readonly string[]): Buffer {
    let total = 0;
    const heads = lines.map((l) => {
      const n = Buffer.byteLength(l);
      const head = `${n} `; // ASCII: its length is its byte count
      total += head.length + n;
      return head;
    });
    const out = this.#scratch;
    out.begin(total);
    for (let i = 0; i < lines.length; i++) {
      out.text(heads[i] as string);
      out.text(lines[i] as string);
    }
    return out.bytes();
  }

  async #sendUdp(lines: readonly string[]): Promise<SendResult> {
    if (this.#udp === null) {
      const family = this.#o.host.includes(':') ? 'udp6' : 'udp4';
      this.#udp = createSocket(family);
      this.#udp.on('error', () => { this.#udp?.close(); this.#udp = null; });
    }
    const udp = this.#udp;
    let rejected = 0;
    for (const l of lines) {
      const b = Buffer.from(l, 'utf8');
      // One message per datagram (RFC 5426): one larger than a datagram can carry can never be
      // sent. Retried, it stopped the sink for good (it stays first in the disk buffer, also
      // across restarts). It is skipped and reported as rejected; the rest of the batch goes
      // out once, and the batch size stays (the limit is per message, not per batch).
      if (b.length > MAX_UDP_MESSAGE) {
        rejected++;
        continue;
      }
      const tooBig = await new Promise<boolean>((resolve, reject) => udp.send(b, this.#o.port, this.#o.host, (err) => {
        if (!err) resolve(false);
        else if ((err as NodeJS.ErrnoException).code === 'EMSGSIZE') resolve(true);
        else reject(err);
      }));
      if (tooBig) rejected++;
    }
    return { rejected };
  }

  #connect(): Promise<Socket> {
    const o = this.#o;
    return new Promise<Socket>((resolve, reject) => {
      let s: Socket | undefined;
      const onFail = (err: Error) => { clearTimeout(t); this.#abortConnect = null; s?.destroy(); reject(err); };
      this.#abortConnect = () => onFail(Object.assign(new Error('closed'), { code: 'ECLOSED' }));
      const t = setTimeout(() => onFail(Object.assign(new Error('syslog connect timed out'), { code: 'ETIMEDOUT' })), o.timeoutMs);
      const ready = () => {
        const sock = s;
        if (sock === undefined) return;
        clearTimeout(t);
        this.#abortConnect = null;
        sock.off('error', onFail);
        sock.on('error', () => {});
        // The receiver closing its side means our next write could vanish: drop the socket now.
        const forget = () => { if (this.#sock === sock) this.#sock = null; sock.destroy(); };
        sock.on('end', forget);
        sock.on('close', forget);
        sock.on('data', () => {}); // RFC 6587: the receiver sends nothing; read to notice FIN
        this.#sock = sock;
        resolve(sock);
      };
      s = o.transport === 'tls'
        ? tlsConnect({
          host: o.host, port: o.port, minVersion: 'TLSv1.2',
          servername: o.tls?.serverName ?? (/^[0-9.]+$|:/.test(o.host) ? undefined : o.host),
          ca: o.tls?.ca, cert: o.tls?.cert, key: o.tls?.key,
        }, ready)
        : tcpConnect({ host: o.host, port: o.port }, ready);
      s.once('error', onFail);
    });
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#abortConnect?.();
    this.#sock?.end();
    this.#sock?.destroy();
    this.#sock = null;
    this.#udp?.close();
    this.#udp = null;
  }
}
