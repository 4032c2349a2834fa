/**
 * `persist-location/azure`: {@link AzureBlob}, Blob on Azure Blob Storage (block
 * blobs), through `@azure/storage-blob`.
 *
 * Layout: the value of key `k` is the block blob `<prefix>/<encodeKey(k)>` in the
 * location's container (`<encodeKey(k)>` without a prefix). `encodeKey` escapes
 * every UTF-8 byte outside `[A-Za-z0-9._-]` as `%XX` and puts a `~` after a final
 * `.`, so Azure's path rules (`.` and `..` segments, `\`, trailing dots) never
 * touch a key, a key never adds a `/` (the names of nested locations `p` and `p/q`
 * stay disjoint), and prefix listing stays one server-side listing (see
 * src/azure/keys.ts). Blobs under the prefix whose names are not in that form are
 * ignored.
 *
 * Key length: blob names are at most 1024 characters. A key is accepted when its
 * name (location prefix, `/`, encoded key) fits, so ordinary ASCII paths of 900
 * bytes do beside a short prefix; a key whose name does not fit rejects, before
 * anything is sent, with Determinate InvalidArgument naming the limit. Escaping
 * can triple a key, so every key of up to floor((1024 - name prefix bytes) / 3)
 * UTF-8 bytes fits whatever its characters (341 without a prefix, 327 for a
 * 40-byte prefix): {@link AzureBlob.maxKeyBytes}.
 *
 * Operations:
 * - set: the value is copied when `set` is called (the caller may reuse its array
 *   at once, and retried requests resend the same bytes); then up to
 *   `singleUploadMaxBytes` (8 MiB) one Put Blob; larger values are
 *   staged as `blockBytes` (8 MiB) blocks, `concurrency` (8) at a time, under ids
 *   unique to this upload, then published by one Put Block List: atomic, and a
 *   crash before the commit leaves only invisible uncommitted blocks. Azure has
 *   no call that drops uncommitted blocks without committing, so they stay until
 *   the next commit of that blob name (the next successful large `set` of the
 *   key discards them) or Azure's garbage collection of uncommitted blocks
 *   (after a week). Outcome of a failed staged `set` (the issue asks for
 *   Indeterminate when the server dies mid-upload; this is deliberately more
 *   precise): a failure before Put Block List was sent (a failed Put Block, or
 *   the caller's signal firing before the commit) is Determinate, whatever the
 *   failed request was, since nothing uncommitted is ever visible; a failure of
 *   Put Block List itself (sent, even partly) is mapped as usual, so a lost
 *   connection, timeout, 5xx or abort after sending is Indeterminate. Another
 *   writer's commit discards our uncommitted blocks (InvalidBlockList): the upload
 *   is then restaged after a random pause, up to 5 rounds in all, then Determinate
 *   Aborted.
 * - get: the first `min(rangeBytes, 1 MiB)` and the blob's size and ETag in one
 *   request. A value that fits is that one response. A larger one is read in
 *   parallel `rangeBytes` ranges, range 0 again included, each guarded by If-Match on that ETag
 *   and accepted only if it answers with that same ETag and the size the first
 *   response reported, straight into one buffer
 *   (one copy, from the socket). If the blob is overwritten meanwhile (412, or
 *   another ETag), it is read again in one unranged request (one response is one
 *   version): never a mix, and always progress. The SDK's resuming of broken
 *   bodies is off (it resumes under the response's ETag header); we retry the
 *   whole range.
 *   Why range 0 is read twice for large values: Azurite (3.35) answers a Get Blob
 *   with the body of the version that was current when the request arrived but
 *   with the ETag header of the version current when the body had been read
 *   (BlobHandler.downloadBlockBlobOrAppendBlob captures the block list, reads the
 *   data, then reads `etag` from the live metadata document, which Put Block List
 *   updates in place). Under overwrites, the first response's ETag can thus name
 *   a newer version than its bytes (and its size), and ranges guarded by it then
 *   mix two values, or cut the newer one to the older one's size.
 *   An If-Match that passes brackets the block-list capture with the ETag check,
 *   and an equal ETag header after it proves no commit in between; only such
 *   responses, or one response for the whole value, are known to be one version.
 *   Azure documents the ETag header as the returned content's, so there this
 *   costs only the probe's extra MiB (kept small for that reason).
 * - delete: Get Blob Properties for the size, then Delete Blob If-Match that ETag
 *   (snapshots included), so the returned size is the deleted value's.
 * - restore: succeeds if the blob exists; otherwise tries Undelete Blob, which
 *   brings back a soft-deleted blob when the account has blob soft delete on, then
 *   checks again: Determinate NotFound if the key still does not exist. (Azurite
 *   answers Undelete with 501, so there only existing keys restore. Restoring
 *   from blob versioning is not supported.)
 * - list: List Blobs (flat) under the encoded prefix, page by page (`listPageSize`,
 *   5000), streamed; breaking the loop stops the paging.
 *
 * Retries: the SDK's retry policy is off; src/azure/errors.ts retries transient
 * failures itself so that it knows whether an earlier attempt may have been applied.
 * Errors: {@link mapAzureError} (src/azure/errors.ts), in short: 4xx (400, 403,
 * 404 ContainerNotFound, 409, 412, ...) → Determinate; 5xx and throttling (503
 * ServerBusy, after retries), timeouts and connections lost after sending →
 * Indeterminate; connection refused before anything was sent → Determinate
 * Unavailable.
 *
 * URI: `azure://CONTAINER[/PREFIX][?endpoint=URL][&createContainer=true]`.
 * Credentials: `AZURE_STORAGE_CONNECTION_STRING`, else `AZURE_STORAGE_ACCOUNT` with
 * `AZURE_STORAGE_KEY`. `endpoint` is the blob service URL (for Azurite:
 * `http://127.0.0.1:10000/devstoreaccount1`); it overrides the connection string's.
 * `createContainer=true` creates the container if it is missing (off by default:
 * a missing container is Determinate NotFound on every operation).
 */
