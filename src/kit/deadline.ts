/**
 * Racing work against the caller's signal and a deadline, in one place.
 *
 * The work gets one signal that fires on either; the race does not wait for the
 * work to notice: some drivers cannot be interrupted (a statement on a pooled
 * connection, an etcd3 call fetching its auth token), so the caller is answered
 * at once and the work's own outcome, when it comes, is dropped (or handed to
 * `onLate` to dispose of).
 */
import { aborted, ErrorCode, ExternalError } from '../errors.js';
import { externalError, type Exposure } from './exposure.js';

/** What cut the work off. */
export type CutOff = 'signal' | 'deadline';

/** Optional parts of {@link withDeadline}. */
export interface DeadlineOptions<T> {
  /**
   * How far the work had got when it was cut off, for the default error (default
   * `sent`: the work was running). Not asked when the work never started.
   */
  exposure?: () => Exposure;
  /**
   * The error to reject with when the work is cut off, instead of the default
   * (the abort for `signal`, {@link deadlineExceeded} for `deadline`). `started`
   * is false when the work was never called (the signal had already fired, or the
   * deadline was not positive). Here is the place to release what the work holds.
   */
  cutOff?: (from: CutOff, started: boolean) => unknown;
  /** Receives the value of work that succeeded after it was cut off. */
  onLate?: (value: T) => void;
  /** Prefix of the default deadline error's message, e.g. `EtcdConsensus(…) head`. */
  what?: string;
}

/**
 * Runs `fn` with a signal that aborts when `signal` does (with its reason) or when
 * `ms` milliseconds have passed (with a `TimeoutError` DOMException), and settles
 * like `fn`, or first rejects when either fires. `ms` undefined or Infinity: no
 * deadline. The timer never keeps the process alive, and the timer and the
 * listener on `signal` are gone once this settles.
 *
 * When `signal` has already fired, or `ms` is not positive, `fn` is not called and
 * the rejection is Determinate (nothing was started).
 */
export function withDeadline<T>(
  signal: AbortSignal | undefined,
  ms: number | undefined,
  fn: (signal: AbortSignal) => Promise<T>,
  options: DeadlineOptions<T> = {},
): Promise<T> {
  const control = new AbortController();
  return settleFirst(signal, ms, () => fn(control.signal), options, (from) =>
    control.abort(from === 'signal' ? signal?.reason : new DOMException(`deadline of ${ms} ms exceeded`, 'TimeoutError')),
  );
}

/**
 * {@link withDeadline} for work that cannot be interrupted (a statement on a pooled
 * connection): `start` gets no signal, so none is made, and a call that is neither
 * aborted nor cut off costs one timer and no AbortController (whose signal is the
 * dearest part of a race).
 */
export function raceDeadline<T>(
  signal: AbortSignal | undefined,
  ms: number | undefined,
  start: () => Promise<T>,
  options: DeadlineOptions<T> = {},
): Promise<T> {
  return settleFirst(signal, ms, start, options, undefined);
}

function settleFirst<T>(
  signal: AbortSignal | undefined,
  ms: number | undefined,
  start: () => Promise<T>,
  options: DeadlineOptions<T>,
  onCut: ((from: CutOff) => void) | undefined,
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    let timer: NodeJS.Timeout | undefined;
    let settled = false;
    const cut = (from: CutOff, started: boolean) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      onCut?.(from);
      reject(options.cutOff !== undefined ? options.cutOff(from, started) : defaultError(from, started));
    };
    const defaultError = (from: CutOff, started: boolean): ExternalError => {
      const exposure = started ? (options.exposure?.() ?? 'sent') : 'not-sent';
      return from === 'signal' ? aborted(signal!, exposure) : deadlineExceeded(ms ?? 0, exposure, options.what);
    };
    const onAbort = () => cut('signal', true);

    if (signal?.aborted) return cut('signal', false);
    if (ms !== undefined && !(ms > 0)) return cut('deadline', false);
    if (ms !== undefined && ms !== Infinity) {
      timer = setTimeout(cut, ms, 'deadline', true);
      timer.unref();
    }
    signal?.addEventListener('abort', onAbort, { once: true });
    let running: Promise<T>;
    try {
      running = start();
    } catch (err) {
      running = Promise.reject(err);
    }
    Promise.resolve(running).then(
      (value) => {
        if (settled) return options.onLate?.(value);
        settled = true;
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (err: unknown) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        reject(err);
      },
    );
  });
}

/**
 * The error for work that ran out of its `ms`: Indeterminate Timeout once the
 * work may have reached the store, Determinate Unavailable when it provably had
 * not (see {@link externalError}).
 */
export function deadlineExceeded(ms: number, exposure: Exposure, what?: string): ExternalError {
  const { message } = ExternalError.timeout(ms);
  return externalError(ErrorCode.Timeout, what === undefined ? message : `${what}: ${message}`, { exposure });
}
