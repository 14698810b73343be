/**
 * Local HTTPS origins for the end-to-end tests: a keep-alive HTTPS server (so a test can hold one
 * TLS connection open across renewal and revocation) that also serves a bare git repository as
 * static files — git's "dumb" HTTP protocol, after `git update-server-info` — so a real
 * `git clone` can run through the gateway without `git http-backend`.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, realpathSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve, sep } from 'node:path';
import type { TestPki } from './origins.js';

export interface BareRepo {
  /** Directory that holds `<name>.git`; serve it as the origin's root. */
  readonly root: string;
  readonly name: string;
  /** The commit id of the only commit on `main`. */
  readonly commit: string;
  cleanup(): void;
}

/** Env for git child processes that ignores the user's and the system's git configuration. */
export function isolatedGitEnv(home: string): Record<string, string> {
  return {
    HOME: home,
    GIT_CONFIG_NOSYSTEM: '1',
    GIT_CONFIG_GLOBAL: '/dev/null',
    GIT_TERMINAL_PROMPT: '0',
    GIT_AUTHOR_NAME: 'e2e', GIT_AUTHOR_EMAIL: 'e2e@example.invalid',
    GIT_COMMITTER_NAME: 'e2e', GIT_COMMITTER_EMAIL: 'e2e@example.invalid',
  };
}

/** A bare repository with one commit (a file `README` holding `content`), ready for dumb HTTP. */
export function makeBareRepo(name: string, content: string): BareRepo {
  const root = mkdtempSync(join(tmpdir(), 'cp-git-'));
  const work = join(root, 'work');
  const env = { ...process.env, ...isolatedGitEnv(root) };
  const git = (args: string[], cwd: string) => execFileSync('git', args, { cwd, env, stdio: 'pipe' }).toString().trim();
  git(['init', '-q', '-b', 'main', work], root);
  writeFileSync(join(work, 'README'), content);
  git(['add', 'README'], work);
  git(['commit', '-q', '-m', 'first'], work);
  const commit = git(['rev-parse', 'HEAD'], work);
  git(['clone', '-q', '--bare', work, join(root, `${name}.git`)], root);
  // Dumb HTTP needs info/refs and objects/info/packs written out as files.
  git(['update-server-info'], join(root, `${name}.git`));
  return { root, name, commit, cleanup: () => rmSync(root, { recursive: true, force: true }) };
}

export interface HttpsOrigin {
  readonly port: number;
  readonly server: Server;
  /** Request paths seen, in order (without the query). */
  readonly paths: string[];
  close(): Promise<void>;
}

/**
 * HTTPS with keep-alive. `/hello` answers JSON naming the SNI and the request count on this
 * connection; any other path is a file under `root` (when given). Paths are resolved and must stay
 * under `root` (a `..` request gets 404, not a file from elsewhere).
 */
export async function startHttpsOrigin(pki: TestPki, root?: string): Promise<HttpsOrigin> {
  const paths: string[] = [];
  const sockets = new Set<Socket>();
  const base = root === undefined ? undefined : realpathSync(root);
  const perConn = new WeakMap<Socket, number>();
  const server = createServer({ cert: pki.cert, key: pki.key, minVersion: 'TLSv1.2' }, (req, res) => {
    const path = decodeURIComponent((req.url ?? '/').split('?')[0] ?? '/');
    paths.push(path);
    const n = (perConn.get(req.socket) ?? 0) + 1;
    perConn.set(req.socket, n);
    if (path === '/hello') {
      const body = JSON.stringify({ sni: (req.socket as unknown as { servername?: string }).servername ?? null, requests_on_connection: n });
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
      res.end(body);
      return;
    }
    if (base !== undefined) {
      const file = resolve(base, `.${path}`);
      if (file.startsWith(base + sep)) {
        try {
          if (statSync(file).isFile()) {
            const data = readFileSync(file);
            res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': data.length });
            res.end(data);
            return;
          }
        } catch { /* 404 below */ }
      }
    }
    res.writeHead(404, { 'content-length': 0 });
    res.end();
  });
  server.keepAliveTimeout = 60_000;
  server.on('secureConnection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return {
    port: (server.address() as AddressInfo).port,
    server,
    paths,
    close: () => new Promise<void>((r) => {
      for (const s of sockets) s.destroy();
      server.close(() => r());
    }),
  };
}
