/**
 * Address classification: a table per class and family, boundaries, a linear-scan reference
 * for the longest-prefix lookup, a cross-check against ipaddr.js's ranges, and checkAddress
 * with exceptions and the gateway's own addresses.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import ipaddr from 'ipaddr.js';
import { cidrContains, formatIp, parseCidr, parseIp, type Cidr } from '../src/policy/cidr.js';
import { CLASS_TABLE, classifyAddress, type AddressClass } from '../src/policy/index.js';
import { mustLoad } from './fixtures/policy/helpers.js';

const TABLE: [AddressClass, string[]][] = [
  ['unspecified', ['0.0.0.0', '0.1.2.3', '0.255.255.255', '::']],
  ['private', ['10.0.0.0', '10.255.255.255', '172.16.0.0', '172.31.255.255', '192.168.0.0', '192.168.255.255']],
  ['loopback', ['127.0.0.1', '127.0.0.0', '127.255.255.255', '::1']],
  ['link_local', ['169.254.0.0', '169.254.169.253', '169.254.169.255', '169.254.255.255', 'fe80::1', 'febf:ffff::1']],
  ['metadata', ['169.254.169.254', '169.254.170.2', '169.254.170.23', '100.100.100.200', 'fd00:ec2::254', 'fd00:ec2::23']],
  ['cgnat', ['100.64.0.0', '100.100.100.199', '100.100.100.201', '100.127.255.255']],
  ['multicast', ['224.0.0.1', '239.255.255.255', 'ff02::1', 'ff0e::1', 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff']],
  ['broadcast', ['255.255.255.255']],
  ['reserved', ['240.0.0.1', '255.255.255.254', '192.0.0.0', '192.0.0.9', '192.0.0.255', '198.18.0.0', '198.19.255.255', '192.88.99.1',
    '100::1', '100::ffff:ffff:ffff:ffff', '2001:2::1', '2001:10::1', '2001:20::1', '2001:30::1', '2001:1ff::1', '2001:1::4',
    'fec0::1', '5f00::1', '4000::1', '::2:0:0:0', '1::', '100:0:0:1::1', 'fe00::1']],
  ['documentation', ['192.0.2.1', '198.51.100.0', '203.0.113.255', '2001:db8::1', '2001:db8:ffff::1', '3fff::1', '3fff:fff:ffff::1']],
  ['unique_local', ['fc00::1', 'fd12:3456::1', 'fdff:ffff::1', 'fd00:ec2::253']],
  ['ipv4_embedded', ['64:ff9b::808:808', '64:ff9b::8.8.8.8', '64:ff9b:1::1', '::808:808', '::8.8.8.8', '::0.0.0.2', '2002:c000:204::1',
    '2001::1', '2001:0:ffff:ffff::1', '::ffff:0:808:808']],
  ['public', ['8.8.8.8', '1.1.1.1', '100.63.255.255', '100.128.0.0', '172.15.255.255', '172.32.0.0', '192.167.255.255', '192.169.0.0',
    '169.253.255.255', '169.255.0.0', '126.255.255.255', '128.0.0.0', '223.255.255.255', '9.255.255.255', '11.0.0.0', '1.0.0.0',
    '198.17.255.255', '198.20.0.0', '192.0.1.255', '192.0.3.0', '192.31.196.1', '192.52.193.1', '192.175.48.1',
    '2606:4700::1111', '2001:4860:4860::8888', '2001:3::1', '2001:1::1', '2001:1::2', '2001:1::3', '2001:4:112::1',
    '2620:4f:8000::1', '2001:200::1', '3ffe::1', '3fff:1000::1', '2000::', '3fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff']],
];

describe('classifyAddress: one table per class, both families', () => {
  for (const [cls, ips] of TABLE) {
    it(cls, () => {
      for (const ip of ips) assert.equal(classifyAddress(ip), cls, ip);
    });
  }

  it('classifies IPv4-mapped IPv6 as its IPv4 address', () => {
    assert.equal(classifyAddress('::ffff:127.0.0.1'), 'loopback');
    assert.equal(classifyAddress('::ffff:a9fe:a9fe'), 'metadata');
    assert.equal(classifyAddress('::FFFF:10.0.0.1'), 'private');
    assert.equal(classifyAddress('::ffff:8.8.8.8'), 'public');
  });

  it('fails closed on anything that is not a strict address literal', () => {
    for (const s of ['', 'x', '1.2.3', '01.2.3.4', '1.2.3.4.5', '0x7f000001', '2130706433', 'fe80::1%eth0', '::ffff:999.1.1.1', '[::1]', ' 8.8.8.8', '8.8.8.8/32', ':::', 'g::1']) {
      assert.equal(classifyAddress(s), 'reserved', JSON.stringify(s));
    }
  });
});

/** Reference: longest matching row by a linear scan (what the trie must compute). */
const ROWS: { c: Cidr; cls: AddressClass }[] = CLASS_TABLE.map((r) => {
  const p = parseCidr(r.cidr);
  assert.ok(p.ok, r.cidr);
  return { c: p.cidr, cls: r.class };
});
function reference(ip: string): AddressClass {
  const p = parseIp(ip);
  if (p === null) return 'reserved';
  let best: { c: Cidr; cls: AddressClass } | null = null;
  for (const r of ROWS) if (cidrContains(r.c, p) && (best === null || r.c.prefix > best.c.prefix)) best = r;
  return best?.cls ?? 'public';
}

