/**
 * The object-store layer: what S3 and Azure Blob share beneath their Blob
 * classes. A store implements {@link ObjectClient} over its SDK (mapping errors
 * with its table on src/kit/http-errors.ts); the algorithms here do the rest:
 * {@link rangedGet} (parallel ranges pinned to one ETag), {@link stagedWrite}
 * (parts with bounded concurrency, one commit, abort on failure) and
 * {@link listPages} (pages requested as the loop consumes them).
 */
export type { ByteRange, CallContext, Conditions, GetOutcome, ListPage, ObjectClient, ObjectHead, ObjectReader, ObjectResponse, PutOutcome, StagedUpload } from './client.js';
export { rangedGet, type RangedGetOptions } from './get.js';
export { listPages } from './list.js';
export { partCount, stagedWrite, type StagedWriteOptions } from './upload.js';
