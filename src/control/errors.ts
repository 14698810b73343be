/**
 * The API's error envelope `{code, message, statusCode}` (plus `problems` for validation). Codes
 * come from the one registry in src/core/errors.ts. Internal error text (SQL, stack, driver
 * messages) is logged, never sent: it would map the schema and the deployment for an attacker.
 */
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import type { ZodType } from 'zod';
import { ChokepointError, ERROR_CODES, formatPath, type ErrorCode, type Problem } from '../core/errors.js';

export class ApiError extends Error {
  /** What the audit log records instead of `code`, when the answer hides the real reason (see routes-devices.ts). */
  auditDetail: string | null = null;

  constructor(
    readonly statusCode: number,
    readonly code: ErrorCode,
    message?: string,
    readonly problems: readonly Problem[] = [],
  ) {
    super(message ?? ERROR_CODES[code]);
    this.name = 'ApiError';
  }
}

export interface Envelope {
  code: ErrorCode;
  message: string;
  statusCode: number;
  problems?: readonly Problem[];
}

export function envelope(statusCode: number, code: ErrorCode, message?: string, problems?: readonly Problem[]): Envelope {
  const e: Envelope = { code, message: message ?? ERROR_CODES[code], statusCode };
  if (problems && problems.length > 0) e.problems = problems;
  return e;
}

/** Validates a body, query or params object; every failing path is named. */
export function parse<T>(schema: ZodType<T>, value: unknown, where: 'body' | 'query' | 'params'): T {
  const r = schema.safeParse(value ?? (where === 'body' ? undefined : {}));
  if (r.success) return r.data;
  const problems = r.error.issues.slice(0, 50).map((i) => {
    const path = formatPath([where, ...i.path]);
    const message = i.code === 'unrecognized_keys' ? `unknown key${i.keys.length > 1 ? 's' : ''} ${i.keys.map((k) => `"${k}"`).join(', ')}` : i.message;
    return { path, message };
  });
  const first = problems[0];
  throw new ApiError(400, 'VALIDATION_FAILED', first ? `${first.path}: ${first.message}` : 'invalid request', problems);
}

/** Database and driver failures that mean "the store is unreachable" rather than a bug. */
export function isStoreDown(err: unknown): boolean {
  if (err instanceof ChokepointError && err.code === 'STORE_UNAVAILABLE') return true;
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code === 'string' && /^(ECONNREFUSED|ECONNRESET|ETIMEDOUT|EPIPE|ENOTFOUND|EHOSTUNREACH|57P0[1-3]|08\d{3}|SQLITE_BUSY|SQLITE_CANTOPEN|SQLITE_IOERR.*)$/.test(code)) return true;
  const msg = err instanceof Error ? err.message : '';
  return /Connection terminated|timeout exceeded when trying to connect|Query read timeout|driver has already been destroyed|connection is not open/i.test(msg);
}

const FASTIFY_CODES: Record<string, [number, ErrorCode]> = {
  FST_ERR_CTP_BODY_TOO_LARGE: [413, 'BODY_TOO_LARGE'],
  FST_ERR_CTP_INVALID_MEDIA_TYPE: [415, 'UNSUPPORTED_MEDIA_TYPE'],
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: [400, 'BAD_JSON'],
  FST_ERR_CTP_EMPTY_JSON_BODY: [400, 'BAD_JSON'],
  FST_ERR_CTP_INVALID_JSON_BODY: [400, 'BAD_JSON'],
};

export function toEnvelope(err: FastifyError | Error, req: FastifyRequest): Envelope {
  if (err instanceof ApiError) return envelope(err.statusCode, err.code, err.message, err.problems);
  const code = (err as FastifyError).code;
  const mapped = code !== undefined ? FASTIFY_CODES[code] : undefined;
  if (mapped) return envelope(mapped[0], mapped[1]);
  if (isStoreDown(err)) {
    req.log.error({ err }, 'store unavailable');
    return envelope(503, 'STORE_UNAVAILABLE');
  }
  const status = (err as FastifyError).statusCode;
  // JSON syntax errors and prototype-poisoning refusals (secure-json-parse) arrive as plain 400s.
  if (status === 400 && (err instanceof SyntaxError || /JSON|prototype|constructor/i.test(err.message))) return envelope(400, 'BAD_JSON');
  if (typeof status === 'number' && status >= 400 && status < 500) return envelope(status, 'VALIDATION_FAILED');
  req.log.error({ err }, 'request failed');
  return envelope(500, 'INTERNAL');
}

export function sendEnvelope(reply: FastifyReply, e: Envelope): FastifyReply {
  return reply.code(e.statusCode).type('application/json; charset=utf-8').send(e);
}
