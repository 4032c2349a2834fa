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
 *   release the inner listing; {@link stepwise} intercepts each step instead.
 * - `close` runs once, however often the wrapper is closed (a hook gets the inner
 *   store's close as `forward`); `[Symbol.asyncDispose]` is close.
 * - Wrappers compose by nesting, in any order. A hook that throws rejects the call.
 *
 * A Blob's `maxKeyBytes` (the lower key cap an object store publishes) shows
 * through the wrapper, so that what is wrapped still tells its callers its cap.
 */
import type { Blob, BlobMetadata } from './blob.js';
import type { CaSResult, Consensus, OpOptions, VersionedData } from './consensus.js';
import type { SegmentedBytes } from './segmented-bytes.js';
import type { SeqNo } from './seqno.js';

/** The single-answer operations of a Consensus. */
export type ConsensusOp = 'head' | 'compareAndSet' | 'scan' | 'truncate';
/** The single-answer operations of a Blob. */
export type BlobOp = 'get' | 'set' | 'delete' | 'restore';

/** Runs around one operation: must settle like `run()` or fail it. */
export type Around<Op extends string> = <T>(op: Op, args: readonly unknown[], run: () => Promise<T>) => Promise<T>;

/** The parts of a Consensus a wrapper intercepts; see the module comment. */
export interface ConsensusInterceptor {
  around?: Around<ConsensusOp>;
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
  get?(forward: Blob['get'], key: string, opts?: OpOptions): Promise<SegmentedBytes | undefined>;
  list?(forward: Blob['list'], prefix?: string, opts?: OpOptions): AsyncIterable<BlobMetadata>;
  set?(forward: Blob['set'], key: string, value: Uint8Array, opts?: OpOptions): Promise<void>;
  delete?(forward: Blob['delete'], key: string, opts?: OpOptions): Promise<number | undefined>;
  restore?(forward: Blob['restore'], key: string, opts?: OpOptions): Promise<void>;
  close?(forward: () => Promise<void>): Promise<void>;
}

/** A Consensus that runs `interceptor` around `inner`. */
export function wrapConsensus(inner: Consensus, interceptor: ConsensusInterceptor): Consensus {
  const { around } = interceptor;
  const close = closeOnce(inner, interceptor.close?.bind(interceptor));
  return {
    listKeys: listing((opts) => inner.listKeys(opts), interceptor.listKeys?.bind(interceptor)),
    head: operation('head', (key, opts) => inner.head(key, opts), interceptor.head?.bind(interceptor), around),
    compareAndSet: operation(
      'compareAndSet',
      (key, expected, next, opts) => inner.compareAndSet(key, expected, next, opts),
      interceptor.compareAndSet?.bind(interceptor),
      around,
    ),
    scan: operation('scan', (key, from, limit, opts) => inner.scan(key, from, limit, opts), interceptor.scan?.bind(interceptor), around),
    truncate: operation('truncate', (key, seqno, opts) => inner.truncate(key, seqno, opts), interceptor.truncate?.bind(interceptor), around),
    close,
    [Symbol.asyncDispose]: close,
  };
}

/** A Blob that runs `interceptor` around `inner`. */
export function wrapBlob(inner: Blob, interceptor: BlobInterceptor): Blob {
  const { around } = interceptor;
  const close = closeOnce(inner, interceptor.close?.bind(interceptor));
  const wrapped: Blob = {
    get: operation('get', (key, opts) => inner.get(key, opts), interceptor.get?.bind(interceptor), around),
    list: listing((prefix, opts) => inner.list(prefix, opts), interceptor.list?.bind(interceptor)),
    set: operation('set', (key, value, opts) => inner.set(key, value, opts), interceptor.set?.bind(interceptor), around),
    delete: operation('delete', (key, opts) => inner.delete(key, opts), interceptor.delete?.bind(interceptor), around),
    restore: operation('restore', (key, opts) => inner.restore(key, opts), interceptor.restore?.bind(interceptor), around),
    close,
    [Symbol.asyncDispose]: close,
  };
  if (typeof (inner as { maxKeyBytes?: unknown }).maxKeyBytes === 'number') {
    Object.defineProperty(wrapped, 'maxKeyBytes', { get: () => (inner as unknown as { maxKeyBytes: number }).maxKeyBytes, enumerable: true });
  }
  return wrapped;
}

/**
 * `source` with every step of its iteration (each `next`, and the `return` that a
 * `break` sends) run through `step`, e.g. to count, gate or fail them like calls.
 * The inner iterator is created at the first step, and a `break` reaches it.
 */
export function stepwise<T>(source: AsyncIterable<T>, step: <R>(run: () => Promise<R>) => Promise<R>): AsyncIterable<T> {
  return {
    [Symbol.asyncIterator](): AsyncIterator<T> {
      let it: AsyncIterator<T> | undefined;
      return {
        next: () => step(() => (it ??= source[Symbol.asyncIterator]()).next()),
        return: (value?: unknown) =>
          step(async (): Promise<IteratorResult<T>> => (await it?.return?.(value)) ?? { done: true, value: undefined }),
      };
    },
  };
}

function operation<A extends unknown[], R, Op extends string>(
  op: Op,
  forward: (...args: A) => Promise<R>,
  hook: ((forward: (...args: A) => Promise<R>, ...args: A) => Promise<R>) | undefined,
  around: Around<Op> | undefined,
): (...args: A) => Promise<R> {
  const direct = hook === undefined ? forward : (...args: A) => hook(forward, ...args);
  const run = around === undefined ? direct : (...args: A) => around(op, args, () => direct(...args));
  return (...args: A) => {
    try {
      return Promise.resolve(run(...args));
    } catch (err) {
      return Promise.reject(err);
    }
  };
}

function listing<A extends unknown[], T>(
  forward: (...args: A) => AsyncIterable<T>,
  hook: ((forward: (...args: A) => AsyncIterable<T>, ...args: A) => AsyncIterable<T>) | undefined,
): (...args: A) => AsyncIterable<T> {
  return hook === undefined ? forward : (...args: A) => hook(forward, ...args);
}

function closeOnce(inner: { close(): Promise<void> }, hook: ((forward: () => Promise<void>) => Promise<void>) | undefined): () => Promise<void> {
  let closing: Promise<void> | undefined;
  const forward = () => inner.close();
  return () => {
    if (closing === undefined) {
      try {
        closing = Promise.resolve(hook === undefined ? forward() : hook(forward));
      } catch (err) {
        closing = Promise.reject(err);
      }
    }
    return closing;
  };
}
