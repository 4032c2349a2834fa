/**
 * Backoff with jitter and the one retry loop.
 *
 * A retry loop must remember what its failed attempts may have done: once one
 * attempt failed in a way that may have been applied, a later refusal no longer
 * proves the operation did nothing. {@link retry} keeps that for its caller, so a
 * write retried after a lost connection never ends Determinate.
 */
import { setTimeout as pause } from 'node:timers/promises';
import { aborted, ExternalError, invalidArgument } from '../errors.js';
import { withDeadline } from './deadline.js';
import { atExposure, type Exposure } from './exposure.js';

/** How long to wait between attempts, and how many to make. */
export interface BackoffPolicy {
  /** Attempts in all, the first included: a positive integer, or Infinity (then a budget or `retryable` ends it). */
  attempts: number;
  /** The pause before the first retry. */
  minDelayMs: number;
  /** No pause is longer, jitter included. */
  maxDelayMs: number;
  /** Each pause is this many times the one before (at least 1). */
  multiplier: number;
  /** Each pause is scaled by a random factor in [1 - jitter, 1 + jitter]; in [0, 1]. */
  jitter: number;
}

/**
 * Materialize persist's schedule (4 ms, doubling, capped at 16 s, ±10% jitter),
 * over at most 10 attempts: about 2 s of pauses in all before the last.
 */
export const DEFAULT_BACKOFF: Readonly<BackoffPolicy> = Object.freeze({
  attempts: 10,
  minDelayMs: 4,
  maxDelayMs: 16_000,
  multiplier: 2,
  jitter: 0.1,
});

/** Rejects a malformed policy with Determinate InvalidArgument naming the field. */
export function validateBackoff(policy: unknown, what = 'backoff policy'): asserts policy is BackoffPolicy {
  if (typeof policy !== 'object' || policy === null) throw invalidArgument(`${what} must be an object`);
  const p = policy as Record<string, unknown>;
  const number = (field: string, ok: (n: number) => boolean, rule: string): void => {
    const v = p[field];
    if (typeof v !== 'number' || Number.isNaN(v) || !ok(v)) throw invalidArgument(`${what}: ${field} must be ${rule}, got ${String(v)}`);
  };
  number('attempts', (n) => n === Infinity || (Number.isSafeInteger(n) && n >= 1), 'a positive integer or Infinity');
  number('minDelayMs', (n) => Number.isFinite(n) && n >= 0, 'a non-negative number');
  number('maxDelayMs', (n) => Number.isFinite(n) && n >= (p.minDelayMs as number), 'a number no less than minDelayMs');
  number('multiplier', (n) => Number.isFinite(n) && n >= 1, 'a number of at least 1');
  number('jitter', (n) => n >= 0 && n <= 1, 'a number in [0, 1]');
}

/**
 * The pause before retry number `retry` (1 before the second attempt):
 * `minDelayMs * multiplier^(retry-1)`, jittered, never above `maxDelayMs`.
 */
export function backoffDelay(policy: BackoffPolicy, retry: number, random: () => number = Math.random): number {
  const grown = policy.minDelayMs === 0 ? 0 : policy.minDelayMs * policy.multiplier ** (retry - 1);
  const base = Math.min(policy.maxDelayMs, grown);
  const factor = 1 + policy.jitter * (2 * random() - 1);
  return Math.min(policy.maxDelayMs, Math.max(0, base * factor));
}

/**
 * Waits `ms`; when `signal` fires first, rejects at once with its abort as an
 * ExternalError at `exposure` (default `not-sent`: a pause sends nothing).
 */
export async function sleep(ms: number, signal?: AbortSignal, exposure: Exposure = 'not-sent'): Promise<void> {
  if (signal?.aborted) throw aborted(signal, exposure);
  try {
    await pause(ms, undefined, signal === undefined ? undefined : { signal });
  } catch (err) {
    if (signal?.aborted) throw aborted(signal, exposure);
    throw err;
  }
}

/** How {@link retry} retries. */
export interface RetryOptions {
  policy: BackoffPolicy;
  /** Whether the failure of attempt number `attempt` (from 1) is worth another attempt. */
  retryable(err: unknown, attempt: number): boolean;
  /** The caller's signal: stops the loop; an abort during a pause rejects at once. */
  signal?: AbortSignal | undefined;
  /** Gives up, with the last failure, rather than start a pause that would end more than this long after the first attempt began. */
  budgetMs?: number;
  /** Bounds each attempt (see withDeadline): its signal fires, and the attempt rejects Indeterminate Timeout. */
  attemptTimeoutMs?: number;
  /** Random source in [0, 1) for the jitter (default Math.random). */
  random?: () => number;
  /** Told before each pause. */
  onRetry?(err: unknown, attempt: number, delayMs: number): void;
}

/**
 * Runs `attempt` until it succeeds, its failure is not `retryable`, the attempts
 * or the budget run out, or the caller's signal fires; then rejects with the last
 * failure. `attempt` gets its number (from 1) and the signal to pass on.
 *
 * Attempts should reject with ExternalErrors. Once an attempt failed in a way
 * that may have been applied (Indeterminate, or anything that is not an
 * ExternalError), a later Determinate failure is rejected as Indeterminate with
 * the same code, and an abort during a pause is Indeterminate too; otherwise an
 * abort during a pause, or before the first attempt, is Determinate Cancelled.
 */
export async function retry<T>(attempt: (n: number, signal: AbortSignal | undefined) => Promise<T>, options: RetryOptions): Promise<T> {
  validateBackoff(options.policy);
  const { policy, signal } = options;
  const began = performance.now();
  let mayHaveApplied = false;
  const exposure = (): Exposure => (mayHaveApplied ? 'committed' : 'not-sent');
  for (let n = 1; ; n++) {
    if (signal?.aborted) throw aborted(signal, exposure());
    let failure: unknown;
    try {
      return await (options.attemptTimeoutMs === undefined
        ? attempt(n, signal)
        : withDeadline(signal, options.attemptTimeoutMs, (s) => attempt(n, s)));
    } catch (err) {
      failure = err;
    }
    const last = (): unknown => (mayHaveApplied && failure instanceof ExternalError ? atExposure(failure, 'committed') : failure);
    if (n >= policy.attempts || signal?.aborted || !options.retryable(failure, n)) throw last();
    const delayMs = backoffDelay(policy, n, options.random);
    if (options.budgetMs !== undefined && performance.now() - began + delayMs > options.budgetMs) throw last();
    if (!(failure instanceof ExternalError && failure.determinate)) mayHaveApplied = true;
    options.onRetry?.(failure, n, delayMs);
    await sleep(delayMs, signal, exposure());
  }
}
