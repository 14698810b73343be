/**
 * Name resolution for allowed destinations only (DESIGN §2 step 4). Answers are cached by
 * TTL (clamped to [min_ttl, max_ttl]); failures are cached briefly (negative_ttl) so a
 * flood of requests for a dead name does not become a flood of queries. Concurrent lookups
 * of one name share one query. The cache is bounded; the oldest entry goes first.
 *
 * Two modes:
 * - system (no resolvers configured): getaddrinfo via dns.lookup, which honours /etc/hosts
 *   and nsswitch, exactly like other software on the host; it reports no TTL, so `cache_ttl`.
 * - configured resolvers: c-ares queries (A and AAAA) to those servers only, with their TTLs.
 *
 * The caller dials exactly the addresses returned here, after checking each one: no second
 * lookup happens between check and connect (DNS rebinding).
 */
import { lookup } from 'node:dns/promises';
import { Resolver as CaresResolver } from 'node:dns/promises';

export interface ResolverOptions {
  readonly servers: readonly string[];
  readonly cacheTtlMs: number;
  readonly minTtlMs: number;
  readonly maxTtlMs: number;
  readonly negativeTtlMs: number;
  readonly timeoutMs: number;
  readonly cacheSize: number;
  readonly now?: () => number;
  /** Told the duration of every query that went to a resolver (not cache hits), for metrics. */
  readonly observe?: (seconds: number, result: 'ok' | 'error') => void;
}

export type Resolution =
  | { readonly ok: true; readonly addresses: readonly string[] }
  | { readonly ok: false; readonly detail: string };

interface Entry {
  expires: number;
  value: Resolution;
}

export class Resolver {
  readonly #opts: ResolverOptions;
  readonly #cache = new Map<string, Entry>();
  readonly #inflight = new Map<string, Promise<Resolution>>();
  readonly #cares: CaresResolver | null;
  readonly #now: () => number;

  constructor(opts: ResolverOptions) {
    this.#opts = opts;
    this.#now = opts.now ?? Date.now;
    if (opts.servers.length > 0) {
      this.#cares = new CaresResolver({ timeout: opts.timeoutMs, tries: 2 });
      this.#cares.setServers([...opts.servers]);
    } else {
      this.#cares = null;
    }
  }

  /** A fresh cached answer, synchronously, or undefined: keeps the hot path off the microtask queue. */
  cached(name: string): Resolution | undefined {
    const e = this.#cache.get(name);
    if (e === undefined) return undefined;
    if (e.expires <= this.#now()) {
      this.#cache.delete(name);
      return undefined;
    }
    return e.value;
  }

  resolve(name: string): Promise<Resolution> {
    const hit = this.cached(name);
    if (hit) return Promise.resolve(hit);
    let p = this.#inflight.get(name);
    if (p) return p;
    const started = performance.now();
    p = this.#query(name).then((r) => {
      this.#opts.observe?.((performance.now() - started) / 1000, r.value.ok ? 'ok' : 'error');
      this.#inflight.delete(name);
      this.#store(name, r.value, r.ttlMs);
      return r.value;
    });
    this.#inflight.set(name, p);
    return p;
  }

  #store(name: string, value: Resolution, ttlMs: number): void {
    if (this.#opts.cacheSize === 0 || ttlMs <= 0) return;
    if (this.#cache.size >= this.#opts.cacheSize) {
      const oldest = this.#cache.keys().next().value;
      if (oldest !== undefined) this.#cache.delete(oldest);
    }
    this.#cache.set(name, { expires: this.#now() + ttlMs, value });
  }

  async #query(name: string): Promise<{ value: Resolution; ttlMs: number }> {
    const neg = this.#opts.negativeTtlMs;
    try {
      if (this.#cares === null) {
        const res = await withTimeout(lookup(name, { all: true, verbatim: true }), this.#opts.timeoutMs);
        const addrs = unique(res.map((r) => r.address));
        if (addrs.length === 0) return { value: { ok: false, detail: 'no addresses' }, ttlMs: neg };
        return { value: { ok: true, addresses: addrs }, ttlMs: this.#opts.cacheTtlMs };
      }
      const [v4, v6] = await Promise.allSettled([
        this.#cares.resolve4(name, { ttl: true }),
        this.#cares.resolve6(name, { ttl: true }),
      ]);
      const recs = [...(v4.status === 'fulfilled' ? v4.value : []), ...(v6.status === 'fulfilled' ? v6.value : [])];
      if (recs.length === 0) {
        const err = v4.status === 'rejected' ? v4.reason : v6.status === 'rejected' ? v6.reason : null;
        return { value: { ok: false, detail: errCode(err) ?? 'no addresses' }, ttlMs: neg };
      }
      const ttl = Math.min(...recs.map((r) => r.ttl)) * 1000;
      const clamped = Math.max(this.#opts.minTtlMs, Math.min(this.#opts.maxTtlMs, ttl));
      return { value: { ok: true, addresses: unique(recs.map((r) => r.address)) }, ttlMs: clamped };
    } catch (err) {
      return { value: { ok: false, detail: errCode(err) ?? 'lookup failed' }, ttlMs: neg };
    }
  }

  clear(): void {
    this.#cache.clear();
  }

  /**
   * Answers `name` with `addresses` from now on, without a query (until evicted or cleared):
   * for names the gateway gives itself (src/gateway/warmup.ts), never for clients' names.
   */
  pin(name: string, addresses: readonly string[]): void {
    this.#cache.set(name, { expires: Infinity, value: { ok: true, addresses } });
  }
}

function unique(a: string[]): string[] {
  return [...new Set(a)];
}

function errCode(err: unknown): string | null {
  if (err && typeof err === 'object' && 'code' in err && typeof (err as { code: unknown }).code === 'string') {
    return (err as { code: string }).code;
  }
  return null;
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const t = setTimeout(() => reject(Object.assign(new Error('timeout'), { code: 'ETIMEOUT' })), ms);
    p.then((v) => { clearTimeout(t); resolve(v); }, (e: unknown) => { clearTimeout(t); reject(e); });
  });
}
