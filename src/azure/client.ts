/**
 * The Azure Blob calls behind the object-store client interface
 * (src/objstore/client.ts), through `@azure/storage-blob`.
 *
 * The SDK's retry policy is off: after "ECONNRESET, then ECONNREFUSED" it reports
 * only the refusal, which looks harmless although the first attempt may have been
 * applied. Each request is retried here by the kit's `retry` on the failures the
 * SDK would retry (network errors, 500, 503) and 408, 429, 504; the kit keeps
 * what earlier attempts may have done, so such a refusal ends Indeterminate.
 */
import { constants as bufferConstants } from 'node:buffer';
import type { BlobDownloadResponseParsed, BlockBlobClient, ContainerClient } from '@azure/storage-blob';
import { Determinate, ErrorCode, type ExternalError } from '../errors.js';
import { retry, type BackoffPolicy } from '../kit/backoff.js';
import type { ByteRange, CallContext, Conditions, GetOutcome, ListPage, ObjectClient, ObjectHead, ObjectResponse, PutOutcome, StagedUpload } from '../objstore/client.js';
import { azureErrorCode, azureFailure, azureStatus, mapAzureError } from './errors.js';
import { blockIds, parseContentRange, readInto } from './transfer.js';

const MAX_BUFFER_BYTES = bufferConstants.MAX_LENGTH;

/** Failures worth another attempt, as mapped. */
const transient = new WeakSet<ExternalError>();
/** Commits that found their staged blocks discarded by another writer's commit. */
const discarded = new WeakSet<object>();

/** Whether `err` is a commit whose blocks another writer's commit discarded (nothing written). */
export function blocksDiscarded(err: unknown): boolean {
  return typeof err === 'object' && err !== null && discarded.has(err);
}

/** The SDK's list (network errors, 500, 503) plus 408, 429 and 504. */
function isTransient(err: unknown): boolean {
  const { status, errno, name, code, tls } = azureFailure(err);
  if (status !== undefined) return status === 408 || status === 429 || status === 500 || status === 503 || status === 504;
  // A failed handshake fails the same way again (Node names some of them ERR_TLS_*).
  if (tls !== undefined) return false;
  if (name === 'AbortError') return false;
  return errno !== undefined || code === 'REQUEST_SEND_ERROR';
}

function isBlobNotFound(err: unknown): boolean {
  return azureStatus(err) === 404 && azureErrorCode(err) !== 'ContainerNotFound';
}

/**
 * What a failed attempt may answer instead of failing: `doubtful` tells whether
 * an earlier attempt may have been applied. Undefined: fail as mapped.
 */
type Recognise<R> = (err: unknown, doubtful: boolean) => R | undefined;

/** The blobs of one container. */
export class AzureObjectClient implements ObjectClient {
  constructor(
    readonly container: ContainerClient,
    readonly policy: BackoffPolicy,
    readonly pageSize: number,
  ) {}

  /** One request, retried while it fails transiently, its failures mapped. */
  async call<T, R = never>(ctx: CallContext, request: (signal: AbortSignal | undefined) => Promise<T>, recognise?: Recognise<R>): Promise<T | R> {
    let doubtful = false;
    return retry(
      async (_n, signal) => {
        try {
          return await request(signal);
        } catch (err) {
          const answer = recognise?.(err, doubtful);
          if (answer !== undefined) return answer;
          const mapped = mapAzureError(err, { what: ctx.what, exposure: 'sent', signal });
          if (!mapped.determinate) doubtful = true;
          if (isTransient(err)) transient.add(mapped);
          throw mapped;
        }
      },
      { policy: this.policy, signal: ctx.signal, retryable: (err) => transient.has(err as ExternalError) },
    );
  }

  /**
   * Opening's one request: with `create`, creates the container if it is missing;
   * without, checks that it exists (Determinate NotFound naming it if not) and
   * writes nothing. Either way an unreachable service or refused credentials
   * reject here rather than at the first operation. `what` names the handle.
   */
  async openContainer(what: string, create: boolean, signal: AbortSignal | undefined): Promise<void> {
    const { container } = this;
    if (create) {
      await this.call({ what: `${what} create the container`, signal }, (s) => container.createIfNotExists({ abortSignal: s }));
      return;
    }
    const exists = await this.call({ what: `${what} check the container`, signal }, (s) => container.exists({ abortSignal: s }));
    if (!exists) throw new Determinate(ErrorCode.NotFound, `${what}: the container ${container.containerName} does not exist (and opening without create makes none)`);
  }

  blob(name: string): BlockBlobClient {
    return this.container.getBlockBlobClient(name);
  }

  async get(name: string, range: ByteRange | undefined, conditions: Conditions, ctx: CallContext): Promise<GetOutcome> {
    const client = this.blob(name);
    const r = await this.call(
      ctx,
      // The SDK's resuming of a broken body is off: it resumes under If-Match on
      // the response's ETag header, which on Azurite may name another version than
      // the bytes already received (see src/azure/index.ts).
      (signal) => client.download(range?.start ?? 0, range?.length, { abortSignal: signal, maxRetryRequests: 0, conditions: { ...conditions } }),
      (err): 'missing' | 'changed' | 'unsatisfiable' | undefined => {
        if (isBlobNotFound(err)) return 'missing';
        const status = azureStatus(err);
        return status === 412 ? 'changed' : status === 416 ? 'unsatisfiable' : undefined;
      },
    );
    if (typeof r === 'string') return r;
    return this.#response(r, ctx);
  }

