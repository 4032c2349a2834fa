/**
 * Azure SDK errors as {@link ExternalError}s: the object stores' HTTP table
 * (src/kit/http-errors.ts) with Azure's own error codes, judged by
 * {@link mapError}.
 *
 * Azure's overrides, by `x-ms-error-code` (or the pipeline's code):
 *
 * | code                                   | code        | refused |
 * |----------------------------------------|-------------|---------|
 * | 503 ServerBusy                         | Aborted     | yes     |
 * | 500 OperationTimedOut                  | Timeout     | no      |
 * | REQUEST_SEND_ERROR (no errno given)    | Unavailable | no      |
 *
 * and by the error's name, for `@azure/identity`'s failures to get a token
 * (before any request is sent):
 *
 * | name                                   | code             | refused |
 * |----------------------------------------|------------------|---------|
 * | CredentialUnavailableError,            | PermissionDenied | yes     |
 * |   AggregateAuthenticationError,        |                  |         |
 * |   AuthenticationRequiredError          |                  |         |
 * | AuthenticationError                    | PermissionDenied | yes     |
 *
 * The SDK's own retries are off (see src/azure/client.ts): each request is
 * retried by the kit's `retry`, which keeps what earlier attempts may have done.
 */
import { ErrorCode, type ExternalError } from '../errors.js';
import { mapError, type ErrorTable, type ErrorVerdict, type MapErrorContext } from '../kit/exposure.js';
import { httpErrorTable, transportFailure, type HttpFailure } from '../kit/http-errors.js';

/** The fields of the SDK's RestError the table reads. */
interface ErrorLike {
  code?: unknown;
  statusCode?: unknown;
  details?: unknown;
}

const NO_TOKEN: ErrorVerdict = { code: ErrorCode.PermissionDenied, refused: true, reason: 'no Azure AD token' };

const AZURE_CODES: Readonly<Record<string, ErrorVerdict>> = {
  ServerBusy: { code: ErrorCode.Aborted, refused: true, reason: 'throttled by the server' },
  OperationTimedOut: { code: ErrorCode.Timeout, refused: false, reason: 'the server timed out' },
  REQUEST_SEND_ERROR: { code: ErrorCode.Unavailable, refused: false, reason: 'the request could not be sent' },
  CredentialUnavailableError: NO_TOKEN,
  AggregateAuthenticationError: NO_TOKEN,
  AuthenticationRequiredError: NO_TOKEN,
  AuthenticationError: { code: ErrorCode.PermissionDenied, refused: true, reason: 'the identity provider refused to issue a token' },
};

/** `@azure/identity`'s error names, which the table reads as codes. */
const IDENTITY_ERRORS = new Set(['CredentialUnavailableError', 'AggregateAuthenticationError', 'AuthenticationRequiredError', 'AuthenticationError']);

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

/** What an SDK error says about the request. */
export function azureFailure(err: unknown): HttpFailure {
  const name = (err as { name?: unknown } | null)?.name;
  if (typeof name === 'string' && IDENTITY_ERRORS.has(name)) return { code: name };
  return { ...transportFailure(err), status: azureStatus(err), code: azureErrorCode(err) };
}

/** The table: every error is about a request (what it cannot place is Unknown). */
export const AZURE_ERRORS: ErrorTable = httpErrorTable(azureFailure, { codes: AZURE_CODES });

/** Any error thrown while talking to Azure, as an ExternalError (see the table above). */
export function mapAzureError(err: unknown, ctx: MapErrorContext): ExternalError {
  return mapError(err, AZURE_ERRORS, ctx);
}
