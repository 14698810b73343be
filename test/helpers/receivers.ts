/**
 * Real receivers for the sink tests: an HTTPS webhook receiver (certificate made for this run)
 * that verifies signatures and can go down and come back on the same port, and an rsyslog
 * started with its own configuration on loopback ports, writing what it receives to a file.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { verifyWebhook } from '../../src/sinks/webhook.js';
import { makePki, type TestPki } from './origins.js';

export interface WebhookBatch { readonly id: string; readonly events: Record<string, unknown>[]; readonly verified: boolean; readonly timestamp: number }

export interface WebhookReceiver {
  readonly pki: TestPki;
  port: number;
  readonly url: string;
  readonly batches: WebhookBatch[];
  /** Status to answer with (default 204); a test sets e.g. 503 to simulate an outage. */
  status: number;
  /** Bodies larger than this are refused with 413, as a receiver's body limit would (default: none). */
  maxBodyBytes: number;
  /** Status and body size of every request, accepted or not. */
  readonly requests: { status: number; bytes: number; id: string }[];
  events(): Record<string, unknown>[];
  waitEvents(n: number, ms?: number): Promise<void>;
  stop(): Promise<void>;
  start(): Promise<void>;
  close(): Promise<void>;
}

export async function startWebhookReceiver(secret: string, opts: { down?: boolean } = {}): Promise<WebhookReceiver> {
  const pki = makePki(['127.0.0.1']);
  const batches: WebhookBatch[] = [];
  let server: Server | null = null;
  const sockets = new Set<Socket>();
  const rx: WebhookReceiver = {
    pki,
    port: 0,
    get url() { return `https://127.0.0.1:${rx.port}/hook`; },
    batches,
    status: 204,
    maxBodyBytes: Infinity,
    requests: [],
    events: () => batches.flatMap((b) => b.events),
    async waitEvents(n, ms = 60_000) {
      const deadline = Date.now() + ms;
      while (rx.events().length < n) {
        if (Date.now() > deadline) throw new Error(`only ${rx.events().length} of ${n} events arrived`);
        await new Promise((r) => setTimeout(r, 20));
      }
    },
    async start() {
      server = createServer({ cert: pki.cert, key: pki.key }, (req, res) => {
        const chunks: Buffer[] = [];
        req.on('data', (c: Buffer) => chunks.push(c));
        req.on('end', () => {
          const body = Buffer.concat(chunks);
          const status = body.length > rx.maxBodyBytes ? 413 : rx.status;
          rx.requests.push({ status, bytes: body.length, id: String(req.headers['x-chokepoint-batch']) });
          if (status >= 200 && status < 300) {
            const timestamp = Number(req.headers['x-chokepoint-timestamp']);
            const verified = verifyWebhook(secret, { timestamp: req.headers['x-chokepoint-timestamp'] as string, signature: req.headers['x-chokepoint-signature'] as string, batch: req.headers['x-chokepoint-batch'] as string }, body, Math.floor(Date.now() / 1000));
            batches.push({ id: String(req.headers['x-chokepoint-batch']), events: JSON.parse(body.toString('utf8')) as Record<string, unknown>[], verified, timestamp });
          }
          res.statusCode = status;
          res.end();
        });
      });
      server.on('connection', (s: Socket) => { sockets.add(s); s.on('close', () => sockets.delete(s)); });
      await new Promise<void>((r) => server!.listen(rx.port, '127.0.0.1', r));
      rx.port = (server.address() as AddressInfo).port;
    },
    async stop() {
      if (!server) return;
      const s = server;
      server = null;
      for (const sock of sockets) sock.destroy();
      await new Promise<void>((r) => s.close(() => r()));
    },
    async close() {
      await rx.stop();
      pki.cleanup();
    },
  };
  await rx.start();
  if (opts.down) await rx.stop();
  return rx;
}

