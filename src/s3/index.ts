/**
 * `S3Blob`: Blob on Amazon S3 or an S3-compatible store (MinIO, Ceph, s3rver, ...),
 * through `@aws-sdk/client-s3` v3.
 *
 * Layout: the value of key `k` is the object `PREFIX/encodeKey(k)` of the bucket,
 * where PREFIX is the location prefix from the URI (empty for the bucket root).
 * Keys are percent-encoded (AWS's safe characters kept as they are) and cut into
 * components of at most 200 characters, every one after the first marked by a
 * leading `.` (see src/s3/keys.ts for why). The marks make the names of nested
 * locations disjoint: no object of `s3://b/p/q` is ever an object of `s3://b/p`.
 * Objects under the prefix that are not in this encoding (put there by some other
 * program, or belonging to a nested location) are ignored by `list`.
 *
 * Key length: a key is accepted when its object name (prefix plus encoded key)
 * fits S3's 1024 bytes; ordinary ASCII paths of 900 bytes do beside a short
 * prefix. A key whose name does not fit rejects, before anything is sent, with
 * Determinate InvalidArgument naming the limit. Every key of up to
 * `maxKeyBytesFor(prefix bytes)` UTF-8 bytes fits whatever its characters (338
 * at the bucket root: the worst case escapes every byte).
 *
 * Operations:
 * - `set`: the value is copied when `set` is called (the caller may reuse its
 *   array at once, and retried requests resend the same bytes); then one
 *   PutObject up to `multipartThreshold` (8 MiB); above it a multipart
 *   upload with `concurrency` parts in flight. S3 makes the object visible only
 *   at CompleteMultipartUpload, so a writer that dies mid-way leaves the old value.
 *   A failed upload is aborted (AbortMultipartUpload, up to 3 rounds of the
 *   SDK's attempts); if even that fails (the server is gone) the parts stay until
 *   a bucket lifecycle rule (AbortIncompleteMultipartUpload) removes them. So do
 *   empty uploads (no parts) that a CreateMultipartUpload created when its answer
 *   was lost (the SDK's retry then creates another): no UploadId names them, and
 *   the uploads pending for a key cannot be told from those of concurrent writers.
 *   Outcome of a failed multipart `set` (the issue asks for Indeterminate when the
 *   server dies mid-upload; this is deliberately more precise): a failure before
 *   CompleteMultipartUpload was sent (CreateMultipartUpload, any UploadPart, or
 *   the caller's signal firing before the completion) is Determinate, whatever
 *   the failed request itself was: S3 shows nothing of an upload that was never
 *   completed, so the value provably was not written. A failure of
 *   CompleteMultipartUpload itself (sent, even partly) is mapped like any other
 *   request, so a lost connection, a timeout, a 5xx or an abort after sending is
 *   Indeterminate. The AbortMultipartUpload that follows either failure is
 *   cleanup only: its own failure is noted in the message and never changes
 *   the kind or code reported.
 * - `get`: one GET of the range `0..partSize-1` (a small value needs nothing
 *   more); its Content-Range tells the size, and while its body streams the rest
 *   is fetched as parallel ranges (`concurrency` in flight), each read straight
 *   into its own segment of the returned SegmentedBytes. Every range is sent with
 *   If-Match of the first response's ETag and its ETag is checked too (for stores
 *   that ignore If-Match), so a concurrent overwrite never yields a mix of two
 *   values: the read starts over (up to 5 times, then Determinate Aborted), as it
 *   does when a later range is unsatisfiable (416: replaced by a shorter object). A
 *   store that sends no ETag at all gets no such protection. An empty value
 *   answers the range with 416 (or `bytes 0-0/0` on some stores): that is `""`.
 * - `list`: ListObjectsV2 pages (1000 keys), requested one at a time as the loop
 *   consumes them.
 * - `delete`: HEAD (for the size), then DeleteObject. Not atomic: a `set` between
 *   the two is deleted and `delete` returns the size the HEAD saw. A HEAD 404
 *   cannot tell a missing key from a missing bucket, so it is followed by a
 *   HeadBucket: a missing bucket rejects Determinate NotFound, a missing key
 *   returns `undefined`.
 * - `restore`: succeeds if the object exists. Otherwise, on a bucket with
 *   versioning enabled (or suspended), the latest version of the key being a
 *   delete marker, that marker is removed, which brings the previous version
 *   back; without versioning (or without s3:GetBucketVersioning /
 *   s3:ListBucketVersions permission) it rejects Determinate NotFound.
 *
 * Errors: see src/s3/errors.ts for the table (`mapS3Error`). In short: HTTP
 * 403 and NoSuchBucket are Determinate, 5xx, throttling (after the SDK's own
 * retries), connection loss and timeouts are Indeterminate, a connection refused
 * before any attempt was sent is Determinate Unavailable.
 *
 * URI: `s3://BUCKET[/PREFIX][?endpoint=URL&region=R&forcePathStyle=true
 * &multipartThreshold=BYTES&partSize=BYTES&concurrency=N]`. Credentials come from
 * the SDK's default provider chain (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY,
 * profiles, SSO, instance roles, ...), never from the URI. The region comes from
 * `region`; else, with an `endpoint` (S3-compatible stores ignore the region), from
 * AWS_REGION or `us-east-1`; else from the SDK's chain (AWS_REGION, profile).
 */
