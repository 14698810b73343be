/**
 * Policy engine benchmark: load time (YAML parse, validate, compile) and decide() latency for
 * generated policies of 1k and 100k host rules (a mix of exact, `*.` and `**.` patterns).
 *
 * Prints one JSON line per figure (`{"bench":"policy",...}`) and then a short table.
 * Run directly (`node dist/bench/policy.js`) or through bench/run.ts via runPolicyBench().
 */
import { pathToFileURL } from 'node:url';
import { parseDocument } from 'yaml';
import type { Destination } from '../src/core/destination.js';
import { analyze } from '../src/policy/analyze.js';
import { compileModel, sha256 } from '../src/policy/compile.js';
import { loadPolicy, loadPolicyOffThread } from '../src/policy/index.js';
import { PolicyFileSchema } from '../src/policy/schema.js';
import type { CompiledPolicy, DecideInput } from '../src/policy/types.js';

interface Figure { readonly name: string; readonly rules: number; readonly value: number; readonly unit: string }

/** Deterministic PRNG (mulberry32) so runs are comparable. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface Generated { readonly text: string; readonly hits: Destination[]; readonly misses: Destination[] }

/** 60% exact, 25% `*.`, 15% `**.` rules spread over 5000 registrable domains. */
export function generatePolicy(n: number, seed = 1): Generated {
  const rand = rng(seed);
  const lines = ['version: 1', 'global:', '  deny: ["**.evil.example.net", "blocked.example.org"]', 'groups:',
    '  - name: bench', '    sources: [10.0.0.0/8]', '    allow:'];
  const hits: Destination[] = [];
  const misses: Destination[] = [];
  const name = (host: string, port = 443): Destination => ({ host, port, kind: 'name' });
  for (let i = 0; i < n; i++) {
    const dom = `vendor${i % 5000}.com`;
    const r = rand();
    const ports = rand() < 0.1 ? '\n        ports: [443, 8443]' : '';
    if (r < 0.6) {
      lines.push(`      - host: api-${i}.${dom}${ports}`);
      if (i % 7 === 0) { hits.push(name(`api-${i}.${dom}`)); misses.push(name(`x.api-${i}.${dom}`), name(`api-${i}.${dom}`, 22)); }
    } else if (r < 0.85) {
      lines.push(`      - host: "*.r${i}.${dom}"${ports}`);
      if (i % 7 === 0) { hits.push(name(`node${i}.r${i}.${dom}`)); misses.push(name(`a.b.r${i}.${dom}`), name(`r${i}.${dom}`)); }
    } else {
      lines.push(`      - host: "**.z${i}.${dom}"${ports}`);
      if (i % 7 === 0) { hits.push(name(`a.b.c.z${i}.${dom}`)); misses.push(name(`z${i}.${dom}`)); }
    }
  }
  for (let i = 0; i < 2000; i++) misses.push(name(`unrelated${i}.example${i % 100}.org`), name(`api-${i}.${`vendor${i % 5000}.com`}.evil.test`));
  return { text: `${lines.join('\n')}\n`, hits, misses };
}

function ms(t0: bigint): number {
  return Number(process.hrtime.bigint() - t0) / 1e6;
}

function percentile(sorted: Float64Array, p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] as number;
}

function benchLoad(n: number, g: Generated, out: Figure[]): CompiledPolicy {
  let t = process.hrtime.bigint();
  const r = loadPolicy(g.text);
  out.push({ name: 'load_total_ms', rules: n, value: ms(t), unit: 'ms' });
  if (!r.ok) throw new Error(`generated policy invalid: ${JSON.stringify(r.problems.slice(0, 3))}`);

  // The same work in phases, to show where the time goes.
  t = process.hrtime.bigint();
  const raw: unknown = parseDocument(g.text, { uniqueKeys: true, strict: true }).toJS();
  out.push({ name: 'yaml_parse_ms', rules: n, value: ms(t), unit: 'ms' });
  t = process.hrtime.bigint();
  const shape = PolicyFileSchema.safeParse(raw);
  const a = analyze(raw);
  out.push({ name: 'validate_ms', rules: n, value: ms(t), unit: 'ms' });
  if (!shape.success || a.problems.length > 0) throw new Error('generated policy invalid');
  t = process.hrtime.bigint();
  compileModel(a.model, sha256(g.text));
  out.push({ name: 'compile_ms', rules: n, value: ms(t), unit: 'ms' });
  return r.policy;
}

/**
 * The longest stall of the event loop while a policy reloads: what every live tunnel of
 * the gateway feels. Parsing on a worker thread (loadPolicyOffThread) leaves only the
 * validate+compile step on the gateway's thread.
 */
