/**
 * CONNECT tunnels (RFC 9110 §9.3.6). The answer is 200 only once the upstream connection
 * is up (DESIGN §2 step 5). On a `tls: required` rule nothing is relayed in either direction
 * until the client's ClientHello has been read and checked; it is then replayed upstream
 * untouched, so TLS stays end to end. On `optional`, a ClientHello is checked if the client
 * starts with one, and the server may speak first. After a checked ClientHello the decision
 * waits for the server's first handshake message: a HelloRetryRequest makes the client send a
 * second ClientHello in the clear, which is checked the same way (serverhello.ts). The relay
 * honours backpressure both ways, propagates half-close, counts bytes, and can be cut at once.
 */
import type { ProxySocket } from './raw-socket.js';
import { REASONS, type DenyReason } from '../core/reasons.js';
import type { Destination } from '../core/destination.js';
import type { CloseReason } from '../events/catalogue.js';
import type { TlsMode } from '../policy/types.js';
import { admit } from './admission.js';
import { DEFAULT_READ_BYTES, promoteToBulk } from './bulk.js';
import type { Attempt } from './attempt.js';
import { parseClientHello, tlsVersionName, type ClientHelloInfo } from './clienthello.js';
import type { ClientOwner, ProxyConnection } from './connection.js';
import { dial } from './dialer.js';
import { CONNECT_ESTABLISHED, lingerClose } from './replies.js';
import type { LiveTunnel } from './server.js';
import { classifyServerFirst, secondHelloStart } from './serverhello.js';
import { tlsAlertRecord } from './tls-alert.js';

/** Upper bound on bytes held while waiting for a complete ClientHello. */
const MAX_HELLO_BYTES = 64 * 1024;
/**
 * Most bytes passed on between a HelloRetryRequest and the second ClientHello (CCS, alerts,
 * 0-RTT records the server will discard): they reach the server before the decision, so a
 * client must not stream them without end while the server waits.
 */
const MAX_BEFORE_SECOND_HELLO = 256 * 1024;

export async function handleConnect(conn: ProxyConnection, a: Attempt, dest: Destination): Promise<void> {
  const gw = conn.gw;
  const adm = await admit(gw, a, dest, 'connect');
  if (!adm.ok) {
    conn.deny(a, adm.reason);
    return;
  }
  if (conn.closed) return; // the client left while we decided: nothing was opened, nothing to record but the log
  const tunnel = new ConnectTunnel(conn, a, dest, adm.tls, adm.report);
  const limit = gw.acquire(conn.clientIp, tunnel);
  if (limit !== null) {
    conn.deny(a, limit);
    return;
  }
  const d = await dial(adm.addresses, dest.port, gw.config.timeouts.connect, conn);
  if (!d.ok) {
    gw.release(conn.clientIp, tunnel);
    a.address = d.address;
    a.detail = d.detail;
    conn.deny(a, d.reason);
    return;
  }
  a.address = d.address;
  const cutWhileDialing = tunnel.cutBeforeStart ?? conn.cutReason;
  if (conn.closed || cutWhileDialing !== null) {
    // A connection to the destination was opened: that is evidence even though nothing was
    // relayed (the client left, the device was revoked, shutdown or the lifetime came first).
    d.socket.destroy();
    gw.release(conn.clientIp, tunnel);
    a.verdict = 'allow';
    conn.emitDecision(a);
    gw.publish(a.closedEvent({ protocol: 'connect', bytesUp: 0, bytesDown: 0, closeReason: cutWhileDialing ?? 'client_closed', status: null }));
    conn.destroy();
    return;
  }
  tunnel.start(d.socket);
}

type Phase = 'peek' | 'relay' | 'done';
/**
 * While relaying after a checked ClientHello: what the decision still waits for. The client's
 * bytes after its first hello are held meanwhile (a TLS client sends nothing the server needs
 * before the server's answer but a ChangeCipherSpec and 0-RTT data).
 */
