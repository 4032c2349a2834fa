import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { SCAN_ALL, type Consensus, type VersionedData } from '../consensus.js';
import { ErrorCode, ExternalError } from '../errors.js';
import { SeqNo } from '../seqno.js';
import { checkLinearizable, type CheckResult, type HistoryOp, type HistoryVersion, type Outcome, type Violation } from './linearizability.js';

export interface StressOptions {
  /** Operations in all, across clients (default 2000). */
  ops?: number;
  /** Distinct keys (default 8). Fewer keys, more contention. */
  keys?: number;
  /** Concurrent clients (default 16). */
  clients?: number;
  /** Handles opened with `open()` and shared round-robin by the clients (default min(clients, 4)). */
  handles?: number;
  /** Bytes of padding added to every written value (default 0). */
  valueBytes?: number;
  /** Prefix of the keys used (default a random `stress-<uuid>-`), so runs never collide. */
  keyPrefix?: string;
  /** Called after each operation. */
  onProgress?: (done: number, total: number) => void;
  /** Step budget per key for the checker. */
  maxStepsPerKey?: number;
}

export interface StressReport {
  /**
   * True iff the history was proven linearizable, no client hit a non-storage error,
   * every final read succeeded and at least one write committed.
   */
  ok: boolean;
  verdict: CheckResult['verdict'];
  /** Operations issued by clients, plus the final reads. */
  ops: number;
  violations: Violation[];
  /** Keys the checker could not decide within its budget. */
  undecidedKeys: string[];
  committed: number;
  mismatches: number;
  /** Operations that failed Determinate (they did not happen). */
  failed: number;
  /** Operations that failed Indeterminate (they might have happened). */
  unknown: number;
  /** Errors that were not ExternalErrors: bugs in the backend. */
  errors: string[];
  /**
   * Why the run proves less than it should, though the history may be linearizable:
   * a final read failed (a lost write on that key would go unseen), or nothing
   * committed at all. Any entry makes `ok` false.
   */
  unproven: string[];
  durationMs: number;
  opsPerSec: number;
  latencyMs: { p50: number; p90: number; p99: number; max: number };
  history: HistoryOp[];
}

/**
 * Drives concurrent clients doing head / compareAndSet / scan / truncate over
 * several handles on one location (each `open()` must return a new handle on the
 * same location), records the history with unique data per write, reads every key
 * at the end, and checks the history for linearizability.
 */
