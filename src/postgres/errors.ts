/**
 * PostgreSQL's error tables: what `pg` throws, as a code and whether the server
 * provably refused. {@link mapPostgresError} turns a verdict into an ExternalError
 * by the kit's one rule (kit/exposure.ts), at the exposure the caller knows:
 *
 * - `not-sent` while a connection is acquired (TCP connect, TLS, authentication,
 *   waiting for a free pool slot) or while the client builds the statement's
 *   messages: every failure there is Determinate;
 * - `sent` once the statement was written to the socket: Indeterminate unless the
 *   server answered with a SQLSTATE that proves the statement (an implicit
 *   single-statement transaction) was rolled back.
 *
 * {@link postgresErrors}, the server and the connection:
 *
 * | error                                                   | code               | once sent     |
 * |---------------------------------------------------------|--------------------|---------------|
 * | 40001 serialization_failure, 40P01 deadlock_detected    | Aborted            | Determinate   |
 * | 28xxx (28P01 invalid_password, ...), 42501              | PermissionDenied   | Determinate   |
 * | 3D000 (no such database), 3F000, 42P01 undefined_table  | NotFound           | Determinate   |
 * | other 22xxx data exception, 23xxx integrity, 42xxx      | InvalidArgument    | Determinate   |
 * |   syntax/access (the statement was rejected, not run)   |                    |               |
 * | 57014 query_canceled (someone cancelled our backend)    | Cancelled          | Indeterminate |
 * | 57P01/57P02 shutdown, 57P03 cannot_connect_now, 08xxx,  | Unavailable        | Indeterminate |
 * |   53300 too_many_connections, and any error without a   |                    |               |
 * |   SQLSTATE (socket errors, connect timeout, DNS)        |                    |               |
 * | a RangeError (a result past what the engine can hold)   | ResourceExhausted  | Indeterminate |
 * | any other SQLSTATE, including CockroachDB 40003         | Unknown            | Indeterminate |
 *
 * A failed TLS handshake while connecting (an untrusted or misnamed server
 * certificate, a refused client certificate: errors without a SQLSTATE) is
 * Determinate PermissionDenied naming the problem and the files, by
 * {@link mapConnectError} through kit/tls.ts; a server that wants a client
 * certificate it did not get answers 28000 (PermissionDenied by the table).
 *
 * {@link statementTimedOut}, put first when the statement ran for the whole
 * statement timeout: 57014 is then Timeout (Indeterminate). {@link encodeErrors},
 * for a statement the client could not build (nothing sent): a RangeError (a
 * string or buffer past the engine's limit) is ResourceExhausted, anything else
 * InvalidArgument.
 *
 * Client-side timeouts and aborts never reach these tables: the caller decides
 * them (see kit/deadline.ts), because only it knows whether the statement was sent.
 */
import { ErrorCode, ExternalError } from '../errors.js';
import { mapError, type ErrorTable, type MapErrorContext } from '../kit/exposure.js';
import { tlsError, tlsProblem, type TlsPaths } from '../kit/tls.js';

/** Server and connection failures (see the module comment). */
export const postgresErrors: ErrorTable = (err) => {
  const code = sqlState(err);
  const reason = (text: string) => `${text}: ${describe(err, code)}`;
  if (code === undefined) {
    if (err instanceof RangeError) return { code: ErrorCode.ResourceExhausted, refused: false, reason: reason('the client ran out of room') };
    // No SQLSTATE: the socket broke or the driver gave up; once sent, the statement
    // may have committed before the server's answer was lost.
    return { code: ErrorCode.Unavailable, reason: reason('connection failed') };
  }
  if (code === '40001' || code === '40P01') return { code: ErrorCode.Aborted, reason: reason('transaction aborted by the server') };
  if (code === '42501' || code.startsWith('28')) return { code: ErrorCode.PermissionDenied, reason: reason('permission denied') };
  if (code === '3D000') return { code: ErrorCode.NotFound, reason: reason('no such database') };
  if (code === '3F000' || code === '42P01') return { code: ErrorCode.NotFound, reason: reason('schema or table missing') };
  if (code.startsWith('22') || code.startsWith('23') || code.startsWith('42')) {
    return { code: ErrorCode.InvalidArgument, reason: reason('statement rejected') };
  }
  if (code === '57014') return { code: ErrorCode.Cancelled, reason: reason('statement cancelled on the server') };
  if (code.startsWith('57P') || code.startsWith('08') || code === '53300') {
    return { code: ErrorCode.Unavailable, reason: reason('the server is unavailable or went away') };
  }
  return { code: ErrorCode.Unknown, reason: reason('server error') };
};

/** 57014 as the statement timeout, for a statement that ran at least that long. */
export const statementTimedOut: ErrorTable = (err) =>
  sqlState(err) === '57014' ? { code: ErrorCode.Timeout, reason: `statement timeout: ${describe(err, '57014')}` } : undefined;

/** A statement the client could not build (see the module comment); used at `not-sent`. */
export const encodeErrors: ErrorTable = (err) => ({
  code: err instanceof RangeError ? ErrorCode.ResourceExhausted : ErrorCode.InvalidArgument,
  reason: `not sent: the client could not build the statement: ${describe(err, undefined)}`,
});

/** {@link mapError} with {@link postgresErrors}. */
export function mapPostgresError(err: unknown, ctx: MapErrorContext): ExternalError {
  return mapError(err, postgresErrors, ctx);
}

/** Where a handle connects, for the message of a failed TLS handshake. */
export interface PostgresTlsContext {
  /** The handle, as messages name it. */
  readonly backend: string;
  /** `host:port`. */
  readonly target: string;
  readonly paths: TlsPaths;
}

/**
 * A failure to get a connection (always `not-sent`): a failed TLS handshake as
 * kit/tls.ts says, anything else by {@link postgresErrors}.
 */
export function mapConnectError(err: unknown, ctx: MapErrorContext, tls: PostgresTlsContext): ExternalError {
  const problem = err instanceof ExternalError || ctx.signal?.aborted === true ? undefined : tlsProblem(err);
  if (problem !== undefined) {
    return tlsError(tls.backend, tls.target, problem, tls.paths, err, { ca: 'sslrootcert', cert: 'sslcert', key: 'sslkey' });
  }
  return mapError(err, postgresErrors, ctx);
}

/**
 * The five-character SQLSTATE of a server error, or undefined for other errors.
 * Every SQLSTATE has a digit; errno codes of the same length (`EPIPE`) have none.
 */
export function sqlState(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && /^(?=.*[0-9])[0-9A-Z]{5}$/.test(code) ? code : undefined;
}

/** What identifies the failure besides its message: its SQLSTATE or errno. */
function describe(err: unknown, code: string | undefined): string {
  if (code !== undefined) return `SQLSTATE ${code}`;
  const errno = (err as { code?: unknown } | null)?.code;
  return typeof errno === 'string' ? errno : 'no SQLSTATE';
}
