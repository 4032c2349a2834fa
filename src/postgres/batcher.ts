/**
 * Group commit for compareAndSet, on the kit's {@link Batcher}: concurrent calls on
 * one handle queue there and leave as one statement (one round trip, one
 * transaction, one WAL flush). The calls made in one turn of the event loop (such as
 * those of every caller a finished batch answered) leave together, up to
 * `concurrency` batches in flight; a lone call is sent at once, so
 * batching adds no latency; under load it trades many small transactions for few
 * larger ones.
 *
 * A batch also has a byte budget: its values and keys together never exceed
 * `maxBatchBytes`, except for a call that alone is larger, which leaves on its own.
 * (It bounds the buffers the client builds for one statement; every value travels
 * in binary, a group's as one binary bytea[] parameter.)
 *
 * Each call keeps its own outcome: the batch statement reports which keys it
 * committed. A batch never holds two calls on one key, and a key already in flight
 * waits for the next batch, so the calls of one handle never wait on each other's
 * row locks. A batch the server rolled back for contention (40001, 40P01: nothing
 * applied) is sent again a few times before the callers see the error.
 *
 * Abort: a queued call is removed and rejects Determinate; a call already sent
 * rejects Indeterminate at once, while its batch runs on for the others.
 *
 * A queued call waits while the queue moves, but never `queueTimeoutMs` (the
 * handle's connect budget: like waiting for a pooled connection, it is waiting for
 * its turn to be sent) without a statement ahead of it finishing; then it is removed
 * and rejects Determinate Unavailable. Its clock restarts whenever a batch of the
 * handle finishes, except while a statement on its own key is in flight: without
 * that bound, calls on one key behind a stuck statement would each wait for every
 * statement before them. A burst of large values, sent a few at a time, therefore
 * drains however long it is, as long as the server keeps finishing statements.
 */
import { CaSResult } from '../consensus.js';
import { ErrorCode, ExternalError } from '../errors.js';
import { retry, type BackoffPolicy } from '../kit/backoff.js';
import { Batcher } from '../kit/batcher.js';

/** One queued compareAndSet, parameters already in wire form. */
export interface CasCall {
  key: string;
  /** Decimal seqno, or null for "the key has no data". */
  expected: string | null;
  seqno: string;
  data: Buffer;
}

/** Sends a batch (distinct keys, sorted) and resolves to the keys it committed. */
export type SendBatch = (calls: readonly CasCall[]) => Promise<ReadonlySet<string>>;

/** How {@link casBatcher} groups calls. */
export interface CasBatcherOptions {
  /** Batches in flight at once. */
  concurrency: number;
  /** Most calls in one batch. */
  maxBatch: number;
  /** Most bytes of keys and values in one batch. */
  maxBatchBytes: number;
  /** How long a call may wait without the queue moving (the connect budget). */
  queueTimeoutMs: number;
  /** Prefix of the batcher's own errors, e.g. `PostgresConsensus(…): compareAndSet`. */
  what: string;
}

/** A batch the server rolled back for contention is sent again, at once, up to 3 more times. */
const CONTENTION_RETRIES: BackoffPolicy = { attempts: 3, minDelayMs: 0, maxDelayMs: 0, multiplier: 1, jitter: 0 };

/** Rolled back by the server for contention (40001, 40P01): nothing was applied. */
const contended = (err: unknown): boolean => err instanceof ExternalError && err.determinate && err.code === ErrorCode.Aborted;

const byKey = (a: CasCall, b: CasCall) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0);

/** The group commit of one handle (see the module comment). */
export function casBatcher(send: SendBatch, options: CasBatcherOptions): Batcher<CasCall, CaSResult> {
  return new Batcher<CasCall, CaSResult>({
    lanes: options.concurrency,
    maxItems: options.maxBatch,
    maxBytes: options.maxBatchBytes,
    bytes: (call) => Buffer.byteLength(call.key) + call.data.byteLength,
    conflictKey: (call) => call.key,
    queueTimeoutMs: options.queueTimeoutMs,
    queueTimeoutRestarts: true,
    // The callers a finished batch answers send their next calls in the microtasks
    // that follow: they leave together, in the same turn, while a lone call still
    // leaves at once.
    linger: 'microtasks',
    what: options.what,
    run: async (calls, signal) => {
      // One lock order for every handle keeps concurrent batches from deadlocking.
      const sorted = calls.length === 1 ? calls : [...calls].sort(byKey);
      let committed: ReadonlySet<string>;
      try {
        committed = await send(sorted);
      } catch (err) {
        if (!contended(err)) throw err;
        // The first attempt is made outside the retry loop, which a batch that
        // commits (nearly every one) then never enters.
        committed = await retry(() => send(sorted), {
          policy: CONTENTION_RETRIES,
          // Fires once every caller of the batch has gone: no one is left to retry for.
          signal,
          retryable: contended,
        });
      }
      return calls.map((call) => ({ value: committed.has(call.key) ? CaSResult.Committed : CaSResult.ExpectationMismatch }));
    },
  });
}
