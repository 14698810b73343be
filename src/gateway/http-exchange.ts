/**
 * Absolute-form HTTP requests (RFC 9112 §3.2.2): one request and its response, forwarded
 * with hop-by-hop headers removed (RFC 9110 §7.6.1) and `Proxy-Authorization` never passed
 * on. Bodies stream both ways with backpressure; the message framing of each side is
 * tracked exactly (Content-Length, chunked, or close-delimited) so that a kept-alive client
 * connection can carry the next request — which is decided on its own.
 */
import { sameDestination, type Destination } from '../core/destination.js';
import { REASONS } from '../core/reasons.js';
import type { CloseReason } from '../events/catalogue.js';
import { admit } from './admission.js';
import type { Attempt } from './attempt.js';
import { ChunkedScanner } from './chunked.js';
import type { ClientOwner, ProxyConnection } from './connection.js';
import { dial } from './dialer.js';
import {
  checkResponseConnection, connectionTokens, HOP_BY_HOP, parseResponseHead, requestFraming, responseFraming, transferCodings, transferEncoding,
  serializeRequestHead, serializeResponseHead, wantsClose,
  type Header, type RequestHead, type ResponseHead,
} from './http1.js';
import { denyResponse, lingerClose } from './replies.js';
import { Upstream, type UpstreamOwner } from './upstream.js';

export type KeptUpstream = Upstream;

/** Held client bytes (pipelined requests) above which the client is paused. */
const MAX_HELD = 256 * 1024;

export async function handleHttp(conn: ProxyConnection, a: Attempt, head: RequestHead, path: string): Promise<void> {
  const gw = conn.gw;
  const dest = a.dest as Destination;
  const adm = await admit(gw, a, dest, 'http');
  if (!adm.ok) {
    conn.deny(a, adm.reason);
    return;
  }
  if (conn.closed) return;
  let up: Upstream | null = null;
  const kept = conn.upstream;
  conn.upstream = null;
  // Reuse only for the same destination and an address that passes the checks right now.
  if (kept && kept.alive && sameDestination(kept.dest, dest) && adm.addresses.includes(kept.address)) up = kept;
  else kept?.destroy();
  if (up === null) {
    const d = await dial(adm.addresses, dest.port, gw.config.timeouts.connect, conn);
    if (!d.ok) {
      a.address = d.address;
      a.detail = d.detail;
      conn.deny(a, d.reason);
      return;
    }
    up = new Upstream(gw, conn.clientIp, d.socket, dest, d.address);
    a.address = up.address;
    if (conn.closed) {
      // A connection to the destination was opened for this request: recorded, with 0 bytes
      // (before the limits: a shutdown refuses the slot, and the record must still say so).
      up.destroy();
      a.verdict = 'allow';
      conn.emitDecision(a);
      gw.publish(a.closedEvent({ protocol: 'http', bytesUp: 0, bytesDown: 0, closeReason: conn.cutReason ?? 'client_closed', status: null }));
      return;
    }
    const limit = gw.acquire(conn.clientIp, up);
    if (limit !== null) {
      up.destroy();
      conn.deny(a, limit);
      return;
    }
  }
  a.address = up.address;
  new HttpExchange(conn, a, head, path, up, adm.report).start();
}

class HttpExchange implements ClientOwner, UpstreamOwner {
  #bytesUp = 0;
  #bytesDown = 0;
  // request body
  #reqDone = false;
  #reqLeft = 0;
  #reqChunks: ChunkedScanner | null = null;
  /** Client bytes after this request's body (a pipelined next request). */
  #rest: Buffer | null = null;
  // response
  #respHeadBuf: Buffer | null = null;
  #resp: ResponseHead | null = null;
  #respDone = false;
  #respLeft = 0;
  #respChunks: ChunkedScanner | null = null;
  #respUntilClose = false;
  #closeClient = false;
  #wroteToClient = false;
  #finished = false;
  /** The response body is chunked and the client speaks HTTP/1.0: forward decoded data. */
  #dechunk = false;

  constructor(
    readonly conn: ProxyConnection,
    readonly a: Attempt,
    readonly head: RequestHead,
    readonly path: string,
    readonly up: Upstream,
    readonly report: boolean,
  ) {}

