/** Per-group identity settings resolved from the `identity:` configuration section. */
import type { IdentityConfig } from '../config/identity.js';

export interface GroupSettings {
  readonly requireApproval: boolean;
  readonly validityMs: number;
  readonly renewalGraceMs: number;
}

export interface IdentitySettings {
  group(name: string): GroupSettings;
  readonly retryAfterSec: number;
  readonly crlValidityMs: number;
}

export function identitySettings(cfg: IdentityConfig): IdentitySettings {
  return {
    group(name) {
      // Own-property lookup only: a group named `__proto__` or `constructor` must not reach Object.prototype.
      const g = Object.prototype.hasOwnProperty.call(cfg.groups, name) ? cfg.groups[name] : undefined;
      return {
        requireApproval: g?.require_approval ?? false,
        validityMs: g?.cert_validity ?? cfg.default_cert_validity,
        renewalGraceMs: g?.renewal_grace ?? cfg.default_renewal_grace,
      };
    },
    retryAfterSec: Math.ceil(cfg.retry_after / 1000),
    crlValidityMs: cfg.crl_validity,
  };
}
