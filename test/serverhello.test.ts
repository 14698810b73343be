/**
 * The server's first handshake message and the client's second ClientHello (serverhello.ts):
 * what a tunnel reads after the first ClientHello passed.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { classifyServerFirst, secondHelloStart } from '../src/gateway/serverhello.js';
import { buildClientHello, buildServerHello, record } from './helpers/clienthello-fixtures.js';

describe('classifyServerFirst', () => {
  it('tells a HelloRetryRequest from a ServerHello, whole or fragmented across records', () => {
    assert.equal(classifyServerFirst(buildServerHello({ retry: true })), 'retry');
    assert.equal(classifyServerFirst(buildServerHello()), 'other');
    // 38 handshake bytes are needed: spread over many small records the answer is the same.
    assert.equal(classifyServerFirst(buildServerHello({ retry: true, fragmentRecords: 30 })), 'retry');
    assert.equal(classifyServerFirst(buildServerHello({ fragmentRecords: 30 })), 'other');
  });

  it('waits for the bytes it needs, whatever the split', () => {
    const hrr = buildServerHello({ retry: true, fragmentRecords: 7 });
    const needed = new Set<string>();
    for (let i = 1; i < hrr.length; i++) {
      const k = classifyServerFirst(hrr.subarray(0, i));
      needed.add(k);
      if (k !== 'incomplete') assert.equal(k, 'retry', `prefix ${i}`);
    }
    assert.ok(needed.has('incomplete'));
    assert.equal(classifyServerFirst(Buffer.alloc(0)), 'incomplete');
  });

  it('says other for an alert, a non-TLS server or another handshake message first', () => {
    assert.equal(classifyServerFirst(record(21, Buffer.from([2, 40]))), 'other');
    assert.equal(classifyServerFirst(Buffer.from('SSH-2.0-OpenSSH_9.6\r\n')), 'other');
    // An echo of the ClientHello (handshake type 1) is not a retry.
    assert.equal(classifyServerFirst(buildClientHello()), 'other');
  });

  it('refuses records no TLS server sends before its first message is whole', () => {
    // Empty handshake fragment (RFC 8446 §5.1 MUST NOT).
    assert.equal(classifyServerFirst(Buffer.from([22, 3, 3, 0, 0])), 'unreadable');
    // A ServerHello interrupted by another content type.
    const hrr = buildServerHello({ retry: true, fragmentRecords: 30 });
    const first = hrr.subarray(0, 5 + hrr.readUInt16BE(3));
    assert.equal(classifyServerFirst(Buffer.concat([first, record(20, Buffer.from([1]))])), 'unreadable');
    // Oversized record.
    assert.equal(classifyServerFirst(Buffer.from([22, 3, 3, 0xff, 0xff, 2])), 'unreadable');
  });
});

describe('secondHelloStart', () => {
  it('skips ChangeCipherSpec and 0-RTT records to the next handshake record', () => {
    const ccs = record(20, Buffer.from([1]));
    const early = record(23, Buffer.alloc(100, 7));
    const ch = buildClientHello();
    assert.deepEqual(secondHelloStart(Buffer.concat([ccs, early, ch])), { kind: 'at', offset: ccs.length + early.length, alert: false });
    assert.deepEqual(secondHelloStart(ch), { kind: 'at', offset: 0, alert: false });
    // An alert is passed over too (a server may ignore a warning alert and act on what follows).
    const alert = record(21, Buffer.from([1, 90]));
    assert.deepEqual(secondHelloStart(Buffer.concat([ccs, alert, ch])), { kind: 'at', offset: ccs.length + alert.length, alert: true });
    assert.deepEqual(secondHelloStart(Buffer.concat([ccs, alert])), { kind: 'incomplete', offset: ccs.length + alert.length, alert: true });
  });

  it('reports the whole records it can skip while the rest is incomplete', () => {
    const ccs = record(20, Buffer.from([1]));
    const early = record(23, Buffer.alloc(100, 7));
    assert.deepEqual(secondHelloStart(Buffer.concat([ccs, early.subarray(0, 50)])), { kind: 'incomplete', offset: ccs.length, alert: false });
    assert.deepEqual(secondHelloStart(Buffer.concat([ccs, Buffer.from([22, 3])])), { kind: 'incomplete', offset: ccs.length, alert: false });
    assert.deepEqual(secondHelloStart(Buffer.alloc(0)), { kind: 'incomplete', offset: 0, alert: false });
  });
});
