/**
 * Group commit: concurrent callers' items queue up and leave in batches, so that
 * one round trip, transaction or fsync serves many of them. While `lanes` batches
 * are in flight the next one forms in the queue; it leaves as soon as a lane is
 * free, or with `linger` a little later, so that callers answered by the batch
 * that just finished can join it: one event-loop turn later (`true`), or once the
 * microtasks now queued have run (`'microtasks'`: a lone call still leaves in the
 * same turn).
 *
 * A batch never holds more than `maxItems` items nor more than `maxBytes` bytes
 * by the `bytes` measure, except that an item larger than `maxBytes` leaves alone.
 * Batches take items in queue order and stop at the first that does not fit, so a
 * large item is never overtaken for good. Items with the same `conflictKey` never
 * share a batch nor sit in two batches in flight at once; such an item waits in
 * the queue, and items behind it with other keys may go first.
 *
 * Each item keeps its own outcome. An item whose signal fires while it is queued
 * leaves the queue and rejects Determinate (never sent); once its batch is in
 * flight it rejects Indeterminate at once, and the batch runs on for the others.
 * The batch's own signal fires when every caller of the batch has gone that way,
 * so that a runner retrying inside can stop. An item that waits in the queue
 * longer than `queueTimeoutMs` leaves it and rejects Determinate Unavailable (its
 * clock starts when a pump first leaves it waiting, at most one linger after it
 * was submitted: an item that leaves at once never starts one);
 * with `queueTimeoutRestarts`, that clock restarts whenever a batch finishes
 * (except for an item whose conflict key is still in flight), so a long queue
 * that keeps moving drains, and only one that stands still times out.
 */
import { aborted, Determinate, ErrorCode, ExternalError, Indeterminate } from '../errors.js';

/** The outcome of one item of a batch. */
export type Settled<R> = { value: R } | { error: unknown };

/** How a {@link Batcher} forms and runs batches. */
export interface BatcherOptions<I, R> {
  /**
   * Runs one batch and resolves to one outcome per item, in the items' order. A
   * rejection fails every item of the batch: with the error itself when it is an
   * ExternalError, else as Indeterminate Unknown (the batch was handed over and
   * may have been applied).
   */
  run(items: readonly I[], signal: AbortSignal): Promise<readonly Settled<R>[]>;
  /** Batches in flight at once (default 1). */
  lanes?: number;
  /** Most items in one batch (default unlimited). */
  maxItems?: number;
  /** Most bytes in one batch, by `bytes` (default unlimited). */
  maxBytes?: number;
  /** The size of one item for `maxBytes` (default 0). */
  bytes?(item: I): number;
  /** Items with equal keys never share a batch nor run in two batches at once. */
  conflictKey?(item: I): string;
  /**
   * Before forming a batch, wait one event-loop turn (`true`, setImmediate) or
   * until the microtasks queued now have run (`'microtasks'`, process.nextTick);
   * default false: at once.
   */
  linger?: boolean | 'microtasks';
  /** Longest wait in the queue before an item gives up, unsent (default: no limit). */
  queueTimeoutMs?: number;
  /**
   * Restart each queued item's `queueTimeoutMs` whenever a batch finishes, unless
   * an item with its conflict key is in flight (default false: the clock runs from
   * `submit`).
   */
  queueTimeoutRestarts?: boolean;
  /** Prefix of the batcher's own messages, e.g. `SqliteConsensus(/x.db): compareAndSet`. */
  what?: string;
}

interface Pending<I, R> {
  item: I;
  bytes: number;
  key: string | undefined;
  signal: AbortSignal | undefined;
  onAbort: (() => void) | undefined;
  timer: NodeJS.Timeout | undefined;
  /** The batch it left in; from then on nothing can prove it was not applied. */
  batch: Flight<I, R> | undefined;
  done: boolean;
  resolve(value: R): void;
  reject(err: unknown): void;
}

interface Flight<I, R> {
  members: Pending<I, R>[];
  /** Only when some member has a signal: otherwise nothing can abort the batch. */
  control: AbortController | undefined;
}

/** The batch signal of a batch no caller can leave (none brought a signal). */
const NEVER_ABORTED = new AbortController().signal;

