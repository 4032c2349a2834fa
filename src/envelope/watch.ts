/**
 * `watch`: a key's heads as they change.
 */
import type { Consensus, VersionedData } from '../consensus.js';
import { invalidArgument } from '../errors.js';
import { backoffDelay, sleep, type BackoffPolicy } from '../kit/backoff.js';
import { changesOf } from './changes.js';
import { isRetrying, withRetry, type RetryPolicy } from './retry.js';

/** Options of {@link watch}. */
export interface WatchOptions {
  /** Ends the iteration (the loop then finishes without an error). */
  signal?: AbortSignal;
  /** How failed reads are retried (see withRetry); `false`: a failed read ends the watch with its error. */
  retry?: RetryPolicy | false;
  /**
   * Polling: the first pause after a read that found nothing new (default 5 ms);
   * each such pause doubles up to `maxPollMs`, and a change starts again from here.
   */
  minPollMs?: number;
  /**
   * The longest pause between reads (default 1000 ms). With the backend's own
   * notifications, reads happen on each notification and at least this often.
   */
  maxPollMs?: number;
}

/**
 * The heads of `key`, each newer than the one before (versions in between may be
 * skipped), starting with the current head if there is one, until `opts.signal`
 * fires. Where the handle has the backend's notifications (see changes.ts) each
 * one causes a read; elsewhere the key is polled, with pauses that grow while
 * nothing changes. Either way, once the key stops changing the watcher reads its
 * final head, and never yields an older head than one it yielded.
 */
export async function* watch(consensus: Consensus, key: string, opts: WatchOptions = {}): AsyncGenerator<VersionedData> {
  const minPollMs = opts.minPollMs ?? 5;
  const maxPollMs = opts.maxPollMs ?? 1000;
  if (!(minPollMs >= 0 && maxPollMs >= minPollMs && Number.isFinite(maxPollMs))) {
    throw invalidArgument(`watch: need 0 <= minPollMs <= maxPollMs (finite), got ${minPollMs} and ${maxPollMs}`);
  }
  const store = opts.retry === false || isRetrying(consensus) ? consensus : withRetry(consensus, opts.retry);
  const stop = new AbortController();
  const onAbort = () => stop.abort(opts.signal?.reason);
  if (opts.signal?.aborted) return;
  opts.signal?.addEventListener('abort', onAbort, { once: true });
  const changes = changesOf(consensus)?.(key, stop.signal)[Symbol.asyncIterator]();
  // Subscribed before the first read: a change after it is followed by a tick.
  if (changes !== undefined) nextTick(changes);
  const poll: BackoffPolicy = { attempts: Infinity, minDelayMs: minPollMs, maxDelayMs: maxPollMs, multiplier: 2, jitter: 0.1 };
  let last: VersionedData | undefined;
  try {
    for (let quiet = 0; !stop.signal.aborted; ) {
      let head: VersionedData | undefined;
      try {
        head = await store.head(key, { signal: stop.signal });
      } catch (err) {
        if (stop.signal.aborted) return;
        throw err;
      }
      if (head !== undefined && (last === undefined || head.seqno.value > last.seqno.value)) {
        last = head;
        quiet = 0;
        yield head;
      } else quiet++;
      if (!(await pause(changes, changes === undefined ? backoffDelay(poll, Math.max(1, quiet)) : maxPollMs, stop.signal))) return;
    }
  } finally {
    opts.signal?.removeEventListener('abort', onAbort);
    stop.abort();
    await changes?.return?.();
  }
}

/** Waits for a tick of `changes` or `ms`, whichever comes first; false once `signal` fired. */
async function pause(changes: AsyncIterator<void> | undefined, ms: number, signal: AbortSignal): Promise<boolean> {
  const local = new AbortController();
  const onAbort = () => local.abort();
  signal.addEventListener('abort', onAbort, { once: true });
  try {
    const timer = sleep(ms, local.signal).then(
      () => 'timer' as const,
      () => 'stopped' as const,
    );
    let woke: 'timer' | 'tick' | 'stopped';
    if (changes === undefined) woke = await timer;
    else {
      woke = await Promise.race([nextTick(changes), timer]);
      if (woke !== 'timer') pending.delete(changes);
    }
    return woke !== 'stopped' && !signal.aborted;
  } finally {
    local.abort();
    signal.removeEventListener('abort', onAbort);
  }
}

/** The tick being awaited from `changes`, asked for now if none is. */
function nextTick(changes: AsyncIterator<void>): Promise<'tick' | 'stopped'> {
  let tick = pending.get(changes);
  if (tick === undefined) {
    tick = changes.next().then((r) => (r.done === true ? 'stopped' : 'tick'));
    pending.set(changes, tick);
  }
  return tick;
}

/** A tick still awaited when a pause ended by its timer: the next pause waits for the same one. */
const pending = new WeakMap<AsyncIterator<void>, Promise<'tick' | 'stopped'>>();
