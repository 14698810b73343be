/**
 * What every route needs: the store, the bus, callbacks, and `act()`, which runs a change and
 * its audit entry in one transaction, audits refusals too, and publishes `audit.entry` only
 * after the commit (an event for a change that rolled back would be false evidence).
 */
import type { FastifyBaseLogger, FastifyPluginAsync, FastifyRequest } from 'fastify';
import type { Transaction } from 'kysely';
import type { EventBus } from '../events/bus.js';
import type { CompiledPolicy } from '../policy/index.js';
import type { Admin } from '../store/admins.js';
import { appendAudit, type AuditInput } from '../store/audit.js';
import type { ChainedEntry } from '../store/audit-chain.js';
import type { Store } from '../store/open.js';
import type { DB } from '../store/schema.js';
import { ApiError } from './errors.js';

export type RouteRole = 'viewer' | 'operator' | 'security-admin' | 'public' | 'device';

export interface PolicyMeta {
  /** The applied version (all groups but the pilot). */
  readonly version: number;
  readonly pilotVersion: number | null;
  readonly pilotGroup: string | null;
  /** Digest of the effective document the gateway enforces. */
  readonly digest: string;
  /** `store:v3` or `store:v3+pilot:v4@group`. */
  readonly source: string;
}

export interface ControlOptions {
  readonly store: Store;
  readonly bus: EventBus;
  readonly logger?: FastifyBaseLogger;
  /** Called after every apply, promote or rollback with the compiled effective policy. */
  readonly onPolicyApplied?: (compiled: CompiledPolicy, meta: PolicyMeta) => void | Promise<void>;
  /** Called after any device or certificate state change the API makes. */
  readonly onDeviceChanged?: (deviceId: string) => void | Promise<void>;
  /** Extra fastify plugins (EST, /metrics, …); their routes must declare a role too. */
  readonly plugins?: readonly FastifyPluginAsync[];
  /** Two-person rule: a version must be approved by a security-admin other than its author. */
  readonly twoPerson?: boolean;
  /** Readiness of the policy the gateway enforces; default: the control plane's last applied one. */
  readonly policyLoaded?: () => boolean;
  /** TLS for the control listener (PEM text). */
  readonly https?: { readonly cert: string | Buffer; readonly key: string | Buffer };
  /** Largest request body (bytes); policy proposals may be larger (POLICY_BODY_LIMIT). */
  readonly bodyLimit?: number;
}

export interface Actor {
  readonly admin: Admin;
  readonly tokenId: string;
}

declare module 'fastify' {
  interface FastifyContextConfig {
    role?: RouteRole;
  }
  interface FastifyRequest {
    actor: Actor | null;
  }
}

export interface Who {
  readonly actorId: string | null;
  /** The API token the admin authenticated with (null for system actors). */
  readonly tokenId: string | null;
  readonly actor: string;
  readonly role: string;
  readonly sourceIp: string | null;
}

export interface ActSpec {
  readonly action: string;
  readonly target?: string | null;
}

export interface ActResult<T> {
  readonly value: T;
  readonly before?: unknown;
  readonly after?: unknown;
  readonly detail?: string;
}

export class ControlContext {
  /** The compiled effective policy last applied through this control plane (or loaded at start). */
  current: { compiled: CompiledPolicy; meta: PolicyMeta } | null = null;

  #delivered = -1;
  #delivering: Promise<void> = Promise.resolve();

  constructor(readonly opts: ControlOptions) {}

