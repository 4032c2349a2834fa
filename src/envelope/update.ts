/**
 * `update`: the read-modify-write loop over compareAndSet, written once.
 */
import { CaSResult, type Consensus, type VersionedData } from '../consensus.js';
import { Determinate, ErrorCode } from '../errors.js';
import { backoffDelay, sleep, type BackoffPolicy } from '../kit/backoff.js';
import { SeqNo } from '../seqno.js';
import { isRetrying, withRetry, type RetryPolicy } from './retry.js';

/** Options of {@link update}. */
export interface UpdateOptions {
  signal?: AbortSignal;
  /**
   * How storage failures are retried (see withRetry; default its defaults).
   * `false`: not at all, for a store that is already wrapped in withRetry.
   */
  retry?: RetryPolicy | false;
  /** How many times `fn` may be called before giving up under contention (default Infinity). */
  attempts?: number;
}

/**
 * The pause after the n-th ExpectationMismatch: from 2 ms doubling to 500 ms,
 * with full jitter (anywhere in [0, 2x]), so contending writers fall out of step.
 */
const CONTENTION: BackoffPolicy = { attempts: Infinity, minDelayMs: 2, maxDelayMs: 500, multiplier: 2, jitter: 1 };

/**
 * Read-modify-write of `key`: reads the head, calls `fn` with it and writes what
 * it returns at the next seqno (0 on an empty key) by compareAndSet; on
 * ExpectationMismatch it pauses (backoff with jitter), reads again and calls `fn`
 * again. `fn` returning `undefined` leaves the key as it is. Resolves to the head
 * it wrote or kept.
 *
 * Storage failures are retried as {@link withRetry} retries them, and one that is
 * still unsettled rejects Indeterminate. With something unique in every write
 * (a writer id and a counter in the data), no update is lost or applied twice,
 * however many processes contend and whatever faults strike: a compareAndSet with
 * an unknown outcome is settled by reading whether its exact bytes are there.
 * `fn` may run several times; it must not have side effects of its own.
 */
export async function update(
  consensus: Consensus,
  key: string,
  fn: (current: VersionedData | undefined) => Uint8Array | undefined | Promise<Uint8Array | undefined>,
  opts: UpdateOptions = {},
): Promise<VersionedData | undefined> {
  const { signal } = opts;
  const store = opts.retry === false || isRetrying(consensus) ? consensus : withRetry(consensus, opts.retry);
  const attempts = opts.attempts ?? Infinity;
  let current = await store.head(key, { signal });
  for (let n = 1; ; n++) {
    const data = await fn(current);
    if (data === undefined) return current;
    const next: VersionedData = { seqno: current === undefined ? SeqNo.minimum() : current.seqno.next(), data };
    if ((await store.compareAndSet(key, current?.seqno, next, { signal })) === CaSResult.Committed) return next;
    if (n >= attempts) {
      throw new Determinate(ErrorCode.Aborted, `update(${JSON.stringify(key)}): gave up after ${n} attempts, each beaten by another writer`);
    }
    await sleep(backoffDelay(CONTENTION, n), signal);
    current = await store.head(key, { signal });
  }
}
