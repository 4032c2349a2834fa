/**
 * The error table shared by the object stores (S3, Azure Blob): HTTP statuses and
 * the transport failures of Node's HTTP stack, as {@link ErrorVerdict}s. A store
 * passes only what is its own: how to read a failure out of its SDK's error, and
 * verdicts for its named error codes.
 *
 * | status / failure                              | code               | refused  |
 * |-----------------------------------------------|--------------------|----------|
 * | 400, and 4xx not listed below                 | InvalidArgument    | yes      |
 * | 401, 403                                      | PermissionDenied   | yes      |
 * | 404                                           | NotFound           | yes      |
 * | 408                                           | Timeout            | no       |
 * | 409, 412                                      | FailedPrecondition | yes      |
 * | 413                                           | ResourceExhausted  | yes      |
 * | 416                                           | InvalidArgument    | yes      |
 * | 429                                           | Aborted            | yes      |
 * | 500                                           | Unknown            | no       |
 * | 501                                           | Unknown            | yes      |
 * | 502, 503                                      | Unavailable        | no       |
 * | 504                                           | Timeout            | no       |
 * | other 5xx, 1xx-3xx where an error was due     | Unknown            | no       |
 * | ECONNREFUSED, ENOTFOUND, EAI_AGAIN, undici    | Unavailable        | yes      |
 * |   connect timeout; EHOSTUNREACH, ENETUNREACH, |                    |          |
 * |   ETIMEDOUT from `connect`                    |                    |          |
 * | ETIMEDOUT otherwise, socket/header/body       | Timeout            | no       |
 * |   timeouts                                    |                    |          |
 * | an error named AbortError                     | Cancelled          | no       |
 * | ECONNRESET, EPIPE, premature close, any other | Unavailable        | no       |
 * |   errno (including EHOSTUNREACH mid-request), |                    |          |
 * |   even in an error named TimeoutError         |                    |          |
 * | an error named TimeoutError without an errno  | Timeout            | no       |
 * | a failed TLS handshake (untrusted CA, wrong   | PermissionDenied   | yes      |
 * |   host name, expired certificate), no status  |                    |          |
 *
 * A TLS handshake failure comes first, whatever else the error says: the
 * handshake precedes the request, so nothing was sent, and retrying cannot make
 * the certificate acceptable (see src/kit/tls.ts).
 *
 * Why these answers, where S3 and Azure disagreed before:
 *
 * - 409 is RFC 9110's "conflict with the current state of the target resource":
 *   the request was refused, which is FailedPrecondition. Azure uses it that way
 *   (BlobAlreadyExists, LeaseIdMissing, ContainerBeingDeleted; see "Blob Storage
 *   error codes", learn.microsoft.com/rest/api/storageservices/blob-service-error-codes).
 *   S3 sends 409 ConditionalRequestConflict when a concurrent conditional write
 *   raced it and says to retry ("On a 409 failure you should retry the upload",
 *   PutObject If-None-Match in the AWS SDK docs): contention, so S3 overrides that
 *   code (and OperationAborted) to Aborted. Both are refusals.
 * - 501: the server does not implement what was asked (S3 NotImplemented: "A header
 *   you provided implies functionality that is not implemented"; Azurite answers
 *   undelete with it). It refused; the code is Unknown, as etcd's UNIMPLEMENTED,
 *   not Unavailable, which would tell callers the store could not be reached.
 * - Other 4xx are client errors by RFC 9110 (405, 411, 414, 431, ...): the request
 *   as sent was rejected, InvalidArgument, refused.
 * - Timeouts: 408, 504, socket and response timeouts mean the request may be
 *   running on: Timeout, never proof. Azure's 500 OperationTimedOut ("Setting
 *   timeouts for Blob service operations": the service gives up on a request it
 *   may have started) is an override to Timeout.
 * - 429 and the stores' throttling codes (S3 503 SlowDown, Azure 503 ServerBusy:
 *   "The server is currently unable to receive requests. Please retry your
 *   request.", Common REST API error codes) reject a request at admission, before
 *   it runs: Aborted, refused. A plain 503 or 502 comes from anything between the
 *   client and the store and proves nothing.
 * - EHOSTUNREACH and ENETUNREACH prove nothing on their own: Linux reports the
 *   ICMP error it last saw when an established connection's retransmissions run
 *   out, after the request went out. Only from `connect` (Node sets `syscall`,
 *   and starts the message with it) do they prove the connection never opened;
 *   likewise ETIMEDOUT. Both stores read the syscall the same way
 *   ({@link transportFailure}), so they agree.
 * - The AWS SDK renames ECONNRESET and EPIPE errors TimeoutError; the errno
 *   decides, so a reset is Unavailable in both stores.
 */
