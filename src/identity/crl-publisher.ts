/**
 * Keeps one current CRL per trusted CA: regenerated shortly after any change the directory sees
 * (bursts are coalesced), and at half its lifetime so a verifier never holds one past nextUpdate
 * (RFC 5280 §5.1.2.5).
 */
import type { EventBus } from '../events/bus.js';
import type { CaSet } from './ca.js';
import { buildCrl } from './crl.js';
import type { IdentityDirectory } from './directory.js';
import { pemOf } from './pkcs7.js';

export interface PublishedCrl {
  readonly caId: string;
  readonly der: Buffer;
  readonly pem: string;
  readonly number: bigint;
  readonly thisUpdate: number;
  readonly nextUpdate: number;
  readonly entries: number;
}

export class CrlPublisher {
  readonly #cas: () => CaSet;
  readonly #dir: IdentityDirectory;
  readonly #bus: EventBus;
  readonly #validityMs: number;
  readonly #now: () => number;
  #crls = new Map<string, PublishedCrl>();
  #lastNumber = 0n;
  #timer: NodeJS.Timeout | null = null;
  #debounce: NodeJS.Timeout | null = null;
  #unsubscribe: () => void;
  #closed = false;

  constructor(opts: { cas: () => CaSet; directory: IdentityDirectory; bus: EventBus; validityMs: number; now?: () => number; debounceMs?: number }) {
    this.#cas = opts.cas;
    this.#dir = opts.directory;
    this.#bus = opts.bus;
    this.#validityMs = opts.validityMs;
    this.#now = opts.now ?? Date.now;
    const debounceMs = opts.debounceMs ?? 50;
    this.#unsubscribe = opts.directory.onChange(() => {
      if (this.#closed || this.#debounce) return;
      this.#debounce = setTimeout(() => {
        this.#debounce = null;
        this.regenerate();
      }, debounceMs);
      this.#debounce.unref();
    });
  }

  /** The current CRL of a CA (the active one by default); generated on first use. */
  current(caId?: string): PublishedCrl | null {
    const id = caId ?? this.#cas().active.id;
    // Only a trusted CA's missing CRL triggers a rebuild: `/crl?ca=<anything>` must not let an
    // anonymous caller make us sign 100k-entry CRLs in a loop.
    if (!this.#crls.has(id) && this.#cas().trusted.some((c) => c.id === id)) this.regenerate();
    return this.#crls.get(id) ?? null;
  }

  /** Rebuilds every trusted CA's CRL now. */
  regenerate(): void {
    if (this.#closed) return;
    const now = this.#now();
    // CRL numbers only grow (§5.2.3), across restarts too: derive them from the clock, and never repeat.
    const num = BigInt(now) > this.#lastNumber ? BigInt(now) : this.#lastNumber + 1n;
    this.#lastNumber = num;
    const next = new Map<string, PublishedCrl>();
    for (const ca of this.#cas().trusted) {
      const entries = this.#dir.revocationEntries(ca.id, now);
      const nextUpdate = Math.min(now + this.#validityMs, Math.max(ca.notAfter, now + 60_000));
      const der = buildCrl({ ca, entries, thisUpdate: now, nextUpdate, number: num });
      const crl: PublishedCrl = { caId: ca.id, der, pem: pemOf('X509 CRL', der), number: num, thisUpdate: now, nextUpdate, entries: entries.length };
      next.set(ca.id, crl);
      this.#bus.publish({
        v: 1, type: 'identity.crl.published', time: new Date(now).toISOString(), ca_id: ca.id, number: num.toString(), entries: entries.length,
        this_update: new Date(now).toISOString(), next_update: new Date(nextUpdate).toISOString(), bytes: der.length,
      });
    }
    this.#crls = next;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = setTimeout(() => this.regenerate(), Math.max(1000, Math.floor(this.#validityMs / 2)));
    this.#timer.unref();
  }

  close(): void {
    this.#closed = true;
    this.#unsubscribe();
    if (this.#timer) clearTimeout(this.#timer);
    if (this.#debounce) clearTimeout(this.#debounce);
  }
}
