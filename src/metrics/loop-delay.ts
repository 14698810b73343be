/**
 * The event-loop delay gauges of the process metrics (`nodejs_eventloop_lag_{min,max,mean,
 * stddev,p50,p90,p99}_seconds`, the names prom-client gives them): how late a timer that samples
 * every LOOP_SAMPLE_MS fired, over the samples since the previous scrape.
 *
 * Why not prom-client's own: its histogram samples with a 10 ms timer, which woke an idle
 * gateway's proxy thread 100 times a second for this alone (measured on the project's machine:
 * 102 wakeups and 7 ms of CPU a second with no traffic, about one wakeup a second without
 * process metrics). Node's histogram behind it also records the interval between two samples,
 * not how late the second came, so its gauges read the sampling period on a healthy loop (a
 * coarser period would have read 100 ms), and resetting it at each scrape dropped the first
 * interval after, so a stall that began then went unseen. These read 0 on an idle loop and a
 * stall's length when one delays a sample.
 */
import { Gauge, type Registry } from 'prom-client';

export const LOOP_SAMPLE_MS = 100;

/** What prom-client's event-loop collector registers from its histogram (not `nodejs_eventloop_lag_seconds`). */
export const LOOP_DELAY_GAUGES = ['min', 'max', 'mean', 'stddev', 'p50', 'p90', 'p99'] as const;
type Figure = (typeof LOOP_DELAY_GAUGES)[number];

/** Samples kept between two scrapes, at most: the newest hour (280 KiB). */
const MAX_SAMPLES = 36_000;

/** The figures of a window of samples (seconds late), 0 for an empty one. */
export function loopDelayFigures(late: ArrayLike<number>): Record<Figure, number> {
  if (late.length === 0) return { min: 0, max: 0, mean: 0, stddev: 0, p50: 0, p90: 0, p99: 0 };
  const s = Float64Array.from(late).sort();
  const mean = s.reduce((a, b) => a + b, 0) / s.length;
  const pct = (p: number) => s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)] as number;
  return {
    min: s[0] as number, max: s.at(-1) as number, mean,
    stddev: Math.sqrt(s.reduce((a, b) => a + (b - mean) ** 2, 0) / s.length),
    p50: pct(50), p90: pct(90), p99: pct(99),
  };
}

/**
 * Registers the gauges in `registry` (names after `prefix`) and starts sampling for the life of
 * the process (like prom-client's default collectors); the timer does not keep it alive.
 */
export function registerLoopDelay(registry: Registry, prefix: string): void {
  // A ring: a gateway nobody scrapes keeps the newest MAX_SAMPLES, not a growing list.
  const ring = new Float64Array(MAX_SAMPLES);
  let held = 0;
  let next = 0;
  let last = performance.now();
  const timer = setInterval(() => {
    const now = performance.now();
    // Node re-arms an interval from when its callback ran: a sample on time is LOOP_SAMPLE_MS after the last.
    ring[next] = Math.max(0, now - last - LOOP_SAMPLE_MS) / 1000;
    next = (next + 1) % MAX_SAMPLES;
    held = Math.min(MAX_SAMPLES, held + 1);
    last = now;
  }, LOOP_SAMPLE_MS);
  timer.unref();
  const gauges: Gauge[] = [];
  for (const k of LOOP_DELAY_GAUGES) {
    gauges.push(new Gauge({
      name: `${prefix}nodejs_eventloop_lag_${k}_seconds`,
      help: `Event-loop delay since the last scrape (${k}): how late a timer sampling every ${LOOP_SAMPLE_MS} ms fired.`,
      registers: [registry],
      // The first gauge's collect sets them all and starts the next window: a scrape collects
      // the gauges in the order they were registered.
      ...(k === 'min' ? {
        collect: () => {
          const f = loopDelayFigures(ring.subarray(0, held));
          held = 0;
          next = 0;
          LOOP_DELAY_GAUGES.forEach((name, i) => (gauges[i] as Gauge).set(f[name]));
        },
      } : {}),
    }));
  }
}
