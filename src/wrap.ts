/**
 * The one way to write a decorator of a Consensus or a Blob (metrics, tracing,
 * retries, fault injection, a gate): name the operations to intercept, and the
 * wrapper forwards everything else to the inner store unchanged.
 *
 * ```ts
 * const counted = wrapConsensus(inner, {
 *   around: (op, args, run) => { calls[op]++; return run(); },
 *   compareAndSet: (forward, key, expected, next, opts) => forward(key, expected, next, opts),
 * });
 * ```
 *
 * - A method hook gets `forward` (the inner store's method, bound) and the call's
 *   arguments; it may call `forward` any number of times, or not at all.
 * - `around` sees every single-answer operation (not the listings): the name, the
 *   arguments, and `run`, which calls the method hook, if any, else the inner store.
 * - A listing hook returns the iterable the caller gets. Writing it as an async
 *   generator that `yield*`s `forward(...)` makes a `break` in the caller's loop
 *   release the inner listing.
 * - `step` sees every step of a listing the way `around` sees a call: each `next`,
 *   and the `return` a `break` sends, with the listing's name and arguments. The
 *   listing (the hook's, else the inner store's) is started inside the first step.
 *   {@link stepwise} does the same for one iterable.
 * - `close` runs once, however often the wrapper is closed (a hook gets the inner
 *   store's close as `forward`); `[Symbol.asyncDispose]` is close.
 * - Wrappers compose by nesting, in any order. A hook that throws rejects the call
 *   (or, in a listing, the step).
 *
 * A Blob's `maxKeyBytes` (the lower key cap an object store publishes) shows
 * through the wrapper, so that what is wrapped still tells its callers its cap,
 * and a Consensus's changes method (envelope/changes.ts) shows through, so that
 * `watch` on a wrapped store still gets the backend's notifications.
 *
 * A wrapper with state of its own can be a class: extend {@link WrappedConsensus}
 * or {@link WrappedBlob} and hand the interceptor to `super`.
 */
import type { Blob, BlobMetadata } from './blob.js';
import type { CaSResult, Consensus, OpOptions, VersionedData } from './consensus.js';
import type { SegmentedBytes } from './segmented-bytes.js';
import type { SeqNo } from './seqno.js';
import { CHANGES, changesOf } from './envelope/changes.js';

/** The single-answer operations of a Consensus. */
export type ConsensusOp = 'head' | 'compareAndSet' | 'scan' | 'truncate';
/** The single-answer operations of a Blob. */
export type BlobOp = 'get' | 'set' | 'delete' | 'restore';

/** Runs around one operation (or one step of a listing): must settle like `run()` or fail it. */
export type Around<Op extends string> = <T>(op: Op, args: readonly unknown[], run: () => Promise<T>) => Promise<T>;

/** The parts of a Consensus a wrapper intercepts; see the module comment. */
export interface ConsensusInterceptor {
  around?: Around<ConsensusOp>;
  step?: Around<'listKeys'>;
  listKeys?(forward: Consensus['listKeys'], opts?: OpOptions): AsyncIterable<string>;
  head?(forward: Consensus['head'], key: string, opts?: OpOptions): Promise<VersionedData | undefined>;
  compareAndSet?(
    forward: Consensus['compareAndSet'],
    key: string,
    expected: SeqNo | undefined,
    next: VersionedData,
    opts?: OpOptions,
  ): Promise<CaSResult>;
  scan?(forward: Consensus['scan'], key: string, from: SeqNo, limit: number, opts?: OpOptions): Promise<VersionedData[]>;
  truncate?(forward: Consensus['truncate'], key: string, seqno: SeqNo, opts?: OpOptions): Promise<number>;
  close?(forward: () => Promise<void>): Promise<void>;
}

/** The parts of a Blob a wrapper intercepts; see the module comment. */
export interface BlobInterceptor {
  around?: Around<BlobOp>;
  step?: Around<'list'>;
  get?(forward: Blob['get'], key: string, opts?: OpOptions): Promise<SegmentedBytes | undefined>;
  list?(forward: Blob['list'], prefix?: string, opts?: OpOptions): AsyncIterable<BlobMetadata>;
  set?(forward: Blob['set'], key: string, value: Uint8Array, opts?: OpOptions): Promise<void>;
  delete?(forward: Blob['delete'], key: string, opts?: OpOptions): Promise<number | undefined>;
  restore?(forward: Blob['restore'], key: string, opts?: OpOptions): Promise<void>;
  close?(forward: () => Promise<void>): Promise<void>;
}

/** A Consensus that runs an interceptor around an inner one; see the module comment. */
export class WrappedConsensus implements Consensus {
  readonly listKeys: Consensus['listKeys'];
  readonly head: Consensus['head'];
  readonly compareAndSet: Consensus['compareAndSet'];
  readonly scan: Consensus['scan'];
  readonly truncate: Consensus['truncate'];
  readonly close: () => Promise<void>;

