/**
 * Latency recording for `check` and `bench`: a recorder of per-operation latencies,
 * and decorators that time every call of a Consensus or Blob (same interface, so the
 * conformance suites run through them unchanged).
 */
import { performance } from 'node:perf_hooks';
import type { Blob, BlobMetadata } from '../blob.js';
import type { CaSResult, Consensus, OpOptions, VersionedData } from '../consensus.js';
import type { SegmentedBytes } from '../segmented-bytes.js';
import type { SeqNo } from '../seqno.js';

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
  return {
    async *listKeys(opts?: OpOptions): AsyncIterable<string> {
      const start = performance.now();
      try {
        yield* inner.listKeys(opts);
      } finally {
        rec.record(performance.now() - start);
      }
    },
    head: (key: string, opts?: OpOptions): Promise<VersionedData | undefined> => rec.time(() => inner.head(key, opts)),
    compareAndSet: (key: string, expected: SeqNo | undefined, next: VersionedData, opts?: OpOptions): Promise<CaSResult> =>
      rec.time(() => inner.compareAndSet(key, expected, next, opts)),
    scan: (key: string, from: SeqNo, limit: number, opts?: OpOptions): Promise<VersionedData[]> => rec.time(() => inner.scan(key, from, limit, opts)),
    truncate: (key: string, seqno: SeqNo, opts?: OpOptions): Promise<number> => rec.time(() => inner.truncate(key, seqno, opts)),
    close: () => inner.close(),
    [Symbol.asyncDispose]: () => inner.close(),
  };
}

/** A Blob that records the latency of every call of `inner` (a listing counts once, start to end). */
export function measuredBlob(inner: Blob, rec: Recorder): Blob {
  return {
    get: (key: string, opts?: OpOptions): Promise<SegmentedBytes | undefined> => rec.time(() => inner.get(key, opts)),
    async *list(prefix?: string, opts?: OpOptions): AsyncIterable<BlobMetadata> {
      const start = performance.now();
      try {
        yield* inner.list(prefix, opts);
      } finally {
        rec.record(performance.now() - start);
      }
    },
    set: (key: string, value: Uint8Array, opts?: OpOptions): Promise<void> => rec.time(() => inner.set(key, value, opts)),
    delete: (key: string, opts?: OpOptions): Promise<number | undefined> => rec.time(() => inner.delete(key, opts)),
    restore: (key: string, opts?: OpOptions): Promise<void> => rec.time(() => inner.restore(key, opts)),
    close: () => inner.close(),
    [Symbol.asyncDispose]: () => inner.close(),
  };
}
