import type { SeqNo } from './seqno.js';

/** One version of a Consensus key: its seqno and its opaque bytes. */
export interface VersionedData {
  seqno: SeqNo;
  data: Uint8Array;
}

/** The two outcomes of {@link Consensus.compareAndSet} that are not errors. */
export const CaSResult = {
  /** The expectation held and the new version is now the head. */
  Committed: 'Committed',
  /** The head was not the expected one; nothing changed. */
  ExpectationMismatch: 'ExpectationMismatch',
} as const;
export type CaSResult = (typeof CaSResult)[keyof typeof CaSResult];

/** "No limit" for {@link Consensus.scan}. */
export const SCAN_ALL: number = Number.MAX_SAFE_INTEGER;

/** A key that liveness probes may read and write; it is an ordinary key. */
export const CONSENSUS_HEAD_LIVENESS_KEY = 'LIVENESS';

/** Options every operation accepts. */
export interface OpOptions {
  /**
   * Aborts the operation. The promise then rejects with an ExternalError:
   * Determinate when the request was provably never sent, otherwise Indeterminate.
   */
  signal?: AbortSignal;
}

/**
 * Per key, a linearizable, durable, versioned log of opaque byte states, advanced
 * by compare-and-set.
 *
 * Keys are independent. A key is a non-empty string of at most 1024 UTF-8 bytes
 * without U+0000; other keys reject with Determinate `InvalidArgument` before
 * storage is touched. Seqnos stored in Consensus are in [0, 2^63-1].
 *
 * Linearizable: every operation appears to take effect atomically at one instant
 * between its call and its return, across all handles and processes sharing the
 * location. Durable: once compareAndSet returns `Committed`, the version survives a
 * crash of the process (and, for the embedded default, of the machine).
 *
 * Every storage failure rejects with an ExternalError: Determinate when the
 * operation definitely did not take effect, Indeterminate when it might have.
 */
export interface Consensus {
  /** Every key that has ever been written, each once, in no particular order. */
  listKeys(opts?: OpOptions): AsyncIterable<string>;

  /** The version with the greatest seqno, or `undefined` when the key has no data. */
  head(key: string, opts?: OpOptions): Promise<VersionedData | undefined>;

  /**
   * Makes `next` the head iff the current head's seqno is exactly `expected` (or the
   * key has no data and `expected` is `undefined`); otherwise changes nothing.
   *
   * Arguments are checked before anything else: `next.seqno` must be in [0, 2^63-1]
   * and strictly greater than `expected` when it is given, else the call rejects with
   * Determinate `InvalidArgument`. Seqnos need not be contiguous.
   */
  compareAndSet(key: string, expected: SeqNo | undefined, next: VersionedData, opts?: OpOptions): Promise<CaSResult>;

  /**
   * Up to `limit` versions with seqno >= `from`, in ascending seqno order; empty when
   * the key has no data or `from` is past the head. `limit` must be a positive
   * integer ({@link SCAN_ALL} for no limit).
   */
  scan(key: string, from: SeqNo, limit: number, opts?: OpOptions): Promise<VersionedData[]>;

  /**
   * Deletes every version with seqno < `seqno` and returns how many were deleted
   * (0 when there was nothing to delete). The head is never deleted: rejects with
   * Determinate `FailedPrecondition` if the key has no data or `seqno` is greater
   * than the head's seqno.
   */
  truncate(key: string, seqno: SeqNo, opts?: OpOptions): Promise<number>;

  /** Releases the handle's resources. Idempotent. */
  close(): Promise<void>;

  /** Calls {@link close}. */
  [Symbol.asyncDispose](): Promise<void>;
}
