/**
 * `withRetry`: a Consensus or Blob that retries what is safe to retry, with
 * exponential backoff and jitter (the loop is kit/backoff.ts's `retry`).
 *
 * What is retried, after a failure with a transient code ({@link isTransient}):
 *
 * - reads (head, scan, get, listings), whether the failure was Determinate or
 *   Indeterminate; a listing that fails part-way is started again and skips what
 *   it already yielded;
 * - Blob `set` and `restore`, which are idempotent;
 * - every write that failed Determinate (nothing was applied);
 * - a compareAndSet or truncate that failed Indeterminate, re-sent unchanged and
 *   settled as below. Blob `delete` likewise.
 *
 * Settling a write whose earlier attempt may have applied:
 *
 * - compareAndSet failed Indeterminate: the key is read at once (see `settle`
 *   below for the exact rules). `Committed` when the version at `next.seqno`
 *   holds exactly `next.data`; `ExpectationMismatch` when the reads prove it is
 *   not there and never will be; otherwise the write is re-sent, and an answer
 *   of ExpectationMismatch to the re-send is settled by reading the same way.
 *   When only greater seqnos remain, ours may have been truncated away and
 *   nothing can tell: Indeterminate.
 *   This is exact only when no two writers write the same bytes at the same seqno:
 *   put something unique in every write, such as a writer id and a counter.
 * - truncate first reads the key's lowest version: when none is below the seqno,
 *   it answers 0 without writing (nothing below the head's seqno ever reappears).
 * - truncate refused with FailedPrecondition (no data, or past the head): exact,
 *   since the head never goes back, so no earlier attempt could have applied.
 * - truncate answered a count n > 0: an earlier attempt that applied would have
 *   left nothing below the seqno to delete, so n is this call's whole count. An
 *   answer of 0 cannot tell "nothing was there" from "an earlier attempt deleted
 *   it": Indeterminate (the versions below the seqno are gone either way).
 * - delete first lists the key. A re-send answering `undefined` is
 *   Indeterminate (as for truncate) unless the key was missing then (a value
 *   another writer sets while the delete is retried may then be deleted and
 *   reported missing); a size is exact.
 * - reads never turn Indeterminate by being retried: a read that finally fails
 *   rejects with its own last error.
 *
 * A Determinate InvalidArgument is final whatever came before: every attempt
 * sends the same arguments.
 *
 * A write that is still unsettled when the attempts run out rejects Indeterminate,
 * never Determinate. The caller's signal stops the loop at once.
 */
import type { Blob, BlobMetadata } from '../blob.js';
import { CaSResult, type Consensus, type OpOptions, type VersionedData } from '../consensus.js';
import { Determinate, ErrorCode, ExternalError, Indeterminate, invalidArgument } from '../errors.js';
import { DEFAULT_BACKOFF, retry, validateBackoff, type BackoffPolicy } from '../kit/backoff.js';
import { SeqNo } from '../seqno.js';
import { WrappedBlob, WrappedConsensus } from '../wrap.js';
import { validateCompareAndSet, validateKey, validateSignal, validateValue } from '../validate.js';
import { copyBytes } from '../bytes.js';

/** How {@link withRetry} retries; every field is optional (see {@link DEFAULT_RETRY}). */
export interface RetryPolicy {
  /** Attempts in all, the first included: a positive integer, or Infinity. */
  attempts?: number;
  /** The pause before the first retry; each later one doubles, ±10% jitter. */
  minDelayMs?: number;
  /** No pause is longer. */
  maxDelayMs?: number;
  /** Each attempt that takes longer rejects Indeterminate Timeout (and may be retried). */
  attemptTimeoutMs?: number;
}

/**
 * The defaults: Materialize persist's schedule (4 ms doubling to 16 s, ±10%) over
 * 13 attempts, so about 16 s of pauses in all: enough to ride out a server restart.
 */
export const DEFAULT_RETRY: Readonly<Required<Omit<RetryPolicy, 'attemptTimeoutMs'>>> = Object.freeze({
  attempts: 13,
  minDelayMs: DEFAULT_BACKOFF.minDelayMs,
  maxDelayMs: DEFAULT_BACKOFF.maxDelayMs,
});

/** The codes worth another attempt: the store may answer differently soon. */
const TRANSIENT: ReadonlySet<ErrorCode> = new Set<ErrorCode>([ErrorCode.Unavailable, ErrorCode.Aborted, ErrorCode.Timeout, ErrorCode.Unknown]);

/** Whether `err` is a storage failure that another attempt may not meet. */
export function isTransient(err: unknown): boolean {
  return err instanceof ExternalError && TRANSIENT.has(err.code) && !unsettled.has(err);
}