async function benchReloadStall(n: number, g: Generated, out: Figure[]): Promise<void> {
  let last = performance.now();
  let max = 0;
  const tick = setInterval(() => {
    const now = performance.now();
    max = Math.max(max, now - last);
    last = now;
  }, 5);
  await new Promise((r) => setTimeout(r, 20)); // let the ticker run before the load starts
  const r = await loadPolicyOffThread(g.text);
  max = Math.max(max, performance.now() - last);
  clearInterval(tick);
  if (!r.ok) throw new Error('generated policy invalid');
  out.push({ name: 'reload_max_stall_ms', rules: n, value: max, unit: 'ms' });
}

function benchDecide(n: number, policy: CompiledPolicy, g: Generated, out: Figure[], count = 200_000): void {
  const group = policy.groupForSource('10.1.2.3');
  if (group === null) throw new Error('no group');
  const rand = rng(7);
  const inputs: DecideInput[] = [];
  for (let i = 0; i < 10_000; i++) {
    const pool = rand() < 0.5 ? g.hits : g.misses;
    inputs.push({ group, dest: pool[Math.floor(rand() * pool.length)] as Destination, protocol: 'connect' });
  }
  let allowed = 0;
  for (let i = 0; i < 50_000; i++) policy.decide(inputs[i % inputs.length] as DecideInput); // warm up
  const lat = new Float64Array(count);
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < count; i++) {
    const input = inputs[i % inputs.length] as DecideInput;
    const s = process.hrtime.bigint();
    const d = policy.decide(input);
    lat[i] = Number(process.hrtime.bigint() - s) / 1000;
    if (d.verdict === 'allow') allowed++;
  }
  const total = ms(t0);
  // What the timer itself costs, so the percentiles can be read honestly.
  const empty = new Float64Array(count);
  for (let i = 0; i < count; i++) { const s = process.hrtime.bigint(); empty[i] = Number(process.hrtime.bigint() - s) / 1000; }
  lat.sort();
  empty.sort();
  out.push({ name: 'decide_p50_us', rules: n, value: percentile(lat, 0.5), unit: 'us' });
  out.push({ name: 'decide_p99_us', rules: n, value: percentile(lat, 0.99), unit: 'us' });
  out.push({ name: 'decide_mean_us', rules: n, value: (total * 1000) / count, unit: 'us' });
  out.push({ name: 'timer_overhead_p50_us', rules: n, value: percentile(empty, 0.5), unit: 'us' });
  out.push({ name: 'decide_allowed_fraction', rules: n, value: allowed / count, unit: 'ratio' });
}

export async function runPolicyBench(): Promise<void> {
  const figures: Figure[] = [];
  for (const n of [1_000, 100_000]) {
    const g = generatePolicy(n);
    // With --expose-gc the heap figure is what the compiled policy retains; without it, it
    // also counts garbage from parsing.
    const gc = (globalThis as { gc?: () => void }).gc;
    gc?.();
    const before = process.memoryUsage().heapUsed;
    const policy = benchLoad(n, g, figures);
    figures.push({ name: 'policy_bytes', rules: n, value: g.text.length, unit: 'bytes' });
    benchDecide(n, policy, g, figures);
    await benchReloadStall(n, g, figures);
    gc?.();
    figures.push({ name: gc ? 'heap_retained_mb' : 'heap_delta_mb', rules: n, value: (process.memoryUsage().heapUsed - before) / 1048576, unit: 'MiB' });
  }
  for (const f of figures) process.stdout.write(`${JSON.stringify({ bench: 'policy', figure: f.name, rules: f.rules, value: Number(f.value.toFixed(3)), unit: f.unit })}\n`);
  const names = [...new Set(figures.map((f) => f.name))];
  const sizes = [...new Set(figures.map((f) => f.rules))];
  const pad = (s: string, w: number): string => s.padStart(w);
  process.stdout.write(`\n${'policy bench'.padEnd(26)}${sizes.map((s) => pad(`${s} rules`, 16)).join('')}\n`);
  for (const name of names) {
    const row = sizes.map((s) => { const f = figures.find((x) => x.name === name && x.rules === s); return pad(f ? `${f.value.toFixed(f.unit === 'bytes' ? 0 : 3)} ${f.unit}` : '-', 16); });
    process.stdout.write(`${name.padEnd(26)}${row.join('')}\n`);
  }
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  runPolicyBench().catch((e: unknown) => { console.error(e); process.exitCode = 1; });
}
