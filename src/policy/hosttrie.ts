/**
 * Host patterns compiled into a trie over reversed labels (`api.vendor.example` lies under
 * example → vendor.example → api.vendor.example). A lookup visits at most as many nodes as the
 * host has labels, whatever the number of rules, so 100k rules cost the same as ten (no linear
 * scan over rules).
 *
 * The trie is stored flat: one Map from the hash of a suffix (`vendor.example`) to its node,
 * with every ancestor suffix present, so a walk stops at the first suffix no rule lies under.
 * One Map instead of one per node keeps a 100k-rule policy small and quick to build, and
 * hashing the host once from the right means a lookup slices no strings.
 *
 * At the node for base B:
 * - `exact` rules match the host B itself;
 * - `one` rules (`*.B`) match when exactly one label remains;
 * - `any` rules (`**.B`) match when one or more labels remain (never B itself).
 *
 * Specificity of a match at a base of `depth` labels is `2·depth + (kind ≠ any)`: for a host
 * of n labels an exact match has depth n and a `*.` match depth n-1, so exact (2n+1) > `*.`
 * (2n-1) > any `**.` (≤ 2n-2), and among `**.` rules the longer base wins.
 */
import type { HostPattern } from './hostpattern.js';

interface Node<R> {
  /** The suffix this node stands for, to confirm a hash hit. */
  readonly key: string;
  /** Next node with the same hash (collision chain). */
  next: Node<R> | null;
  exact: R[] | null;
  one: R[] | null;
  any: R[] | null;
  /** False for a suffix that only has rules below it. */
  real: boolean;
}

const DOT = 0x2e;

/** One step of the suffix hash, fed characters from the right (same for insert and match). */
function step(h: number, c: number): number {
  return (Math.imul(h, 0x01000193) ^ c) | 0; // FNV-1a style
}
const SEED = 0x811c9dc5 | 0;

// Scratch space for insert() (synchronous, so shared).
const suffixHashes: number[] = [];
const suffixStarts: number[] = [];

/** The hash a whole name gets in the trie (exported so tests can build collisions). */
export function suffixHash(name: string): number {
  let h = SEED;
  for (let i = name.length - 1; i >= 0; i--) h = step(h, name.charCodeAt(i));
  return h;
}

export class HostTrie<R> {
  // Keyed by the hash of the suffix, so a lookup neither slices nor hashes a string: the walk
  // hashes the host once, right to left, and confirms each hit with startsWith (in place).
  readonly #nodes = new Map<number, Node<R>>();
  #size = 0;

  get size(): number {
    return this.#size;
  }

  #find(h: number, s: string, start: number): Node<R> | undefined {
    for (let n: Node<R> | null | undefined = this.#nodes.get(h); n !== undefined && n !== null; n = n.next) {
      if (n.key.length === s.length - start && s.startsWith(n.key, start)) return n;
    }
    return undefined;
  }

  #create(h: number, base: string, start: number): Node<R> {
    const head = this.#nodes.get(h);
    const n: Node<R> = { key: start === 0 ? base : base.slice(start), next: head ?? null, exact: null, one: null, any: null, real: false };
    this.#nodes.set(h, n);
    return n;
  }

  insert(p: HostPattern, rule: R): void {
    const base = p.base;
    // Hash every suffix, right to left; remember where each proper suffix starts.
    let h = SEED;
    let k = 0;
    for (let i = base.length - 1; i >= 0; i--) {
      const c = base.charCodeAt(i);
      if (c === DOT) { suffixHashes[k] = h; suffixStarts[k++] = i + 1; }
      h = step(h, c);
    }
    let n = this.#find(h, base, 0);
    if (n === undefined) {
      n = this.#create(h, base, 0);
      // Every suffix gets a node so the walk can go on past suffixes without rules. A node's
      // suffixes always exist, so stop at the longest one already present.
      while (k-- > 0) {
        const hk = suffixHashes[k] as number;
        const sk = suffixStarts[k] as number;
        if (this.#find(hk, base, sk) !== undefined) break;
        this.#create(hk, base, sk);
      }
    }
    n.real = true;
    const list = p.kind === 'exact' ? (n.exact ??= []) : p.kind === 'one' ? (n.one ??= []) : (n.any ??= []);
    list.push(rule);
    this.#size++;
  }

  /**
   * Writes every rule matching `host` (a canonical name) into `out` from index `count`, and
   * its specificity into `scores` at the same index; returns the new count. No allocation.
   */
  match(host: string, out: R[], scores: number[], count: number): number {
    if (this.#size === 0) return count;
    const first = host.indexOf('.');
    let h = SEED;
    let depth = 0;
    for (let i = host.length - 1; ; i--) {
      const c = i >= 0 ? host.charCodeAt(i) : DOT;
      if (c === DOT) {
        // host[i+1..] is a suffix of depth+1 labels.
        depth++;
        const n = this.#find(h, host, i + 1);
        if (n === undefined) return count;
        if (n.real) {
          if (i < 0) {
            if (n.exact !== null) for (const r of n.exact) { out[count] = r; scores[count++] = 2 * depth + 1; }
          } else {
            if (n.any !== null) for (const r of n.any) { out[count] = r; scores[count++] = 2 * depth; }
            if (n.one !== null && i === first) for (const r of n.one) { out[count] = r; scores[count++] = 2 * depth + 1; }
          }
        }
        if (i < 0) return count;
      }
      h = step(h, c);
    }
  }

  /**
   * The first rule accepted by `pred` whose pattern covers every host `p` can match (for
   * shadowing warnings): an `any` rule on a proper suffix of p's base, or on the base itself
   * when p is a wildcard; a `one` rule on p's parent when p is exact, or on the base itself
   * when p is a `one`; an exact rule on the base when p is exact.
   */
  findCovering(p: HostPattern, pred: (r: R) => boolean): R | undefined {
    if (this.#size === 0) return undefined;
    const base = p.base;
    const first = base.indexOf('.');
    let h = SEED;
    for (let i = base.length - 1; ; i--) {
      const c = i >= 0 ? base.charCodeAt(i) : DOT;
      if (c === DOT) {
        const n = this.#find(h, base, i + 1);
        if (n === undefined) return undefined;
        const atBase = i < 0;
        let lists: (R[] | null)[];
        if (!atBase) lists = [n.any, i === first && p.kind === 'exact' ? n.one : null];
        else if (p.kind === 'exact') lists = [n.exact];
        else lists = [n.any, p.kind === 'one' ? n.one : null];
        for (const l of lists) if (l !== null) for (const r of l) if (pred(r)) return r;
        if (atBase) return undefined;
      }
      h = step(h, c);
    }
  }
}
