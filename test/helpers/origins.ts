/**
 * Local origins for gateway tests: a TCP echo server, an HTTP server and a TLS server with
 * a certificate made for this run by openssl (never a checked-in key).
 */
import { execFileSync, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer as createHttpServer, type IncomingMessage, type Server as HttpServer, type ServerResponse } from 'node:http';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer as createTlsServer, type Server as TlsServer } from 'node:tls';

export interface Origin<S = Server> {
  readonly port: number;
  readonly server: S;
  readonly sockets: Set<Socket>;
  close(): Promise<void>;
}

function track<S extends Server>(server: S): { sockets: Set<Socket>; close: () => Promise<void> } {
  const sockets = new Set<Socket>();
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  return {
    sockets,
    close: () => new Promise<void>((r) => {
      for (const s of sockets) s.destroy();
      server.close(() => r());
    }),
  };
}

async function listen(server: Server, host = '127.0.0.1'): Promise<number> {
  await new Promise<void>((r) => server.listen(0, host, () => r()));
  return (server.address() as AddressInfo).port;
}

/** Echoes every byte; `greeting` is sent first (a server-speaks-first protocol like SSH). */
export async function startEchoOrigin(opts: { host?: string; greeting?: string } = {}): Promise<Origin> {
  const server = createServer({ allowHalfOpen: true }, (s) => {
    if (opts.greeting) s.write(opts.greeting);
    s.on('error', () => {});
    s.pipe(s);
  });
  const t = track(server);
  const port = await listen(server, opts.host);
  return { port, server, ...t };
}

export async function startHttpOrigin(handler?: (req: IncomingMessage, res: ServerResponse) => void, host = '127.0.0.1'): Promise<Origin<HttpServer> & { requests: { method: string; url: string; headers: IncomingMessage['headers']; body: string }[] }> {
  const requests: { method: string; url: string; headers: IncomingMessage['headers']; body: string }[] = [];
  const server = createHttpServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      requests.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body });
      if (handler) handler(req, res);
      else {
        const out = JSON.stringify({ method: req.method, url: req.url, body, via: req.headers.via ?? null });
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(out) });
        res.end(out);
      }
    });
  });
  server.keepAliveTimeout = 5000;
  const t = track(server as unknown as Server);
  const port = await listen(server as unknown as Server, host);
  return { port, server, requests, ...t };
}

export interface TestPki {
  readonly dir: string;
  readonly caCert: string;
  readonly cert: string;
  readonly key: string;
  readonly caPath: string;
  cleanup(): void;
}

/** A CA and a server certificate for `names`, made with openssl for this run. */
export function makePki(names: string[]): TestPki {
  const dir = mkdtempSync(join(tmpdir(), 'cp-pki-'));
  const run = (args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  run(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '1', '-subj', '/CN=chokepoint test CA']);
  run(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'srv.key', '-out', 'srv.csr', '-subj', `/CN=${names[0]}`]);
  const san = names.map((n) => (/^[0-9.]+$|:/.test(n) ? `IP:${n}` : `DNS:${n}`)).join(',');
  execFileSync('sh', ['-c', `printf 'subjectAltName=${san}\\nextendedKeyUsage=serverAuth\\n' > ext.cnf`], { cwd: dir });
  run(['x509', '-req', '-in', 'srv.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'srv.pem', '-days', '1', '-extfile', 'ext.cnf']);
  return {
    dir,
    caCert: readFileSync(join(dir, 'ca.pem'), 'utf8'),
    cert: readFileSync(join(dir, 'srv.pem'), 'utf8'),
    key: readFileSync(join(dir, 'srv.key'), 'utf8'),
    caPath: join(dir, 'ca.pem'),
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}

/** A TLS origin that answers every request line with a small HTTP response naming the SNI it saw. */
export async function startTlsOrigin(pki: TestPki, host = '127.0.0.1'): Promise<Origin<TlsServer>> {
  const server = createTlsServer({ cert: pki.cert, key: pki.key, minVersion: 'TLSv1.2' }, (s) => {
    s.on('error', () => {});
    s.once('data', () => {
      const body = JSON.stringify({ sni: (s as unknown as { servername?: string }).servername ?? null, tls: s.getProtocol() });
      s.end(`HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\nconnection: close\r\n\r\n${body}`);
    });
  });
  const t = track(server as unknown as Server);
  const port = await listen(server as unknown as Server, host);
  return { port, server, ...t };
}

/**
 * A loopback destination whose connects never complete (test/fixtures/scripts/full-backlog.py:
 * a listener with its accept queue filled, so the kernel drops further SYNs): for connect
 * timeouts and dials in flight, without sending traffic anywhere but 127.0.0.1.
 */
export async function startFullBacklog(): Promise<{ port: number; close(): void }> {
  const script = fileURLToPath(new URL('../../../test/fixtures/scripts/full-backlog.py', import.meta.url));
  const py = spawn('python3', [script], { stdio: ['pipe', 'pipe', 'inherit'] });
  const port = await new Promise<number>((resolve, reject) => {
    py.once('error', reject);
    py.stdout.once('data', (c: Buffer) => resolve(Number(c.toString().trim())));
  });
  return { port, close: () => { py.kill(); } };
}
