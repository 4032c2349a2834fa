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
 *
 * `instanceof` works across copies of this package: an application and a backend
 * that each installed their own copy still recognise each other's errors. Every
 * instance carries the registered symbol {@link EXTERNAL_ERROR_BRAND}, and the three
 * classes answer `instanceof` by that brand (and, for the two kinds, by
 * `determinate`) as well as by their prototype chain. A subclass written elsewhere
 * keeps ordinary `instanceof`: it only matches its own instances.
 *
 * This file imports nothing at run time, so that any copy of it stands alone.
 */
import type { Exposure } from './kit/exposure.js';

/** Stable error codes. Match on these, never on message text. */
export const ErrorCode = {
  /** An argument was rejected before storage was touched. */
  InvalidArgument: 'InvalidArgument',
  /** The storage's state does not allow the operation (e.g. truncate past the head). */
  FailedPrecondition: 'FailedPrecondition',
  /**
   * The operation did not finish before its deadline, after its request was sent.
   * Always Indeterminate: a deadline that passed before anything was sent is
   * reported as Unavailable (the store was not reached in time) or Cancelled (the
   * caller's own signal), both Determinate.
   */
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

/**
 * The registered symbol every ExternalError carries (on its prototype), with the
 * value 1: the version of what another copy may rely on, namely `code`,
 * `determinate` and `isTimeout()`.
 */
export const EXTERNAL_ERROR_BRAND: unique symbol = Symbol.for('persist-location.ExternalError');

/** What `instanceof` accepts of a branded error from another copy, per class of this copy. */
type Kind = 'any' | 'determinate' | 'indeterminate';
const KIND_OF_CLASS = new Map<unknown, Kind>();

function isBranded(value: unknown): value is { determinate: boolean } {
  if (typeof value !== 'object' || value === null) return false;
  const v = value as { [EXTERNAL_ERROR_BRAND]?: unknown; determinate?: unknown };
  return v[EXTERNAL_ERROR_BRAND] === 1 && typeof v.determinate === 'boolean';
}

/** Base of {@link Determinate} and {@link Indeterminate}; never constructed directly. */
export abstract class ExternalError extends Error {
  declare readonly [EXTERNAL_ERROR_BRAND]: 1;

  /**
   * True for instances of this class by prototype, and for any branded error from
   * another copy of the package that this class stands for there (the base: any;
   * Determinate and Indeterminate: by `determinate`). Subclasses defined outside
   * this file are not stand-ins for anything, so they only match by prototype.
   */
  static override [Symbol.hasInstance](value: unknown): boolean {
    if (Function.prototype[Symbol.hasInstance].call(this, value)) return true;
    const kind = KIND_OF_CLASS.get(this);
    if (kind === undefined || !isBranded(value)) return false;
    return kind === 'any' || value.determinate === (kind === 'determinate');
  }

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

Object.defineProperty(ExternalError.prototype, EXTERNAL_ERROR_BRAND, { value: 1 });
KIND_OF_CLASS.set(ExternalError, 'any');
KIND_OF_CLASS.set(Determinate, 'determinate');
KIND_OF_CLASS.set(Indeterminate, 'indeterminate');

/** A Determinate InvalidArgument error. */
export function invalidArgument(message: string): Determinate {
  return new Determinate(ErrorCode.InvalidArgument, message);
}

/**
 * The error for an operation aborted through its signal: Indeterminate, unless
 * the caller knows the request was provably never sent (`sent` false, or the
 * exposure `not-sent`). A signal whose reason is a `TimeoutError` (as from
 * `AbortSignal.timeout`) gives the Timeout code once sent.
 */
export function aborted(signal: AbortSignal, sent: boolean | Exposure): ExternalError {
  const reason: unknown = signal.reason;
  const why = reason instanceof Error ? reason.message : String(reason ?? 'aborted');
  if (sent === false || sent === 'not-sent') {
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
