/**
 * ClientHello parser (src/gateway/clienthello.ts) on REAL hellos captured in this test from
 * openssl s_client, Node's tls.connect and curl against a local listener that only records
 * bytes; edited variants of a real hello (ECH, GREASE, fragmentation, duplicates, several
 * host names, broken vectors); every split point; the size bound; and the alert records
 * (src/gateway/tls-alert.ts) as a real TLS client reports them.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import {
  DEFAULT_MAX_HELLO_BYTES, MAX_HELLO_RECORDS, MAX_RECORD, TLS_VERSION, parseClientHello, tlsVersionName,
  type ClientHelloInfo, type HelloResult,
} from '../src/gateway/clienthello.js';
import { TLS_ALERT_DESCRIPTION, tlsAlertRecord } from '../src/gateway/tls-alert.js';
import {
  alpnData, buildClientHello, echData, editHello, insertExtension, serverNameData, splitHello,
  supportedVersionsData, toRecords, u16,
} from './helpers/clienthello-fixtures.js';

const HOST = 'api.vendor.example';

/**
 * Listens on 127.0.0.1:0, runs `client(port)`, and returns the first TLS record(s) the
 * client sends: bytes are collected until the first record is complete by its own length
 * field (not by the parser under test), then the socket is destroyed.
 */