export class Batcher<I, R> {
  readonly #run: BatcherOptions<I, R>['run'];
  readonly #lanes: number;
  readonly #maxItems: number;
  readonly #maxBytes: number;
  readonly #bytes: (item: I) => number;
  readonly #conflictKey: ((item: I) => string) | undefined;
  readonly #linger: boolean | 'microtasks';
  readonly #queueTimeoutMs: number | undefined;
  readonly #queueTimeoutRestarts: boolean;
  readonly #what: string;
  #queue: Pending<I, R>[] = [];
  readonly #inflightKeys = new Set<string>();
  #inflight = 0;
  #scheduled = false;
  #idle: (() => void)[] = [];

  constructor(options: BatcherOptions<I, R>) {
    const positive = (n: number | undefined, name: string, fallback: number): number => {
      if (n === undefined) return fallback;
      if (!(n === Infinity || (Number.isSafeInteger(n) && n >= 1))) throw new RangeError(`Batcher: ${name} must be a positive integer, got ${n}`);
      return n;
    };
    this.#run = options.run;
    this.#lanes = positive(options.lanes, 'lanes', 1);
    this.#maxItems = positive(options.maxItems, 'maxItems', Infinity);
    this.#maxBytes = positive(options.maxBytes, 'maxBytes', Infinity);
    this.#bytes = options.bytes ?? (() => 0);
    this.#conflictKey = options.conflictKey;
    this.#linger = options.linger ?? false;
    const queueTimeoutMs = positive(options.queueTimeoutMs, 'queueTimeoutMs', Infinity);
    this.#queueTimeoutMs = queueTimeoutMs === Infinity ? undefined : queueTimeoutMs;
    this.#queueTimeoutRestarts = options.queueTimeoutRestarts ?? false;
    this.#what = options.what ?? 'batch';
  }

  /** Items queued or in flight, not yet answered by their batch. */
  get size(): number {
    return this.#queue.length + this.#inflight;
  }

  /** Queues `item`; settles with its own outcome (see the module comment). */
  submit(item: I, signal?: AbortSignal): Promise<R> {
    if (signal?.aborted) return Promise.reject(aborted(signal, 'not-sent'));
    return new Promise<R>((resolve, reject) => {
      const p: Pending<I, R> = {
        item,
        bytes: this.#bytes(item),
        key: this.#conflictKey?.(item),
        signal,
        onAbort: undefined,
        timer: undefined,
        batch: undefined,
        done: false,
        resolve,
        reject,
      };
      if (signal !== undefined) {
        p.onAbort = () => {
          if (p.done) return;
          if (p.batch === undefined) this.#unqueue(p);
          this.#settle(p, { error: aborted(signal, p.batch === undefined ? 'not-sent' : 'sent') });
          if (p.batch !== undefined && p.batch.members.every((q) => q.done)) {
            p.batch.control?.abort(new Error('every caller of this batch has gone'));
          }
          this.#notifyIdle();
        };
        signal.addEventListener('abort', p.onAbort, { once: true });
      }
      this.#queue.push(p);
      this.#schedule();
    });
  }

