/**
 * `persist-location/azure`: {@link AzureBlob}, Blob on Azure Blob Storage (block
 * blobs), through `@azure/storage-blob`. Options, credentials and URI:
 * src/azure/config.ts; errors and retries: src/azure/errors.ts and
 * src/azure/client.ts; the transfers it shares with S3: src/objstore/.
 *
 * Layout: the value of key `k` is the block blob `<prefix>/<encodeKey(k)>` in the
 * location's container. `encodeKey` (src/azure/keys.ts) escapes every UTF-8 byte
 * outside `[A-Za-z0-9._-]` as `%XX` and puts a `~` after a final `.`, so Azure's
 * path rules never touch a key, a key never adds a `/` (nested locations stay
 * disjoint), and prefix listing stays one server-side listing. Blobs under the
 * prefix whose names are not in that form are ignored.
 *
 * Key length: blob names are at most 1024 characters. A key is accepted when its
 * name fits; one that does not rejects, before anything is sent, with Determinate
 * InvalidArgument naming the limit. Every key of up to
 * {@link AzureBlob.maxKeyBytes} UTF-8 bytes fits whatever its characters (341
 * without a prefix).
 *
 * Operations:
 * - set: the value is copied when `set` is called; up to `singleUploadMaxBytes`
 *   (8 MiB) one Put Blob, larger values `stagedWrite` as `blockBytes` blocks and
 *   one Put Block List (Determinate before the commit is sent). Uncommitted
 *   blocks cannot be dropped: they stay until the next commit of the key or
 *   Azure's garbage collection (a week). Another writer's commit discards our
 *   blocks (InvalidBlockList): the upload is then restaged after a random pause,
 *   up to 5 rounds in all, then Determinate Aborted.
 * - get: `rangedGet` with a first request of `min(rangeBytes, 1 MiB)`; a larger
 *   value is read as ranges, range 0 again included, and when the blob changes
 *   meanwhile it is read again in one unranged request.
 *   Why range 0 is read twice: Azurite (3.35) answers a Get Blob with the body
 *   of the version current when the request arrived but the ETag header of the
 *   version current when the body had been read (its block list is captured,
 *   read, and only then the live ETag taken). An unguarded first response can thus
 *   carry a newer version's ETag (and the older one's size); ranges guarded by it
 *   would mix two values. A range whose If-Match passed and that answers with the
 *   same ETag is one version. On Azure this costs only the probe's extra MiB.
 * - delete: Get Blob Properties for the size, then Delete Blob If-Match that ETag
 *   (snapshots included), so the returned size is the deleted value's; a blob
 *   that changes in between is looked at again, up to 5 rounds.
 * - restore: succeeds if the blob exists; otherwise tries Undelete Blob (blob soft
 *   delete), then checks again: Determinate NotFound if the key still does not
 *   exist. Azurite answers Undelete with 501, so there only existing keys restore.
 * - list: List Blobs (flat) pages, requested as the loop consumes them.
 */
import type { Blob, BlobMetadata } from '../blob.js';
import { BlobBase } from '../base.js';
import { asBuffer, copyBytes } from '../bytes.js';
import type { OpOptions } from '../consensus.js';
import { Determinate, ErrorCode, invalidArgument } from '../errors.js';
import { retry, type BackoffPolicy } from '../kit/backoff.js';
import { listPages, rangedGet, stagedWrite, type CallContext } from '../objstore/index.js';
import type { SegmentedBytes } from '../segmented-bytes.js';
import type { LocationUri } from '../uri.js';
import { utf8Length, validateKey } from '../validate.js';
import { AzureObjectClient, blocksDiscarded } from './client.js';
import { azureOptionsFromUri, azureSettings, MAX_BLOCKS, serviceClient, type AzureBlobOptions, type AzureSettings } from './config.js';
import { azureErrorCode, azureStatus } from './errors.js';
import { AZURE_MAX_NAME_CHARS, decodeKey, encodeKey, encodePrefix } from './keys.js';