import { constants as bufferConstants } from 'node:buffer';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  AnonymousCredential,
  BlobServiceClient,
  type newPipeline,
  StorageSharedKeyCredential,
  type BlockBlobClient,
  type BlobDownloadResponseParsed,
  type ContainerClient,
  type StoragePipelineOptions,
} from '@azure/storage-blob';
import { BlobBase } from '../base.js';
import type { Blob, BlobMetadata } from '../blob.js';
import type { OpOptions } from '../consensus.js';
import { aborted, Determinate, ErrorCode, invalidArgument } from '../errors.js';
import { SegmentedBytes } from '../segmented-bytes.js';
import { asBuffer, copyBytes } from '../bytes.js';
import { boolParam, checkParams, type LocationUri } from '../uri.js';
import { utf8Length, validateKey } from '../validate.js';
import { AZURE_MAX_NAME_CHARS, decodeKey, encodeKey, encodePrefix, maxKeyBytesFor, namePrefixChars } from './keys.js';
import { azureErrorCode, azureStatus, mapAzureError, withRetries, type Attempts, type RetryOptions } from './errors.js';
import { blockIds, forEachLimit, readInto, totalFromContentRange, VersionChangedError } from './transfer.js';

export { mapAzureError, type RetryOptions } from './errors.js';
export { AZURE_MAX_NAME_CHARS, decodeKey, encodeKey, maxKeyBytesFor } from './keys.js';

const MiB = 1024 * 1024;
/** Azure's limits on one block blob. */
const MAX_BLOCKS = 50_000;
const MAX_BLOCK_BYTES = 4000 * MiB;
/** Rounds of a delete racing overwrites (each round: read the size, delete If-Match). */
const MAX_ROUNDS = 5;
const MAX_BUFFER_BYTES = bufferConstants.MAX_LENGTH;
/** Restaging rounds when another writer's commit discarded our blocks. */
const MAX_STAGED_ROUNDS = 5;
/** Pause before restaging: random up to this many ms times 2^round, so writers racing on one key drift apart. */
const RESTAGE_PAUSE_MS = 20;

/** Transfer sizes and limits; the defaults suit both Azure and Azurite. */
export interface AzureBlobTuning {
  /** Values up to this size go up in one Put Blob (default 8 MiB). */
  singleUploadMaxBytes?: number;
  /** Block size of a staged upload (default 8 MiB; grown if a value would need over 50,000 blocks). */
  blockBytes?: number;
  /** Range size of a get (default 8 MiB). */
  rangeBytes?: number;
  /** Parallel requests of one set or get (default 8). */
  concurrency?: number;
  /** Blobs per list page (default 5000, Azure's maximum). */
  listPageSize?: number;
  /** Retries of transient failures. */
  retry?: RetryOptions;
}

