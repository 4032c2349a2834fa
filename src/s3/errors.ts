/**
 * AWS SDK (v3) errors as {@link ExternalError}s: the object stores' HTTP table
 * (src/kit/http-errors.ts) with S3's own error codes, judged by {@link mapError}.
 *
 * S3's overrides, by the error code the SDK puts in `name`:
 *
 * | S3 code                                                   | code               | refused |
 * |-----------------------------------------------------------|--------------------|---------|
 * | SlowDown and the SDK's throttling names                   | Aborted            | yes     |
 * | ConditionalRequestConflict, OperationAborted (409)        | Aborted            | yes     |
 * | AccessDenied, InvalidAccessKeyId, ExpiredToken, ...       | PermissionDenied   | yes     |
 * | NoSuchBucket                                              | NotFound           | yes     |
 * | EntityTooLarge, KeyTooLongError, MetadataTooLarge, ...    | ResourceExhausted  | yes     |
 * | CredentialsProviderError (nothing sent)                   | PermissionDenied   | yes     |
 *
 * The SDK retries inside one `send`, so the error it throws tells only of the
 * last attempt. The caller passes the exposure of all of them: `not-sent` when
 * every attempt failed to connect, `committed` when a failed attempt before the
 * last may have been applied, else `sent` (see src/s3/client.ts).
 */
import { ErrorCode, type ExternalError } from '../errors.js';
import { mapError, type ErrorTable, type ErrorVerdict, type MapErrorContext } from '../kit/exposure.js';
import { httpErrorTable, transportFailure, type HttpFailure } from '../kit/http-errors.js';

interface SdkErrorShape {
  name?: unknown;
  $metadata?: { httpStatusCode?: unknown };
  $response?: { statusCode?: unknown };
}

const refused = (code: ErrorCode, reason: string): ErrorVerdict => ({ code, refused: true, reason });

const THROTTLED = refused(ErrorCode.Aborted, 'throttled by the server');
const DENIED = refused(ErrorCode.PermissionDenied, 'permission denied');
const TOO_LARGE = refused(ErrorCode.ResourceExhausted, 'request too large');

const S3_CODES: Readonly<Record<string, ErrorVerdict>> = {
  SlowDown: THROTTLED,
  Throttling: THROTTLED,
  ThrottlingException: THROTTLED,
  ThrottledException: THROTTLED,
  RequestThrottled: THROTTLED,
  RequestThrottledException: THROTTLED,
  TooManyRequestsException: THROTTLED,
  RequestLimitExceeded: THROTTLED,
  BandwidthLimitExceeded: THROTTLED,
  ProvisionedThroughputExceededException: THROTTLED,
  ConditionalRequestConflict: refused(ErrorCode.Aborted, 'a concurrent conditional write won'),
  OperationAborted: refused(ErrorCode.Aborted, 'conflicting operation'),
  AccessDenied: DENIED,
  InvalidAccessKeyId: DENIED,
  SignatureDoesNotMatch: DENIED,
  ExpiredToken: DENIED,
  InvalidToken: DENIED,
  AllAccessDisabled: DENIED,
  NoSuchBucket: refused(ErrorCode.NotFound, 'the bucket does not exist'),
  EntityTooLarge: TOO_LARGE,
  KeyTooLongError: TOO_LARGE,
  MaxMessageLengthExceeded: TOO_LARGE,
  MetadataTooLarge: TOO_LARGE,
  CredentialsProviderError: refused(ErrorCode.PermissionDenied, 'no AWS credentials'),
};

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

/** What an SDK error says about the request. */
export function s3Failure(err: unknown): HttpFailure {
  const status = httpStatus(err);
  const name = errorName(err);
  // Without a response, the name is S3's only for errors the SDK raises itself.
  const code = status !== undefined || name === 'CredentialsProviderError' ? name || undefined : undefined;
  return { ...transportFailure(err), status, code };
}

/** The table: every error is about a request (what it cannot place is Unknown). */
export const S3_ERRORS: ErrorTable = httpErrorTable(s3Failure, { codes: S3_CODES });

/** The context of {@link mapS3Error}: the one of every store (see kit/exposure.ts). */
export type S3ErrorContext = MapErrorContext;

/** Any error thrown while talking to S3, as an ExternalError (see the table above). */
export function mapS3Error(err: unknown, ctx: S3ErrorContext): ExternalError {
  return mapError(err, S3_ERRORS, ctx);
}