async function capture(client: (port: number) => { stop(): void }, timeoutMs = 10_000): Promise<Buffer> {
  const sockets = new Set<Socket>();
  const server = createServer();
  let stopClient: (() => void) | null = null;
  try {
    return await new Promise<Buffer>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no ClientHello within ${timeoutMs} ms`)), timeoutMs);
      server.on('connection', (s) => {
        sockets.add(s);
        let buf = Buffer.alloc(0);
        s.on('error', () => {});
        s.on('data', (d: Buffer) => {
          buf = Buffer.concat([buf, d]);
          if (buf.length >= 5 && buf.length >= 5 + buf.readUInt16BE(3)) {
            clearTimeout(timer);
            resolve(buf);
          }
        });
      });
      server.listen(0, '127.0.0.1', () => {
        try {
          stopClient = client((server.address() as AddressInfo).port).stop;
        } catch (err) {
          clearTimeout(timer);
          reject(err as Error);
        }
      });
    });
  } finally {
    for (const s of sockets) s.destroy();
    (stopClient as (() => void) | null)?.();
    await new Promise((r) => server.close(r));
  }
}

/** Runs a command with a hard timeout; stop() kills it (and it dies on its own after 10 s). */
function run(cmd: string, args: string[]): { stop(): void } {
  const child = spawn(cmd, args, { stdio: ['pipe', 'ignore', 'ignore'], timeout: 10_000, killSignal: 'SIGKILL' });
  child.on('error', () => {});
  return { stop: () => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL'); } };
}

function openssl(...args: string[]): (port: number) => { stop(): void } {
  return (port) => run('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, ...args]);
}

function ok(r: HelloResult, what = ''): ClientHelloInfo {
  assert.equal(r.kind, 'ok', `${what}: ${JSON.stringify(r)}`);
  return (r as { info: ClientHelloInfo }).info;
}

function errorOf(buf: Buffer, max?: number): string {
  const r = parseClientHello(buf, max);
  assert.equal(r.kind, 'error', JSON.stringify(r));
  return (r as { detail: string }).detail;
}

/** A capture that may legitimately fail: a build or config that cannot offer old protocols sends nothing. */
async function optional(client: (port: number) => { stop(): void }): Promise<Buffer | undefined> {
  try {
    return await capture(client, 4000);
  } catch {
    return undefined;
  }
}

const hellos = new Map<string, Buffer>();

describe('real ClientHellos', () => {
  before(async () => {
    const weak = ['-cipher', 'DEFAULT@SECLEVEL=0'];
    hellos.set('openssl', await capture(openssl('-servername', HOST)));
    hellos.set('openssl-tls1_2', await capture(openssl('-servername', HOST, '-tls1_2')));
    const tls11 = await optional(openssl('-servername', HOST, '-tls1_1', ...weak));
    if (tls11 !== undefined) hellos.set('openssl-tls1_1', tls11);
    const tls10 = await optional(openssl('-servername', HOST, '-tls1', ...weak));
    if (tls10 !== undefined) hellos.set('openssl-tls1', tls10);
    hellos.set('openssl-noservername', await capture(openssl('-noservername', '-alpn', 'h2,http/1.1')));
    hellos.set('node', await capture((port) => {
      const s = tlsConnect({ host: '127.0.0.1', port, servername: 'API.Vendor.Example.', rejectUnauthorized: false, ALPNProtocols: ['h2', 'http/1.1'] });
      s.on('error', () => {});
      return { stop: () => s.destroy() };
    }));
    hellos.set('node-tls1_2', await capture((port) => {
      const s = tlsConnect({ host: '127.0.0.1', port, servername: HOST, rejectUnauthorized: false, minVersion: 'TLSv1.2', maxVersion: 'TLSv1.2' });
      s.on('error', () => {});
      return { stop: () => s.destroy() };
    }));
    hellos.set('curl', await capture((port) => run('curl', ['-sk', '--max-time', '8', `https://${HOST}:${port}/`, '--resolve', `${HOST}:${port}:127.0.0.1`])));
  });

  it('openssl s_client, TLS 1.3 by default', () => {
    const buf = hellos.get('openssl') as Buffer;
    const i = ok(parseClientHello(buf));
    assert.equal(i.sni, HOST);
    assert.equal(i.legacyVersion, 0x0303);
    assert.equal(i.maxVersion, TLS_VERSION['1.3']);
    assert.equal(i.supportedVersions[0], 0x0304);
    assert.ok(i.supportedVersions.includes(0x0303));
    assert.deepEqual(i.alpn, []);
    assert.equal(i.ech, false);
    assert.equal(i.bytes, buf.length);
  });

  it('openssl s_client -tls1_2: no supported_versions, legacy version 1.2', () => {
    const i = ok(parseClientHello(hellos.get('openssl-tls1_2') as Buffer));
    assert.deepEqual([i.sni, i.legacyVersion, i.supportedVersions, i.maxVersion], [HOST, 0x0303, [], 0x0303]);
  });

  it('openssl s_client -tls1_1 and -tls1', (t) => {
    if (!hellos.has('openssl-tls1_1') || !hellos.has('openssl-tls1')) {
      t.skip('this openssl cannot offer TLS 1.0/1.1');
      return;
    }
    const i11 = ok(parseClientHello(hellos.get('openssl-tls1_1') as Buffer));
    assert.deepEqual([i11.sni, i11.maxVersion, tlsVersionName(i11.maxVersion)], [HOST, 0x0302, '1.1']);
    const i10 = ok(parseClientHello(hellos.get('openssl-tls1') as Buffer));
    assert.deepEqual([i10.sni, i10.maxVersion, tlsVersionName(i10.maxVersion)], [HOST, 0x0301, '1.0']);
  });

  it('openssl s_client -noservername with ALPN', () => {
    const i = ok(parseClientHello(hellos.get('openssl-noservername') as Buffer));
    assert.deepEqual([i.sni, i.maxVersion, i.alpn], [null, 0x0304, ['h2', 'http/1.1']]);
  });

  it('Node tls.connect: servername lowercased, trailing dot removed; ALPN in order', () => {
    const i = ok(parseClientHello(hellos.get('node') as Buffer));
    assert.deepEqual([i.sni, i.maxVersion, i.alpn, i.ech], [HOST, 0x0304, ['h2', 'http/1.1'], false]);
    const i12 = ok(parseClientHello(hellos.get('node-tls1_2') as Buffer));
    assert.deepEqual([i12.sni, i12.maxVersion], [HOST, 0x0303]);
  });

  it('curl', () => {
    const buf = hellos.get('curl') as Buffer;
    const i = ok(parseClientHello(buf));
    assert.equal(i.sni, HOST);
    assert.equal(i.maxVersion, 0x0304);
    assert.ok(i.alpn.includes('http/1.1'), JSON.stringify(i.alpn));
    assert.equal(i.bytes, buf.length);
  });

  it('every real hello: incomplete at every split point, identical result once whole', () => {
    for (const [name, buf] of hellos) {
      const whole = ok(parseClientHello(buf), name);
      for (let i = 0; i < buf.length; i++) {
        assert.deepEqual(parseClientHello(buf.subarray(0, i)), { kind: 'incomplete' }, `${name} at ${i}`);
      }
      // What follows the hello (here a ChangeCipherSpec record, as middlebox-compatible clients send) is not counted.
      const more = Buffer.concat([buf, Buffer.from([20, 3, 3, 0, 1, 1])]);
      assert.deepEqual(ok(parseClientHello(more), name), whole);
    }
  });

  it('every real hello survives fragmentation into 2, 3, 7 and 64 records; more than 64 is refused (a CPU attack, not a TLS stack)', () => {
    for (const [name, buf] of hellos) {
      const whole = ok(parseClientHello(buf), name);
      const msgLen = buf.length - 5;
      const oneByte = parseClientHello(editHello(buf, (e) => e, msgLen), 64 * 1024);
      assert.deepEqual(oneByte, { kind: 'error', detail: `ClientHello split over more than ${MAX_HELLO_RECORDS} records` }, name);
      for (const n of [2, 3, 7, MAX_HELLO_RECORDS]) {
        const frag = editHello(buf, (e) => e, n);
        const expectedRecords = Math.ceil(msgLen / Math.ceil(msgLen / n));
        assert.equal(frag.length, msgLen + 5 * expectedRecords, `${name}/${n}`);
        const i = ok(parseClientHello(frag, 64 * 1024), `${name}/${n}`);
        assert.deepEqual({ ...i, bytes: 0 }, { ...whole, bytes: 0 });
        assert.equal(i.bytes, frag.length);
      }
    }
  });

  it('a fragmented hello is incomplete at every split point', () => {
    const frag = editHello(hellos.get('openssl') as Buffer, (e) => e, 5);
    for (let i = 0; i < frag.length; i++) assert.deepEqual(parseClientHello(frag.subarray(0, i)), { kind: 'incomplete' }, `at ${i}`);
    assert.equal(ok(parseClientHello(frag)).sni, HOST);
  });
});