/** Size of the first request of a get, which learns the size and ETag. */
const PROBE_BYTES = 1024 * 1024;
/** Rounds of restaging when other writers' commits discarded our blocks: random pauses up to 40, 80, ... ms. */
const RESTAGE: BackoffPolicy = { attempts: 5, minDelayMs: 20, maxDelayMs: 2_000, multiplier: 2, jitter: 1 };
/** Rounds of a delete racing overwrites (each round: read the size, delete If-Match). */
const DELETE_ROUNDS: BackoffPolicy = { attempts: 5, minDelayMs: 0, maxDelayMs: 0, multiplier: 1, jitter: 0 };

/** The blob changed between the size was read and the delete. */
class ChangedUnderDelete extends Error {}

/** Blob on Azure Blob Storage: see the module comment. */
export class AzureBlob extends BlobBase {
  readonly description: string;
  readonly #client: AzureObjectClient;
  readonly #s: AzureSettings;

  constructor(options: AzureBlobOptions) {
    super();
    this.#s = azureSettings(options);
    this.description = this.#s.description;
    this.#client = new AzureObjectClient(serviceClient(options).getContainerClient(options.container), this.#s.retry, this.#s.listPageSize);
  }

  /**
   * A handle, after creating the container if `createContainer` and it is missing,
   * or else checking that it exists; with `create` false it is only checked.
   */
  static async open(options: AzureBlobOptions & { createContainer?: boolean }, opts?: OpOptions & { create?: boolean }): Promise<AzureBlob> {
    const blob = new AzureBlob(options);
    await blob.#client.openContainer(blob.description, options.createContainer === true && opts?.create !== false, opts?.signal);
    return blob;
  }

  /**
   * Every key of up to this many UTF-8 bytes fits, whatever its characters; longer
   * keys are accepted when their names fit (see the module comment).
   */
  override get maxKeyBytes(): number {
    return this.#s.maxKeyBytes;
  }

  /** SPEC's rules, then Azure's limit on the blob name. */
  protected override checkKey(key: string): void {
    validateKey(key);
    const chars = encodeKey(key).length;
    const { nameRoom, maxKeyBytes } = this.#s;
    if (chars <= nameRoom) return;
    throw invalidArgument(
      `${this.description}: key of ${utf8Length(key)} UTF-8 bytes is too long: its encoded name is ${chars} characters, more than the ${nameRoom} that Azure's limit of ${AZURE_MAX_NAME_CHARS} characters per blob name leaves after the location prefix (ASCII letters, digits and -._ take one character, every other byte three; every key of up to ${maxKeyBytes} UTF-8 bytes fits)`,
    );
  }

