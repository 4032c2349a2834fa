/**
 * Group commit, on the kit's {@link Batcher}: writes wait in a queue while the
 * previous batch commits (or until the end of the current tick), then all of them
 * run in one transaction with one fsync. `run` executes a batch (inline or in the
 * writer worker); it is only ever called once at a time.
 */
import { Batcher, type Settled } from '../kit/batcher.js';
import type { Exposure } from '../kit/exposure.js';
import { fromRaw, rawError, type BatchResult, type WriteOp, type WriteOutcome } from './engine.js';
import { mapSqliteError } from './errors.js';

/** Limits of one batch, so one transaction never grows without bound. */
const MAX_MEMBERS = 512;
const MAX_BYTES = 64 * 1024 * 1024;

/** How far a failed batch got, for its members' messages (see errors.ts for what each exposure means). */
const WHERE: Record<Exposure, string> = {
  'not-sent': 'before the batch reached a connection, nothing was applied',
  sent: 'before COMMIT',
  committed: 'at COMMIT, so the write may have been applied',
};

export class GroupCommit {
  readonly #batcher: Batcher<WriteOp, WriteOutcome>;

  /** @param description names the handle in messages, e.g. `SqliteConsensus(/x.db)` */
  constructor(run: (members: readonly WriteOp[]) => Promise<BatchResult>, description: string) {
    this.#batcher = new Batcher<WriteOp, WriteOutcome>({
      what: description,
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
        const [raw, exposure] = result.type === 'busy' ? [{ code: 'SQLITE_BUSY', message: 'database is locked' }, 'sent' as const] : [result.error, result.exposure];
        const error = mapSqliteError(fromRaw(raw), { what: `${description}: ${WHERE[exposure]}`, exposure });
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