/** A credential BlobServiceClient accepts: a TokenCredential, a shared key, or anonymous. */
// (Not from BlobServiceClient's constructor: it is overloaded, and TypeScript reads only the
// last overload, the Pipeline one, which left this type `never`.)
export type AzureCredential = NonNullable<Parameters<typeof newPipeline>[0]>;

/** Options of {@link AzureBlob}. */
export interface AzureBlobOptions extends AzureBlobTuning {
  /** The container (3-63 lower-case letters, digits and single hyphens). */
  container: string;
  /** Where the location lives inside the container, as `a/b` (default: the container root). */
  prefix?: string;
  /**
   * The blob service URL, e.g. `https://ACCOUNT.blob.core.windows.net` or Azurite's
   * `http://127.0.0.1:10000/devstoreaccount1`. Overrides the connection string's.
   */
  endpoint?: string;
  /** A connection string (default: `AZURE_STORAGE_CONNECTION_STRING`). */
  connectionString?: string;
  /**
   * A credential to use with `endpoint` instead of a connection string (a token
   * credential from `@azure/identity`, a shared key, or anonymous for a SAS URL).
   */
  credential?: AzureCredential;
  /** Shown in messages instead of the container and prefix (e.g. the location URI). */
  display?: string;
}

/** Blob on Azure Blob Storage: see the module comment for layout, errors and URI. */
export class AzureBlob extends BlobBase {
  readonly description: string;
  readonly #container: ContainerClient;
  readonly #namePrefix: string;
  /** Characters Azure's name limit leaves for an encoded key after the prefix. */
  readonly #nameRoom: number;
  readonly #maxKeyBytes: number;
  readonly #singleUploadMaxBytes: number;
  readonly #blockBytes: number;
  readonly #rangeBytes: number;
  readonly #concurrency: number;
  readonly #listPageSize: number;
  readonly #retry: RetryOptions;

