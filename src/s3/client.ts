/**
 * The S3 calls behind the object-store client interface (src/objstore/client.ts),
 * through `@aws-sdk/client-s3` v3. Every failure is mapped by {@link mapS3Error}
 * at the exposure of all the SDK's attempts inside one `send`.
 */
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  UploadPartCommand,
  type CompletedPart,
  type S3Client,
} from '@aws-sdk/client-s3';
import { Determinate, ErrorCode, ExternalError } from '../errors.js';
import { mightHaveApplied, type Exposure } from '../kit/exposure.js';
import { neverConnected } from '../kit/http-errors.js';
import type { ByteRange, CallContext, Conditions, GetOutcome, ListPage, ObjectClient, ObjectHead, ObjectResponse, PutOutcome, StagedUpload } from '../objstore/client.js';
import { errorName, httpStatus, mapS3Error, S3_ERRORS, s3Failure } from './errors.js';

/** A command as the tracking middleware needs it. */
export type SendableCommand = { middlewareStack: { add(mw: unknown, options: unknown): void } };

/** What the SDK's attempts inside one `send` may have done. */
class Attempts {
  /** Attempts seen (zero when a stand-in client bypasses the middleware). */
  seen = 0;
  /** Attempts that got past connecting. */
  reached = 0;
  /** Some failed attempt may have been applied. */
  doubtful = false;

  get exposure(): Exposure {
    if (this.doubtful) return 'committed';
    return this.seen > 0 && this.reached === 0 ? 'not-sent' : 'sent';
  }
}

/** The objects of one bucket. */
export class S3ObjectClient implements ObjectClient {
  constructor(
    readonly sdk: S3Client,
    readonly bucket: string,
    /** Keys per ListObjectsV2 page. */
    readonly pageSize = 1000,
  ) {}

  /**
   * Sends one command and maps a failure. `missing` is returned instead of
   * throwing when S3 answers 404 for the object (not for the bucket).
   */
  async send<T>(command: SendableCommand, ctx: CallContext): Promise<T>;
  async send<T, M>(command: SendableCommand, ctx: CallContext, missing: M): Promise<T | M>;
  async send(command: SendableCommand, ctx: CallContext, ...missing: unknown[]): Promise<unknown> {
    const attempts = new Attempts();
    track(command, attempts);
    try {
      return await this.sdk.send(command as never, { abortSignal: ctx.signal });
    } catch (err) {
      if (missing.length > 0 && httpStatus(err) === 404 && errorName(err) !== 'NoSuchBucket') return missing[0];
      throw mapS3Error(err, { what: ctx.what, exposure: attempts.exposure, signal: ctx.signal });
    }
  }

  /**
   * Checks that a region is set, the bucket exists and the credentials may read it
   * (HeadBucket): Determinate InvalidArgument without a region, Determinate
   * NotFound naming a missing bucket. `what` names the handle.
   */
  async checkBucket(what: string, signal: AbortSignal | undefined): Promise<void> {
    try {
      await this.sdk.config.region();
    } catch (err) {
      throw new Determinate(ErrorCode.InvalidArgument, `${what}: no AWS region: pass region= or set AWS_REGION`, { cause: err });
    }
    await this.headBucket(what, signal);
  }

  /** HeadBucket alone: Determinate NotFound naming a missing bucket. */
  async headBucket(what: string, signal: AbortSignal | undefined): Promise<void> {
    await this.send(new HeadBucketCommand({ Bucket: this.bucket }), { what: `${what} check bucket`, signal }).catch((err: unknown) => {
      // HEAD has no body, so a missing bucket is a bare 404.
      if (err instanceof ExternalError && err.code === ErrorCode.NotFound) {
        throw new Determinate(ErrorCode.NotFound, `${what}: the bucket ${this.bucket} does not exist`, { cause: err });
      }
      throw err;
    });
  }

