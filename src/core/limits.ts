/**
 * Ceilings a configuration may not exceed, shared by the config schema (which enforces them) and
 * the modules whose tables must hold that many entries (which size themselves by them).
 */

/** The largest `limits.max_tunnels` a configuration may set. */
export const MAX_TUNNELS_LIMIT = 1_000_000;
