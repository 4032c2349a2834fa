/**
 * The one place where FileBlob turns a file-system error (an errno code) into an
 * ExternalError.
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
 * replaced it), every error after it (the directory fsync) comes too late to
 * undo it. An error *of* the rename is judged like one before it, except EIO and
 * unknown errors, which stay Indeterminate. Reads have no commit point. Callers
 * handle the expected cases themselves first (ENOENT on a read is `undefined`).
 */
import { Determinate, ErrorCode, ExternalError, Indeterminate } from '../errors.js';

/** What the failed step was part of, for the message and the classification. */
export interface FsErrorContext {
  /** The handle, e.g. `FileBlob(/srv/blob)`. */
  description: string;
  /** What was being done, e.g. `set "a/b"`. */
  action: string;
  /** True once the write became visible (after the rename/link): then always Indeterminate. */
  committed: boolean;
}

const DETERMINATE: Record<string, ErrorCode> = {
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

/** Maps a file-system error; an ExternalError passes through unchanged. */
export function fsError(err: unknown, ctx: FsErrorContext): ExternalError {
  if (err instanceof ExternalError) return err;
  const errno = (err as { code?: unknown } | null)?.code;
  const code = typeof errno === 'string' ? errno : undefined;
  const detail = err instanceof Error ? err.message : String(err);
  const message = `${ctx.description}: ${ctx.action} failed: ${detail}${code === undefined ? '' : (HINT[code] ?? '')}`;
  const determinateCode = code === undefined ? undefined : DETERMINATE[code];
  if (!ctx.committed && determinateCode !== undefined) return new Determinate(determinateCode, message, { cause: err });
  const indeterminateCode =
    code === 'ETIMEDOUT' ? ErrorCode.Timeout : (determinateCode ?? ErrorCode.Unknown);
  const why = ctx.committed ? `${message} (after the change became visible: it may have taken effect)` : message;
  return new Indeterminate(indeterminateCode, why, { cause: err });
}

/** The errno code of a Node.js system error, if any. */
export function errnoOf(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}