  #name(key: string): string {
    return this.#s.namePrefix + encodeKey(key);
  }

  #ctx(what: string, opts: OpOptions | undefined): CallContext {
    return { what: `${this.description}: ${what}`, signal: opts?.signal };
  }

  protected async _get(key: string, opts?: OpOptions): Promise<SegmentedBytes | undefined> {
    const { rangeBytes, concurrency } = this.#s;
    const options = { firstBytes: Math.min(rangeBytes, PROBE_BYTES), rangeBytes, concurrency, trustFirst: false, reads: 1, whenChanging: 'read-whole' as const };
    return rangedGet(this.#client, this.#name(key), options, this.#ctx(`get ${show(key)}`, opts));
  }

  protected async *_list(prefix: string, opts?: OpOptions): AsyncIterable<BlobMetadata> {
    const encoded = encodePrefix(prefix);
    // No key's name is longer than Azure allows, so no such prefix starts one.
    if (encoded.length > this.#s.nameRoom) return;
    const own = this.#s.namePrefix;
    for await (const item of listPages((p, token, c) => this.#client.listPage(p, token, c), own + encoded, this.#ctx(`list ${show(prefix)}`, opts))) {
      const key = item.name.startsWith(own) ? decodeKey(item.name.slice(own.length)) : undefined;
      if (key !== undefined) yield { key, sizeInBytes: item.size };
    }
  }

  protected async _set(key: string, value: Uint8Array, opts?: OpOptions): Promise<void> {
    // The SDK reads the body only as it sends it (and again on each retry or
    // restaging), long after `set` returned its promise: a copy keeps the caller's
    // later writes out.
    const body = asBuffer(copyBytes(value));
    const name = this.#name(key);
    const ctx = this.#ctx(`set ${show(key)}`, opts);
    if (body.byteLength <= this.#s.singleUploadMaxBytes) {
      await this.#client.put(name, body, {}, ctx);
      return;
    }
    const options = { partSize: this.#s.blockBytes, maxParts: MAX_BLOCKS, concurrency: this.#s.concurrency };
    // Writers that keep discarding each other's blocks are in step: a random
    // pause lets one of them commit first.
    try {
      await retry(() => stagedWrite((parts) => this.#client.beginUpload(name, parts), body, options, ctx), {
        policy: RESTAGE,
        signal: ctx.signal,
        retryable: blocksDiscarded,
      });
    } catch (err) {
      if (!blocksDiscarded(err)) throw err;
      throw new Determinate(ErrorCode.Aborted, `${ctx.what}: other writers of the same key kept discarding its staged blocks (${RESTAGE.attempts} rounds); nothing was written`, { cause: err });
    }
  }

  protected async _delete(key: string, opts?: OpOptions): Promise<number | undefined> {
    const name = this.#name(key);
    const ctx = this.#ctx(`delete ${show(key)}`, opts);
    try {
      return await retry(
        async () => {
          const head = await this.#client.head(name, ctx);
          if (head === undefined) return undefined;
          const outcome = await this.#client.delete(name, { ifMatch: head.etag }, ctx);
          // Overwritten (or deleted, on Azurite) since its size was read: look again.
          if (outcome === 'changed') throw new ChangedUnderDelete();
          return outcome === 'deleted' ? head.size : undefined;
        },
        { policy: DELETE_ROUNDS, signal: ctx.signal, retryable: (err) => err instanceof ChangedUnderDelete },
      );
    } catch (err) {
      if (!(err instanceof ChangedUnderDelete)) throw err;
      throw new Determinate(ErrorCode.Aborted, `${ctx.what}: the blob changed between reading its size and deleting it, ${DELETE_ROUNDS.attempts} times`);
    }
  }

  protected async _restore(key: string, opts?: OpOptions): Promise<void> {
    const name = this.#name(key);
    const ctx = this.#ctx(`restore ${show(key)}`, opts);
    if ((await this.#client.head(name, ctx)) !== undefined) return;
    const client = this.#client.blob(name);
    await this.#client.call(
      ctx,
      (signal) => client.undelete({ abortSignal: signal }),
      // 404, or 501/409/400 where soft delete is unsupported or off: the existence
      // check below decides.
      (err) => {
        const status = azureStatus(err);
        if (status === undefined || (status >= 500 && status !== 501) || azureErrorCode(err) === 'ContainerNotFound') return undefined;
        return null;
      },
    );
    if ((await this.#client.head(name, ctx)) !== undefined) return;
    throw new Determinate(
      ErrorCode.NotFound,
      `${ctx.what} failed: the key does not exist and no soft-deleted value could be undeleted (blob soft delete off, expired, or unsupported)`,
    );
  }

  protected async _close(): Promise<void> {
    // The SDK holds no per-client resources: its keep-alive HTTP agent is shared.
  }
}

/** `azure://CONTAINER[/PREFIX]?endpoint=URL&createContainer=true` (see src/azure/config.ts). */
export async function blobFromUri(loc: LocationUri, create = true, opts?: OpOptions): Promise<Blob> {
  return AzureBlob.open(azureOptionsFromUri(loc), { ...opts, create });
}

function show(key: string): string {
  return JSON.stringify(key.length > 80 ? `${key.slice(0, 80)}…` : key);
}

export type { AzureBlobOptions, AzureBlobTuning, AzureCredential, RetryOptions } from './config.js';
export { mapAzureError } from './errors.js';
export { AZURE_MAX_NAME_CHARS, consensusMaxKeyBytes, decodeKey, encodeKey, maxKeyBytesFor } from './keys.js';
export { AzureConsensus, consensusFromUri, type AzureConsensusOptions } from './consensus.js';
export { azureBackend } from './backend.js';
