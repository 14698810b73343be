/**
 * HTTP/1.1 message heads (RFC 9112), parsed strictly. This parser is the proxy's first line
 * of defence against request smuggling: every place where two HTTP implementations could
 * disagree about where a message ends is refused rather than interpreted (bare CR or LF,
 * obs-fold, whitespace before a colon, duplicate or list-valued Content-Length,
 * Content-Length with Transfer-Encoding, any transfer coding other than `chunked`).
 *
 * Pure and total: every input returns a result, nothing throws. It works on the Buffer with
 * byte tables (no regex, no per-line strings); strings are made only for the parts a head
 * carries, and only once the whole head has arrived. Until it has, the first bytes are
 * still validated (EARLY_CHECK_BYTES), so a client that sends garbage or bare LFs is refused
 * at once instead of being waited for until the size limit or the header timeout.
 */

export interface Header {
  /** Lowercase field name. */
  readonly name: string;
  /** Field value with surrounding optional whitespace removed (latin1). */
  readonly value: string;
  /** The field name as sent, for forwarding. */
  readonly raw: string;
}

export interface RequestHead {
  readonly method: string;
  readonly target: string;
  /** Minor version: 0 for HTTP/1.0, 1 for HTTP/1.1. */
  readonly version: 0 | 1;
  readonly headers: readonly Header[];
  /** Bytes of the head including leading empty lines and the final CRLFCRLF. */
  readonly headLength: number;
}

export interface ResponseHead {
  readonly status: number;
  readonly reason: string;
  readonly version: 0 | 1;
  readonly headers: readonly Header[];
  readonly headLength: number;
}

export type HeadError = 'bad_request' | 'request_smuggling' | 'header_too_large';
export type ParseResult<T> =
  | { readonly kind: 'incomplete' }
  | { readonly kind: 'ok'; readonly head: T }
  | { readonly kind: 'error'; readonly reason: HeadError; readonly detail: string };

export const MAX_HEADERS = 100;
/** RFC 9112 §2.2: a server SHOULD ignore at least one empty line before the request line. */
export const MAX_LEADING_EMPTY_LINES = 4;
/**
 * How much of an incomplete head is validated early. The API is stateless and callers
 * re-parse the accumulated bytes on every read, so checking the whole partial head each time
 * would make a client that sends one byte per packet cost O(n^2) (~0.3 s of CPU for 16 KiB).
 * The first KiB is where protocol confusion shows (TLS on the plain port, bare-LF clients,
 * garbage); later faults are still refused once the head completes or passes the limit.
 */
export const EARLY_CHECK_BYTES = 1024;

export const HOP_BY_HOP: ReadonlySet<string> = new Set([
  'connection', 'keep-alive', 'proxy-connection', 'proxy-authorization', 'proxy-authenticate',
  'te', 'trailer', 'transfer-encoding', 'upgrade',
]);

const CR = 0x0d;
const LF = 0x0a;
const SP = 0x20;
const HTAB = 0x09;
const INCOMPLETE = Object.freeze({ kind: 'incomplete' as const });
const CRLFCRLF = Buffer.from('\r\n\r\n', 'latin1');

// RFC 9110 §5.6.2 tchar: "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." / "^" / "_" / "`" / "|" / "~" / DIGIT / ALPHA
const TCHAR = new Uint8Array(256);
for (const c of "!#$%&'*+-.^_`|~") TCHAR[c.charCodeAt(0)] = 1;
for (let c = 0x30; c <= 0x39; c++) TCHAR[c] = 1;
for (let c = 0x41; c <= 0x5a; c++) TCHAR[c] = 1;
for (let c = 0x61; c <= 0x7a; c++) TCHAR[c] = 1;
// RFC 9110 §5.5 field-value bytes: HTAB / SP / VCHAR / obs-text. NUL, CR, LF, other CTLs and DEL are not.
const FIELD = new Uint8Array(256);
FIELD[HTAB] = 1;
for (let c = 0x20; c <= 0x7e; c++) FIELD[c] = 1;
for (let c = 0x80; c <= 0xff; c++) FIELD[c] = 1;

