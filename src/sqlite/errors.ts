/**
 * SQLite's error table: SQLite (and file system) errors as a code and whether
 * SQLite's answer proves nothing was applied. {@link mapSqliteError} turns a
 * verdict into an ExternalError by the kit's one rule (kit/exposure.ts).
 *
 * The proof it rests on: every write of this backend runs inside an explicit
 * `BEGIN IMMEDIATE ... COMMIT`, and SQLite makes nothing durable before the COMMIT
 * writes the commit frame to the WAL. So a write's statements before COMMIT are
 * `sent` (they ran in the store) and an error there proves the transaction was
 * rolled back, or dies with the connection: the table says `refused` for every
 * error but CORRUPT, which proves nothing about the file. At COMMIT the exposure
 * is `committed` and every error Indeterminate: an fsync that failed may still
 * have put the frame on disk, and a full disk can strike while SQLite pads the
 * WAL after the commit frame. The one COMMIT failure SQLite documents as leaving
 * the transaction open and unapplied, SQLITE_BUSY, never reaches this table: the
 * engine rolls back and the batch is retried from BEGIN. Opening and reading are
 * mapped at `sent` too.
 *
 * | SQLite code (and extended codes)      | code              | before COMMIT / open / read | at COMMIT     |
 * |---------------------------------------|-------------------|-----------------------------|---------------|
 * | BUSY, LOCKED (after busyTimeoutMs)    | Aborted           | Determinate                 | Indeterminate |
 * | FULL, TOOBIG, NOMEM                   | ResourceExhausted | Determinate                 | Indeterminate |
 * | READONLY, PERM, AUTH, EACCES/EPERM    | PermissionDenied  | Determinate                 | Indeterminate |
 * | CANTOPEN, ENOENT/ENOTDIR/EISDIR       | Unavailable       | Determinate                 | Indeterminate |
 * | IOERR                                 | Unavailable       | Determinate                 | Indeterminate |
 * | NOTADB                                | DataLoss          | Determinate                 | Indeterminate |
 * | CORRUPT                               | DataLoss          | Indeterminate               | Indeterminate |
 * | INTERRUPT                             | Cancelled         | Determinate                 | Indeterminate |
 * | anything else                         | Unknown           | Determinate                 | Indeterminate |
 */
import { ErrorCode, type ExternalError } from '../errors.js';
import { mapError, type ErrorTable, type MapErrorContext } from '../kit/exposure.js';

/** The SQLite table (see the module comment); it has a verdict for every error. */
export const sqliteErrors: ErrorTable = (err) => {
  const code = (err as { code?: unknown } | null)?.code;
  const name = typeof code === 'string' ? code : 'UNKNOWN';
  const primary = /^SQLITE_[A-Z]+/.exec(name)?.[0] ?? name;
  const [errorCode, hint] = classify(primary);
  return { code: errorCode, refused: primary !== 'SQLITE_CORRUPT', reason: `${name}${hint}` };
};

/** {@link mapError} with {@link sqliteErrors}. */
export function mapSqliteError(err: unknown, ctx: MapErrorContext): ExternalError {
  return mapError(err, sqliteErrors, ctx);
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
