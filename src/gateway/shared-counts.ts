/**
 * The connection and tunnel counts behind the gateway's limits, in shared memory so that every
 * data-plane thread enforces the same limits (DESIGN §2: limits are per gateway, not per
 * thread). Without sharing, N proxy threads would each allow `max_tunnels_per_client`, and one
 * source could hold N times its share by spreading connections over threads; a limit that
 * multiplies with the thread count is not the limit the operator configured.
 *
 * Layout (Int32Array over a SharedArrayBuffer): a header, then an open-addressing table keyed
 * by a 64-bit hash of the client address, four words a slot: hash high, hash low (never 0: an
 * empty slot has 0 there), open connections, tunnels. Every operation holds one lock for a
 * few dozen instructions (a futex-style mutex: Atomics.wait only when contended).
 *
 * A hash collision between two addresses makes them share a count: both are then limited
 * sooner, never later (fails closed); with 64 bits that needs ~2^32 live addresses.
 *
 * Slots whose counts fall to zero stay as markers so that probe chains stay intact; when
 * markers and live slots together pass three quarters of the table it is rebuilt under the
 * lock with only the live ones. The table holds twice `max_connections` slots, and each live
 * slot has at least one open connection (a tunnel always belongs to one), so it does not fill
 * while that limit holds; if it ever did, the address is refused rather than uncounted.
 */

const LOCK = 0;
const TUNNELS = 1;
const CONNECTIONS = 2;
/** Slots that are not empty (live or marker). */
const USED = 3;
const CAPACITY = 4;
/** 1 + the worker threadId of the lock's holder (0: none, or not yet recorded). */
const OWNER = 5;
const HEADER = 8;
const SLOT = 4;

export type TunnelRefusal = 'tunnel_limit' | 'client_tunnel_limit';

export class SharedCounts {
  readonly buffer: SharedArrayBuffer;
  readonly #a: Int32Array;
  readonly #mask: number;
  readonly #owner: number;

  /** A table sized for `maxConnections` live connections (at least 1024 slots). */
  static create(maxConnections: number): SharedCounts {
    let cap = 1024;
    while (cap < maxConnections * 2) cap *= 2;
    const buf = new SharedArrayBuffer((HEADER + cap * SLOT) * 4);
    new Int32Array(buf)[CAPACITY] = cap;
    return new SharedCounts(buf);
  }

  /**
   * The same counts, seen from another thread (the buffer came through postMessage or
   * workerData). `threadId`: this thread's (worker_threads), recorded while it holds the lock.
   */
  constructor(buffer: SharedArrayBuffer, threadId = 0) {
    this.buffer = buffer;
    this.#owner = threadId + 1;
    this.#a = new Int32Array(buffer);
    const cap = this.#a[CAPACITY] as number;
    if (cap < 1 || (cap & (cap - 1)) !== 0 || buffer.byteLength !== (HEADER + cap * SLOT) * 4) throw new Error('not a SharedCounts buffer');
    this.#mask = cap - 1;
  }