import { Agent as HttpAgent } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetBucketVersioningCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  ListObjectVersionsCommand,
  PutObjectCommand,
  S3Client,
  UploadPartCommand,
  type CompletedPart,
  type S3ClientConfig,
} from '@aws-sdk/client-s3';
import { BlobBase } from '../base.js';
import type { BlobMetadata } from '../blob.js';
import type { OpOptions } from '../consensus.js';
import { copyBytes } from '../bytes.js';
import { aborted, Determinate, ErrorCode, ExternalError, Indeterminate, invalidArgument } from '../errors.js';
import { decodeKey, encodeKey, maxKeyBytesFor, S3_MAX_OBJECT_NAME_BYTES } from './keys.js';
import { errorName, httpStatus, isConnectError, mapS3Error } from './errors.js';
import { SegmentedBytes } from '../segmented-bytes.js';
import { boolParam, checkParams, intParam, type LocationUri } from '../uri.js';
import { utf8Length, validateKey } from '../validate.js';

export { mapS3Error, type S3ErrorContext } from './errors.js';
export { decodeKey, encodeKey, maxKeyBytesFor, S3_MAX_OBJECT_NAME_BYTES } from './keys.js';

const MiB = 1024 * 1024;
/** S3's smallest part (but the last) and largest part count. */
const MIN_PART_SIZE = 5 * MiB;
const MAX_PARTS = 10_000;
/** Rounds of the SDK's attempts at aborting a failed multipart upload. */
const ABORT_ROUNDS = 3;
/** How often `get` starts over when the object keeps changing under it. */
const GET_RETRIES = 5;

/** Options of {@link S3Blob}. */
export interface S3BlobOptions {
  /** The bucket; it must exist. */
  bucket: string;
  /** Location prefix inside the bucket (`a/b` stores under `a/b/`); default: the bucket root. */
  prefix?: string;
  /**
   * A client to use instead of one built from {@link clientConfig}; the handle
   * does not destroy it on close. It should be configured like the built one
   * (`requestChecksumCalculation: 'WHEN_REQUIRED'` for S3-compatible stores).
   */
  client?: S3Client;
  /** Settings for the client the handle builds (endpoint, region, forcePathStyle, credentials, ...). */
  clientConfig?: S3ClientConfig;
  /** Values larger than this many bytes are uploaded in parts (default 8 MiB). */
  multipartThreshold?: number;
  /** Size of upload parts and download ranges (default 8 MiB; at least 5 MiB). */
  partSize?: number;
  /** Parts or ranges in flight per operation (default 8). */
  concurrency?: number;
  /** Keys per ListObjectsV2 page (default 1000, S3's maximum). */
  listPageSize?: number;
}

/** Per-operation count of attempts that may have reached the server (see errors.ts). */
interface Attempts {
  reached: number;
}

/** A GET whose headers have arrived; its body is read (or discarded) later. */
interface OpenRange {
  /** Bytes in this response. */
  size: number;
  /** Size of the whole object. */
  total: number;
  etag: string | undefined;
  read(): Promise<Uint8Array>;
  discard(): void;
}

function emptyRange(etag: string | undefined): OpenRange {
  return { size: 0, total: 0, etag, read: async () => new Uint8Array(0), discard: () => {} };
}

/** A range whose ETag or Content-Range shows the object changed during `get`. */
class ObjectChanged extends Error {}

