import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { ListMultipartUploadsCommand, ListObjectsV2Command, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { ErrorCode, ExternalError, openBlob } from 'persist-location';
import type { Exposure } from '../src/kit/exposure.js';
import { decodeKey, defaultClientConfig, encodeKey, mapS3Error, maxKeyBytesFor, S3Blob, type S3BlobOptions } from 'persist-location/s3';
import { blobImplTest, hostileKeys } from 'persist-location/testing';
import { keyOfBytes } from '../src/testing/keys.js';
import { checkFinalValues, historyValue, historyViolations, pattern, runHistory } from './blob-history.js';
import { freePort } from './servers/ports.js';
import { tripwireProxy, type TripwireProxy } from './servers/proxy.js';
import { S3RVER_CREDENTIALS, S3rverProcess } from './servers/s3rver.js';

const MiB = 1024 * 1024;

/** Polls until `probe` is true. */
async function until(what: string, probe: () => boolean, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!probe()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** A synthetic SDK error, shaped like the ones @aws-sdk/client-s3 throws. */
function sdkError(name: string, status?: number, extra: Record<string, unknown> = {}): Error {
  const err = Object.assign(new Error(`synthetic ${name}`), extra);
  err.name = name;
  if (status !== undefined) Object.assign(err, { $fault: status >= 500 ? 'server' : 'client', $metadata: { httpStatusCode: status, attempts: 1 } });
  return err;
}
function netError(code: string, name = 'Error'): Error {
  const err = Object.assign(new Error(`synthetic ${code}`), { code });
  err.name = name;
  return err;
}

describe('mapS3Error', () => {
  const what = 'S3Blob(s3://b/) set("k")';
  const sys = (code: string, syscall: string): Error => Object.assign(new Error(`${syscall} ${code} 10.0.0.1:443`), { code, syscall });
  const cases: [string, unknown, Exposure, boolean, ErrorCode][] = [
    ['403 AccessDenied', sdkError('AccessDenied', 403), 'sent', true, ErrorCode.PermissionDenied],
    ['403 InvalidAccessKeyId', sdkError('InvalidAccessKeyId', 403), 'sent', true, ErrorCode.PermissionDenied],
    ['403 after an earlier attempt may have been applied', sdkError('AccessDenied', 403), 'committed', false, ErrorCode.PermissionDenied],
    ['404 NoSuchBucket', sdkError('NoSuchBucket', 404), 'sent', true, ErrorCode.NotFound],
    ['404 NoSuchKey', sdkError('NoSuchKey', 404), 'sent', true, ErrorCode.NotFound],
    ['412 PreconditionFailed', sdkError('PreconditionFailed', 412), 'sent', true, ErrorCode.FailedPrecondition],
    ['409 OperationAborted', sdkError('OperationAborted', 409), 'sent', true, ErrorCode.Aborted],
    ['409 ConditionalRequestConflict (a concurrent conditional write)', sdkError('ConditionalRequestConflict', 409), 'sent', true, ErrorCode.Aborted],
    ['409 of another kind (as Azure: a conflict with the current state)', sdkError('BucketAlreadyOwnedByYou', 409), 'sent', true, ErrorCode.FailedPrecondition],
    ['400 EntityTooLarge', sdkError('EntityTooLarge', 400), 'sent', true, ErrorCode.ResourceExhausted],
    ['400 InvalidArgument', sdkError('InvalidArgument', 400), 'sent', true, ErrorCode.InvalidArgument],
    ['405 (other 4xx)', sdkError('MethodNotAllowed', 405), 'sent', true, ErrorCode.InvalidArgument],
    ['501 NotImplemented (as Azure)', sdkError('NotImplemented', 501), 'sent', true, ErrorCode.Unknown],
    ['500 InternalError', sdkError('InternalError', 500), 'sent', false, ErrorCode.Unknown],
    ['503 ServiceUnavailable', sdkError('ServiceUnavailable', 503), 'sent', false, ErrorCode.Unavailable],
    ['503 SlowDown: refused at admission', sdkError('SlowDown', 503), 'sent', true, ErrorCode.Aborted],
    ['503 SlowDown after an attempt that may have been applied', sdkError('SlowDown', 503), 'committed', false, ErrorCode.Aborted],
    ['429 TooManyRequests', sdkError('TooManyRequestsException', 429), 'sent', true, ErrorCode.Aborted],
    ['connection refused, nothing sent', netError('ECONNREFUSED'), 'not-sent', true, ErrorCode.Unavailable],
    ['connection refused after an earlier attempt was sent', netError('ECONNREFUSED'), 'committed', false, ErrorCode.Unavailable],
    ['DNS failure', netError('ENOTFOUND'), 'sent', true, ErrorCode.Unavailable],
    ['EHOSTUNREACH from connect: never connected', sys('EHOSTUNREACH', 'connect'), 'sent', true, ErrorCode.Unavailable],
    ['ENETUNREACH from connect: never connected', sys('ENETUNREACH', 'connect'), 'sent', true, ErrorCode.Unavailable],
    ['EHOSTUNREACH on an open connection: the request may be out', sys('EHOSTUNREACH', 'read'), 'sent', false, ErrorCode.Unavailable],
    ['EHOSTUNREACH without a syscall proves nothing', netError('EHOSTUNREACH'), 'sent', false, ErrorCode.Unavailable],
    ['connection reset (the SDK names it TimeoutError)', netError('ECONNRESET', 'TimeoutError'), 'sent', false, ErrorCode.Unavailable],
    ['broken pipe', netError('EPIPE'), 'sent', false, ErrorCode.Unavailable],
    ['socket timeout', netError('ETIMEDOUT', 'TimeoutError'), 'sent', false, ErrorCode.Timeout],
    ['connect timeout (SDK TimeoutError without code)', sdkError('TimeoutError'), 'sent', false, ErrorCode.Timeout],
    ['no credentials', sdkError('CredentialsProviderError'), 'not-sent', true, ErrorCode.PermissionDenied],
    ['unknown error', new Error('something odd'), 'sent', false, ErrorCode.Unknown],
    ['unexpected status 200 (error in a 200 body)', sdkError('InternalError', 200), 'sent', false, ErrorCode.Unknown],
  ];
  for (const [name, err, exposure, determinate, code] of cases) {
    test(name, () => {
      const mapped = mapS3Error(err, { what, exposure });
      assert.ok(mapped instanceof ExternalError);
      assert.equal(mapped.determinate, determinate, mapped.message);
      assert.equal(mapped.code, code, mapped.message);
      assert.equal(mapped.cause, err);
      assert.ok(mapped.message.startsWith(what), mapped.message);
      assert.equal(mapped.isTimeout(), code === ErrorCode.Timeout);
    });
  }

  test('an aborted signal: Determinate Cancelled if nothing was sent, else Indeterminate', () => {
    const signal = AbortSignal.abort(new Error('stop'));
    const abortError = sdkError('AbortError');
    assert.deepEqual([mapS3Error(abortError, { what, exposure: 'not-sent', signal })].map((e) => [e.determinate, e.code]), [[true, ErrorCode.Cancelled]]);
    assert.deepEqual([mapS3Error(abortError, { what, exposure: 'sent', signal })].map((e) => [e.determinate, e.code]), [[false, ErrorCode.Cancelled]]);
  });

  test('an ExternalError passes through unchanged', () => {
    const mine = mapS3Error(sdkError('AccessDenied', 403), { what, exposure: 'sent' });
    assert.equal(mapS3Error(mine, { what, exposure: 'sent' }), mine);
  });
});

describe("S3Blob judges all of the SDK's attempts, not only the last", () => {
  /** An S3Blob whose SDK client (retries included) meets `failures` in turn, one per attempt. */
  const failing = (failures: Error[]): S3Blob => {
    let attempt = 0;
    const client = new S3Client({
      region: 'us-east-1',
      endpoint: 'http://127.0.0.1:9',
      forcePathStyle: true,
      credentials: { accessKeyId: 'a', secretAccessKey: 'b' },
      maxAttempts: failures.length,
      requestHandler: {
        handle: async () => {
          throw failures[Math.min(attempt++, failures.length - 1)]!;
        },
      },
    });
    return new S3Blob({ bucket: 'b', client });
  };
  const refused = () => Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:9'), { code: 'ECONNREFUSED', syscall: 'connect' });
  const reset = () => Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET', syscall: 'read' });

  test('refused on every attempt: Determinate Unavailable', async () => {
    await assert.rejects(failing([refused(), refused()]).set('k', Buffer.from('v')), { name: 'Determinate', code: ErrorCode.Unavailable });
  });

  test('a reset (the request may have been applied) and then a refusal: Indeterminate', async () => {
    await assert.rejects(failing([reset(), refused()]).set('k', Buffer.from('v')), { name: 'Indeterminate', code: ErrorCode.Unavailable });
  });
});

/**
 * Deterministic pseudo-random keys of 1..maxBytes UTF-8 bytes (`exact`: of as close
 * to maxBytes as the characters allow), mixing kept, escaped and multi-byte
 * characters with `.` and `/`.
 */
function randomKeys(count: number, maxBytes: number, seed = 1, exact = false): string[] {
  const alphabet = ['a', 'Z', '0', '-', '.', '.', '/', '/', '%', ' ', '~', 'é', '€', '🦀', '\n'];
  let x = seed;
  const next = (n: number): number => {
    x = (x * 1103515245 + 12345) & 0x7fffffff;
    return x % n;
  };
  return Array.from({ length: count }, () => {
    const target = exact ? maxBytes : 1 + next(maxBytes);
    let key = '';
    for (;;) {
      const c = alphabet[next(alphabet.length)]!;
      if (Buffer.byteLength(key + c) > target) break;
      key += c;
    }
    return key === '' ? 'a' : key;
  });
}

describe('S3 key encoding', () => {
  const keys = [...hostileKeys(maxKeyBytesFor(0)), 'a', 'a/b', 'a.b', 'A', 'x'.repeat(300), '€'.repeat(100), ...randomKeys(300, 400)];

  test('every hostile key round-trips and makes a name a filesystem-backed store can hold', () => {
    for (const key of keys) {
      const name = encodeKey(key);
      assert.equal(decodeKey(name), key, JSON.stringify(key));
      const parts = name.split('/');
      for (const [i, part] of parts.entries()) {
        assert.ok(part.length > 0 && part.length <= 200 && part !== '.' && part !== '..', `component ${JSON.stringify(part)} of ${JSON.stringify(key)}`);
        assert.match(part, /^[0-9A-Za-z!\-_.*'()%]+$/);
        assert.equal(part.startsWith('.'), i > 0, `only continuation components start with '.': ${JSON.stringify(name)}`);
        assert.ok(!part.startsWith('..'), `no component starts with two dots: ${JSON.stringify(part)}`);
      }
    }
    assert.equal(new Set(keys.map(encodeKey)).size, new Set(keys).size, 'distinct keys get distinct names');
  });

  test('plain ASCII keys stay short: only what must be escaped is', () => {
    assert.equal(encodeKey('logs/2024-06-01/app.log'), 'logs%2F2024-06-01%2Fapp.log');
    assert.equal(encodeKey("Aa0!-_.*'()"), "Aa0!-_.*'()");
    assert.equal(encodeKey('.hidden'), '%2Ehidden', 'a leading dot is escaped: no name is . or ..');
    assert.equal(encodeKey('a..'), 'a..');
    const path = Array.from({ length: 22 }, (_, i) => `segment-${String(i).padStart(2, '0')}-${'n'.repeat(28)}`).join('/') + '.json';
    assert.ok(path.length >= 850, `${path.length}-byte path`);
    assert.ok(encodeKey(path).length <= path.length + 2 * 22 + 2 * 5, `a ${path.length}-byte path encodes to ${encodeKey(path).length} bytes`);
  });

  test('a key starts with a prefix exactly when its name starts with the prefix\'s name', () => {
    const long = 'x'.repeat(199);
    const all = [...keys.slice(0, 120), long + 'y', long + 'yz', long + '.', long + '..', long, `${long}/`, 'dir', 'dir/', 'dirt', 'd', '.', '.a'];
    for (const key of all) {
      for (const prefix of all) {
        assert.equal(encodeKey(key).startsWith(encodeKey(prefix)), key.startsWith(prefix), `${JSON.stringify(key)} / ${JSON.stringify(prefix)}`);
      }
    }
  });

  test('no name of a nested location is a name of the outer one', () => {
    // Location `p/q` stores key k at `p/` + `q/` + encodeKey(k); location `p` would
    // read it as the name `q/` + encodeKey(k).
    const inner = ['x'.repeat(200), 'x'.repeat(199), 'data', '.hidden', 'k', 'a/b', 'y'.repeat(200) + '/z', '%41', encodeKey('x'.repeat(250))];
    for (const q of inner) {
      for (const key of [...keys.slice(0, 80), 'k', 'x', '.k', 'x'.repeat(300)]) {
        const name = `${q}/${encodeKey(key)}`;
        assert.equal(decodeKey(name), undefined, `${JSON.stringify(name.slice(0, 60))} is no key of the outer location`);
      }
    }
  });

  test('names not made by encodeKey decode to undefined', () => {
    const notOurs = ['a/b', '%41', '%zz', '%e2%82%ac', 'a b', '%FF', '', '.a', 'a%2Eb', '~', `${'x'.repeat(200)}/y`, `${'x'.repeat(100)}/.y`, `${'x'.repeat(200)}/.`, 'x/.'];
    for (const name of notOurs) assert.equal(decodeKey(name), undefined, name);
  });

  test('the worst-case key cap fits within 1024 bytes whatever the characters', () => {
    for (const prefixBytes of [0, 1, 10, 42, 100, 500, 1000]) {
      const cap = maxKeyBytesFor(prefixBytes);
      assert.ok(prefixBytes + encodeKey('/'.repeat(cap)).length <= 1024, `cap ${cap} with prefix ${prefixBytes}`);
      assert.ok(prefixBytes + encodeKey('/'.repeat(cap + 1)).length > 1024, `cap ${cap} is the largest`);
      for (const key of randomKeys(200, cap, prefixBytes + 7, true)) {
        assert.ok(prefixBytes + encodeKey(key).length <= 1024, `${Buffer.byteLength(key)}-byte key ${JSON.stringify(key)} fits with prefix ${prefixBytes}`);
      }
    }
    assert.equal(maxKeyBytesFor(0), 338);
  });
});

/** A stand-in S3Client: `send` answers from a function of the command name and input. */
function fakeClient(answer: (command: string, input: Record<string, unknown>) => unknown): { client: S3Client; sent: [string, Record<string, unknown>][] } {
  const sent: [string, Record<string, unknown>][] = [];
  const client = {
    async send(command: { constructor: { name: string }; input: Record<string, unknown> }) {
      const name = command.constructor.name.replace(/Command$/, '');
      sent.push([name, command.input]);
      const out = answer(name, command.input);
      if (out instanceof Error) throw out;
      return out;
    },
    destroy() {},
  } as unknown as S3Client;
  return { client, sent };
}

function rangeReply(value: Buffer, range: unknown, etag: string): unknown {
  const m = /^bytes=(\d+)-(\d+)$/.exec(String(range))!;
  const start = Number(m[1]);
  const end = Math.min(Number(m[2]), value.length - 1);
  const body = value.subarray(start, end + 1);
  return { Body: Readable.from([body]), ContentLength: body.length, ContentRange: `bytes ${start}-${end}/${value.length}`, ETag: etag };
}

describe('S3Blob against a stand-in client', () => {
  test('get never mixes two versions: an ETag change mid-read starts the read over', async () => {
    const v1 = Buffer.alloc(12 * MiB, 1);
    const v2 = Buffer.alloc(12 * MiB, 2);
    let calls = 0;
    const { client, sent } = fakeClient((name, input) => {
      assert.equal(name, 'GetObject');
      calls++;
      // The first read sees v1 for its first range; then the object is overwritten with v2.
      if (calls === 1) return rangeReply(v1, input.Range, '"v1"');
      if (input.IfMatch === '"v1"') return sdkError('PreconditionFailed', 412);
      return rangeReply(v2, input.Range, '"v2"');
    });
    const blob = new S3Blob({ bucket: 'b', client, partSize: 5 * MiB });
    const got = await blob.get('k');
    assert.ok(got !== undefined);
    assert.ok(Buffer.from(got.toContiguous()).equals(v2), 'the whole value is the new version');
    assert.equal(got.segments.length, 3, 'fetched as three ranges');
    assert.ok(sent.filter(([, i]) => i.IfMatch !== undefined).every(([, i]) => i.IfMatch === '"v1"' || i.IfMatch === '"v2"'));
    await blob.close();
  });

  test('get checks the ETag of every range even when the store ignores If-Match', async () => {
    let version = 1;
    const values = [Buffer.alloc(11 * MiB, 1), Buffer.alloc(11 * MiB, 2)];
    let calls = 0;
    const { client } = fakeClient((_name, input) => {
      calls++;
      const reply = rangeReply(values[version - 1]!, input.Range, `"v${version}"`);
      if (calls === 1) version = 2; // overwritten right after the first range
      return reply;
    });
    const blob = new S3Blob({ bucket: 'b', client, partSize: 5 * MiB });
    const got = await blob.get('k');
    assert.ok(Buffer.from(got!.toContiguous()).equals(values[1]!));
    await blob.close();
  });

  test('a later range beyond the end (the object was replaced by a shorter one) starts the read over', async () => {
    // Found under concurrent overwrites on s3rver, which ignores If-Match: such a
    // range was answered 416 and the get failed Determinate InvalidArgument.
    const long = Buffer.alloc(11 * MiB, 1);
    const short = Buffer.alloc(2 * MiB, 2);
    let calls = 0;
    const { client } = fakeClient((_name, input) => {
      calls++;
      if (calls === 1) return rangeReply(long, input.Range, '"long"');
      const start = Number(/^bytes=(\d+)-/.exec(String(input.Range))![1]);
      return start >= short.length ? sdkError('InvalidRange', 416) : rangeReply(short, input.Range, '"short"');
    });
    const blob = new S3Blob({ bucket: 'b', client, partSize: 5 * MiB });
    const got = await blob.get('k');
    assert.ok(Buffer.from(got!.toContiguous()).equals(short));
    await blob.close();
  });

  test('a get that keeps seeing new versions gives up Determinate', async () => {
    let n = 0;
    const { client } = fakeClient((_name, input) => rangeReply(Buffer.alloc(11 * MiB, n), input.Range, `"v${n++}"`));
    const blob = new S3Blob({ bucket: 'b', client, partSize: 5 * MiB });
    await assert.rejects(blob.get('k'), { name: 'Determinate', code: ErrorCode.Aborted });
    await blob.close();
  });

  /** A stand-in for the multipart requests; `fail` may answer a request with an error instead. */
  const multipartClient = (fail: (name: string, input: Record<string, unknown>) => Error | undefined) =>
    fakeClient((name, input) => {
      const failure = fail(name, input);
      if (failure !== undefined) return failure;
      switch (name) {
        case 'CreateMultipartUpload':
          return { UploadId: 'u1' };
        case 'UploadPart':
          return { ETag: `"p${String(input.PartNumber)}"` };
        case 'CompleteMultipartUpload':
        case 'AbortMultipartUpload':
          return {};
        default:
          return new Error(`unexpected ${name}`);
      }
    });

  test('set and get keep at most `concurrency` parts or ranges in flight', async () => {
    const value = pattern(26 * MiB, 5);
    let inFlight = 0;
    let most = 0;
    const slowly = async <T>(reply: T): Promise<T> => {
      most = Math.max(most, ++inFlight);
      await new Promise((r) => setTimeout(r, 2));
      inFlight--;
      return reply;
    };
    const { client, sent } = fakeClient((name, input) => {
      switch (name) {
        case 'CreateMultipartUpload':
          return { UploadId: 'u1' };
        case 'UploadPart':
          return slowly({ ETag: `"p${String(input.PartNumber)}"` });
        case 'CompleteMultipartUpload':
          return {};
        case 'GetObject':
          return slowly(rangeReply(value, input.Range, '"v"'));
        default:
          return new Error(`unexpected ${name}`);
      }
    });
    const blob = new S3Blob({ bucket: 'b', client, partSize: 5 * MiB, concurrency: 2 });
    await blob.set('k', value);
    assert.equal(sent.filter(([n]) => n === 'UploadPart').length, 6);
    assert.equal(most, 2, 'parts in flight');
    most = 0;
    const got = await blob.get('k');
    assert.ok(Buffer.from(got!.toContiguous()).equals(value));
    assert.equal(got!.segments.length, 6);
    assert.equal(most, 2, 'ranges in flight after the first');
    await blob.close();
  });

  test('a CompleteMultipartUpload that fails after sending is Indeterminate, even when the cleanup abort fails too', async () => {
    for (const completeError of [netError('ECONNRESET'), sdkError('InternalError', 503)]) {
      const { client, sent } = multipartClient((name) =>
        name === 'CompleteMultipartUpload' ? completeError : name === 'AbortMultipartUpload' ? netError('ECONNREFUSED') : undefined,
      );
      const blob = new S3Blob({ bucket: 'b', client, partSize: 5 * MiB });
      await assert.rejects(blob.set('k', Buffer.alloc(11 * MiB, 1)), (err: unknown) => {
        assert.ok(err instanceof ExternalError, String(err));
        assert.equal(err.determinate, false, err.message);
        assert.match(err.message, /aborting upload u1 failed too/);
        return true;
      });
      assert.deepEqual(
        sent.map(([n]) => n),
        ['CreateMultipartUpload', 'UploadPart', 'UploadPart', 'UploadPart', 'CompleteMultipartUpload', 'AbortMultipartUpload', 'AbortMultipartUpload', 'AbortMultipartUpload'],
        'the cleanup abort is tried in 3 rounds',
      );
      await blob.close();
    }
  });

  test('a failed part is Determinate and the upload is aborted; a failing abort is only noted', async () => {
    const { client, sent } = multipartClient((name, input) =>
      name === 'UploadPart' && input.PartNumber === 2 ? netError('ECONNRESET') : name === 'AbortMultipartUpload' ? netError('ECONNRESET') : undefined,
    );
    const blob = new S3Blob({ bucket: 'b', client, partSize: 5 * MiB, concurrency: 1 });
    await assert.rejects(blob.set('k', Buffer.alloc(11 * MiB, 1)), (err: unknown) => {
      assert.ok(err instanceof ExternalError, String(err));
      assert.equal(err.determinate, true, err.message);
      assert.equal(err.code, ErrorCode.Unavailable);
      assert.match(err.message, /nothing was written/);
      assert.match(err.message, /aborting upload u1 failed too/);
      return true;
    });
    assert.deepEqual(sent.map(([n]) => n), ['CreateMultipartUpload', 'UploadPart', 'UploadPart', 'AbortMultipartUpload', 'AbortMultipartUpload', 'AbortMultipartUpload']);
    await blob.close();
  });

  test('an abort that fails once is tried again, so the parts are removed', async () => {
    // Found under random connection cuts: one lost abort (after the SDK's own
    // attempts) left the upload's parts behind.
    let aborts = 0;
    const { client, sent } = multipartClient((name, input) =>
      name === 'UploadPart' && input.PartNumber === 2 ? netError('ECONNRESET') : name === 'AbortMultipartUpload' && aborts++ === 0 ? netError('ECONNRESET') : undefined,
    );
    const blob = new S3Blob({ bucket: 'b', client, partSize: 5 * MiB, concurrency: 1 });
    await assert.rejects(blob.set('k', Buffer.alloc(11 * MiB, 1)), (err: unknown) => {
      assert.ok(err instanceof ExternalError && err.determinate, String(err));
      assert.doesNotMatch(err.message, /failed too/);
      return true;
    });
    assert.deepEqual(sent.map(([n]) => n), ['CreateMultipartUpload', 'UploadPart', 'UploadPart', 'AbortMultipartUpload', 'AbortMultipartUpload']);
    await blob.close();
  });

  test('the caller aborting after the last part, before the completion: Determinate Cancelled, upload aborted', async () => {
    const controller = new AbortController();
    const { client, sent } = multipartClient((name, input) => {
      if (name === 'UploadPart' && input.PartNumber === 3) controller.abort(new Error('caller gave up'));
      return undefined;
    });
    const blob = new S3Blob({ bucket: 'b', client, partSize: 5 * MiB, concurrency: 1 });
    await assert.rejects(blob.set('k', Buffer.alloc(11 * MiB, 1), { signal: controller.signal }), { name: 'Determinate', code: ErrorCode.Cancelled });
    assert.deepEqual(sent.map(([n]) => n), ['CreateMultipartUpload', 'UploadPart', 'UploadPart', 'UploadPart', 'AbortMultipartUpload']);
    await blob.close();
  });

  test('delete of a missing key returns undefined; in a missing bucket it rejects Determinate NotFound', async () => {
    for (const bucketExists of [true, false]) {
      const { client } = fakeClient((name) => {
        if (name === 'HeadObject') return sdkError('NotFound', 404);
        if (name === 'HeadBucket') return bucketExists ? {} : sdkError('NotFound', 404);
        return new Error(`unexpected ${name}`);
      });
      const blob = new S3Blob({ bucket: 'b', client });
      if (bucketExists) assert.equal(await blob.delete('k'), undefined);
      else await assert.rejects(blob.delete('k'), { name: 'Determinate', code: ErrorCode.NotFound, message: /bucket b does not exist/ });
      await blob.close();
    }
  });

  test('restore on a versioned bucket removes the latest delete marker', async () => {
    let restored = false;
    const { client, sent } = fakeClient((name, input) => {
      switch (name) {
        case 'HeadObject':
          return restored ? { ContentLength: 4 } : sdkError('NotFound', 404);
        case 'GetBucketVersioning':
          return { Status: 'Enabled' };
        case 'ListObjectVersions':
          return {
            Versions: [{ Key: input.Prefix, VersionId: 'old', IsLatest: false }, { Key: `${String(input.Prefix)}x`, VersionId: 'other', IsLatest: true }],
            DeleteMarkers: [{ Key: input.Prefix, VersionId: 'marker', IsLatest: true }],
            IsTruncated: false,
          };
        case 'DeleteObject':
          assert.equal(input.VersionId, 'marker');
          restored = true;
          return {};
        default:
          throw new Error(`unexpected ${name}`);
      }
    });
    const blob = new S3Blob({ bucket: 'b', client });
    await blob.restore('k');
    assert.deepEqual(sent.map(([n]) => n), ['HeadObject', 'GetBucketVersioning', 'ListObjectVersions', 'DeleteObject', 'HeadObject']);
    await blob.close();
  });

  test('restore without versioning rejects Determinate NotFound', async () => {
    const { client } = fakeClient((name) => (name === 'HeadObject' ? sdkError('NotFound', 404) : name === 'GetBucketVersioning' ? {} : new Error(name)));
    const blob = new S3Blob({ bucket: 'b', client });
    await assert.rejects(blob.restore('k'), { name: 'Determinate', code: ErrorCode.NotFound });
    await blob.close();
  });

  test('set sends the bytes passed, though the caller overwrites its array at once and again before a resend', async () => {
    for (const size of [1000, 12 * MiB]) {
      const original = pattern(size, 9);
      const mine = Buffer.from(original);
      const sentBodies: { part: number; first: Buffer; resent: Buffer }[] = [];
      const { client } = fakeClient((name, input) => {
        if (name === 'CreateMultipartUpload') return { UploadId: 'u1' };
        if (name === 'CompleteMultipartUpload') return {};
        // Like the SDK: the body is read only as it is sent, and again on a retry.
        return (async () => {
          await new Promise((r) => setImmediate(r));
          const first = Buffer.from(input.Body as Uint8Array);
          mine.fill(0xff);
          await new Promise((r) => setTimeout(r, 2));
          sentBodies.push({ part: Number(input.PartNumber ?? 1), first, resent: Buffer.from(input.Body as Uint8Array) });
          return { ETag: '"e"' };
        })();
      });
      const blob = new S3Blob({ bucket: 'b', client, partSize: 5 * MiB });
      const setting = blob.set('k', mine);
      mine.fill(0);
      await setting;
      sentBodies.sort((a, b) => a.part - b.part);
      assert.equal(sentBodies.length, size > 8 * MiB ? 3 : 1);
      assert.ok(Buffer.concat(sentBodies.map((b) => b.first)).equals(original), `${size} bytes: the bytes sent are those passed to set`);
      assert.ok(Buffer.concat(sentBodies.map((b) => b.resent)).equals(original), `${size} bytes: a resend sends them again`);
      await blob.close();
    }
  });

  test('a key is accepted when its object name fits 1024 bytes; one that does not rejects naming the limit, before anything is sent', async () => {
    const { client, sent } = fakeClient((name) => (name === 'PutObject' ? {} : new Error(`unexpected ${name}`)));
    const prefix = 'p'.repeat(23);
    const blob = new S3Blob({ bucket: 'b', client, prefix });
    const room = 1024 - 24;
    const cap = maxKeyBytesFor(24);
    let longest = 'k';
    while (encodeKey(`${longest}k`).length <= room) longest += 'k';
    const path = Array.from({ length: 20 }, (_, i) => `dir-${String(i).padStart(2, '0')}-${'d'.repeat(37)}`).join('/') + '.bin';
    assert.equal(Buffer.byteLength(path), 903);
    for (const key of [longest, path, '/'.repeat(cap), keyOfBytes(cap)]) {
      await blob.set(key, Buffer.from('v'));
      assert.equal(sent.at(-1)?.[1].Key, `${prefix}/${encodeKey(key)}`);
      assert.ok(Buffer.byteLength(String(sent.at(-1)?.[1].Key)) <= 1024);
    }
    assert.ok(longest.length > 980, `an ASCII key of ${longest.length} bytes fits beside a 24-byte prefix`);
    sent.length = 0;
    for (const key of [`${longest}k`, '/'.repeat(cap + 1), keyOfBytes(cap + 1), `${path}${'/'.repeat(40)}`]) {
      for (const op of [() => blob.set(key, Buffer.from('v')), () => blob.get(key), () => blob.delete(key), () => blob.restore(key)]) {
        await assert.rejects(op(), (err: unknown) => {
          assert.ok(err instanceof ExternalError && err.determinate && err.code === ErrorCode.InvalidArgument, String(err));
          assert.match(err.message, /limit of 1024 bytes per object name/);
          assert.ok(err.message.includes(`up to ${cap} UTF-8 bytes`), err.message);
          return true;
        });
      }
    }
    await assert.rejects(blob.set('k'.repeat(1025), Buffer.from('v')), (err: unknown) => err instanceof ExternalError && err.code === ErrorCode.InvalidArgument && /limit of 1024/.test(err.message));
    const listed = [];
    for await (const m of blob.list('/'.repeat(400))) listed.push(m);
    assert.deepEqual(listed, [], 'a list prefix no name can start with lists nothing');
    assert.deepEqual(sent, [], 'nothing was sent for the refused keys');
    await blob.close();
  });
});

describe('S3Blob on s3rver', () => {
  let server: S3rverProcess;
  const env = { id: process.env.AWS_ACCESS_KEY_ID, secret: process.env.AWS_SECRET_ACCESS_KEY };
  const run = randomUUID();
  const opened: S3Blob[] = [];
  let raw: S3Client;

  const clientConfig = () => ({ endpoint: server.endpoint, region: 'us-east-1', forcePathStyle: true });
  const open = (options: Partial<S3BlobOptions> & { prefix: string }): S3Blob => {
    const blob = new S3Blob({ bucket: 'suite', clientConfig: clientConfig(), ...options });
    opened.push(blob);
    return blob;
  };
  const uploadDirs = (bucket: string): string[] => {
    const dir = join(server.directory, bucket, '._S3rver_uploads');
    return existsSync(dir) ? readdirSync(dir) : [];
  };
  const pendingUploads = async (bucket: string): Promise<number> =>
    ((await raw.send(new ListMultipartUploadsCommand({ Bucket: bucket }))).Uploads ?? []).length;

  before(async () => {
    process.env.AWS_ACCESS_KEY_ID = S3RVER_CREDENTIALS.accessKeyId;
    process.env.AWS_SECRET_ACCESS_KEY = S3RVER_CREDENTIALS.secretAccessKey;
    server = await S3rverProcess.start(['suite', 'faults']);
    raw = new S3Client(defaultClientConfig(clientConfig()));
  });

  after(async () => {
    await Promise.all(opened.map((b) => b.close()));
    raw?.destroy();
    await server?.stop();
    if (env.id === undefined) delete process.env.AWS_ACCESS_KEY_ID;
    else process.env.AWS_ACCESS_KEY_ID = env.id;
    if (env.secret === undefined) delete process.env.AWS_SECRET_ACCESS_KEY;
    else process.env.AWS_SECRET_ACCESS_KEY = env.secret;
  });

  test('passes the conformance suite with hostile keys and a 20 MiB value (multipart, parallel get)', async () => {
    const prefix = (path: string) => `${run}/${path}`;
    const maxKeyBytes = maxKeyBytesFor(Buffer.byteLength(`${prefix('path0')}/`));
    assert.equal(maxKeyBytes, maxKeyBytesFor(Buffer.byteLength(`${prefix('path1')}/`)));
    await blobImplTest(async (path) => open({ prefix: prefix(path) }), { maxKeyBytes, largeValueBytes: 20 * MiB });
  });

  test('a 20 MiB value is uploaded in parts and read back as parallel ranges, without leftovers', async () => {
    const blob = open({ prefix: `${run}/large`, partSize: 5 * MiB, concurrency: 3 });
    const value = pattern(20 * MiB + 3, 7);
    await blob.set('big', value);
    const got = await blob.get('big');
    assert.ok(got !== undefined);
    assert.equal(got.segments.length, 5, 'one segment per 5 MiB range');
    assert.ok(Buffer.from(got.toContiguous()).equals(value));
    assert.equal(await pendingUploads('suite'), 0, 'the completed upload left no parts');
    assert.equal(await blob.delete('big'), value.length);
  });

  test('objects are stored under the encoded name; foreign objects under the prefix are not listed', async () => {
    const blob = open({ prefix: `${run}/names` });
    await blob.set('a/../b.txt', Buffer.from('x'));
    for (const foreign of ['.foreign', 'sub/foreign.txt', 'a%2fb', 'a b']) await raw.send(new PutObjectCommand({ Bucket: 'suite', Key: `${run}/names/${foreign}`, Body: 'y' }));
    const names = (await raw.send(new ListObjectsV2Command({ Bucket: 'suite', Prefix: `${run}/names/` }))).Contents?.map((o) => o.Key);
    assert.deepEqual(names?.sort(), [`${run}/names/.foreign`, `${run}/names/a b`, `${run}/names/a%2F..%2Fb.txt`, `${run}/names/a%2fb`, `${run}/names/sub/foreign.txt`].sort());
    const listed = [];
    for await (const m of blob.list()) listed.push(m.key);
    assert.deepEqual(listed, ['a/../b.txt']);
  });

  test('long keys: a 900-byte ASCII path and a worst-case key at the cap work; a key whose name does not fit rejects naming the limit', async () => {
    const prefix = `${run}/cap`;
    const cap = maxKeyBytesFor(Buffer.byteLength(`${prefix}/`));
    const blob = open({ prefix });
    const path = Array.from({ length: 20 }, (_, i) => `dir-${String(i).padStart(2, '0')}-${'d'.repeat(37)}`).join('/') + '.bin';
    assert.equal(Buffer.byteLength(path), 903);
    for (const key of [path, '/'.repeat(cap), keyOfBytes(cap)]) {
      await blob.set(key, Buffer.from(`value of ${key.length}`));
      assert.equal(Buffer.from((await blob.get(key))!.toContiguous()).toString(), `value of ${key.length}`);
    }
    const listed = [];
    for await (const m of blob.list()) listed.push(m.key);
    assert.deepEqual(listed.sort(), [path, '/'.repeat(cap), keyOfBytes(cap)].sort());
    for (const key of ['/'.repeat(cap + 1), `${path}${'/'.repeat(60)}`]) {
      await assert.rejects(blob.set(key, Buffer.from('x')), (err: unknown) => {
        assert.ok(err instanceof ExternalError && err.determinate && err.code === ErrorCode.InvalidArgument);
        assert.match(err.message, /limit of 1024 bytes per object name/);
        assert.ok(err.message.includes(`up to ${cap} UTF-8 bytes`), err.message);
        return true;
      });
    }
    for (const key of listed) await blob.delete(key);
  });

  test('a location nested under a 200-character path component shares no objects with the outer one', async () => {
    for (const name of ['x'.repeat(200), 'data', '.hidden']) {
      const outerPrefix = `${run}/nest-${randomUUID().slice(0, 8)}`;
      const outer = open({ prefix: outerPrefix });
      const inner = open({ prefix: `${outerPrefix}/${name}` });
      await inner.set('k', Buffer.from('inner'));
      await inner.set('long/' + 'y'.repeat(230), Buffer.from('inner long'));
      const outerKeys = [];
      for await (const m of outer.list()) outerKeys.push(m.key);
      assert.deepEqual(outerKeys, [], `${name.slice(0, 10)}: the outer location lists none of the inner one's objects`);
      assert.equal(await outer.get(`${name}k`), undefined, `${name.slice(0, 10)}: the outer location does not read the inner k`);
      await outer.set(`${name}k`, Buffer.from('outer'));
      await outer.set(`${name}/k`, Buffer.from('outer'));
      assert.equal(Buffer.from((await inner.get('k'))!.toContiguous()).toString(), 'inner', `${name.slice(0, 10)}: the outer writes leave the inner k alone`);
      const innerKeys = [];
      for await (const m of inner.list()) innerKeys.push(m.key);
      assert.deepEqual(innerKeys.sort(), ['k', 'long/' + 'y'.repeat(230)], `${name.slice(0, 10)}: the inner location lists only its own keys`);
      assert.equal(await outer.delete(`${name}k`), 5);
      assert.equal(await outer.delete(`${name}/k`), 5);
      assert.equal(Buffer.from((await inner.get('k'))!.toContiguous()).toString(), 'inner');
    }
  });

  test('set stores the bytes passed, though the caller overwrites its array right after the call (one PUT, and parts)', async () => {
    const blob = open({ prefix: `${run}/mutate`, multipartThreshold: 5 * MiB, partSize: 5 * MiB, concurrency: 2 });
    for (const size of [1000, 12 * MiB]) {
      const original = pattern(size, 11);
      const mine = Buffer.from(original);
      const setting = blob.set(`k${size}`, mine);
      mine.fill(0);
      await setting;
      assert.ok(Buffer.from((await blob.get(`k${size}`))!.toContiguous()).equals(original), `${size} bytes: the stored value is the one passed`);
      await blob.delete(`k${size}`);
    }
  });

  test('list requests pages only as the loop consumes them', async () => {
    let pages = 0;
    const client = new S3Client(defaultClientConfig(clientConfig()));
    client.middlewareStack.add(
      (next, context) => async (args) => {
        if (context.commandName === 'ListObjectsV2Command') pages++;
        return next(args);
      },
      { step: 'initialize', name: 'countPages' },
    );
    const blob = open({ prefix: `${run}/pages`, client, listPageSize: 2 });
    try {
      for (let i = 0; i < 7; i++) await blob.set(`k${i}`, Buffer.from([i]));
      const all = [];
      for await (const m of blob.list('k')) all.push(m.key);
      assert.deepEqual(all.sort(), ['k0', 'k1', 'k2', 'k3', 'k4', 'k5', 'k6']);
      assert.equal(pages, 4, 'seven keys in pages of two');
      pages = 0;
      for await (const m of blob.list('k')) {
        assert.ok(m.key.startsWith('k'));
        break;
      }
      assert.equal(pages, 1, 'breaking after the first key requested no further page');
    } finally {
      client.destroy();
    }
  });

  test('opens by URI; unknown parameters and a missing bucket reject Determinate', async () => {
    const base = `s3://suite/${run}/uri?endpoint=${encodeURIComponent(server.endpoint)}&forcePathStyle=true&region=us-east-1`;
    const blob = await openBlob(`${base}&multipartThreshold=6291456&partSize=5242880&concurrency=2`);
    try {
      const value = pattern(7 * MiB, 3);
      await blob.set('via uri', value);
      assert.ok(Buffer.from((await blob.get('via uri'))!.toContiguous()).equals(value));
      assert.equal(await blob.delete('via uri'), value.length);
    } finally {
      await blob.close();
    }
    await assert.rejects(openBlob(`${base}&bogus=1`), (err: unknown) => {
      assert.ok(err instanceof ExternalError && err.determinate && err.code === ErrorCode.InvalidArgument);
      assert.match(err.message, /bogus/);
      assert.match(err.message, /endpoint, region, forcePathStyle/);
      return true;
    });
    await assert.rejects(openBlob(`${base}&partSize=1024`), { name: 'Determinate', code: ErrorCode.InvalidArgument });
    await assert.rejects(openBlob(`s3://no-such-bucket/x?endpoint=${encodeURIComponent(server.endpoint)}&forcePathStyle=true`), {
      name: 'Determinate',
      code: ErrorCode.NotFound,
    });
  });

  test('a missing bucket and refused credentials reject Determinate', async () => {
    const missing = new S3Blob({ bucket: 'no-such-bucket', clientConfig: clientConfig() });
    opened.push(missing);
    await assert.rejects(missing.set('k', Buffer.from('x')), { name: 'Determinate', code: ErrorCode.NotFound });
    await assert.rejects(missing.get('k'), { name: 'Determinate', code: ErrorCode.NotFound });
    await assert.rejects(missing.delete('k'), { name: 'Determinate', code: ErrorCode.NotFound });
    await assert.rejects(missing.restore('k'), { name: 'Determinate', code: ErrorCode.NotFound });
    const wrong = new S3Blob({ bucket: 'suite', clientConfig: { ...clientConfig(), credentials: { accessKeyId: 'WRONG', secretAccessKey: 'WRONG' } } });
    opened.push(wrong);
    await assert.rejects(wrong.set('k', Buffer.from('x')), { name: 'Determinate', code: ErrorCode.PermissionDenied });
  });

  test('a refused connection (nothing sent) rejects Determinate Unavailable', async () => {
    const port = await freePort();
    const blob = new S3Blob({ bucket: 'suite', clientConfig: { endpoint: `http://127.0.0.1:${port}`, region: 'us-east-1', forcePathStyle: true, maxAttempts: 2 } });
    opened.push(blob);
    await assert.rejects(blob.set('k', Buffer.from('x')), { name: 'Determinate', code: ErrorCode.Unavailable });
    await assert.rejects(blob.get('k'), { name: 'Determinate', code: ErrorCode.Unavailable });
  });

  test('aborting a multipart upload mid-way aborts it on the server: no parts, no object', async () => {
    const blob = open({ prefix: `${run}/abort`, partSize: 5 * MiB, concurrency: 2 });
    await blob.set('k', Buffer.from('old'));
    const controller = new AbortController();
    const setting = blob.set('k', pattern(40 * MiB, 1), { signal: controller.signal });
    setting.catch(() => undefined); // asserted below; keeps an early failure from counting as unhandled
    await until('a part to reach the server', () => uploadDirs('suite').some((id) => existsSync(join(server.directory, 'suite', '._S3rver_uploads', id, '1'))));
    controller.abort(new Error('caller gave up'));
    await assert.rejects(setting, (err: unknown) => {
      assert.ok(err instanceof ExternalError, String(err));
      assert.equal(err.code, ErrorCode.Cancelled);
      assert.equal(err.determinate, true, 'the upload was never completed, so nothing was written');
      return true;
    });
    assert.equal(await pendingUploads('suite'), 0, 'ListMultipartUploads is empty after the failed upload');
    assert.equal(Buffer.from((await blob.get('k'))!.toContiguous()).toString(), 'old', 'the old value is intact');
    const keys = [];
    for await (const m of blob.list()) keys.push(m);
    assert.deepEqual(keys, [{ key: 'k', sizeInBytes: 3 }]);
  });

  test('an aborted large get rejects with Cancelled', async () => {
    const blob = open({ prefix: `${run}/abort-get`, partSize: 5 * MiB, concurrency: 2 });
    await blob.set('big', pattern(30 * MiB, 2));
    const controller = new AbortController();
    const reading = blob.get('big', { signal: controller.signal });
    setImmediate(() => controller.abort(new Error('enough')));
    await assert.rejects(reading, { code: ErrorCode.Cancelled });
  });

  test('server killed while a single PUT is being received: Indeterminate (the request was sent)', async () => {
    const prefix = `${run}-put`;
    const blob = new S3Blob({ bucket: 'faults', clientConfig: { ...clientConfig(), maxAttempts: 2 }, prefix, multipartThreshold: 64 * MiB });
    opened.push(blob);
    const file = join(server.directory, 'faults', prefix, 'big._S3rver_object');
    // Handled from the start: the set may fail while the kill is still being awaited.
    const outcome = blob.set('big', pattern(48 * MiB, 4)).then(
      () => new Error('the set succeeded although the server was killed'),
      (e: unknown) => e,
    );
    await until('the object to be partly written', () => existsSync(file) && statSync(file).size > 0);
    await server.kill();
    try {
      const err = await outcome;
      assert.ok(err instanceof ExternalError, String(err));
      assert.equal(err.determinate, false, err.message);
      assert.equal(err.code, ErrorCode.Unavailable, err.message);
    } finally {
      await server.restart();
    }
  });

  /**
   * Kills the server at `when` during a 20 MiB multipart set of a key holding
   * `old`, restarts it, and checks the outcome: Determinate only if the old
   * value is intact, and after an Indeterminate one either value, whole.
   */
  const killDuringMultipart = async (name: string, when: (chunk: Buffer, forwarded: number) => boolean): Promise<ExternalError> => {
    const proxy = await tripwireProxy(server.port);
    try {
      const prefix = `${run}-kill-${name}`;
      const blob = new S3Blob({
        bucket: 'faults',
        clientConfig: { endpoint: `http://127.0.0.1:${proxy.port}`, region: 'us-east-1', forcePathStyle: true, maxAttempts: 2 },
        prefix,
        partSize: 5 * MiB,
        concurrency: 2,
      });
      opened.push(blob);
      await blob.set('k', Buffer.from('old'));
      const value = pattern(20 * MiB, 11);
      proxy.arm('request', when, () => server.kill());
      const err = await blob.set('k', value).then(
        () => new Error(`the set succeeded although the server was killed (${name})`),
        (e: unknown) => e,
      );
      await proxy.fired();
      await server.restart();
      assert.ok(err instanceof ExternalError, String(err));
      const after = await blob.get('k');
      assert.ok(after !== undefined, `${name}: the key vanished`);
      const got = Buffer.from(after.toContiguous());
      if (err.determinate) {
        assert.equal(got.toString(), 'old', `${name}: a Determinate failure left the old value (${err.message})`);
        assert.match(err.message, /nothing was written/);
      } else {
        assert.ok(got.toString() === 'old' || got.equals(value), `${name}: after an Indeterminate failure, the old or the whole new value`);
      }
      await blob.set('k', value);
      assert.ok(Buffer.from((await blob.get('k'))!.toContiguous()).equals(value), `${name}: a set after the restart works`);
      return err;
    } finally {
      await proxy.close();
    }
  };

  test('server killed at points spread over a multipart upload: Determinate only when nothing can be visible', async () => {
    // Early in the first parts, and late in the last ones (the upload sends about 20 MiB).
    for (const [name, bytes] of [['early', 2 * MiB], ['late', 19.5 * MiB]] as const) {
      const err = await killDuringMultipart(name, (_chunk, forwarded) => forwarded >= bytes);
      assert.equal(err.determinate, true, `${name}: killed while parts were uploading, before the completion was sent: ${err.message}`);
    }
  });

  test('server killed as CompleteMultipartUpload is sent: Indeterminate; afterwards the old or the whole new value', async () => {
    const completing = (chunk: Buffer): boolean => /^POST [^ ]*[?&]uploadId=/.test(chunk.toString('latin1', 0, Math.min(chunk.length, 2048)));
    const err = await killDuringMultipart('commit', completing);
    assert.equal(err.determinate, false, `the completion was being sent: ${err.message}`);
  });

  test('server killed during a large upload: the set fails, no partial object; after a restart all works', async () => {
    const blob = new S3Blob({ bucket: 'faults', clientConfig: { ...clientConfig(), maxAttempts: 2 }, prefix: run, partSize: 5 * MiB, concurrency: 2 });
    opened.push(blob);
    const value = pattern(40 * MiB, 9);
    const outcome = blob.set('big', value).then(
      () => new Error('the set succeeded although the server was killed'),
      (e: unknown) => e,
    );
    await until('a part to reach the server', () => uploadDirs('faults').some((id) => existsSync(join(server.directory, 'faults', '._S3rver_uploads', id, '1'))));
    await server.kill();
    try {
      const err = await outcome;
      assert.ok(err instanceof ExternalError, String(err));
      // The kill came before CompleteMultipartUpload could be sent: provably nothing written.
      assert.equal(err.determinate, true, err.message);
      assert.equal(err.code, ErrorCode.Unavailable, err.message);
      assert.match(err.message, /nothing was written/);
    } finally {
      await server.restart();
    }
    assert.equal(await blob.get('big'), undefined, 'no partial object is visible');
    const listed = [];
    for await (const m of blob.list()) listed.push(m);
    assert.deepEqual(listed, []);
    await blob.set('big', value);
    assert.ok(Buffer.from((await blob.get('big'))!.toContiguous()).equals(value), 'a retried set works after the restart');
    assert.equal(await blob.delete('big'), value.length);
    await blob.set('small', Buffer.from('ok'));
    assert.equal(Buffer.from((await blob.get('small'))!.toContiguous()).toString(), 'ok');
  });
});

describe('S3Blob on s3rver: concurrent overwrites and lost connections', () => {
  let server: S3rverProcess;
  let proxy: TripwireProxy;
  let raw: S3Client;
  let blob: S3Blob;
  const env = { id: process.env.AWS_ACCESS_KEY_ID, secret: process.env.AWS_SECRET_ACCESS_KEY };

  before(async () => {
    process.env.AWS_ACCESS_KEY_ID = S3RVER_CREDENTIALS.accessKeyId;
    process.env.AWS_SECRET_ACCESS_KEY = S3RVER_CREDENTIALS.secretAccessKey;
    // Atomic: plain s3rver tears values itself (see test/servers/s3rver.ts).
    server = await S3rverProcess.start(['history'], { atomic: true });
    proxy = await tripwireProxy(server.port);
    raw = new S3Client(defaultClientConfig({ endpoint: server.endpoint, region: 'us-east-1', forcePathStyle: true }));
    blob = new S3Blob({
      bucket: 'history',
      prefix: randomUUID(),
      clientConfig: { endpoint: `http://127.0.0.1:${proxy.port}`, region: 'us-east-1', forcePathStyle: true },
      // 2 MiB values go up as one-part uploads; 6 MiB ones in two parts and come back as two ranges.
      multipartThreshold: 1 * MiB,
      partSize: 5 * MiB,
      concurrency: 3,
    });
  });
  after(async () => {
    await blob?.close();
    raw?.destroy();
    await proxy?.close();
    await server?.stop();
    if (env.id === undefined) delete process.env.AWS_ACCESS_KEY_ID;
    else process.env.AWS_ACCESS_KEY_ID = env.id;
    if (env.secret === undefined) delete process.env.AWS_SECRET_ACCESS_KEY;
    else process.env.AWS_SECRET_ACCESS_KEY = env.secret;
  });

  test('every get is one whole written value, Determinate sets never show, no orphaned uploads; all works after the faults', async () => {
    const shape = { keys: 3, writers: 3, readers: 3, setsPerWriter: 4, sizes: [64 * 1024, 2 * MiB, 6 * MiB] };
    // Without faults: nothing fails, nothing is torn (a get racing an overwrite starts over).
    const h = await runHistory(blob, undefined, shape);
    assert.deepEqual([...h.errors.set, ...h.errors.get, ...h.errors.list].map((e) => e.message), [], 'no operation fails without faults');
    assert.deepEqual(historyViolations(h), []);

    proxy.chaos(0.03);
    await runHistory(blob, h, { ...shape, setsPerWriter: 6 });
    proxy.chaos(0);
    assert.ok(proxy.cuts > 0, 'the proxy cut connections');
    assert.deepEqual(historyViolations(h), []);

    // After the faults: each key holds a value its history allows, and everything works.
    await checkFinalValues(blob, h);
    // Every failed upload whose abort could reach the server was aborted: only those
    // the message says could not be aborted (or never got an UploadId back) remain
    // with parts. Uploads without parts may remain too: a CreateMultipartUpload whose
    // answer was lost and which the SDK retried created one that no UploadId names
    // (see src/s3/index.ts).
    const excused = h.errors.set.filter((e) => /aborting upload .* failed too|may have created/.test(e.message)).length;
    const pending = (await raw.send(new ListMultipartUploadsCommand({ Bucket: 'history' }))).Uploads ?? [];
    const uploads = join(server.directory, 'history', '._S3rver_uploads');
    const withParts = pending.filter((u) => readdirSync(join(uploads, u.UploadId!)).some((f) => /^\d+$/.test(f)));
    assert.ok(withParts.length <= excused, `${withParts.length} multipart uploads with parts left, ${excused} excused: ${h.errors.set.map((e) => e.message).join('\n')}`);
    for (const key of h.keys) {
      await blob.set(key, historyValue(1_000_000, 6 * MiB));
      assert.ok(Buffer.from((await blob.get(key))!.toContiguous()).equals(historyValue(1_000_000, 6 * MiB)));
    }
    const listed = [];
    for await (const m of blob.list('key/')) listed.push(m);
    assert.deepEqual(listed, h.keys.map((key) => ({ key, sizeInBytes: 6 * MiB })));
  });
});