/**
 * What one line scan found; module-level scratch so that scanning allocates nothing.
 * `e` is where the line stopped: the index of its CR, or `lim` when the bytes ran out first.
 */
const at = { a: 0, b: 0, c: 0, e: 0, upper: false };

/** Error detail for an unexpected byte. */
function unexpected(c: number, what: string): string {
  if (c === LF) return 'bare LF in the head';
  if (c === CR) return `malformed ${what === 'method' || what === 'request target' ? 'request line' : what}`;
  return `invalid byte 0x${c.toString(16).padStart(2, '0')} in the ${what}`;
}

/** Printable excerpt for a detail string (never echoes control bytes into logs). */
function excerpt(buf: Buffer, s: number, lim: number): string {
  let out = '';
  let i = s;
  for (; i < lim && i < s + 16; i++) {
    const c = buf[i] as number;
    if (c === CR) break;
    out += c >= 0x21 && c <= 0x7e ? String.fromCharCode(c) : '?';
  }
  return i === s + 16 ? `${out}...` : out;
}

const HTTP_1 = [0x48, 0x54, 0x54, 0x50, 0x2f, 0x31, 0x2e]; // "HTTP/1."

/**
 * Checks `HTTP/1.0` or `HTTP/1.1` at p (HTTP-name is case-sensitive, RFC 9112 §2.3). Returns
 * the minor version, 2 when the bytes ran out on a valid prefix, -1 otherwise.
 */
function version(buf: Buffer, p: number, lim: number): number {
  for (let i = 0; i < 8; i++) {
    if (p + i >= lim) return 2;
    const c = buf[p + i] as number;
    if (i === 7 ? c !== 0x30 && c !== 0x31 : c !== HTTP_1[i]) return -1;
  }
  return (buf[p + 7] as number) - 0x30;
}

/**
 * request-line = method SP request-target SP HTTP-version (RFC 9112 §3), with exactly one SP
 * each: parsers that accept other whitespace here disagree about the target. Sets at.a (end
 * of method), at.b (end of target), at.c (minor version), at.e.
 */
function requestLine(buf: Buffer, s: number, lim: number): string | null {
  let i = s;
  while (i < lim && TCHAR[buf[i] as number] === 1) i++;
  at.e = lim;
  if (i === lim) return null;
  if (buf[i] !== SP) return unexpected(buf[i] as number, 'method');
  if (i === s) return 'malformed request line: empty method';
  let j = i + 1;
  while (j < lim) {
    const c = buf[j] as number;
    if (c < 0x21 || c > 0x7e) break;
    j++;
  }
  if (j === lim) return null;
  if (buf[j] !== SP) return unexpected(buf[j] as number, 'request target');
  if (j === i + 1) return 'malformed request line: empty request target';
  const v = version(buf, j + 1, lim);
  const after = j + 9;
  if (v < 0 || (after < lim && buf[after] !== CR)) {
    for (let k = j + 1; k < lim && buf[k] !== CR; k++) if (buf[k] === LF) return 'bare LF in the head';
    return `unsupported HTTP version "${excerpt(buf, j + 1, lim)}" (only HTTP/1.0 and HTTP/1.1)`;
  }
  at.a = i;
  at.b = j;
  at.c = v;
  at.e = after < lim ? after : lim;
  return null;
}

/**
 * status-line = HTTP-version SP status-code SP [ reason-phrase ] (RFC 9112 §4). A missing
 * final SP is tolerated (RFC 9112 §4 asks clients to be lenient about the reason phrase).
 * Sets at.a (status code), at.c (minor version), at.e.
 */
