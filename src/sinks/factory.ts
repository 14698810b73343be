/**
 * Builds a sink from its validated `sinks[i]` configuration. Network sinks (syslog, webhook)
 * buffer in `<dataDir>/spool/<name>/`; file and stdout sinks write directly.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { SinkConfig } from '../config/evidence.js';
import { ChokepointError } from '../core/errors.js';
import type { EvidenceEvent } from '../events/evidence.js';
import { BufferedSink } from './buffered.js';
import { FileSink } from './file.js';
import { formatSyslog, SyslogTransport } from './syslog.js';
import type { Sink } from './types.js';
import { WebhookTransport } from './webhook.js';

export interface SinkContext {
  readonly dataDir: string;
  readonly emit: (e: EvidenceEvent) => void;
  readonly onError: (sink: string, err: Error) => void;
  /** Host name put in syslog headers when the sink does not set one. */
  readonly hostname?: string;
}

export function createSink(c: SinkConfig, ctx: SinkContext): Sink {
  const onError = (err: Error) => ctx.onError(c.name, err);
  if (c.type === 'file') {
    return new FileSink({ name: c.name, path: c.path, types: c.types, rotate: { maxBytes: c.rotate.max_bytes, intervalMs: c.rotate.interval, keep: c.rotate.keep, maxAgeMs: c.rotate.max_age }, maxQueueBytes: c.max_queue_bytes, emit: ctx.emit, onError });
  }
  const spool = { dir: join(ctx.dataDir, 'spool', c.name), maxBytes: c.buffer.max_bytes, segmentBytes: c.buffer.segment_bytes, fsync: c.buffer.fsync, fsyncIntervalMs: c.buffer.fsync_interval };
  const retry = { minDelayMs: c.retry.min_delay, maxDelayMs: c.retry.max_delay };
  const read = (key: string, path: string | undefined): Buffer | undefined => {
    if (path === undefined) return undefined;
    try {
      return readFileSync(path);
    } catch (cause) {
      throw new ChokepointError('CONFIG_INVALID', `sink "${c.name}": cannot read tls.${key} ${path}`, { cause });
    }
  };
  const tls = { ca: read('ca', c.tls.ca), cert: read('cert', c.tls.cert), key: read('key', c.tls.key), serverName: c.tls.server_name };
  if (c.type === 'syslog') {
    const hostname = c.hostname ?? ctx.hostname ?? '-';
    const fmt = { facility: c.facility, appName: c.app_name, hostname, procId: String(process.pid) };
    return new BufferedSink({
      name: c.name, types: c.types, spool, retry, emit: ctx.emit, onError,
      batchMax: c.batch_max, batchMaxBytes: 1024 * 1024, batchWaitMs: c.batch_wait,
      format: (e) => formatSyslog(e, fmt),
      transport: new SyslogTransport({ transport: c.transport, host: c.host, port: c.port ?? (c.transport === 'tls' ? 6514 : 514), timeoutMs: c.timeout, tls }),
    });
  }
  let secret: string;
  try {
    secret = c.secret ?? readFileSync(c.secret_file as string, 'utf8').trim();
  } catch (cause) {
    throw new ChokepointError('CONFIG_INVALID', `sink "${c.name}": cannot read secret_file ${String(c.secret_file)}`, { cause });
  }
  if (secret.length < 16) throw new ChokepointError('CONFIG_INVALID', `sink "${c.name}": the secret in ${String(c.secret_file)} is shorter than 16 characters`);
  return new BufferedSink({
    name: c.name, types: c.types, spool, retry, emit: ctx.emit, onError,
    batchMax: c.batch_max, batchMaxBytes: c.batch_max_bytes, batchWaitMs: c.batch_wait,
    transport: new WebhookTransport({ url: c.url, secret, timeoutMs: c.timeout, tls }),
  });
}
