/**
 * etcd's error table: what the `etcd3` client throws, as a code and whether etcd
 * (or grpc-js, before sending) provably refused it. {@link mapEtcdError} turns a
 * verdict into an ExternalError by the kit's one rule (kit/exposure.ts); the
 * results below are those of a request handed to etcd3 (exposure `sent`, which
 * every EtcdConsensus request is).
 *
 * etcd3 turns every gRPC failure into a typed error (`GRPCUnavailableError`,
 * `GRPCDeadlineExceededError`, ...) but drops the numeric status, keeping grpc-js's
 * message `"<code> <NAME>: <details>"`. So the status code is read from a numeric
 * `code` when present (a raw grpc-js error), else from that message prefix, else
 * from the error class. The details then decide the few cases where the code alone
 * cannot: whether an UNAVAILABLE happened before the request left this process, and
 * whether a RESOURCE_EXHAUSTED came from the etcd server or from the local gRPC.
 *
 * | what was thrown                                               | result                                   |
 * |---------------------------------------------------------------|------------------------------------------|
 * | an ExternalError (e.g. from an AbortSignal)                   | unchanged (at `sent`)                    |
 * | a failed TLS handshake (untrusted or misnamed server           | Determinate PermissionDenied naming the  |
 * |   certificate, client certificate missing or refused), which   |   problem and the ca/cert/key paths      |
 * |   grpc-js reports as UNAVAILABLE "No connection established"   |   (kit/tls.ts; mapEtcdError, not the     |
 * |                                                                |   table, since it needs those paths)     |
 * | a circuit-breaker refusal (`isBrokenCircuitError`)            | Determinate Unavailable (never sent)     |
 * | etcd3 ClientClosedError                                       | Determinate Unavailable (never sent)     |
 * | UNAVAILABLE, details "No connection established",             | Determinate Unavailable (never sent:     |
 * |   "Channel closed before call started", "Stream refused"      |   no transport, or HTTP/2 REFUSED_STREAM)|
 * | UNAVAILABLE otherwise (connection dropped, "etcdserver:       | Indeterminate Unavailable                |
 * |   request timed out", "leader changed", "server stopped")     |                                          |
 * | DEADLINE_EXCEEDED                                             | Indeterminate Timeout                    |
 * | CANCELLED                                                     | Indeterminate Cancelled                  |
 * | INVALID_ARGUMENT "etcdserver: request is too large"           | Determinate ResourceExhausted            |
 * | INVALID_ARGUMENT otherwise                                    | Determinate InvalidArgument              |
 * | RESOURCE_EXHAUSTED "etcdserver: ..." (no space, too many      | Determinate ResourceExhausted (refused   |
 * |   requests)                                                   |   before the proposal)                   |
 * | RESOURCE_EXHAUSTED "grpc: received message ... larger than    | Determinate ResourceExhausted (etcd's    |
 * |   max" (over --max-request-bytes + 512 KiB)                   |   gRPC server would not even decode it)  |
 * | RESOURCE_EXHAUSTED otherwise (local gRPC message limits)      | Indeterminate ResourceExhausted          |
 * | PERMISSION_DENIED, UNAUTHENTICATED, and the auth refusals     | Determinate PermissionDenied             |
 * |   etcd sends as INVALID_ARGUMENT (bad password, no user name) |                                          |
 * | NOT_FOUND                                                     | Determinate NotFound                     |
 * | FAILED_PRECONDITION, ALREADY_EXISTS, OUT_OF_RANGE (compacted) | Determinate FailedPrecondition           |
 * | UNIMPLEMENTED                                                 | Determinate Unknown                      |
 * | ABORTED                                                       | Indeterminate Aborted                    |
 * | DATA_LOSS                                                     | Indeterminate DataLoss                   |
 * | UNKNOWN "context deadline exceeded" (etcd gave up at the      | Indeterminate Timeout                    |
 * |   request's deadline: seen on reads waiting for raft)         |                                          |
 * | UNKNOWN "context canceled"                                    | Indeterminate Cancelled                  |
 * | UNKNOWN otherwise, INTERNAL, anything else                    | Indeterminate Unknown                    |
 *
 * Server-side UNAVAILABLE is Indeterminate on purpose: etcd answers "request timed
 * out" or "leader changed" after a proposal was handed to raft, and it may still
 * commit.
 *
 * "Never sent" is read from grpc-js's wording because nothing else survives: etcd3
 * rebuilds every error from its message alone, dropping grpc-js's status object (and
 * the call's progress, which grpc-js keeps internal). The three details are grpc-js's
 * own, never etcd's (etcd's all start with "etcdserver:"). Should a grpc-js upgrade reword
 * them, those errors fall to Indeterminate, the safe side: writes are then no longer
 * failed over (the unreachable-endpoint tests catch that for "No connection
 * established", the usual one). grpc-js gives them only before a call has a stream:
 * a failed pick, a channel closed while the call waited for one, or HTTP/2
 * REFUSED_STREAM (the server promises it did not process the stream). The opposite
 * mistake, a call that reached etcd read as never sent and so failed over and sent
 * again, is what the test cutting connections at random through a proxy would catch.
 */
