/**
 * Latency recording for `check` and `bench`: a recorder of per-operation latencies,
 * and decorators that time every call of a Consensus or Blob (same interface, so the
 * conformance suites run through them unchanged).
 */
import { performance } from 'node:perf_hooks';
import type { Blob } from '../blob.js';
import type { Consensus } from '../consensus.js';
import { wrapBlob, wrapConsensus } from '../wrap.js';

/** Throughput and latency of a set of operations. */
export interface LatencySummary {
  ops: number;
  opsPerSec: number;
  latencyMs: { p50: number; p90: number; p99: number; max: number };
}

/** Collects operation latencies. */
export class Recorder {
  readonly #latencies: number[] = [];
  /** Called after every recorded operation. */
  onRecord: ((count: number) => void) | undefined;

  record(ms: number): void {
    this.#latencies.push(ms);
    this.onRecord?.(this.#latencies.length);
  }

  get count(): number {
    return this.#latencies.length;
  }

  /** The summary over `seconds` of wall time. */
  summary(seconds: number): LatencySummary {
    return summarize(this.#latencies, seconds);
  }

  /** Times `work` and records it, whether it succeeds or fails. */
  async time<T>(work: () => Promise<T>): Promise<T> {
    const start = performance.now();
    try {
      return await work();
    } finally {
      this.record(performance.now() - start);
    }
  }
}

/** Percentiles of `latencies` (sorted in place) over `seconds`. */
export function summarize(latencies: number[], seconds: number): LatencySummary {
  latencies.sort((a, b) => a - b);
  const pct = (p: number) => latencies[Math.min(latencies.length - 1, Math.floor((p / 100) * latencies.length))] ?? 0;
  return {
    ops: latencies.length,
    opsPerSec: seconds > 0 ? latencies.length / seconds : 0,
    latencyMs: { p50: pct(50), p90: pct(90), p99: pct(99), max: latencies[latencies.length - 1] ?? 0 },
  };
}

/** A Consensus that records the latency of every call of `inner` (a listing counts once, start to end). */
export function measuredConsensus(inner: Consensus, rec: Recorder): Consensus {
  return wrapConsensus(inner, {
    around: (_op, _args, run) => rec.time(run),
    listKeys: (forward, opts) => timedListing(forward(opts), rec),
  });
}

/** A Blob that records the latency of every call of `inner` (a listing counts once, start to end). */
export function measuredBlob(inner: Blob, rec: Recorder): Blob {
  return wrapBlob(inner, {
    around: (_op, _args, run) => rec.time(run),
    list: (forward, prefix, opts) => timedListing(forward(prefix, opts), rec),
  });
}

/** `listing`, recorded as one operation from its first step to its end (or the break that ends it). */
async function* timedListing<T>(listing: AsyncIterable<T>, rec: Recorder): AsyncIterable<T> {
  const start = performance.now();
  try {
    yield* listing;
  } finally {
    rec.record(performance.now() - start);
  }
}
