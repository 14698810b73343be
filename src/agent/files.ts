/**
 * The agent directory: the device's private key, its certificate, the pinned CA and the
 * agent's settings. Everything the device proves its identity with lives here, so the
 * directory must be the owner's alone: a key readable by another local user is a key that
 * user can impersonate the device with (CWE-732).
 */
import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { chmod, lstat, mkdir, open, readFile, rename, unlink } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { ChokepointError } from '../core/errors.js';

export const FILES = {
  key: 'key.pem',
  cert: 'cert.pem',
  ca: 'ca.pem',
  settings: 'agent.json',
} as const;

export interface AgentSettings {
  /** Control plane base URL (EST lives under /.well-known/est). */
  readonly server: string;
  /** SHA-256 of the pinned CA certificate's DER, lowercase hex without separators. */
  readonly caFingerprint: string;
}

export function defaultDir(): string {
  if (process.env.CHOKEPOINT_AGENT_DIR) return process.env.CHOKEPOINT_AGENT_DIR;
  return process.getuid?.() === 0 ? '/var/lib/chokepoint-agent' : join(homedir(), '.config', 'chokepoint-agent');
}

export function path(dir: string, f: keyof typeof FILES): string {
  return join(dir, FILES[f]);
}

/** A problem with the directory's permissions, with the command that fixes it. */
export interface PermissionProblem { readonly path: string; readonly message: string; readonly fix: string }

const uid = (): number | null => (typeof process.getuid === 'function' ? process.getuid() : null);

/**
 * Checks the directory (0700, ours, a real directory) and the files in it (ours, no group or
 * other bits, not symlinks: a symlink planted by another user could redirect our writes).
 * Returns every problem; an empty list means private.
 */
export async function permissionProblems(dir: string, files: readonly (keyof typeof FILES)[] = ['key', 'cert', 'ca', 'settings']): Promise<PermissionProblem[]> {
  const out: PermissionProblem[] = [];
  const me = uid();
  const check = async (p: string, kind: 'dir' | 'file', optional: boolean): Promise<void> => {
    let st;
    try { st = await lstat(p); } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT' && optional) return;
      out.push({ path: p, message: `cannot be read (${(e as NodeJS.ErrnoException).code ?? String(e)})`, fix: kind === 'dir' ? `mkdir -m 700 ${p}` : `re-enroll` });
      return;
    }
    if (st.isSymbolicLink()) { out.push({ path: p, message: 'is a symbolic link', fix: `replace it with a real ${kind === 'dir' ? 'directory' : 'file'}` }); return; }
    if (kind === 'dir' ? !st.isDirectory() : !st.isFile()) { out.push({ path: p, message: `is not a ${kind === 'dir' ? 'directory' : 'regular file'}`, fix: `remove it` }); return; }
    if (me !== null && st.uid !== me) out.push({ path: p, message: `is owned by uid ${st.uid}, not by this user (uid ${me})`, fix: `chown ${me} ${p}` });
    const loose = st.mode & 0o077;
    if (loose !== 0) {
      out.push({
        path: p,
        message: `mode ${(st.mode & 0o777).toString(8).padStart(4, '0')} lets ${loose & 0o007 ? 'other users' : 'the group'} ${loose & 0o022 ? 'write' : 'read'}${loose & 0o022 && loose & 0o044 ? ' and read' : ''} it`,
        fix: `chmod ${kind === 'dir' ? '700' : '600'} ${p}`,
      });
    }
  };
  await check(dir, 'dir', false);
  for (const f of files) await check(path(dir, f), 'file', true);
  return out;
}

export async function assertPrivate(dir: string, files?: readonly (keyof typeof FILES)[]): Promise<void> {
  const p = await permissionProblems(dir, files);
  if (p.length > 0) {
    throw new ChokepointError('AGENT_DIR_INSECURE', `refusing to use ${dir}: ${p.map((x) => `${x.path} ${x.message} (fix: ${x.fix})`).join('; ')}`);
  }
}

/** Creates the directory with mode 0700 when missing; an existing one is checked, never loosened or silently fixed. */
export async function ensureDir(dir: string): Promise<void> {
  try {
    await mkdir(dirname(dir), { recursive: true, mode: 0o755 });
    await mkdir(dir, { mode: 0o700 });
    await chmod(dir, 0o700); // the umask may have narrowed it further; make it exactly 0700
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
  }
  await assertPrivate(dir, []);
}

/**
 * Atomic replace: write a temporary file (O_EXCL, mode 0600), fsync it, rename it over the
 * target, fsync the directory. A reader (the forwarder) sees the old file or the new one,
 * never a half-written key; a crash leaves the old pair usable.
 */
export async function writeAtomic(file: string, data: string | Buffer, mode = 0o600): Promise<void> {
  const tmp = `${file}.${randomBytes(6).toString('hex')}.tmp`;
  const fh = await open(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, mode);
  try {
    await fh.writeFile(data);
    await fh.chmod(mode);
    await fh.sync();
  } finally {
    await fh.close();
  }
  try {
    await rename(tmp, file);
  } catch (e) {
    await unlink(tmp).catch(() => {});
    throw e;
  }
  const d = await open(dirname(file), constants.O_RDONLY);
  try { await d.sync(); } catch { /* some filesystems refuse fsync on a directory */ } finally { await d.close(); }
}

export async function readText(file: string): Promise<string | null> {
  try {
    return await readFile(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw e;
  }
}

export async function readSettings(dir: string): Promise<AgentSettings | null> {
  const t = await readText(path(dir, 'settings'));
  if (t === null) return null;
  const v = JSON.parse(t) as Partial<AgentSettings>;
  if (typeof v.server !== 'string' || typeof v.caFingerprint !== 'string') {
    throw new ChokepointError('AGENT_NOT_ENROLLED', `${path(dir, 'settings')} is not a valid agent settings file`);
  }
  return { server: v.server, caFingerprint: v.caFingerprint };
}

export interface Identity { readonly key: string; readonly cert: string; readonly ca: string }

/** Reads key, certificate and pinned CA after checking permissions; fresh on every call. */
export async function readIdentity(dir: string): Promise<Identity> {
  await assertPrivate(dir);
  const [key, cert, ca] = await Promise.all([readText(path(dir, 'key')), readText(path(dir, 'cert')), readText(path(dir, 'ca'))]);
  if (key === null || cert === null || ca === null) {
    throw new ChokepointError('AGENT_NOT_ENROLLED', `${dir} holds no ${[key === null ? 'key.pem' : '', cert === null ? 'cert.pem' : '', ca === null ? 'ca.pem' : ''].filter(Boolean).join(', ')}: run chokepoint agent enroll first`);
  }
  return { key, cert, ca };
}