import * as etcd3 from 'etcd3';
import { ErrorCode, ExternalError } from '../errors.js';
import { mapError, type ErrorTable, type MapErrorContext } from '../kit/exposure.js';
import { tlsError, tlsProblem, type TlsPaths } from '../kit/tls.js';

/** gRPC status codes, https://grpc.github.io/grpc/core/md_doc_statuscodes.html */
export const GrpcCode = {
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  DATA_LOSS: 15,
  UNAUTHENTICATED: 16,
} as const;

/** etcd3's error classes, for errors whose message lost the status prefix. */
const CODE_OF_CLASS: [new (...args: never[]) => Error, number][] = [
  [etcd3.GRPCCancelledError, GrpcCode.CANCELLED],
  [etcd3.GRPCUnknownError, GrpcCode.UNKNOWN],
  [etcd3.GRPCInvalidArgumentError, GrpcCode.INVALID_ARGUMENT],
  [etcd3.GRPCDeadlineExceededError, GrpcCode.DEADLINE_EXCEEDED],
  [etcd3.GRPCNotFoundError, GrpcCode.NOT_FOUND],
  [etcd3.GRPCAlreadyExistsError, GrpcCode.ALREADY_EXISTS],
  [etcd3.EtcdPermissionDeniedError, GrpcCode.PERMISSION_DENIED],
  [etcd3.EtcdAuthenticationFailedError, GrpcCode.PERMISSION_DENIED],
  [etcd3.EtcdInvalidAuthTokenError, GrpcCode.UNAUTHENTICATED],
  [etcd3.GRPCResourceExhastedError, GrpcCode.RESOURCE_EXHAUSTED],
  [etcd3.GRPCFailedPreconditionError, GrpcCode.FAILED_PRECONDITION],
  [etcd3.GRPCAbortedError, GrpcCode.ABORTED],
  [etcd3.GRPCOutOfRangeError, GrpcCode.OUT_OF_RANGE],
  [etcd3.GRPCNotImplementedError, GrpcCode.UNIMPLEMENTED],
  [etcd3.GRPCInternalError, GrpcCode.INTERNAL],
  [etcd3.GRPCUnavailableError, GrpcCode.UNAVAILABLE],
  [etcd3.GRPCDataLossError, GrpcCode.DATA_LOSS],
  [etcd3.GRPCUnauthenticatedError, GrpcCode.UNAUTHENTICATED],
];

/** grpc-js details that mean the request never reached a transport. */
const NOT_SENT_DETAILS = ['No connection established', 'Channel closed before call started', 'Stream refused by server'];

/** The gRPC status of an error thrown by etcd3, if it is one. */
export function grpcStatusOf(err: unknown): { code: number; details: string } | undefined {
  if (!(err instanceof Error)) return undefined;
  const m = /^(\d+) [A-Z_]+: ([\s\S]*)$/.exec(err.message);
  const raw = (err as { code?: unknown; details?: unknown }).code;
  if (typeof raw === 'number') {
    const details = (err as { details?: unknown }).details;
    return { code: raw, details: typeof details === 'string' ? details : (m?.[2] ?? err.message) };
  }
  if (m !== null) return { code: Number(m[1]), details: m[2]! };
  const byClass = CODE_OF_CLASS.find(([cls]) => err instanceof cls);
  return byClass === undefined ? undefined : { code: byClass[1], details: err.message };
}

/**
 * etcd's table (see above): a verdict for everything etcd3 throws. Nothing it
 * throws is unrecognised: what has no gRPC status is Unknown, proving nothing.
 */
