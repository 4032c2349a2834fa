/**
 * Group commit, on the kit's {@link Batcher}: writes wait in a queue while the
 * previous batch commits (or until the end of the current tick), then all of them
 * run in one transaction with one fsync. `run` executes a batch (inline or in the
 * writer worker); it is only ever called once at a time.
 */
import type { ExternalError } from '../errors.js';
import { Batcher, type Settled } from '../kit/batcher.js';
import type { Exposure } from '../kit/exposure.js';
import { rawError, type BatchResult, type RawError, type WriteOp, type WriteOutcome } from './engine.js';

/** Limits of one batch, so one transaction never grows without bound. */
const MAX_MEMBERS = 512;
const MAX_BYTES = 64 * 1024 * 1024;

/** Turns a batch's failure, at how far the batch got, into the error of each of its members. */
export type BatchError = (error: RawError, exposure: Exposure) => ExternalError;

export class GroupCommit {
  readonly #batcher: Batcher<WriteOp, WriteOutcome>;

  constructor(run: (members: readonly WriteOp[]) => Promise<BatchResult>, toError: BatchError) {
    this.#batcher = new Batcher<WriteOp, WriteOutcome>({
      maxItems: MAX_MEMBERS,
      maxBytes: MAX_BYTES,
      bytes: (op) => (op.type === 'cas' ? op.data.byteLength + op.key.length : op.key.length),
      // setImmediate, not at once: callers whose previous write was just answered
      // issue their next one in the microtasks that follow, and join.
      linger: true,
      run: async (members) => {
        let result: BatchResult;
        try {
          result = await run(members);
        } catch (err) {
          // The runner itself failed (the worker died): the batch may have committed.
          result = { type: 'error', exposure: 'committed', error: rawError(err) };
        }
        if (result.type === 'done') return result.outcomes.map((value): Settled<WriteOutcome> => ({ value }));
        const error =
          result.type === 'busy' ? toError({ code: 'SQLITE_BUSY', message: 'database is locked' }, 'sent') : toError(result.error, result.exposure);
        return members.map(() => ({ error }));
      },
    });
  }

  /** Queues `op`; an abort before its batch runs is Determinate, after that Indeterminate. */
  submit(op: WriteOp, signal: AbortSignal | undefined): Promise<WriteOutcome> {
    return this.#batcher.submit(op, signal);
  }

  /** Resolves once every submitted write has been answered. */
  drain(): Promise<void> {
    return this.#batcher.drain();
  }
}
