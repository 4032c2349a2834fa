/**
 * The one mapping from AWS SDK (v3) errors to {@link ExternalError}.
 *
 * | what failed                                                     | kind          | code               |
 * |-----------------------------------------------------------------|---------------|--------------------|
 * | the caller's AbortSignal fired, nothing sent yet                | Determinate   | Cancelled          |
 * | the caller's AbortSignal fired after an attempt was sent        | Indeterminate | Cancelled (Timeout for a TimeoutError reason) |
 * | the SDK aborted a request without the caller's signal           | Indeterminate | Cancelled          |
 * | no credentials could be loaded (nothing sent)                   | Determinate   | PermissionDenied   |
 * | HTTP 401/403 (AccessDenied, InvalidAccessKeyId, bad signature)  | Determinate*  | PermissionDenied   |
 * | HTTP 404 NoSuchBucket (or any 404 on a bucket operation)        | Determinate*  | NotFound           |
 * | HTTP 404 NoSuchKey / NoSuchUpload                               | Determinate*  | NotFound           |
 * | HTTP 412 PreconditionFailed (If-Match lost a race)              | Determinate*  | FailedPrecondition |
 * | HTTP 400 EntityTooLarge / KeyTooLongError                       | Determinate*  | ResourceExhausted  |
 * | HTTP 409 (OperationAborted, conflicting operation)              | Determinate*  | Aborted            |
 * | HTTP 501 NotImplemented                                         | Determinate*  | Unknown            |
 * | any other HTTP 4xx                                              | Determinate*  | InvalidArgument    |
 * | HTTP 429, 503 SlowDown / throttling, after the SDK's retries    | Indeterminate | Aborted            |
 * | HTTP 503 otherwise                                              | Indeterminate | Unavailable        |
 * | any other HTTP 5xx                                              | Indeterminate | Unknown            |
 * | ECONNREFUSED, ENOTFOUND, EAI_AGAIN, EHOSTUNREACH, ENETUNREACH   | Determinate** | Unavailable        |
 * | ECONNRESET, EPIPE, ECONNABORTED, premature close of a response | Indeterminate | Unavailable        |
 * | timeouts (connect, request, socket; SDK `TimeoutError`)         | Indeterminate | Timeout            |
 * | anything else                                                   | Indeterminate | Unknown            |
 *
 * The SDK retries transient failures itself, so the error it finally throws
 * describes only the last attempt; an earlier attempt may have reached S3 and
 * been applied (a 500 after the write landed). So a caller counts, per
 * operation, the attempts that may have reached the server (see
 * `trackAttempts` in s3.ts), and:
 *
 * - `*` an HTTP refusal is Determinate only if it was the only attempt that
 *   reached the server (`reached <= 1`), else Indeterminate with the same code;
 * - `**` a failure to connect is Determinate only if no attempt reached the
 *   server (`reached === 0`), else Indeterminate.
 *
 * S3Blob then turns any failure of a multipart upload before
 * CompleteMultipartUpload was sent into Determinate (same code; Timeout becomes
 * Unavailable): S3 shows nothing of an upload that was never completed.
 */
import { aborted, Determinate, ErrorCode, ExternalError, Indeterminate } from '../errors.js';

/** What the mapping needs to know besides the error. */
export interface S3ErrorContext {
  /** `S3Blob(s3://bucket/prefix) set(key)`, for the message. */
  what: string;
  /** How many attempts of this operation may have reached the server (sent at least part of a request). */
  reached: number;
  /** The caller's signal, if any. */
  signal?: AbortSignal | undefined;
}

interface SdkErrorShape {
  name?: unknown;
  code?: unknown;
  message?: unknown;
  $fault?: unknown;
  $metadata?: { httpStatusCode?: unknown; attempts?: unknown };
  $response?: { statusCode?: unknown };
}

/** Node errno codes of a connection that never got established: nothing was sent. */
export const CONNECT_ERROR_CODES: ReadonlySet<string> = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH']);

const THROTTLING = new Set([
  'SlowDown',
  'Throttling',
  'ThrottlingException',
  'ThrottledException',
  'RequestThrottled',
  'RequestThrottledException',
  'TooManyRequestsException',
  'RequestLimitExceeded',
  'BandwidthLimitExceeded',
  'ProvisionedThroughputExceededException',
]);
const PERMISSION = new Set(['AccessDenied', 'InvalidAccessKeyId', 'SignatureDoesNotMatch', 'ExpiredToken', 'InvalidToken', 'AllAccessDisabled', 'Forbidden']);
const TOO_LARGE = new Set(['EntityTooLarge', 'KeyTooLongError', 'MaxMessageLengthExceeded', 'MetadataTooLarge']);