describe('edited real hellos', () => {
  let real: Buffer;
  before(async () => {
    real = hellos.get('openssl') ?? await capture(openssl('-servername', HOST));
  });
  const edit = (f: (e: [number, Buffer][]) => [number, Buffer][]): Buffer => editHello(real, f);
  const replace = (type: number, data: Buffer) => (e: [number, Buffer][]): [number, Buffer][] => e.map(([t, d]) => [t, t === type ? data : d]);

  it('splitHello/joinHello reproduce the capture byte for byte', () => {
    assert.deepEqual(editHello(real, (e) => e), real);
  });

  it('ECH extension → ech: true, SNI is the outer name', () => {
    const i = ok(parseClientHello(edit((e) => insertExtension(e, [0xfe0d, echData()]))));
    assert.deepEqual([i.ech, i.sni], [true, HOST]);
  });

  it('GREASE versions and extension types are ignored (RFC 8701)', () => {
    const buf = edit((e) => [[0x0a0a, Buffer.alloc(0)], ...replace(43, supportedVersionsData([0x1a1a, 0x0304, 0x0303, 0xfafa]))(e), [0x2a2a, Buffer.from([0])]]);
    const i = ok(parseClientHello(buf));
    assert.deepEqual([i.supportedVersions, i.maxVersion], [[0x0304, 0x0303], 0x0304]);
  });

  it('only GREASE in supported_versions → maxVersion falls back to legacy_version', () => {
    const i = ok(parseClientHello(edit(replace(43, supportedVersionsData([0x3a3a])))));
    assert.deepEqual([i.supportedVersions, i.maxVersion], [[], 0x0303]);
  });

  it('maxVersion is the highest, whatever the order; 0x0a0b is not GREASE', () => {
    const i = ok(parseClientHello(edit(replace(43, supportedVersionsData([0x0302, 0x0304, 0x0a0b, 0x0303])))));
    assert.deepEqual([i.supportedVersions, i.maxVersion], [[0x0302, 0x0304, 0x0a0b, 0x0303], 0x0a0b]);
  });

  it('duplicate extensions → error (RFC 8446 §4.2)', () => {
    assert.equal(errorOf(edit((e) => [...e.filter(([t]) => t === 0), ...e])), 'duplicate extension 0');
    assert.equal(errorOf(edit((e) => [...e, [43, supportedVersionsData([0x0304])]])), 'duplicate extension 43');
    assert.equal(errorOf(edit((e) => [[0x0a0a, Buffer.alloc(0)], ...e, [0x0a0a, Buffer.alloc(0)]])), `duplicate extension ${0x0a0a}`);
  });

  it('several host_name entries in server_name → error (RFC 6066 §3)', () => {
    assert.equal(errorOf(edit(replace(0, serverNameData(HOST, 'evil.example')))), 'more than one host_name in server_name');
    assert.equal(errorOf(edit(replace(0, serverNameData(HOST, HOST)))), 'more than one host_name in server_name');
  });

  it('host names: case, trailing dot, and what is refused', () => {
    const sni = (name: string): HelloResult => parseClientHello(edit(replace(0, serverNameData(name))));
    assert.equal(ok(sni('API.VENDOR.Example.')).sni, HOST);
    assert.equal(ok(sni('a')).sni, 'a');
    assert.equal(ok(sni('a..')).sni, 'a.'); // one dot only: the caller then sees a mismatch
    assert.equal(ok(sni('xn--bcher-kva.example')).sni, 'xn--bcher-kva.example');
    for (const [name, detail] of [['', 'empty host_name'], ['.', 'empty host_name'], ['a b', 'host_name is not printable ASCII'], ['a\x00b', 'host_name is not printable ASCII'], ['b\xfccher.example', 'host_name is not printable ASCII'], ['a\x7f', 'host_name is not printable ASCII']] as const) {
      assert.deepEqual(sni(name), { kind: 'error', detail }, JSON.stringify(name));
    }
  });

  it('server_name: empty list → error; other name types are skipped', () => {
    assert.equal(errorOf(edit(replace(0, u16(0)))), 'empty server_name list');
    assert.equal(errorOf(edit(replace(0, Buffer.alloc(0)))), 'bad server_name length');
    const other = Buffer.concat([Buffer.from([7]), u16(3), Buffer.from('xyz')]);
    const host = Buffer.concat([Buffer.from([0]), u16(HOST.length), Buffer.from(HOST)]);
    const list = Buffer.concat([other, host]);
    assert.equal(ok(parseClientHello(edit(replace(0, Buffer.concat([u16(list.length), list]))))).sni, HOST);
    assert.equal(ok(parseClientHello(edit(replace(0, Buffer.concat([u16(other.length), other]))))).sni, null);
    assert.equal(errorOf(edit(replace(0, Buffer.concat([u16(4), Buffer.from([0]), u16(5), Buffer.from('a')])))), 'truncated server_name');
  });

  it('ALPN vectors', () => {
    assert.deepEqual(ok(parseClientHello(edit((e) => insertExtension(e, [16, alpnData(['h2', 'http/1.1', 'x'])])))).alpn, ['h2', 'http/1.1', 'x']);
    for (const bad of [u16(0), Buffer.concat([u16(1), Buffer.from([0])]), Buffer.concat([u16(3), Buffer.from([5, 0x61, 0x62])]), Buffer.alloc(0)]) {
      assert.equal(errorOf(edit((e) => insertExtension(e, [16, bad]))), 'bad application_layer_protocol_negotiation');
    }
  });

  it('supported_versions vectors', () => {
    for (const bad of [Buffer.alloc(0), Buffer.from([0]), Buffer.from([3, 3, 4, 3]), Buffer.from([4, 3, 4]), Buffer.from([2, 3, 4, 0])]) {
      assert.equal(errorOf(edit(replace(43, bad))), 'bad supported_versions', bad.toString('hex'));
    }
  });

  it('broken lengths inside the message', () => {
    const parts = splitHello(real);
    const msg = (fixed: Buffer, extBlock: Buffer): Buffer => {
      const body = Buffer.concat([fixed, extBlock]);
      return toRecords(Buffer.concat([Buffer.from([1, 0, body.length >> 8, body.length & 0xff]), body]));
    };
    const exts = Buffer.concat(parts.extensions.map(([t, d]) => Buffer.concat([u16(t), u16(d.length), d])));
    assert.equal(ok(parseClientHello(msg(parts.fixed, Buffer.concat([u16(exts.length), exts])))).sni, HOST);
    assert.equal(errorOf(msg(parts.fixed, Buffer.concat([u16(exts.length + 1), exts]))), 'extensions length does not match the ClientHello');
    assert.equal(errorOf(msg(parts.fixed, Buffer.concat([u16(exts.length - 1), exts]))), 'extensions length does not match the ClientHello');
    assert.equal(errorOf(msg(parts.fixed, Buffer.concat([u16(exts.length + 1), exts, Buffer.from([0])]))), 'truncated extension');
    assert.equal(errorOf(msg(parts.fixed, Buffer.from([0]))), 'truncated extensions');
    // No extensions at all is a valid pre-1.3 hello.
    const bare = ok(parseClientHello(msg(parts.fixed, Buffer.alloc(0))));
    assert.deepEqual([bare.sni, bare.supportedVersions, bare.maxVersion], [null, [], 0x0303]);
    const f = Buffer.from(parts.fixed);
    assert.equal(errorOf(msg(f.subarray(0, 30), Buffer.alloc(0))), 'truncated ClientHello');
    const sid = Buffer.from(f);
    sid[34] = 33;
    assert.equal(errorOf(msg(sid, Buffer.alloc(0))), 'bad legacy_session_id');
    const sidLen = f[34] as number;
    const cs = Buffer.from(f);
    cs.writeUInt16BE(3, 35 + sidLen);
    assert.equal(errorOf(msg(cs, Buffer.alloc(0))), 'bad cipher_suites');
    const cm = Buffer.from(f);
    cm[35 + sidLen + 2 + f.readUInt16BE(35 + sidLen)] = 0;
    assert.equal(errorOf(msg(cm, Buffer.alloc(0))), 'bad legacy_compression_methods');
  });
});

