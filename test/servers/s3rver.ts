/**
 * Runs s3rver (a fake S3 on the local filesystem) in a child process on a free
 * loopback port, so that a test can SIGKILL it mid-request and restart it on the
 * same port and directory.
 *
 * The child is this same file, started with `--serve PORT DIR BUCKET...`.
 *
 * Known limits of s3rver 3.7 that the tests work around or avoid:
 * - it encrypts ListObjectsV2 continuation tokens with DES, which OpenSSL 3 only
 *   has in its legacy provider: the child runs with `--openssl-legacy-provider`;
 * - it lacks AbortMultipartUpload and ListMultipartUploads: {@link multipartShim}
 *   adds them;
 * - it ignores If-Match on GET and writes a PUT in place (a reader can see a torn
 *   value, and a PUT cut mid-body leaves a truncated object): started with
 *   `{ atomic: true }`, {@link atomicStore} makes every object write all-or-nothing
 *   and serializes it with the reads of that key, as S3 behaves, so that tests of
 *   S3Blob under overwrites and lost connections see S3Blob's faults, not s3rver's;
 * - it ignores the conditional-write headers of PutObject and CompleteMultipartUpload
 *   (as does every S3 emulator installable from npm or Debian): in atomic mode,
 *   {@link conditionalWrites} applies them as AWS documents them (see there);
 * - it lists by walking directories, so when names have `/` (S3Blob cuts encoded
 *   keys longer than 200 characters into chunks) pages are not in key order and
 *   a listing of more than one page can miss such keys. The tests list fewer keys
 *   than a page, or short keys only.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { AsyncLocalStorage } from 'node:async_hooks';
import { createHash, randomUUID } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { adopt, stopChild } from './child.js';
import { freePort, lastLines } from './ports.js';
import type { CertPair } from './tls.js';

/** The credentials s3rver accepts. */
export const S3RVER_CREDENTIALS = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' } as const;

/** A running s3rver child process. */
export class S3rverProcess {
  #child: ChildProcess | undefined;
  #removeDir: boolean;

  private constructor(
    readonly port: number,
    readonly directory: string,
    readonly buckets: readonly string[],
    removeDir: boolean,
    readonly atomic: boolean,
    /** The certificate and key it serves https with, if any. */
    readonly tls: CertPair | undefined,
  ) {
    this.#removeDir = removeDir;
  }

  /** `http://127.0.0.1:PORT`, or `https://` when started with `tls`. */
  get endpoint(): string {
    return `${this.tls === undefined ? 'http' : 'https'}://127.0.0.1:${this.port}`;
  }

  /**
   * Starts s3rver with the given buckets in a fresh temporary directory; with
   * `atomic`, object writes are all-or-nothing and isolated from reads (see the
   * module comment); with `tls`, it serves https only, with that certificate and key.
   */
  static async start(buckets: readonly string[], options: { atomic?: boolean; tls?: CertPair } = {}): Promise<S3rverProcess> {
    const directory = await mkdtemp(join(tmpdir(), 'persist-s3rver-'));
    const server = new S3rverProcess(await freePort(), directory, buckets, true, options.atomic === true, options.tls);
    try {
      await server.restart();
    } catch (err) {
      await server.stop();
      throw err;
    }
    return server;
  }

