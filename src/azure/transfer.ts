/**
 * Moving bytes: a bounded parallel loop, reading a response body into place, and
 * the block ids of a staged upload.
 */
import { randomBytes } from 'node:crypto';

/**
 * Runs `task(i)` for i in [0, count) with at most `limit` running at once. On the
 * first failure it fires `abort` (so the running tasks stop early), waits for the
 * rest to settle and rejects with that first failure.
 */
export async function forEachLimit(count: number, limit: number, abort: AbortController, task: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  let failure: { err: unknown } | undefined;
  const worker = async (): Promise<void> => {
    while (failure === undefined && next < count) {
      const i = next++;
      try {
        await task(i);
      } catch (err) {
        if (failure === undefined) {
          failure = { err };
          abort.abort(new Error('a sibling request failed'));
        }
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, count) }, worker));
  if (failure !== undefined) throw failure.err;
}

/** A response body ended before or after the byte count its headers promised. */
export class ShortBodyError extends Error {
  override readonly name = 'ShortBodyError';
  /** Treated like a connection reset by the error mapping and the retry loop. */
  readonly code = 'ECONNRESET';
}

/**
 * Copies a response body into `target[offset, offset + length)` as it arrives: the
 * only copy a get makes. Rejects if the body is shorter or longer.
 */
export async function readInto(body: NodeJS.ReadableStream | undefined, target: Buffer, offset: number, length: number, signal?: AbortSignal): Promise<void> {
  if (body === undefined) {
    if (length === 0) return;
    throw new ShortBodyError(`the response has no body; expected ${length} bytes`);
  }
  const end = offset + length;
  let at = offset;
  try {
    for await (const chunk of body as AsyncIterable<Buffer | string>) {
      const bytes = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
      if (at + bytes.byteLength > end) {
        throw new ShortBodyError(`the response body is longer than the expected ${length} bytes`);
      }
      bytes.copy(target, at);
      at += bytes.byteLength;
    }
  } catch (err) {
    // With the SDK's stream retries off (see the get in src/azure/index.ts), a body that
    // breaks off surfaces as a plain Error, or as an AbortError when the socket
    // closed under it: make it a retryable connection failure. Only an abort of
    // `signal` (the caller, or a failed sibling range) is an abort.
    if (err instanceof ShortBodyError || ((err as Error | null)?.name === 'AbortError' && signal?.aborted === true)) throw err;
    throw new ShortBodyError(`the response body broke off after ${at - offset} of ${length} bytes: ${(err as Error | null)?.message ?? String(err)}`, { cause: err });
  }
  if (at !== end) throw new ShortBodyError(`the response body ended after ${at - offset} of ${length} bytes`);
}

/**
 * A ranged response guarded by If-Match did not come back with that same ETag: the
 * blob changed under the request, so its body cannot be trusted to be the version
 * we asked for (Azurite does this, see the get in src/azure/index.ts). Handled like a 412.
 */
export class VersionChangedError extends Error {
  override readonly name = 'VersionChangedError';
  readonly statusCode = 412;
  readonly code = 'ConditionNotMet';
}

/**
 * Block ids for one staged upload: unique to the upload (so that two writers of
 * the same key never commit each other's blocks) and all of one length, as Azure
 * requires.
 */
export function blockIds(count: number): string[] {
  const upload = randomBytes(12).toString('hex');
  return Array.from({ length: count }, (_, i) => Buffer.from(`${upload}-${String(i).padStart(6, '0')}`).toString('base64'));
}

/** `bytes 0-99/1234` → 1234. */
export function totalFromContentRange(contentRange: string | undefined): number | undefined {
  const m = contentRange === undefined ? null : /\/(\d+)\s*$/.exec(contentRange);
  return m === null ? undefined : Number(m[1]);
}