/** The HTTP status of a service error, or undefined when no response came back. */
export function httpStatus(err: unknown): number | undefined {
  const e = err as SdkErrorShape | null;
  const status = e?.$metadata?.httpStatusCode ?? e?.$response?.statusCode;
  return typeof status === 'number' && status > 0 ? status : undefined;
}

/** The S3 error code (`NoSuchKey`, `SlowDown`, ...) or SDK error name. */
export function errorName(err: unknown): string {
  const name = (err as SdkErrorShape | null)?.name;
  return typeof name === 'string' ? name : '';
}

/** Whether `err` says the attempt never connected (so it sent nothing). */
export function isConnectError(err: unknown): boolean {
  const code = (err as SdkErrorShape | null)?.code;
  return typeof code === 'string' && CONNECT_ERROR_CODES.has(code);
}

/** Maps any error thrown while talking to S3 to an ExternalError (see the table above). */
export function mapS3Error(err: unknown, ctx: S3ErrorContext): ExternalError {
  if (err instanceof ExternalError) return err;
  const { what, reached, signal } = ctx;
  const name = errorName(err);
  if (signal?.aborted || name === 'AbortError') {
    if (signal?.aborted) return aborted(signal, reached > 0);
    return new Indeterminate(ErrorCode.Cancelled, `${what}: request aborted`, { cause: err });
  }
  const detail = describe(err);
  const status = httpStatus(err);

  if (status !== undefined) {
    const definite = reached <= 1;
    const refused = (code: ErrorCode, why: string): ExternalError =>
      definite
        ? new Determinate(code, `${what}: ${why} (${detail})`, { cause: err })
        : new Indeterminate(code, `${what}: ${why} after an earlier attempt may have been applied (${detail})`, { cause: err });
    if (status === 429 || THROTTLING.has(name)) {
      return new Indeterminate(ErrorCode.Aborted, `${what}: throttled by the server after retries (${detail})`, { cause: err });
    }
    if (status >= 500) {
      if (status === 501) return refused(ErrorCode.Unknown, 'the server does not implement this operation');
      if (status === 503) return new Indeterminate(ErrorCode.Unavailable, `${what}: service unavailable (${detail})`, { cause: err });
      return new Indeterminate(ErrorCode.Unknown, `${what}: server error (${detail})`, { cause: err });
    }
    if (status === 401 || status === 403 || PERMISSION.has(name)) return refused(ErrorCode.PermissionDenied, 'permission denied');
    if (name === 'NoSuchBucket') return refused(ErrorCode.NotFound, 'the bucket does not exist');
    if (status === 404) return refused(ErrorCode.NotFound, 'not found');
    if (status === 412) return refused(ErrorCode.FailedPrecondition, 'precondition failed (the object changed)');
    if (status === 409) return refused(ErrorCode.Aborted, 'conflicting operation');
    if (TOO_LARGE.has(name)) return refused(ErrorCode.ResourceExhausted, 'request too large');
    if (status >= 400) return refused(ErrorCode.InvalidArgument, 'request rejected');
    return new Indeterminate(ErrorCode.Unknown, `${what}: unexpected HTTP status ${status} (${detail})`, { cause: err });
  }

  if (name === 'CredentialsProviderError') {
    return new Determinate(ErrorCode.PermissionDenied, `${what}: no AWS credentials (${detail})`, { cause: err });
  }
  if (isConnectError(err)) {
    return reached === 0
      ? new Determinate(ErrorCode.Unavailable, `${what}: cannot connect (${detail})`, { cause: err })
      : new Indeterminate(ErrorCode.Unavailable, `${what}: cannot connect after an earlier attempt was sent (${detail})`, { cause: err });
  }
  const code = (err as SdkErrorShape | null)?.code;
  if (code === 'ECONNRESET' || code === 'EPIPE' || code === 'ECONNABORTED' || code === 'ERR_STREAM_PREMATURE_CLOSE') {
    return new Indeterminate(ErrorCode.Unavailable, `${what}: connection lost (${detail})`, { cause: err });
  }
  if (name === 'TimeoutError' || code === 'ETIMEDOUT') {
    return new Indeterminate(ErrorCode.Timeout, `${what}: timed out (${detail})`, { cause: err });
  }
  return new Indeterminate(ErrorCode.Unknown, `${what}: ${detail}`, { cause: err });
}

function describe(err: unknown): string {
  const e = err as SdkErrorShape | null;
  const name = errorName(err);
  const message = typeof e?.message === 'string' && e.message !== '' ? e.message : String(err);
  const status = httpStatus(err);
  const code = typeof e?.code === 'string' ? ` ${e.code}` : '';
  return `${name || 'Error'}${code}${status === undefined ? '' : ` HTTP ${status}`}: ${message}`;
}
