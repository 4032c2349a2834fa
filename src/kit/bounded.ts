/**
 * Bounded parallelism for the parts of one operation (ranges of a get, parts of
 * an upload): a few in flight, and the whole fails as soon as one part does.
 */
import { aborted } from '../errors.js';

/** Optional parts of {@link bounded}. */
export interface BoundedOptions {
  /** The caller's signal: no task starts once it fired, and the running ones see it. */
  signal?: AbortSignal | undefined;
}

/**
 * Runs `fn` for every item (or for 0 .. n-1 when `items` is a number n) with at
 * most `limit` running at once, and resolves to the results in item order.
 *
 * On the first failure no further task starts, the running ones see their signal
 * fire, and once they have all settled the promise rejects with that first
 * failure. When the caller's signal fires, likewise; if every task that started
 * then succeeded but some never started, it rejects with the abort
 * (Indeterminate once a task ran, Determinate if none did).
 */
export function bounded<R>(items: number, limit: number, fn: (item: number, index: number, signal: AbortSignal) => Promise<R>, options?: BoundedOptions): Promise<R[]>;
export function bounded<I, R>(items: Iterable<I>, limit: number, fn: (item: I, index: number, signal: AbortSignal) => Promise<R>, options?: BoundedOptions): Promise<R[]>;
export async function bounded<I, R>(
  items: Iterable<I> | number,
  limit: number,
  fn: (item: I, index: number, signal: AbortSignal) => Promise<R>,
  options: BoundedOptions = {},
): Promise<R[]> {
  if (!Number.isSafeInteger(limit) || limit < 1) throw new RangeError(`bounded: limit must be a positive integer, got ${limit}`);
  if (typeof items === 'number' && !(Number.isSafeInteger(items) && items >= 0)) {
    throw new RangeError(`bounded: a count of items must be a non-negative integer, got ${items}`);
  }
  const { signal } = options;
  if (signal?.aborted) throw aborted(signal, 'not-sent');
  const source: Iterator<I> = typeof items === 'number' ? (countUp(items) as Iterator<I>) : items[Symbol.iterator]();
  const known = typeof items === 'number' ? items : Array.isArray(items) ? items.length : Infinity;
  const control = new AbortController();
  const onAbort = () => control.abort(signal?.reason);
  signal?.addEventListener('abort', onAbort, { once: true });

  const results: R[] = [];
  let next = 0;
  let exhausted = false;
  let failure: { err: unknown } | undefined;
  const take = (): { item: I; index: number } | undefined => {
    if (failure !== undefined || control.signal.aborted || exhausted) return undefined;
    const step = source.next();
    if (step.done === true) {
      exhausted = true;
      return undefined;
    }
    return { item: step.value, index: next++ };
  };
  const worker = async (): Promise<void> => {
    for (let job = take(); job !== undefined; job = take()) {
      try {
        results[job.index] = await fn(job.item, job.index, control.signal);
      } catch (err) {
        if (failure === undefined) {
          failure = { err };
          control.abort(new Error('another task of the same operation failed'));
        }
      }
    }
  };
  try {
    await Promise.all(Array.from({ length: Math.min(limit, known) }, worker));
  } finally {
    signal?.removeEventListener('abort', onAbort);
  }
  if (failure !== undefined) throw failure.err;
  if (!exhausted && next < known) throw aborted(signal!, next > 0 ? 'sent' : 'not-sent');
  return results;
}

function* countUp(n: number): Generator<number> {
  for (let i = 0; i < n; i++) yield i;
}