  constructor(inner: Consensus, interceptor: ConsensusInterceptor) {
    const { around } = interceptor;
    const hook = <K extends keyof ConsensusInterceptor>(name: K) => bound(interceptor, name);
    this.listKeys = listing('listKeys', (opts) => inner.listKeys(opts), hook('listKeys'), interceptor.step);
    this.head = operation('head', (key, opts) => inner.head(key, opts), hook('head'), around);
    this.compareAndSet = operation(
      'compareAndSet',
      (key, expected, next, opts) => inner.compareAndSet(key, expected, next, opts),
      hook('compareAndSet'),
      around,
    );
    this.scan = operation('scan', (key, from, limit, opts) => inner.scan(key, from, limit, opts), hook('scan'), around);
    this.truncate = operation('truncate', (key, seqno, opts) => inner.truncate(key, seqno, opts), hook('truncate'), around);
    this.close = closeOnce(inner, hook('close'));
    const changes = changesOf(inner);
    if (changes !== undefined) Object.defineProperty(this, CHANGES, { value: changes });
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/** A Blob that runs an interceptor around an inner one; see the module comment. */
export class WrappedBlob implements Blob {
  readonly get: Blob['get'];
  readonly list: Blob['list'];
  readonly set: Blob['set'];
  readonly delete: Blob['delete'];
  readonly restore: Blob['restore'];
  readonly close: () => Promise<void>;

  constructor(inner: Blob, interceptor: BlobInterceptor) {
    const { around } = interceptor;
    const hook = <K extends keyof BlobInterceptor>(name: K) => bound(interceptor, name);
    this.get = operation('get', (key, opts) => inner.get(key, opts), hook('get'), around);
    this.list = listing('list', (prefix, opts) => inner.list(prefix, opts), hook('list'), interceptor.step);
    this.set = operation('set', (key, value, opts) => inner.set(key, value, opts), hook('set'), around);
    this.delete = operation('delete', (key, opts) => inner.delete(key, opts), hook('delete'), around);
    this.restore = operation('restore', (key, opts) => inner.restore(key, opts), hook('restore'), around);
    this.close = closeOnce(inner, hook('close'));
    if (typeof (inner as { maxKeyBytes?: unknown }).maxKeyBytes === 'number') {
      Object.defineProperty(this, 'maxKeyBytes', { get: () => (inner as unknown as { maxKeyBytes: number }).maxKeyBytes, enumerable: true });
    }
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/** A Consensus that runs `interceptor` around `inner`. */
export function wrapConsensus(inner: Consensus, interceptor: ConsensusInterceptor): Consensus {
  return new WrappedConsensus(inner, interceptor);
}

/** A Blob that runs `interceptor` around `inner`. */
export function wrapBlob(inner: Blob, interceptor: BlobInterceptor): Blob {
  return new WrappedBlob(inner, interceptor);
}

/**
 * `source` with every step of its iteration (each `next`, and the `return` that a
 * `break` sends) run through `step`, e.g. to count, gate or fail them like calls.
 * The inner iterator is created at the first step, and a `break` reaches it.
 */
export function stepwise<T>(source: AsyncIterable<T> | (() => AsyncIterable<T>), step: <R>(run: () => Promise<R>) => Promise<R>): AsyncIterable<T> {
  const start = typeof source === 'function' ? source : () => source;
  return {
    [Symbol.asyncIterator](): AsyncIterator<T> {
      let it: AsyncIterator<T> | undefined;
      return {
        next: () => settle(() => step(() => (it ??= start()[Symbol.asyncIterator]()).next())),
        return: (value?: unknown) =>
          settle(() => step(async (): Promise<IteratorResult<T>> => (await it?.return?.(value)) ?? { done: true, value: undefined })),
      };
    },
  };
}

/** The hook `name` of `interceptor`, bound to it, if it has one. */
function bound<I extends object, K extends keyof I>(interceptor: I, name: K): I[K] | undefined {
  const hook = interceptor[name];
  return typeof hook === 'function' ? (hook.bind(interceptor) as I[K]) : undefined;
}

function operation<A extends unknown[], R, Op extends string>(
  op: Op,
  forward: (...args: A) => Promise<R>,
  hook: ((forward: (...args: A) => Promise<R>, ...args: A) => Promise<R>) | undefined,
  around: Around<Op> | undefined,
): (...args: A) => Promise<R> {
  const direct = hook === undefined ? forward : (...args: A) => hook(forward, ...args);
  const run = around === undefined ? direct : (...args: A) => around(op, args, () => direct(...args));
  return (...args: A) => settle(() => run(...args));
}

/** What `fn` returns, as a promise that also carries what it throws. */
function settle<R>(fn: () => R | Promise<R>): Promise<R> {
  try {
    return Promise.resolve(fn());
  } catch (err) {
    return Promise.reject(err);
  }
}

function listing<A extends unknown[], T, Op extends string>(
  op: Op,
  forward: (...args: A) => AsyncIterable<T>,
  hook: ((forward: (...args: A) => AsyncIterable<T>, ...args: A) => AsyncIterable<T>) | undefined,
  step: Around<Op> | undefined,
): (...args: A) => AsyncIterable<T> {
  const direct = hook === undefined ? forward : (...args: A) => hook(forward, ...args);
  if (step === undefined) return direct;
  return (...args: A) => stepwise(() => direct(...args), (run) => step(op, args, run));
}

function closeOnce(inner: { close(): Promise<void> }, hook: ((forward: () => Promise<void>) => Promise<void>) | undefined): () => Promise<void> {
  let closing: Promise<void> | undefined;
  const forward = () => inner.close();
  return () => (closing ??= settle(() => (hook === undefined ? forward() : hook(forward))));
}