function statusLine(buf: Buffer, s: number, lim: number): string | null {
  at.e = lim;
  const v = version(buf, s, lim);
  if (v < 0) return `unsupported HTTP version "${excerpt(buf, s, Math.min(lim, s + 8))}"`;
  if (s + 8 >= lim) return null;
  if (buf[s + 8] !== SP) return 'malformed status line';
  let code = 0;
  for (let i = s + 9; i < s + 12; i++) {
    if (i >= lim) return null;
    const d = (buf[i] as number) - 0x30;
    if (d < 0 || d > 9 || (i === s + 9 && d === 0)) return 'malformed status code';
    code = code * 10 + d;
  }
  let i = s + 12;
  if (i < lim && buf[i] !== CR) {
    if (buf[i] !== SP) return 'malformed status code';
    for (i++; i < lim; i++) if (FIELD[buf[i] as number] !== 1) break;
    if (i < lim && buf[i] !== CR) return unexpected(buf[i] as number, 'reason phrase');
  }
  at.a = code;
  at.c = v;
  at.e = i < lim ? i : lim;
  return null;
}

/**
 * field-line = field-name ":" OWS field-value OWS (RFC 9112 §5). Refuses obs-fold (§5.2) and
 * whitespace between name and colon (§5.1), both classic smuggling vectors. Sets at.a (end of
 * name), at.b/at.c (trimmed value bounds), at.upper (name has uppercase letters), at.e.
 */
function fieldLine(buf: Buffer, s: number, lim: number): string | null {
  at.e = lim;
  if (s === lim) return null;
  const c0 = buf[s] as number;
  if (c0 === CR) {
    at.e = s; // an empty line: the start of a terminator whose LF has not arrived yet
    return null;
  }
  if (c0 === SP || c0 === HTAB) return 'obsolete line folding (obs-fold) or whitespace before a field line';
  let i = s;
  let upper = false;
  for (; i < lim; i++) {
    const c = buf[i] as number;
    if (TCHAR[c] !== 1) break;
    if (c <= 0x5a && c >= 0x41) upper = true;
  }
  if (i === lim) return null;
  const c = buf[i] as number;
  if (c !== 0x3a) {
    if (c === SP || c === HTAB) return 'whitespace between a field name and its colon';
    return c === CR ? (i === s ? 'malformed field line' : 'field line without a colon') : unexpected(c, 'field name');
  }
  if (i === s) return 'empty field name';
  let vs = i + 1;
  while (vs < lim && (buf[vs] === SP || buf[vs] === HTAB)) vs++;
  let ve = vs;
  let k = vs;
  for (; k < lim; k++) {
    const b = buf[k] as number;
    if (FIELD[b] !== 1) break;
    if (b !== SP && b !== HTAB) ve = k + 1;
  }
  if (k < lim && buf[k] !== CR) return buf[k] === LF ? 'bare LF in the head' : 'control character in a field value';
  at.a = i;
  at.b = vs;
  at.c = ve;
  at.e = k;
  at.upper = upper;
  return null;
}

/** A complete head's start line and fields, as `scan` collects them. */
interface Built {
  readonly kind: 'built';
  /** Start of the start line, and for a request the ends of method and target. */
  line: number;
  methodEnd: number;
  targetEnd: number;
  status: number;
  version: number;
  /** The head decoded as latin1 (up to the CRLF of its last line). */
  text: string;
  readonly headers: Header[];
  headLength: number;
}

type Bad = { readonly reason: HeadError; readonly detail: string };

/**
 * Walks the lines of `buf[start, lim)`. With `build`, the head is complete (lim is just past
 * the CRLF of its last field line) and the start line and fields are collected; without, lim
 * may cut the last line short and only the bytes present are checked.
 */
function scan(buf: Buffer, start: number, lim: number, request: boolean, build: Built | null): Bad | null {
  // One latin1 decode of the whole head, then slices: far cheaper than a Buffer#toString per field.
  const text = build === null ? '' : buf.toString('latin1', 0, lim);
  let p = start;
  let line = 0;
  while (p < lim) {
    if (line > MAX_HEADERS) return { reason: 'header_too_large', detail: `more than ${MAX_HEADERS} header fields` };
    let e: string | null;
    if (line === 0) e = request ? requestLine(buf, p, lim) : statusLine(buf, p, lim);
    else e = fieldLine(buf, p, lim);
    if (e !== null) return { reason: 'bad_request', detail: e };
    const cr = at.e; // buf[cr] is CR, or cr === lim
    if (cr + 1 >= lim) break; // the bytes end inside this line (only when not building)
    if (buf[cr + 1] !== LF) return { reason: 'bad_request', detail: 'bare CR in the head' };
    if (build !== null) {
      if (line === 0) {
        build.line = p;
        build.text = text;
        build.version = at.c;
        if (request) {
          build.methodEnd = at.a;
          build.targetEnd = at.b;
        } else build.status = at.a;
      } else {
        const raw = text.slice(p, at.a);
        build.headers.push({ name: at.upper ? raw.toLowerCase() : raw, value: text.slice(at.b, at.c), raw });
      }
    }
    line++;
    p = cr + 2;
  }
  return null;
}