describe('record layer', () => {
  const hello = buildClientHello({ sni: HOST });

  it('not TLS: other first bytes, SSLv2 hello, plain HTTP, other record versions', () => {
    assert.deepEqual(parseClientHello(Buffer.from('GET / HTTP/1.1\r\n')), { kind: 'not_tls', detail: 'first byte is not a TLS handshake record' });
    assert.equal(parseClientHello(Buffer.from([0x80, 0x2e, 0x01, 0x03, 0x01])).kind, 'not_tls');
    assert.equal(parseClientHello(Buffer.from([0x17, 3, 3, 0, 1, 0])).kind, 'not_tls');
    assert.deepEqual(parseClientHello(Buffer.from([0x16, 2, 0])), { kind: 'not_tls', detail: 'record version is not 3.x' });
    assert.deepEqual(parseClientHello(Buffer.from([0x16])), { kind: 'incomplete' });
    assert.deepEqual(parseClientHello(Buffer.alloc(0)), { kind: 'incomplete' });
  });

  it('any 3.x record version is accepted (RFC 8446 §5.1: ignored)', () => {
    for (const v of [0x0300, 0x0301, 0x0303, 0x03ff]) assert.equal(ok(parseClientHello(buildClientHello({ sni: HOST, recordVersion: v }))).sni, HOST);
  });

  it('a handshake message other than ClientHello is refused as soon as its type byte arrives', () => {
    const sh = Buffer.from(hello);
    sh[5] = 2;
    assert.deepEqual(parseClientHello(sh.subarray(0, 6)), { kind: 'error', detail: 'first handshake message is not a ClientHello' });
    assert.equal(errorOf(sh), 'first handshake message is not a ClientHello');
  });

  it('record bounds', () => {
    assert.equal(errorOf(Buffer.from([22, 3, 1, 0, 0])), 'empty handshake record');
    const long = Buffer.from([22, 3, 1, 0, 0, 1]);
    long.writeUInt16BE(MAX_RECORD + 1, 3);
    assert.equal(errorOf(long, 1 << 20), 'record too long');
    long.writeUInt16BE(MAX_RECORD, 3);
    assert.deepEqual(parseClientHello(long, 1 << 20), { kind: 'incomplete' });
  });

  it('a non-handshake record between fragments → error', () => {
    const two = buildClientHello({ sni: HOST, fragmentRecords: 2 });
    const first = 5 + two.readUInt16BE(3);
    const mixed = Buffer.concat([two.subarray(0, first), Buffer.from([23, 3, 3, 0, 1, 0]), two.subarray(first)]);
    assert.equal(errorOf(mixed), 'non-handshake record inside the ClientHello');
    const badVersion = Buffer.from(two);
    badVersion[first + 1] = 2;
    assert.equal(errorOf(badVersion), 'bad record version');
  });

  it('handshake bytes after the ClientHello in its last record → error', () => {
    const msg = hello.subarray(5);
    assert.equal(errorOf(toRecords(Buffer.concat([msg, Buffer.from([0x14])]))), 'data after the ClientHello in its record');
  });

  it('the total bound: exactly maxBytes is accepted, one less is not', () => {
    assert.equal(ok(parseClientHello(hello, hello.length)).bytes, hello.length);
    assert.deepEqual(parseClientHello(hello, hello.length - 1), { kind: 'error', detail: 'ClientHello too large' });
    // A prefix is refused as soon as the declared record would not fit.
    assert.deepEqual(parseClientHello(hello.subarray(0, 5), hello.length - 1), { kind: 'error', detail: 'ClientHello too large' });
    for (const max of [0, -1, Number.NaN]) assert.equal(parseClientHello(hello, max).kind, 'error');
    // Past the bound while the next record header is still partial: a last fragment of one
    // byte keeps the declared message length (L) within the bound, the records (L + 10) not.
    const msg = hello.subarray(5);
    const L = msg.length;
    const split = Buffer.concat([Buffer.from([22, 3, 1]), u16(L - 1), msg.subarray(0, L - 1), Buffer.from([22, 3, 1, 0, 1]), msg.subarray(L - 1)]);
    assert.equal(ok(parseClientHello(split, L + 10)).bytes, L + 10);
    assert.deepEqual(parseClientHello(split.subarray(0, L + 7), L + 10), { kind: 'incomplete' });
    assert.deepEqual(parseClientHello(split.subarray(0, L + 7), L + 6), { kind: 'error', detail: 'ClientHello too large' });
  });

  it('a fragmented hello that declares more than maxBytes is refused before it arrives', () => {
    const huge = Buffer.from([22, 3, 1, 0, 4, 1, 0xff, 0xff, 0xff]);
    assert.deepEqual(parseClientHello(huge), { kind: 'error', detail: 'ClientHello too large' });
  });

  it('garbage past the record headers does not count toward bytes', () => {
    const i = ok(parseClientHello(Buffer.concat([hello, Buffer.alloc(100, 0xee)])));
    assert.equal(i.bytes, hello.length);
  });

  it('the default bound holds a full-size record', () => {
    assert.ok(DEFAULT_MAX_HELLO_BYTES >= (1 << 14) + 5);
    const big = buildClientHello({ sni: HOST, extra: [[21, Buffer.alloc((1 << 14) - hello.length)]] }); // padding
    assert.equal(ok(parseClientHello(big)).sni, HOST);
  });
});

