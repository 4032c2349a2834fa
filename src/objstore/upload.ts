/**
 * A value written as staged parts and one commit: the object changes only when
 * the commit is applied, so a writer that fails or dies before it leaves the old
 * value.
 *
 * Outcome of a failure: before the commit was sent (starting the upload, any
 * part, or the caller's signal firing before the commit) it is Determinate,
 * whatever the failed request was, since nothing staged is visible; a Timeout
 * becomes Unavailable. A failure of the commit itself is reported as the client
 * mapped it (Indeterminate once it may have been sent). Either way the staged
 * parts are then aborted where the store can (retried a few times); that is
 * cleanup only: its failure is noted in the message and changes nothing else.
 */
import { aborted, ErrorCode, ExternalError, type Determinate } from '../errors.js';
import { DEFAULT_BACKOFF, retry } from '../kit/backoff.js';
import { bounded } from '../kit/bounded.js';
import { externalError } from '../kit/exposure.js';
import type { CallContext, StagedUpload } from './client.js';

/** How {@link stagedWrite} cuts and sends a value. */
export interface StagedWriteOptions {
  /** Bytes per part (grown when the value would need more than `maxParts`). */
  partSize: number;
  maxParts: number;
  /** Parts in flight. */
  concurrency: number;
}

/** Attempts at aborting a failed upload, and the time they may take in all. */
const ABORT_ATTEMPTS = 3;
const ABORT_BUDGET_MS = 30_000;

/** The number of parts {@link stagedWrite} cuts `bytes` into. */
export function partCount(bytes: number, options: StagedWriteOptions): { parts: number; partSize: number } {
  const partSize = Math.max(options.partSize, Math.ceil(bytes / options.maxParts));
  return { parts: Math.max(1, Math.ceil(bytes / partSize)), partSize };
}

/**
 * Writes `value` through an upload from `begin` (called with the part count):
 * parts staged `concurrency` at a time, then the commit (see the module comment).
 */
export async function stagedWrite(
  begin: (parts: number, ctx: CallContext) => Promise<StagedUpload>,
  value: Uint8Array,
  options: StagedWriteOptions,
  ctx: CallContext,
): Promise<void> {
  const { parts, partSize } = partCount(value.byteLength, options);
  let upload: StagedUpload;
  try {
    upload = await begin(parts, ctx);
  } catch (err) {
    throw notWritten(err, '; nothing was written');
  }
  try {
    await bounded(
      parts,
      options.concurrency,
      (i, _index, signal) => upload.stage(i, parts, value.subarray(i * partSize, Math.min(value.byteLength, (i + 1) * partSize)), { what: ctx.what, signal }),
      { signal: ctx.signal },
    );
    // The caller gave up before the commit was sent: still provably nothing written.
    if (ctx.signal?.aborted) throw aborted(ctx.signal, 'not-sent');
  } catch (err) {
    const cleanup = await abortUpload(upload, ctx.what);
    throw notWritten(err, `; the upload was never committed, so nothing was written${cleanup}`);
  }
  try {
    await upload.commit(ctx);
  } catch (err) {
    // The commit may have been applied: `err` stands as mapped. The abort after it
    // is cleanup only (if the commit landed, the store has nothing left to drop).
    const cleanup = await abortUpload(upload, ctx.what);
    if (cleanup === '' || !(err instanceof ExternalError)) throw err;
    throw externalError(err.code, `${err.message}${cleanup}`, { exposure: err.determinate ? 'not-sent' : 'committed', cause: err.cause });
  }
}

/** Aborts the upload where the store can; a note for the message when that failed. */
async function abortUpload(upload: StagedUpload, what: string): Promise<string> {
  if (upload.abort === undefined) return '';
  try {
    // Whatever broke the upload (a flaky network) may break the abort too; it is
    // idempotent, so it is tried a few times.
    await retry((_n, signal) => upload.abort!({ what: `${what} (abort upload ${upload.id})`, signal }), {
      policy: { ...DEFAULT_BACKOFF, attempts: ABORT_ATTEMPTS },
      signal: AbortSignal.timeout(ABORT_BUDGET_MS),
      retryable: (err) => !(err instanceof ExternalError && err.determinate && err.code !== ErrorCode.Unavailable),
    });
    return '';
  } catch (err) {
    return ` (aborting upload ${upload.id} failed too, its parts remain until the store drops them: ${err instanceof Error ? err.message : String(err)})`;
  }
}

/** A failure before the commit was sent, as Determinate: nothing staged is visible. */
function notWritten(err: unknown, note: string): Determinate {
  const code = err instanceof ExternalError ? err.code : ErrorCode.Unknown;
  const message = err instanceof Error ? err.message : String(err);
  return externalError(code, `${message}${note}`, { exposure: 'not-sent', cause: err instanceof ExternalError ? (err.cause ?? err) : err }) as Determinate;
}