/** Failures that settle a write as unknowable: never retried. */
const unsettled = new WeakSet<object>();

function cannotSettle(what: string): Indeterminate {
  const err = new Indeterminate(ErrorCode.Unknown, `${what}; an earlier attempt may have applied and reading cannot tell`);
  unsettled.add(err);
  return err;
}

/** Marks stores made by withRetry, so that `update` and `watch` do not retry twice. */
const RETRYING = Symbol('persist-location.retrying');

/** Whether `store` is a withRetry wrapper (directly). */
export function isRetrying(store: object): boolean {
  return (store as { [RETRYING]?: boolean })[RETRYING] === true;
}

/** `policy` checked and completed into the kit's backoff policy. */
export function backoffOf(policy: RetryPolicy = {}): { backoff: BackoffPolicy; attemptTimeoutMs: number | undefined } {
  if (typeof policy !== 'object' || policy === null) throw invalidArgument('a retry policy must be an object');
  const backoff: BackoffPolicy = {
    ...DEFAULT_BACKOFF,
    attempts: policy.attempts ?? DEFAULT_RETRY.attempts,
    minDelayMs: policy.minDelayMs ?? DEFAULT_RETRY.minDelayMs,
    maxDelayMs: policy.maxDelayMs ?? Math.max(DEFAULT_RETRY.maxDelayMs, policy.minDelayMs ?? 0),
  };
  validateBackoff(backoff, 'retry policy');
  const { attemptTimeoutMs } = policy;
  if (attemptTimeoutMs !== undefined && !(typeof attemptTimeoutMs === 'number' && attemptTimeoutMs > 0)) {
    throw invalidArgument(`retry policy: attemptTimeoutMs must be a positive number, got ${String(attemptTimeoutMs)}`);
  }
  return { backoff, attemptTimeoutMs };
}

/** Consensus or Blob, retried as the module comment says. */
export function withRetry(store: Consensus, policy?: RetryPolicy): Consensus;
export function withRetry(store: Blob, policy?: RetryPolicy): Blob;
export function withRetry(store: Consensus | Blob, policy?: RetryPolicy): Consensus | Blob {
  return 'compareAndSet' in store ? new RetryingConsensus(store, policy) : new RetryingBlob(store as Blob, policy);
}

type Runner = <T>(signal: AbortSignal | undefined, attempt: (signal: AbortSignal | undefined) => Promise<T>) => Promise<T>;

/**
 * A refusal that is exact whatever earlier attempts did, carried past the retry
 * loop (which would otherwise call it Indeterminate after an unknown outcome).
 * Not an ExternalError, so the loop neither retries nor re-judges it.
 */
class Exact {
  constructor(readonly error: ExternalError) {}
}

function runner(policy: RetryPolicy | undefined): Runner {
  const { backoff, attemptTimeoutMs } = backoffOf(policy);
  return (signal, attempt) => {
    try {
      // The loop waits on the signal itself: a malformed one is refused first.
      validateSignal({ signal });
    } catch (err) {
      return Promise.reject(err);
    }
    return retry(
      async (_n, s) => {
        try {
          return await attempt(s);
        } catch (err) {
          // The same arguments every attempt: a malformed request never applied.
          if (err instanceof Determinate && err.code === ErrorCode.InvalidArgument) throw new Exact(err);
          throw err;
        }
      },
      { policy: backoff, signal, attemptTimeoutMs, retryable: isTransient },
    ).catch((err: unknown) => {
      throw err instanceof Exact ? err.error : err;
    });
  };
}

/**
 * A read's failure carried through the retry loop as Determinate, so that the
 * loop never takes a read for a write that may have applied (it would turn a
 * later refusal Indeterminate); the read's own error is what the caller gets.
 */
class ReadFailure extends Determinate {
  constructor(readonly original: ExternalError) {
    super(original.code, original.message, { cause: original });
  }
}

/** {@link runner} for operations that change nothing. */
function readRunner(run: Runner): Runner {
  return (signal, attempt) =>
    run(signal, (s) =>
      attempt(s).catch((err: unknown) => {
        throw err instanceof ExternalError && !err.determinate ? new ReadFailure(err) : err;
      }),
    ).catch((err: unknown) => {
      throw err instanceof ReadFailure ? err.original : err;
    });
}

const withSignal = (opts: OpOptions | undefined, signal: AbortSignal | undefined): OpOptions | undefined =>
  signal === undefined ? opts : { ...opts, signal };

/** Marks the write as possibly applied when `err` says so, and rethrows it. */
function noting(err: unknown, mark: () => void): never {
  if (!(err instanceof ExternalError && err.determinate)) mark();
  throw err;
}