function parseHead(buf: Buffer, maxHeadBytes: number, request: boolean): Built | Bad | null {
  const max = maxHeadBytes >= 0 ? Math.floor(maxHeadBytes) : 0; // NaN and negatives: nothing fits
  const n = buf.length;
  let start = 0;
  let empties = 0;
  while (start + 1 < n && buf[start] === CR && buf[start + 1] === LF) {
    start += 2;
    if (++empties > MAX_LEADING_EMPTY_LINES) return { reason: 'bad_request', detail: 'too many empty lines before the start line' };
  }
  // A lone CR after the leading empty lines may be the start of one more.
  if (start === n - 1 && buf[start] === CR) return n > max ? { reason: 'header_too_large', detail: `head exceeds ${max} bytes` } : null;
  // The whole head, leading empty lines and final CRLFCRLF included, must fit in `max` bytes.
  const end = (n > max ? buf.subarray(0, max) : buf).indexOf(CRLFCRLF, start);
  if (end < 0) {
    const bad = scan(buf, start, Math.min(n, max, start + EARLY_CHECK_BYTES), request, null);
    if (bad !== null) return bad;
    return n > max ? { reason: 'header_too_large', detail: `head exceeds ${max} bytes` } : null;
  }
  const built: Built = { kind: 'built', line: 0, methodEnd: 0, targetEnd: 0, status: 0, version: 0, text: '', headers: [], headLength: end + 4 };
  return scan(buf, start, end + 2, request, built) ?? built;
}

export function parseRequestHead(buf: Buffer, maxHeadBytes: number): ParseResult<RequestHead> {
  const r = parseHead(buf, maxHeadBytes, true);
  if (r === null) return INCOMPLETE;
  if (!('kind' in r)) return { kind: 'error', reason: r.reason, detail: r.detail };
  const head: RequestHead = {
    method: r.text.slice(r.line, r.methodEnd),
    target: r.text.slice(r.methodEnd + 1, r.targetEnd),
    version: r.version === 0 ? 0 : 1,
    headers: r.headers,
    headLength: r.headLength,
  };
  return checkRequestFraming(head) ?? { kind: 'ok', head };
}

export function parseResponseHead(buf: Buffer, maxHeadBytes: number): ParseResult<ResponseHead> {
  const r = parseHead(buf, maxHeadBytes, false);
  if (r === null) return INCOMPLETE;
  if (!('kind' in r)) return { kind: 'error', reason: r.reason, detail: r.detail };
  const eol = r.text.indexOf('\r', r.line);
  const reason = eol > r.line + 13 ? r.text.slice(r.line + 13, eol) : '';
  return { kind: 'ok', head: { status: r.status, reason, version: r.version === 0 ? 0 : 1, headers: r.headers, headLength: r.headLength } };
}

