import type { Consensus } from '../consensus.js';
import { ErrorCode, Indeterminate } from '../errors.js';
import { WrappedConsensus } from '../wrap.js';

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
export class FlakyConsensus extends WrappedConsensus {
  constructor(inner: Consensus, options: FlakyOptions = {}) {
    const rate = options.rate ?? 0.05;
    const random = options.random ?? Math.random;
    const flaky = async <T>(write: () => Promise<T>): Promise<T> => {
      if (random() >= rate) return write();
      if (random() < 0.5) {
        await write().catch(() => undefined);
        throw new Indeterminate(ErrorCode.Unknown, 'FlakyConsensus: connection lost after the write was applied');
      }
      throw new Indeterminate(ErrorCode.Unknown, 'FlakyConsensus: connection lost before the write was sent');
    };
    super(inner, {
      around: (op, _args, run) => (op === 'compareAndSet' || op === 'truncate' ? flaky(run) : run()),
    });
  }
}
