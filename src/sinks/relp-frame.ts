/**
 * RELP frames (the Reliable Event Logging Protocol, rsyslog's librelp, spec "relp.html" v0.0.1):
 *
 *   FRAME   = TXNR SP COMMAND SP DATALEN [SP DATA] TRAILER
 *   TXNR    = 1*9DIGIT            (1..999999999, then wraps to 1; 0 only for serverclose)
 *   COMMAND = 1*32ALPHA
 *   DATALEN = 1*9DIGIT            (bytes of DATA; DATA and its SP absent when 0)
 *   TRAILER = LF
 *
 * Pure: an encoder and an incremental parser. A malformed frame from the server is a protocol
 * error that ends the session (never guessed around: a mis-split response would acknowledge
 * the wrong message).
 */

export interface RelpFrame {
  readonly txnr: number;
  readonly command: string;
  readonly data: Buffer;
}

export const MAX_TXNR = 999_999_999;
/** Largest response we accept from a server (its offers or an error text); far above real ones. */
const MAX_DATALEN = 1024 * 1024;

export class RelpProtocolError extends Error {
  readonly code = 'RELP_PROTOCOL';
}

export function encodeFrame(txnr: number, command: string, data: string | Buffer = ''): Buffer {
  const body = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
  const head = body.length === 0 ? `${txnr} ${command} 0\n` : `${txnr} ${command} ${body.length} `;
  return body.length === 0 ? Buffer.from(head, 'ascii') : Buffer.concat([Buffer.from(head, 'ascii'), body, Buffer.from('\n', 'ascii')]);
}

/** The response code and text of an `rsp` frame's data: `200 OK`, `500 reason`, then optional lines. */
export function parseResponse(data: Buffer): { code: number; text: string; rest: string } {
  const s = data.toString('utf8');
  const m = /^(\d{3})(?: ([^\n]*))?(?:\n([\s\S]*))?$/.exec(s);
  if (m === null) throw new RelpProtocolError(`malformed rsp data: ${JSON.stringify(s.slice(0, 80))}`);
  return { code: Number(m[1]), text: m[2] ?? '', rest: m[3] ?? '' };
}

const isDigit = (c: number) => c >= 0x30 && c <= 0x39;
const isAlpha = (c: number) => (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a);

/** Feeds bytes as they arrive; returns every complete frame, keeps the rest. Throws RelpProtocolError. */
export class RelpFrameParser {
  #buf: Buffer = Buffer.alloc(0);

  push(chunk: Buffer): RelpFrame[] {
    this.#buf = this.#buf.length === 0 ? chunk : Buffer.concat([this.#buf, chunk]);
    const out: RelpFrame[] = [];
    for (;;) {
      const f = this.#next();
      if (f === null) return out;
      out.push(f);
    }
  }

  #next(): RelpFrame | null {
    const b = this.#buf;
    let i = 0;
    const number = (what: string): number | null => {
      const start = i;
      while (i < b.length && isDigit(b[i] as number)) {
        if (i - start >= 9) throw new RelpProtocolError(`${what} longer than 9 digits`);
        i++;
      }
      if (i === b.length) return null; // more bytes needed
      if (i === start) throw new RelpProtocolError(`expected ${what}, got byte 0x${(b[i] as number).toString(16)}`);
      return Number(b.toString('ascii', start, i));
    };
    const sp = (after: string): boolean | null => {
      if (i === b.length) return null;
      if (b[i] !== 0x20) throw new RelpProtocolError(`expected a space after ${after}`);
      i++;
      return true;
    };
    const txnr = number('TXNR');
    if (txnr === null || sp('TXNR') === null) return null;
    const cmdStart = i;
    while (i < b.length && isAlpha(b[i] as number)) {
      if (i - cmdStart >= 32) throw new RelpProtocolError('COMMAND longer than 32 letters');
      i++;
    }
    if (i === b.length) return null;
    if (i === cmdStart) throw new RelpProtocolError('empty COMMAND');
    const command = b.toString('ascii', cmdStart, i);
    if (sp('COMMAND') === null) return null;
    const len = number('DATALEN');
    if (len === null) return null;
    if (len > MAX_DATALEN) throw new RelpProtocolError(`DATALEN ${len} is above ${MAX_DATALEN}`);
    let data: Buffer = Buffer.alloc(0);
    if (len > 0) {
      if (sp('DATALEN') === null) return null;
      if (b.length < i + len + 1) return null;
      data = b.subarray(i, i + len);
      i += len;
    } else if (i < b.length && b[i] === 0x20) {
      i++; // tolerated: "DATALEN SP" with nothing after it
    }
    if (i === b.length) return null;
    if (b[i] !== 0x0a) throw new RelpProtocolError('frame does not end with LF');
    i++;
    this.#buf = b.subarray(i);
    return { txnr, command, data: Buffer.from(data) };
  }
}