/** Blob on S3 or an S3-compatible store. See the module comment for layout, errors and URI. */
export class S3Blob extends BlobBase {
  readonly description: string;
  readonly #client: S3Client;
  readonly #ownsClient: boolean;
  readonly #bucket: string;
  /** Location prefix, empty or ending in `/`. */
  readonly #prefix: string;
  /** What S3's name limit leaves for an encoded key after the prefix. */
  readonly #nameRoom: number;
  readonly #maxKeyBytes: number;
  readonly #threshold: number;
  readonly #partSize: number;
  readonly #concurrency: number;
  readonly #pageSize: number;
  #versioning: Promise<boolean> | undefined;

  constructor(options: S3BlobOptions) {
    super();
    const { bucket } = options;
    if (typeof bucket !== 'string' || bucket === '' || bucket.includes('/')) {
      throw invalidArgument(`S3Blob needs a bucket name without '/', got ${JSON.stringify(bucket)}`);
    }
    let prefix = options.prefix ?? '';
    if (prefix.startsWith('/')) prefix = prefix.replace(/^\/+/, '');
    if (prefix !== '' && !prefix.endsWith('/')) prefix += '/';
    this.#bucket = bucket;
    this.#prefix = prefix;
    this.#nameRoom = S3_MAX_OBJECT_NAME_BYTES - Buffer.byteLength(prefix);
    this.#maxKeyBytes = maxKeyBytesFor(Buffer.byteLength(prefix));
    if (this.#maxKeyBytes < 1) throw invalidArgument(`S3Blob prefix ${JSON.stringify(prefix)} leaves no room for keys in S3's ${S3_MAX_OBJECT_NAME_BYTES}-byte names`);
    this.#threshold = positive(options.multipartThreshold ?? 8 * MiB, 'multipartThreshold');
    this.#partSize = positive(options.partSize ?? 8 * MiB, 'partSize');
    if (this.#partSize < MIN_PART_SIZE) throw invalidArgument(`S3Blob partSize must be at least ${MIN_PART_SIZE} bytes (S3's minimum part size), got ${this.#partSize}`);
    this.#concurrency = positive(options.concurrency ?? 8, 'concurrency');
    this.#pageSize = Math.min(1000, positive(options.listPageSize ?? 1000, 'listPageSize'));
    this.description = `S3Blob(s3://${bucket}/${prefix})`;
    if (options.client !== undefined) {
      this.#client = options.client;
      this.#ownsClient = false;
    } else {
      this.#client = new S3Client(defaultClientConfig(options.clientConfig ?? {}));
      this.#ownsClient = true;
    }
  }

  /**
   * Every key of up to this many UTF-8 bytes fits S3's 1024-byte names after the
   * prefix, whatever its characters; longer keys are accepted when their name fits.
   */
  protected override get maxKeyBytes(): number {
    return this.#maxKeyBytes;
  }

  /** SPEC's rules, then S3's limit on the object name (see the module comment). */
  protected override checkKey(key: string): void {
    validateKey(key);
    const bytes = encodeKey(key).length;
    if (bytes <= this.#nameRoom) return;
    throw invalidArgument(
      `${this.description}: key of ${utf8Length(key)} UTF-8 bytes is too long: its encoded name is ${bytes} bytes, more than the ${this.#nameRoom} that S3's limit of ${S3_MAX_OBJECT_NAME_BYTES} bytes per object name leaves after the location prefix (ASCII letters, digits and !-_.*'() take one byte, every other byte three; every key of up to ${this.#maxKeyBytes} UTF-8 bytes fits)`,
    );
  }

  /** The object name of a key. */
  #name(key: string): string {
    return this.#prefix + encodeKey(key);
  }

  /**
   * Sends one command, counting the attempts (the SDK retries inside `send`) that
   * may have reached the server, and maps a failure with {@link mapS3Error}.
   * `missing` is returned instead of throwing when S3 answers 404 for the object
   * (not for the bucket).
   */
  async #send<T>(command: SendableCommand, what: string, signal: AbortSignal | undefined): Promise<T>;
  async #send<T, M>(command: SendableCommand, what: string, signal: AbortSignal | undefined, missing: M): Promise<T | M>;
  async #send(command: SendableCommand, what: string, signal: AbortSignal | undefined, ...missing: unknown[]): Promise<unknown> {
    const attempts: Attempts = { reached: 0 };
    trackAttempts(command, attempts);
    try {
      return await this.#client.send(command as never, { abortSignal: signal });
    } catch (err) {
      if (missing.length > 0 && httpStatus(err) === 404 && errorName(err) !== 'NoSuchBucket') return missing[0];
      throw mapS3Error(err, { what: `${this.description} ${what}`, reached: attempts.reached, signal });
    }
  }

  protected async _get(key: string, opts?: OpOptions): Promise<SegmentedBytes | undefined> {
    const signal = opts?.signal;
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.#getOnce(key, signal);
      } catch (err) {
        const changed = err instanceof ObjectChanged || (err instanceof ExternalError && err.code === ErrorCode.FailedPrecondition);
        if (!changed) throw err;
        if (attempt >= GET_RETRIES) {
          throw new Determinate(ErrorCode.Aborted, `${this.description} get(${JSON.stringify(key)}): the object changed during each of ${GET_RETRIES} reads`, { cause: err });
        }
      }
    }
  }

  async #getOnce(key: string, signal: AbortSignal | undefined): Promise<SegmentedBytes | undefined> {
    const Key = this.#name(key);
    const what = `get(${JSON.stringify(key)})`;
    const chunk = this.#partSize;
    const first = await this.#openRange(Key, what, 0, chunk, undefined, signal);
    if (first === undefined) return undefined;
    if (first.total <= first.size) return new SegmentedBytes(await first.read());

    // The first response's headers gave the size and ETag: fetch the other ranges
    // while its body is still streaming.
    const { etag, total } = first;
    const count = Math.ceil((total - chunk) / chunk);
    const stop = new AbortController();
    const restSignal = signal === undefined ? stop.signal : AbortSignal.any([signal, stop.signal]);
    const rest = bounded(count, this.#concurrency, restSignal, async (i, partSignal) => {
      const start = chunk * (i + 1);
      const part = await this.#openRange(Key, what, start, Math.min(chunk, total - start), etag, partSignal);
      if (part === undefined || part.etag !== etag || part.total !== total) {
        part?.discard();
        throw new ObjectChanged('the object changed during the read');
      }
      return part.read();
    });
    let restFailure: unknown;
    rest.catch((err: unknown) => {
      restFailure = err;
      first.discard();
    });
    let head: Uint8Array;
    try {
      head = await first.read();
    } catch (err) {
      // Either the first body failed on its own, or a failed range discarded it:
      // report the failure that came first (an ObjectChanged makes `get` start over).
      const discarded = restFailure !== undefined;
      stop.abort(new Error('the first range failed'));
      await rest.catch(() => undefined);
      throw discarded ? restFailure : err;
    }
    return new SegmentedBytes([head, ...(await rest)]);
  }

  /**
   * Sends a GET of `length` bytes at `start` and returns once the headers are in,
   * with the body still to read: `read()` reads it into one new array. `undefined`
   * when the object does not exist. A server that ignores Range sends the whole
   * object, which is fine for the first range.
   */
  async #openRange(
    Key: string,
    what: string,
    start: number,
    length: number,
    ifMatch: string | undefined,
    signal: AbortSignal | undefined,
  ): Promise<OpenRange | undefined> {
    const command = new GetObjectCommand({ Bucket: this.#bucket, Key, Range: `bytes=${start}-${start + length - 1}`, IfMatch: ifMatch });
    let out;
    try {
      out = await this.#send<GetOutput, undefined>(command, what, signal, undefined);
    } catch (err) {
      if (err instanceof ExternalError && (err.cause as { name?: unknown } | undefined)?.name === 'InvalidRange') {
        // A range starting at 0 is unsatisfiable only for an empty object; a later
        // one, within the size the first range reported, only if the object was
        // replaced by a shorter one (on a store that ignores If-Match).
        if (start === 0) return emptyRange(undefined);
        throw new ObjectChanged('a later range is beyond the end of the object: it was replaced by a shorter one');
      }
      throw err;
    }
    if (out === undefined) return undefined;
    const body = out.Body as (AsyncIterable<Uint8Array> & { destroy?: () => void }) | undefined;
    const discard = (): void => body?.destroy?.();
    const size = out.ContentLength;
    let total = size;
    const range = out.ContentRange === undefined ? null : /^bytes (\d+)-(\d+)\/(\d+)$/.exec(out.ContentRange);
    if (range !== null) {
      total = Number(range[3]);
      if (total === 0 && start === 0) {
        // Some stores answer a range of an empty object with `bytes 0-0/0` instead of 416.
        discard();
        return emptyRange(out.ETag);
      }
      if (Number(range[1]) !== start) {
        discard();
        throw new ObjectChanged(`unexpected Content-Range ${out.ContentRange}`);
      }
    } else if (start !== 0) {
      discard();
      throw new ObjectChanged('the server ignored the Range of a later part');
    }
    if (size === undefined || total === undefined || body === undefined) {
      discard();
      throw new Determinate(ErrorCode.DataLoss, `${this.description} ${what}: the response has no Content-Length or body`);
    }
    return { size, total, etag: out.ETag, discard, read: () => this.#readBody(body, size, what, signal) };
  }

  /** Reads a response body of `size` bytes into one new array (the only copy). */
  async #readBody(body: AsyncIterable<Uint8Array> & { destroy?: () => void }, size: number, what: string, signal: AbortSignal | undefined): Promise<Uint8Array> {
    const buffer = Buffer.allocUnsafeSlow(size);
    let offset = 0;
    try {
      for await (const piece of body) {
        if (offset + piece.byteLength > size) throw new Determinate(ErrorCode.DataLoss, `${this.description} ${what}: the body is longer than its Content-Length ${size}`);
        buffer.set(piece, offset);
        offset += piece.byteLength;
      }
    } catch (err) {
      body.destroy?.();
      throw mapS3Error(err, { what: `${this.description} ${what}`, reached: 1, signal });
    }
    if (offset !== size) {
      throw new Determinate(ErrorCode.DataLoss, `${this.description} ${what}: the body ended after ${offset} of ${size} bytes`);
    }
    return new Uint8Array(buffer.buffer, buffer.byteOffset, size);
  }

  protected async *_list(prefix: string, opts?: OpOptions): AsyncIterable<BlobMetadata> {
    const signal = opts?.signal;
    const encoded = encodeKey(prefix);
    // No key's name is longer than S3 allows, so no such prefix starts one.
    if (encoded.length > this.#nameRoom) return;
    const Prefix = this.#prefix + encoded;
    let token: string | undefined;
    do {
      const page = await this.#send<ListOutput>(
        new ListObjectsV2Command({ Bucket: this.#bucket, Prefix, ContinuationToken: token, MaxKeys: this.#pageSize }),
        `list(${JSON.stringify(prefix)})`,
        signal,
      );
      for (const object of page.Contents ?? []) {
        if (object.Key === undefined || !object.Key.startsWith(this.#prefix)) continue;
        const key = decodeKey(object.Key.slice(this.#prefix.length));
        if (key === undefined || !key.startsWith(prefix)) continue;
        yield { key, sizeInBytes: object.Size ?? 0 };
      }
      token = page.IsTruncated === true ? page.NextContinuationToken : undefined;
    } while (token !== undefined);
  }

  protected async _set(key: string, caller: Uint8Array, opts?: OpOptions): Promise<void> {
    // The SDK reads the body only as it sends it (and again on each retry), long
    // after `set` returned its promise: a copy keeps the caller's later writes out.
    const value = copyBytes(caller);
    const signal = opts?.signal;
    const Key = this.#name(key);
    const what = `set(${JSON.stringify(key)})`;
    if (value.byteLength <= this.#threshold) {
      await this.#send(new PutObjectCommand({ Bucket: this.#bucket, Key, Body: value, ContentLength: value.byteLength }), what, signal);
      return;
    }
    await this.#multipart(Key, value, what, signal);
  }

  async #multipart(Key: string, value: Uint8Array, what: string, signal: AbortSignal | undefined): Promise<void> {
    const Bucket = this.#bucket;
    const partSize = Math.max(this.#partSize, Math.ceil(value.byteLength / MAX_PARTS));
    let created: { UploadId?: string };
    try {
      created = await this.#send(new CreateMultipartUploadCommand({ Bucket, Key }), `${what} (create multipart upload)`, signal);
    } catch (err) {
      throw notWritten(err, '; nothing was written (an upload that the server may have created stays empty and invisible)');
    }
    const UploadId = created.UploadId;
    if (UploadId === undefined) throw new Determinate(ErrorCode.Unknown, `${this.description} ${what}: CreateMultipartUpload returned no UploadId`);

    let parts: CompletedPart[];
    try {
      const count = Math.ceil(value.byteLength / partSize);
      parts = await bounded(count, this.#concurrency, signal, async (i, partSignal) => {
        const Body = value.subarray(i * partSize, Math.min(value.byteLength, (i + 1) * partSize));
        const PartNumber = i + 1;
        const out = await this.#send<{ ETag?: string }>(
          new UploadPartCommand({ Bucket, Key, UploadId, PartNumber, Body, ContentLength: Body.byteLength }),
          `${what} (part ${PartNumber} of ${count})`,
          partSignal,
        );
        return { PartNumber, ETag: out.ETag };
      });
    } catch (err) {
      const cleanup = await this.#abortUpload(Key, UploadId);
      throw notWritten(err, `; the multipart upload was not completed, so nothing was written${cleanup}`);
    }
    if (signal?.aborted) {
      // The caller gave up before the completion was sent: still provably nothing written.
      const cleanup = await this.#abortUpload(Key, UploadId);
      throw notWritten(aborted(signal, false), `; the multipart upload was not completed, so nothing was written${cleanup}`);
    }
    try {
      await this.#send(new CompleteMultipartUploadCommand({ Bucket, Key, UploadId, MultipartUpload: { Parts: parts } }), `${what} (complete multipart upload)`, signal);
    } catch (err) {
      // The completion may have been applied (or still be running on the server),
      // so `err` is reported as mapped: Indeterminate unless S3 answered with a
      // plain refusal on the only attempt. The abort that follows is cleanup only
      // (if the completion did land, it is a harmless NoSuchUpload) and never
      // changes that outcome, whether it succeeds or fails.
      const cleanup = await this.#abortUpload(Key, UploadId);
      if (cleanup === '' || !(err instanceof ExternalError)) throw err;
      const Kind = err.determinate ? Determinate : Indeterminate;
      throw new Kind(err.code, `${err.message}${cleanup}`, { cause: err.cause });
    }
  }

  /** Best-effort AbortMultipartUpload; returns a note for the error message when it failed. */
  async #abortUpload(Key: string, UploadId: string): Promise<string> {
    const deadline = AbortSignal.timeout(30_000);
    let failure: unknown;
    // The abort is idempotent (a repeat answers 404, taken as done), and whatever
    // broke the upload (a flaky network) may break it too: a few more rounds of
    // the SDK's attempts than for other requests, so that parts are rarely left.
    for (let round = 0; round < ABORT_ROUNDS && !deadline.aborted; round++) {
      try {
        await this.#send(new AbortMultipartUploadCommand({ Bucket: this.#bucket, Key, UploadId }), 'abort multipart upload', deadline, undefined);
        return '';
      } catch (err) {
        failure = err;
        if (err instanceof ExternalError && err.determinate && err.code !== ErrorCode.Unavailable) break;
      }
    }
    return ` (aborting upload ${UploadId} failed too, its parts remain until a lifecycle rule removes them: ${failure instanceof Error ? failure.message : String(failure)})`;
  }

  protected async _delete(key: string, opts?: OpOptions): Promise<number | undefined> {
    const signal = opts?.signal;
    const Key = this.#name(key);
    const what = `delete(${JSON.stringify(key)})`;
    const head = await this.#send<{ ContentLength?: number }, undefined>(new HeadObjectCommand({ Bucket: this.#bucket, Key }), what, signal, undefined);
    if (head === undefined) {
      // A HEAD's 404 has no body to tell a missing key from a missing bucket.
      await this.#headBucket(signal);
      return undefined;
    }
    await this.#send(new DeleteObjectCommand({ Bucket: this.#bucket, Key }), what, signal);
    return head.ContentLength ?? 0;
  }

  protected async _restore(key: string, opts?: OpOptions): Promise<void> {
    const signal = opts?.signal;
    const Key = this.#name(key);
    const what = `restore(${JSON.stringify(key)})`;
    if (await this.#exists(Key, what, signal)) return;
    const marker = (await this.#versioned(signal)) ? await this.#latestDeleteMarker(Key, what, signal) : undefined;
    if (marker !== undefined) {
      await this.#send(new DeleteObjectCommand({ Bucket: this.#bucket, Key, VersionId: marker }), what, signal);
      if (await this.#exists(Key, what, signal)) return;
    }
    throw new Determinate(
      ErrorCode.NotFound,
      `${this.description} ${what}: the key does not exist and ${marker === undefined ? 'no deleted version can be brought back (restore needs bucket versioning)' : 'removing its delete marker brought back no version'}`,
    );
  }

  async #exists(Key: string, what: string, signal: AbortSignal | undefined): Promise<boolean> {
    const head = await this.#send(new HeadObjectCommand({ Bucket: this.#bucket, Key }), what, signal, undefined);
    return head !== undefined;
  }

  /** Whether the bucket has (or had) versioning; asked once per handle. */
  #versioned(signal: AbortSignal | undefined): Promise<boolean> {
    this.#versioning ??= this.#send<{ Status?: string }>(new GetBucketVersioningCommand({ Bucket: this.#bucket }), 'get bucket versioning', signal).then(
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

  /** The VersionId of the delete marker that is the latest version of `Key`, if it is one. */
  async #latestDeleteMarker(Key: string, what: string, signal: AbortSignal | undefined): Promise<string | undefined> {
    let KeyMarker: string | undefined;
    let VersionIdMarker: string | undefined;
    for (;;) {
      const page = await this.#send<VersionsOutput>(
        new ListObjectVersionsCommand({ Bucket: this.#bucket, Prefix: Key, KeyMarker, VersionIdMarker, MaxKeys: 100 }),
        what,
        signal,
      );
      const marker = page.DeleteMarkers?.find((m) => m.Key === Key && m.IsLatest === true);
      if (marker !== undefined) return marker.VersionId;
      if (page.Versions?.some((v) => v.Key === Key && v.IsLatest === true)) return undefined;
      const beyond = [...(page.Versions ?? []), ...(page.DeleteMarkers ?? [])].some((v) => v.Key !== undefined && v.Key > Key);
      if (beyond || page.IsTruncated !== true) return undefined;
      KeyMarker = page.NextKeyMarker;
      VersionIdMarker = page.NextVersionIdMarker;
    }
  }

  /** Checks that the bucket exists and the credentials may read it (HeadBucket). */
  async check(opts?: OpOptions): Promise<void> {
    try {
      await this.#client.config.region();
    } catch (err) {
      throw new Determinate(ErrorCode.InvalidArgument, `${this.description}: no AWS region: pass region= or set AWS_REGION`, { cause: err });
    }
    await this.#headBucket(opts?.signal);
  }

  /** HeadBucket, with a missing bucket named as such. */
  async #headBucket(signal: AbortSignal | undefined): Promise<void> {
    await this.#send(new HeadBucketCommand({ Bucket: this.#bucket }), 'check bucket', signal).catch((err: unknown) => {
      // HEAD has no body, so a missing bucket is a bare 404.
      if (err instanceof ExternalError && err.code === ErrorCode.NotFound) {
        throw new Determinate(ErrorCode.NotFound, `${this.description}: the bucket ${this.#bucket} does not exist`, { cause: err });
      }
      throw err;
    });
  }

  protected async _close(): Promise<void> {
    if (this.#ownsClient) this.#client.destroy();
  }
}

type SendableCommand = { middlewareStack: { add(mw: unknown, options: unknown): void } };
interface GetOutput {
  Body?: unknown;
  ContentLength?: number;
  ContentRange?: string;
  ETag?: string;
}
interface ListOutput {
  Contents?: { Key?: string; Size?: number }[];
  IsTruncated?: boolean;
  NextContinuationToken?: string;
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

/**
 * Adds a middleware inside the SDK's retry loop that counts the attempts which
 * may have reached the server: every attempt except one that failed to connect.
 */
function trackAttempts(command: SendableCommand, attempts: Attempts): void {
  command.middlewareStack.add(
    (next: (args: unknown) => Promise<unknown>) => async (args: unknown) => {
      try {
        const out = await next(args);
        attempts.reached++;
        return out;
      } catch (err) {
        if (!isConnectError(err)) attempts.reached++;
        throw err;
      }
    },
    { step: 'deserialize', priority: 'high', name: 'persistLocationAttempts' },
  );
}

/**
 * Runs `task(0..count-1)` with at most `limit` in flight and returns the results
 * in order. On the first failure it starts no more tasks, aborts the running ones
 * and rejects with that failure once they have all settled.
 */
async function bounded<T>(
  count: number,
  limit: number,
  signal: AbortSignal | undefined,
  task: (i: number, signal: AbortSignal) => Promise<T>,
): Promise<T[]> {
  const stop = new AbortController();
  const taskSignal = signal === undefined ? stop.signal : AbortSignal.any([signal, stop.signal]);
  const results = new Array<T>(count);
  let next = 0;
  let failed = false;
  let failure: unknown;
  const worker = async (): Promise<void> => {
    while (!failed && next < count) {
      const i = next++;
      try {
        results[i] = await task(i, taskSignal);
      } catch (err) {
        if (!failed) {
          failed = true;
          failure = err;
          stop.abort(new Error('another part failed'));
        }
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, count) }, worker));
  if (failed) throw failure;
  return results;
}

/**
 * A failure of a multipart upload before CompleteMultipartUpload was sent, as
 * Determinate: S3 shows an object only once its upload is completed, so however
 * uncertain the failed request was, the value was provably not written.
 */
function notWritten(err: unknown, note: string): Determinate {
  if (err instanceof Determinate) return new Determinate(err.code, `${err.message}${note}`, { cause: err.cause });
  const code = err instanceof ExternalError ? err.code : ErrorCode.Unknown;
  const message = err instanceof Error ? err.message : String(err);
  // A timeout that provably changed nothing is not the (always Indeterminate) Timeout code.
  return new Determinate(code === ErrorCode.Timeout ? ErrorCode.Unavailable : code, `${message}${note}`, { cause: err });
}

function positive(n: number, name: string): number {
  if (!Number.isSafeInteger(n) || n < 1) throw invalidArgument(`S3Blob ${name} must be a positive integer, got ${n}`);
  return n;
}

/**
 * The client settings S3Blob uses: keep-alive connections (enough for parallel
 * parts of several operations), a connect timeout, and checksums only where S3
 * requires them, since several S3-compatible stores reject the newer flexible
 * checksum headers and trailers.
 */
export function defaultClientConfig(config: S3ClientConfig): S3ClientConfig {
  const agentOptions = { keepAlive: true, maxSockets: 64 };
  return {
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    // The SDK builds its NodeHttpHandler from these options.
    requestHandler: {
      httpAgent: new HttpAgent(agentOptions),
      httpsAgent: new HttpsAgent(agentOptions),
      connectionTimeout: 10_000,
    },
    ...config,
  };
}

const URI_PARAMS = ['endpoint', 'region', 'forcePathStyle', 'multipartThreshold', 'partSize', 'concurrency'] as const;

/** `s3://BUCKET[/PREFIX]?endpoint=URL&region=R&forcePathStyle=true&...` (see the module comment). */
export async function blobFromUri(loc: LocationUri): Promise<S3Blob> {
  const params = checkParams(loc, URI_PARAMS);
  const bucket = loc.authority ?? '';
  if (bucket === '' || bucket.includes('@') || bucket.includes(':')) {
    throw invalidArgument(`expected s3://BUCKET[/PREFIX] (credentials come from the AWS environment, not the URI), got ${loc.display}`);
  }
  const clientConfig: S3ClientConfig = {};
  if (params.endpoint !== undefined) {
    try {
      new URL(params.endpoint);
    } catch {
      throw invalidArgument(`parameter endpoint of ${loc.display} must be a URL, got '${params.endpoint}'`);
    }
    clientConfig.endpoint = params.endpoint;
  }
  const forcePathStyle = boolParam(loc, params.forcePathStyle, 'forcePathStyle');
  if (forcePathStyle !== undefined) clientConfig.forcePathStyle = forcePathStyle;
  if (params.region !== undefined) clientConfig.region = params.region;
  else if (params.endpoint !== undefined && process.env.AWS_REGION === undefined) clientConfig.region = 'us-east-1';
  const options: S3BlobOptions = { bucket, prefix: loc.path, clientConfig };
  const threshold = intParam(loc, params.multipartThreshold, 'multipartThreshold');
  if (threshold !== undefined) options.multipartThreshold = threshold;
  const partSize = intParam(loc, params.partSize, 'partSize');
  if (partSize !== undefined) options.partSize = partSize;
  const concurrency = intParam(loc, params.concurrency, 'concurrency');
  if (concurrency !== undefined) options.concurrency = concurrency;
  const blob = new S3Blob(options);
  try {
    await blob.check();
  } catch (err) {
    await blob.close();
    if (err instanceof ExternalError) throw err;
    // The SDK's region and credential resolution fail here, before anything is sent.
    throw new Determinate(ErrorCode.InvalidArgument, `cannot open ${loc.display}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
  return blob;
}
export { s3Backend } from './backend.js';
