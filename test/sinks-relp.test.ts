/**
 * Syslog over RELP: the frame parser on its own (well-formed, split anywhere, malformed), the
 * sink against a real rsyslog with imrelp (Debian `rsyslog-relp`), plain and in TLS — including
 * a receiver killed mid-stream, where TCP syslog would lose what was in flight and RELP must
 * not — and against a scripted server for the failure paths (500, out-of-order answers,
 * serverclose, no syslog offer).
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConfig } from '../src/config/load.js';
import type { SinkConfig } from '../src/config/evidence.js';
import type { ChokepointEvent } from '../src/events/catalogue.js';
import type { EvidenceEvent } from '../src/events/evidence.js';
import { createSink, resolveSink } from '../src/sinks/factory.js';
import { ThreadedSinks } from '../src/sinks/threaded.js';
import { encodeFrame, parseResponse, RelpFrameParser, RelpProtocolError, type RelpFrame } from '../src/sinks/relp-frame.js';
import type { Sink } from '../src/sinks/types.js';
import { makePki, type TestPki } from './helpers/origins.js';
import { relpAvailable, startRsyslogRelp, type RsyslogRelp } from './helpers/receivers.js';
import { freePort } from './helpers/ports.js';
import { until } from './helpers/evidence.js';


function ev(i: number, tag: string): ChokepointEvent {
  return { v: 1, type: 'sink.recovered', time: '2025-03-01T12:00:00.123Z', sink: tag, down_ms: i, pending_events: 0 };
}

const dirs: string[] = [];
after(() => { for (const d of dirs) rmSync(d, { recursive: true, force: true }); });

function relpSink(port: number, extra: Record<string, unknown> = {}, emitted: EvidenceEvent[] = [], errors: Error[] = []): Sink {
  const dataDir = mkdtempSync(join(tmpdir(), 'cp-relp-'));
  dirs.push(dataDir);
  const c = parseConfig(JSON.stringify({ sinks: [{ type: 'syslog', name: 'relp', transport: 'relp', host: '127.0.0.1', port, batch_wait: '0s', timeout: '2s', retry: { min_delay: '20ms', max_delay: '200ms' }, ...extra }] }));
  if (!c.ok) throw new Error(JSON.stringify(c.problems));
  return createSink(c.config.sinks[0] as SinkConfig, { dataDir, emit: (e) => emitted.push(e), onError: (_s, err) => errors.push(err), hostname: 'gw1' });
}

describe('RELP frames', () => {
  it('encode as "TXNR SP COMMAND SP DATALEN [SP DATA] LF", DATALEN in bytes, and parse back whole or split anywhere', () => {
    assert.equal(encodeFrame(7, 'syslog', 'é').toString('latin1'), '7 syslog 2 \xc3\xa9\n');
    assert.equal(encodeFrame(9, 'close').toString(), '9 close 0\n');
    const wire = Buffer.concat([encodeFrame(1, 'rsp', '200 OK\nrelp_version=0\ncommands=syslog'), encodeFrame(2, 'rsp', '200 OK'), Buffer.from('3 rsp 0\n'), encodeFrame(0, 'serverclose')]);
    const whole = new RelpFrameParser().push(wire);
    const split: RelpFrame[] = [];
    const p = new RelpFrameParser();
    for (const byte of wire) split.push(...p.push(Buffer.from([byte])));
    for (const frames of [whole, split]) {
      assert.deepEqual(frames.map((f) => [f.txnr, f.command, f.data.toString()]), [
        [1, 'rsp', '200 OK\nrelp_version=0\ncommands=syslog'], [2, 'rsp', '200 OK'], [3, 'rsp', ''], [0, 'serverclose', ''],
      ]);
    }
    assert.deepEqual(parseResponse(Buffer.from('200 OK\nrelp_version=0')), { code: 200, text: 'OK', rest: 'relp_version=0' });
    assert.deepEqual(parseResponse(Buffer.from('500 queue full')), { code: 500, text: 'queue full', rest: '' });
  });

  it('refuse malformed frames with a protocol error instead of guessing where the next one starts', () => {
    for (const bad of ['x rsp 0\n', '1234567890 rsp 0\n', '1 rsp 2 OKX\n', '1  rsp 0\n', '1 r5p 0\n', '1 rsp 99999999 ', `1 ${'a'.repeat(33)} 0\n`, '1 rsp -1\n']) {
      assert.throws(() => new RelpFrameParser().push(Buffer.from(bad)), RelpProtocolError, JSON.stringify(bad));
    }
    assert.throws(() => parseResponse(Buffer.from('OK')), RelpProtocolError);
    assert.deepEqual(new RelpFrameParser().push(Buffer.from('1 rsp 6 200 O')), [], 'incomplete: wait for more');
  });
});

describe('RELP config', () => {
  it('refuses TLS settings on a plain transport (they would be ignored and the link left in clear text)', () => {
    const problems = (sink: Record<string, unknown>) => {
      const r = parseConfig(JSON.stringify({ sinks: [{ type: 'syslog', name: 's', host: '127.0.0.1', ...sink }] }));
      return r.ok ? [] : r.problems.map((p) => `${p.path}: ${p.message}`);
    };
    for (const transport of ['relp', 'tcp', 'udp']) {
      assert.deepEqual(problems({ transport, tls: { ca: '/etc/ca.pem' } }), ['sinks[0].tls: tls settings apply only to transport tls or relp-tls; set one of those or remove them'], transport);
      assert.deepEqual(problems({ transport }), [], transport);
    }
    assert.deepEqual(problems({ transport: 'relp-tls', tls: { ca: '/etc/ca.pem' } }), []);
    assert.deepEqual(problems({ transport: 'tls', tls: { ca: '/etc/ca.pem' } }), []);
  });
});

describe('RELP sink to a real rsyslog (imrelp)', { skip: relpAvailable() ? false : 'rsyslog-relp not installed (.ci/run installs it)' }, () => {
  let pki: TestPki;
  let rs: RsyslogRelp;
  before(async () => {
    pki = makePki(['127.0.0.1']);
    rs = startRsyslogRelp({ relp: await freePort(), relpTls: await freePort() }, pki);
  });
  after(async () => {
    await rs?.close();
    pki?.cleanup();
  });

  /** Lines rsyslog wrote for events tagged `tag`, split into the template's fields. */
  const mine = (tag: string) => rs.lines().map((l) => l.split('|')).filter((f) => f.slice(8).join('|').includes(`"sink":"${tag}"`));

  for (const transport of ['relp', 'relp-tls'] as const) {
    it(`${transport}: every event arrives once, whole and in order; rsyslog parses the RFC 5424 fields`, async () => {
      const tag = `t-${transport}`;
      const port = transport === 'relp' ? rs.relpPort : rs.relpTlsPort;
      const clientCert = { cert: join(pki.dir, 'srv.pem'), key: join(pki.dir, 'srv.key') };
      const sink = relpSink(port, { transport, tls: transport === 'relp-tls' ? { ca: pki.caPath, ...clientCert } : {} });
      try {
        for (let i = 0; i < 1000; i++) sink.write(ev(i, tag));
        await until(() => mine(tag).length >= 1000, `1000 ${transport} messages in rsyslog`);
        await until(() => sink.stats().pending_events === 0, 'the sink counts them delivered');
        const got = mine(tag);
        assert.equal(got.length, 1000, 'no duplicates without a failure');
        assert.deepEqual(got.map((f) => (JSON.parse(f.slice(8).join('|')) as { down_ms: number }).down_ms), Array.from({ length: 1000 }, (_, i) => i));
        const [pri, version, , host, app, , msgid] = got[0] as string[];
        assert.deepEqual([pri, version, host, app, msgid], ['134', '1', 'gw1', 'chokepoint', 'sink.recovered']);
        assert.equal(sink.stats().delivered, 1000);
      } finally {
        await sink.close();
      }
    });
  }

  it('relp: a receiver killed mid-stream loses nothing — unanswered messages are sent again after it restarts', async () => {
    const tag = 't-crash';
    const emitted: EvidenceEvent[] = [];
    const sink = relpSink(rs.relpPort, { batch_max: 50 }, emitted);
    try {
      const N = 3000;
      for (let i = 0; i < N; i++) {
        sink.write(ev(i, tag));
        if (i % 100 === 0) await new Promise((r) => setImmediate(r));
      }
      await until(() => mine(tag).length > 0, 'the first messages arrive');
      await rs.stop('SIGKILL'); // a crash: no serverclose, unanswered messages in flight
      await until(() => emitted.some((e) => e.type === 'sink.backlog'), 'the outage is reported');
      rs.start();
      await until(() => new Set(mine(tag).map((f) => f.slice(8).join('|'))).size >= N, `all ${N} distinct events in rsyslog`, 60_000);
      const seen = new Set(mine(tag).map((f) => (JSON.parse(f.slice(8).join('|')) as { down_ms: number }).down_ms));
      for (let i = 0; i < N; i++) assert.ok(seen.has(i), `event ${i} arrived`);
      assert.equal(sink.stats().dropped, 0);
      await until(() => emitted.some((e) => e.type === 'sink.recovered'), 'the recovery is reported');
    } finally {
      await sink.close();
    }
  });

  it('relp-tls from the sink thread, as `serve` runs it: every event arrives', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'cp-relp-thread-'));
    dirs.push(dataDir);
    const c = parseConfig(JSON.stringify({ sinks: [{ type: 'syslog', name: 'relp', transport: 'relp-tls', host: '127.0.0.1', port: rs.relpTlsPort, batch_wait: '0s', tls: { ca: pki.caPath, cert: join(pki.dir, 'srv.pem'), key: join(pki.dir, 'srv.key') } }] }));
    if (!c.ok) throw new Error(JSON.stringify(c.problems));
    const sinks = new ThreadedSinks({ sinks: [resolveSink(c.config.sinks[0] as SinkConfig, 'gw1')], dataDir, emit: () => {}, onError: () => {} });
    try {
      for (let i = 0; i < 200; i++) sinks.write(ev(i, 't-thread'));
      await until(() => mine('t-thread').length >= 200, '200 messages from the sink thread');
      assert.equal(mine('t-thread').length, 200);
    } finally {
      await sinks.close();
    }
  });

  it('relp-tls: a receiver whose certificate our CA did not sign is refused before any message is sent', async () => {
    const other = makePki(['127.0.0.1']);
    const emitted: EvidenceEvent[] = [];
    const sink = relpSink(rs.relpTlsPort, { transport: 'relp-tls', tls: { ca: other.caPath, cert: join(pki.dir, 'srv.pem'), key: join(pki.dir, 'srv.key') } }, emitted);
    try {
      sink.write(ev(1, 't-badca'));
      await until(() => emitted.some((e) => e.type === 'sink.backlog'), 'the refusal is reported');
      const backlog = emitted.find((e) => e.type === 'sink.backlog');
      assert.ok(backlog?.type === 'sink.backlog' && /CERT|SIGNATURE|VERIFY|ISSUER/.test(backlog.error), JSON.stringify(backlog));
      assert.equal(sink.stats().up, false);
      assert.equal(mine('t-badca').length, 0);
    } finally {
      await sink.close();
      other.cleanup();
    }
  });
});