describe('fixture builder (shared with the gateway tests)', () => {
  it('builds what it is asked for', () => {
    const i = ok(parseClientHello(buildClientHello({ sni: 'Tls.Test', versions: [0x0a0a, 0x0302, 0x0301], legacyVersion: 0x0302, ech: true, alpn: ['http/1.1'], fragmentRecords: 3 })));
    assert.deepEqual(i, { sni: 'tls.test', legacyVersion: 0x0302, supportedVersions: [0x0302, 0x0301], maxVersion: 0x0302, ech: true, alpn: ['http/1.1'], bytes: i.bytes });
    assert.equal(ok(parseClientHello(buildClientHello())).sni, 'tls.test');
    assert.equal(ok(parseClientHello(buildClientHello({ sni: null, versions: [] }))).maxVersion, 0x0303);
    assert.equal(errorOf(buildClientHello({ duplicateSni: true })), 'duplicate extension 0');
    assert.equal(errorOf(buildClientHello({ moreHostNames: ['b.test'] })), 'more than one host_name in server_name');
  });
});

describe('TLS constants', () => {
  it('TLS_VERSION and tlsVersionName', () => {
    assert.deepEqual(TLS_VERSION, { '1.0': 0x0301, '1.1': 0x0302, '1.2': 0x0303, '1.3': 0x0304 });
    const t: [number, string][] = [[0x0300, 'ssl3'], [0x0301, '1.0'], [0x0302, '1.1'], [0x0303, '1.2'], [0x0304, '1.3'], [0x7f1c, '0x7f1c'], [0x0a0a, '0x0a0a'], [-1, 'unknown'], [0x10000, 'unknown'], [1.5, 'unknown']];
    for (const [v, name] of t) assert.equal(tlsVersionName(v), name);
  });
});

