import { aborted, type ExternalError } from '../errors.js';
import { rawError, type BatchResult, type Phase, type RawError, type WriteOp, type WriteOutcome } from './engine.js';

interface Pending {
  op: WriteOp;
  bytes: number;
  signal: AbortSignal | undefined;
  onAbort: (() => void) | undefined;
  /** Handed to a batch: from now on an abort can no longer prove the write did not happen. */
  sent: boolean;
  settled: boolean;
  resolve(outcome: WriteOutcome): void;
  reject(err: unknown): void;
}

/** Limits of one batch, so one transaction never grows without bound. */
const MAX_MEMBERS = 512;
const MAX_BYTES = 64 * 1024 * 1024;

/**
 * Group commit: writes wait in a queue while the previous batch commits (or until
 * the end of the current tick), then all of them run in one transaction with one
 * fsync. `run` executes a batch (inline or in the writer worker); it is only ever
 * called once at a time.
 */
export class GroupCommit {
  readonly #run: (members: WriteOp[]) => Promise<BatchResult>;
  readonly #toError: (error: RawError | unknown, phase: Phase) => ExternalError;
  #queue: Pending[] = [];
  #running = false;
  #scheduled = false;
  #idle: (() => void)[] = [];

  constructor(run: (members: WriteOp[]) => Promise<BatchResult>, toError: (error: RawError | unknown, phase: Phase) => ExternalError) {
    this.#run = run;
    this.#toError = toError;
  }

  submit(op: WriteOp, signal: AbortSignal | undefined): Promise<WriteOutcome> {
    return new Promise<WriteOutcome>((resolve, reject) => {
      const p: Pending = {
        op,
        bytes: op.type === 'cas' ? op.data.byteLength + op.key.length : op.key.length,
        signal,
        onAbort: undefined,
        sent: false,
        settled: false,
        resolve,
        reject,
      };
      if (signal !== undefined) {
        p.onAbort = () => {
          if (p.settled) return;
          p.settled = true;
          if (!p.sent) this.#queue = this.#queue.filter((q) => q !== p);
          reject(aborted(signal, p.sent));
          this.#notifyIdle();
        };
        signal.addEventListener('abort', p.onAbort, { once: true });
      }
      this.#queue.push(p);
      this.#schedule();
    });
  }

  /** Resolves once every submitted write has been answered. */
  drain(): Promise<void> {
    if (!this.#running && this.#queue.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idle.push(resolve));
  }

  #schedule(): void {
    if (this.#scheduled || this.#running) return;
    this.#scheduled = true;
    // setImmediate, not a microtask: callers whose previous write was just
    // answered issue their next one in the microtasks that follow, and join.
    setImmediate(() => {
      this.#scheduled = false;
      void this.#flush();
    });
  }

  async #flush(): Promise<void> {
    if (this.#running || this.#queue.length === 0) return;
    this.#running = true;
    let bytes = 0;
    let n = 0;
    while (n < this.#queue.length && n < MAX_MEMBERS && (n === 0 || bytes + this.#queue[n]!.bytes <= MAX_BYTES)) {
      bytes += this.#queue[n]!.bytes;
      n++;
    }
    const batch = this.#queue.splice(0, n);
    for (const p of batch) p.sent = true;
    let result: BatchResult;
    try {
      result = await this.#run(batch.map((p) => p.op));
    } catch (err) {
      // The runner itself failed (the worker died): the batch may have committed.
      result = { type: 'error', phase: 'commit', error: rawError(err) };
    }
    for (const [i, p] of batch.entries()) {
      if (p.signal !== undefined && p.onAbort !== undefined) p.signal.removeEventListener('abort', p.onAbort);
      if (p.settled) continue;
      p.settled = true;
      if (result.type === 'done') p.resolve(result.outcomes[i]!);
      else if (result.type === 'busy') p.reject(this.#toError({ code: 'SQLITE_BUSY', message: 'database is locked' }, 'before-commit'));
      else p.reject(this.#toError(result.error, result.phase));
    }
    this.#running = false;
    if (this.#queue.length > 0) this.#schedule();
    this.#notifyIdle();
  }

  #notifyIdle(): void {
    if (this.#running || this.#queue.length > 0) return;
    for (const resolve of this.#idle.splice(0)) resolve();
  }
}
