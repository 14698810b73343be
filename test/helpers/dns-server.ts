/**
 * A tiny authoritative DNS server on loopback UDP for tests: answers A and AAAA from a map,
 * NXDOMAIN otherwise. It lets tests make names resolve to private, loopback or metadata
 * addresses through the gateway's real resolver path (RFC 1035 §4.1 message format).
 */
import { createSocket, type Socket } from 'node:dgram';
import { isIPv4, isIPv6 } from 'node:net';

export interface DnsServer {
  readonly address: string; // host:port for config.dns.resolvers
  readonly queries: string[];
  set(name: string, addrs: string[], ttl?: number): void;
  /** Answers for this name are sent this many milliseconds late (a slow resolver). */
  delay(name: string, ms: number): void;
  close(): Promise<void>;
}

export async function startDnsServer(records: Record<string, string[]> = {}): Promise<DnsServer> {
  const map = new Map<string, { addrs: string[]; ttl: number }>();
  for (const [k, v] of Object.entries(records)) map.set(k.toLowerCase(), { addrs: v, ttl: 60 });
  const queries: string[] = [];
  const delays = new Map<string, number>();
  const sock: Socket = createSocket('udp4');
  sock.on('message', (msg, rinfo) => {
    try {
      const r = answer(msg, map, queries);
      const name = (queries[queries.length - 1] ?? '').split('/')[0] ?? '';
      const ms = delays.get(name) ?? 0;
      if (r && ms > 0) setTimeout(() => { if (open) sock.send(r, rinfo.port, rinfo.address); }, ms);
      else if (r) sock.send(r, rinfo.port, rinfo.address);
    } catch {
      /* ignore garbage */
    }
  });
  let open = true;
  await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
  const port = sock.address().port;
  return {
    address: `127.0.0.1:${port}`,
    queries,
    set(name, addrs, ttl = 60) {
      map.set(name.toLowerCase(), { addrs, ttl });
    },
    delay(name, ms) {
      delays.set(name.toLowerCase(), ms);
    },
    close: () => new Promise((r) => { open = false; sock.close(() => r()); }),
  };
}

function answer(msg: Buffer, map: Map<string, { addrs: string[]; ttl: number }>, log: string[]): Buffer | null {
  if (msg.length < 12) return null;
  const id = msg.readUInt16BE(0);
  let off = 12;
  const labels: string[] = [];
  while (off < msg.length) {
    const len = msg[off] as number;
    off++;
    if (len === 0) break;
    labels.push(msg.subarray(off, off + len).toString('latin1'));
    off += len;
  }
  const qtype = msg.readUInt16BE(off);
  const question = msg.subarray(12, off + 4);
  const name = labels.join('.').toLowerCase();
  log.push(`${name}/${qtype === 1 ? 'A' : qtype === 28 ? 'AAAA' : qtype}`);
  const rec = map.get(name);
  const addrs = (rec?.addrs ?? []).filter((a) => (qtype === 1 ? isIPv4(a) : qtype === 28 ? isIPv6(a) : false));
  const header = Buffer.alloc(12);
  header.writeUInt16BE(id, 0);
  header.writeUInt16BE(0x8400 | (rec ? 0 : 3), 2); // QR, AA, RCODE NOERROR or NXDOMAIN
  header.writeUInt16BE(1, 4);
  header.writeUInt16BE(addrs.length, 6);
  const answers = addrs.map((a) => {
    const rdata = qtype === 1 ? Buffer.from(a.split('.').map(Number)) : ipv6Bytes(a);
    const rr = Buffer.alloc(12);
    rr.writeUInt16BE(0xc00c, 0); // pointer to the question name
    rr.writeUInt16BE(qtype, 2);
    rr.writeUInt16BE(1, 4);
    rr.writeUInt32BE(rec?.ttl ?? 60, 6);
    rr.writeUInt16BE(rdata.length, 10);
    return Buffer.concat([rr, rdata]);
  });
  return Buffer.concat([header, question, ...answers]);
}

function ipv6Bytes(a: string): Buffer {
  const [head, tail] = a.split('::') as [string, string | undefined];
  const h = head ? head.split(':') : [];
  const t = tail !== undefined && tail !== '' ? tail.split(':') : [];
  const groups = tail === undefined ? h : [...h, ...Array(8 - h.length - t.length).fill('0'), ...t];
  const b = Buffer.alloc(16);
  groups.forEach((g, i) => b.writeUInt16BE(parseInt(g, 16), i * 2));
  return b;
}
