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
  // ---- management plane (issue #3): store, control API, RBAC, audit, policy change control, CLI client ----
  STORE_UNAVAILABLE: 'The store (database) cannot be reached or opened.',
  STORE_SCHEMA_NEWER: 'The database was written by a newer release of chokepoint.',
  NOT_READY: 'The control plane is not ready.',
  AUTH_REQUIRED: 'A bearer API token is required.',
  AUTH_INVALID: 'The API token is unknown, expired or revoked.',
  FORBIDDEN_ROLE: 'Your role does not allow this action.',
  FORBIDDEN_SCOPE: 'This device group is outside your scopes.',
  ROUTE_NOT_FOUND: 'No such route.',
  METHOD_NOT_ALLOWED: 'This route does not accept that method.',
  UNSUPPORTED_MEDIA_TYPE: 'Request bodies must be application/json.',
  BODY_TOO_LARGE: 'The request body is too large.',
  BAD_JSON: 'The request body is not valid JSON.',
  VALIDATION_FAILED: 'The request is invalid.',
  RESOURCE_NOT_FOUND: 'No such resource.',
  CONFLICT: 'The resource is not in a state that allows this.',
  POLICY_CONFLICT: 'The applied policy changed meanwhile; reload and retry.',
  POLICY_APPROVAL_REQUIRED: 'Another security-admin must approve this version first.',
  POLICY_SELF_APPROVAL: 'The author of a version cannot approve it.',
  POLICY_ROLLBACK_TARGET: 'Only a version that was applied before can be rolled back to.',
  CONTROL_TLS_REQUIRED: 'The control listener needs TLS when it is not on loopback.',
  SERVER_UNREACHABLE: 'The chokepoint server cannot be reached.',
  AUDIT_CHAIN_BROKEN: 'The audit log hash chain is broken.',
  // ---- agent side (issue #6): export, enroll/renew, forwarder, exec, verify ----
  EXPORT_INVALID: 'The host egress rules cannot be exported from these inputs.',
  AGENT_DIR_INSECURE: 'The agent directory or a key file is readable or writable by other users.',
  AGENT_TOKEN_MISSING: 'No enrollment token was given.',
  AGENT_CA_MISMATCH: 'The server presented a CA that does not match the pinned fingerprint.',
  AGENT_TLS_FAILED: 'The TLS connection to the server failed or its certificate is not from the pinned CA.',
  AGENT_ENROLL_DENIED: 'The server refused the enrollment.',
  AGENT_RENEW_DENIED: 'The server refused the renewal (revoked, disabled, expired or superseded): re-enroll if the device is trusted.',
  AGENT_SERVER_ERROR: 'The server answered with an error or something that is not EST.',
  AGENT_NOT_ENROLLED: 'The agent directory holds no usable certificate and key.',
  AGENT_CERT_EXPIRED: 'The device certificate has expired: re-enrollment is needed.',
  AGENT_LISTEN_REFUSED: 'The forwarder only listens on loopback addresses.',
  AGENT_EXEC_FAILED: 'The command could not be started.',
  // ---- device identity (issue #4): CA, CSR, tokens, enrollment, renewal ----
  CA_MISSING: 'No CA exists in the data directory: run `chokepoint ca init` or `ca import`.',
  CA_EXISTS: 'A CA already exists in the data directory.',
  CA_INVALID: 'The CA certificate or key is unusable (not a CA, wrong key type, expired, or unreadable).',
  CA_KEY_MISMATCH: 'The CA private key does not match the CA certificate.',
  CA_KEY_INSECURE: 'The CA key file is readable or writable by group or others (must be mode 0600).',
  CA_KEY_PASSPHRASE: 'The CA key is encrypted and the passphrase is missing or wrong.',
  CA_ROTATION: 'The CA rotation step is not possible in the current state.',
  CSR_INVALID: 'The certificate request is not a well-formed PKCS#10 request.',
  CSR_TOO_LARGE: 'The certificate request is larger than allowed.',
  CSR_BAD_SIGNATURE: 'The certificate request signature does not verify (no proof of possession).',
  CSR_KEY_RSA: 'RSA keys are refused: use an ECDSA P-256 key.',
  CSR_KEY_CURVE: 'Only the P-256 curve is accepted.',
  CSR_KEY_UNSUPPORTED: 'The key type is not accepted: use an ECDSA P-256 key.',
  CSR_KEY_REUSED: 'The key in the request belongs to another device or to the CA.',
  CSR_IDENTITY_MISMATCH: 'The request names an identity other than the one the gateway assigns.',
  TOKEN_MISSING: 'No enrollment token was presented.',
  TOKEN_UNKNOWN: 'The enrollment token is not known.',
  TOKEN_EXPIRED: 'The enrollment token has expired.',
  TOKEN_USED: 'The enrollment token has no uses left.',
  TOKEN_REVOKED: 'The enrollment token was revoked.',
  TOKEN_SCOPE: 'The enrollment token does not cover the requested asset.',
  ENROLLMENT_DENIED: 'An administrator denied this enrollment request.',
  ENROLLMENT_KEY_MISMATCH: 'The pending enrollment request is bound to another key.',
  CLIENT_CERT_REQUIRED: 'A client certificate is required on this endpoint.',
  CLIENT_CERT_UNTRUSTED: 'The client certificate was not issued by a trusted device CA.',
  CERTIFICATE_EXPIRED: 'The client certificate has expired: enroll again with a new token.',
  CERTIFICATE_NOT_YET_VALID: 'The client certificate is not valid yet.',
  CERTIFICATE_REVOKED: 'The client certificate was revoked or superseded.',
  DEVICE_UNKNOWN: 'The certificate does not belong to a known device.',
  DEVICE_REVOKED: 'The device was revoked.',
  DEVICE_DISABLED: 'The device is disabled.',
  DEVICE_PENDING: 'The device is waiting for approval.',
  RENEWAL_LIMIT: 'The device already holds several renewed certificates it has not used: use the newest one.',
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