export const etcdErrors: ErrorTable = (err) => {
  if ((err as { isBrokenCircuitError?: unknown } | null)?.isBrokenCircuitError === true) {
    return { code: ErrorCode.Unavailable, refused: true, reason: 'the etcd endpoint is marked down by the client, nothing was sent' };
  }
  if (err instanceof etcd3.ClientClosedError) {
    return { code: ErrorCode.Unavailable, refused: true, reason: 'the etcd client is closed, nothing was sent' };
  }
  const status = grpcStatusOf(err);
  if (status === undefined) return { code: ErrorCode.Unknown, reason: 'unexpected error from the etcd client' };
  const { code, details } = status;
  if (
    err instanceof etcd3.EtcdAuthenticationFailedError ||
    err instanceof etcd3.EtcdPermissionDeniedError ||
    err instanceof etcd3.EtcdInvalidAuthTokenError ||
    details.includes('etcdserver: user name is empty')
  ) {
    // etcd sends some of these as INVALID_ARGUMENT; they are refusals of the credentials.
    return { code: ErrorCode.PermissionDenied, reason: 'etcd refused the credentials' };
  }
  switch (code) {
    case GrpcCode.UNAVAILABLE:
      return NOT_SENT_DETAILS.some((d) => details.includes(d))
        ? { code: ErrorCode.Unavailable, refused: true, reason: 'etcd is unreachable, nothing was sent' }
        : { code: ErrorCode.Unavailable, reason: 'etcd became unavailable during the request' };
    case GrpcCode.DEADLINE_EXCEEDED:
      return { code: ErrorCode.Timeout, reason: 'operation timed out (gRPC deadline exceeded)' };
    case GrpcCode.CANCELLED:
      return { code: ErrorCode.Cancelled, reason: 'request cancelled' };
    case GrpcCode.INVALID_ARGUMENT:
      return details.includes('request is too large')
        ? { code: ErrorCode.ResourceExhausted, reason: 'request refused by etcd as larger than its --max-request-bytes' }
        : { code: ErrorCode.InvalidArgument, reason: 'request refused by etcd' };
    case GrpcCode.RESOURCE_EXHAUSTED:
      if (details.includes('etcdserver:')) return { code: ErrorCode.ResourceExhausted, reason: 'request refused by etcd' };
      // grpc-go's wording: etcd's gRPC server refused the request message before decoding it.
      if (/^grpc: received message .*larger than max/.test(details)) {
        return { code: ErrorCode.ResourceExhausted, reason: "request refused by etcd's gRPC server as larger than its --max-request-bytes + 512 KiB" };
      }
      return { code: ErrorCode.ResourceExhausted, refused: false, reason: 'gRPC message limit hit' };
    case GrpcCode.PERMISSION_DENIED:
    case GrpcCode.UNAUTHENTICATED:
      return { code: ErrorCode.PermissionDenied, reason: 'etcd refused the credentials' };
    case GrpcCode.NOT_FOUND:
      return { code: ErrorCode.NotFound, reason: 'not found' };
    case GrpcCode.FAILED_PRECONDITION:
    case GrpcCode.ALREADY_EXISTS:
    case GrpcCode.OUT_OF_RANGE:
      return { code: ErrorCode.FailedPrecondition, reason: 'request refused by etcd' };
    case GrpcCode.UNIMPLEMENTED:
      return { code: ErrorCode.Unknown, refused: true, reason: 'etcd does not implement the request' };
    case GrpcCode.ABORTED:
      return { code: ErrorCode.Aborted, refused: false, reason: 'request aborted' };
    case GrpcCode.DATA_LOSS:
      return { code: ErrorCode.DataLoss, reason: 'etcd reports data loss' };
    case GrpcCode.UNKNOWN:
      // grpc-go sends UNKNOWN with the bare text of an error that is no gRPC status: etcd
      // passes some of its context's errors on that way (seen on reads from a 3-member
      // cluster with timeoutMs=100).
      if (details.startsWith('context deadline exceeded')) return { code: ErrorCode.Timeout, reason: 'operation timed out (at etcd)' };
      if (details.startsWith('context canceled')) return { code: ErrorCode.Cancelled, reason: 'request cancelled (at etcd)' };
      return { code: ErrorCode.Unknown, reason: 'etcd request failed' };
    default:
      return { code: ErrorCode.Unknown, reason: 'etcd request failed' };
  }
};

/** Where a handle connects with TLS, for the message of a failed handshake. */
export interface EtcdTlsContext {
  /** The handle, as messages name it. */
  readonly backend: string;
  /** The endpoints it dials. */
  readonly target: string;
  readonly paths: TlsPaths;
}

/**
 * Anything an etcd3 call rejected with, as an ExternalError: a failed TLS
 * handshake as kit/tls.ts says, everything else {@link mapError} with
 * {@link etcdErrors}. Every etcd request is `sent` once handed to etcd3.
 */
export function mapEtcdError(err: unknown, ctx: MapErrorContext, tls?: EtcdTlsContext): ExternalError {
  if (!(err instanceof ExternalError) && ctx.signal?.aborted !== true) {
    const problem = tlsProblem(err);
    if (problem !== undefined) return tlsError(tls?.backend ?? ctx.what, tls?.target ?? 'etcd', problem, tls?.paths ?? {}, err);
  }
  return mapError(err, etcdErrors, ctx);
}

/** The gRPC status code of `err` or of an error it wraps (as `cause`), if any. */
export function grpcCodeIn(err: unknown): number | undefined {
  for (let e: unknown = err, depth = 0; e !== undefined && depth < 4; e = (e as { cause?: unknown } | null)?.cause, depth++) {
    if (!(e instanceof ExternalError)) return grpcStatusOf(e)?.code;
  }
  return undefined;
}