  constructor(options: AzureBlobOptions) {
    super();
    validateContainer(options.container);
    const prefix = normalizePrefix(options.prefix ?? '');
    this.#namePrefix = prefix === '' ? '' : `${prefix}/`;
    this.#nameRoom = AZURE_MAX_NAME_CHARS - namePrefixChars(this.#namePrefix);
    this.#maxKeyBytes = maxKeyBytesFor(this.#namePrefix);
    if (this.#maxKeyBytes < 1) throw invalidArgument(`Azure location prefix ${JSON.stringify(prefix)} is too long: it leaves no room for keys in a 1024-character blob name`);
    this.description = `AzureBlob(${options.display ?? `azure://${options.container}${prefix === '' ? '' : `/${prefix}`}`})`;
    this.#singleUploadMaxBytes = sizeOption(options.singleUploadMaxBytes, 8 * MiB, 'singleUploadMaxBytes', 0);
    this.#blockBytes = sizeOption(options.blockBytes, 8 * MiB, 'blockBytes', 1, MAX_BLOCK_BYTES);
    this.#rangeBytes = sizeOption(options.rangeBytes, 8 * MiB, 'rangeBytes', 1);
    this.#concurrency = sizeOption(options.concurrency, 8, 'concurrency', 1);
    this.#listPageSize = sizeOption(options.listPageSize, 5000, 'listPageSize', 1, 5000);
    this.#retry = options.retry ?? {};
    this.#container = serviceClient(options).getContainerClient(options.container);
  }

  /** A handle, after creating the container if `createContainer` and it is missing. */
  static async open(options: AzureBlobOptions & { createContainer?: boolean }, opts?: OpOptions): Promise<AzureBlob> {
    const blob = new AzureBlob(options);
    if (options.createContainer) await blob.#createContainer(opts);
    return blob;
  }

  /**
   * Every key of up to this many UTF-8 bytes fits, whatever its characters; longer
   * keys are accepted when their names fit (see the module comment).
   */
  override get maxKeyBytes(): number {
    return this.#maxKeyBytes;
  }

  /** SPEC's rules, then Azure's limit on the blob name. */
  protected override checkKey(key: string): void {
    validateKey(key);
    const chars = encodeKey(key).length;
    if (chars <= this.#nameRoom) return;
    throw invalidArgument(
      `${this.description}: key of ${utf8Length(key)} UTF-8 bytes is too long: its encoded name is ${chars} characters, more than the ${this.#nameRoom} that Azure's limit of ${AZURE_MAX_NAME_CHARS} characters per blob name leaves after the location prefix (ASCII letters, digits and -._ take one character, every other byte three; every key of up to ${this.#maxKeyBytes} UTF-8 bytes fits)`,
    );
  }

  protected async _get(key: string, opts?: OpOptions): Promise<SegmentedBytes | undefined> {
    const client = this.#blob(key);
    const signal = opts?.signal;
    try {
      try {
        return await this.#getRanged(client, signal);
      } catch (err) {
        // Overwritten between our first and a later range (412, or a range answered
        // with another ETag). Ranged reads of a key that keeps changing could lose
        // every race; one unranged response is one version, so it always makes
        // progress.
        if (azureStatus(err) === 412 && !signal?.aborted) return await this.#getWhole(client, { maybeApplied: false }, signal);
        throw err;
      }
    } catch (err) {
      throw this.#error(err, `get ${show(key)}`, { maybeApplied: false }, signal);
    }
  }

  async #getRanged(client: BlockBlobClient, outer: AbortSignal | undefined): Promise<SegmentedBytes | undefined> {
    const attempts: Attempts = { maybeApplied: false };
    const stop = new AbortController();
    const signal = outer === undefined ? stop.signal : AbortSignal.any([outer, stop.signal]);
    const size = this.#rangeBytes;
    // The probe's body is thrown away when the value is larger, so it stays small.
    const probe = Math.min(size, PROBE_BYTES);
    let head: BlobDownloadResponseParsed;
    try {
      head = await this.#retrying(() => download(client, 0, probe, signal), attempts, outer);
    } catch (err) {
      if (isBlobNotFound(err)) return undefined;
      // A ranged read of an empty blob is 416: read it unranged instead.
      if (azureStatus(err) === 416) return this.#getWhole(client, attempts, outer);
      throw err;
    }
    const total = totalFromContentRange(head.contentRange) ?? head.contentLength ?? 0;
    const etag = head.etag;
    if (total > probe || etag === undefined) {
      // Only a response guarded by If-Match that also answers with that ETag is
      // known to be of that version (see the module comment: Azurite's ETag header
      // may name a newer version than the body), so this unguarded body is dropped
      // and the whole value is read under If-Match, range 0 included. Drained,
      // not destroyed, to keep its keep-alive connection.
      drain(head);
      if (etag === undefined) return this.#getWhole(client, attempts, outer);
    }
    const out = this.#allocate(total);
    const rangeAt = (offset: number, length: number) =>
      this.#retrying(
        async () => {
          const r = await download(client, offset, length, signal, etag);
          if (r.etag !== etag) {
            drain(r);
            throw new VersionChangedError(`the range at ${offset} was read under If-Match ${etag} but answered with ETag ${r.etag}`);
          }
          // The size came from the unguarded probe, whose ETag header may name a
          // newer version than its size (see the module comment): a guarded range
          // of a blob of another size proves the probe mixed two versions.
          const rangeTotal = totalFromContentRange(r.contentRange);
          if (rangeTotal !== total) {
            drain(r);
            throw new VersionChangedError(`the range at ${offset} of a ${total}-byte value answered for a ${String(rangeTotal)}-byte blob under the same ETag ${etag}`);
          }
          await readInto(r.readableStreamBody, out, offset, length, signal);
        },
        attempts,
        outer,
      );
    if (total <= probe) {
      // The whole value in one response: one version, whatever its ETag says.
      try {
        await readInto(head.readableStreamBody, out, 0, total, signal);
      } catch (err) {
        if (signal.aborted) throw err;
        await rangeAt(0, total); // the body broke off: fetch it again, guarded
      }
    } else {
      await forEachLimit(Math.ceil(total / size), this.#concurrency, stop, async (i) => {
        const offset = i * size;
        await rangeAt(offset, Math.min(size, total - offset));
      });
    }
    return new SegmentedBytes(out);
  }

  /** One unranged response: one version (its ETag is not needed, nor trusted). */
  async #getWhole(client: BlockBlobClient, attempts: Attempts, signal: AbortSignal | undefined): Promise<SegmentedBytes | undefined> {
    try {
      return await this.#retrying(
        async () => {
          const r = await download(client, 0, undefined, signal);
          const out = this.#allocate(r.contentLength ?? 0);
          await readInto(r.readableStreamBody, out, 0, out.byteLength, signal);
          return new SegmentedBytes(out);
        },
        attempts,
        signal,
      );
    } catch (err) {
      if (isBlobNotFound(err)) return undefined;
      throw err;
    }
  }

  protected async *_list(prefix: string, opts?: OpOptions): AsyncIterable<BlobMetadata> {
    const signal = opts?.signal;
    const encoded = encodePrefix(prefix);
    // No key's name is longer than Azure allows, so no such prefix starts one.
    if (encoded.length > this.#nameRoom) return;
    const pages = this.#container
      .listBlobsFlat({ prefix: this.#namePrefix + encoded, abortSignal: signal })
      .byPage({ maxPageSize: this.#listPageSize });
    const skip = this.#namePrefix.length;
    const iterator = pages[Symbol.asyncIterator]();
    try {
      for (;;) {
        let page;
        try {
          page = await iterator.next();
        } catch (err) {
          throw this.#error(err, `list ${show(prefix)}`, { maybeApplied: false }, signal);
        }
        if (page.done) return;
        for (const item of page.value.segment.blobItems) {
          const key = item.name.startsWith(this.#namePrefix) ? decodeKey(item.name.slice(skip)) : undefined;
          if (key !== undefined) yield { key, sizeInBytes: item.properties.contentLength ?? 0 };
        }
      }
    } finally {
      await iterator.return?.();
    }
  }

  protected async _set(key: string, value: Uint8Array, opts?: OpOptions): Promise<void> {
    // The SDK reads the body only as it sends it (and again on each retry or
    // restaging), long after `set` returned its promise: a copy keeps the caller's
    // later writes out.
    const body = asBuffer(copyBytes(value));
    const client = this.#blob(key);
    const signal = opts?.signal;
    const what = `set ${show(key)}`;
    if (body.byteLength <= this.#singleUploadMaxBytes) {
      const attempts: Attempts = { maybeApplied: false };
      try {
        await this.#retrying(() => client.upload(body, body.byteLength, { abortSignal: signal }), attempts, signal);
      } catch (err) {
        throw this.#error(err, what, attempts, signal);
      }
      return;
    }
    for (let round = 1; ; round++) {
      const committed = await this.#setStaged(client, body, what, signal);
      if (committed) return;
      if (round >= MAX_STAGED_ROUNDS) {
        throw new Determinate(ErrorCode.Aborted, `${this.description}: ${what} failed: other writers of the same key kept discarding its staged blocks (${round} rounds)`);
      }
      // Writers that keep discarding each other's blocks are in step: a random
      // pause lets one of them commit first.
      try {
        await sleep(Math.random() * RESTAGE_PAUSE_MS * 2 ** round, undefined, { signal });
      } catch (err) {
        const cancelled = aborted(signal!, false);
        throw new Determinate(cancelled.code, `${this.description}: ${what} failed: ${cancelled.message}; nothing was committed`, { cause: err });
      }
    }
  }

  /** One staged upload; false when another writer's commit discarded our blocks (nothing written). */
  async #setStaged(client: BlockBlobClient, body: Buffer, what: string, outer: AbortSignal | undefined): Promise<boolean> {
    const blockBytes = Math.max(this.#blockBytes, Math.ceil(body.byteLength / MAX_BLOCKS));
    const ids = blockIds(Math.ceil(body.byteLength / blockBytes));
    const stop = new AbortController();
    const signal = outer === undefined ? stop.signal : AbortSignal.any([outer, stop.signal]);
    try {
      await forEachLimit(ids.length, this.#concurrency, stop, async (i) => {
        const block = body.subarray(i * blockBytes, Math.min(body.byteLength, (i + 1) * blockBytes));
        await this.#retrying(() => client.stageBlock(ids[i]!, block, block.byteLength, { abortSignal: signal }), { maybeApplied: false }, outer);
      });
    } catch (err) {
      // Nothing is visible until the commit, which was not sent: definitely not done.
      const mapped = this.#error(err, `${what} (staging blocks, before the commit)`, { maybeApplied: false }, undefined);
      // A timeout that provably changed nothing is not the (always Indeterminate) Timeout code.
      const reason = outer?.aborted ? ErrorCode.Cancelled : mapped.code === ErrorCode.Timeout ? ErrorCode.Unavailable : mapped.code;
      throw new Determinate(reason, `${mapped.message}; nothing was committed`, { cause: err });
    }
    if (outer?.aborted) {
      // The caller gave up before the commit was sent: still provably nothing written.
      const cancelled = aborted(outer, false);
      throw new Determinate(cancelled.code, `${this.description}: ${what} failed: ${cancelled.message}; nothing was committed`, { cause: outer.reason });
    }
    const attempts: Attempts = { maybeApplied: false };
    try {
      // From here on a failure may have been applied (mapped as usual, so a lost
      // connection, timeout, 5xx or abort after sending is Indeterminate).
      await this.#retrying(() => client.commitBlockList(ids, { abortSignal: outer }), attempts, outer);
      return true;
    } catch (err) {
      if (azureErrorCode(err) === 'InvalidBlockList' && !attempts.maybeApplied) return false;
      throw this.#error(err, what, attempts, outer);
    }
  }

  protected async _delete(key: string, opts?: OpOptions): Promise<number | undefined> {
    const client = this.#blob(key);
    const signal = opts?.signal;
    const what = `delete ${show(key)}`;
    const attempts: Attempts = { maybeApplied: false };
    try {
      for (let round = 1; ; round++) {
        let size: number;
        let etag: string | undefined;
        try {
          const props = await this.#retrying(() => client.getProperties({ abortSignal: signal }), { maybeApplied: false }, signal);
          size = props.contentLength ?? 0;
          etag = props.etag;
        } catch (err) {
          if (isBlobNotFound(err)) return undefined;
          throw err;
        }
        try {
          await this.#retrying(
            () => client.delete({ abortSignal: signal, deleteSnapshots: 'include', conditions: etag === undefined ? undefined : { ifMatch: etag } }),
            attempts,
            signal,
          );
          return size;
        } catch (err) {
          // Gone after an attempt that may have been ours: we deleted that value.
          if (isBlobNotFound(err)) return attempts.maybeApplied ? size : undefined;
          // Overwritten (or deleted, on Azurite) since we read its size: look again.
          if (azureStatus(err) === 412 && !attempts.maybeApplied && round < MAX_ROUNDS) continue;
          throw err;
        }
      }
    } catch (err) {
      throw this.#error(err, what, attempts, signal);
    }
  }

  protected async _restore(key: string, opts?: OpOptions): Promise<void> {
    const client = this.#blob(key);
    const signal = opts?.signal;
    const what = `restore ${show(key)}`;
    const attempts: Attempts = { maybeApplied: false };
    try {
      if (await this.#exists(client, signal)) return;
      try {
        await this.#retrying(() => client.undelete({ abortSignal: signal }), attempts, signal);
      } catch (err) {
        // 404, or 501/409/400 where soft delete is unsupported or off: fall through
        // to the existence check, which decides.
        const status = azureStatus(err);
        if (status === undefined || (status >= 500 && status !== 501)) throw err;
        if (azureErrorCode(err) === 'ContainerNotFound') throw err;
      }
      if (await this.#exists(client, signal)) return;
    } catch (err) {
      throw this.#error(err, what, attempts, signal);
    }
    throw new Determinate(
      ErrorCode.NotFound,
      `${this.description}: ${what} failed: the key does not exist and no soft-deleted value could be undeleted (blob soft delete off, expired, or unsupported)`,
    );
  }

  protected async _close(): Promise<void> {
    // The SDK holds no per-client resources: its keep-alive HTTP agent is shared.
  }

  async #exists(client: BlockBlobClient, signal: AbortSignal | undefined): Promise<boolean> {
    try {
      await this.#retrying(() => client.getProperties({ abortSignal: signal }), { maybeApplied: false }, signal);
      return true;
    } catch (err) {
      if (isBlobNotFound(err)) return false;
      throw err;
    }
  }

  async #createContainer(opts?: OpOptions): Promise<void> {
    const attempts: Attempts = { maybeApplied: false };
    try {
      await this.#retrying(() => this.#container.createIfNotExists({ abortSignal: opts?.signal }), attempts, opts?.signal);
    } catch (err) {
      throw this.#error(err, 'create the container', attempts, opts?.signal);
    }
  }

  /** The buffer a get fills; every byte is overwritten by the response bodies. */
  #allocate(bytes: number): Buffer {
    if (bytes > MAX_BUFFER_BYTES) {
      throw new Determinate(ErrorCode.ResourceExhausted, `${this.description}: the value is ${bytes} bytes, more than one Node.js Buffer holds (${MAX_BUFFER_BYTES})`);
    }
    return Buffer.allocUnsafe(bytes);
  }

  #blob(key: string): BlockBlobClient {
    return this.#container.getBlockBlobClient(this.#namePrefix + encodeKey(key));
  }

  #retrying<T>(attempt: () => Promise<T>, attempts: Attempts, signal: AbortSignal | undefined): Promise<T> {
    return withRetries(attempt, { retry: this.#retry, attempts, signal });
  }

  #error(err: unknown, what: string, attempts: Attempts, signal: AbortSignal | undefined) {
    return mapAzureError(err, { what: `${this.description}: ${what}`, maybeAppliedBefore: attempts.maybeApplied, signal });
  }
}

/** `azure://CONTAINER[/PREFIX]?endpoint=URL&createContainer=true` (see the module comment). */
export async function blobFromUri(loc: LocationUri): Promise<Blob> {
  const params = checkParams(loc, ['endpoint', 'createContainer']);
  const container = loc.authority ?? '';
  if (container === '' || container.includes('@') || container.includes(':')) {
    throw invalidArgument(`expected azure://CONTAINER[/PREFIX], got ${loc.display}`);
  }
  const createContainer = boolParam(loc, params.createContainer, 'createContainer') ?? false;
  return AzureBlob.open({ container, prefix: loc.path, endpoint: params.endpoint, display: loc.display, createContainer });
}

/**
 * Get Blob, with the SDK's resuming of a broken body off: it resumes under If-Match
 * on the response's ETag header, which on Azurite may name another version than
 * the bytes already received. Our callers retry the whole range instead.
 */
function download(client: BlockBlobClient, offset: number, count: number | undefined, signal: AbortSignal | undefined, ifMatch?: string) {
  return client.download(offset, count, { abortSignal: signal, maxRetryRequests: 0, conditions: ifMatch === undefined ? undefined : { ifMatch } });
}

/** Size of the first ranged request of a get, which learns the size and ETag. */
const PROBE_BYTES = 1024 * 1024;

/** Discards a response body we will not use (its errors too). */
function drain(response: BlobDownloadResponseParsed): void {
  response.readableStreamBody?.on('error', () => {}).resume();
}

function isBlobNotFound(err: unknown): boolean {
  return azureStatus(err) === 404 && azureErrorCode(err) !== 'ContainerNotFound';
}

function show(key: string): string {
  return JSON.stringify(key.length > 80 ? `${key.slice(0, 80)}…` : key);
}

const CONTAINER = /^(?:[a-z0-9](?:[a-z0-9]|-(?!-)){1,61}[a-z0-9]|\$root|\$web)$/;

function validateContainer(container: unknown): asserts container is string {
  if (typeof container !== 'string' || !CONTAINER.test(container)) {
    throw invalidArgument(
      `invalid Azure container name ${JSON.stringify(container)}: 3-63 characters, lower-case letters, digits and single hyphens, starting and ending with a letter or digit`,
    );
  }
}

/**
 * The location prefix without outer slashes. Its segments must survive Azure as
 * they are: no empty, `.` or `..` segment, none ending in `.`, no `\` or control
 * character, at most 253 of them (the keys under it are escaped; the prefix is the
 * user's own name).
 */
function normalizePrefix(prefix: string): string {
  const trimmed = prefix.replace(/^\/+|\/+$/g, '');
  if (trimmed === '') return '';
  const segments = trimmed.split('/');
  // Azure allows 254 segments per name; the encoded key is always the last one.
  if (segments.length > 253) throw invalidArgument(`invalid Azure location prefix: ${segments.length} segments, more than the 253 a blob name leaves for it`);
  for (const segment of segments) {
    if (segment === '' || segment.endsWith('.') || /[\\\u0000-\u001f\u007f-\u009f]/.test(segment) || !segment.isWellFormed()) {
      throw invalidArgument(
        `invalid Azure location prefix ${JSON.stringify(prefix)}: segments must be non-empty, must not end with '.', and must not contain '\\' or control characters`,
      );
    }
  }
  return trimmed;
}

function sizeOption(value: number | undefined, fallback: number, name: string, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (value === undefined) return fallback;
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    throw invalidArgument(`AzureBlob option ${name} must be an integer in [${min}, ${max}], got ${String(value)}`);
  }
  return value;
}

