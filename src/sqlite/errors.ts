import { Determinate, ErrorCode, Indeterminate, type ExternalError } from '../errors.js';
import type { Phase } from './engine.js';

/**
 * THE mapping from SQLite (and file system) errors to ExternalError.
 *
 * The proof it rests on: every write of this backend runs inside an explicit
 * `BEGIN IMMEDIATE ... COMMIT`, and SQLite makes nothing durable before the COMMIT
 * writes the commit frame to the WAL. So an error before COMMIT is issued is
 * Determinate (the transaction is rolled back, or dies with the connection), and
 * an error at COMMIT is Indeterminate: an fsync that failed may still have put
 * the frame on disk, and a full disk can strike while SQLite pads the WAL after
 * the commit frame. The one COMMIT failure SQLite documents as leaving the
 * transaction open and unapplied, SQLITE_BUSY, never reaches this function: the
 * engine rolls back and the batch is retried from BEGIN.
 *
 * | SQLite code (and extended codes)      | before COMMIT / open / read          | at COMMIT                     |
 * |---------------------------------------|--------------------------------------|-------------------------------|
 * | BUSY, LOCKED (after busyTimeoutMs)    | Determinate Aborted                  | Indeterminate Aborted         |
 * | FULL, TOOBIG, NOMEM                   | Determinate ResourceExhausted        | Indeterminate ResourceExhausted |
 * | READONLY, PERM, AUTH, EACCES/EPERM    | Determinate PermissionDenied         | Indeterminate PermissionDenied |
 * | CANTOPEN, ENOENT/ENOTDIR/EISDIR       | Determinate Unavailable              | Indeterminate Unavailable     |
 * | IOERR                                 | Determinate Unavailable              | Indeterminate Unavailable     |
 * | NOTADB                                | Determinate DataLoss                 | Indeterminate DataLoss        |
 * | CORRUPT                               | Indeterminate DataLoss (the file can prove nothing) | Indeterminate DataLoss |
 * | INTERRUPT                             | Determinate Cancelled                | Indeterminate Cancelled       |
 * | anything else                         | Determinate Unknown                  | Indeterminate Unknown         |
 */
export function sqliteError(err: unknown, phase: Phase, description: string): ExternalError {
  const code = (err as { code?: unknown } | null)?.code;
  const name = typeof code === 'string' ? code : 'UNKNOWN';
  const primary = /^SQLITE_[A-Z]+/.exec(name)?.[0] ?? name;
  const message = (err as { message?: unknown } | null)?.message;
  const detail = typeof message === 'string' ? message : String(err);
  const [errorCode, hint] = classify(primary);
  const indeterminate = phase === 'commit' || primary === 'SQLITE_CORRUPT';
  const where = phase === 'commit' ? 'at COMMIT, so the write may have been applied' : phase === 'read' ? 'while reading' : phase === 'open' ? 'while opening' : 'before COMMIT, nothing was applied';
  const text = `${description}: ${name} ${where}: ${detail}${hint}`;
  const options = { cause: err };
  return indeterminate ? new Indeterminate(errorCode, text, options) : new Determinate(errorCode, text, options);
}

function classify(primary: string): [ErrorCode, string] {
  switch (primary) {
    case 'SQLITE_BUSY':
    case 'SQLITE_LOCKED':
      return [ErrorCode.Aborted, ' (another connection held the lock; raise busyTimeoutMs to wait longer)'];
    case 'SQLITE_FULL':
    case 'SQLITE_TOOBIG':
    case 'SQLITE_NOMEM':
      return [ErrorCode.ResourceExhausted, ''];
    case 'SQLITE_READONLY':
    case 'SQLITE_PERM':
    case 'SQLITE_AUTH':
    case 'EACCES':
    case 'EPERM':
    case 'EROFS':
      return [ErrorCode.PermissionDenied, ''];
    case 'SQLITE_CANTOPEN':
    case 'ENOENT':
    case 'ENOTDIR':
    case 'EISDIR':
    case 'SQLITE_IOERR':
      return [ErrorCode.Unavailable, ''];
    case 'SQLITE_NOTADB':
    case 'SQLITE_CORRUPT':
      return [ErrorCode.DataLoss, ''];
    case 'SQLITE_INTERRUPT':
      return [ErrorCode.Cancelled, ''];
    default:
      return [ErrorCode.Unknown, ''];
  }
}
