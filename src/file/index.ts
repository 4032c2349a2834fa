/**
 * `persist-location/file`: FileBlob, the embedded Blob backend, one file per value
 * under a root directory on the local file system.
 *
 * Each concern has its file in src/file/, which says how it works:
 *
 * | file          | what                                                                 |
 * |---------------|----------------------------------------------------------------------|
 * | `layout.ts`   | the names on disk: `foo/Bar/k0` is `<root>/dfoo/d%42ar/vk0`          |
 * | `roots.ts`    | the root marker `.pl-root`; no location inside another one           |
 * | `tree.ts`     | walking directories safely (symbolic links, foreign roots); durable directories |
 * | `read.ts`     | get                                                                  |
 * | `write.ts`    | set: temporary file written O_DSYNC, rename, directory fsync         |
 * | `delete.ts`   | delete and restore, and the protocol that keeps them consistent      |
 * | `list.ts`     | list                                                                 |
 * | `sweep.ts`    | removing stale temporary files                                       |
 * | `errors.ts`   | errno to ExternalError                                               |
 * | `config.ts`   | options and `file:` URIs                                             |
 *
 * Several processes may share one root; a key can never name anything outside it.
 * The root must not be writable by anyone untrusted.
 *
 * Key length: a 1024-byte key needs up to about 3100 characters of path below the
 * root (escaping triples non-ASCII and upper-case bytes), so with a root path longer
 * than about 900 characters the longest keys reject Determinate InvalidArgument
 * (ENAMETOOLONG) rather than being stored.
 */
import { resolve } from 'node:path';
import { BlobBase } from '../base.js';
import type { BlobMetadata } from '../blob.js';
import { asBuffer, copyBytes } from '../bytes.js';
import type { OpOptions } from '../consensus.js';
import { invalidArgument } from '../errors.js';
import type { SegmentedBytes } from '../segmented-bytes.js';
import type { LocationUri } from '../uri.js';
import { fileUriOptions, type FileBlobOptions } from './config.js';
import { deleteValue, restoreValue, type DeleteContext } from './delete.js';
import { fsError } from './errors.js';
import { keyPath } from './layout.js';
import { listValues } from './list.js';
import { readValue } from './read.js';
import { findRoot, markRoot, openRoot } from './roots.js';
import { DEFAULT_STALE_TEMP_MS, sweep, type SweepReport } from './sweep.js';
import { Tree } from './tree.js';
import { writeValue } from './write.js';

/** Blob in a local directory; see the module comment for where each part of it is described. */
export class FileBlob extends BlobBase {
  readonly description: string;
  /** The root directory (absolute, symbolic links resolved). */
  readonly root: string;
  readonly #tree: Tree;
  readonly #keepDeleted: boolean;
  readonly #staleTempMs: number;
  readonly #stop = new AbortController();
  #sweeping: Promise<SweepReport> | undefined;
  /** Whether the root holds its marker (false only for an unmarked root opened with writeOnOpen: false). */
  #marked: boolean;

  /**
   * Opens the location rooted at `root`, creating it if missing (durably: new
   * directories are fsynced into their parents) and marking it, unless
   * `writeOnOpen` is false. Throws Determinate FailedPrecondition if `root` lies
   * inside another location's root.
   */
  constructor(root: string, options: FileBlobOptions = {}) {
    super();
    const wanted = resolve(root);
    const writeOnOpen = options.writeOnOpen ?? true;
    if (options.sweepOnOpen === true && !writeOnOpen) {
      throw invalidArgument(`FileBlob(${wanted}): sweepOnOpen: true contradicts writeOnOpen: false (a sweep removes files)`);
    }
    this.#keepDeleted = options.keepDeleted ?? false;
    this.#staleTempMs = options.staleTempMs ?? DEFAULT_STALE_TEMP_MS;
    try {
      const opened = writeOnOpen ? openRoot(wanted) : findRoot(wanted);
      this.root = opened.root;
      this.#marked = opened.marked;
    } catch (err) {
      throw fsError(err, { description: `FileBlob(${wanted})`, action: 'open', committed: false });
    }
    this.description = `FileBlob(${this.root})`;
    this.#tree = new Tree(this.root, this.description);
    if (options.sweepOnOpen ?? writeOnOpen) {
      this.#sweeping = sweep(this.#tree, this.#staleTempMs, this.#stop.signal);
      this.#sweeping.catch(() => {}); // best effort: a failed sweep leaves work for the next one
    }
  }

  /**
   * Removes stale temporary files, and the directories that removing them left
   * empty, now (a handle also does this in the background when it opens). Resolves
   * with what was removed.
   */
  async sweep(): Promise<SweepReport> {
    if (this.closed) throw new Error(`${this.description} is closed`);
    await this.#sweeping?.catch(() => {});
    this.#sweeping = sweep(this.#tree, this.#staleTempMs, this.#stop.signal);
    return this.#sweeping;
  }

  protected _get(key: string, opts?: OpOptions): Promise<SegmentedBytes | undefined> {
    const { dir, base } = keyPath(key);
    return readValue(this.#tree, dir, base, `get ${JSON.stringify(key)}`, opts?.signal);
  }

  protected _list(prefix: string, opts?: OpOptions): AsyncIterable<BlobMetadata> {
    return listValues(this.#tree, prefix, opts?.signal);
  }

  protected async _set(key: string, value: Uint8Array, opts?: OpOptions): Promise<void> {
    const { dir, base } = keyPath(key);
    const action = `set ${JSON.stringify(key)}`;
    // A copy, taken before the first await: the caller may reuse its array meanwhile.
    const bytes = asBuffer(copyBytes(value));
    await this.#ensureMarked(action);
    await writeValue(this.#tree, dir, base, bytes, action, opts?.signal);
  }

  protected async _delete(key: string, opts?: OpOptions): Promise<number | undefined> {
    const { dir, base } = keyPath(key);
    const action = `delete ${JSON.stringify(key)}`;
    if (!(await this.#tree.isDir(dir, action))) return undefined;
    await this.#ensureMarked(action);
    return deleteValue(this.#deleting, dir, base, action, opts?.signal);
  }

  protected _restore(key: string, opts?: OpOptions): Promise<void> {
    const { dir, base } = keyPath(key);
    return restoreValue(this.#deleting, dir, base, `restore ${JSON.stringify(key)}`, opts?.signal);
  }

  protected async _close(): Promise<void> {
    this.#stop.abort();
    await this.#sweeping?.catch(() => {});
  }

  get #deleting(): DeleteContext {
    return { tree: this.#tree, keepDeleted: this.#keepDeleted, ensureMarked: (action) => this.#ensureMarked(action) };
  }

  /** Marks the root before the first change of a handle opened on an unmarked root (writeOnOpen: false). */
  async #ensureMarked(action: string): Promise<void> {
    if (this.#marked) return;
    try {
      markRoot(this.root);
    } catch (err) {
      throw this.#tree.error(err, action);
    }
    this.#marked = true;
  }
}

/**
 * Opens the FileBlob a `file:` URI names (see src/file/config.ts); with `create`
 * false, as writeOnOpen false: a missing directory rejects Determinate NotFound.
 */
export async function blobFromUri(loc: LocationUri, create = true): Promise<FileBlob> {
  const { root, options } = fileUriOptions(loc, create);
  return new FileBlob(root, options);
}

export type { FileBlobOptions } from './config.js';
export type { SweepReport } from './sweep.js';
export { fileBackend } from './backend.js';
