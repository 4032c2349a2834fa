/**
 * Group commit for compareAndSet: concurrent calls on one handle queue here and
 * leave as one statement (one round trip, one transaction, one WAL flush) whenever
 * fewer than `concurrency` batches are in flight. A lone call is sent at once, so
 * batching adds no latency; under load it trades many small transactions for few
 * larger ones.
 *
 * A batch also has a byte budget: its values and keys together never exceed
 * `maxBatchBytes`, except for a call that alone is larger, which leaves on its own.
 * (The grouped statement's values travel as text, twice their size, built in one
 * string by the client; a lone call's value travels in binary.)
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
import { aborted, Determinate, ErrorCode, ExternalError } from '../errors.js';

/** One queued compareAndSet, parameters already in wire form. */
export interface CasCall {
  key: string;
  /** Decimal seqno, or null for "the key has no data". */
  expected: string | null;
  seqno: string;
  data: Buffer;
}

interface Pending extends CasCall {
  /** What the call adds to a batch's parameters, in bytes. */
  bytes: number;
  resolve: (r: CaSResult) => void;
  reject: (err: unknown) => void;
  signal: AbortSignal | undefined;
  onAbort: (() => void) | undefined;
  /** Rejects the call if it is still queued when its queue budget runs out; refreshed as the queue moves. */
  timer: NodeJS.Timeout | undefined;
  sent: boolean;
  done: boolean;
}

/** Sends a batch (distinct keys, sorted) and resolves to the keys it committed. */
export type SendBatch = (calls: readonly CasCall[]) => Promise<ReadonlySet<string>>;

const CONTENTION_RETRIES = 3;

export class CasBatcher {
  #queue: Pending[] = [];
  readonly #inflightKeys = new Set<string>();
  #inflight = 0;

  constructor(
    private readonly send: SendBatch,
    private readonly concurrency: number,
    private readonly maxBatch: number,
    private readonly maxBatchBytes: number,
    private readonly queueTimeoutMs: number,
    /** Prefix of the batcher's own errors, e.g. `PostgresConsensus(…): compareAndSet`. */
    private readonly what: string,
  ) {}

  submit(call: CasCall, signal: AbortSignal | undefined): Promise<CaSResult> {
    return new Promise<CaSResult>((resolve, reject) => {
      const bytes = Buffer.byteLength(call.key) + call.data.byteLength;
      const p: Pending = { ...call, bytes, resolve, reject, signal, onAbort: undefined, timer: undefined, sent: false, done: false };
      if (signal !== undefined) {
        p.onAbort = () => {
          if (p.done) return;
          if (!p.sent) this.#queue = this.#queue.filter((q) => q !== p);
          this.#settle(p, () => reject(aborted(signal, p.sent)));
        };
        signal.addEventListener('abort', p.onAbort, { once: true });
      }
      this.#queue.push(p);
      this.#pump();
      if (!p.sent && !p.done) {
        p.timer = setTimeout(() => {
          if (p.sent) return;
          this.#queue = this.#queue.filter((q) => q !== p);
          this.#settle(p, () =>
            reject(
              new Determinate(
                ErrorCode.Unavailable,
                `${this.what}: not sent: it waited ${this.queueTimeoutMs} ms (the connect timeout) without the statements ahead of it finishing`,
              ),
            ),
          );
        }, this.queueTimeoutMs);
      }
    });
  }

  #settle(p: Pending, fn: () => void): void {
    if (p.done) return;
    p.done = true;
    clearTimeout(p.timer);
    if (p.onAbort !== undefined) p.signal?.removeEventListener('abort', p.onAbort);
    fn();
  }

  #pump(): void {
    while (this.#inflight < this.concurrency && this.#queue.length > 0) {
      const batch: Pending[] = [];
      const keys = new Set<string>();
      const rest: Pending[] = [];
      let bytes = 0;
      for (const p of this.#queue) {
        const fits = batch.length === 0 || (batch.length < this.maxBatch && bytes + p.bytes <= this.maxBatchBytes);
        if (fits && !keys.has(p.key) && !this.#inflightKeys.has(p.key)) {
          batch.push(p);
          keys.add(p.key);
          bytes += p.bytes;
        } else {
          rest.push(p);
        }
      }
      if (batch.length === 0) return;
      this.#queue = rest;
      void this.#dispatch(batch);
    }
  }

  async #dispatch(batch: Pending[]): Promise<void> {
    this.#inflight++;
    for (const p of batch) {
      p.sent = true;
      clearTimeout(p.timer);
      this.#inflightKeys.add(p.key);
    }
    // One lock order for every handle keeps concurrent batches from deadlocking.
    batch.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    try {
      let committed: ReadonlySet<string>;
      for (let attempt = 1; ; attempt++) {
        try {
          committed = await this.send(batch);
          break;
        } catch (err) {
          const contention = err instanceof ExternalError && err.determinate && err.code === ErrorCode.Aborted;
          if (!contention || attempt > CONTENTION_RETRIES || batch.every((p) => p.done)) throw err;
        }
      }
      for (const p of batch) {
        this.#settle(p, () => p.resolve(committed.has(p.key) ? CaSResult.Committed : CaSResult.ExpectationMismatch));
      }
    } catch (err) {
      for (const p of batch) this.#settle(p, () => p.reject(err));
    } finally {
      for (const p of batch) this.#inflightKeys.delete(p.key);
      this.#inflight--;
      // The queue moved: only the calls still behind a statement on their own key keep counting.
      for (const p of this.#queue) if (!this.#inflightKeys.has(p.key)) p.timer?.refresh();
      this.#pump();
    }
  }
}