type Await = 'none' | 'server_hello' | 'second_hello';

class ConnectTunnel implements ClientOwner, LiveTunnel {
  /** This object's slot in the gateway's LiveSet (live-set.ts). */
  liveSlot = -1;
  readonly startedAt = performance.now();
  #up!: ProxySocket;
  #phase: Phase = 'peek';
  #peek: Buffer | null = null;
  #helloTimer: NodeJS.Timeout | null = null;
  #closeReason: CloseReason | null = null;
  #upClosed = false;
  #clientClosed = false;
  #downFlowing = false;
  /** On a `tls: optional` rule: the server sent bytes while the client's first bytes were awaited. */
  #serverSpoke = false;
  /** Each direction is switched to a bulk buffer at most once, after its first full read (bulk.ts). */
  #bulkUpTried = false;
  #bulkDownTried = false;
  #finished = false;
  #relayed = false;
  /** When the next gateway.tunnel.progress is due (performance.now() time); 0 until relaying. */
  #nextProgress = 0;
  #await: Await = 'none';
  /** Client bytes held while #await is not 'none'; they start at a TLS record boundary. */
  #held: Buffer | null = null;
  /** The server's first bytes, kept until classifyServerFirst can tell what they are. */
  #serverFirst: Buffer | null = null;
  /** The client half-closed while its bytes were held: end upstream once they are sent. */
  #endHeld = false;
  /** Bytes passed on after a HelloRetryRequest, before the second ClientHello. */
  #beforeSecond = 0;
  /** The client sent an alert after the retry: it may be giving up rather than retrying. */
  #clientAlerted = false;

  constructor(
    readonly conn: ProxyConnection,
    readonly a: Attempt,
    readonly dest: Destination,
    readonly tls: TlsMode,
    readonly report: boolean,
  ) {}