/** RFC 9112 §6.1, §6.3: the request framing checks that defeat smuggling. */
function checkRequestFraming(h: RequestHead): ParseResult<RequestHead> | null {
  let cl: string | null = null;
  let te: string | null = null;
  let hosts = 0;
  let connection = false;
  for (const x of h.headers) {
    const name = x.name;
    if (name === 'connection') connection = true;
    else if (name === 'content-length') {
      // Even identical repeated values are refused from clients: RFC 9110 §8.6 lets a
      // recipient merge them, but a peer that does not is how CL.CL smuggling works.
      if (cl !== null) return smuggling('more than one Content-Length header');
      cl = x.value;
    } else if (name === 'transfer-encoding') {
      if (te !== null) return smuggling('more than one Transfer-Encoding header');
      te = x.value;
    } else if (name === 'host') hosts++;
  }
  if (hosts > 1) return { kind: 'error', reason: 'bad_request', detail: 'more than one Host header' };
  if (cl !== null && te !== null) return smuggling('Content-Length together with Transfer-Encoding');
  if (te !== null) {
    // RFC 9112 §6.1: Transfer-Encoding in HTTP/1.0 means the framing is faulty.
    if (h.version === 0) return smuggling('Transfer-Encoding in an HTTP/1.0 request');
    if (te.length !== 7 || te.toLowerCase() !== 'chunked') return smuggling('only "Transfer-Encoding: chunked" is accepted in requests');
  }
  if (cl !== null && parseLength(cl) < 0) {
    if (cl.includes(',')) return smuggling('Content-Length with a list of values');
    return { kind: 'error', reason: 'bad_request', detail: 'invalid Content-Length' };
  }
  if (connection) {
    // RFC 9110 §7.6.1 has a proxy remove the fields that Connection names. Naming the framing
    // or the Host would have us forward the body without its Content-Length, so the origin
    // reads that body as a second request, to any virtual host: smuggling through the proxy.
    for (const t of connectionTokens(h)) if (FRAMING_FIELDS.has(t)) return smuggling(`Connection names ${t}, a field the framing or the decision depends on`);
  }
  return null;
}

/** Fields a Connection header may never name (see checkRequestFraming and checkResponseConnection). */
const FRAMING_FIELDS: ReadonlySet<string> = new Set(['content-length', 'transfer-encoding', 'host']);

/**
 * The response side of the same check: an origin whose Connection header names Content-Length
 * or Transfer-Encoding would have the proxy strip its framing and desynchronize the client's
 * kept-alive connection. Answers the problem, or null.
 */
export function checkResponseConnection(h: ResponseHead): string | null {
  for (const t of connectionTokens(h)) if (FRAMING_FIELDS.has(t)) return `the response's Connection header names ${t}`;
  return null;
}

function smuggling(detail: string): ParseResult<RequestHead> {
  return { kind: 'error', reason: 'request_smuggling', detail };
}

/** Content-Length = 1*DIGIT (RFC 9110 §8.6) up to 2^53-1; -1 otherwise. */
export function parseLength(v: string): number {
  const n = v.length;
  if (n === 0) return -1;
  let i = 0;
  while (i < n - 1 && v.charCodeAt(i) === 0x30) i++; // leading zeros do not count against the limit
  if (n - i > 16) return -1;
  let x = 0;
  for (; i < n; i++) {
    const d = v.charCodeAt(i) - 0x30;
    if (d < 0 || d > 9) return -1;
    x = x * 10 + d;
  }
  return x <= Number.MAX_SAFE_INTEGER ? x : -1;
}

export type RequestFraming = { readonly kind: 'none' } | { readonly kind: 'length'; readonly length: number } | { readonly kind: 'chunked' };
export type ResponseFraming = RequestFraming | { readonly kind: 'close' } | { readonly kind: 'error'; readonly detail: string };

const NONE = Object.freeze({ kind: 'none' as const });
const CHUNKED = Object.freeze({ kind: 'chunked' as const });
const CLOSE = Object.freeze({ kind: 'close' as const });

/**
 * The request body's framing (RFC 9112 §6.3). `h` must come from parseRequestHead, which has
 * already refused every ambiguous combination; a request with neither header has no body.
 */
export function requestFraming(h: RequestHead): RequestFraming {
  for (const x of h.headers) {
    if (x.name === 'transfer-encoding') return CHUNKED;
    if (x.name === 'content-length') {
      const n = parseLength(x.value);
      return { kind: 'length', length: n < 0 ? 0 : n };
    }
  }
  return NONE;
}

