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
  ) {
    this.#removeDir = removeDir;
  }

  /** `http://127.0.0.1:PORT`. */
  get endpoint(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /**
   * Starts s3rver with the given buckets in a fresh temporary directory; with
   * `atomic`, object writes are all-or-nothing and isolated from reads (see the
   * module comment).
   */
  static async start(buckets: readonly string[], options: { atomic?: boolean } = {}): Promise<S3rverProcess> {
    const directory = await mkdtemp(join(tmpdir(), 'persist-s3rver-'));
    const server = new S3rverProcess(await freePort(), directory, buckets, true, options.atomic === true);
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
    return locked(object.bucket, object.key, async () => {
      const path = store.getResourcePath(object.bucket, object.key, 'object');
      await mkdir(dirname(path), { recursive: true });
      const temporary = `${path}.${randomUUID()}.tmp`;
      await writeFile(temporary, content);
      await rename(temporary, path);
      await store.putMetadata(object.bucket, object.key, object.metadata, md5);
      return { size: content.length, md5 };
    });
  };
  // S3 refuses parts of an upload that does not exist (or was aborted); s3rver would
  // recreate its directory.
  store.putPart = async (bucket, uploadId, partNumber, content) => {
    if (!existsSync(join(store.getResourcePath(bucket, '', 'uploads'), uploadId, 'key'))) throw new Error(`no upload ${uploadId}`);
    return original.putPart(bucket, uploadId, partNumber, content);
  };
  store.putObjectMultipart = async (bucket, uploadId, parts) => {
    const key = await readFile(join(store.getResourcePath(bucket, '', 'uploads'), uploadId, 'key'), 'utf8');
    return locked(bucket, key, () => original.putObjectMultipart(bucket, uploadId, parts));
  };
}

async function serve(atomic: boolean, port: number, directory: string, buckets: string[]): Promise<void> {
  const S3rver = createRequire(import.meta.url)('s3rver') as S3rverConstructor;
  const server = new S3rver({
    port,
    address: '127.0.0.1',
    directory,
    silent: true,
    configureBuckets: buckets.map((name) => ({ name, configs: [] })),
  });
  server.middleware.unshift(multipartShim(directory));
  if (atomic) atomicStore((server as unknown as { store: FilesystemStore }).store);
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
