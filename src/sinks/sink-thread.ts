/**
 * What the evidence thread runs (see threaded.ts; sink-worker.ts is its script): builds the
 * sinks (file, syslog, webhook) from their resolved configurations and the anomaly detectors,
 * and feeds them the event texts the gateway's thread sends, in order. Everything these do —
 * formatting, writing files, the disk buffers, TLS, HTTP, the detectors' baselines — happens
 * here. A detector's alert goes back to the gateway's thread and onto its bus, like every
 * other event, and so returns here to the sinks after the event that caused it.
 */
import { DetectEngine } from '../detect/engine.js';
import type { ChokepointEvent } from '../events/catalogue.js';
import { eventFromJson } from '../events/json.js';
import { buildSink } from './factory.js';
import type { FromSinkThread, SinkThreadInit, ToSinkThread } from './thread-protocol.js';
import type { SinkStats } from './types.js';

/** The part of a MessagePort the thread uses (tests wrap it). */
export interface SinkThreadPort {
  on(event: 'message', fn: (m: ToSinkThread) => void): unknown;
  postMessage(m: FromSinkThread): void;
}

export function runSinkThread(port: SinkThreadPort, init: SinkThreadInit): void {
  const post = (m: FromSinkThread): void => port.postMessage(m);
  const sinks = init.sinks.map((r) => buildSink(r, {
    dataDir: init.dataDir,
    emit: (event) => post({ t: 'emit', event }),
    onError: (sink, err) => post({ t: 'error', sink, message: err.message, code: typeof (err as NodeJS.ErrnoException).code === 'string' ? (err as NodeJS.ErrnoException).code : undefined }),
  }));
  const detect = init.detect === null ? null : new DetectEngine({
    config: init.detect,
    dataDir: init.dataDir,
    publish: (event) => post({ t: 'emit', event }),
    onError: (err) => post({ t: 'detect-error', message: err.message }),
  });
  let closing = false;
  const unsaved = (): number[] => sinks.map((s) => s.unsaved?.() ?? 0);
  let lastUnsaved = unsaved();
  // A failing file sink's memory queue changes with no hand-over to carry the figure.
  const watch = setInterval(() => {
    const now = unsaved();
    if (now.some((n, i) => n !== lastUnsaved[i])) post({ t: 'unsaved', unsaved: (lastUnsaved = now) });
  }, 1000);
  watch.unref();
  port.on('message', (m) => {
    switch (m.t) {
      case 'lines': {
        if (closing) return;
        const data = Buffer.from(m.data.buffer, m.data.byteOffset, m.data.byteLength);
        for (let start = 0; start < data.length;) {
          let end = data.indexOf(0x0a, start);
          if (end < 0) end = data.length;
          const line = data.toString('utf8', start, end);
          start = end + 1;
          const a = line.indexOf('\t');
          const b = line.indexOf('\t', a + 1);
          const c = line.indexOf('\t', b + 1);
          const type = line.slice(0, a);
          const time = line.slice(a + 1, b);
          const severity = Number(line.slice(b + 1, c));
          const json = line.slice(c + 1);
          // Parsed only for a detector, or a sink that cannot take the parts (none of the built-in ones).
          let e: ChokepointEvent | null = null;
          for (const s of sinks) {
            if (s.writeText !== undefined) s.writeText(type, time, severity, json);
            else s.write(e ??= eventFromJson(json));
          }
          if (detect?.accepts(type as ChokepointEvent['type'])) detect.observe(e ?? eventFromJson(json));
        }
        post({ t: 'ack', events: m.events, unsaved: (lastUnsaved = unsaved()) });
        return;
      }
      case 'close-detect': {
        detect?.close();
        post({ t: 'detect-closed' });
        return;
      }
      case 'stats': {
        const stats: Record<string, SinkStats> = {};
        for (const s of sinks) stats[s.name] = s.stats();
        post({ t: 'stats', id: m.id, stats });
        return;
      }
      case 'close': {
        if (closing) return;
        closing = true;
        clearInterval(watch);
        // Baselines first (when close-detect did not come): a sink that takes long to drain must not cost them.
        detect?.close();
        void Promise.all(sinks.map((s) => s.close().catch((err: Error) => post({ t: 'error', sink: s.name, message: err.message }))))
          .then(() => post({ t: 'closed' }));
        return;
      }
    }
  });
}