/** RFC 9112 §6.3: the length of the body of a response to `requestMethod`. */
export function responseFraming(h: ResponseHead, requestMethod: string): ResponseFraming {
  const s = h.status;
  if (requestMethod === 'HEAD' || s < 200 || s === 204 || s === 304) return NONE;
  if (requestMethod === 'CONNECT' && s < 300) return NONE; // the connection becomes a tunnel
  const te = transferEncoding(h);
  let length = -2; // -2: no Content-Length seen
  for (const x of h.headers) {
    if (x.name === 'content-length') {
      // Identical repeated values, or a list of them, may be merged (RFC 9110 §8.6).
      const v = x.value;
      for (const part of v.includes(',') ? v.split(',') : [v]) {
        const n = parseLength(ows(part));
        if (n < 0) return { kind: 'error', detail: 'invalid Content-Length in the response' };
        if (length !== -2 && length !== n) return { kind: 'error', detail: 'conflicting Content-Length values in the response' };
        length = n;
      }
    }
  }
  if (te !== null) {
    // §6.3 item 3: TE with CL "ought to be handled as an error" (response splitting).
    if (length !== -2) return { kind: 'error', detail: 'Content-Length together with Transfer-Encoding in the response' };
    if (h.version === 0) return { kind: 'error', detail: 'Transfer-Encoding in an HTTP/1.0 response' };
    const codings = transferCodings(te);
    const last = codings.at(-1) ?? '';
    if (codings.filter((c) => c === 'chunked').length > 1) return { kind: 'error', detail: 'chunked applied more than once' };
    // §6.3 item 4: chunked not final → the body runs until the server closes.
    return last === 'chunked' ? CHUNKED : CLOSE;
  }
  if (length >= 0) return { kind: 'length', length };
  return CLOSE;
}

/** Lowercased tokens of every Connection header (hop-by-hop fields named by the sender). */
export function connectionTokens(h: { readonly headers: readonly Header[] }): Set<string> {
  const s = new Set<string>();
  for (const x of h.headers) {
    if (x.name !== 'connection') continue;
    for (const t of x.value.split(',')) {
      const v = ows(t).toLowerCase();
      if (v !== '') s.add(v);
    }
  }
  return s;
}

/**
 * Trims OWS (SP / HTAB) only. String.prototype.trim() would also strip U+00A0, a valid
 * obs-text byte in latin1: `chunked\xa0` would then read as `chunked` here while another
 * parser sees an unknown coding — exactly the disagreement smuggling needs.
 */
function ows(s: string): string {
  let a = 0;
  let b = s.length;
  while (a < b && (s.charCodeAt(a) === SP || s.charCodeAt(a) === HTAB)) a++;
  while (b > a && (s.charCodeAt(b - 1) === SP || s.charCodeAt(b - 1) === HTAB)) b--;
  return a === 0 && b === s.length ? s : s.slice(a, b);
}

/** Whether a comma-separated list holds `tok` (lowercase), case-insensitively, without allocating. */
function listHas(v: string, tok: string): boolean {
  const n = v.length;
  let i = 0;
  while (i < n) {
    while (i < n && (v.charCodeAt(i) === SP || v.charCodeAt(i) === HTAB || v.charCodeAt(i) === 0x2c)) i++;
    let j = 0;
    for (; i + j < n && j < tok.length; j++) {
      const c = v.charCodeAt(i + j);
      if ((c >= 0x41 && c <= 0x5a ? c | 0x20 : c) !== tok.charCodeAt(j)) break;
    }
    let k = i + j;
    if (j === tok.length) {
      while (k < n && (v.charCodeAt(k) === SP || v.charCodeAt(k) === HTAB)) k++;
      if (k === n || v.charCodeAt(k) === 0x2c) return true;
    }
    while (k < n && v.charCodeAt(k) !== 0x2c) k++;
    i = k;
  }
  return false;
}

/** Whether the sender wants the connection closed after this message (RFC 9112 §9.3). */
export function wantsClose(h: RequestHead | ResponseHead): boolean {
  let keepAlive = false;
  for (const x of h.headers) {
    if (x.name !== 'connection') continue;
    if (listHas(x.value, 'close')) return true;
    if (!keepAlive && listHas(x.value, 'keep-alive')) keepAlive = true;
  }
  return h.version === 0 && !keepAlive;
}

