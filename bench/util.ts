// Shared measuring helpers for the benchmarks.
import { performance } from 'node:perf_hooks';

export interface Measured {
  ops: number;
  seconds: number;
  opsPerSec: number;
  latencyMs: { p50: number; p90: number; p99: number; max: number };
}

/**
 * Runs `op` from `clients` concurrent loops for `durationMs` (after `warmupMs` of
 * warm-up that is not counted) and reports throughput and latency percentiles.
 * `op` receives the client index and that client's operation counter.
 */
export async function measure(
  clients: number,
  durationMs: number,
  op: (client: number, i: number) => Promise<unknown>,
  warmupMs = Math.min(500, durationMs / 4),
): Promise<Measured> {
  // Deadlines are read from the clock in each loop rather than set by timers: an
  // op that resolves in a microtask would never let a timer fire.
  const latencies: number[] = [];
  const countFrom = performance.now() + warmupMs;
  const end = countFrom + durationMs;
  const loops = Array.from({ length: clients }, async (_, client) => {
    let i = 0;
    for (;;) {
      const t0 = performance.now();
      if (t0 >= end) return;
      await op(client, i++);
      if (t0 >= countFrom) latencies.push(performance.now() - t0);
    }
  });
  await Promise.all(loops);
  return summarize(latencies, (performance.now() - countFrom) / 1000);
}

export function summarize(latencies: number[], seconds: number): Measured {
  latencies.sort((a, b) => a - b);
  const pct = (p: number) => latencies[Math.min(latencies.length - 1, Math.floor((p / 100) * latencies.length))] ?? 0;
  return {
    ops: latencies.length,
    seconds,
    opsPerSec: latencies.length / seconds,
    latencyMs: { p50: pct(50), p90: pct(90), p99: pct(99), max: latencies[latencies.length - 1] ?? 0 },
  };
}

/** Measures event-loop lag: the worst delay of a 10 ms timer while `work` runs. */
export async function withTimerLag<T>(work: () => Promise<T>): Promise<{ result: T; maxLagMs: number; p99LagMs: number }> {
  const lags: number[] = [];
  let expected = performance.now() + 10;
  const timer = setInterval(() => {
    const now = performance.now();
    lags.push(Math.max(0, now - expected));
    expected = now + 10;
  }, 10);
  try {
    const result = await work();
    lags.sort((a, b) => a - b);
    return { result, maxLagMs: lags[lags.length - 1] ?? 0, p99LagMs: lags[Math.floor(lags.length * 0.99)] ?? 0 };
  } finally {
    clearInterval(timer);
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** One result line: `name  value unit  (ratio x baseline)`. */
export function report(name: string, value: number, unit: string, baseline?: number): void {
  const ratio = baseline === undefined ? '' : `  ratio ${(value / baseline).toFixed(2)}x baseline`;
  console.log(`${name.padEnd(58)} ${value.toFixed(value >= 100 ? 0 : 2).padStart(10)} ${unit}${ratio}`);
}

export function fmtLatency(m: Measured): string {
  const f = (x: number) => x.toFixed(3);
  return `p50 ${f(m.latencyMs.p50)} ms, p90 ${f(m.latencyMs.p90)} ms, p99 ${f(m.latencyMs.p99)} ms, max ${f(m.latencyMs.max)} ms`;
}
