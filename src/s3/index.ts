/**
 * `persist-location/s3`: {@link S3Blob}, Blob on Amazon S3 or an S3-compatible
 * store (MinIO, Ceph, s3rver, ...), through `@aws-sdk/client-s3` v3. Options and
 * URI: src/s3/config.ts; errors: src/s3/errors.ts; the transfers it shares with
 * Azure: src/objstore/.
 *
 * Layout: the value of key `k` is the object `PREFIX/encodeKey(k)` of the bucket
 * (src/s3/keys.ts: percent-encoded, cut into components of at most 200
 * characters, every one after the first marked by a leading `.`, so the names
 * of nested locations are disjoint). Objects under the prefix not in this
 * encoding are ignored by `list`.
 *
 * Key length: a key is accepted when its object name fits S3's 1024 bytes; one
 * that does not rejects, before anything is sent, with Determinate
 * InvalidArgument naming the limit. Every key of up to `maxKeyBytesFor(prefix
 * bytes)` UTF-8 bytes fits whatever its characters (338 at the bucket root).
 *
 * Operations:
 * - `set`: the value is copied when `set` is called; then one PutObject up to
 *   `multipartThreshold` (8 MiB), above it a multipart upload (`stagedWrite`:
 *   Determinate before CompleteMultipartUpload is sent, the upload aborted on
 *   failure). Parts whose abort fails stay until a bucket lifecycle rule
 *   (AbortIncompleteMultipartUpload) removes them; so do empty uploads that a
 *   CreateMultipartUpload created when its answer was lost.
 * - `get`: `rangedGet` with `partSize` ranges, the first response's body used
 *   (its ETag is its own); an object that changes during 5 reads rejects
 *   Determinate Aborted.
 * - `list`: ListObjectsV2 pages, requested as the loop consumes them.
 * - `delete`: HEAD (for the size), then DeleteObject. Not atomic: a `set` between
 *   the two is deleted and `delete` returns the size the HEAD saw. A HEAD 404 is
 *   followed by a HeadBucket: a missing bucket rejects Determinate NotFound.
 * - `restore`: succeeds if the object exists. Otherwise, on a bucket with
 *   versioning enabled (or suspended) whose latest version of the key is a delete
 *   marker, that marker is removed, which brings the previous version back;
 *   without versioning (or the permission to ask) it rejects Determinate NotFound.
 */
