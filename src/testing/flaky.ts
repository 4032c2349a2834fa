import type { CaSResult, Consensus, OpOptions, VersionedData } from '../consensus.js';
import { ErrorCode, Indeterminate } from '../errors.js';
import type { SeqNo } from '../seqno.js';

/** Options of {@link FlakyConsensus}. */
export interface FlakyOptions {
  /** Fraction of writes (compareAndSet, truncate) that fail Indeterminate (default 0.05). */
  rate?: number;
  /** Random source in [0, 1) (default Math.random). */
  random?: () => number;
}

/**
 * A decorator that makes a fraction of writes report an unknown outcome, the way a
 * lost connection does: half of the failed writes were applied before the error,
 * half never reached the store. Histories recorded through it must still check as
 * linearizable; it exists to test checkers and callers' retry logic.
 */
export class FlakyConsensus implements Consensus {
  readonly #inner: Consensus;
  readonly #rate: number;
  readonly #random: () => number;

  constructor(inner: Consensus, options: FlakyOptions = {}) {
    this.#inner = inner;
    this.#rate = options.rate ?? 0.05;
    this.#random = options.random ?? Math.random;
  }

  listKeys(opts?: OpOptions): AsyncIterable<string> {
    return this.#inner.listKeys(opts);
  }

  head(key: string, opts?: OpOptions): Promise<VersionedData | undefined> {
    return this.#inner.head(key, opts);
  }

  compareAndSet(key: string, expected: SeqNo | undefined, next: VersionedData, opts?: OpOptions): Promise<CaSResult> {
    return this.#flaky(() => this.#inner.compareAndSet(key, expected, next, opts));
  }

  scan(key: string, from: SeqNo, limit: number, opts?: OpOptions): Promise<VersionedData[]> {
    return this.#inner.scan(key, from, limit, opts);
  }

  truncate(key: string, seqno: SeqNo, opts?: OpOptions): Promise<number> {
    return this.#flaky(() => this.#inner.truncate(key, seqno, opts));
  }

  close(): Promise<void> {
    return this.#inner.close();
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  async #flaky<T>(write: () => Promise<T>): Promise<T> {
    if (this.#random() >= this.#rate) return write();
    if (this.#random() < 0.5) {
      await write().catch(() => undefined);
      throw new Indeterminate(ErrorCode.Unknown, 'FlakyConsensus: connection lost after the write was applied');
    }
    throw new Indeterminate(ErrorCode.Unknown, 'FlakyConsensus: connection lost before the write was sent');
  }
}