export interface Rsyslog {
  readonly udpPort: number;
  readonly tcpPort: number;
  readonly tlsPort: number;
  readonly output: string;
  /** Lines received so far (the raw MSG as rsyslog formats it with the template). */
  lines(): string[];
  waitLines(n: number, ms?: number): Promise<string[]>;
  stop(): Promise<void>;
  close(): Promise<void>;
}

/** The lines rsyslog has written to `output` so far. */
function linesOf(output: string): string[] {
  return existsSync(output) ? readFileSync(output, 'utf8').split('\n').filter((l) => l !== '') : [];
}

async function waitLines(lines: () => string[], n: number, ms = 30_000): Promise<string[]> {
  const deadline = Date.now() + ms;
  for (;;) {
    const l = lines();
    if (l.length >= n) return l;
    if (Date.now() > deadline) throw new Error(`rsyslog received ${l.length} of ${n} messages`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export function rsyslogAvailable(): boolean {
  return existsSync('/usr/sbin/rsyslogd');
}

/**
 * rsyslogd in the foreground with a private config: imudp, imtcp (octet-counting is
 * recognised automatically, RFC 6587) and a second imtcp with the gnutls driver (RFC 5425),
 * every message written with a template that keeps the RFC 5424 fields apart.
 */
export async function startRsyslog(ports: { udp: number; tcp: number; tls: number }, pki: TestPki): Promise<Rsyslog> {
  const dir = mkdtempSync(join(tmpdir(), 'cp-rsyslog-'));
  const output = join(dir, 'received.log');
  const conf = `
global(workDirectory="${dir}" maxMessageSize="64k"
  defaultNetstreamDriverCAFile="${pki.caPath}"
  defaultNetstreamDriverCertFile="${join(pki.dir, 'srv.pem')}"
  defaultNetstreamDriverKeyFile="${join(pki.dir, 'srv.key')}")
module(load="imudp")
module(load="imtcp" maxSessions="100")
template(name="fields" type="string" string="%pri%|%protocol-version%|%timereported:::date-rfc3339%|%hostname%|%app-name%|%procid%|%msgid%|%structured-data%|%msg%\\n")
ruleset(name="capture") {
  action(type="omfile" file="${output}" template="fields" flushOnTXEnd="on" asyncWriting="off")
}
input(type="imudp" address="127.0.0.1" port="${ports.udp}" ruleset="capture")
input(type="imtcp" address="127.0.0.1" port="${ports.tcp}" ruleset="capture")
`;
  // rsyslog loads a module once per process, so the TLS listener is a second rsyslogd.
  const tlsFile = join(dir, 'tls.conf');
  writeFileSync(join(dir, 'plain.conf'), conf);
  writeFileSync(tlsFile, `
global(workDirectory="${dir}" maxMessageSize="64k"
  defaultNetstreamDriver="gtls"
  defaultNetstreamDriverCAFile="${pki.caPath}"
  defaultNetstreamDriverCertFile="${join(pki.dir, 'srv.pem')}"
  defaultNetstreamDriverKeyFile="${join(pki.dir, 'srv.key')}")
module(load="imtcp" streamDriver.name="gtls" streamDriver.mode="1" streamDriver.authMode="anon" maxSessions="100")
template(name="fields" type="string" string="%pri%|%protocol-version%|%timereported:::date-rfc3339%|%hostname%|%app-name%|%procid%|%msgid%|%structured-data%|%msg%\\n")
ruleset(name="capture") {
  action(type="omfile" file="${output}" template="fields" flushOnTXEnd="on" asyncWriting="off")
}
input(type="imtcp" address="127.0.0.1" port="${ports.tls}" ruleset="capture")
`);
  const procs: ChildProcess[] = [];
  for (const [cfg, pid] of [[join(dir, 'plain.conf'), join(dir, 'plain.pid')], [tlsFile, join(dir, 'tls.pid')]] as const) {
    execFileSync('/usr/sbin/rsyslogd', ['-N1', '-f', cfg], { stdio: 'pipe' }); // config check first: a clear error
    const p = spawn('/usr/sbin/rsyslogd', ['-n', '-f', cfg, '-i', pid], { stdio: ['ignore', 'ignore', 'pipe'] });
    p.stderr!.on('data', () => {});
    procs.push(p);
  }
  const lines = () => linesOf(output);
  const rs: Rsyslog = {
    udpPort: ports.udp, tcpPort: ports.tcp, tlsPort: ports.tls, output, lines,
    waitLines: (n, ms) => waitLines(lines, n, ms),
    async stop() {
      await Promise.all(procs.map((p) => new Promise<void>((r) => {
        if (p.exitCode !== null || p.signalCode !== null) return r();
        p.once('exit', () => r());
        p.kill('SIGTERM');
      })));
    },
    async close() {
      await rs.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return rs;
}

export function relpAvailable(): boolean {
  return rsyslogAvailable() && (existsSync('/usr/lib/x86_64-linux-gnu/rsyslog/imrelp.so') || existsSync('/usr/lib/aarch64-linux-gnu/rsyslog/imrelp.so'));
}

export interface RsyslogRelp {
  readonly relpPort: number;
  readonly relpTlsPort: number;
  lines(): string[];
  waitLines(n: number, ms?: number): Promise<string[]>;
  /** Stops rsyslogd (SIGTERM, or SIGKILL: a crash) and starts it again on the same ports. */
  stop(signal?: NodeJS.Signals): Promise<void>;
  start(): void;
  close(): Promise<void>;
}

/**
 * rsyslogd with imrelp (Debian's rsyslog-relp): a plain RELP listener and a RELP-over-TLS one
 * with the test PKI's server certificate, every message written with the same field template.
 * imrelp with TLS authenticates its clients too: `certvalid` takes any client certificate the
 * test CA signed (the PKI's one certificate serves as the client's).
 */
export function startRsyslogRelp(ports: { relp: number; relpTls: number }, pki: TestPki): RsyslogRelp {
  const dir = mkdtempSync(join(tmpdir(), 'cp-rsyslog-relp-'));
  const output = join(dir, 'received.log');
  const cfg = join(dir, 'relp.conf');
  writeFileSync(cfg, `
global(workDirectory="${dir}" maxMessageSize="64k")
module(load="imrelp")
template(name="fields" type="string" string="%pri%|%protocol-version%|%timereported:::date-rfc3339%|%hostname%|%app-name%|%procid%|%msgid%|%structured-data%|%msg%\\n")
ruleset(name="capture") {
  action(type="omfile" file="${output}" template="fields" flushOnTXEnd="on" asyncWriting="off")
}
input(type="imrelp" address="127.0.0.1" port="${ports.relp}" ruleset="capture")
input(type="imrelp" address="127.0.0.1" port="${ports.relpTls}" ruleset="capture" tls="on"
  tls.caCert="${pki.caPath}" tls.myCert="${join(pki.dir, 'srv.pem')}" tls.myPrivKey="${join(pki.dir, 'srv.key')}" tls.authMode="certvalid")
`);
  execFileSync('/usr/sbin/rsyslogd', ['-N1', '-f', cfg], { stdio: 'pipe' }); // config check first: a clear error
  let proc: ChildProcess | null = null;
  const start = () => {
    proc = spawn('/usr/sbin/rsyslogd', ['-n', '-f', cfg, '-i', join(dir, 'relp.pid')], { stdio: ['ignore', 'ignore', 'pipe'] });
    proc.stderr!.on('data', () => {});
  };
  start();
  const lines = () => linesOf(output);
  const rs: RsyslogRelp = {
    relpPort: ports.relp, relpTlsPort: ports.relpTls, lines, start,
    waitLines: (n, ms) => waitLines(lines, n, ms),
    async stop(signal = 'SIGTERM') {
      const p = proc;
      proc = null;
      if (p === null || p.exitCode !== null || p.signalCode !== null) return;
      await new Promise<void>((r) => { p.once('exit', () => r()); p.kill(signal); });
    },
    async close() {
      await rs.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return rs;
}