class RetryingConsensus extends WrappedConsensus {
  readonly [RETRYING] = true;

  constructor(inner: Consensus, policy: RetryPolicy | undefined) {
    const run = runner(policy);
    const read = readRunner(run);
    super(inner, {
      head: (forward, key, opts) => read(opts?.signal, (s) => forward(key, withSignal(opts, s))),
      scan: (forward, key, from, limit, opts) => read(opts?.signal, (s) => forward(key, from, limit, withSignal(opts, s))),
      listKeys: (forward, opts) => restartable((s) => forward(withSignal(opts, s)), (k) => k, opts?.signal, read),
      compareAndSet: (forward, key, expected, given, opts) => {
        // Checked and copied now: every attempt sends what the caller passed, even if
        // the caller changes its objects while we retry.
        try {
          validateCompareAndSet(key, expected, given);
        } catch (err) {
          return Promise.reject(err);
        }
        const next: VersionedData = { seqno: new SeqNo(given.seqno.value), data: copyBytes(given.data) };
        let uncertain = false;
        return run(opts?.signal, async (s) => {
          let result: CaSResult;
          try {
            result = await forward(key, expected, next, withSignal(opts, s));
          } catch (err) {
            const now = err instanceof ExternalError && !err.determinate ? await settledNow(inner, key, expected, next, withSignal(opts, s)) : undefined;
            if (now !== undefined) return now;
            noting(err, () => (uncertain = true));
          }
          if (result === CaSResult.Committed || !uncertain) return result;
          return settleCaS(inner, key, expected, next, withSignal(opts, s));
        });
      },
      truncate: async (forward, key, seqno, opts) => {
        // Nothing below the seqno now means nothing below it ever again (new versions
        // go above the head): the answer is 0 without a write, and no retry can blur it.
        const [lowest] = await read(opts?.signal, (s) => inner.scan(key, SeqNo.minimum(), 1, withSignal(opts, s)));
        if (lowest !== undefined && lowest.seqno.value >= seqno.value) return 0;
        let uncertain = false;
        return run(opts?.signal, async (s) => {
          let deleted: number;
          try {
            deleted = await forward(key, seqno, withSignal(opts, s));
          } catch (err) {
            // No data, or past the head: exact whatever came before, since the head
            // never goes back, so no earlier attempt could have applied either.
            if (err instanceof Determinate && err.code === ErrorCode.FailedPrecondition) throw new Exact(err);
            noting(err, () => (uncertain = true));
          }
          if (deleted === 0 && uncertain) throw cannotSettle(`truncate(${JSON.stringify(key)}, ${seqno}) deleted nothing when re-sent`);
          return deleted;
        });
      },
    });
  }
}

/**
 * What reading `key` says of a compareAndSet of `next` expecting `expected` that
 * may have applied (ours below; its bytes are unique, see the module comment):
 *
 * - `Committed`: the version at `next.seqno` holds exactly `next.data`.
 * - `ExpectationMismatch`: ours is not there and never will be. Either another
 *   version holds `next.seqno`; or the head is below `next.seqno` but past
 *   `expected` (had ours applied, the head would be at least `next.seqno`; and
 *   the head never comes back to `expected`); or the head is past `next.seqno`
 *   while a version below `next.seqno` is still there (a truncate that removed
 *   ours would have removed that one too).
 * - `open`: ours is not there yet but may still apply (the head is `expected`,
 *   below it, or the key is empty).
 * - `unknown`: only greater versions remain: ours may have been truncated away.
 */
async function settle(inner: Consensus, key: string, expected: SeqNo | undefined, next: VersionedData, opts: OpOptions | undefined): Promise<CaSResult | 'open' | 'unknown'> {
  const head = await inner.head(key, opts);
  if (head === undefined) return 'open';
  const h = head.seqno.value;
  if (h === next.seqno.value) return sameBytes(head.data, next.data) ? CaSResult.Committed : CaSResult.ExpectationMismatch;
  if (h < next.seqno.value) return expected === undefined || h > expected.value ? CaSResult.ExpectationMismatch : 'open';
  const [found] = await inner.scan(key, next.seqno, 1, opts);
  if (found !== undefined && found.seqno.value === next.seqno.value) {
    return sameBytes(found.data, next.data) ? CaSResult.Committed : CaSResult.ExpectationMismatch;
  }
  const [lowest] = await inner.scan(key, SeqNo.minimum(), 1, opts);
  return lowest !== undefined && lowest.seqno.value < next.seqno.value ? CaSResult.ExpectationMismatch : 'unknown';
}