describe('tlsAlertRecord', () => {
  it('builds fatal alert records', () => {
    assert.deepEqual(tlsAlertRecord('unrecognized_name'), Buffer.from([21, 3, 1, 0, 2, 2, 112]));
    assert.deepEqual(tlsAlertRecord('protocol_version'), Buffer.from([21, 3, 1, 0, 2, 2, 70]));
    assert.deepEqual(tlsAlertRecord('access_denied', 0x0303), Buffer.from([21, 3, 3, 0, 2, 2, 49]));
    assert.deepEqual(tlsAlertRecord('access_denied', 0x10000), Buffer.from([21, 3, 1, 0, 2, 2, 49]));
    assert.deepEqual(TLS_ALERT_DESCRIPTION, { access_denied: 49, protocol_version: 70, unrecognized_name: 112 });
  });

  // A real TLS client must report each alert with its own meaning (DESIGN §2).
  const expected = { unrecognized_name: 'ERR_SSL_TLSV1_UNRECOGNIZED_NAME', protocol_version: 'ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION', access_denied: 'ERR_SSL_TLSV1_ALERT_ACCESS_DENIED' } as const;
  for (const [alert, code] of Object.entries(expected) as [keyof typeof expected, string][]) {
    it(`Node's TLS client reports ${alert} as ${code}`, async () => {
      const server = createServer((s) => {
        s.on('error', () => {});
        let buf = Buffer.alloc(0);
        s.on('data', (d: Buffer) => {
          buf = Buffer.concat([buf, d]);
          if (parseClientHello(buf).kind === 'ok') s.end(tlsAlertRecord(alert));
        });
      });
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
      try {
        const err = await new Promise<NodeJS.ErrnoException>((resolve, reject) => {
          const c = tlsConnect({ host: '127.0.0.1', port: (server.address() as AddressInfo).port, servername: HOST, rejectUnauthorized: false });
          const timer = setTimeout(() => { c.destroy(); reject(new Error('no alert within 5 s')); }, 5000);
          c.on('error', (e) => { clearTimeout(timer); resolve(e); });
          c.on('secureConnect', () => { clearTimeout(timer); c.destroy(); reject(new Error('handshake succeeded')); });
        });
        assert.equal(err.code, code);
      } finally {
        await new Promise((r) => server.close(r));
      }
    });
  }
});

after(() => hellos.clear());
