/**
 * Moving bytes: reading a response body into place, and the block ids of a
 * staged upload.
 */
import { randomBytes } from 'node:crypto';

/** A response body ended before or after the byte count its headers promised. */
export class ShortBodyError extends Error {
  override readonly name = 'ShortBodyError';
  /** Treated like a connection reset by the error table. */
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
    // With the SDK's stream retries off (see src/azure/client.ts), a body that
    // breaks off surfaces as a plain Error, or as an AbortError when the socket
    // closed under it: make it a retryable connection failure. Only an abort of
    // `signal` (the caller, or a failed sibling range) is an abort.
    if (err instanceof ShortBodyError || ((err as Error | null)?.name === 'AbortError' && signal?.aborted === true)) throw err;
    throw new ShortBodyError(`the response body broke off after ${at - offset} of ${length} bytes: ${(err as Error | null)?.message ?? String(err)}`, { cause: err });
  }
  if (at !== end) throw new ShortBodyError(`the response body ended after ${at - offset} of ${length} bytes`);
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

/** `bytes 100-199/1234` → start 100, total 1234. */
export function parseContentRange(contentRange: string | undefined): { start: number; total: number } | undefined {
  const m = contentRange === undefined ? null : /^bytes (\d+)-\d+\/(\d+)\s*$/.exec(contentRange);
  return m === null ? undefined : { start: Number(m[1]), total: Number(m[2]) };
}
