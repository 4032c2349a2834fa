/**
 * Errors from, or about, the storage underneath a location.
 *
 * Every such failure is an {@link ExternalError}, and always exactly one of its two
 * subclasses:
 *
 * - {@link Determinate}: the operation definitely did not take effect.
 * - {@link Indeterminate}: the operation might have taken effect.
 *
 * Calling a write "definitely not done" when it was done loses data upstream, so
 * every backend maps a driver error to Determinate only when it can prove nothing
 * was applied; when in doubt the answer is Indeterminate.
 *
 * Misuse of the API that is not about storage (a closed handle) throws ordinary
 * `Error`s instead.
 */

/** Stable error codes. Match on these, never on message text. */
export const ErrorCode = {
  /** An argument was rejected before storage was touched. */
  InvalidArgument: 'InvalidArgument',
  /** The storage's state does not allow the operation (e.g. truncate past the head). */
  FailedPrecondition: 'FailedPrecondition',
  /** The operation did not finish before its deadline. Always Indeterminate. */
  Timeout: 'Timeout',
  /** The storage could not be reached. */
  Unavailable: 'Unavailable',
  /** A thing the operation needs (bucket, container, key to restore) does not exist. */
  NotFound: 'NotFound',
  /** The credentials were refused. */
  PermissionDenied: 'PermissionDenied',
  /** The storage refused under load or contention (serialization failure, throttling). */
  Aborted: 'Aborted',
  /** The caller aborted the operation through its AbortSignal. */
  Cancelled: 'Cancelled',
  /** A value or request exceeds what the storage can hold. */
  ResourceExhausted: 'ResourceExhausted',
  /** Stored data is not in the expected shape. */
  DataLoss: 'DataLoss',
  /** Anything else. */
  Unknown: 'Unknown',
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

/** Options shared by the error constructors. */
export interface ExternalErrorOptions {
  /** The underlying driver or system error. */
  cause?: unknown;
}

/** Base of {@link Determinate} and {@link Indeterminate}; never constructed directly. */
export abstract class ExternalError extends Error {
  /** A stable string such as `InvalidArgument` or `Timeout`. */
  readonly code: ErrorCode;
  /** True for {@link Determinate}: the operation definitely did not take effect. */
  abstract readonly determinate: boolean;

  protected constructor(code: ErrorCode, message: string, options?: ExternalErrorOptions) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
  }

  /** True exactly for timeouts; decided by {@link code}, never by the message. */
  isTimeout(): boolean {
    return this.code === ErrorCode.Timeout;
  }

  /**
   * The Indeterminate error for an operation that ran out of time.
   * @param deadline the time budget in milliseconds, or the instant that passed
   */
  static timeout(deadline: number | Date, options?: ExternalErrorOptions): Indeterminate {
    const when =
      deadline instanceof Date ? `deadline ${deadline.toISOString()} passed` : `deadline of ${deadline} ms exceeded`;
    return new Indeterminate(ErrorCode.Timeout, `operation timed out: ${when}`, options);
  }
}

/** The operation definitely did not take effect; it is safe to retry or give up. */
export class Determinate extends ExternalError {
  override readonly name = 'Determinate';
  readonly determinate = true;

  constructor(code: ErrorCode, message: string, options?: ExternalErrorOptions) {
    super(code, message, options);
  }
}

/** The operation might have taken effect; only a later read can tell. */
export class Indeterminate extends ExternalError {
  override readonly name = 'Indeterminate';
  readonly determinate = false;

  constructor(code: ErrorCode, message: string, options?: ExternalErrorOptions) {
    super(code, message, options);
  }
}

/** A Determinate InvalidArgument error. */
export function invalidArgument(message: string): Determinate {
  return new Determinate(ErrorCode.InvalidArgument, message);
}

/**
 * The error for an operation aborted through its signal: Indeterminate, unless
 * the caller knows the request was provably never sent.
 */
export function aborted(signal: AbortSignal, sent: boolean): ExternalError {
  const reason: unknown = signal.reason;
  const why = reason instanceof Error ? reason.message : String(reason ?? 'aborted');
  if (!sent) {
    return new Determinate(ErrorCode.Cancelled, `operation aborted before it was sent: ${why}`, { cause: reason });
  }
  if (reason instanceof Error && reason.name === 'TimeoutError') {
    return new Indeterminate(ErrorCode.Timeout, `operation timed out after it was sent: ${why}`, { cause: reason });
  }
  return new Indeterminate(ErrorCode.Cancelled, `operation aborted after it was sent: ${why}`, { cause: reason });
}

/** Rejects with a Determinate Cancelled error if the signal is already aborted. */
export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw aborted(signal, false);
}