  /** Tunnels held across all threads. */
  get tunnels(): number {
    return Atomics.load(this.#a, TUNNELS);
  }

  /** Open client connections across all threads (each counted from accept to close). */
  get connections(): number {
    return Atomics.load(this.#a, CONNECTIONS);
  }

  /**
   * Counts a new connection from `ip` and returns how many that address now has open; -1 (not
   * counted) if `maxTotal` connections are already open; Infinity (not counted) if the table
   * has no room, which the caller refuses as over the address's cap. The total is checked and
   * taken under the lock: checked outside it, two threads could both take the last slot.
   */
  openConnection(ip: string, maxTotal = Infinity): number {
    this.#lock();
    try {
      if ((this.#a[CONNECTIONS] as number) >= maxTotal) return -1;
      const s = this.#slot(ip, true);
      if (s < 0) return Infinity;
      Atomics.add(this.#a, CONNECTIONS, 1);
      const n = (this.#a[s + 2] as number) + 1;
      this.#a[s + 2] = n;
      return n;
    } finally {
      this.#unlock();
    }
  }

  /** The end of a connection counted by openConnection() (call once, and only if it counted it). */
  closeConnection(ip: string): void {
    this.#decrement(ip, 2, CONNECTIONS);
  }

  /** Takes a tunnel slot for `ip`, or names the limit that refuses it. Checked and taken atomically. */
  acquireTunnel(ip: string, maxTotal: number, maxPerClient: number): TunnelRefusal | null {
    this.#lock();
    try {
      if ((this.#a[TUNNELS] as number) >= maxTotal) return 'tunnel_limit';
      const s = this.#slot(ip, true);
      // No room to count it: refused like an address over its limit (fails closed).
      if (s < 0 || (this.#a[s + 3] as number) >= maxPerClient) return 'client_tunnel_limit';
      this.#a[s + 3] = (this.#a[s + 3] as number) + 1;
      Atomics.add(this.#a, TUNNELS, 1);
      return null;
    } finally {
      this.#unlock();
    }
  }

  releaseTunnel(ip: string): void {
    this.#decrement(ip, 3, TUNNELS);
  }

  /** One less in ip's slot word `field` and in the total at `total`; never below zero. */
  #decrement(ip: string, field: 2 | 3, total: typeof CONNECTIONS | typeof TUNNELS): void {
    this.#lock();
    try {
      const s = this.#slot(ip, false);
      if (s >= 0 && (this.#a[s + field] as number) > 0) {
        this.#a[s + field] = (this.#a[s + field] as number) - 1;
        Atomics.sub(this.#a, total, 1);
      }
    } finally {
      this.#unlock();
    }
  }

  /** One address's counts (tests, diagnostics). */
  of(ip: string): { connections: number; tunnels: number } {
    this.#lock();
    try {
      const s = this.#slot(ip, false);
      return s < 0 ? { connections: 0, tunnels: 0 } : { connections: this.#a[s + 2] as number, tunnels: this.#a[s + 3] as number };
    } finally {
      this.#unlock();
    }
  }

  /** Word index of ip's slot; with `insert`, claims one if absent (-1: table full). Lock held. */
  #slot(ip: string, insert: boolean): number {
    const a = this.#a;
    // Two independent 32-bit FNV-1a hashes of the address text: a 64-bit key.
    let h1 = 0x811c9dc5 | 0;
    let h2 = 0x01000193 ^ 0x5bd1e995;
    for (let i = 0; i < ip.length; i++) {
      const c = ip.charCodeAt(i);
      h1 = Math.imul(h1 ^ c, 0x01000193);
      h2 = Math.imul(h2 ^ c, 0x5bd1e995) ^ (h2 >>> 15);
    }
    h2 |= 1;
    const mask = this.#mask;
    let i = h1 & mask;
    let reuse = -1;
    for (let n = 0; n <= mask; n++) {
      const s = HEADER + i * SLOT;
      const k2 = a[s + 1] as number;
      if (k2 === 0) {
        // Absent. Prefer a marker met on the way (keeps chains short), else this empty slot.
        if (!insert) return -1;
        if (reuse >= 0) return this.#claim(reuse, h1, h2, false);
        if (((a[USED] as number) + 1) * 4 > (mask + 1) * 3 && this.#rebuild()) return this.#slot(ip, true);
        return this.#claim(s, h1, h2, true);
      }
      if (k2 === h2 && a[s] === h1) return s;
      if (reuse < 0 && a[s + 2] === 0 && a[s + 3] === 0) reuse = s;
      i = (i + 1) & mask;
    }
    return insert && reuse >= 0 ? this.#claim(reuse, h1, h2, false) : -1;
  }

  #claim(s: number, h1: number, h2: number, fresh: boolean): number {
    const a = this.#a;
    a[s] = h1;
    a[s + 1] = h2;
    a[s + 2] = 0;
    a[s + 3] = 0;
    if (fresh) a[USED] = (a[USED] as number) + 1;
    return s;
  }

  /** Drops the markers: re-inserts the live slots into an empty table. False if it would not help. Lock held. */
  #rebuild(): boolean {
    const a = this.#a;
    const cap = this.#mask + 1;
    const live: number[] = [];
    for (let i = 0; i < cap; i++) {
      const s = HEADER + i * SLOT;
      if (a[s + 1] !== 0 && (a[s + 2] !== 0 || a[s + 3] !== 0)) live.push(a[s] as number, a[s + 1] as number, a[s + 2] as number, a[s + 3] as number);
    }
    if ((live.length / SLOT + 1) * 4 > cap * 3) return false;
    a.fill(0, HEADER);
    for (let j = 0; j < live.length; j += SLOT) {
      let i = (live[j] as number) & this.#mask;
      while (a[HEADER + i * SLOT + 1] !== 0) i = (i + 1) & this.#mask;
      a.set(live.slice(j, j + SLOT), HEADER + i * SLOT);
    }
    a[USED] = live.length / SLOT;
    return true;
  }

  /**
   * Frees the lock if the thread `threadId` holds it: called when that thread has ended (a
   * crash, or terminate() at a stop). A thread that ends inside the critical section would
   * otherwise leave every other thread, the main one included, waiting for ever. What it was
   * updating may be half done: a count off by one, which errs either way; the gateway is
   * stopping by then (a dead proxy thread stops it). True if it did.
   */
  releaseIfHeldBy(threadId: number): boolean {
    const a = this.#a;
    if (Atomics.compareExchange(a, OWNER, threadId + 1, 0) !== threadId + 1) return false;
    Atomics.store(a, LOCK, 0);
    Atomics.notify(a, LOCK);
    return true;
  }

  // A futex-style mutex (0 free, 1 held, 2 held with waiters): uncontended, one
  // compare-and-swap each way; Atomics.wait only when another thread holds it.
  #lock(): void {
    const a = this.#a;
    let c = Atomics.compareExchange(a, LOCK, 0, 1);
    if (c !== 0) {
      if (c !== 2) c = Atomics.exchange(a, LOCK, 2);
      while (c !== 0) {
        Atomics.wait(a, LOCK, 2, 5);
        c = Atomics.exchange(a, LOCK, 2);
      }
    }
    Atomics.store(a, OWNER, this.#owner);
  }

  #unlock(): void {
    const a = this.#a;
    Atomics.store(a, OWNER, 0);
    if (Atomics.sub(a, LOCK, 1) !== 1) {
      Atomics.store(a, LOCK, 0);
      Atomics.notify(a, LOCK, 1);
    }
  }
}