/** A scripted RELP server: `answer` decides each syslog command's response. */
async function scriptedServer(o: { offers?: string; answer: (txnr: number, msg: string, n: number) => Buffer | null }): Promise<{ server: Server; port: number; messages: string[] }> {
  const messages: string[] = [];
  let n = 0;
  const server = createServer((s: Socket) => {
    const parser = new RelpFrameParser();
    s.on('error', () => {});
    s.on('data', (c: Buffer) => {
      for (const f of parser.push(c)) {
        if (f.command === 'open') s.write(encodeFrame(f.txnr, 'rsp', `200 OK\n${o.offers ?? 'relp_version=0\nrelp_software=scripted\ncommands=syslog'}`));
        else if (f.command === 'close') { s.write(encodeFrame(f.txnr, 'rsp')); s.end(); }
        else if (f.command === 'syslog') {
          const reply = o.answer(f.txnr, f.data.toString(), n++);
          if (reply === null) continue;
          if (reply.length === 0) { s.destroy(); return; }
          s.write(reply);
          if (parseResponseCode(reply) === 200) messages.push(f.data.toString());
        }
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { server, port: (server.address() as AddressInfo).port, messages };
}

function parseResponseCode(frame: Buffer): number | null {
  try {
    const f = new RelpFrameParser().push(frame)[0];
    return f?.command === 'rsp' ? parseResponse(f.data).code : null;
  } catch {
    return null; // the deliberately malformed answers
  }
}

describe('RELP sink failure paths (scripted server)', () => {
  it('a 500 fails the batch: the backlog is reported and the batch is sent again until it is answered 200', async () => {
    let refuse = true;
    const srv = await scriptedServer({ answer: (txnr) => encodeFrame(txnr, 'rsp', refuse ? '500 queue full' : '200 OK') });
    const emitted: EvidenceEvent[] = [];
    const sink = relpSink(srv.port, {}, emitted);
    try {
      for (let i = 0; i < 5; i++) sink.write(ev(i, 't-500'));
      await until(() => emitted.some((e) => e.type === 'sink.backlog'), 'backlog reported');
      const backlog = emitted.find((e) => e.type === 'sink.backlog');
      assert.ok(backlog?.type === 'sink.backlog' && backlog.error === 'RELP_500', JSON.stringify(backlog));
      refuse = false;
      await until(() => sink.stats().delivered === 5, 'delivered once the server takes them');
      assert.deepEqual(srv.messages.map((m) => (JSON.parse(m.slice(m.indexOf('{'))) as { down_ms: number }).down_ms), [0, 1, 2, 3, 4]);
    } finally {
      await sink.close();
      srv.server.close();
    }
  });

  it('a 500 answered in the same read as 200s still fails the batch (it was swallowed: the message lost, the batch counted delivered)', async () => {
    const accepted: number[] = [];
    let refused = false;
    const server = createServer((sock: Socket) => {
      const parser = new RelpFrameParser();
      sock.on('error', () => {});
      sock.on('data', (c: Buffer) => {
        // Every answer to what arrived in this read goes out in one write, so several land in
        // one read on the other side.
        const out: Buffer[] = [];
        for (const f of parser.push(c)) {
          if (f.command === 'open') out.push(encodeFrame(f.txnr, 'rsp', '200 OK\nrelp_version=0\ncommands=syslog'));
          else if (f.command === 'close') out.push(encodeFrame(f.txnr, 'rsp'));
          else if (f.command === 'syslog') {
            const m = f.data.toString();
            const n = (JSON.parse(m.slice(m.indexOf('{'))) as { down_ms: number }).down_ms;
            if (n === 7 && !refused) { refused = true; out.push(encodeFrame(f.txnr, 'rsp', '500 queue full')); continue; }
            accepted.push(n);
            out.push(encodeFrame(f.txnr, 'rsp', '200 OK'));
          }
        }
        if (out.length > 0) sock.write(Buffer.concat(out));
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const sink = relpSink((server.address() as AddressInfo).port, { batch_max: 20 });
    try {
      for (let i = 0; i < 20; i++) sink.write(ev(i, 't-500-mixed'));
      await until(() => accepted.includes(7), 'the refused message is sent again and taken', 20_000);
      assert.ok(refused);
      assert.deepEqual([...new Set(accepted)].sort((a, b) => a - b), Array.from({ length: 20 }, (_, i) => i));
      assert.equal(sink.stats().dropped, 0);
    } finally {
      await sink.close();
      server.close();
    }
  });

  for (const [name, bad] of [
    ['an answer out of order', (txnr: number) => encodeFrame(txnr + 1, 'rsp', '200 OK')],
    ['serverclose', () => encodeFrame(0, 'serverclose')],
    ['a malformed frame', () => Buffer.from('x rsp\n')],
    ['a dropped connection', () => Buffer.alloc(0)],
  ] as const) {
    it(`${name} ends the session and the batch is sent again on a new one; nothing is lost`, async () => {
      let misbehave = true;
      const srv = await scriptedServer({
        answer: (txnr, _msg, n) => {
          if (misbehave && n === 2) { misbehave = false; return bad(txnr); }
          return encodeFrame(txnr, 'rsp', '200 OK');
        },
      });
      const emitted: EvidenceEvent[] = [];
      const sink = relpSink(srv.port, {}, emitted);
      try {
        for (let i = 0; i < 5; i++) sink.write(ev(i, 't-bad'));
        await until(() => sink.stats().delivered === 5, 'all five delivered');
        const got = new Set(srv.messages.map((m) => (JSON.parse(m.slice(m.indexOf('{'))) as { down_ms: number }).down_ms));
        assert.deepEqual([...got].sort(), [0, 1, 2, 3, 4]);
        assert.ok(emitted.some((e) => e.type === 'sink.backlog'), 'the failed attempt is reported');
      } finally {
        await sink.close();
        srv.server.close();
      }
    });
  }

  it('a server that does not offer the syslog command is refused at open (RELP_OFFERS), nothing sent', async () => {
    const srv = await scriptedServer({ offers: 'relp_version=0\ncommands=other', answer: (txnr) => encodeFrame(txnr, 'rsp', '200 OK') });
    const emitted: EvidenceEvent[] = [];
    const sink = relpSink(srv.port, {}, emitted);
    try {
      sink.write(ev(1, 't-offers'));
      await until(() => emitted.some((e) => e.type === 'sink.backlog'), 'backlog reported');
      const backlog = emitted.find((e) => e.type === 'sink.backlog');
      assert.ok(backlog?.type === 'sink.backlog' && backlog.error === 'RELP_OFFERS', JSON.stringify(backlog));
      assert.equal(srv.messages.length, 0);
    } finally {
      await sink.close();
      srv.server.close();
    }
  });
});