  async get(name: string, range: ByteRange | undefined, conditions: Conditions, ctx: CallContext): Promise<GetOutcome> {
    const Range = range === undefined ? undefined : `bytes=${range.start}-${range.start + range.length - 1}`;
    const command = new GetObjectCommand({ Bucket: this.bucket, Key: name, Range, IfMatch: conditions.ifMatch, IfNoneMatch: conditions.ifNoneMatch });
    let out: GetOutput | undefined;
    try {
      out = await this.send<GetOutput, undefined>(command, ctx, undefined);
    } catch (err) {
      const outcome = conditionOutcome(err);
      if (outcome !== undefined) return outcome;
      throw err;
    }
    if (out === undefined) return 'missing';
    return this.#response(out, ctx);
  }

  #response(out: GetOutput, ctx: CallContext): ObjectResponse {
    const body = out.Body as (AsyncIterable<Uint8Array> & { destroy?: () => void }) | undefined;
    const discard = (): void => body?.destroy?.();
    const range = out.ContentRange === undefined ? null : /^bytes (\d+)-(\d+)\/(\d+)$/.exec(out.ContentRange);
    if (range !== null && Number(range[3]) === 0) {
      // Some stores answer a range of an empty object with `bytes 0-0/0` instead of 416.
      discard();
      return { start: 0, length: 0, size: 0, etag: out.ETag, discard() {}, read: async () => new Uint8Array(0) };
    }
    const length = out.ContentLength;
    if (length === undefined || body === undefined) {
      discard();
      throw new Determinate(ErrorCode.DataLoss, `${ctx.what}: the response has no Content-Length or body`);
    }
    // Without a Content-Range the server sent the whole object.
    const start = range === null ? 0 : Number(range[1]);
    const size = range === null ? length : Number(range[3]);
    return { start, length, size, etag: out.ETag, discard, read: (signal) => readBody(body, length, ctx.what, signal) };
  }

  async head(name: string, ctx: CallContext): Promise<ObjectHead | undefined> {
    const out = await this.send<{ ContentLength?: number; ETag?: string }, undefined>(new HeadObjectCommand({ Bucket: this.bucket, Key: name }), ctx, undefined);
    return out === undefined ? undefined : { size: out.ContentLength ?? 0, etag: out.ETag };
  }

  async put(name: string, body: Uint8Array, conditions: Conditions, ctx: CallContext): Promise<PutOutcome> {
    const command = new PutObjectCommand({ Bucket: this.bucket, Key: name, Body: body, ContentLength: body.byteLength, IfMatch: conditions.ifMatch, IfNoneMatch: conditions.ifNoneMatch });
    try {
      const out = await this.send<{ ETag?: string }>(command, ctx);
      return { etag: out.ETag };
    } catch (err) {
      // Only on the attempt that answered: an earlier one may have been applied.
      if (err instanceof ExternalError && err.determinate) {
        if (conditionOutcome(err) === 'changed') return 'changed';
        if (errorName(err.cause) === 'ConditionalRequestConflict') return 'conflict';
      }
      throw err;
    }
  }

  async beginUpload(name: string, parts: number, ctx: CallContext): Promise<StagedUpload> {
    let created: { UploadId?: string };
    try {
      created = await this.send(new CreateMultipartUploadCommand({ Bucket: this.bucket, Key: name }), { ...ctx, what: `${ctx.what} (create multipart upload)` });
    } catch (err) {
      if (!(err instanceof ExternalError)) throw err;
      throw new Determinate(err.code === ErrorCode.Timeout ? ErrorCode.Unavailable : err.code, `${err.message} (an upload the server may have created stays empty and invisible)`, { cause: err });
    }
    const UploadId = created.UploadId;
    if (UploadId === undefined) throw new Determinate(ErrorCode.Unknown, `${ctx.what}: CreateMultipartUpload returned no UploadId`);
    const { bucket } = this;
    const done: CompletedPart[] = new Array<CompletedPart>(parts);
    return {
      id: UploadId,
      stage: async (index, count, Body, part) => {
        const PartNumber = index + 1;
        const out = await this.send<{ ETag?: string }>(new UploadPartCommand({ Bucket: bucket, Key: name, UploadId, PartNumber, Body, ContentLength: Body.byteLength }), {
          ...part,
          what: `${part.what} (part ${PartNumber} of ${count})`,
        });
        done[index] = { PartNumber, ETag: out.ETag };
      },
      commit: async (commit) => {
        await this.send(new CompleteMultipartUploadCommand({ Bucket: bucket, Key: name, UploadId, MultipartUpload: { Parts: done } }), {
          ...commit,
          what: `${commit.what} (complete multipart upload)`,
        });
      },
      // Idempotent: a repeat answers 404, which is done.
      abort: (abort) => this.send(new AbortMultipartUploadCommand({ Bucket: bucket, Key: name, UploadId }), abort, undefined).then(() => undefined),
    };
  }

  async listPage(prefix: string, token: string | undefined, ctx: CallContext): Promise<ListPage> {
    const page = await this.send<ListOutput>(new ListObjectsV2Command({ Bucket: this.bucket, Prefix: prefix, ContinuationToken: token, MaxKeys: this.pageSize }), ctx);
    const items = (page.Contents ?? []).flatMap((o) => (o.Key === undefined ? [] : [{ name: o.Key, size: o.Size ?? 0 }]));
    return { items, next: page.IsTruncated === true ? page.NextContinuationToken : undefined };
  }

  async delete(name: string, conditions: Conditions, ctx: CallContext): Promise<'deleted' | 'missing' | 'changed'> {
    try {
      const out = await this.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: name, IfMatch: conditions.ifMatch }), ctx, 'missing' as const);
      return out === 'missing' ? 'missing' : 'deleted';
    } catch (err) {
      if (conditionOutcome(err) === 'changed') return 'changed';
      throw err;
    }
  }
}