/** {@link settle} read at once after an unknown outcome, when it decides; a failed read decides nothing. */
async function settledNow(
  inner: Consensus,
  key: string,
  expected: SeqNo | undefined,
  next: VersionedData,
  opts: OpOptions | undefined,
): Promise<CaSResult | undefined> {
  let said: Awaited<ReturnType<typeof settle>> | undefined;
  // A few quick tries: a read is safe to repeat, and an answer now saves a re-send.
  for (let i = 0; i < 3 && said === undefined && !opts?.signal?.aborted; i++) said = await settle(inner, key, expected, next, opts).catch(() => undefined);
  return said === CaSResult.Committed || said === CaSResult.ExpectationMismatch ? said : undefined;
}

/** The outcome of a compareAndSet re-sent after an unknown outcome and answered ExpectationMismatch. */
async function settleCaS(inner: Consensus, key: string, expected: SeqNo | undefined, next: VersionedData, opts: OpOptions | undefined): Promise<CaSResult> {
  const said = await settle(inner, key, expected, next, opts);
  if (said === 'unknown') throw cannotSettle(`compareAndSet(${JSON.stringify(key)}) at ${next.seqno}: that version may have been truncated away`);
  // The head is not past `expected`: an earlier attempt may still land. Send it again.
  if (said === 'open') throw new Indeterminate(ErrorCode.Unavailable, `compareAndSet(${JSON.stringify(key)}) at ${next.seqno}: an earlier attempt may still apply`);
  return said;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.byteLength !== b.byteLength) return false;
  for (let i = 0; i < a.byteLength; i++) if (a[i] !== b[i]) return false;
  return true;
}

class RetryingBlob extends WrappedBlob {
  readonly [RETRYING] = true;

  constructor(inner: Blob, policy: RetryPolicy | undefined) {
    const run = runner(policy);
    const read = readRunner(run);
    super(inner, {
      get: (forward, key, opts) => read(opts?.signal, (s) => forward(key, withSignal(opts, s))),
      set: (forward, key, value, opts) => {
        try {
          validateValue(value);
        } catch (err) {
          return Promise.reject(err);
        }
        const copy = copyBytes(value);
        return run(opts?.signal, (s) => forward(key, copy, withSignal(opts, s)));
      },
      restore: (forward, key, opts) => run(opts?.signal, (s) => forward(key, withSignal(opts, s))),
      list: (forward, prefix, opts) => restartable((s) => forward(prefix, withSignal(opts, s)), (m: BlobMetadata) => m.key, opts?.signal, read),
      delete: async (forward, key, opts) => {
        validateKey(key);
        // Listed first: a key missing now makes a re-send's "missing" the answer.
        const missingBefore = (await read(opts?.signal, (s) => listedSize(inner, key, withSignal(opts, s)))) === 'missing';
        let uncertain = false;
        return run(opts?.signal, async (s) => {
          let size: number | undefined;
          try {
            size = await forward(key, withSignal(opts, s));
          } catch (err) {
            noting(err, () => (uncertain = true));
          }
          if (size === undefined && uncertain && !missingBefore) throw cannotSettle(`delete(${JSON.stringify(key)}) found nothing when re-sent`);
          return size;
        });
      },
    });
  }
}

/** Whether `key` is listed, looking at up to 100 entries under it as a prefix; `unsure` beyond. */
async function listedSize(inner: Blob, key: string, opts: OpOptions | undefined): Promise<'listed' | 'missing' | 'unsure'> {
  let seen = 0;
  for await (const m of inner.list(key, opts)) {
    if (m.key === key) return 'listed';
    if (++seen >= 100) return 'unsure';
  }
  return 'missing';
}

/**
 * A listing that, when a step fails transiently, is started again (after the
 * backoff) and skips the items it already yielded, by `id`.
 */
async function* restartable<T>(
  start: (signal: AbortSignal | undefined) => AsyncIterable<T>,
  id: (item: T) => string,
  signal: AbortSignal | undefined,
  run: Runner,
): AsyncGenerator<T> {
  const seen = new Set<string>();
  let it: AsyncIterator<T> | undefined;
  try {
    for (;;) {
      const step = await run(signal, async (s) => {
        try {
          it ??= start(s)[Symbol.asyncIterator]();
          for (;;) {
            const r = await it.next();
            if (r.done === true || !seen.has(id(r.value))) return r;
          }
        } catch (err) {
          const failed = it;
          it = undefined;
          await failed?.return?.().catch(() => undefined);
          throw err;
        }
      });
      if (step.done === true) return;
      seen.add(id(step.value));
      yield step.value;
    }
  } finally {
    await it?.return?.();
  }
}

