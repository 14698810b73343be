/**
 * mTLS listener benchmark (issue #4): short CONNECT tunnels per second through the mTLS
 * listener (a full TLS handshake with a device certificate each time, then CONNECT, 200,
 * close) next to the same through the plain listener, and the time from a revocation to the
 * cut of a live tunnel. The gateway runs on the main thread; the load comes from a worker
 * thread with its own event loop, so the two do not share a loop (they do share 2 cores).
 */
import { once } from 'node:events';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { connect as netConnect } from 'node:net';
import { connect as tlsConnect, createSecureContext, type SecureContext } from 'node:tls';
import { fileURLToPath } from 'node:url';

interface Load { port: number; tls: null | { ca: string; cert: string; key: string }; target: string; seconds: number; concurrency: number }

let context: SecureContext | null = null;

/** One tunnel: connect (TLS or TCP), CONNECT, wait for 200, close. Resolves true on 200. */
function oneTunnel(l: Load): Promise<boolean> {
  // One client context for the run, as a real agent keeps one: parsing PEM per connection
  // would measure the client, not the gateway. Sessions are not resumed (full handshakes).
  if (l.tls && context === null) context = createSecureContext({ ca: l.tls.ca, cert: l.tls.cert, key: l.tls.key });
  return new Promise((resolve) => {
    const s = l.tls
      ? tlsConnect({ host: '127.0.0.1', port: l.port, secureContext: context as SecureContext, servername: 'localhost' })
      : netConnect({ host: '127.0.0.1', port: l.port });
    s.once(l.tls ? 'secureConnect' : 'connect', () => s.write(`CONNECT ${l.target} HTTP/1.1\r\nHost: ${l.target}\r\n\r\n`));
    s.once('data', (c: Buffer) => {
      s.destroy();
      resolve(c.subarray(0, 12).toString() === 'HTTP/1.1 200');
    });
    s.on('error', () => resolve(false));
  });
}

async function drive(l: Load): Promise<{ ok: number; failed: number; perSecond: number }> {
  const until = performance.now() + l.seconds * 1000;
  let ok = 0;
  let failed = 0;
  const start = performance.now();
  await Promise.all(Array.from({ length: l.concurrency }, async () => {
    while (performance.now() < until) {
      if (await oneTunnel(l)) ok++;
      else failed++;
    }
  }));
  return { ok, failed, perSecond: Math.round(ok / ((performance.now() - start) / 1000)) };
}

if (!isMainThread) {
  parentPort?.postMessage(await drive(workerData as Load));
}

export async function runMtlsBench(): Promise<void> {
  const { makeTestCa } = await import('../test/helpers/device-pki.js');
  const { startGateway } = await import('../test/helpers/gateway.js');
  const { startEchoOrigin } = await import('../test/helpers/origins.js');
  const { startDnsServer } = await import('../test/helpers/dns-server.js');
  const ca = await makeTestCa();
  const server = await ca.issueServer(['localhost', '127.0.0.1']);
  const dev = await ca.issueDevice({ deviceId: 'bench-dev' });
  const echo = await startEchoOrigin();
  const dns = await startDnsServer({ 'echo.test': ['127.0.0.1'] });
  const policy = `version: 1
address_exceptions: [127.0.0.1/32]
groups:
  - name: g
    sources: [127.0.0.0/8]
    allow:
      - host: echo.test
        ports: [${echo.port}]
        tls: none
`;
  const g = await startGateway(policy, { dns: { resolvers: [dns.address] }, limits: { max_tunnels_per_client: 100_000 } });
  const { MemoryDirectory } = await import('../test/helpers/directory.js');
  const directory = new MemoryDirectory();
  directory.add(dev.serial, 'bench-dev', 'g');
  const m = await g.gw.listenMtls({ host: '127.0.0.1', port: 0, key: server.keyPem, cert: server.certPem, ca: [ca.certPem], directory });
  const target = `echo.test:${echo.port}`;
  const load = (port: number, tls: Load['tls']): Promise<{ ok: number; failed: number; perSecond: number }> => {
    const w = new Worker(fileURLToPath(import.meta.url), { workerData: { port, tls, target, seconds: 4, concurrency: 8 } satisfies Load });
    return once(w, 'message').then(([r]) => r as { ok: number; failed: number; perSecond: number });
  };
  try {
    await load(g.port, null); // warm-up (JIT, resolver cache)
    const plain = await load(g.port, null);
    const mtls = await load(m.port, { ca: ca.certPem, cert: dev.certPem, key: dev.keyPem });
    console.log(JSON.stringify({ bench: 'mtls', plain_tunnels_per_s: plain.perSecond, mtls_tunnels_per_s: mtls.perSecond, ratio: +(mtls.perSecond / plain.perSecond).toFixed(2), failed: plain.failed + mtls.failed }));

    // Revocation to cut: a live tunnel, then the directory says the device is revoked.
    const samples: number[] = [];
    for (let i = 0; i < 20; i++) {
      directory.add(dev.serial, 'bench-dev', 'g'); // active again for this sample
      const s = tlsConnect({ host: '127.0.0.1', port: m.port, ca: ca.certPem, cert: dev.certPem, key: dev.keyPem, servername: 'localhost' });
      await once(s, 'secureConnect');
      s.write(`CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n\r\n`);
      await once(s, 'data');
      s.on('error', () => {});
      const t0 = performance.now();
      const closed = once(s, 'close');
      directory.revoke('bench-dev');
      await closed;
      samples.push(performance.now() - t0);
    }
    samples.sort((a, b) => a - b);
    console.log(JSON.stringify({ bench: 'revocation_to_cut', samples: samples.length, p50_ms: +(samples[10] as number).toFixed(2), max_ms: +(samples[19] as number).toFixed(2) }));
  } finally {
    await g.close();
    await echo.close();
    await dns.close();
  }
}
