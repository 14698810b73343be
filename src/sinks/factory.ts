/**
 * Builds a sink from its validated `sinks[i]` configuration. Network sinks (syslog, webhook)
 * buffer in `<dataDir>/spool/<name>/`; file and stdout sinks write directly.
 *
 * Two steps, because sinks run on the evidence thread (threaded.ts): `resolveSink` reads every
 * file the sink needs (secret, TLS material) and makes a file sink's directory on the caller's
 * thread, so that a missing file still stops `serve` at start with a clear error; `buildSink`
 * turns the result — plain, cloneable data — into a sink, on whichever thread will run it.
 */
import { mkdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { SinkConfig } from '../config/evidence.js';
import { ChokepointError } from '../core/errors.js';
import type { EvidenceEvent } from '../events/evidence.js';
import { BufferedSink } from './buffered.js';
import { FileSink } from './file.js';
import { RelpTransport } from './relp.js';
import { syslogFormatter, syslogTextFormatter, SyslogTransport } from './syslog.js';
import type { Sink } from './types.js';
import { WebhookTransport } from './webhook.js';

export interface SinkContext {
  readonly dataDir: string;
  readonly emit: (e: EvidenceEvent) => void;
  readonly onError: (sink: string, err: Error) => void;
  /** Host name put in syslog headers when the sink does not set one. */
  readonly hostname?: string;
}

/** A sink's configuration with the files it names already read. Survives structured cloning. */
export interface ResolvedSink {
  readonly config: SinkConfig;
  /** Buffers arrive on another thread as plain Uint8Arrays; both are accepted by TLS options. */
  readonly tls: { readonly ca?: Uint8Array; readonly cert?: Uint8Array; readonly key?: Uint8Array; readonly serverName?: string };
  /** Webhook HMAC key. */
  readonly secret?: string;
  readonly hostname: string;
}

/**
 * Makes the directory of a file sink's `path` (`who` names the sink in the error). Done on the
 * caller's thread at start, so that a directory that cannot be made stops `serve` with a clear
 * error rather than failing the evidence thread over and over.
 */
function makeSinkDirectory(path: string, who: string): void {
  try {
    mkdirSync(dirname(path), { recursive: true, mode: 0o750 });
  } catch (cause) {
    throw new ChokepointError('CONFIG_INVALID', `${who}: cannot create the directory of ${path}: ${(cause as Error).message}`, { cause });
  }
}

/** `who` names the sink in a start-up error (the `events:` target is a file sink named otherwise in the configuration). */
export function resolveSink(c: SinkConfig, hostname = '-', who = `sink "${c.name}"`): ResolvedSink {
  if (c.type === 'file') {
    if (c.path !== '-') makeSinkDirectory(c.path, who);
    return { config: c, tls: {}, hostname };
  }
  const read = (key: string, path: string | undefined): Buffer | undefined => {
    if (path === undefined) return undefined;
    try {
      return readFileSync(path);
    } catch (cause) {
      throw new ChokepointError('CONFIG_INVALID', `sink "${c.name}": cannot read tls.${key} ${path}`, { cause });
    }
  };
  const tls = { ca: read('ca', c.tls.ca), cert: read('cert', c.tls.cert), key: read('key', c.tls.key), serverName: c.tls.server_name };
  if (c.type === 'syslog') return { config: c, tls, hostname };
  let secret: string;
  try {
    secret = c.secret ?? readFileSync(c.secret_file as string, 'utf8').trim();
  } catch (cause) {
    throw new ChokepointError('CONFIG_INVALID', `sink "${c.name}": cannot read secret_file ${String(c.secret_file)}`, { cause });
  }
  if (secret.length < 16) throw new ChokepointError('CONFIG_INVALID', `sink "${c.name}": the secret in ${String(c.secret_file)} is shorter than 16 characters`);
  return { config: c, tls, secret, hostname };
}

const asBuffer = (u: Uint8Array | undefined): Buffer | undefined => (u === undefined || Buffer.isBuffer(u) ? u : Buffer.from(u.buffer, u.byteOffset, u.byteLength));

export function buildSink(r: ResolvedSink, ctx: Omit<SinkContext, 'hostname'>): Sink {
  const c = r.config;
  const onError = (err: Error) => ctx.onError(c.name, err);
  if (c.type === 'file') {
    return new FileSink({ name: c.name, path: c.path, types: c.types, rotate: { maxBytes: c.rotate.max_bytes, intervalMs: c.rotate.interval, keep: c.rotate.keep, maxAgeMs: c.rotate.max_age }, maxQueueBytes: c.max_queue_bytes, emit: ctx.emit, onError });
  }
  const spool = { dir: join(ctx.dataDir, 'spool', c.name), maxBytes: c.buffer.max_bytes, segmentBytes: c.buffer.segment_bytes, fsync: c.buffer.fsync, fsyncIntervalMs: c.buffer.fsync_interval };
  const retry = { minDelayMs: c.retry.min_delay, maxDelayMs: c.retry.max_delay };
  const tls = { ca: asBuffer(r.tls.ca), cert: asBuffer(r.tls.cert), key: asBuffer(r.tls.key), serverName: r.tls.serverName };
  if (c.type === 'syslog') {
    const fmt = { facility: c.facility, appName: c.app_name, hostname: c.hostname ?? r.hostname, procId: String(process.pid) };
    return new BufferedSink({
      name: c.name, types: c.types, spool, retry, emit: ctx.emit, onError,
      batchMax: c.batch_max, batchMaxBytes: 1024 * 1024, batchWaitMs: c.batch_wait,
      format: syslogFormatter(fmt),
      formatText: syslogTextFormatter(fmt),
      transport: c.transport === 'relp' || c.transport === 'relp-tls'
        ? new RelpTransport({ host: c.host, port: c.port ?? 2514, timeoutMs: c.timeout, tls: c.transport === 'relp-tls' ? tls : null })
        : new SyslogTransport({ transport: c.transport, host: c.host, port: c.port ?? (c.transport === 'tls' ? 6514 : 514), timeoutMs: c.timeout, tls }),
    });
  }
  return new BufferedSink({
    name: c.name, types: c.types, spool, retry, emit: ctx.emit, onError,
    batchMax: c.batch_max, batchMaxBytes: c.batch_max_bytes, batchWaitMs: c.batch_wait,
    transport: new WebhookTransport({ url: c.url, secret: r.secret as string, timeoutMs: c.timeout, tls }),
  });
}

/** Both steps on this thread (tests, tools). */
export function createSink(c: SinkConfig, ctx: SinkContext): Sink {
  return buildSink(resolveSink(c, ctx.hostname), ctx);
}
