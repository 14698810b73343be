/**
 * Bearer secrets: `cpa_` (admin API tokens) and `cpe_` (enrollment tokens) followed by
 * base64url(32 random bytes) — 256 bits, so guessing is hopeless and no rate limit is needed for
 * secrecy. Only sha256 hex of the whole string is stored: a stolen database does not yield a
 * usable token, and lookup by hash makes the comparison independent of the secret's bytes.
 */
import { createHash, randomBytes } from 'node:crypto';

export type TokenKind = 'cpa' | 'cpe';

export function newToken(kind: TokenKind): string {
  return `${kind}_${randomBytes(32).toString('base64url')}`;
}

export function hashToken(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

/** Shape check before any lookup (43 base64url characters encode 32 bytes). */
export function looksLikeToken(kind: TokenKind, s: string): boolean {
  return s.length === kind.length + 1 + 43 && s.startsWith(`${kind}_`) && /^[A-Za-z0-9_-]{43}$/.test(s.slice(kind.length + 1));
}
