/**
 * The one policy helper that does I/O: read a file, then loadPolicy(). Everything else in
 * policy/ is pure. An unreadable file is a POLICY_UNREADABLE problem, never a throw.
 */
import { readFile } from 'node:fs/promises';
import { ERROR_CODES } from '../core/errors.js';
import type { LoadResult } from './compile.js';
import { loadPolicyOffThread } from './offthread.js';

/** Larger than any sane policy (100k rules are ~4 MB); refuses to buffer a runaway file. */
export const MAX_POLICY_BYTES = 64 * 1024 * 1024;

/** `text`: exactly what was read and loaded, so a caller stores the bytes it checked (not a second read). */
export async function loadPolicyFile(path: string): Promise<LoadResult & { readonly text?: string }> {
  let text: string;
  try {
    const buf = await readFile(path);
    if (buf.length > MAX_POLICY_BYTES) return unreadable(`${path}: larger than ${MAX_POLICY_BYTES} bytes`);
    text = new TextDecoder('utf-8', { fatal: true }).decode(buf);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException)?.code;
    const why = e instanceof TypeError ? 'not valid UTF-8' : (code ?? (e instanceof Error ? e.message : String(e)));
    return unreadable(`${path}: ${why}`);
  }
  const r = await loadPolicyOffThread(text, { sourceName: path });
  return { ...r, text };
}

function unreadable(detail: string): LoadResult {
  return { ok: false, problems: [{ path: '', message: `POLICY_UNREADABLE: ${ERROR_CODES.POLICY_UNREADABLE} (${detail})` }], warnings: [] };
}