  /** (Re)starts the child on the same port and directory; resolves once it listens. */
  async restart(): Promise<void> {
    if (this.#child !== undefined) throw new Error('s3rver is already running');
    // s3rver encrypts ListObjectsV2 continuation tokens with DES, which OpenSSL 3 keeps in its legacy provider.
    const child = adopt(
      spawn(process.execPath, ['--openssl-legacy-provider', fileURLToPath(import.meta.url), '--serve', this.atomic ? 'atomic' : 'plain', String(this.port), this.directory, ...this.buckets], {
        stdio: ['pipe', 'pipe', 'pipe'],
        env: this.tls === undefined ? process.env : { ...process.env, S3RVER_TLS_CERT: this.tls.cert, S3RVER_TLS_KEY: this.tls.key },
      }),
    );
    this.#child = child;
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-20_000)));
    child.on('error', (err) => (stderr += `could not run s3rver: ${err.message}\n`));
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`s3rver on port ${this.port} did not start in 30 s\n--- last output ---\n${lastLines(stderr)}`)), 30_000);
      let out = '';
      child.stdout!.on('data', (d: Buffer) => {
        out += d.toString();
        if (out.includes('READY')) {
          clearTimeout(timer);
          resolve();
        }
      });
      child.once('close', (code, signal) => {
        clearTimeout(timer);
        reject(new Error(`s3rver exited during startup (code ${code}, signal ${signal})\n--- last output ---\n${lastLines(stderr)}`));
      });
    }).catch(async (err: unknown) => {
      await this.kill();
      throw err;
    });
  }

  /** SIGKILLs the child (no clean shutdown) and waits for it to exit. */
  async kill(): Promise<void> {
    const child = this.#child;
    this.#child = undefined;
    if (child !== undefined) await stopChild(child, `s3rver on port ${this.port}`);
  }

  /** Kills the child and removes its directory. Safe to call more than once. */
  async stop(): Promise<void> {
    await this.kill();
    if (this.#removeDir) {
      this.#removeDir = false;
      await rm(this.directory, { recursive: true, force: true });
    }
  }
}

interface KoaContext {
  method: string;
  path: string;
  headers: Record<string, string | string[] | undefined>;
  query: Record<string, string | string[] | undefined>;
  status: number;
  body: unknown;
  type: string;
}
type KoaMiddleware = (ctx: KoaContext, next: () => Promise<void>) => Promise<void>;
interface S3rverInstance {
  store: unknown;
  middleware: KoaMiddleware[];
  run(): Promise<unknown>;
}
type S3rverConstructor = new (options: Record<string, unknown>) => S3rverInstance;

