/**
 * The one place where `pg` driver errors become {@link ExternalError}s.
 *
 * The deciding fact is the phase the operation was in. While a connection is being
 * acquired (TCP connect, TLS, authentication, waiting for a free pool slot) no
 * statement has been sent, so every failure there is Determinate. While the client
 * builds the statement's messages (encoding its parameters) nothing has been sent
 * either. Once a statement was written to the socket, a failure is Indeterminate
 * unless the server answered with a SQLSTATE that proves the statement (an implicit
 * single-statement transaction) was rolled back.
 *
 * | phase   | error                                                   | result                                  |
 * |---------|---------------------------------------------------------|-----------------------------------------|
 * | connect | 28P01 invalid_password, 28000 invalid_authorization     | Determinate PermissionDenied            |
 * | connect | 3D000 invalid_catalog_name (no such database)           | Determinate NotFound                    |
 * | connect | anything else (ECONNREFUSED, 57P03 cannot_connect_now,  | Determinate Unavailable                 |
 * |         | 53300 too_many_connections, connect timeout, DNS, TLS)  |                                         |
 * | encode  | RangeError (a string or buffer past the engine's limit) | Determinate ResourceExhausted           |
 * | encode  | anything else                                           | Determinate InvalidArgument             |
 * | query   | 40001 serialization_failure, 40P01 deadlock_detected    | Determinate Aborted                     |
 * | query   | 42501 insufficient_privilege, 28xxx                     | Determinate PermissionDenied            |
 * | query   | 3F000 invalid_schema_name, 42P01 undefined_table        | Determinate NotFound                    |
 * | query   | other 22xxx data exception, 23xxx integrity, 42xxx      | Determinate InvalidArgument             |
 * |         | syntax/access (the statement was rejected, not run)     |                                         |
 * | query   | 57014 query_canceled after the statement timeout        | Indeterminate Timeout                   |
 * | query   | 57014 otherwise (someone cancelled our backend)         | Indeterminate Cancelled                 |
 * | query   | 57P01/57P02 shutdown, socket errors, connection lost    | Indeterminate Unavailable               |
 * | query   | anything else, including CockroachDB 40003              | Indeterminate Unknown                   |
 *
 * Client-side timeouts and aborts never reach this function: the caller decides
 * them (see `aborted()` and `ExternalError.timeout()`), because only it knows
 * whether the statement was sent.
 */
import { Determinate, ErrorCode, ExternalError, Indeterminate } from '../errors.js';

/**
 * Where an operation was when it failed: getting a connection, building the
 * statement's messages in the client (nothing sent yet), or running the statement.
 */
export type PgPhase = 'connect' | 'encode' | 'query';

/** What the caller knows about the failed operation. */
export interface PgErrorContext {
  phase: PgPhase;
  /** The statement ran at least as long as the configured statement timeout. */
  pastStatementTimeout?: boolean;
  /** Prefix for the message, e.g. `PostgresConsensus(postgres://…): compareAndSet`. */
  what?: string;
}

/** Maps any error thrown by `pg` to an ExternalError; ExternalErrors pass through. */
export function mapPostgresError(err: unknown, ctx: PgErrorContext): ExternalError {
  if (err instanceof ExternalError) return err;
  const code = sqlState(err);
  const detail = describe(err, code);
  const msg = (why: string) => `${ctx.what ?? 'PostgreSQL'}: ${why}: ${detail}`;
  const cause = { cause: err };

  if (ctx.phase === 'connect') {
    if (code === '28P01' || code === '28000') return new Determinate(ErrorCode.PermissionDenied, msg('authentication failed'), cause);
    if (code === '3D000') return new Determinate(ErrorCode.NotFound, msg('no such database'), cause);
    return new Determinate(ErrorCode.Unavailable, msg('cannot connect'), cause);
  }
  if (ctx.phase === 'encode') {
    const code = err instanceof RangeError ? ErrorCode.ResourceExhausted : ErrorCode.InvalidArgument;
    return new Determinate(code, msg('not sent: the client could not build the statement'), cause);
  }

  if (code === undefined) {
    // No SQLSTATE after sending: the socket broke or the driver gave up; the
    // statement may have committed before the server's answer was lost.
    return new Indeterminate(ErrorCode.Unavailable, msg('connection lost after the statement was sent'), cause);
  }
  if (code === '40001' || code === '40P01') return new Determinate(ErrorCode.Aborted, msg('transaction aborted by the server'), cause);
  if (code === '42501' || code.startsWith('28')) return new Determinate(ErrorCode.PermissionDenied, msg('permission denied'), cause);
  if (code === '3F000' || code === '42P01') return new Determinate(ErrorCode.NotFound, msg('schema or table missing'), cause);
  if (code.startsWith('22') || code.startsWith('23') || code.startsWith('42')) {
    return new Determinate(ErrorCode.InvalidArgument, msg('statement rejected'), cause);
  }
  if (code === '57014') {
    return ctx.pastStatementTimeout
      ? new Indeterminate(ErrorCode.Timeout, msg('statement timeout'), cause)
      : new Indeterminate(ErrorCode.Cancelled, msg('statement cancelled on the server'), cause);
  }
  if (code.startsWith('57P') || code.startsWith('08')) {
    return new Indeterminate(ErrorCode.Unavailable, msg('server went away during the statement'), cause);
  }
  return new Indeterminate(ErrorCode.Unknown, msg('server error'), cause);
}

/**
 * The five-character SQLSTATE of a server error, or undefined for other errors.
 * Every SQLSTATE has a digit; errno codes of the same length (`EPIPE`) have none.
 */
function sqlState(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && /^(?=.*[0-9])[0-9A-Z]{5}$/.test(code) ? code : undefined;
}

function describe(err: unknown, code: string | undefined): string {
  const message = err instanceof Error ? err.message : String(err);
  const errno = (err as { code?: unknown } | null)?.code;
  if (code !== undefined) return `${message} (SQLSTATE ${code})`;
  return typeof errno === 'string' ? `${message} (${errno})` : message;
}