import { ErrorCode } from '../errors.js';
import type { ErrorTable, ErrorVerdict } from './exposure.js';
import { tlsProblem } from './tls.js';

/** What an object store's SDK error says, read out of it by the store. */
export interface HttpFailure {
  /** The HTTP status, when a response came back. */
  status?: number | undefined;
  /** The store's error code (S3 `Code`, Azure `x-ms-error-code`), when it sent one. */
  code?: string | undefined;
  /** The Node.js or undici error code of a transport failure (`ECONNRESET`). */
  errno?: string | undefined;
  /** The system call that failed, as Node reports it (`connect`, `write`). */
  syscall?: string | undefined;
  /** The error's name (`TimeoutError`, `AbortError`). */
  name?: string | undefined;
  /** What failed in the TLS handshake, in words ({@link tlsProblem}), when it failed. */
  tls?: string | undefined;
}

/** A store's own answers, tried before the shared ones. */
export interface HttpOverrides {
  /** By the store's error code (`SlowDown`, `ServerBusy`, ...). */
  codes?: Readonly<Record<string, ErrorVerdict>>;
  /** By HTTP status, replacing the shared row. */
  statuses?: Readonly<Record<number, ErrorVerdict>>;
}

const refusal = (code: ErrorCode, reason: string): ErrorVerdict => ({ code, refused: true, reason });
const noProof = (code: ErrorCode, reason: string): ErrorVerdict => ({ code, refused: false, reason });

const STATUS: Readonly<Record<number, ErrorVerdict>> = {
  400: refusal(ErrorCode.InvalidArgument, 'request rejected'),
  401: refusal(ErrorCode.PermissionDenied, 'permission denied'),
  403: refusal(ErrorCode.PermissionDenied, 'permission denied'),
  404: refusal(ErrorCode.NotFound, 'not found'),
  408: noProof(ErrorCode.Timeout, 'the server timed out waiting for the request'),
  409: refusal(ErrorCode.FailedPrecondition, 'conflict with the current state'),
  412: refusal(ErrorCode.FailedPrecondition, 'precondition failed'),
  413: refusal(ErrorCode.ResourceExhausted, 'request too large'),
  416: refusal(ErrorCode.InvalidArgument, 'range not satisfiable'),
  429: refusal(ErrorCode.Aborted, 'throttled'),
  500: noProof(ErrorCode.Unknown, 'server error'),
  501: refusal(ErrorCode.Unknown, 'the server does not implement this request'),
  502: noProof(ErrorCode.Unavailable, 'bad gateway'),
  503: noProof(ErrorCode.Unavailable, 'service unavailable'),
  504: noProof(ErrorCode.Timeout, 'gateway timeout'),
};

/** Never connected: the request cannot have been sent. */
const NEVER_CONNECTED = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EAI_NONAME', 'UND_ERR_CONNECT_TIMEOUT']);
/** Never connected when `connect` failed with them; after that, they prove nothing. */
const CONNECT_FAILURES = new Set(['EHOSTUNREACH', 'ENETUNREACH', 'EHOSTDOWN', 'ENETDOWN', 'ETIMEDOUT']);
const TIMED_OUT = new Set(['ETIMEDOUT', 'ESOCKETTIMEDOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT']);

