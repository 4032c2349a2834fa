/**
 * Azure Blob errors → ExternalError, and the retry loop that feeds the mapping.
 *
 * The SDK's own retry policy is switched off (maxTries 1) because it hides which
 * attempts reached the server: after "ECONNRESET, then ECONNREFUSED" it reports
 * only the refusal, which looks harmless although the first attempt may have been
 * applied. {@link withRetries} retries the same transient failures the SDK would
 * (network errors, 500, 503) with jittered exponential backoff, and remembers
 * whether any failed attempt might have taken effect.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { aborted, Determinate, ErrorCode, ExternalError, Indeterminate } from '../errors.js';

/** The fields of the SDK's RestError (and of Node's system errors) the mapping reads. */
interface ErrorLike {
  name?: unknown;
  message?: unknown;
  code?: unknown;
  statusCode?: unknown;
  details?: unknown;
}

/** Network error codes for which nothing was sent: the connection never opened. */
const NEVER_SENT = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH']);
/** Network error codes that mean the request or its answer ran out of time. */
const TIMED_OUT = new Set(['ETIMEDOUT', 'ESOCKETTIMEDOUT', 'TIMEOUT', 'UND_ERR_CONNECT_TIMEOUT']);

/** What {@link mapAzureError} needs to know besides the error itself. */
export interface MapContext {
  /** Names the operation in the message, e.g. `AzureBlob(azure://c/p): set "k"`. */
  what: string;
  /** An earlier attempt of this operation failed in a way that may have applied it. */
  maybeAppliedBefore?: boolean;
  /** The caller's signal: when it fired, the error is the abort. */
  signal?: AbortSignal | undefined;
}

/**
 * The one mapping from an Azure SDK failure to an ExternalError.
 *
 * | failure                                            | kind          | code               |
 * |----------------------------------------------------|---------------|--------------------|
 * | caller's signal aborted                            | Indeterminate | Cancelled/Timeout  |
 * | 400 (bad name, InvalidBlockList, ...), 411, 414, 416 | Determinate | InvalidArgument    |
 * | 401, 403 (AuthorizationFailure, AuthenticationFailed) | Determinate | PermissionDenied   |
 * | 404 ContainerNotFound / BlobNotFound / other       | Determinate   | NotFound           |
 * | 409 (lease, being deleted, ...), 412 ConditionNotMet | Determinate | FailedPrecondition |
 * | 413 RequestBodyTooLarge                            | Determinate   | ResourceExhausted  |
 * | 501 (APINotImplemented, e.g. Azurite's undelete)   | Determinate   | Unavailable        |
 * | other 4xx                                          | Determinate   | Unknown            |
 * | 408, 500 OperationTimedOut, 504                    | Indeterminate | Timeout            |
 * | 503 ServerBusy, 429 (throttled, after retries)     | Indeterminate | Aborted            |
 * | other 5xx                                          | Indeterminate | Unavailable/Unknown|
 * | ECONNREFUSED, ENOTFOUND, ... (never connected)     | Determinate   | Unavailable        |
 * | ETIMEDOUT, ESOCKETTIMEDOUT, TIMEOUT                | Indeterminate | Timeout            |
 * | ECONNRESET, EPIPE, any other network error         | Indeterminate | Unavailable        |
 * | anything else                                      | Indeterminate | Unknown            |
 *
 * A Determinate answer turns Indeterminate when `maybeAppliedBefore`: the last
 * attempt was refused, but an earlier one may have gone through. An abort is
 * Indeterminate because the request was in flight; callers that know nothing was
 * sent (the base class checks before starting) do not get here.
 */
export function mapAzureError(err: unknown, ctx: MapContext): ExternalError {
  if (err instanceof ExternalError) return err;
  if (ctx.signal?.aborted) return aborted(ctx.signal, true);
  const e = (typeof err === 'object' && err !== null ? err : {}) as ErrorLike;
  const status = typeof e.statusCode === 'number' ? e.statusCode : undefined;
  const code = azureErrorCode(e);
  const why = `${status === undefined ? '' : `HTTP ${status} `}${code ?? ''}`.trim();
  const message = `${ctx.what} failed${why === '' ? '' : ` (${why})`}: ${firstLine(e.message ?? err)}`;

  let kind: 'determinate' | 'indeterminate';
  let out: ErrorCode;
  if (status !== undefined) {
    [kind, out] = byStatus(status, code);
  } else if (e.name === 'AbortError') {
    [kind, out] = ['indeterminate', ErrorCode.Cancelled];
  } else if (code !== undefined && NEVER_SENT.has(code)) {
    [kind, out] = ['determinate', ErrorCode.Unavailable];
  } else if (code !== undefined && TIMED_OUT.has(code)) {
    [kind, out] = ['indeterminate', ErrorCode.Timeout];
  } else if (code !== undefined && e.name === 'RestError') {
    [kind, out] = ['indeterminate', ErrorCode.Unavailable];
  } else if (code !== undefined && /^E[A-Z]+$/.test(code)) {
    [kind, out] = ['indeterminate', ErrorCode.Unavailable];
  } else {
    [kind, out] = ['indeterminate', ErrorCode.Unknown];
  }
  if (kind === 'determinate' && ctx.maybeAppliedBefore) {
    return new Indeterminate(out, `${message} (an earlier attempt may have been applied)`, { cause: err });
  }
  return kind === 'determinate' ? new Determinate(out, message, { cause: err }) : new Indeterminate(out, message, { cause: err });
}

