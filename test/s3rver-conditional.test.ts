// Our s3rver extension for conditional writes (test/servers/s3rver.ts), checked on
// its own against the cases the S3 documentation gives for PutObject and
// CompleteMultipartUpload: S3Consensus is tested against this server, not AWS.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import {
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  GetObjectCommand,
  ListMultipartUploadsCommand,
  PutObjectCommand,
  S3Client,
  S3ServiceException,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import { S3RVER_CREDENTIALS, S3rverProcess } from './servers/s3rver.js';

const BUCKET = 'cond';
let server: S3rverProcess;
let s3: S3Client;
let n = 0;
const freshKey = () => `k${n++}/${Date.now()}`;

before(async () => {
  server = await S3rverProcess.start([BUCKET], { atomic: true });
  s3 = new S3Client({ endpoint: server.endpoint, region: 'us-east-1', forcePathStyle: true, credentials: S3RVER_CREDENTIALS, maxAttempts: 1 });
});
after(async () => {
  s3?.destroy();
  await server?.stop();
});

const put = (Key: string, Body: string, cond: { IfNoneMatch?: string; IfMatch?: string } = {}) => s3.send(new PutObjectCommand({ Bucket: BUCKET, Key, Body, ...cond }));
const read = async (Key: string) => (await s3.send(new GetObjectCommand({ Bucket: BUCKET, Key }))).Body!.transformToString();

/** The HTTP status and S3 error code a request failed with (fails the test if it succeeded). */
async function failure(p: Promise<unknown>): Promise<{ status: number | undefined; code: string }> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof S3ServiceException, `expected an S3 error, got ${String(err)}`);
    return { status: err.$metadata.httpStatusCode, code: err.name };
  }
  assert.fail('the request succeeded');
}

describe('s3rver conditional writes (PutObject)', () => {
  test('If-None-Match: * creates a missing key and refuses an existing one with 412, leaving it unchanged', async () => {
    const key = freshKey();
    await put(key, 'first', { IfNoneMatch: '*' });
    assert.deepEqual(await failure(put(key, 'second', { IfNoneMatch: '*' })), { status: 412, code: 'PreconditionFailed' });
    assert.equal(await read(key), 'first');
  });

  test('If-Match writes only over the object with that ETag: 412 on another ETag, 404 NoSuchKey when missing', async () => {
    const key = freshKey();
    const { ETag: first } = await put(key, 'one');
    const { ETag: second } = await put(key, 'two', { IfMatch: first! });
    assert.notEqual(second, first);
    assert.equal(await read(key), 'two');
    assert.deepEqual(await failure(put(key, 'three', { IfMatch: first! })), { status: 412, code: 'PreconditionFailed' });
    assert.equal(await read(key), 'two');
    assert.deepEqual(await failure(put(freshKey(), 'x', { IfMatch: first! })), { status: 404, code: 'NoSuchKey' });
    // Quotes around the ETag do not matter.
    await put(key, 'four', { IfMatch: second!.replace(/"/g, '') });
    assert.equal(await read(key), 'four');
  });

  test('If-None-Match with an ETag value is not implemented on writes (501)', async () => {
    const key = freshKey();
    const { ETag } = await put(key, 'v');
    assert.equal((await failure(put(key, 'w', { IfNoneMatch: ETag! }))).status, 501);
    assert.equal(await read(key), 'v');
  });

  test('an unconditional PUT still overwrites', async () => {
    const key = freshKey();
    await put(key, 'a', { IfNoneMatch: '*' });
    await put(key, 'b');
    assert.equal(await read(key), 'b');
  });

  test('20 concurrent creates: exactly one succeeds, the others get 412 or 409, and the object is the winner', async () => {
    const key = freshKey();
    const results = await Promise.allSettled(Array.from({ length: 20 }, (_, i) => put(key, `writer-${i}`, { IfNoneMatch: '*' })));
    const won = results.flatMap((r, i) => (r.status === 'fulfilled' ? [i] : []));
    assert.equal(won.length, 1, `winners: ${won.join(', ')}`);
    for (const r of results) {
      if (r.status === 'rejected') assert.ok([409, 412].includes((r.reason as S3ServiceException).$metadata.httpStatusCode!), String(r.reason));
    }
    assert.equal(await read(key), `writer-${won[0]}`);
  });

  test('20 concurrent If-Match updates of one ETag: exactly one succeeds', async () => {
    const key = freshKey();
    const { ETag } = await put(key, 'base');
    const results = await Promise.allSettled(Array.from({ length: 20 }, (_, i) => put(key, `update-${i}`, { IfMatch: ETag! })));
    const won = results.flatMap((r, i) => (r.status === 'fulfilled' ? [i] : []));
    assert.equal(won.length, 1, `winners: ${won.join(', ')}`);
    const codes = new Set(results.flatMap((r) => (r.status === 'rejected' ? [(r.reason as S3ServiceException).name] : [])));
    for (const code of codes) assert.ok(['PreconditionFailed', 'ConditionalRequestConflict'].includes(code), code);
    assert.equal(await read(key), `update-${won[0]}`);
  });
});

describe('s3rver conditional writes (CompleteMultipartUpload)', () => {
  const upload = async (key: string, body: string) => {
    const { UploadId } = await s3.send(new CreateMultipartUploadCommand({ Bucket: BUCKET, Key: key }));
    const { ETag } = await s3.send(new UploadPartCommand({ Bucket: BUCKET, Key: key, UploadId, PartNumber: 1, Body: body }));
    return { UploadId: UploadId!, parts: { Parts: [{ ETag: ETag!, PartNumber: 1 }] } };
  };
  const complete = (key: string, u: { UploadId: string; parts: { Parts: { ETag: string; PartNumber: number }[] } }, cond: { IfNoneMatch?: string; IfMatch?: string } = {}) =>
    s3.send(new CompleteMultipartUploadCommand({ Bucket: BUCKET, Key: key, UploadId: u.UploadId, MultipartUpload: u.parts, ...cond }));
  const pending = async () => ((await s3.send(new ListMultipartUploadsCommand({ Bucket: BUCKET }))).Uploads ?? []).map((u) => u.UploadId);

  test('If-None-Match: * completes onto a missing key, and fails with 412 onto an existing one, keeping the upload', async () => {
    const key = freshKey();
    await complete(key, await upload(key, 'multi-1'), { IfNoneMatch: '*' });
    assert.equal(await read(key), 'multi-1');
    const second = await upload(key, 'multi-2');
    assert.deepEqual(await failure(complete(key, second, { IfNoneMatch: '*' })), { status: 412, code: 'PreconditionFailed' });
    assert.equal(await read(key), 'multi-1');
    assert.ok((await pending()).includes(second.UploadId), 'the failed upload is still listed');
  });

  test('If-Match completes only over the object with that ETag', async () => {
    const key = freshKey();
    const { ETag } = await put(key, 'single');
    assert.deepEqual(await failure(complete(key, await upload(key, 'm'), { IfMatch: '"0123"' })), { status: 412, code: 'PreconditionFailed' });
    await complete(key, await upload(key, 'm2'), { IfMatch: ETag! });
    assert.equal(await read(key), 'm2');
  });
});
