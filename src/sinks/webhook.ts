/**
 * Webhook transport: each batch is one HTTPS POST whose body is a JSON array of events.
 *
 * Signature (so the receiver can tell our batches from forged ones, and old ones from new):
 *   X-Chokepoint-Timestamp: <unix seconds at this attempt>
 *   X-Chokepoint-Signature: v1=<lowercase hex HMAC-SHA256(secret, "<timestamp>.<raw body>")>
 *   X-Chokepoint-Batch: <id, the same on every retry of this batch: deduplicate on it>
 * A receiver recomputes the HMAC over the exact bytes received, compares in constant time, and
 * refuses a timestamp more than a few minutes from its clock (replay of a captured request).
 * Any 2xx is success. 413 (too large) makes the sink send smaller batches (buffered.ts).
 * Anything else, or a network error or timeout, is retried: 4xx included, because a
 * receiver's 401/403/404 is usually a configuration an operator fixes, and the disk buffer
 * holds the events until then.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { request as httpRequest, Agent as HttpAgent } from 'node:http';
import { request as httpsRequest, Agent as HttpsAgent } from 'node:https';
import type { Transport } from './buffered.js';
import { Scratch } from './scratch.js';

export interface WebhookOptions {
  readonly url: string;
  readonly secret: string;
  readonly timeoutMs: number;
  /** PEM contents (read at start-up by the factory, so a missing file fails fast). */
  readonly tls?: { ca?: Buffer; cert?: Buffer; key?: Buffer; serverName?: string };
}

/**
 * `v2=` HMAC-SHA256 over `<timestamp>.<batch id>.<body>`. The batch id is signed because
 * receivers deduplicate on it: unsigned (v1 signed only the timestamp and body), a captured
 * request could be replayed under another id within the timestamp tolerance and be taken again.
 */
export function signWebhook(secret: string, timestamp: number, batchId: string, body: string | Buffer): string {
  return `v2=${createHmac('sha256', secret).update(`${timestamp}.${batchId}.`).update(body).digest('hex')}`;
}

/** Receiver side: true when the signature matches and the timestamp is within `toleranceSec`. */
export function verifyWebhook(secret: string, headers: { timestamp?: string; signature?: string; batch?: string }, body: Buffer, nowSec: number, toleranceSec = 300): boolean {
  const ts = Number(headers.timestamp);
  if (!Number.isSafeInteger(ts) || Math.abs(nowSec - ts) > toleranceSec || typeof headers.signature !== 'string' || typeof headers.batch !== 'string') return false;
  const want = Buffer.from(signWebhook(secret, ts, headers.batch, body));
  const got = Buffer.from(headers.signature);
  return want.length === got.length && timingSafeEqual(want, got);
}

/**
 * The body: the records as a JSON array, written straight into one buffer (see scratch.ts: built
 * as a string, `[${lines.join(',')}]`, a batch was copied twice through fresh pages). A new
 * buffer each time, not a reused one: a receiver may answer before it has read the whole body
 * (an early 413), and the next batch must not overwrite bytes a plain-http socket still sends.
 */
function jsonArray(lines: readonly string[]): Buffer {
  let total = 2 + Math.max(0, lines.length - 1);
  for (const l of lines) total += Buffer.byteLength(l);
  const out = new Scratch(0);
  out.begin(total);
  out.byte(0x5b); // [
  for (let i = 0; i < lines.length; i++) {
    if (i > 0) out.byte(0x2c); // ,
    out.text(lines[i] as string);
  }
  out.byte(0x5d); // ]
  return out.bytes();
}

class HttpStatusError extends Error {
  constructor(readonly status: number) { super(`webhook answered ${status}`); }
}

export class WebhookTransport implements Transport {
  readonly #o: WebhookOptions;
  readonly #url: URL;
  readonly #agent: HttpAgent;

  constructor(o: WebhookOptions) {
    this.#o = o;
    this.#url = new URL(o.url);
    this.#agent = this.#url.protocol === 'https:'
      ? new HttpsAgent({ keepAlive: true, maxSockets: 1, ca: o.tls?.ca, cert: o.tls?.cert, key: o.tls?.key, servername: o.tls?.serverName, minVersion: 'TLSv1.2' })
      : new HttpAgent({ keepAlive: true, maxSockets: 1 });
  }

  send(lines: readonly string[], batchId: string): Promise<void> {
    const body = jsonArray(lines);
    const ts = Math.floor(Date.now() / 1000);
    const req = this.#url.protocol === 'https:' ? httpsRequest : httpRequest;
    return new Promise<void>((resolve, reject) => {
      const r = req(this.#url, {
        method: 'POST',
        agent: this.#agent,
        timeout: this.#o.timeoutMs,
        headers: {
          'content-type': 'application/json',
          'content-length': body.length,
          'user-agent': 'chokepoint-webhook/1',
          'x-chokepoint-timestamp': String(ts),
          'x-chokepoint-signature': signWebhook(this.#o.secret, ts, batchId, body),
          'x-chokepoint-batch': batchId,
        },
      }, (res) => {
        res.resume(); // the answer's body is not used; read it so the connection can be reused
        res.on('end', () => {
          const s = res.statusCode ?? 0;
          if (s >= 200 && s < 300) resolve();
          else reject(new HttpStatusError(s));
        });
        res.on('error', reject);
      });
      r.on('timeout', () => r.destroy(Object.assign(new Error('webhook timed out'), { code: 'ETIMEDOUT' })));
      r.on('error', reject);
      r.end(body);
    });
  }

  async close(): Promise<void> {
    this.#agent.destroy();
  }
}