import { GetBucketVersioningCommand, ListObjectVersionsCommand, DeleteObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { BlobBase } from '../base.js';
import type { BlobMetadata } from '../blob.js';
import { copyBytes } from '../bytes.js';
import type { OpOptions } from '../consensus.js';
import { Determinate, ErrorCode, ExternalError, invalidArgument } from '../errors.js';
import { listPages, rangedGet, stagedWrite, type CallContext } from '../objstore/index.js';
import type { SegmentedBytes } from '../segmented-bytes.js';
import type { LocationUri } from '../uri.js';
import { utf8Length, validateKey } from '../validate.js';
import { S3ObjectClient } from './client.js';
import { defaultClientConfig, MAX_PARTS, s3OptionsFromUri, s3Settings, type S3BlobOptions, type S3Settings } from './config.js';
import { decodeKey, encodeKey, S3_MAX_OBJECT_NAME_BYTES } from './keys.js';

/** How often `get` reads an object that keeps changing before it gives up. */
const GET_READS = 5;

/** Blob on S3 or an S3-compatible store. See the module comment. */
export class S3Blob extends BlobBase {
  readonly description: string;
  readonly #client: S3ObjectClient;
  readonly #ownsClient: boolean;
  readonly #s: S3Settings;
  #versioning: Promise<boolean> | undefined;

  constructor(options: S3BlobOptions) {
    super();
    this.#s = s3Settings(options);
    this.description = `S3Blob(s3://${this.#s.bucket}/${this.#s.prefix})`;
    this.#ownsClient = options.client === undefined;
    const sdk = options.client ?? new S3Client(defaultClientConfig(options.clientConfig ?? {}));
    this.#client = new S3ObjectClient(sdk, this.#s.bucket, this.#s.pageSize);
  }

  /**
   * Every key of up to this many UTF-8 bytes fits S3's 1024-byte names after the
   * prefix, whatever its characters; longer keys are accepted when their name fits.
   */
  protected override get maxKeyBytes(): number {
    return this.#s.maxKeyBytes;
  }

  /** SPEC's rules, then S3's limit on the object name (see the module comment). */
  protected override checkKey(key: string): void {
    validateKey(key);
    const bytes = encodeKey(key).length;
    const { nameRoom, maxKeyBytes } = this.#s;
    if (bytes <= nameRoom) return;
    throw invalidArgument(
      `${this.description}: key of ${utf8Length(key)} UTF-8 bytes is too long: its encoded name is ${bytes} bytes, more than the ${nameRoom} that S3's limit of ${S3_MAX_OBJECT_NAME_BYTES} bytes per object name leaves after the location prefix (ASCII letters, digits and !-_.*'() take one byte, every other byte three; every key of up to ${maxKeyBytes} UTF-8 bytes fits)`,
    );
  }

  /** The object name of a key. */
  #name(key: string): string {
    return this.#s.prefix + encodeKey(key);
  }

  #ctx(what: string, opts: OpOptions | undefined): CallContext {
    return { what: `${this.description} ${what}`, signal: opts?.signal };
  }

  protected async _get(key: string, opts?: OpOptions): Promise<SegmentedBytes | undefined> {
    const { partSize, concurrency } = this.#s;
    const options = { firstBytes: partSize, rangeBytes: partSize, concurrency, trustFirst: true, reads: GET_READS, whenChanging: 'refuse' as const };
    return rangedGet(this.#client, this.#name(key), options, this.#ctx(`get(${JSON.stringify(key)})`, opts));
  }

  protected async *_list(prefix: string, opts?: OpOptions): AsyncIterable<BlobMetadata> {
    const encoded = encodeKey(prefix);
    // No key's name is longer than S3 allows, so no such prefix starts one.
    if (encoded.length > this.#s.nameRoom) return;
    const own = this.#s.prefix;
    const ctx = this.#ctx(`list(${JSON.stringify(prefix)})`, opts);
    for await (const object of listPages((p, token, c) => this.#client.listPage(p, token, c), own + encoded, ctx)) {
      if (!object.name.startsWith(own)) continue;
      const key = decodeKey(object.name.slice(own.length));
      if (key !== undefined && key.startsWith(prefix)) yield { key, sizeInBytes: object.size };
    }
  }

  protected async _set(key: string, caller: Uint8Array, opts?: OpOptions): Promise<void> {
    // The SDK reads the body only as it sends it (and again on each retry), long
    // after `set` returned its promise: a copy keeps the caller's later writes out.
    const value = copyBytes(caller);
    const name = this.#name(key);
    const ctx = this.#ctx(`set(${JSON.stringify(key)})`, opts);
    if (value.byteLength <= this.#s.threshold) {
      await this.#client.put(name, value, {}, ctx);
      return;
    }
    const { partSize, concurrency } = this.#s;
    await stagedWrite((parts, c) => this.#client.beginUpload(name, parts, c), value, { partSize, maxParts: MAX_PARTS, concurrency }, ctx);
  }

  protected async _delete(key: string, opts?: OpOptions): Promise<number | undefined> {
    const name = this.#name(key);
    const ctx = this.#ctx(`delete(${JSON.stringify(key)})`, opts);
    const head = await this.#client.head(name, ctx);
    if (head === undefined) {
      // A HEAD's 404 has no body to tell a missing key from a missing bucket.
      await this.#client.headBucket(this.description, opts?.signal);
      return undefined;
    }
    await this.#client.delete(name, {}, ctx);
    return head.size;
  }

  protected async _restore(key: string, opts?: OpOptions): Promise<void> {
    const name = this.#name(key);
    const ctx = this.#ctx(`restore(${JSON.stringify(key)})`, opts);
    if ((await this.#client.head(name, ctx)) !== undefined) return;
    const marker = (await this.#versioned(opts?.signal)) ? await this.#latestDeleteMarker(name, ctx) : undefined;
    if (marker !== undefined) {
      await this.#client.send(new DeleteObjectCommand({ Bucket: this.#s.bucket, Key: name, VersionId: marker }), ctx);
      if ((await this.#client.head(name, ctx)) !== undefined) return;
    }
    throw new Determinate(
      ErrorCode.NotFound,
      `${ctx.what}: the key does not exist and ${marker === undefined ? 'no deleted version can be brought back (restore needs bucket versioning)' : 'removing its delete marker brought back no version'}`,
    );
  }

  /** Whether the bucket has (or had) versioning; asked once per handle. */
  #versioned(signal: AbortSignal | undefined): Promise<boolean> {
    const ctx = { what: `${this.description} get bucket versioning`, signal };
    this.#versioning ??= this.#client.send<{ Status?: string }>(new GetBucketVersioningCommand({ Bucket: this.#s.bucket }), ctx).then(
      (out) => out.Status === 'Enabled' || out.Status === 'Suspended',
      (err: unknown) => {
        // No permission to ask, or a store without versioning: restore cannot use it.
        if (err instanceof ExternalError && err.determinate && (err.code === ErrorCode.PermissionDenied || err.code === ErrorCode.Unknown || err.code === ErrorCode.InvalidArgument)) return false;
        this.#versioning = undefined; // a passing failure: ask again next time
        throw err;
      },
    );
    return this.#versioning;
  }

  /** The VersionId of the delete marker that is the latest version of `name`, if it is one. */
  async #latestDeleteMarker(name: string, ctx: CallContext): Promise<string | undefined> {
    let KeyMarker: string | undefined;
    let VersionIdMarker: string | undefined;
    for (;;) {
      const page = await this.#client.send<VersionsOutput>(
        new ListObjectVersionsCommand({ Bucket: this.#s.bucket, Prefix: name, KeyMarker, VersionIdMarker, MaxKeys: 100 }),
        ctx,
      );
      const marker = page.DeleteMarkers?.find((m) => m.Key === name && m.IsLatest === true);
      if (marker !== undefined) return marker.VersionId;
      if (page.Versions?.some((v) => v.Key === name && v.IsLatest === true)) return undefined;
      const beyond = [...(page.Versions ?? []), ...(page.DeleteMarkers ?? [])].some((v) => v.Key !== undefined && v.Key > name);
      if (beyond || page.IsTruncated !== true) return undefined;
      KeyMarker = page.NextKeyMarker;
      VersionIdMarker = page.NextVersionIdMarker;
    }
  }

  /** Checks that the bucket exists and the credentials may read it (HeadBucket). */
  async check(opts?: OpOptions): Promise<void> {
    await this.#client.checkBucket(this.description, opts?.signal);
  }

  protected async _close(): Promise<void> {
    if (this.#ownsClient) this.#client.sdk.destroy();
  }
}

interface VersionEntry {
  Key?: string;
  VersionId?: string;
  IsLatest?: boolean;
}
interface VersionsOutput {
  Versions?: VersionEntry[];
  DeleteMarkers?: VersionEntry[];
  IsTruncated?: boolean;
  NextKeyMarker?: string;
  NextVersionIdMarker?: string;
}

/** `s3://BUCKET[/PREFIX]?endpoint=URL&region=R&forcePathStyle=true&...` (see src/s3/config.ts). */
export async function blobFromUri(loc: LocationUri, opts?: OpOptions): Promise<S3Blob> {
  const blob = new S3Blob(s3OptionsFromUri(loc));
  try {
    await blob.check(opts);
  } catch (err) {
    await blob.close();
    if (err instanceof ExternalError) throw err;
    // The SDK's region and credential resolution fail here, before anything is sent.
    throw new Determinate(ErrorCode.InvalidArgument, `cannot open ${loc.display}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
  return blob;
}

export { defaultClientConfig, requestHandlerOptions, type S3BlobOptions } from './config.js';
export { mapS3Error, type S3ErrorContext } from './errors.js';
export { consensusMaxKeyBytes, decodeKey, encodeKey, maxKeyBytesFor, S3_MAX_OBJECT_NAME_BYTES } from './keys.js';
export { S3Consensus, consensusFromUri, type S3ConsensusOptions } from './consensus.js';
export { s3Backend } from './backend.js';
