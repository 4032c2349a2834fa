/**
 * Fault injection: a Consensus or Blob whose calls fail the way a network and a
 * busy server make them fail, reproducibly from a seed.
 *
 * Of the calls that fail (a `failRate` share):
 *
 * - writes (compareAndSet, truncate, set, delete, restore): an `appliedRate`
 *   share are applied and then fail Indeterminate (the answer was lost); the rest
 *   fail, half Determinate before anything is sent, half Indeterminate without
 *   being applied (the request was lost);
 * - reads (head, scan, get, and a listing's first step and every 100th): half Determinate, half
 *   Indeterminate, never reaching the store.
 *
 * Every failure has the code Unavailable. Each call draws its fault (and, with
 * `maxDelayMs`, its delay) from a generator seeded with `seed`, in call order, so
 * the same seed and the same calls give the same faults. {@link UnreliableStats}
 * counts what was injected.
 */
import type { Blob } from '../blob.js';
import type { Consensus } from '../consensus.js';
import { Determinate, ErrorCode, Indeterminate, invalidArgument } from '../errors.js';
import { sleep } from '../kit/backoff.js';
import { WrappedBlob, WrappedConsensus, type BlobOp, type ConsensusOp } from '../wrap.js';
import { seededRandom } from './random.js';

/** Options of {@link UnreliableConsensus} and {@link UnreliableBlob}. */
export interface UnreliableOptions<Op extends string = string> {
  /** Seed of the fault generator (default a random one, readable as `seed`). */
  seed?: number;
  /** Share of calls that fail, in [0, 1] (default 0.05). */
  failRate?: number;
  /** Share of the failed writes that were applied before failing, in [0, 1] (default 0.5). */
  appliedRate?: number;
  /** Each call first waits a random time below this (default 0: no delay). */
  maxDelayMs?: number;
  /** Only these operations fail (default all; a listing's pages count as its name). */
  operations?: readonly Op[];
}

/** What an unreliable store injected so far. */
export interface UnreliableStats {
  /** Calls (and listing pages) that went through. */
  calls: number;
  /** Failed Determinate, before being sent. */
  determinate: number;
  /** Failed Indeterminate without being applied. */
  lost: number;
  /** Applied, then failed Indeterminate. */
  applied: number;
}

/** A listing draws a fault once per this many steps. */
const LISTING_PAGE = 100;

const WRITES: ReadonlySet<string> = new Set(['compareAndSet', 'truncate', 'set', 'delete', 'restore']);


/** The fault injector shared by both classes: `around` for calls, `listing` for listings. */
class Faults<Op extends string> {
  readonly seed: number;
  readonly stats: UnreliableStats = { calls: 0, determinate: 0, lost: 0, applied: 0 };
  readonly #random: () => number;
  readonly #failRate: number;
  readonly #appliedRate: number;
  readonly #maxDelayMs: number;
  readonly #only: ReadonlySet<string> | undefined;
  readonly #name: string;

  constructor(name: string, options: UnreliableOptions<Op>) {
    const rate = (field: 'failRate' | 'appliedRate', fallback: number): number => {
      const v = options[field] ?? fallback;
      if (typeof v !== 'number' || !(v >= 0 && v <= 1)) throw invalidArgument(`${name}: ${field} must be a number in [0, 1], got ${String(v)}`);
      return v;
    };
    this.#name = name;
    this.#failRate = rate('failRate', 0.05);
    this.#appliedRate = rate('appliedRate', 0.5);
    this.#maxDelayMs = options.maxDelayMs ?? 0;
    if (typeof this.#maxDelayMs !== 'number' || !(this.#maxDelayMs >= 0)) throw invalidArgument(`${name}: maxDelayMs must be a non-negative number`);
    this.seed = options.seed ?? Math.floor(Math.random() * 2 ** 32);
    if (!Number.isSafeInteger(this.seed)) throw invalidArgument(`${name}: seed must be an integer, got ${String(options.seed)}`);
    this.#random = seededRandom(this.seed);
    this.#only = options.operations === undefined ? undefined : new Set(options.operations);
  }

  readonly around = async <T>(op: string, _args: readonly unknown[], run: () => Promise<T>): Promise<T> => {
    this.stats.calls++;
    // Every draw is made now, in call order, whatever the delay.
    const delay = this.#maxDelayMs > 0 ? this.#random() * this.#maxDelayMs : 0;
    const fails = (this.#only === undefined || this.#only.has(op)) && this.#random() < this.#failRate;
    const applied = fails && WRITES.has(op) && this.#random() < this.#appliedRate;
    const determinate = fails && !applied && this.#random() < 0.5;
    if (delay > 0) await sleep(delay);
    if (!fails) return run();
    if (applied) {
      this.stats.applied++;
      await run().catch(() => undefined);
      throw new Indeterminate(ErrorCode.Unavailable, `${this.#name}: ${op}: injected: the connection was lost after the request was applied`);
    }
    if (determinate) {
      this.stats.determinate++;
      throw new Determinate(ErrorCode.Unavailable, `${this.#name}: ${op}: injected: the connection was refused`);
    }
    this.stats.lost++;
    throw new Indeterminate(ErrorCode.Unavailable, `${this.#name}: ${op}: injected: the connection was lost before the request arrived`);
  };

  /**
   * `source` with a fault drawn before its first step and every 100th after, as
   * a store that answers listings in pages fails (a `break` is never failed).
   */
  async *listing<T>(op: string, source: AsyncIterable<T>): AsyncGenerator<T> {
    const it = source[Symbol.asyncIterator]();
    try {
      for (let i = 0; ; i++) {
        const step = i % LISTING_PAGE === 0 ? await this.around(op, [], () => it.next()) : await it.next();
        if (step.done === true) return;
        yield step.value;
      }
    } finally {
      await it.return?.();
    }
  }
}

/** A Consensus whose calls fail as the module comment says. */
export class UnreliableConsensus extends WrappedConsensus {
  /** The seed in use (the one given, or the random one chosen). */
  readonly seed: number;
  /** What was injected so far. */
  readonly stats: UnreliableStats;

  constructor(inner: Consensus, options: UnreliableOptions<ConsensusOp | 'listKeys'> = {}) {
    const faults = new Faults('UnreliableConsensus', options);
    super(inner, { around: faults.around, listKeys: (forward, opts) => faults.listing('listKeys', forward(opts)) });
    this.seed = faults.seed;
    this.stats = faults.stats;
  }
}

/** A Blob whose calls fail as the module comment says. */
export class UnreliableBlob extends WrappedBlob {
  /** The seed in use (the one given, or the random one chosen). */
  readonly seed: number;
  /** What was injected so far. */
  readonly stats: UnreliableStats;

  constructor(inner: Blob, options: UnreliableOptions<BlobOp | 'list'> = {}) {
    const faults = new Faults('UnreliableBlob', options);
    super(inner, { around: faults.around, list: (forward, prefix, opts) => faults.listing('list', forward(prefix, opts)) });
    this.seed = faults.seed;
    this.stats = faults.stats;
  }
}
