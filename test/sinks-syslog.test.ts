/**
 * Syslog sink against a real rsyslog (Debian `rsyslog` + `rsyslog-gnutls`) started by the test
 * on loopback ports with its own configuration: RFC 5424 over UDP, TCP with octet counting
 * (RFC 6587) and TLS (RFC 5425); rsyslog parses each message and writes its fields to a file.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConfig } from '../src/config/load.js';
import type { SinkConfig } from '../src/config/evidence.js';
import type { ChokepointEvent } from '../src/events/catalogue.js';
import type { EvidenceEvent } from '../src/events/evidence.js';
import { createSink } from '../src/sinks/factory.js';
import { formatSyslog, frameOctetCounted, syslogFormatter, SyslogTransport } from '../src/sinks/syslog.js';
import { createServer, type AddressInfo } from 'node:net';
import { Scratch } from '../src/sinks/scratch.js';
import type { Sink } from '../src/sinks/types.js';
import { makePki, type TestPki } from './helpers/origins.js';
import { rsyslogAvailable, startRsyslog, type Rsyslog } from './helpers/receivers.js';
import { freePort } from './helpers/ports.js';


function ev(i: number, extra = ''): ChokepointEvent {
  return { v: 1, type: 'sink.recovered', time: '2025-03-01T12:00:00.123Z', sink: `synthetic${extra}`, down_ms: i, pending_events: 0 };
}

const alert: ChokepointEvent = {
  v: 1, type: 'alert', time: '2025-03-01T12:00:00.000Z', id: 'a1', detector: 'data_volume', severity: 'critical',
  device_id: 'dev-1', group: 'servers', summary: 'unicode ✓ and "quotes"', evidence: { line: 'a\nb' }, suggested_action: 'check',
};

describe('syslog format', () => {
  it('is RFC 5424 with the event type as MSGID and the JSON as MSG; octet counting counts bytes', () => {
    const m = formatSyslog(alert, { facility: 16, appName: 'chokepoint', hostname: 'gw 1', procId: '42' });
    assert.equal(m, `<130>1 2025-03-01T12:00:00.000Z gw1 chokepoint 42 alert - ${JSON.stringify(alert)}`);
    assert.ok(!m.includes('\n'), 'a newline in a field is escaped by JSON');
    const f = frameOctetCounted('é');
    assert.equal(f.toString('latin1'), '2 \xc3\xa9');
  });

  it('one formatter per sink: each event gets its own type as MSGID and its own severity, whatever came before', () => {
    const fmt = syslogFormatter({ facility: 16, appName: 'choke point', hostname: 'gw\t1', procId: '7' });
    const deny: ChokepointEvent = { ...decisionBase, verdict: 'deny', reason: 'no_rule_matched' } as ChokepointEvent;
    const allow: ChokepointEvent = { ...decisionBase, verdict: 'allow', reason: 'allowed' } as ChokepointEvent;
    const lines = [alert, deny, alert, allow].map(fmt);
    assert.deepEqual(lines.map((l) => l.split(' ').slice(0, 6).join(' ')), [
      '<130>1 2025-03-01T12:00:00.000Z gw1 chokepoint 7 alert', // fields keep printable ASCII only (RFC 5424 §6)
      '<132>1 2025-03-01T12:00:01.000Z gw1 chokepoint 7 gateway.decision',
      '<130>1 2025-03-01T12:00:00.000Z gw1 chokepoint 7 alert',
      '<134>1 2025-03-01T12:00:01.000Z gw1 chokepoint 7 gateway.decision',
    ]);
    assert.equal(lines[1]?.endsWith(` - ${JSON.stringify(deny)}`), true);
  });
});

describe('syslog tcp framing', () => {
  it('batch after batch in one reused buffer: every frame exact (UTF-8 counted in bytes), none carrying bytes of an earlier batch', async () => {
    const got: Buffer[] = [];
    const server = createServer((s) => { s.on('data', (c: Buffer) => got.push(c)); s.on('error', () => {}); });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const t = new SyslogTransport({ transport: 'tcp', host: '127.0.0.1', port: (server.address() as AddressInfo).port, timeoutMs: 5000 });
    const line = (i: number, len: number) => `<134>1 - - - - - {"i":${i},"s":"${'é日x'.repeat(len)}"}`;
    // Large, then small (the buffer keeps old bytes past the end), then larger than any before (it grows).
    const batches = [
      Array.from({ length: 50 }, (_, i) => line(i, 40)),
      [line(50, 0), line(51, 1)],
      Array.from({ length: 400 }, (_, i) => line(52 + i, 90)),
      [line(452, 2)],
    ];
    try {
      for (const b of batches) await t.send(b);
      const want = Buffer.concat(batches.flat().map((l) => frameOctetCounted(l)));
      const deadline = Date.now() + 10_000;
      while (Buffer.concat(got).length < want.length && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
      assert.ok(Buffer.concat(got).equals(want), 'the bytes received are exactly the frames, in order');
    } finally {
      await t.close();
      await new Promise((r) => server.close(r));
    }
  });
});

describe('scratch buffer', () => {
  it('returns exactly the bytes of the batch begun, and refuses to hand out a batch whose count was wrong', () => {
    const out = new Scratch(64);
    out.begin(Buffer.byteLength('é日x') + 2);
    out.byte(0x5b);
    out.text('é日x');
    out.byte(0x5d);
    assert.equal(out.bytes().toString(), '[é日x]');
    // A shorter batch in the same (kept) buffer: nothing of the longer one shows.
    out.begin(1);
    out.text('z');
    assert.equal(out.bytes().toString(), 'z');
    // Larger than keepMax: served whole all the same.
    const big = 'q'.repeat(100);
    out.begin(100);
    out.text(big);
    assert.equal(out.bytes().toString(), big);
    // Announced one byte more than written (a miscount): never sent as if whole.
    out.begin(3);
    out.text('ab');
    assert.throws(() => out.bytes(), /announced, 2 written/);
    // Announced fewer than written: Buffer.write stops at the end, and that is refused too.
    out.begin(1);
    out.text('abc');
    assert.throws(() => out.bytes(), /1 bytes announced/);
  });
});

describe('syslog tcp: a receiver that goes away mid-batch', () => {
  for (const how of ['closes (FIN)', 'resets (RST)'] as const) {
    it(`regression: a receiver that ${how} while a batch is still being written fails the send (the batch is retried), not a delivery`, async () => {
      // The receiver reads nothing, so the batch (20 MB, more than loopback's socket buffers
      // hold) is still being written when it goes. Node then calls the write's callback
      // without an error, and the sink counted the whole batch delivered.
      const server = createServer((s) => {
        s.pause();
        s.on('error', () => {});
        setTimeout(() => { if (how === 'closes (FIN)') s.end(); else s.resetAndDestroy(); }, 200);
      });
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
      const t = new SyslogTransport({ transport: 'tcp', host: '127.0.0.1', port: (server.address() as AddressInfo).port, timeoutMs: 20_000 });
      const batch = Array.from({ length: 20_000 }, (_, i) => `<134>1 - - - - - {"i":${i},"pad":"${'A'.repeat(1000)}"}`);
      try {
        await assert.rejects(t.send(batch), (err: NodeJS.ErrnoException) => typeof err.code === 'string');
      } finally {
        await t.close();
        server.close();
      }
    });
  }
});

const decisionBase = {
  v: 1, type: 'gateway.decision', time: '2025-03-01T12:00:01.000Z', id: 'd1', listener: 'proxy', client_ip: '10.0.0.1', client_port: 5000,
  group: 'servers', device_id: null, asset_id: null, serial: null, method: 'CONNECT', host: 'a.example', port: 443, address: null,
  rule: null, mode: 'enforce', sni: null, tls_version: null, address_class: null, detail: null, status: null,
};

describe('syslog sink to a real rsyslog', { skip: rsyslogAvailable() ? false : 'rsyslog not installed (.ci/run installs it)' }, () => {
  let pki: TestPki;
  let rs: Rsyslog;
  const dirs: string[] = [];
  const sinks: Sink[] = [];
  before(async () => {
    pki = makePki(['127.0.0.1']);
    rs = await startRsyslog({ udp: await freePort(), tcp: await freePort(), tls: await freePort() }, pki);
  });
  after(async () => {
    for (const s of sinks) await s.close();
    await rs?.close();
    pki?.cleanup();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  function sink(transport: string, port: number, emitted: EvidenceEvent[] = [], extra: Record<string, unknown> = {}): Sink {
    const dataDir = mkdtempSync(join(tmpdir(), 'cp-syslog-'));
    dirs.push(dataDir);
    const c = parseConfig(JSON.stringify({ sinks: [{ type: 'syslog', name: `s-${transport}`, transport, host: '127.0.0.1', port, hostname: 'gw-test', ...(transport === 'tls' ? { tls: { ca: pki.caPath } } : {}), retry: { min_delay: '50ms', max_delay: '300ms' }, ...extra }] }));
    if (!c.ok) throw new Error(JSON.stringify(c.problems));
    const s = createSink(c.config.sinks[0] as SinkConfig, { dataDir, emit: (e) => emitted.push(e), onError: () => {} });
    sinks.push(s);
    return s;
  }

  /** Lines rsyslog wrote for sink name `tag`, split into the template's fields. */
  async function received(tag: string, n: number): Promise<string[][]> {
    const deadline = Date.now() + 30_000;
    for (;;) {
      const mine = rs.lines().map((l) => l.split('|')).filter((f) => f.slice(8).join('|').includes(`"sink":"${tag}`) || f.slice(8).join('|').includes(`"id":"${tag}"`));
      if (mine.length >= n || Date.now() > deadline) return mine;
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  for (const transport of ['tcp', 'tls', 'udp'] as const) {
    it(`${transport}: rsyslog parses every RFC 5424 field; events arrive whole and in order`, async () => {
      const port = transport === 'udp' ? rs.udpPort : transport === 'tcp' ? rs.tcpPort : rs.tlsPort;
      const s = sink(transport, port);
      const n = 200;
      // A long event too: octet counting must carry it whole (rsyslog maxMessageSize is 64k here).
      for (let i = 0; i < n; i++) s.write(ev(i, `-${transport}${i === 7 ? 'x'.repeat(5000) : ''}`));
      const tag = `synthetic-${transport}`;
      const got = await received(tag, n);
      assert.equal(got.length, n, `${transport}: ${got.length} of ${n} received`);
      const [pri, version, ts, host, app, procid, msgid, sd] = got[0] as string[];
      assert.equal(pri, String(16 * 8 + 6));
      assert.equal(version, '1');
      assert.match(ts as string, /^2025-03-01T12:00:00\.123(Z|\+00:00)$/);
      assert.equal(host, 'gw-test');
      assert.equal(app, 'chokepoint');
      assert.equal(procid, String(process.pid));
      assert.equal(msgid, 'sink.recovered');
      assert.equal(sd, '-');
      const events = got.map((f) => JSON.parse(f.slice(8).join('|').trim()) as { down_ms: number; sink: string });
      if (transport !== 'udp') assert.deepEqual(events.map((e) => e.down_ms), Array.from({ length: n }, (_, i) => i));
      assert.equal(events.find((e) => e.down_ms === 7)?.sink.length, tag.length + 5000);
    });
  }

  it('udp: a message no datagram can carry is dropped, counted and reported; the next ones arrive (it used to stop the sink for good)', async () => {
    const emitted: EvidenceEvent[] = [];
    const s = sink('udp', rs.udpPort, emitted, { name: 's-udp-big' });
    s.write(ev(1, '-udpbig-before'));
    s.write(ev(2, `-udpbig-huge${'x'.repeat(70_000)}`));
    s.write(ev(3, '-udpbig-after'));
    await received('synthetic-udpbig-after', 1);
    assert.equal((await received('synthetic-udpbig-before', 1)).length, 1, 'the record before it was sent once, not again with every smaller batch');
    const deadline = Date.now() + 10_000;
    while (!emitted.some((e) => e.type === 'sink.dropped') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    const d = emitted.find((e) => e.type === 'sink.dropped');
    assert.ok(d && d.type === 'sink.dropped', JSON.stringify(emitted));
    assert.equal(d.reason, 'rejected');
    assert.equal(d.dropped, 1);
    assert.equal(s.stats().up, true);
    assert.equal(s.stats().pending_events, 0);
  });

  it('tcp: an alert keeps its severity in PRI and its unicode intact', async () => {
    const s = sink('tcp', rs.tcpPort);
    s.write({ ...alert, id: 'alert-unicode' } as ChokepointEvent);
    const [f] = await received('alert-unicode', 1);
    assert.ok(f);
    assert.equal(f[0], String(16 * 8 + 2));
    assert.equal((JSON.parse(f.slice(8).join('|')) as { summary: string }).summary, 'unicode ✓ and "quotes"');
  });

  it('tls: a receiver whose certificate the CA did not sign is refused; nothing is sent and the backlog is reported', async () => {
    const other = makePki(['127.0.0.1']);
    try {
      const emitted: EvidenceEvent[] = [];
      const s = sink('tls', rs.tlsPort, emitted, { name: 's-badca', tls: { ca: other.caPath } });
      s.write(ev(1, '-badca'));
      const deadline = Date.now() + 10_000;
      while (!emitted.some((e) => e.type === 'sink.backlog') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      const b = emitted.find((e) => e.type === 'sink.backlog');
      assert.ok(b && b.type === 'sink.backlog' && b.pending_events === 1, JSON.stringify(emitted));
      assert.equal((await received('synthetic-badca', 0)).length, 0);
    } finally {
      other.cleanup();
    }
  });
});
