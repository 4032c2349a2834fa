import type { OpOptions } from './consensus.js';
import type { SegmentedBytes } from './segmented-bytes.js';

/** What {@link Blob.list} yields for each key. */
export interface BlobMetadata {
  key: string;
  sizeInBytes: number;
}

/** A key that liveness probes may read; it is an ordinary key. */
export const BLOB_GET_LIVENESS_KEY = 'LIVENESS';

/**
 * A durable map from string keys to byte values, shared by every handle opened on
 * the same location (in this process or any other).
 *
 * Keys follow the same rules as Consensus keys (non-empty, at most 1024 UTF-8
 * bytes, no U+0000), except that an object store may document a lower cap. Every
 * valid key is stored and listed back exactly and can never name anything outside
 * the location. Values are arbitrary bytes, including empty.
 *
 * Every storage failure rejects with an ExternalError: Determinate when the
 * operation definitely did not take effect, Indeterminate when it might have.
 */
export interface Blob {
  /** The value, or `undefined` when the key does not exist. */
  get(key: string, opts?: OpOptions): Promise<SegmentedBytes | undefined>;

  /**
   * Every key starting with `prefix` ('' or omitted: all keys), with its size, in
   * no particular order. Breaking out of the loop releases the listing.
   */
  list(prefix?: string, opts?: OpOptions): AsyncIterable<BlobMetadata>;

  /**
   * Stores the value durably and atomically: a reader sees the whole old value or
   * the whole new value, never a mix, a prefix or nothing, even if the writer
   * crashes mid-way. Overwriting is allowed.
   */
  set(key: string, value: Uint8Array, opts?: OpOptions): Promise<void>;

  /**
   * Deletes the key and returns the deleted value's size in bytes, or `undefined` if
   * it did not exist. Deleting a missing key succeeds.
   */
  delete(key: string, opts?: OpOptions): Promise<number | undefined>;

  /**
   * Succeeds iff the key exists afterwards: it already existed, or a deleted value
   * was brought back. Otherwise rejects with a Determinate error. A backend that
   * keeps no deleted values succeeds only for keys that exist.
   */
  restore(key: string, opts?: OpOptions): Promise<void>;

  /** Releases the handle's resources. Idempotent. */
  close(): Promise<void>;

  /** Calls {@link close}. */
  [Symbol.asyncDispose](): Promise<void>;
}