function byStatus(status: number, code: string | undefined): ['determinate' | 'indeterminate', ErrorCode] {
  switch (status) {
    case 400:
    case 411:
    case 414:
    case 416:
      return ['determinate', ErrorCode.InvalidArgument];
    case 401:
    case 403:
      return ['determinate', ErrorCode.PermissionDenied];
    case 404:
      return ['determinate', ErrorCode.NotFound];
    case 409:
    case 412:
      return ['determinate', ErrorCode.FailedPrecondition];
    case 413:
      return ['determinate', ErrorCode.ResourceExhausted];
    case 408:
    case 504:
      return ['indeterminate', ErrorCode.Timeout];
    case 429:
      return ['indeterminate', ErrorCode.Aborted];
    case 501:
      return ['determinate', ErrorCode.Unavailable];
    case 500:
      return ['indeterminate', code === 'OperationTimedOut' ? ErrorCode.Timeout : ErrorCode.Unknown];
    case 503:
      return ['indeterminate', code === 'ServerBusy' ? ErrorCode.Aborted : ErrorCode.Unavailable];
  }
  if (status >= 400 && status < 500) return ['determinate', ErrorCode.Unknown];
  return ['indeterminate', ErrorCode.Unknown];
}

/** The storage error code (`x-ms-error-code`) or the network error code, if any. */
export function azureErrorCode(err: unknown): string | undefined {
  const e = (typeof err === 'object' && err !== null ? err : {}) as ErrorLike;
  if (typeof e.code === 'string' && e.code !== '') return e.code;
  const details = e.details as { errorCode?: unknown } | undefined;
  if (typeof details?.errorCode === 'string') return details.errorCode;
  return undefined;
}

/** The HTTP status of an SDK error, if it got one. */
export function azureStatus(err: unknown): number | undefined {
  const status = (err as ErrorLike | null)?.statusCode;
  return typeof status === 'number' ? status : undefined;
}

function firstLine(text: unknown): string {
  const s = text instanceof Error ? text.message : String(text);
  const nl = s.indexOf('\n');
  return nl < 0 ? s : s.slice(0, nl);
}

/** How {@link withRetries} retries transient failures. */
export interface RetryOptions {
  /** Attempts in all, including the first (default 4). */
  maxTries?: number;
  /** Delay before the first retry, doubled each time, with jitter (default 500 ms). */
  retryDelayMs?: number;
  /** Upper bound of one delay (default 10 s). */
  maxRetryDelayMs?: number;
}

/** Shared by the attempts of one operation. */
export interface Attempts {
  /** Some failed attempt may have been applied by the server. */
  maybeApplied: boolean;
}

/** A failure worth another attempt: the SDK's list (network errors, 500, 503) plus 408/429/504. */
export function isTransient(err: unknown): boolean {
  const status = azureStatus(err);
  if (status !== undefined) return status === 408 || status === 429 || status === 500 || status === 503 || status === 504;
  if ((err as ErrorLike | null)?.name === 'AbortError') return false;
  const code = azureErrorCode(err);
  return code !== undefined && (NEVER_SENT.has(code) || TIMED_OUT.has(code) || /^E[A-Z]+$/.test(code) || code === 'REQUEST_SEND_ERROR');
}

/**
 * Runs `attempt` until it succeeds, fails for good, or `maxTries` is spent,
 * recording in `attempts` whether a failed try may have been applied (its error
 * alone would map to Indeterminate). Rethrows the last error unchanged.
 */
export async function withRetries<T>(
  attempt: () => Promise<T>,
  options: { retry: RetryOptions; attempts: Attempts; signal?: AbortSignal | undefined },
): Promise<T> {
  const maxTries = options.retry.maxTries ?? 4;
  const base = options.retry.retryDelayMs ?? 500;
  const cap = options.retry.maxRetryDelayMs ?? 10_000;
  for (let tries = 1; ; tries++) {
    try {
      return await attempt();
    } catch (err) {
      if (!mapAzureError(err, { what: '' }).determinate) options.attempts.maybeApplied = true;
      if (tries >= maxTries || !isTransient(err) || options.signal?.aborted) throw err;
      const delay = Math.min(cap, base * 2 ** (tries - 1)) * (0.5 + Math.random() / 2);
      await sleep(delay, undefined, { signal: options.signal });
    }
  }
}