export async function stressConsensus(open: () => Promise<Consensus>, opts: StressOptions = {}): Promise<StressReport> {
  const total = opts.ops ?? 2000;
  const nKeys = opts.keys ?? 8;
  const nClients = opts.clients ?? 16;
  // Zero keys or clients would record nothing and still report ok.
  for (const [name, value, least] of [['ops', total, 0], ['keys', nKeys, 1], ['clients', nClients, 1], ['handles', opts.handles ?? 1, 1]] as const) {
    if (!Number.isSafeInteger(value) || value < least) {
      throw new RangeError(`stressConsensus: ${name} must be an integer >= ${least}, got ${String(value)}`);
    }
  }
  const nHandles = Math.max(1, Math.min(opts.handles ?? Math.min(nClients, 4), nClients));
  const prefix = opts.keyPrefix ?? `stress-${randomUUID()}-`;
  const keys = Array.from({ length: nKeys }, (_, i) => `${prefix}${i}`);
  const padding = 'p'.repeat(opts.valueBytes ?? 0);
  const handles: Consensus[] = [];
  const history: HistoryOp[] = [];
  const errors: string[] = [];
  const unproven: string[] = [];
  let issued = 0;
  let finished = 0;
  let committed = 0;
  let mismatches = 0;
  let failed = 0;
  let unknown = 0;

  const outcomeOf = <T>(err: unknown): Outcome<T> => {
    if (err instanceof ExternalError) {
      if (err.determinate) failed++;
      else unknown++;
      return err.determinate ? { type: 'failed' } : { type: 'unknown' };
    }
    errors.push(err instanceof Error ? `${err.name}: ${err.message}` : String(err));
    return { type: 'unknown' };
  };

  /** One operation; `kind` in [0, 100) picks it: 25% head, 45% CaS, 15% scan, 15% truncate. */
  const run = async (client: number, c: Consensus, key: string, kind: number, known: Map<string, bigint | undefined>, fullScan = false) => {
    const start = performance.now();
    let op: HistoryOp;
    if (kind < 25) {
      let result: Outcome<HistoryVersion | undefined>;
      try {
        const h = await c.head(key);
        result = { type: 'ok', value: h && version(h) };
        known.set(key, h?.seqno.value);
      } catch (err) {
        result = outcomeOf(err);
      }
      op = { op: 'head', key, client, start, end: performance.now(), result };
    } else if (kind < 70) {
      const expected = known.get(key);
      const seqno = (expected ?? -1n) + 1n + BigInt(Math.floor(Math.random() * 3));
      const data = `c${client}-${randomUUID()}${padding}`;
      let result: Outcome<'Committed' | 'ExpectationMismatch'>;
      try {
        const r = await c.compareAndSet(key, expected === undefined ? undefined : new SeqNo(expected), { seqno: new SeqNo(seqno), data: Buffer.from(data, 'latin1') });
        result = { type: 'ok', value: r };
        if (r === 'Committed') {
          committed++;
          known.set(key, seqno);
        } else {
          mismatches++;
        }
      } catch (err) {
        result = outcomeOf(err);
      }
      op = { op: 'compareAndSet', key, client, start, end: performance.now(), expected, seqno, data, result };
    } else if (kind < 85) {
      const near = (known.get(key) ?? 0n) - BigInt(Math.floor(Math.random() * 4));
      const from = fullScan || near < 0n ? 0n : near;
      const limit = fullScan || Math.random() < 0.5 ? SCAN_ALL : 1 + Math.floor(Math.random() * 3);
      let result: Outcome<HistoryVersion[]>;
      try {
        result = { type: 'ok', value: (await c.scan(key, new SeqNo(from), limit)).map(version) };
      } catch (err) {
        result = outcomeOf(err);
      }
      op = { op: 'scan', key, client, start, end: performance.now(), from, limit, result };
    } else {
      const head = known.get(key) ?? 0n;
      // From two below the head to one past it, so some truncates are refused.
      const below = head + 1n - BigInt(Math.floor(Math.random() * 4));
      const seqno = below < 0n ? 0n : below;
      let result: Outcome<number | 'FailedPrecondition'>;
      try {
        result = { type: 'ok', value: await c.truncate(key, new SeqNo(seqno)) };
      } catch (err) {
        if (err instanceof ExternalError && err.determinate && err.code === ErrorCode.FailedPrecondition) {
          result = { type: 'ok', value: 'FailedPrecondition' };
        } else {
          result = outcomeOf(err);
        }
      }
      op = { op: 'truncate', key, client, start, end: performance.now(), seqno, result };
    }
    history.push(op);
    opts.onProgress?.(++finished, total + keys.length * 2);
    return op;
  };

  const began = performance.now();
  try {
    for (let i = 0; i < nHandles; i++) handles.push(await open());
    await Promise.all(
      Array.from({ length: nClients }, async (_, client) => {
        const c = handles[client % nHandles]!;
        const known = new Map<string, bigint | undefined>();
        while (issued < total) {
          issued++;
          const key = keys[Math.floor(Math.random() * keys.length)]!;
          await run(client, c, key, Math.floor(Math.random() * 100), known);
        }
      }),
    );
    // Final reads: an acknowledged write that was lost shows up here.
    const reader = handles[0]!;
    for (const key of keys) {
      for (const op of [await run(-1, reader, key, 0, new Map()), await run(-1, reader, key, 70, new Map(), true)]) {
        if (op.result.type !== 'ok') unproven.push(`the final ${op.op} of ${key} failed, so lost writes on it would go unseen`);
      }
    }
    if (total > 0 && committed === 0) unproven.push('no compareAndSet committed, so the run proved nothing');
  } finally {
    await Promise.all(handles.map((h) => h.close()));
  }
  const durationMs = performance.now() - began;
  return stressReport(history, { committed, mismatches, failed, unknown, errors, unproven }, durationMs, { maxStepsPerKey: opts.maxStepsPerKey });
}

/** What a run counted besides its history (see {@link StressReport}). */
export type StressCounts = Pick<StressReport, 'committed' | 'mismatches' | 'failed' | 'unknown' | 'errors' | 'unproven'>;

/**
 * The report of a run: `history` checked for linearizability, its latencies (each
 * operation's end minus start) as percentiles, over `durationMs`. One run's or the
 * merged history of several processes' (`check --processes`).
 */
export function stressReport(history: HistoryOp[], counts: StressCounts, durationMs: number, checkOpts: { maxStepsPerKey?: number } = {}): StressReport {
  const check = checkLinearizable(history, checkOpts);
  const latencies = history.map((op) => op.end - op.start).sort((a, b) => a - b);
  const pct = (p: number) => latencies[Math.min(latencies.length - 1, Math.floor((p / 100) * latencies.length))] ?? 0;
  return {
    ok: check.ok && counts.errors.length === 0 && counts.unproven.length === 0,
    verdict: check.verdict,
    ops: history.length,
    violations: check.violations,
    undecidedKeys: check.undecidedKeys,
    ...counts,
    durationMs,
    opsPerSec: (history.length / durationMs) * 1000,
    latencyMs: { p50: pct(50), p90: pct(90), p99: pct(99), max: latencies[latencies.length - 1] ?? 0 },
    history,
  };
}

function version(v: VersionedData): HistoryVersion {
  return { seqno: v.seqno.value, data: Buffer.from(v.data.buffer, v.data.byteOffset, v.data.byteLength).toString('latin1') };
}