  start(): void {
    const f = requestFraming(this.head);
    if (f.kind === 'length') this.#reqLeft = f.length;
    else if (f.kind === 'chunked') this.#reqChunks = new ChunkedScanner({ keepTrailer: trailerFilter(this.head) });
    this.#reqDone = f.kind === 'none' || (f.kind === 'length' && f.length === 0);
    // HTTP/1.0 clients, and clients that asked for it, get one response and a close.
    this.#closeClient = this.head.version === 0 || wantsClose(this.head);

    const pending = this.conn.takeOver(this);
    this.up.own(this);
    this.conn.socket.setTimeout(this.conn.gw.config.timeouts.idle);
    this.up.socket.setTimeout(0);
    this.a.verdict = 'allow';
    this.conn.emitDecision(this.a);
    // Head and whatever body came with it leave in one writev, not one write each: a loopback
    // write costs about 10 µs of kernel time, a large part of a small request's cost (measured).
    const up = this.up.socket;
    up.cork();
    try {
      this.#writeUp(serializeRequest(this.head, this.path, this.a.dest as Destination, f.kind === 'chunked'));
      if (pending !== null) this.onData(pending);
      // The client's FIN came before this exchange owned the connection (while the request was
      // decided, or behind pipelined requests): without this the exchange would wait for body
      // bytes that can no longer come, and never answer a complete request with a close.
      if (this.conn.clientEnded) this.onEnd();
    } finally {
      up.uncork();
    }
  }