const xmlEscape = (s: string): string => s.replace(/[<>&'"\r]/g, (c) => `&#${c.charCodeAt(0)};`);

/**
 * s3rver 3.7 has no AbortMultipartUpload and no ListMultipartUploads. This adds
 * both, over its own layout (`BUCKET/._S3rver_uploads/UPLOAD_ID/` holding the
 * target `key`, `metadata` and the parts), answering the way S3 does, so tests can
 * check that a failed upload leaves no parts behind. No signature check: test only.
 */
function multipartShim(directory: string): KoaMiddleware {
  return async (ctx, next) => {
    const [, bucket, ...rest] = ctx.path.split('/');
    if (bucket === undefined || bucket === '') return next();
    const uploads = join(directory, bucket, '._S3rver_uploads');
    const uploadId = ctx.query.uploadId;
    const onObject = rest.join('/') !== '';
    if (ctx.method === 'DELETE' && onObject && typeof uploadId === 'string') {
      const dir = join(uploads, uploadId.replace(/[^0-9a-f]/g, ''));
      if (!existsSync(dir)) {
        ctx.status = 404;
        ctx.type = 'application/xml';
        ctx.body = `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>NoSuchUpload</Code><Message>The specified upload does not exist.</Message><UploadId>${xmlEscape(uploadId)}</UploadId></Error>`;
        return;
      }
      await rm(dir, { recursive: true, force: true });
      ctx.status = 204;
      return;
    }
    if (ctx.method === 'GET' && !onObject && 'uploads' in ctx.query) {
      const ids = existsSync(uploads) ? await readdir(uploads) : [];
      // A directory without `key` is no upload: s3rver recreates the directory of an
      // aborted upload when a part of it was still arriving.
      const entries = await Promise.all(
        ids.map(async (id) => {
          const key = await readFile(join(uploads, id, 'key'), 'utf8').catch(() => undefined);
          return key === undefined ? '' : `<Upload><Key>${xmlEscape(key)}</Key><UploadId>${id}</UploadId></Upload>`;
        }),
      );
      ctx.status = 200;
      ctx.type = 'application/xml';
      ctx.body =
        `<?xml version="1.0" encoding="UTF-8"?>\n<ListMultipartUploadsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">` +
        `<Bucket>${xmlEscape(bucket)}</Bucket><IsTruncated>false</IsTruncated>${entries.join('')}</ListMultipartUploadsResult>`;
      return;
    }
    return next();
  };
}

interface StoredObject {
  bucket: string;
  key: string;
  content: unknown;
  metadata: Record<string, unknown>;
}
interface FilesystemStore {
  getResourcePath(bucket: string, key: string, resource: string): string;
  getMetadata(bucket: string, key: string): Promise<unknown>;
  putMetadata(bucket: string, key: string, metadata: Record<string, unknown>, md5: string): Promise<void>;
  existsObject(bucket: string, key: string): Promise<boolean>;
  deleteObject(bucket: string, key: string): Promise<unknown>;
  getObject(bucket: string, key: string, options: unknown): Promise<{ content?: NodeJS.ReadableStream | null } | null>;
  putObject(object: StoredObject): Promise<{ size: number; md5: string }>;
  putObjectMultipart(bucket: string, uploadId: string, parts: unknown): Promise<unknown>;
  putPart(bucket: string, uploadId: string, partNumber: unknown, content: unknown): Promise<unknown>;
}

/** The precondition of one conditional write, from its request headers. */
interface WriteCondition {
  /** `If-None-Match: *`: the key must have no object. */
  readonly absent: boolean;
  /** `If-Match: ETAG`: the key's object must have this ETag (quotes ignored). */
  readonly etag: string | undefined;
}
const writeConditions = new AsyncLocalStorage<WriteCondition>();

type S3ErrorConstructor = new (code: string, message: string, detail?: Record<string, string>) => Error & { status: number; expose: boolean; headers: Record<string, string> };

/** An S3 error response `code` with `status` (s3rver's own error type, so it renders as S3 does). */
function s3Error(code: string, status: number, message: string): Error {
  const S3Error = createRequire(import.meta.url)('s3rver/lib/models/error') as S3ErrorConstructor;
  return Object.assign(new S3Error(code, message), { status, expose: true });
}

/**
 * Conditional writes, as the S3 user guide and API reference describe them for
 * PutObject and CompleteMultipartUpload:
 * - `If-None-Match: *` writes only if the key has no object, else 412
 *   PreconditionFailed; any other If-None-Match value is refused with 501
 *   NotImplemented (S3 accepts only `*` on writes);
 * - `If-Match: ETAG` writes only if the key's object has that ETag, else 412
 *   PreconditionFailed, and 404 NoSuchKey when the key has no object;
 * - a conditional write to a key while another conditional write to it is in
 *   progress gets 409 ConditionalRequestConflict (S3 answers so "if a conflicting
 *   operation occurs during the upload"; callers retry).
 * The check and the write happen under the object's lock of {@link atomicStore},
 * so they are one atomic step. A failed CompleteMultipartUpload leaves the upload
 * in place. This middleware only reads the headers; {@link atomicStore} decides.
 */
function conditionalWrites(): KoaMiddleware {
  return async (ctx, next) => {
    const isPut = ctx.method === 'PUT' && ctx.query.partNumber === undefined && ctx.headers['x-amz-copy-source'] === undefined;
    const isComplete = ctx.method === 'POST' && typeof ctx.query.uploadId === 'string';
    const noneMatch = ctx.headers['if-none-match'];
    const match = ctx.headers['if-match'];
    if (!(isPut || isComplete) || (noneMatch === undefined && match === undefined)) return next();
    if (noneMatch !== undefined && noneMatch !== '*') {
      // Answered here: this runs before s3rver's own error rendering.
      ctx.status = 501;
      ctx.type = 'application/xml';
      ctx.body = `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>NotImplemented</Code><Message>A header you provided implies functionality that is not implemented: If-None-Match accepts only * on writes</Message></Error>`;
      return;
    }
    const condition: WriteCondition = { absent: noneMatch === '*', etag: typeof match === 'string' ? match.replace(/"/g, '') : undefined };
    return writeConditions.run(condition, next);
  };
}

/**
 * Makes s3rver's object writes atomic, the way S3's are: a PUT's body is received
 * whole before anything is written (a cut request changes nothing), the object is
 * written to a temporary file and renamed into place, and one lock per object
 * orders every write (PUT, CompleteMultipartUpload, DELETE) with every read
 * (GET until its body has been sent, HEAD, the metadata a listing reads), so a
 * reader sees the old or the new object, never a mix.
 */
function atomicStore(store: FilesystemStore): void {
  const held = new AsyncLocalStorage<string>();
  const tails = new Map<string, Promise<void>>();
  const acquire = async (id: string): Promise<() => void> => {
    const previous = tails.get(id) ?? Promise.resolve();
    let release!: () => void;
    const mine = new Promise<void>((resolve) => (release = resolve));
    const tail = previous.then(() => mine);
    tails.set(id, tail);
    void tail.then(() => {
      if (tails.get(id) === tail) tails.delete(id);
    });
    await previous;
    return release;
  };
  // The store calls its own methods (getObject → getMetadata, CompleteMultipartUpload
  // → putObject): a call made while holding the object's lock does not take it again.
  const locked = async <T>(bucket: string, key: string, run: () => Promise<T>): Promise<T> => {
    const id = `${bucket}/${key}`;
    if (held.getStore() === id) return run();
    const release = await acquire(id);
    try {
      return await held.run(id, run);
    } finally {
      release();
    }
  };
  // Keys with a conditional write in progress (from its body's arrival to its end).
  const conditional = new Set<string>();
  const claimed = new AsyncLocalStorage<string>();
  const asConditional = async <T>(bucket: string, key: string, run: () => Promise<T>): Promise<T> => {
    const id = `${bucket}/${key}`;
    if (writeConditions.getStore() === undefined || claimed.getStore() === id) return run();
    if (conditional.has(id)) throw s3Error('ConditionalRequestConflict', 409, 'A conflicting conditional operation is currently in progress against this resource. Please try again.');
    conditional.add(id);
    try {
      return await claimed.run(id, run);
    } finally {
      conditional.delete(id);
    }
  };
  // Called holding the object's lock.
  const checkCondition = async (bucket: string, key: string): Promise<void> => {
    const condition = writeConditions.getStore();
    if (condition === undefined) return;
    const exists = await original.existsObject(bucket, key);
    if (condition.absent && exists) throw s3Error('PreconditionFailed', 412, 'At least one of the pre-conditions you specified did not hold');
    if (condition.etag !== undefined) {
      if (!exists) throw s3Error('NoSuchKey', 404, 'The specified key does not exist.');
      const { etag } = (await original.getMetadata(bucket, key)) as { etag: string };
      if (etag.replace(/"/g, '') !== condition.etag) throw s3Error('PreconditionFailed', 412, 'At least one of the pre-conditions you specified did not hold');
    }
  };
  const original = {
    getMetadata: store.getMetadata.bind(store),
    existsObject: store.existsObject.bind(store),
    deleteObject: store.deleteObject.bind(store),
    getObject: store.getObject.bind(store),
    putObjectMultipart: store.putObjectMultipart.bind(store),
    putPart: store.putPart.bind(store),
  };
  store.getMetadata = (bucket, key) => locked(bucket, key, () => original.getMetadata(bucket, key));
  store.existsObject = (bucket, key) => locked(bucket, key, () => original.existsObject(bucket, key));
  store.deleteObject = (bucket, key) => locked(bucket, key, () => original.deleteObject(bucket, key));
  store.getObject = async (bucket, key, options) => {
    const id = `${bucket}/${key}`;
    const release = await acquire(id);
    try {
      const object = await held.run(id, () => original.getObject(bucket, key, options));
      const content = object?.content;
      // Held until the body has been sent or the connection dropped (koa destroys the stream).
      if (content) content.once('close', release);
      else release();
      return object;
    } catch (err) {
      release();
      throw err;
    }
  };
  store.putObject = async (object) => {
    const chunks: Buffer[] = [];
    if (Buffer.isBuffer(object.content)) chunks.push(object.content);
    else for await (const chunk of object.content as AsyncIterable<Buffer>) chunks.push(chunk);
    const content = Buffer.concat(chunks);
    // A request body that ended early (the connection was cut) must write nothing.
    const declared = (object.content as { headers?: Record<string, unknown> }).headers?.['content-length'];
    if (declared !== undefined && Number(declared) !== content.length) throw new Error(`the body has ${content.length} of ${String(declared)} bytes`);
    const md5 = createHash('md5').update(content).digest('hex');
    return asConditional(object.bucket, object.key, () => locked(object.bucket, object.key, async () => {
      await checkCondition(object.bucket, object.key);
      const path = store.getResourcePath(object.bucket, object.key, 'object');
      await mkdir(dirname(path), { recursive: true });
      const temporary = `${path}.${randomUUID()}.tmp`;
      await writeFile(temporary, content);
      await rename(temporary, path);
      await store.putMetadata(object.bucket, object.key, object.metadata, md5);
      return { size: content.length, md5 };
    }));
  };
  // S3 refuses parts of an upload that does not exist (or was aborted); s3rver would
  // recreate its directory.
  store.putPart = async (bucket, uploadId, partNumber, content) => {
    if (!existsSync(join(store.getResourcePath(bucket, '', 'uploads'), uploadId, 'key'))) throw new Error(`no upload ${uploadId}`);
    return original.putPart(bucket, uploadId, partNumber, content);
  };
  store.putObjectMultipart = async (bucket, uploadId, parts) => {
    const key = await readFile(join(store.getResourcePath(bucket, '', 'uploads'), uploadId, 'key'), 'utf8');
    // Checked before the parts are assembled too, so a failed condition leaves the upload in place.
    return asConditional(bucket, key, () => locked(bucket, key, async () => {
      await checkCondition(bucket, key);
      return original.putObjectMultipart(bucket, uploadId, parts);
    }));
  };
}

async function serve(atomic: boolean, port: number, directory: string, buckets: string[]): Promise<void> {
  const S3rver = createRequire(import.meta.url)('s3rver') as S3rverConstructor;
  const { S3RVER_TLS_CERT: cert, S3RVER_TLS_KEY: key } = process.env;
  const server = new S3rver({
    ...(cert !== undefined && key !== undefined && { cert: await readFile(cert), key: await readFile(key) }),
    port,
    address: '127.0.0.1',
    directory,
    silent: true,
    configureBuckets: buckets.map((name) => ({ name, configs: [] })),
  });
  server.middleware.unshift(multipartShim(directory));
  if (atomic) {
    atomicStore((server as unknown as { store: FilesystemStore }).store);
    server.middleware.unshift(conditionalWrites());
  }
  await server.run();
  process.stdout.write('READY\n');
  // The parent holds our stdin open; when it dies, so do we (no orphaned servers).
  process.stdin.on('close', () => process.exit(0));
  process.stdin.resume();
}

if (process.argv[1] === fileURLToPath(import.meta.url) && process.argv[2] === '--serve') {
  const [mode, port, directory, ...buckets] = process.argv.slice(3);
  serve(mode === 'atomic', Number(port), directory!, buckets).catch((err: unknown) => {
    console.error(err);
    process.exit(1);
  });
}