/**
 * The service client: an explicit credential with `endpoint`, else a connection
 * string (option or `AZURE_STORAGE_CONNECTION_STRING`), else
 * `AZURE_STORAGE_ACCOUNT` + `AZURE_STORAGE_KEY`. The SDK's retries are off (ours
 * are in withRetries).
 */
function serviceClient(options: AzureBlobOptions): BlobServiceClient {
  const pipeline: StoragePipelineOptions = { retryOptions: { maxTries: 1 }, keepAliveOptions: { enable: true } };
  const endpoint = options.endpoint === undefined || options.endpoint === '' ? undefined : checkEndpoint(options.endpoint);
  if (options.credential !== undefined) {
    if (endpoint === undefined) throw invalidArgument('AzureBlob: a credential needs an endpoint (the blob service URL)');
    return new BlobServiceClient(endpoint, options.credential, pipeline);
  }
  const connectionString = options.connectionString ?? nonEmpty(process.env.AZURE_STORAGE_CONNECTION_STRING);
  if (connectionString !== undefined) {
    if (endpoint === undefined) {
      try {
        return BlobServiceClient.fromConnectionString(connectionString, pipeline);
      } catch (err) {
        throw new Determinate(ErrorCode.InvalidArgument, `AzureBlob: unusable Azure Storage connection string: ${(err as Error).message}`);
      }
    }
    const parts = parseConnectionString(connectionString);
    const sas = parts.get('sharedaccesssignature');
    if (sas !== undefined) return new BlobServiceClient(`${endpoint}?${sas.replace(/^\?/, '')}`, new AnonymousCredential(), pipeline);
    const name = parts.get('accountname');
    const key = parts.get('accountkey');
    if (name === undefined || key === undefined) {
      throw invalidArgument('AzureBlob: with an endpoint, the connection string needs AccountName and AccountKey, or SharedAccessSignature');
    }
    return new BlobServiceClient(endpoint, new StorageSharedKeyCredential(name, key), pipeline);
  }
  const account = nonEmpty(process.env.AZURE_STORAGE_ACCOUNT);
  const key = nonEmpty(process.env.AZURE_STORAGE_KEY);
  if (account !== undefined && key !== undefined) {
    return new BlobServiceClient(endpoint ?? `https://${account}.blob.core.windows.net`, new StorageSharedKeyCredential(account, key), pipeline);
  }
  throw new Determinate(
    ErrorCode.PermissionDenied,
    'AzureBlob: no Azure credentials: set AZURE_STORAGE_CONNECTION_STRING, or AZURE_STORAGE_ACCOUNT and AZURE_STORAGE_KEY',
  );
}

function checkEndpoint(endpoint: string): string {
  let url: URL;
  try {
    url = new URL(endpoint);
  } catch {
    throw invalidArgument(`AzureBlob: endpoint must be an http(s) URL, got ${JSON.stringify(endpoint)}`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw invalidArgument(`AzureBlob: endpoint must be an http(s) URL, got ${JSON.stringify(endpoint)}`);
  }
  return endpoint.replace(/\/+$/, '');
}

/** `Key=Value;...` with lower-cased keys; values may contain `=`. */
function parseConnectionString(cs: string): Map<string, string> {
  const parts = new Map<string, string>();
  for (const item of cs.split(';')) {
    const eq = item.indexOf('=');
    if (eq > 0) parts.set(item.slice(0, eq).trim().toLowerCase(), item.slice(eq + 1).trim());
  }
  return parts;
}

function nonEmpty(s: string | undefined): string | undefined {
  return s === undefined || s === '' ? undefined : s;
}
export { azureBackend } from './backend.js';