/** The shared verdict for a failure (see the table above), after the store's overrides. */
export function httpVerdict(failure: HttpFailure, overrides: HttpOverrides = {}): ErrorVerdict {
  const { status, code, errno, name } = failure;
  if (failure.tls !== undefined && status === undefined) return refusal(ErrorCode.PermissionDenied, `TLS handshake failed: ${failure.tls}`);
  const own = code === undefined ? undefined : overrides.codes?.[code];
  if (own !== undefined) return own;
  if (status !== undefined) {
    const row = overrides.statuses?.[status] ?? STATUS[status];
    if (row !== undefined) return row;
    if (status >= 400 && status < 500) return refusal(ErrorCode.InvalidArgument, 'request rejected');
    return noProof(ErrorCode.Unknown, `unexpected HTTP status ${status}`);
  }
  if (neverConnected(failure)) return refusal(ErrorCode.Unavailable, 'cannot connect, nothing was sent');
  if (errno !== undefined && TIMED_OUT.has(errno)) return noProof(ErrorCode.Timeout, 'timed out');
  if (name === 'AbortError') return noProof(ErrorCode.Cancelled, 'request aborted');
  // Before the name: the AWS SDK names a reset connection TimeoutError.
  if (errno !== undefined) return noProof(ErrorCode.Unavailable, 'connection lost');
  if (name === 'TimeoutError') return noProof(ErrorCode.Timeout, 'timed out');
  return noProof(ErrorCode.Unknown, 'request failed');
}

/**
 * Whether a transport failure proves the connection never opened, so nothing of
 * the request was sent: refused, unresolvable, failed in `connect`, or failed its
 * TLS handshake.
 */
export function neverConnected(failure: HttpFailure): boolean {
  const { errno, syscall } = failure;
  if (failure.status !== undefined) return false;
  if (failure.tls !== undefined) return true;
  if (errno === undefined) return false;
  return NEVER_CONNECTED.has(errno) || (CONNECT_FAILURES.has(errno) && syscall === 'connect');
}

/**
 * The {@link ErrorTable} of an object store: `read` gets the failure out of the
 * SDK's error (undefined for errors that are not about a request, which the table
 * then does not recognise), `overrides` are the store's own answers. The reason
 * names the status and the store's code or errno (`not found (HTTP 404 NoSuchKey)`).
 */
export function httpErrorTable(read: (err: unknown) => HttpFailure | undefined, overrides: HttpOverrides = {}): ErrorTable {
  return (err) => {
    const failure = read(err);
    if (failure === undefined) return undefined;
    const verdict = httpVerdict(failure, overrides);
    const answer = [failure.status === undefined ? undefined : `HTTP ${failure.status}`, failure.code ?? failure.errno].filter((part) => part !== undefined).join(' ');
    return answer === '' ? verdict : { ...verdict, reason: `${verdict.reason ?? 'failed'} (${answer})` };
  };
}

/** Errno codes, undici's codes, and Node's codes for a broken stream, socket or TLS session. */
const TRANSPORT_CODE = /^(E[A-Z0-9]+|UND_ERR_[A-Z_]+|ERR_STREAM_PREMATURE_CLOSE|ERR_(SOCKET|HTTP2|TLS)_[A-Z_]+)$/;

/**
 * The transport fields of a Node.js system error or undici error (`code`,
 * `syscall`, `name`, and `tls` when it is a failed handshake, read by
 * {@link tlsProblem} through its causes), for a store's `read` to start from. A string `code` is taken
 * as an errno only when it looks like one (`ECONNRESET`, `UND_ERR_SOCKET`,
 * `ERR_STREAM_PREMATURE_CLOSE`), never a store's error code or a Node.js usage
 * error. Without a `syscall` field, the syscall is read from the start of a
 * system error's message (`connect ECONNREFUSED ...`).
 */
export function transportFailure(err: unknown): HttpFailure {
  const e = (typeof err === 'object' && err !== null ? err : {}) as { code?: unknown; syscall?: unknown; name?: unknown; message?: unknown };
  const errno = typeof e.code === 'string' && TRANSPORT_CODE.test(e.code) ? e.code : undefined;
  let syscall = typeof e.syscall === 'string' ? e.syscall : undefined;
  if (syscall === undefined && errno !== undefined && typeof e.message === 'string') syscall = SYSCALL_IN_MESSAGE.exec(e.message)?.[1];
  const tls = tlsProblem(err);
  return { errno, syscall, name: typeof e.name === 'string' ? e.name : undefined, ...(tls !== undefined && { tls }) };
}

/**
 * Node's message of a system error, `connect EHOSTUNREACH 10.0.0.1:443`: what is
 * left of the syscall when a driver rewraps the error (Azure's RestError keeps
 * only the code and message).
 */
const SYSCALL_IN_MESSAGE = /^([a-z]+) E[A-Z0-9]+\b/;