  get #client(): ProxySocket {
    return this.conn.socket;
  }

  start(up: ProxySocket): void {
    this.#up = up;
    const gw = this.conn.gw;
    up.on('error', () => this.#setReason('upstream_error'));
    up.on('end', this.#onUpEnd);
    up.on('close', this.#onUpClose);
    up.on('drain', () => this.#client.resume());
    const pending = this.conn.takeOver(this);
    this.#client.setTimeout(gw.config.timeouts.idle);
    this.#client.write(CONNECT_ESTABLISHED);

    if (this.tls === 'none') {
      this.#pass(pending);
      return;
    }
    // `optional`: the server may speak first (SSH, SMTP), so its bytes flow at once.
    if (this.tls === 'optional') this.#startDown();
    this.#helloTimer = setTimeout(this.#onHelloTimeout, gw.config.tls.clienthello_timeout);
    if (pending !== null) this.onData(pending);
  }

  onData(chunk: Buffer): void {
    if (this.#phase === 'relay') {
      if (this.#await !== 'none') {
        this.#hold(chunk);
        return;
      }
      if (!this.#up.write(chunk)) this.#client.pause();
      else if (chunk.length >= DEFAULT_READ_BYTES && !this.#bulkUpTried) {
        this.#bulkUpTried = true;
        promoteToBulk(this.#client, this.#up);
      }
      return;
    }
    if (this.#phase !== 'peek') return;
    // A silent client on an `optional` rule waits without a timer (#onHelloTimeout); its first
    // bytes, whenever they come, get the usual time to make a whole ClientHello.
    this.#helloTimer ??= setTimeout(this.#onHelloTimeout, this.conn.gw.config.tls.clienthello_timeout);
    this.#peek = this.#peek === null ? chunk : Buffer.concat([this.#peek, chunk]);
    this.#inspect();
  }

  #inspect(): void {
    const buf = this.#peek as Buffer;
    const r = parseClientHello(buf, MAX_HELLO_BYTES);
    if (r.kind === 'incomplete') return;
    this.#clearHelloTimer();
    const a = this.a;
    if (r.kind === 'not_tls') {
      if (this.tls === 'optional') this.#pass(buf);
      else this.#refuse('not_tls', r.detail);
      return;
    }
    if (r.kind === 'error') {
      this.#refuse('not_tls', `malformed ClientHello: ${r.detail}`);
      return;
    }
    const info = r.info;
    a.sni = info.sni;
    a.tlsVersion = tlsVersionName(info.maxVersion);
    if (this.#check(info, '')) this.#passHello(buf, info.bytes);
  }

  /**
   * The checks on a ClientHello; refuses and returns false when one fails. In report mode a
   * failure is recorded as the would-be reason (keeping an earlier one) and the hello goes on
   * like one that passed (true): the decision then waits for the server's first handshake
   * message as in enforce mode, so a second ClientHello after a HelloRetryRequest is checked
   * and recorded too, not passed unseen behind the first one's failure.
   */
  #check(info: ClientHelloInfo, which: string): boolean {
    const bad = this.#firstFailure(info, which);
    if (bad === null) return true;
    if (this.report) {
      this.#wouldDeny(bad.reason, bad.detail);
      return true;
    }
    this.#refuse(bad.reason, bad.detail);
    return false;
  }

  #firstFailure(info: ClientHelloInfo, which: string): { reason: DenyReason; detail: string | null } | null {
    const gw = this.conn.gw;
    // ECH first: with real ECH the outer SNI is the provider's public name, so the more
    // precise reason is that the true destination is hidden (draft-ietf-tls-esni §6).
    if (info.ech && gw.config.tls.ech === 'deny') return { reason: 'ech_not_allowed', detail: which || null };
    // SNI must name exactly the CONNECT host: anything else is domain fronting (the tunnel
    // was authorized for one name and would carry a session for another). For an IP-literal
    // CONNECT a client sends no SNI (RFC 6066 §3 forbids literals there), so none may appear.
    if (this.dest.kind === 'name' ? info.sni !== this.dest.host : info.sni !== null) {
      // The first hello's SNI is in the event already; a second one's is named in the detail.
      const what = info.sni === null ? 'no SNI' : which ? `SNI ${info.sni}` : '';
      return { reason: 'sni_mismatch', detail: which + what || null };
    }
    if (info.maxVersion < gw.minTlsVersion) return { reason: 'tls_version', detail: which || null };
    return null;
  }

  /**
   * Relays a ClientHello that passed; the decision then waits for the server's first
   * handshake message (a HelloRetryRequest means a second ClientHello to check).
   */
  #passHello(buf: Buffer, helloBytes: number): void {
    if (this.#phase !== 'peek') return;
    this.#phase = 'relay';
    this.#relayed = true;
    this.#peek = null;
    this.#await = 'server_hello';
    if (helloBytes < buf.length) this.#hold(buf.subarray(helloBytes));
    this.#up.write(buf.subarray(0, helloBytes));
    if (this.conn.clientEnded) this.#endHeld = true;
    this.#startDown();
  }

  /** Keeps client bytes while the decision waits; a second ClientHello is looked for in them. */
  #hold(chunk: Buffer): void {
    this.#held = this.#held === null ? chunk : Buffer.concat([this.#held, chunk]);
    if (this.#await === 'second_hello') this.#inspectSecond();
    else if (this.#held.length > MAX_HELLO_BYTES) this.#client.pause(); // resumed when the decision is made
  }

  /** The server's bytes until its first handshake message can be classified. */
  #watchServer(chunk: Buffer): void {
    const buf = this.#serverFirst === null ? chunk : Buffer.concat([this.#serverFirst, chunk]);
    const kind = classifyServerFirst(buf);
    if (kind === 'incomplete') {
      this.#serverFirst = buf;
      return;
    }
    this.#serverFirst = null;
    if (kind === 'other') this.#settle();
    else if (kind === 'unreadable') this.#refuse('upstream_bad_response', 'the server\'s first TLS handshake records cannot be read');
    else {
      this.#await = 'second_hello';
      this.#helloTimer = setTimeout(this.#onHelloTimeout, this.conn.gw.config.tls.clienthello_timeout);
      if (this.#held !== null) this.#inspectSecond();
      // The client closed its side before the retry reached it.
      if (this.#await === 'second_hello' && this.#endHeld) this.#noSecondHello();
      // A client paused for holding too much before the retry must now be read again (its
      // second hello is behind what it held), unless the server is the one not reading.
      if (this.#await === 'second_hello' && !this.#up.writableNeedDrain) this.#client.resume();
    }
  }

  /** After a HelloRetryRequest: the client's second ClientHello gets the checks of the first. */
  #inspectSecond(): void {
    const held = this.#held;
    if (held === null) return;
    const at = secondHelloStart(held);
    if (at.alert) this.#clientAlerted = true;
    if (at.offset > 0) {
      this.#beforeSecond += at.offset;
      if (this.#beforeSecond > MAX_BEFORE_SECOND_HELLO) {
        this.#refuse('not_tls', `more than ${MAX_BEFORE_SECOND_HELLO} bytes before the second ClientHello (after HelloRetryRequest)`);
        return;
      }
      // ChangeCipherSpec, alerts and 0-RTT records go on at once (the server discards the
      // latter after a retry), so they are never scanned twice; a server that stops reading
      // stops the client too.
      if (!this.#up.write(held.subarray(0, at.offset))) this.#client.pause();
      this.#held = at.offset < held.length ? held.subarray(at.offset) : null;
    }
    const rest = this.#held;
    if (at.kind === 'incomplete' || rest === null) {
      if (rest !== null && rest.length > MAX_HELLO_BYTES) this.#refuse('not_tls', 'no second ClientHello after HelloRetryRequest');
      return;
    }
    const r = parseClientHello(rest, MAX_HELLO_BYTES);
    if (r.kind === 'incomplete') return;
    this.#clearHelloTimer();
    if (r.kind !== 'ok') {
      this.#refuse('not_tls', `second ClientHello (after HelloRetryRequest): ${r.detail}`);
      return;
    }
    // The decision records what the second hello said: that is the one the server acts on.
    this.a.sni = r.info.sni;
    this.a.tlsVersion = tlsVersionName(r.info.maxVersion);
    if (this.#check(r.info, 'second ClientHello (after HelloRetryRequest): ')) this.#settle();
  }

  /**
   * After a retry, the client closed its side: no second ClientHello can come. A client that
   * said why (an alert) and sent nothing after it gave up on the handshake; otherwise what it
   * sent is refused as a first hello would be.
   */
  #noSecondHello(): void {
    if (this.#clientAlerted && (this.#held === null || this.#held.length === 0)) this.#settle();
    else this.#refuse('not_tls', 'client closed before a complete second ClientHello');
  }

  /** The decision waited for nothing more: allow, send what was held, relay freely. */
  #settle(): void {
    if (this.#await === 'none' || this.#phase !== 'relay') return;
    this.#await = 'none';
    this.#clearHelloTimer();
    this.a.verdict = 'allow';
    this.conn.emitDecision(this.a);
    const held = this.#held;
    this.#held = null;
    if (held !== null && !this.#up.write(held)) this.#client.pause();
    else this.#client.resume();
    if (this.#endHeld) this.#up.end();
  }

  readonly #onHelloTimeout = (): void => {
    this.#helloTimer = null;
    if (this.#await === 'second_hello') {
      // Even after an alert: a client still connected could send a ClientHello later, and a
      // server that ignored the alert would act on it. Only a FIN ends the wait (onEnd).
      this.#refuse('clienthello_timeout', 'no second ClientHello after HelloRetryRequest');
      return;
    }
    if (this.#phase !== 'peek') return;
    // A silent client on an `optional` rule may be waiting for the server to speak first (the
    // server's bytes already flow). If the server has spoken, that is the protocol: pass. If it
    // has not, the client is not passed unchecked: passing at the timer let any client front
    // another name by waiting it out, then sending a ClientHello for that name, since TLS
    // servers never speak first. Its first bytes are inspected whenever they come; the
    // server's first bytes pass it (startDown); its idle timeout, or a close, ends the wait.
    if (this.tls === 'optional' && (this.#peek === null || this.#peek.length === 0)) {
      if (this.#serverSpoke) this.#pass(null);
      return;
    }
    this.#refuse('clienthello_timeout', null);
  };

  /** Report mode: records the would-be deny (keeping an earlier reason) without refusing. */
  #wouldDeny(reason: DenyReason, detail: string | null): void {
    if (this.a.reason === 'allowed') this.a.reason = reason;
    if (detail) this.a.detail = detail;
  }

  #refuse(reason: DenyReason, detail: string | null): void {
    const a = this.a;
    if (this.report) {
      this.#wouldDeny(reason, detail);
      if (this.#phase === 'peek') this.#pass(this.#peek);
      else this.#settle();
      return;
    }
    this.#phase = 'done';
    a.verdict = 'deny';
    a.reason = reason;
    a.detail = detail;
    this.conn.emitDecision(a);
    // After the 200 an HTTP answer is impossible: a fatal TLS alert says why. Nothing of the
    // client's was relayed; on `tls: optional` the server may already have spoken, and what it
    // sent is recorded (tunnel.closed, `refused`) rather than hidden behind the deny.
    const alert = REASONS[reason].alert ?? 'access_denied';
    this.#await = 'none';
    this.#held = null;
    this.#up.destroy();
    this.#finish(this.#relayed ? 'refused' : null);
    lingerClose(this.#client, tlsAlertRecord(alert));
  }

  #pass(initial: Buffer | null): void {
    if (this.#phase !== 'peek') return;
    this.#phase = 'relay';
    this.#relayed = true;
    this.#peek = null;
    this.a.verdict = 'allow';
    this.conn.emitDecision(this.a);
    if (initial !== null && initial.length > 0 && !this.#up.write(initial)) this.#client.pause();
    if (this.conn.clientEnded) this.#up.end();
    this.#startDown();
  }

  #startDown(): void {
    if (this.#downFlowing) return;
    this.#downFlowing = true;
    this.#relayed = true;
    const client = this.#client;
    const up = this.#up;
    up.on('data', (chunk: Buffer) => {
      if (this.#phase === 'peek') {
        this.#serverSpoke = true;
        // A server that speaks first is no TLS server (those wait for a ClientHello), so once
        // the client has also stayed silent past the timer, the tunnel is a server-first
        // protocol and is passed: decided and counted like any other from here on.
        if (this.#helloTimer === null && (this.#peek === null || this.#peek.length === 0)) this.#pass(null);
      }
      if (this.#await === 'server_hello') {
        this.#watchServer(chunk);
        if (this.#phase === 'done') return; // refused: the client gets an alert, not these bytes
      }
      if (!client.write(chunk)) up.pause();
      else if (chunk.length >= DEFAULT_READ_BYTES && !this.#bulkDownTried) {
        this.#bulkDownTried = true;
        promoteToBulk(up, client);
      }
    });
  }

  onDrain(): void {
    if (this.#downFlowing) this.#up.resume();
  }

  onEnd(): void {
    this.#setReason('client_closed');
    if (this.#phase === 'relay' && this.#await !== 'none') {
      this.#endHeld = true;
      if (this.#await === 'second_hello') this.#noSecondHello();
    } else if (this.#phase === 'relay') this.#up.end();
    else if (this.#phase === 'peek') {
      // The client finished sending before a complete ClientHello: no more bytes can come.
      this.#clearHelloTimer();
      if (this.tls === 'optional' && (this.#peek === null || this.#peek.length === 0)) this.#pass(null);
      else this.#refuse('not_tls', 'client closed before a complete ClientHello');
    }
  }

  readonly #onUpEnd = (): void => {
    this.#setReason('upstream_closed');
    if (this.#phase === 'relay' || this.#downFlowing) this.#client.end();
    else this.#client.destroy();
  };

  progress(now: number, everyMs: number): void {
    if (this.#finished || !this.#relayed || this.#phase === 'peek' || !this.a.decided) return;
    if (this.#nextProgress === 0) this.#nextProgress = this.startedAt + everyMs;
    if (now < this.#nextProgress) return;
    this.#nextProgress = now + everyMs;
    this.conn.gw.publish(this.a.progressEvent(this.#up.bytesWritten, this.#up.bytesRead));
  }

  onTimeout(): void {
    // The ClientHello timer governs this phase, while it runs (not for a silent client on an
    // `optional` rule, which waits without one).
    if (this.#phase === 'peek' && this.#helloTimer !== null) return;
    this.cut('idle_timeout');
  }

  /** Set when the tunnel was cut (sweep, shutdown, revocation) before its upstream connected. */
  cutBeforeStart: CloseReason | null = null;

  cut(reason: CloseReason): void {
    // The slot is taken before the dial, so the sweeper, a shutdown or a revocation can reach a
    // tunnel that has no upstream yet; handleConnect finishes it when the dial returns.
    if (this.#up === undefined) {
      this.cutBeforeStart ??= reason;
      this.#client.destroy();
      return;
    }
    this.#setReason(reason);
    this.#up.destroy();
    this.#client.destroy();
  }

  onClose(): void {
    this.#clientClosed = true;
    this.#setReason('client_closed');
    this.#up.destroy();
    this.#maybeFinish();
  }

  readonly #onUpClose = (): void => {
    this.#upClosed = true;
    this.#setReason('upstream_closed');
    this.#client.destroy();
    this.#maybeFinish();
  };

  #maybeFinish(): void {
    if (this.#upClosed && this.#clientClosed) this.#finish(this.#closeReason ?? 'completed');
  }

  #setReason(r: CloseReason): void {
    if (this.#closeReason === null) this.#closeReason = r;
  }

  #clearHelloTimer(): void {
    if (this.#helloTimer !== null) {
      clearTimeout(this.#helloTimer);
      this.#helloTimer = null;
    }
  }

  /** Releases the slot; publishes tunnel.closed when relaying actually began. */
  #finish(reason: CloseReason | null): void {
    if (this.#finished) return;
    this.#finished = true;
    this.#phase = 'done';
    this.#clearHelloTimer();
    const gw = this.conn.gw;
    gw.release(this.conn.clientIp, this);
    if (!this.a.decided && this.#await !== 'none') {
      // The first ClientHello passed and went upstream; the tunnel closed before the server
      // answered it (or the client finished the retry): what was relayed was allowed.
      this.a.verdict = 'allow';
      this.conn.emitDecision(this.a);
    } else if (!this.a.decided && this.tls === 'optional' && (this.#peek === null || this.#peek.length === 0)) {
      this.a.verdict = 'allow'; // a silent client on an optional rule: nothing to check
      this.conn.emitDecision(this.a);
    } else if (!this.a.decided) {
      // Closed (by either side, a cut or shutdown) before the ClientHello was complete:
      // nothing was relayed, so the attempt is recorded as refused.
      this.a.verdict = 'deny';
      this.a.reason = reason === 'shutdown' ? 'shutting_down' : 'not_tls';
      this.a.detail = `closed before a complete ClientHello (${reason ?? 'refused'})`;
      this.conn.emitDecision(this.a);
    }
    if (reason === null || !this.#relayed) return;
    gw.publish(this.a.closedEvent({
      protocol: 'connect',
      bytesUp: this.#up.bytesWritten,
      bytesDown: this.#up.bytesRead,
      closeReason: reason,
      status: null,
    }));
  }
}
