/**
 * EST (RFC 7030) for devices, as a fastify plugin for the control listener:
 *   GET  /.well-known/est/cacerts          public  base64 certs-only PKCS#7 of every trusted device CA
 *   POST /.well-known/est/simpleenroll     public  (authenticated by the enrollment token) base64 PKCS#10 in
 *   POST /.well-known/est/simplereenroll   device  (authenticated by the current client certificate)
 *   GET  /crl                              public  DER, or PEM with ?format=pem / Accept: application/x-pem-file
 * Errors use the API envelope `{code, message, statusCode}` with the identity error codes.
 */
import type { TLSSocket } from 'node:tls';
import type { FastifyInstance, FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import { ChokepointError, ERROR_CODES, type ErrorCode } from '../core/errors.js';
import { decodeBase64Body, MAX_CSR_DER } from '../identity/csr.js';
import { base64Lines, certsOnly } from '../identity/pkcs7.js';
import type { IdentityService } from '../identity/service.js';
import { envelope, sendEnvelope, toEnvelope } from './errors.js';

const STATUS: Partial<Record<ErrorCode, number>> = {
  TOKEN_MISSING: 401,
  TOKEN_UNKNOWN: 401,
  CLIENT_CERT_REQUIRED: 401,
  CSR_TOO_LARGE: 413,
  CSR_INVALID: 400,
  CSR_BAD_SIGNATURE: 400,
  CSR_KEY_RSA: 400,
  CSR_KEY_CURVE: 400,
  CSR_KEY_UNSUPPORTED: 400,
  CSR_KEY_REUSED: 400,
  CSR_IDENTITY_MISMATCH: 400,
  RENEWAL_LIMIT: 429,
  CA_MISSING: 503,
  CA_INVALID: 503,
  INTERNAL: 500,
};
/** Everything else (expired/used/revoked/wrong-scope tokens, denied, device states, certificate states) is 403. */
export const estStatus = (code: ErrorCode): number => STATUS[code] ?? 403;

const PKCS7 = 'application/pkcs7-mime; smime-type=certs-only';
const EST = '/.well-known/est';

/** Token from `Authorization: Basic base64(user:token)` (RFC 7030 §3.2.3) or `Bearer token`. */
export function tokenFrom(req: FastifyRequest): string | null {
  const h = req.headers.authorization;
  if (typeof h !== 'string') return null;
  const m = /^(Basic|Bearer)\s+(\S+)\s*$/i.exec(h);
  if (!m) return '';
  if ((m[1] as string).toLowerCase() === 'bearer') return m[2] as string;
  const decoded = Buffer.from(m[2] as string, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  return colon < 0 ? '' : decoded.slice(colon + 1);
}

function sendCerts(reply: FastifyReply, ders: readonly Uint8Array[]): FastifyReply {
  return reply.code(200).header('content-type', PKCS7).header('content-transfer-encoding', 'base64').send(base64Lines(certsOnly(ders)));
}

function csrOf(req: FastifyRequest): Buffer {
  if (typeof req.body !== 'string') throw new ChokepointError('CSR_INVALID', 'send the base64 PKCS#10 request as the body, with Content-Type: application/pkcs10');
  return decodeBase64Body(req.body);
}

export function estPlugin(id: IdentityService): FastifyPluginAsync {
  return async (app: FastifyInstance) => {
    // Base64 of at most MAX_CSR_DER bytes, plus line breaks and PEM armour; larger bodies are cut
    // off by fastify before they are buffered.
    app.addContentTypeParser(['application/pkcs10', 'application/x-pem-file', 'text/plain'], { parseAs: 'string', bodyLimit: MAX_CSR_DER * 2 }, (_req, body, done) => done(null, body));
    app.setErrorHandler((err, req, reply) => {
      if (err instanceof ChokepointError) {
        const status = estStatus(err.code);
        if (status >= 500) req.log.error({ err }, 'identity failure');
        if (err.code === 'TOKEN_MISSING' || err.code === 'TOKEN_UNKNOWN') reply.header('www-authenticate', 'Basic realm="chokepoint-est"');
        return sendEnvelope(reply, envelope(status, err.code, status >= 500 ? ERROR_CODES[err.code] : err.message));
      }
      if ((err as { code?: string }).code === 'FST_ERR_CTP_BODY_TOO_LARGE') return sendEnvelope(reply, envelope(413, 'CSR_TOO_LARGE'));
      return sendEnvelope(reply, toEnvelope(err as Error, req));
    });

    app.get(`${EST}/cacerts`, { config: { role: 'public' } }, async (_req, reply) => {
      const cas = id.cas();
      const ders = [cas.active, ...(cas.next ? [cas.next] : []), ...cas.retired].map((c) => c.certDer);
      const chain = cas.active.chainPems.map((p) => Buffer.from(p.replace(/-----[^-]+-----|\s+/g, ''), 'base64'));
      return sendCerts(reply, [...ders, ...chain]);
    });

    app.post(`${EST}/simpleenroll`, { config: { role: 'public' } }, async (req, reply) => {
      const r = await id.enroller.enroll({ token: tokenFrom(req), csrDer: csrOf(req), clientIp: req.ip });
      if (r.status === 'pending') {
        // RFC 7030 §4.2.3: 202 with Retry-After; the client repeats the same request later.
        return reply.code(202).header('retry-after', String(r.retryAfterSec))
          .send({ status: 'pending', device_id: r.deviceId, request_id: r.requestId, retry_after: r.retryAfterSec });
      }
      return sendCerts(reply.header('x-chokepoint-device-id', r.deviceId), [r.cert.der]);
    });

    app.post(`${EST}/simplereenroll`, { config: { role: 'device' } }, async (req, reply) => {
      const sock = req.raw.socket as Partial<TLSSocket>;
      const peer = typeof sock.getPeerX509Certificate === 'function' ? sock.getPeerX509Certificate() : undefined;
      const r = await id.renewer.reenroll({ peerCertDer: peer ? peer.raw : null, csrDer: csrOf(req), clientIp: req.ip });
      return sendCerts(reply.header('x-chokepoint-device-id', r.deviceId), [r.cert.der]);
    });

    app.get('/crl', { config: { role: 'public' } }, async (req, reply) => {
      const q = req.query as { format?: unknown; ca?: unknown };
      const crl = id.crl(typeof q.ca === 'string' ? q.ca : undefined);
      if (!crl) return sendEnvelope(reply, envelope(404, 'CA_MISSING', 'no CRL for that CA'));
      const accept = req.headers.accept ?? '';
      if (q.format === 'pem' || /application\/x-pem-file/i.test(accept)) {
        return reply.code(200).header('content-type', 'application/x-pem-file').header('cache-control', 'no-cache').send(crl.pem);
      }
      return reply.code(200).header('content-type', 'application/pkix-crl').header('cache-control', 'no-cache').send(crl.der);
    });
  };
}