  #writeUp(b: Buffer): void {
    this.#bytesUp += b.length;
    if (!this.up.socket.write(b)) this.conn.socket.pause();
  }

  #writeClient(b: Buffer): void {
    this.#bytesDown += b.length;
    this.#wroteToClient = true;
    if (!this.conn.socket.write(b)) this.up.socket.pause();
  }

  // ---- client side ------------------------------------------------------------------

  onData(chunk: Buffer): void {
    if (this.#finished) return;
    if (!this.#reqDone) {
      let take = chunk.length;
      if (this.#reqChunks !== null) {
        take = this.#reqChunks.push(chunk);
        if (take < 0) {
          // Malformed chunked framing from the client: the message boundary is unknown, so
          // neither connection can be trusted to carry another message.
          this.#abort('client_error');
          return;
        }
        // The trailer section is not forwarded as it came: the scanner gives it filtered.
        this.#reqChunks.passOn(chunk, take, (b) => this.#writeUp(b));
        if (this.#reqChunks.done) this.#reqDone = true;
      } else {
        take = Math.min(this.#reqLeft, chunk.length);
        this.#reqLeft -= take;
        if (this.#reqLeft === 0) this.#reqDone = true;
        if (take > 0) this.#writeUp(take === chunk.length ? chunk : chunk.subarray(0, take));
      }
      chunk = chunk.subarray(take);
      if (this.#reqDone) this.#maybeComplete();
      if (chunk.length === 0) return;
    }
    this.#rest = this.#rest === null ? chunk : Buffer.concat([this.#rest, chunk]);
    if (this.#rest.length > MAX_HELD) this.conn.socket.pause();
  }

  onEnd(): void {
    if (!this.#reqDone) {
      this.#abort('client_closed');
      return;
    }
    // Requests pipelined before the FIN still get answers (the connection goes on to them);
    // with none left, this response is the last and says so.
    if (this.#rest === null || this.#rest.length === 0) this.#closeClient = true;
  }

  onTimeout(): void {
    this.#abort('idle_timeout');
  }

  onDrain(): void {
    this.up.socket.resume();
  }

  onClose(): void {
    this.#abort('client_closed');
  }

  cut(reason: 'device_revoked'): void {
    this.#abort(reason);
  }

  // ---- upstream side ----------------------------------------------------------------

  onUpData(chunk: Buffer): void {
    if (this.#finished) return;
    if (this.#respDone) {
      // Bytes after a complete response: the server is out of step; never pass them on.
      this.up.destroy();
      return;
    }
    if (this.#resp === null) {
      this.#respHeadBuf = this.#respHeadBuf === null ? chunk : Buffer.concat([this.#respHeadBuf, chunk]);
      // As for the request: the response head and the body that came with it, one writev.
      const client = this.conn.socket;
      client.cork();
      try {
        this.#readHeads();
      } finally {
        client.uncork();
      }
      return;
    }
    this.#respBody(chunk);
  }

  #readHeads(): void {
    const max = this.conn.gw.config.limits.max_header_bytes;
    while (this.#respHeadBuf !== null && this.#resp === null) {
      const r = parseResponseHead(this.#respHeadBuf, max);
      if (r.kind === 'incomplete') return;
      if (r.kind === 'error') {
        this.a.detail = r.detail;
        this.#badUpstream();
        return;
      }
      const h = r.head;
      const rest = h.headLength < this.#respHeadBuf.length ? this.#respHeadBuf.subarray(h.headLength) : null;
      this.#respHeadBuf = rest;
      if (h.status >= 100 && h.status < 200) {
        // 101 cannot happen: Upgrade is hop-by-hop and never forwarded. Other 1xx
        // (100 Continue, 103 Early Hints) go to the client and another head follows.
        if (h.status === 101) {
          this.a.detail = 'unexpected 101 Switching Protocols';
          this.#badUpstream();
          return;
        }
        // RFC 9110 §15.2: no 1xx to an HTTP/1.0 client (it would take it for the answer).
        if (this.head.version !== 0) this.#writeClient(serializeResponse(h, false));
        continue;
      }
      const f = responseFraming(h, this.head.method);
      const named = f.kind === 'error' ? null : checkResponseConnection(h);
      if (f.kind === 'error' || named !== null) {
        this.a.detail = f.kind === 'error' ? f.detail : named;
        this.#badUpstream();
        return;
      }
      // RFC 9112 §6.1: an HTTP/1.0 client must not get a Transfer-Encoding. A chunked body is
      // decoded for it below; any other coding (gzip, say) has no way to reach it intact.
      if (this.head.version === 0 && f.kind !== 'none') {
        const te = transferEncoding(h);
        if (te !== null && transferCodings(te).some((c) => c !== 'chunked')) {
          this.a.detail = `a transfer coding an HTTP/1.0 client cannot receive (${te.slice(0, 64)})`;
          this.#badUpstream();
          return;
        }
      }
      this.#resp = h;
      if (f.kind === 'length') this.#respLeft = f.length;
      else if (f.kind === 'chunked') {
        // An HTTP/1.0 client cannot read the chunked coding: decode it and delimit the body
        // by closing the connection instead (RFC 9112 §6.3, §7.1).
        this.#dechunk = this.head.version === 0;
        this.#respChunks = new ChunkedScanner(this.#dechunk ? { onData: (d) => this.#writeClient(d) } : { keepTrailer: trailerFilter(h) });
      } else if (f.kind === 'close') this.#respUntilClose = true;
      if (f.kind === 'close' || this.#dechunk || wantsClose(h)) this.#closeClient = true;
      this.#writeClient(serializeResponse(h, this.#closeClient, this.head.version === 0));
      if (f.kind === 'none' || (f.kind === 'length' && f.length === 0)) {
        // Bytes after a response that has no body (204, 304, HEAD, Content-Length: 0): the
        // upstream is out of step, and reused they would answer the next request.
        if (rest !== null) this.up.destroy();
        this.#respComplete();
      } else if (rest !== null) {
        this.#respHeadBuf = null;
        this.#respBody(rest);
      }
    }
  }

  #respBody(chunk: Buffer): void {
    let take = chunk.length;
    const sc = this.#respChunks;
    if (sc !== null) {
      take = sc.push(chunk);
      if (take < 0) {
        this.#abort('upstream_error');
        return;
      }
      // As for requests: the trailer section goes on filtered, not as it came.
      if (!this.#dechunk) sc.passOn(chunk, take, (b) => this.#writeClient(b));
    } else {
      if (!this.#respUntilClose) {
        take = Math.min(this.#respLeft, chunk.length);
        this.#respLeft -= take;
      }
      if (take > 0) this.#writeClient(take === chunk.length ? chunk : chunk.subarray(0, take));
    }
    if (take < chunk.length) {
      // Extra bytes after the response: the upstream connection is out of step.
      this.up.destroy();
    }
    if ((this.#respChunks !== null && this.#respChunks.done) || (this.#respChunks === null && !this.#respUntilClose && this.#respLeft === 0)) {
      this.#respComplete();
    }
  }

  onUpEnd(): void {
    if (this.#resp !== null && this.#respUntilClose) {
      this.#respComplete();
      return;
    }
    if (!this.#respDone) this.#badUpstream();
  }

  onUpDrain(): void {
    this.conn.socket.resume();
  }

  onUpClose(): void {
    if (this.#finished) return;
    if (this.#resp !== null && this.#respUntilClose && !this.#respDone) {
      this.#respComplete();
      return;
    }
    if (!this.#respDone) this.#badUpstream();
  }

  #respComplete(): void {
    this.#respDone = true;
    if (!this.#reqDone) {
      // The server answered before the request body ended (e.g. 413): the request body's
      // remainder would be read as a new request, so this client connection ends here.
      this.#closeClient = true;
    }
    this.#maybeComplete();
  }

  #maybeComplete(): void {
    if (!this.#respDone || this.#finished) return;
    const conn = this.conn;
    const reusable = this.#reqDone && !this.#respUntilClose && this.#resp !== null && !wantsClose(this.#resp) && this.up.alive;
    this.#finish(this.up.cutReason ?? 'completed');
    if (reusable) {
      this.up.park();
      conn.upstream = this.up;
    } else {
      this.up.destroy();
    }
    if (this.#closeClient || !this.#reqDone) lingerClose(conn.socket, null);
    else conn.release(this.#rest);
  }

  /** The upstream failed before a complete response. */
  #badUpstream(): void {
    if (this.#finished) return;
    if (this.#wroteToClient) {
      this.#abort(this.up.cutReason ?? 'upstream_error');
      return;
    }
    const status = REASONS.upstream_bad_response.status;
    this.#finish(this.up.cutReason ?? 'upstream_error', status);
    this.up.destroy();
    const body = denyResponse({ reason: 'upstream_bad_response', id: this.a.id, destination: `${this.a.dest?.host}:${this.a.dest?.port}`, detail: this.a.detail });
    this.#bytesDown += body.length;
    lingerClose(this.conn.socket, body);
  }

  #abort(reason: CloseReason): void {
    if (this.#finished) return;
    this.#finish(this.up.cutReason ?? reason);
    this.up.destroy();
    this.conn.socket.destroy();
  }

  #finish(reason: CloseReason, status?: number): void {
    if (this.#finished) return;
    this.#finished = true;
    this.conn.gw.publish(this.a.closedEvent({
      protocol: 'http',
      bytesUp: this.#bytesUp,
      bytesDown: this.#bytesDown,
      closeReason: reason,
      status: status ?? this.#resp?.status ?? null,
    }));
  }
}

/**
 * Framing and routing fields a trailer section may not carry on (RFC 9110 §6.5.1), besides the
 * hop-by-hop ones: an origin that merged them would see a Host or a length nobody checked.
 */
const TRAILER_REFUSED: ReadonlySet<string> = new Set(['host', 'content-length']);

/** Which trailer fields of a chunked message whose head is `head` go on (hop-by-hop ones, and those its Connection names, never do). */
function trailerFilter(head: RequestHead | ResponseHead): (name: string) => boolean {
  const tokens = connectionTokens(head);
  return (name) => !HOP_BY_HOP.has(name) && !tokens.has(name) && !TRAILER_REFUSED.has(name);
}

/** Headers that never cross the proxy: hop-by-hop ones and any named in Connection. */
function forwardable(headers: readonly Header[], tokens: ReadonlySet<string>): Header[] {
  return headers.filter((h) => !HOP_BY_HOP.has(h.name) && !tokens.has(h.name));
}

function serializeRequest(head: RequestHead, path: string, dest: Destination, chunked: boolean): Buffer {
  // RFC 9112 §3.2.2: a proxy MUST replace the Host of an absolute-form request with the
  // target's authority. The client's Host was only compared after normalization (case, a
  // trailing dot, IDNA mapping: `allowed.tes\u00adt` maps to `allowed.test`); forwarding its raw
  // spelling would let the origin pick a virtual host other than the one decided.
  // It goes first, as user agents send it (RFC 9112 §3.2).
  const h = dest.kind === 'ipv6' ? `[${dest.host}]` : dest.host;
  const host: Header = { name: 'host', raw: 'Host', value: dest.port === 80 ? h : `${h}:${dest.port}` };
  const extra: [string, string][] = [];
  // Transfer-Encoding is hop-by-hop, but the chunked body is forwarded as it came.
  if (chunked) extra.push(['transfer-encoding', 'chunked']);
  // RFC 9110 §7.6.3: a proxy MUST send Via.
  extra.push(['via', '1.1 chokepoint']);
  return serializeRequestHead(head.method, path, [host, ...forwardable(head.headers, connectionTokens(head)).filter((x) => x.name !== 'host')], extra);
}

/** `http10`: the client spoke HTTP/1.0, which never gets a Transfer-Encoding (a chunked body is decoded for it). */
function serializeResponse(head: ResponseHead, close: boolean, http10 = false): Buffer {
  const extra: [string, string][] = [];
  // All of its lines, combined, as the list of codings the framing was read from
  // (transferCodings): empty elements dropped, since a client that does not skip them, as
  // RFC 9110 §5.6.1 allows, would not see `chunked,` as chunked and would read to the close.
  const codings = transferCodings(transferEncoding(head) ?? '');
  if (codings.length > 0 && head.status >= 200 && !http10) extra.push(['transfer-encoding', codings.join(', ')]);
  if (close && head.status >= 200) extra.push(['connection', 'close']);
  return serializeResponseHead(head.status, head.reason, forwardable(head.headers, connectionTokens(head)), extra);
}