  #response(r: BlobDownloadResponseParsed, ctx: CallContext): ObjectResponse {
    const length = r.contentLength ?? 0;
    const range = parseContentRange(r.contentRange);
    return {
      start: range?.start ?? 0,
      length,
      size: range?.total ?? length,
      etag: r.etag,
      // Drained, not destroyed, to keep its keep-alive connection.
      discard: () => r.readableStreamBody?.on('error', () => {}).resume(),
      read: async (signal) => {
        if (length > MAX_BUFFER_BYTES) {
          r.readableStreamBody?.on('error', () => {}).resume();
          throw new Determinate(ErrorCode.ResourceExhausted, `${ctx.what}: the response is ${length} bytes, more than one Node.js Buffer holds (${MAX_BUFFER_BYTES})`);
        }
        const out = Buffer.allocUnsafe(length);
        try {
          await readInto(r.readableStreamBody, out, 0, length, signal);
        } catch (err) {
          throw mapAzureError(err, { what: ctx.what, exposure: 'sent', signal });
        }
        return new Uint8Array(out.buffer, out.byteOffset, length);
      },
    };
  }

  async head(name: string, ctx: CallContext): Promise<ObjectHead | undefined> {
    const client = this.blob(name);
    const props = await this.call(ctx, (signal) => client.getProperties({ abortSignal: signal }), (err) => (isBlobNotFound(err) ? null : undefined));
    return props === null ? undefined : { size: props.contentLength ?? 0, etag: props.etag };
  }

  async put(name: string, body: Uint8Array, conditions: Conditions, ctx: CallContext): Promise<PutOutcome> {
    const client = this.blob(name);
    const buffer = Buffer.from(body.buffer, body.byteOffset, body.byteLength);
    const out = await this.call(
      ctx,
      (signal) => client.upload(buffer, buffer.byteLength, { abortSignal: signal, conditions: { ...conditions } }),
      // Azure answers a failed If-None-Match: * with 409 BlobAlreadyExists.
      (err, doubtful) => ((azureStatus(err) === 412 || azureErrorCode(err) === 'BlobAlreadyExists') && !doubtful ? ('changed' as const) : undefined),
    );
    return out === 'changed' ? out : { etag: out.etag };
  }

  /**
   * Blocks under ids unique to this upload, published by Put Block List. Azure has
   * no call that drops uncommitted blocks: they stay until the next commit of the
   * blob name or Azure's garbage collection (after a week), so there is no abort.
   */
  async beginUpload(name: string, parts: number): Promise<StagedUpload> {
    const client = this.blob(name);
    const ids = blockIds(parts);
    return {
      id: `of ${parts} blocks`,
      stage: async (index, _count, bytes, ctx) => {
        const block = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
        await this.call({ ...ctx, what: `${ctx.what} (staging blocks, before the commit)` }, (signal) => client.stageBlock(ids[index]!, block, block.byteLength, { abortSignal: signal }));
      },
      commit: async (ctx) => {
        await this.call(
          ctx,
          (signal) => client.commitBlockList(ids, { abortSignal: signal }),
          (err, doubtful) => {
            // Another writer's commit discarded our blocks; only our own earlier
            // commit, applied after all, would also explain it.
            if (azureErrorCode(err) !== 'InvalidBlockList' || doubtful) return undefined;
            const lost = new Determinate(ErrorCode.Aborted, `${ctx.what}: another writer's commit discarded the staged blocks; nothing was written`, { cause: err });
            discarded.add(lost);
            throw lost;
          },
        );
      },
    };
  }

  async listPage(prefix: string, token: string | undefined, ctx: CallContext): Promise<ListPage> {
    const page = await this.call(ctx, (signal) => this.container.listBlobsFlat({ prefix, abortSignal: signal }).byPage({ continuationToken: token, maxPageSize: this.pageSize }).next());
    if (page.done === true) return { items: [], next: undefined };
    const items = page.value.segment.blobItems.map((item) => ({ name: item.name, size: item.properties.contentLength ?? 0 }));
    const next = page.value.continuationToken;
    return { items, next: next === undefined || next === '' ? undefined : next };
  }

  async delete(name: string, conditions: Conditions, ctx: CallContext): Promise<'deleted' | 'missing' | 'changed'> {
    const client = this.blob(name);
    const out = await this.call(
      ctx,
      (signal) => client.delete({ abortSignal: signal, deleteSnapshots: 'include', conditions: { ...conditions } }),
      (err, doubtful): 'deleted' | 'missing' | 'changed' | undefined => {
        // Gone after an attempt that may have been ours: we deleted it.
        if (isBlobNotFound(err)) return doubtful ? 'deleted' : 'missing';
        return azureStatus(err) === 412 && !doubtful ? 'changed' : undefined;
      },
    );
    return typeof out === 'string' ? out : 'deleted';
  }
}