/**
 * The Transfer-Encoding field's value: every line of it combined in order (RFC 9110 §5.3), or
 * null. Framing is read from this value, and it is what must be forwarded: taking the first
 * line alone (`gzip`) while framing by all of them (`gzip, chunked`) tells the next hop to read
 * a chunked body until the connection closes, so the next response on a kept-alive connection
 * becomes part of this one's body.
 */
export function transferEncoding(h: { readonly headers: readonly Header[] }): string | null {
  let te: string | null = null;
  for (const x of h.headers) if (x.name === 'transfer-encoding') te = te === null ? x.value : `${te}, ${x.value}`;
  return te;
}

/** The transfer codings named by a Transfer-Encoding value, lowercased, in order (empty elements skipped). */
export function transferCodings(te: string): string[] {
  const out: string[] = [];
  for (const part of te.split(',')) {
    const c = ows(part).toLowerCase();
    if (c !== '') out.push(c); // empty list elements are allowed (RFC 9110 §5.6.1)
  }
  return out;
}

/** The first value of header `name` (case-insensitive), or undefined. */
export function getHeader(h: { readonly headers: readonly Header[] }, name: string): string | undefined {
  const n = name.toLowerCase();
  for (const x of h.headers) if (x.name === n) return x.value;
  return undefined;
}

/**
 * Serializers for forwarding. The caller filters hop-by-hop fields; names keep their spelling
 * (`raw`), the version is always HTTP/1.1 (RFC 9110 §2.5: an intermediary sends its own).
 * Whatever the caller passes, the output is one well-formed head that no recipient can split
 * differently: CR, LF, NUL and other CTLs (or characters beyond latin1, which latin1 encoding
 * would truncate to such bytes) in values become SP (RFC 9110 §5.5), a field whose name is
 * not a token is dropped, and bytes outside visible ASCII in the target are percent-encoded.
 */
export function serializeRequestHead(method: string, path: string, headers: readonly Header[], extra: readonly (readonly [string, string])[]): Buffer {
  let s = `${isToken(method) ? method : sanitizeToken(method)} ${cleanTarget(path)} HTTP/1.1\r\n`;
  s = fields(s, headers, extra);
  return Buffer.from(s, 'latin1');
}

export function serializeResponseHead(status: number, reason: string, headers: readonly Header[], extra: readonly (readonly [string, string])[]): Buffer {
  const code = Number.isInteger(status) && status >= 100 && status <= 999 ? status : 500;
  let s = `HTTP/1.1 ${code} ${cleanValue(reason)}\r\n`;
  s = fields(s, headers, extra);
  return Buffer.from(s, 'latin1');
}

function fields(s: string, headers: readonly Header[], extra: readonly (readonly [string, string])[]): string {
  for (const h of headers) if (isToken(h.raw)) s += `${h.raw}: ${cleanValue(h.value)}\r\n`;
  for (const [k, v] of extra) if (isToken(k)) s += `${k}: ${cleanValue(v)}\r\n`;
  return `${s}\r\n`;
}

function isToken(s: string): boolean {
  if (s.length === 0) return false;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c > 0xff || TCHAR[c] !== 1) return false;
  }
  return true;
}

function sanitizeToken(s: string): string {
  let out = '';
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    out += c <= 0xff && TCHAR[c] === 1 ? s[i] : '_';
  }
  return out === '' ? '_' : out;
}

function cleanValue(v: string): string {
  for (let i = 0; i < v.length; i++) {
    const c = v.charCodeAt(i);
    if (c > 0xff || FIELD[c] !== 1) return v.replace(/[^\t\x20-\x7e\x80-\xff]/g, ' ');
  }
  return v;
}

function cleanTarget(t: string): string {
  let ok = t.length > 0;
  for (let i = 0; ok && i < t.length; i++) {
    const c = t.charCodeAt(i);
    if (c < 0x21 || c > 0x7e) ok = false;
  }
  if (ok) return t;
  if (t.length === 0) return '/';
  let out = '';
  for (const ch of t) {
    const c = ch.codePointAt(0) as number;
    if (c >= 0x21 && c <= 0x7e) out += ch;
    else for (const b of Buffer.from(ch, 'utf8')) out += `%${b.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}