  /**
   * Hands a new effective policy to the gateway, in generation order: a slower, older apply
   * finishing last must never replace a newer snapshot.
   */
  deliver(generation: number, eff: { compiled: CompiledPolicy; meta: PolicyMeta }): Promise<void> {
    this.#delivering = this.#delivering.then(async () => {
      if (generation <= this.#delivered) return;
      this.#delivered = generation;
      this.current = { compiled: eff.compiled, meta: eff.meta };
      try {
        await this.opts.onPolicyApplied?.(eff.compiled, eff.meta);
      } catch (err) {
        this.log.error({ err, source: eff.meta.source }, 'onPolicyApplied failed');
      }
    });
    return this.#delivering;
  }

  /** Tells the identity side that a device changed; its failure is logged, never the caller's. */
  async deviceChanged(deviceId: string): Promise<void> {
    try {
      await this.opts.onDeviceChanged?.(deviceId);
    } catch (err) {
      this.log.error({ err, device_id: deviceId }, 'onDeviceChanged failed');
    }
  }

  get store(): Store { return this.opts.store; }

  actorOf(req: FastifyRequest): Actor {
    if (!req.actor) throw new ApiError(401, 'AUTH_REQUIRED');
    return req.actor;
  }

  /** Who is acting, for the audit log: the authenticated admin and the source address. */
  who(req: FastifyRequest): Who {
    const a = req.actor;
    return { actorId: a?.admin.id ?? null, tokenId: a?.tokenId ?? null, actor: a?.admin.name ?? 'anonymous', role: a?.admin.role ?? 'none', sourceIp: req.ip ?? null };
  }

  /** Records one audit entry on its own (refusals, failed attempts). Never throws. */
  async audit(who: Who | FastifyRequest, e: Omit<AuditInput, keyof Who>): Promise<void> {
    const w = 'headers' in who ? this.who(who) : who;
    try {
      const entry = await this.store.tx((trx) => appendAudit(trx, this.store.dialect, { ...e, ...w }));
      this.publish(entry);
    } catch (err) {
      this.log.error({ err, action: e.action }, 'cannot append to the audit log');
    }
  }

  get log(): Pick<FastifyBaseLogger, 'error' | 'warn' | 'info'> {
    return this.opts.logger ?? { error() {}, warn() {}, info() {} } as unknown as FastifyBaseLogger;
  }

  /**
   * Runs a change and appends its audit entry in the same transaction. An ApiError thrown by `fn`
   * (a refusal) rolls the change back and is audited as `denied` (4xx) or `error`.
   */
  async act<T>(whoOrReq: Who | FastifyRequest, spec: ActSpec, fn: (trx: Transaction<DB>) => Promise<ActResult<T>>): Promise<T> {
    const w = 'headers' in whoOrReq ? this.who(whoOrReq) : whoOrReq;
    let entry: ChainedEntry;
    let value: T;
    try {
      [entry, value] = await this.store.tx(async (trx) => {
        const r = await fn(trx);
        const a = await appendAudit(trx, this.store.dialect, { ...w, action: spec.action, target: spec.target ?? null, result: 'ok', before: r.before, after: r.after, detail: r.detail ?? null });
        return [a, r.value] as const;
      });
    } catch (err) {
      const denied = err instanceof ApiError && err.statusCode < 500;
      await this.audit(w, { action: spec.action, target: spec.target ?? null, result: denied ? 'denied' : 'error', detail: err instanceof ApiError ? err.auditDetail ?? err.code : 'INTERNAL' });
      throw err;
    }
    this.publish(entry);
    return value;
  }

  publish(e: ChainedEntry): void {
    this.opts.bus.publish({
      v: 1, type: 'audit.entry', time: new Date(e.time).toISOString(), seq: e.seq, actor: e.actor, role: e.role, action: e.action,
      target: e.target, result: e.result as 'ok' | 'denied' | 'error', source_ip: e.source_ip, token_id: e.token_id ?? null, hash: e.hash,
    });
  }

  /** 403 FORBIDDEN_SCOPE unless the actor's scopes cover `group` (null scopes: every group). */
  requireScope(req: FastifyRequest, group: string): void {
    const scopes = this.actorOf(req).admin.scopes;
    if (scopes !== null && !scopes.includes(group)) throw new ApiError(403, 'FORBIDDEN_SCOPE', `group "${group}" is outside your scopes`);
  }

  /**
   * requireScope for reads, which run outside act(): the refusal is audited here, as every
   * other refusal is (a scoped admin probing other groups is what the log is for).
   */
  async requireReadScope(req: FastifyRequest, group: string): Promise<void> {
    try {
      this.requireScope(req, group);
    } catch (err) {
      await this.auditReadRefusal(req, `group:${group}`, 'FORBIDDEN_SCOPE');
      throw err;
    }
  }

  /** Audits a read refused for scope (reads run outside act(), which audits changes' refusals). */
  async auditReadRefusal(req: FastifyRequest, target: string, detail: string): Promise<void> {
    await this.audit(req, { action: `${req.method} ${req.routeOptions.url ?? req.url}`, target, result: 'denied', detail });
  }

  /** The groups a list should be restricted to, or undefined for all. */
  scopeFilter(req: FastifyRequest): readonly string[] | undefined {
    return this.actorOf(req).admin.scopes ?? undefined;
  }
}
