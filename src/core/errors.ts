/**
 * One registry of stable error codes for everything that is not a connection decision
 * (config, policy load, CLI). Codes are the contract; messages are prose (DESIGN §6.6).
 * An error carries a separate public message and a cause that is only logged (§6.7).
 */
export const ERROR_CODES = {
  CONFIG_INVALID: 'The configuration file or flags are invalid.',
  CONFIG_UNREADABLE: 'The configuration file cannot be read.',
  POLICY_INVALID: 'The policy document is invalid.',
  POLICY_UNREADABLE: 'The policy file cannot be read.',
  POLICY_YAML: 'The policy file is not valid YAML.',
  USAGE: 'The command line is invalid.',
  LISTEN_FAILED: 'A listener could not be opened.',
  INTERNAL: 'An internal error occurred.',
  // ---- agent side (issue #6): export, enroll/renew, forwarder, exec, verify ----
  EXPORT_INVALID: 'The host egress rules cannot be exported from these inputs.',
  AGENT_DIR_INSECURE: 'The agent directory or a key file is readable or writable by other users.',
  AGENT_TOKEN_MISSING: 'No enrollment token was given.',
  AGENT_CA_MISMATCH: 'The server presented a CA that does not match the pinned fingerprint.',
  AGENT_TLS_FAILED: 'The TLS connection to the server failed or its certificate is not from the pinned CA.',
  AGENT_ENROLL_DENIED: 'The server refused the enrollment or renewal.',
  AGENT_SERVER_ERROR: 'The server answered with an error or something that is not EST.',
  AGENT_NOT_ENROLLED: 'The agent directory holds no usable certificate and key.',
  AGENT_CERT_EXPIRED: 'The device certificate has expired: re-enrollment is needed.',
  AGENT_LISTEN_REFUSED: 'The forwarder only listens on loopback addresses.',
  AGENT_EXEC_FAILED: 'The command could not be started.',
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

/** One problem found in an input document, with the path of the offending value. */
export interface Problem {
  /** e.g. `groups[0].allow[2].host`; empty for the document itself. */
  readonly path: string;
  readonly message: string;
  /** What to write instead, when we know. */
  readonly fix?: string;
  /** 1-based line and column in the source text, when known. */
  readonly line?: number;
  readonly column?: number;
}

export class ChokepointError extends Error {
  readonly code: ErrorCode;
  readonly problems: readonly Problem[];
  constructor(code: ErrorCode, message: string, opts: { cause?: unknown; problems?: readonly Problem[] } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'ChokepointError';
    this.code = code;
    this.problems = opts.problems ?? [];
  }
}

/** Formats a problem as one line: `path: message (fix: …)` with a position when known. */
export function formatProblem(p: Problem): string {
  const where = p.path === '' ? '(document)' : p.path;
  const pos = p.line !== undefined ? ` [line ${p.line}${p.column !== undefined ? `:${p.column}` : ''}]` : '';
  return `${where}${pos}: ${p.message}${p.fix ? ` (fix: ${p.fix})` : ''}`;
}

/** Renders a path array from a validator (`['groups', 0, 'name']`) as `groups[0].name`. */
export function formatPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const seg of path) {
    if (typeof seg === 'number') out += `[${seg}]`;
    else out += out === '' ? String(seg) : `.${String(seg)}`;
  }
  return out;
}