function rand32(): number {
  return Math.floor(Math.random() * 2 ** 32) >>> 0;
}
function offset(c: Cidr, last: boolean, delta: number): string {
  const words = [...c.words];
  for (let i = 0; i < words.length; i++) {
    const keep = Math.max(0, Math.min(32, c.prefix - 32 * i));
    if (last && keep < 32) words[i] = ((words[i] as number) | (0xffffffff >>> keep)) >>> 0;
  }
  // Add delta (±1) with carry, to step just outside the block.
  for (let i = words.length - 1; i >= 0 && delta !== 0; i--) {
    const v = (words[i] as number) + delta;
    words[i] = ((v % 2 ** 32) + 2 ** 32) % 2 ** 32;
    delta = v >= 2 ** 32 ? 1 : v < 0 ? -1 : 0;
  }
  return formatIp({ family: c.family, words });
}

describe('the classification table', () => {
  it('has no two rows for the same block, and cites a reference for each', () => {
    const seen = new Set<string>();
    for (const r of ROWS) {
      assert.ok(!seen.has(r.c.text), `duplicate row ${r.c.text}`);
      seen.add(r.c.text);
    }
    for (const r of CLASS_TABLE) assert.ok(r.ref.length > 3, r.cidr);
  });

  it('matches a linear longest-prefix reference at every block edge and at random', () => {
    const probes: string[] = [];
    for (const r of ROWS) for (const last of [false, true]) for (const d of [-1, 0, 1]) probes.push(offset(r.c, last, d));
    for (let i = 0; i < 5000; i++) {
      probes.push(formatIp({ family: 4, words: [rand32()] }));
      probes.push(formatIp({ family: 6, words: [rand32(), rand32(), rand32(), rand32()] }));
      // Bias IPv6 probes into the interesting low and 2001::/16 space.
      probes.push(formatIp({ family: 6, words: [i % 2 === 0 ? 0x20010000 + (rand32() % 0x400) : 0, rand32() % 4, rand32() % 3, rand32()] }));
    }
    for (const ip of probes) assert.equal(classifyAddress(ip), reference(ip), ip);
  });
});

describe('cross-check against ipaddr.js ranges', () => {
  // Which of our classes each ipaddr.js name may map to; the differences are deliberate
  // (see classify.ts): ipaddr has no metadata class, calls documentation "reserved", treats
  // ::/96 and unallocated space as unicast, and the 2001::/23 service blocks as reserved.
  const V4: Record<string, AddressClass[]> = {
    unspecified: ['unspecified'], broadcast: ['broadcast'], multicast: ['multicast'], linkLocal: ['link_local', 'metadata'],
    loopback: ['loopback'], carrierGradeNat: ['cgnat', 'metadata'], private: ['private'], reserved: ['reserved', 'documentation'],
    as112: ['public'], amt: ['public'], unicast: ['public'],
  };
  const V6: Record<string, AddressClass[]> = {
    unspecified: ['unspecified'], linkLocal: ['link_local'], multicast: ['multicast'], loopback: ['loopback'],
    uniqueLocal: ['unique_local', 'metadata'], deprecatedSiteLocal: ['reserved'], discard: ['reserved'], rfc6145: ['ipv4_embedded'],
    rfc6052: ['ipv4_embedded'], '6to4': ['ipv4_embedded'], teredo: ['ipv4_embedded'], benchmarking: ['reserved'], amt: ['public'],
    as112v6: ['public'], deprecatedOrchid: ['reserved'], orchid2: ['reserved'], droneRemoteIdProtocolEntityTags: ['reserved'],
    segmentRouting: ['reserved'], reserved: ['reserved', 'documentation', 'public'], unicast: ['public', 'reserved', 'ipv4_embedded', 'unspecified', 'loopback'],
  };

  it('agrees on every probe up to the documented differences', () => {
    const probes: string[] = TABLE.flatMap(([, ips]) => ips).filter((ip) => parseIp(ip) !== null);
    for (const r of ROWS) for (const last of [false, true]) probes.push(offset(r.c, last, 0));
    for (let i = 0; i < 3000; i++) probes.push(formatIp({ family: 4, words: [rand32()] }), formatIp({ family: 6, words: [rand32(), rand32(), rand32(), rand32()] }));
    for (const ip of probes) {
      const a = ipaddr.parse(ip);
      if (a.kind() === 'ipv6' && (a as ipaddr.IPv6).isIPv4MappedAddress()) continue;
      const name = a.range();
      const allowed = (a.kind() === 'ipv4' ? V4 : V6)[name];
      assert.ok(allowed, `unknown ipaddr range ${name} for ${ip}`);
      assert.ok(allowed.includes(classifyAddress(ip)), `${ip}: ipaddr says ${name}, we say ${classifyAddress(ip)}`);
    }
    // Unallocated IPv6 space is public for ipaddr.js and reserved for us: on purpose.
    assert.equal(ipaddr.parse('4000::1').range(), 'unicast');
    assert.equal(classifyAddress('4000::1'), 'reserved');
  });
});