/** What a mapped failure of a conditional or ranged request says, if it is one of those answers. */
function conditionOutcome(err: unknown): 'changed' | 'unsatisfiable' | undefined {
  const cause = err instanceof ExternalError ? err.cause : undefined;
  if (cause === undefined) return undefined;
  if (httpStatus(cause) === 412) return 'changed';
  if (errorName(cause) === 'InvalidRange' || httpStatus(cause) === 416) return 'unsatisfiable';
  return undefined;
}

/** Reads a response body of `size` bytes into one new array (the only copy). */
async function readBody(body: AsyncIterable<Uint8Array> & { destroy?: () => void }, size: number, what: string, signal: AbortSignal | undefined): Promise<Uint8Array> {
  const buffer = Buffer.allocUnsafeSlow(size);
  let offset = 0;
  try {
    for await (const piece of body) {
      if (offset + piece.byteLength > size) throw new Determinate(ErrorCode.DataLoss, `${what}: the body is longer than its Content-Length ${size}`);
      buffer.set(piece, offset);
      offset += piece.byteLength;
    }
  } catch (err) {
    body.destroy?.();
    throw mapS3Error(err, { what, exposure: 'sent', signal });
  }
  if (offset !== size) throw new Determinate(ErrorCode.DataLoss, `${what}: the body ended after ${offset} of ${size} bytes`);
  return new Uint8Array(buffer.buffer, buffer.byteOffset, size);
}

/**
 * Adds a middleware inside the SDK's retry loop that records what each attempt
 * may have done (see {@link Attempts}).
 */
function track(command: SendableCommand, attempts: Attempts): void {
  command.middlewareStack.add(
    (next: (args: unknown) => Promise<unknown>) => async (args: unknown) => {
      attempts.seen++;
      try {
        const out = await next(args);
        attempts.reached++;
        return out;
      } catch (err) {
        if (!neverConnected(s3Failure(err))) attempts.reached++;
        const verdict = S3_ERRORS(err);
        if (verdict !== undefined && mightHaveApplied(verdict.code, 'sent', verdict.refused)) attempts.doubtful = true;
        throw err;
      }
    },
    { step: 'deserialize', priority: 'high', name: 'persistLocationAttempts' },
  );
}

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
