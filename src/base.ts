/**
 * Shared front halves of every backend, in the manner of abstract-level: the public
 * method checks the handle is open, the signal is not already aborted and the
 * arguments are valid (see validate.ts), then calls the backend's protected `_method`,
 * which only has to speak to its storage.
 */
import type { BlobMetadata, Blob } from './blob.js';
import type { CaSResult, Consensus, OpOptions, VersionedData } from './consensus.js';
import { throwIfAborted } from './errors.js';
import type { SegmentedBytes } from './segmented-bytes.js';
import type { SeqNo } from './seqno.js';
import {
  validateCompareAndSet,
  validateKey,
  validatePrefix,
  validateScan,
  validateSignal,
  validateTruncate,
  validateValue,
} from './validate.js';

/** Open/closed bookkeeping shared by both bases. */
abstract class Handle {
  #closing: Promise<void> | undefined;

  /** Name used in messages, e.g. `SqliteConsensus(sqlite:/tmp/x.db)`. */
  abstract readonly description: string;

  protected get closed(): boolean {
    return this.#closing !== undefined;
  }

  protected checkOpen(opts: OpOptions | undefined): void {
    validateSignal(opts);
    if (this.#closing !== undefined) throw new Error(`${this.description} is closed`);
    throwIfAborted(opts?.signal);
  }

  /** Releases the handle; later calls return the first call's promise. */
  close(): Promise<void> {
    this.#closing ??= this._close();
    return this.#closing;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  protected abstract _close(): Promise<void>;
}

/**
 * What a backend's `_listKeys` yields: one key, or a batch of keys it already holds
 * (a page of a query, a snapshot of a map), which {@link ConsensusBase.listKeys}
 * hands out one by one.
 */
export type ListedKeys = string | readonly string[];

/** Base class of every Consensus backend. */
export abstract class ConsensusBase extends Handle implements Consensus {
  /**
   * The backend's listing, started at the first step, after the open and signal
   * checks. The keys of a batch cost the caller one settled promise each, with no
   * trip through the backend's generator, and are refused (Determinate Cancelled)
   * once `opts.signal` aborts.
   */
  listKeys(opts?: OpOptions): AsyncIterableIterator<string> {
    return new KeyListing(() => {
      this.checkOpen(opts);
      return this._listKeys(opts)[Symbol.asyncIterator]();
    }, opts?.signal);
  }

  head(key: string, opts?: OpOptions): Promise<VersionedData | undefined> {
    try {
      validateKey(key);
      this.checkOpen(opts);
    } catch (err) {
      return Promise.reject(err);
    }
    return this._head(key, opts);
  }

  compareAndSet(key: string, expected: SeqNo | undefined, next: VersionedData, opts?: OpOptions): Promise<CaSResult> {
    try {
      validateCompareAndSet(key, expected, next);
      this.checkOpen(opts);
    } catch (err) {
      return Promise.reject(err);
    }
    return this._compareAndSet(key, expected, next, opts);
  }

  scan(key: string, from: SeqNo, limit: number, opts?: OpOptions): Promise<VersionedData[]> {
    try {
      validateScan(key, from, limit);
      this.checkOpen(opts);
    } catch (err) {
      return Promise.reject(err);
    }
    return this._scan(key, from, limit, opts);
  }

  truncate(key: string, seqno: SeqNo, opts?: OpOptions): Promise<number> {
    try {
      validateTruncate(key, seqno);
      this.checkOpen(opts);
    } catch (err) {
      return Promise.reject(err);
    }
    return this._truncate(key, seqno, opts);
  }

  protected abstract _listKeys(opts?: OpOptions): AsyncIterable<ListedKeys>;
  protected abstract _head(key: string, opts?: OpOptions): Promise<VersionedData | undefined>;
  protected abstract _compareAndSet(
    key: string,
    expected: SeqNo | undefined,
    next: VersionedData,
    opts?: OpOptions,
  ): Promise<CaSResult>;
  protected abstract _scan(key: string, from: SeqNo, limit: number, opts?: OpOptions): Promise<VersionedData[]>;
  protected abstract _truncate(key: string, seqno: SeqNo, opts?: OpOptions): Promise<number>;
}

const finished = (): IteratorResult<string> => ({ done: true, value: undefined });

/**
 * The iterator of {@link ConsensusBase.listKeys}. Its steps take effect in call
 * order, as an async generator's do: a step that must wait for the backend queues
 * every later one behind it, and while none waits, a key already in hand is handed
 * out at once. `return` (a `break` in the caller's loop) releases the backend's
 * listing; a step that fails ends the listing.
 */
class KeyListing implements AsyncIterableIterator<string> {
  readonly #start: () => AsyncIterator<ListedKeys>;
  readonly #signal: AbortSignal | undefined;
  #source: AsyncIterator<ListedKeys> | undefined;
  #ended = false;
  /** The keys in hand, from `#next` on. */
  #batch: readonly string[] = [];
  #next = 0;
  /** Steps queued or running; while there are any, a new step waits its turn. */
  #waiting = 0;
  /** The last step queued, which the next one waits for. */
  #last: Promise<IteratorResult<string>> | undefined;

  constructor(start: () => AsyncIterator<ListedKeys>, signal: AbortSignal | undefined) {
    this.#start = start;
    this.#signal = signal;
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  next(): Promise<IteratorResult<string>> {
    if (this.#waiting === 0 && this.#signal?.aborted !== true) {
      if (this.#next < this.#batch.length) return Promise.resolve({ done: false, value: this.#batch[this.#next++]! });
      if (this.#ended) return Promise.resolve(finished());
    }
    return this.#inTurn('next');
  }

  return(): Promise<IteratorResult<string>> {
    return this.#inTurn('return');
  }

  /** Runs a step after the steps before it, at once when there are none. */
  #inTurn(kind: 'next' | 'return'): Promise<IteratorResult<string>> {
    const last = this.#waiting++ === 0 ? undefined : this.#last;
    const step = () => this.#step(kind);
    const run = last === undefined ? step() : last.then(step, step);
    this.#last = run;
    return run;
  }

  async #step(kind: 'next' | 'return'): Promise<IteratorResult<string>> {
    try {
      if (kind === 'return') return await this.#release();
      for (;;) {
        if (this.#next < this.#batch.length) {
          if (this.#signal?.aborted === true) {
            // A listing only reads: stopping it is Determinate, whatever releasing the
            // backend's listing says.
            await this.#release().catch(() => {});
            throwIfAborted(this.#signal);
          }
          return { done: false, value: this.#batch[this.#next++]! };
        }
        if (this.#ended) return finished();
        let got: IteratorResult<ListedKeys>;
        try {
          this.#source ??= this.#start();
          got = await this.#source.next();
        } catch (err) {
          this.#end();
          throw err;
        }
        if (got.done === true) this.#end();
        else if (typeof got.value === 'string') return { done: false, value: got.value };
        else [this.#batch, this.#next] = [got.value, 0];
      }
    } finally {
      this.#waiting--;
    }
  }

  async #release(): Promise<IteratorResult<string>> {
    const source = this.#ended ? undefined : this.#source;
    this.#end();
    await source?.return?.();
    return finished();
  }

  #end(): void {
    this.#ended = true;
    this.#source = undefined;
    this.#batch = [];
    this.#next = 0;
  }
}

/** Base class of every Blob backend. */
export abstract class BlobBase extends Handle implements Blob {
  get(key: string, opts?: OpOptions): Promise<SegmentedBytes | undefined> {
    try {
      this.checkKey(key);
      this.checkOpen(opts);
    } catch (err) {
      return Promise.reject(err);
    }
    return this._get(key, opts);
  }

  async *list(prefix = '', opts?: OpOptions): AsyncGenerator<BlobMetadata> {
    validatePrefix(prefix);
    this.checkOpen(opts);
    yield* this._list(prefix, opts);
  }

  set(key: string, value: Uint8Array, opts?: OpOptions): Promise<void> {
    try {
      this.checkKey(key);
      validateValue(value);
      this.checkOpen(opts);
    } catch (err) {
      return Promise.reject(err);
    }
    return this._set(key, value, opts);
  }

  delete(key: string, opts?: OpOptions): Promise<number | undefined> {
    try {
      this.checkKey(key);
      this.checkOpen(opts);
    } catch (err) {
      return Promise.reject(err);
    }
    return this._delete(key, opts);
  }

  restore(key: string, opts?: OpOptions): Promise<void> {
    try {
      this.checkKey(key);
      this.checkOpen(opts);
    } catch (err) {
      return Promise.reject(err);
    }
    return this._restore(key, opts);
  }

  /**
   * Every key of up to this many UTF-8 bytes is accepted (SPEC's 1024 unless the
   * store caps keys lower).
   */
  protected get maxKeyBytes(): number {
    return 1024;
  }

  /**
   * Rejects a key argument (Determinate InvalidArgument) before storage is touched.
   * A store whose limit is on the encoded name, not on the key's bytes, overrides
   * this to accept longer keys whose name still fits.
   */
  protected checkKey(key: string): void {
    validateKey(key, this.maxKeyBytes);
  }

  protected abstract _get(key: string, opts?: OpOptions): Promise<SegmentedBytes | undefined>;
  protected abstract _list(prefix: string, opts?: OpOptions): AsyncIterable<BlobMetadata>;
  protected abstract _set(key: string, value: Uint8Array, opts?: OpOptions): Promise<void>;
  protected abstract _delete(key: string, opts?: OpOptions): Promise<number | undefined>;
  protected abstract _restore(key: string, opts?: OpOptions): Promise<void>;
}
