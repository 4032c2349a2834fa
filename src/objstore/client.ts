/**
 * What an object store supplies to the shared algorithms of this folder: a small
 * client over its SDK. Every method rejects with an ExternalError mapped by the
 * store's error table (see src/kit/http-errors.ts); answers the algorithms act on
 * (a missing object, a failed condition) are results, not errors.
 */

/** Names the handle and operation in messages, and carries the signal to pass on. */
export interface CallContext {
  /** E.g. `S3Blob(s3://b/p/) set("k")`. */
  what: string;
  signal?: AbortSignal | undefined;
}

/**
 * Conditions on a request, by ETag. Reads use `ifMatch` to stay on one version;
 * conditional writes (create-only, compare-and-swap) use both.
 */
export interface Conditions {
  /** Only if the object exists with this ETag. */
  ifMatch?: string | undefined;
  /** Only if the object does not exist (`*`), or its ETag is not this one. */
  ifNoneMatch?: string | undefined;
}

/** `length` bytes from `start`. */
export interface ByteRange {
  start: number;
  length: number;
}

/** The size and ETag of an object. */
export interface ObjectHead {
  size: number;
  etag: string | undefined;
}

/** A GET whose headers have arrived; its body is still to be read, or discarded. */
export interface ObjectResponse extends ObjectHead {
  /** Offset in the object of the first byte of the body. */
  start: number;
  /** Bytes in the body. */
  length: number;
  /** Reads the body into one new array of exactly `length` bytes, or rejects. */
  read(signal: AbortSignal | undefined): Promise<Uint8Array>;
  /** Drops the body unread (its errors too). */
  discard(): void;
}

/**
 * A GET's outcome: the response, or why there is none: no such object, the
 * conditions failed (412), or the range starts at or beyond the end (416).
 */
export type GetOutcome = ObjectResponse | 'missing' | 'changed' | 'unsatisfiable';

/** Reading objects, whole or by range. */
export interface ObjectReader {
  /** A GET of `range` (the whole object when undefined) under `conditions`. */
  get(name: string, range: ByteRange | undefined, conditions: Conditions, ctx: CallContext): Promise<GetOutcome>;
}

/** What a {@link ObjectClient.put} did. */
export type PutOutcome = { etag: string | undefined } | 'changed' | 'conflict';

/** An upload in parts that becomes visible only when committed. */
export interface StagedUpload {
  /** Names the upload in messages. */
  readonly id: string;
  /** Stages part `index` (from 0) of `count`. */
  stage(index: number, count: number, bytes: Uint8Array, ctx: CallContext): Promise<void>;
  /** Publishes the staged parts, in order, as the object's value. */
  commit(ctx: CallContext): Promise<void>;
  /** Drops the staged parts; absent where the store has no such call. */
  abort?(ctx: CallContext): Promise<void>;
}

/** One page of a listing. */
export interface ListPage {
  items: { name: string; size: number }[];
  /** The token of the next page; undefined on the last. */
  next: string | undefined;
}

/** Everything an object store's client offers the operations of its Blob. */
export interface ObjectClient extends ObjectReader {
  /** Size and ETag, or undefined when there is no such object. */
  head(name: string, ctx: CallContext): Promise<ObjectHead | undefined>;
  /**
   * One request writing the whole value: its new ETag, `changed` when
   * `conditions` failed, or `conflict` when the store refused it because of a
   * concurrent conditional write (nothing written; try again).
   */
  put(name: string, body: Uint8Array, conditions: Conditions, ctx: CallContext): Promise<PutOutcome>;
  /** Starts an upload in `parts` parts. */
  beginUpload(name: string, parts: number, ctx: CallContext): Promise<StagedUpload>;
  /** The page of names starting with `prefix` after `token` (the first page without). */
  listPage(prefix: string, token: string | undefined, ctx: CallContext): Promise<ListPage>;
  /** Deletes the object; `missing` when there was none, `changed` when `conditions` failed. */
  delete(name: string, conditions: Conditions, ctx: CallContext): Promise<'deleted' | 'missing' | 'changed'>;
}
