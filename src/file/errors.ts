/**
 * How FileBlob's file-system errors (errno codes) become ExternalErrors: a table
 * from errno to code, judged by the kit's one rule (src/kit/exposure.ts).
 *
 * | errno                              | before the commit point       | after it       |
 * |------------------------------------|-------------------------------|----------------|
 * | EACCES, EPERM, EROFS               | Determinate PermissionDenied  | Indeterminate  |
 * | ENOSPC, EDQUOT, EFBIG              | Determinate ResourceExhausted | Indeterminate  |
 * | ENAMETOOLONG                       | Determinate InvalidArgument   | Indeterminate  |
 * | EMFILE, ENFILE                     | Determinate Unavailable       | Indeterminate  |
 * | ENOENT                             | Determinate NotFound          | Indeterminate  |
 * | ELOOP, ENOTDIR, EISDIR             | Determinate DataLoss          | Indeterminate  |
 * | ETIMEDOUT                          | Indeterminate Timeout         | Indeterminate  |
 * | EIO and anything else              | Indeterminate Unknown         | Indeterminate  |
 *
 * The commit point of a write is the `rename` (or `link`) that makes it visible:
 * every error before it left the target untouched (the temporary file never
 * replaced it), so the errnos of the table prove nothing changed (exposure `sent`,
 * refused); every error after it (the directory fsync) comes too late to undo it
 * (exposure `committed`). An error *of* the rename is judged like one before it,
 * except EIO and unknown errors, which stay Indeterminate. Reads have no commit
 * point. Callers handle the expected cases themselves first (ENOENT on a read is
 * `undefined`).
 */
import { ErrorCode, ExternalError } from '../errors.js';
import { externalError, type ErrorTable } from '../kit/exposure.js';

/** What the failed step was part of, for the message and the classification. */
export interface FsErrorContext {
  /** The handle, e.g. `FileBlob(/srv/blob)`. */
  description: string;
  /** What was being done, e.g. `set "a/b"`. */
  action: string;
  /** True once the write became visible (after the rename/link): then always Indeterminate. */
  committed: boolean;
}

/** The errnos that prove the step changed nothing, by code. */
const REFUSED: Record<string, ErrorCode> = {
  EACCES: ErrorCode.PermissionDenied,
  EPERM: ErrorCode.PermissionDenied,
  EROFS: ErrorCode.PermissionDenied,
  ENOSPC: ErrorCode.ResourceExhausted,
  EDQUOT: ErrorCode.ResourceExhausted,
  EFBIG: ErrorCode.ResourceExhausted,
  ENAMETOOLONG: ErrorCode.InvalidArgument,
  EMFILE: ErrorCode.Unavailable,
  ENFILE: ErrorCode.Unavailable,
  ENOENT: ErrorCode.NotFound,
  ELOOP: ErrorCode.DataLoss,
  ENOTDIR: ErrorCode.DataLoss,
  EISDIR: ErrorCode.DataLoss,
};

const HINT: Record<string, string> = {
  ENAMETOOLONG: ' (the path is too long for this system: use a root directory with a shorter path)',
  ELOOP: ' (a symbolic link inside the root is never followed)',
  ENOTDIR: ' (an entry inside the root is not what the layout expects)',
  EISDIR: ' (an entry inside the root is not what the layout expects)',
};

/** The file system's table: the errnos above; anything else is unknown (Unknown). */
export const FS_ERRORS: ErrorTable = (err) => {
  const errno = errnoOf(err);
  if (errno === undefined) return undefined;
  if (errno === 'ETIMEDOUT') return { code: ErrorCode.Timeout };
  const code = REFUSED[errno];
  return code === undefined ? undefined : { code, refused: true };
};

/** Maps a file-system error; an ExternalError passes through unchanged. */
export function fsError(err: unknown, ctx: FsErrorContext): ExternalError {
  if (err instanceof ExternalError) return err;
  const errno = errnoOf(err);
  const verdict = FS_ERRORS(err) ?? { code: ErrorCode.Unknown };
  const detail = err instanceof Error ? err.message : String(err);
  const message = `${ctx.description}: ${ctx.action} failed: ${detail}${errno === undefined ? '' : (HINT[errno] ?? '')}`;
  return externalError(verdict.code, ctx.committed ? `${message} (after the change became visible: it may have taken effect)` : message, {
    exposure: ctx.committed ? 'committed' : 'sent',
    refused: verdict.refused,
    cause: err,
  });
}

/** The errno code of a Node.js system error, if any. */
export function errnoOf(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}