describe('IP parsing', () => {
  it('writes IPv6 the way the URL parser (and so core) does', () => {
    for (let i = 0; i < 3000; i++) {
      const words = [rand32(), i % 3 === 0 ? 0 : rand32(), i % 2 === 0 ? 0 : rand32(), i % 5 === 0 ? 0 : rand32()].map((w, k) => (i % 7 === k ? w & 0xffff : w) >>> 0);
      if (words[0] === 0 && words[1] === 0 && words[2] === 0xffff) continue; // mapped: IPv4
      const text = formatIp({ family: 6, words });
      assert.equal(text, new URL(`http://[${text}]/`).hostname.slice(1, -1));
      const full = ipaddr.IPv6.parse(text).toNormalizedString();
      const back = parseIp(full.toUpperCase());
      assert.ok(back !== null && back.family === 6, full);
      assert.deepEqual(back.words, words, full);
    }
  });

  it('accepts only strict literals', () => {
    assert.deepEqual(parseIp('10.1.2.3'), { family: 4, words: [0x0a010203] });
    assert.deepEqual(parseIp('::ffff:10.1.2.3'), { family: 4, words: [0x0a010203] });
    assert.deepEqual(parseIp('1:2:3:4:5:6:1.2.3.4'), { family: 6, words: [0x10002, 0x30004, 0x50006, 0x01020304] });
    for (const s of ['10.1.2', '10.1.2.3.4', '10.01.2.3', '256.1.1.1', '1::2::3', '1:2:3:4:5:6:7:8:9', 'fe80::1%1', '']) assert.equal(parseIp(s), null, s);
  });
});

describe('checkAddress', () => {
  const policy = mustLoad('version: 1\naddress_exceptions: [127.0.0.1/32, "fd00:ec2::/32", 10.9.0.0/16, 8.8.4.4/32]\ngroups: []\n');

  it('allows public addresses and says so', () => {
    assert.deepEqual(policy.checkAddress('93.184.216.34'), { allowed: true, class: 'public' });
    assert.deepEqual(policy.checkAddress('2606:4700::1111'), { allowed: true, class: 'public' });
  });

  it('denies special addresses with their class', () => {
    assert.deepEqual(policy.checkAddress('127.0.0.2'), { allowed: false, class: 'loopback' });
    assert.deepEqual(policy.checkAddress('169.254.169.254'), { allowed: false, class: 'metadata' });
    assert.deepEqual(policy.checkAddress('::ffff:169.254.169.254'), { allowed: false, class: 'metadata' });
    assert.deepEqual(policy.checkAddress('64:ff9b::a9fe:a9fe'), { allowed: false, class: 'ipv4_embedded' });
    assert.deepEqual(policy.checkAddress('10.8.255.255'), { allowed: false, class: 'private' });
    assert.deepEqual(policy.checkAddress('nonsense'), { allowed: false, class: 'reserved' });
  });

  it('allows what an exception covers, and reports which exception', () => {
    assert.deepEqual(policy.checkAddress('127.0.0.1'), { allowed: true, class: 'loopback', exception: '127.0.0.1/32' });
    assert.deepEqual(policy.checkAddress('::ffff:127.0.0.1'), { allowed: true, class: 'loopback', exception: '127.0.0.1/32' });
    assert.deepEqual(policy.checkAddress('10.9.1.1'), { allowed: true, class: 'private', exception: '10.9.0.0/16' });
    assert.deepEqual(policy.checkAddress('fd00:ec2::254'), { allowed: true, class: 'metadata', exception: 'fd00:ec2::/32' });
  });

  it('denies the gateway\'s own addresses as self, whatever their spelling, unless excepted', () => {
    const self = new Set(['93.184.216.34', '2001:DB8:0:0::1', '::ffff:198.51.100.7', '8.8.4.4', 'fe80::1%eth0']);
    assert.deepEqual(policy.checkAddress('93.184.216.34', self), { allowed: false, class: 'self' });
    assert.deepEqual(policy.checkAddress('2001:db8::1', self), { allowed: false, class: 'self' });
    assert.deepEqual(policy.checkAddress('198.51.100.7', self), { allowed: false, class: 'self' });
    assert.deepEqual(policy.checkAddress('fe80::1', self), { allowed: false, class: 'self' });
    assert.deepEqual(policy.checkAddress('8.8.4.4', self), { allowed: true, class: 'self', exception: '8.8.4.4/32' });
    assert.deepEqual(policy.checkAddress('93.184.216.35', self), { allowed: true, class: 'public' });
    assert.deepEqual(policy.checkAddress('93.184.216.34', new Set()), { allowed: true, class: 'public' });
  });

  it('returns frozen verdicts', () => {
    assert.ok(Object.isFrozen(policy.checkAddress('8.8.8.8')));
    assert.ok(Object.isFrozen(policy.checkAddress('127.0.0.1')));
    assert.ok(Object.isFrozen(policy.checkAddress('10.0.0.1')));
  });
});