  /**
   * Starts the queue clock of every item the pump left waiting. An item that leaves
   * in the pump that follows its submit (a lone call, or one in a turn's batch)
   * never needs a timer; the clock of one that stays starts at most one linger
   * later than its submit.
   */
  #armQueueTimers(): void {
    const ms = this.#queueTimeoutMs;
    if (ms === undefined) return;
    for (const p of this.#queue) {
      if (p.timer !== undefined || p.done) continue;
      p.timer = setTimeout(() => {
        if (p.batch !== undefined || p.done) return;
        this.#unqueue(p);
        const why = this.#queueTimeoutRestarts ? ' without a batch ahead of it finishing' : '';
        this.#settle(p, { error: new Determinate(ErrorCode.Unavailable, `${this.#what}: not sent: it waited ${ms} ms in the queue${why}`) });
        this.#notifyIdle();
      }, ms);
      p.timer.unref();
    }
  }

  /** Resolves once nothing is queued or in flight. */
  drain(): Promise<void> {
    if (this.#inflight === 0 && this.#queue.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idle.push(resolve));
  }

  #schedule(): void {
    if (!this.#linger) return this.#pump();
    if (this.#scheduled) return;
    this.#scheduled = true;
    const pump = () => {
      this.#scheduled = false;
      this.#pump();
    };
    if (this.#linger === 'microtasks') process.nextTick(pump);
    else setImmediate(pump);
  }

  #pump(): void {
    this.#formBatches();
    this.#armQueueTimers();
  }

  #formBatches(): void {
    const only = this.#queue.length === 1 ? this.#queue[0]! : undefined;
    if (only !== undefined && this.#inflight < this.#lanes && (only.key === undefined || !this.#inflightKeys.has(only.key))) {
      // A lone item (the common case when idle): the loop below would send it alone too.
      this.#queue = [];
      void this.#dispatch([only]);
      return;
    }
    while (this.#inflight < this.#lanes && this.#queue.length > 0) {
      const batch: Pending<I, R>[] = [];
      const keys = new Set<string>();
      const rest: Pending<I, R>[] = [];
      let bytes = 0;
      let full = false;
      for (const p of this.#queue) {
        if (full || batch.length >= this.#maxItems) {
          rest.push(p);
        } else if (p.key !== undefined && (keys.has(p.key) || this.#inflightKeys.has(p.key))) {
          rest.push(p);
        } else if (batch.length > 0 && bytes + p.bytes > this.#maxBytes) {
          // Stop here rather than let smaller items behind it overtake it for good.
          full = true;
          rest.push(p);
        } else {
          batch.push(p);
          bytes += p.bytes;
          if (p.key !== undefined) keys.add(p.key);
        }
      }
      if (batch.length === 0) return;
      this.#queue = rest;
      void this.#dispatch(batch);
    }
  }

  async #dispatch(members: Pending<I, R>[]): Promise<void> {
    this.#inflight++;
    const flight: Flight<I, R> = { members, control: members.some((p) => p.signal !== undefined) ? new AbortController() : undefined };
    for (const p of members) {
      p.batch = flight;
      clearTimeout(p.timer);
      if (p.key !== undefined) this.#inflightKeys.add(p.key);
    }
    let outcomes: readonly Settled<R>[];
    try {
      outcomes = await this.#run(
        members.map((p) => p.item),
        flight.control?.signal ?? NEVER_ABORTED,
      );
      if (!Array.isArray(outcomes) || outcomes.length !== members.length) {
        throw new Error(`the batch runner answered ${Array.isArray(outcomes) ? outcomes.length : String(outcomes)} outcomes for ${members.length} items`);
      }
    } catch (err) {
      const error =
        err instanceof ExternalError
          ? err
          : new Indeterminate(ErrorCode.Unknown, `${this.#what}: the batch failed after it was handed over: ${err instanceof Error ? err.message : String(err)}`, {
              cause: err,
            });
      outcomes = members.map(() => ({ error }));
    }
    for (const [i, p] of members.entries()) this.#settle(p, outcomes[i]);
    for (const p of members) if (p.key !== undefined) this.#inflightKeys.delete(p.key);
    this.#inflight--;
    if (this.#queueTimeoutRestarts) {
      for (const p of this.#queue) if (p.key === undefined || !this.#inflightKeys.has(p.key)) p.timer?.refresh();
    }
    if (this.#queue.length > 0) this.#schedule();
    this.#notifyIdle();
  }

  #unqueue(p: Pending<I, R>): void {
    this.#queue = this.#queue.filter((q) => q !== p);
  }

  #settle(p: Pending<I, R>, outcome: Settled<R> | undefined): void {
    if (p.done) return;
    p.done = true;
    clearTimeout(p.timer);
    if (p.onAbort !== undefined) p.signal?.removeEventListener('abort', p.onAbort);
    if (outcome !== null && typeof outcome === 'object' && 'value' in outcome) p.resolve(outcome.value);
    else if (outcome !== null && typeof outcome === 'object' && 'error' in outcome) p.reject(outcome.error);
    else p.reject(new Indeterminate(ErrorCode.Unknown, `${this.#what}: the batch runner gave this item no outcome`));
  }

  #notifyIdle(): void {
    if (this.#inflight > 0 || this.#queue.length > 0) return;
    for (const resolve of this.#idle.splice(0)) resolve();
  }
}
