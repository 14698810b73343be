/**
 * The control listener's front door. Agents reach it over TLS with a certificate from the
 * built-in CA (they pin that CA's fingerprint at enrollment, and EST re-enrollment authenticates
 * them by their client certificate, RFC 7030 §3.3.2); administrators on the same host may use
 * plain HTTP on loopback. One port serves both: the first byte of a connection tells a TLS
 * ClientHello (record type 22, RFC 8446 §5.1) from an HTTP request line. Plain HTTP is refused
 * on any non-loopback listener: bearer tokens in clear text over a network are as good as
 * published.
 */
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { createServer as createTlsServer, type Server as TlsServer, type TLSSocket } from 'node:tls';
import type { Server as HttpServer } from 'node:http';

export interface ControlListenerOptions {
  readonly host: string;
  readonly port: number;
  /** The control API's HTTP server (fastify's `app.server`), fed every accepted connection. */
  readonly http: HttpServer;
  readonly tls: { readonly key: string | Buffer; readonly cert: string | Buffer; readonly ca: readonly string[] };
  /** Whether plain HTTP is accepted (only ever on loopback). */
  readonly allowPlain: boolean;
  /** How long a connection may stay silent: before its first byte, and on the TLS path at any time. */
  readonly firstByteTimeoutMs?: number;
}

export interface ControlListener {
  readonly address: AddressInfo;
  /** Swaps the TLS certificate (renewal, CA rotation) without a restart. */
  setTls(tls: ControlListenerOptions['tls']): void;
  close(): Promise<void>;
}

const TLS_HANDSHAKE = 0x16;
const PLAIN_BODY = '{"code":"CONTROL_TLS_REQUIRED","message":"use https:// on this listener","statusCode":400}';
const PLAIN_REFUSED = Buffer.from(
  `HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: ${PLAIN_BODY.length}\r\n\r\n${PLAIN_BODY}`,
  'latin1',
);

export async function startControlListener(o: ControlListenerOptions): Promise<ControlListener> {
  const tlsOpts = (t: ControlListenerOptions['tls']) => ({
    key: t.key, cert: t.cert, ca: [...t.ca],
    // Requested, not required: admins authenticate with bearer tokens, devices re-enrolling
    // with their certificate; the EST route verifies that chain itself.
    requestCert: true, rejectUnauthorized: false, minVersion: 'TLSv1.2' as const,
  });
  const idleTimeout = o.firstByteTimeoutMs ?? 10_000;
  const tlsServer: TlsServer = createTlsServer(tlsOpts(o.tls), (s: TLSSocket) => o.http.emit('connection', s));
  tlsServer.on('tlsClientError', () => {}); // a failed handshake is the client's problem; nothing to serve
  const sockets = new Set<Socket>();
  const front: Server = createServer({ pauseOnConnect: false }, (socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    socket.setTimeout(idleTimeout, () => socket.destroy());
    socket.on('error', () => {});
    socket.once('readable', () => {
      const first = socket.read(1) as Buffer | null;
      if (first === null) return;
      socket.unshift(first);
      // On the TLS path the raw socket's idle timeout stays: the TLS server's own handshake
      // timeout does not arm on a socket handed over like this, so a client that stalls inside
      // the handshake is dropped by this one (and so is a TLS connection idle this long).
      if (first[0] === TLS_HANDSHAKE) tlsServer.emit('connection', socket);
      else if (o.allowPlain) {
        socket.setTimeout(0); // the HTTP server's own header and keep-alive timeouts apply
        o.http.emit('connection', socket);
      } else socket.end(PLAIN_REFUSED);
    });
  });
  await new Promise<void>((resolve, reject) => {
    front.once('error', reject);
    front.listen({ host: o.host, port: o.port }, () => {
      front.off('error', reject);
      resolve();
    });
  });
  return {
    address: front.address() as AddressInfo,
    setTls: (t) => tlsServer.setSecureContext(tlsOpts(t)),
    close: () => new Promise<void>((resolve) => {
      front.close(() => resolve());
      for (const s of sockets) s.destroy();
    }),
  };
}
