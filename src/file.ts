/**
 * `persist-location/file`: FileBlob, the embedded Blob backend, one file per value
 * under a root directory on the local file system.
 *
 * Layout (defined and documented in src/file/layout.ts): a key is split at `/`,
 * each segment escaped to `[a-z0-9._-]` plus `%hh` and cut into names of at most
 * 255 bytes; `foo/Bar/k0` is `<root>/dfoo/d%42ar/vk0`. `d`/`c` directories, `v`
 * value files, `x` kept deleted values, `.pl-tmp.*` writes in flight.
 *
 * Writes are atomic and durable. `set` writes a temporary file in the target's
 * directory, fdatasyncs it, renames it over the target and fsyncs the directory
 * (concurrent writers in one directory share that fsync, see src/file/dir-sync.ts).
 * A crash leaves the old value or the new one, never a torn or empty value. A
 * directory is fsynced into its parent the first time a handle uses it, so a value
 * in a freshly created directory survives a crash too. `delete` renames the value
 * away (learning its exact size even if another process overwrites it at the same
 * moment), unlinks it, fsyncs the directory, then removes directories left empty.
 *
 * Several processes may share one root. Two writers of one key both succeed and
 * one value wins whole. Removing an empty directory races with another process
 * creating a file in it: rmdir only removes empty directories, and a writer whose
 * directory vanished under it (ENOENT) re-creates it and retries; a writer that
 * finds its directory re-created by someone else fsyncs the parent again.
 *
 * Temporary files never show in `list`. A handle sweeps stale ones in the
 * background when it opens: those whose writer (pid, on this host) is dead, and
 * any unchanged for `staleTempMs` (default 15 minutes, judged by the file's change
 * time, which a rename bumps; a writer still busy after that
 * merely sees its `set` fail Determinate, because its temporary file is gone and
 * the target untouched). The sweep also removes empty directories.
 *
 * Symbolic links: names never contain a separator or `..`, so a key cannot leave
 * the root by itself. A symbolic link (or any non-directory) planted where the
 * layout expects a directory is refused (Determinate DataLoss) the first time a
 * handle walks that directory, value files are opened with O_NOFOLLOW, and listing
 * never descends into links. A link swapped in for a directory after this handle
 * checked it is followed by the handle until a write through it notices the
 * change (and fails Indeterminate DataLoss): Node.js has no openat(), so checking
 * every component on every operation would cost a system call per level. The
 * root must not be writable by anyone untrusted.
 *
 * Key length: a 1024-byte key needs up to about 3100 characters of path below the
 * root (escaping triples non-ASCII and upper-case bytes), so with a root path longer
 * than about 900 characters the longest keys reject Determinate InvalidArgument
 * (ENAMETOOLONG) rather than being stored.
 *
 * Reads: values up to 256 KiB are read synchronously (open, fstat, read, close on
 * the calling thread: cheaper than four thread-pool hops for a file that is
 * almost always in the page cache); larger values are read in 1 MiB parts in
 * parallel and returned as that many segments.
 *
 * Errors (the whole table is in src/file/errors.ts, `fsError`): ENOENT on a read is
 * `undefined`; before the rename (or link) that commits a write, EACCES/EPERM/EROFS
 * are Determinate PermissionDenied, ENOSPC/EDQUOT/EFBIG Determinate
 * ResourceExhausted, ENAMETOOLONG Determinate InvalidArgument, EMFILE/ENFILE
 * Determinate Unavailable, a symbolic link or non-directory in the way Determinate
 * DataLoss; EIO and anything unknown are Indeterminate; every error after the
 * commit point (the directory fsync) is Indeterminate.
 *
 * `restore` needs `keepDeleted` (URI `?keepDeleted=true`): a delete then keeps the
 * last deleted value of each key, and `restore` links it back unless the key was
 * set again meanwhile. Without it, `restore` succeeds only for existing keys and
 * otherwise rejects Determinate NotFound; a delete by such a handle also drops any
 * value kept earlier, so `restore` never brings back anything older than the
 * latest delete. A crash in the middle of a keeping delete may lose the kept value
 * (it is then a stale temporary file), never the delete itself.
 *
 * URI: `file:///abs/dir`, `file:/abs/dir`, `file:rel/dir` (relative to the current
 * directory), `file://localhost/abs/dir`. Parameters: `keepDeleted=true|false`.
 * The directory is created if missing.
 */
import {
  close as closeCb,
  closeSync,
  constants,
  fstatSync,
  fsyncSync,
  mkdirSync,
  openSync,
  read as readCb,
  readSync,
  realpathSync,
} from 'node:fs';
import { link, lstat, mkdir, open, readdir, rename, rmdir, unlink } from 'node:fs/promises';
import { dirname, isAbsolute, resolve } from 'node:path';
import { BlobBase } from './base.js';
import type { BlobMetadata } from './blob.js';
import { asBuffer } from './bytes.js';
import type { OpOptions } from './consensus.js';
import { aborted, Determinate, ErrorCode, invalidArgument } from './errors.js';
import { SegmentedBytes } from './segmented-bytes.js';
import { boolParam, checkParams, type LocationUri } from './uri.js';
import { DirSyncer, type DirIdentity } from './file/dir-sync.js';
import { errnoOf, fsError } from './file/errors.js';
import {
  CHUNK_DIR,
  DELETED,
  SEGMENT_DIR,
  TEMP_PREFIX,
  VALUE,
  isCanonicalChunk,
  keyPath,
  prefixPlan,
  tempName,
  tempOwner,
  unescapeKey,
} from './file/layout.js';

export { fsError, type FsErrorContext } from './file/errors.js';

/** Options of {@link FileBlob}. */
export interface FileBlobOptions {
  /**
   * Keep the last deleted value of each key so that `restore` can bring it back
   * (URI `?keepDeleted=true`). Off by default.
   */
  keepDeleted?: boolean;
  /** Temporary files unchanged (by their ctime) for longer than this are stale whoever wrote them (default 15 minutes). */
  staleTempMs?: number;
  /** Sweep stale temporary files and empty directories in the background on open (default true). */
  sweepOnOpen?: boolean;
}

/** Result of {@link FileBlob.sweep}. */
export interface SweepReport {
  /** Stale temporary files removed. */
  tempFiles: number;
  /** Empty directories removed. */
  directories: number;
}

const SYNC_READ_MAX = 256 * 1024;
const READ_PART = 1024 * 1024;
const DEFAULT_STALE_TEMP_MS = 15 * 60 * 1000;
/** Attempts of a write whose directory keeps vanishing under it (another process pruning it). */
const DIR_RETRIES = 20;
/** Known directories remembered per handle before the caches start over. */
const MAX_CACHED_DIRS = 10_000;
const TEMP_FLAGS = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;
const READ_FLAGS = constants.O_RDONLY | constants.O_NOFOLLOW;

/** Blob in a local directory; see the module comment for layout, durability and errors. */
export class FileBlob extends BlobBase {
  readonly description: string;
  /** The root directory (absolute, symbolic links resolved). */
  readonly root: string;
  readonly #keepDeleted: boolean;
  readonly #staleTempMs: number;
  readonly #syncer = new DirSyncer();
  /** Directories (relative) that exist, are real directories and whose entry in the parent is durable, with their identity. */
  readonly #durable = new Map<string, Promise<DirIdentity>>();
  /** Directories (relative) checked to be real directories (no symbolic link on the way). */
  readonly #checked = new Set<string>();
  readonly #stop = new AbortController();
  #sweeping: Promise<SweepReport> | undefined;

  /**
   * Opens (creating if missing) the location rooted at `root`. The creation is
   * durable: new directories are fsynced into their parents.
   */
  constructor(root: string, options: FileBlobOptions = {}) {
    super();
    const wanted = resolve(root);
    this.#keepDeleted = options.keepDeleted ?? false;
    this.#staleTempMs = options.staleTempMs ?? DEFAULT_STALE_TEMP_MS;
    try {
      const created = mkdirSync(wanted, { recursive: true });
      if (created !== undefined) fsyncNewDirectories(created, wanted);
      this.root = realpathSync(wanted);
    } catch (err) {
      throw fsError(err, { description: `FileBlob(${wanted})`, action: 'open', committed: false });
    }
    this.description = `FileBlob(${this.root})`;
    if (options.sweepOnOpen ?? true) {
      this.#sweeping = this.#sweep();
      this.#sweeping.catch(() => {}); // best effort: a failed sweep leaves work for the next one
    }
  }

  /**
   * Removes stale temporary files and empty directories now (a handle also does
   * this in the background when it opens). Resolves with what was removed.
   */
  async sweep(): Promise<SweepReport> {
    if (this.closed) throw new Error(`${this.description} is closed`);
    await this.#sweeping?.catch(() => {});
    this.#sweeping = this.#sweep();
    return this.#sweeping;
  }

  protected async _get(key: string, opts?: OpOptions): Promise<SegmentedBytes | undefined> {
    const { dir, base } = keyPath(key);
    const action = `get ${JSON.stringify(key)}`;
    if (!(await this.#isDir(dir, action))) return undefined;
    const path = this.#abs(dir, VALUE + base);
    let fd: number;
    let size: number;
    try {
      fd = openSync(path, READ_FLAGS);
    } catch (err) {
      if (errnoOf(err) === 'ENOENT') return undefined;
      throw this.#error(err, action);
    }
    try {
      const st = fstatSync(fd);
      if (!st.isFile()) throw new Determinate(ErrorCode.DataLoss, `${this.description}: ${action}: ${path} is not a regular file`);
      size = st.size;
      if (size <= SYNC_READ_MAX) {
        const buf = Buffer.allocUnsafeSlow(size);
        readFully(fd, buf);
        closeSync(fd);
        return new SegmentedBytes(buf);
      }
    } catch (err) {
      closeSync(fd);
      throw this.#error(err, action);
    }
    try {
      const parts: Promise<Buffer>[] = [];
      for (let at = 0; at < size; at += READ_PART) parts.push(readPart(fd, at, Math.min(READ_PART, size - at)));
      const segments = await Promise.all(parts);
      if (opts?.signal?.aborted) throw aborted(opts.signal, true);
      return new SegmentedBytes(segments);
    } catch (err) {
      throw this.#error(err, action);
    } finally {
      await new Promise<void>((r) => closeCb(fd, () => r()));
    }
  }

  protected async *_list(prefix: string, opts?: OpOptions): AsyncIterable<BlobMetadata> {
    const plan = prefixPlan(prefix);
    const action = `list ${JSON.stringify(prefix)}`;
    if (!(await this.#isDir(plan.dir, action))) return;
    // Depth first with an explicit stack of paths: no directory stays open across a
    // yield, so breaking out of the loop leaves nothing to release.
    const stack: { dir: string; escapedKey: string; partial: string }[] = [plan];
    while (stack.length > 0) {
      const { dir, escapedKey, partial } = stack.pop()!;
      if (opts?.signal?.aborted) throw aborted(opts.signal, true);
      let entries;
      try {
        entries = await readdir(this.#abs(dir), { withFileTypes: true });
      } catch (err) {
        const errno = errnoOf(err);
        if (errno === 'ENOENT' || errno === 'ENOTDIR') continue; // removed while we listed
        throw this.#error(err, action);
      }
      const files: { key: string; path: string }[] = [];
      for (const entry of entries) {
        const marker = entry.name[0];
        const chunk = entry.name.slice(1);
        if (!chunk.startsWith(partial) || !isCanonicalChunk(chunk)) continue;
        const child = dir === '' ? entry.name : `${dir}/${entry.name}`;
        if (marker === VALUE && entry.isFile()) {
          const key = unescapeKey(escapedKey + chunk);
          // Only a file where the layout puts its key: a foreign `c` directory with a
          // short chunk would otherwise list a key that get() cannot find.
          if (key !== undefined && isPathOf(key, dir, chunk)) files.push({ key, path: this.#abs(child) });
        } else if (marker === SEGMENT_DIR && entry.isDirectory()) {
          stack.push({ dir: child, escapedKey: `${escapedKey}${chunk}/`, partial: '' });
        } else if (marker === CHUNK_DIR && entry.isDirectory()) {
          stack.push({ dir: child, escapedKey: escapedKey + chunk, partial: '' });
        }
      }
      for (let i = 0; i < files.length; i += 64) {
        const batch = files.slice(i, i + 64);
        const sizes = await Promise.all(batch.map((f) => lstat(f.path).then((st) => st.size, (err: unknown) => err)));
        for (const [j, f] of batch.entries()) {
          const size = sizes[j];
          if (typeof size === 'number') yield { key: f.key, sizeInBytes: size };
          else if (errnoOf(size) !== 'ENOENT') throw this.#error(size, action); // ENOENT: deleted meanwhile
        }
      }
    }
  }

  protected async _set(key: string, value: Uint8Array, opts?: OpOptions): Promise<void> {
    const { dir, base } = keyPath(key);
    const action = `set ${JSON.stringify(key)}`;
    const dirPath = this.#abs(dir);
    const target = this.#abs(dir, VALUE + base);
    const bytes = asBuffer(value);
    let tmp: string;
    for (let attempt = 1; ; attempt++) {
      await this.#ensureDurableDir(dir, action);
      tmp = `${dirPath}/${tempName()}`;
      try {
        await writeDurably(tmp, bytes);
        break;
      } catch (err) {
        if (errnoOf(err) === 'ENOENT' && attempt < DIR_RETRIES) {
          this.#forget(dir); // pruned by another process between our mkdir and our open
          continue;
        }
        await unlink(tmp).catch(() => {});
        throw this.#error(err, action);
      }
    }
    const signal = opts?.signal;
    if (signal?.aborted) {
      await unlink(tmp).catch(() => {});
      throw aborted(signal, false);
    }
    try {
      await rename(tmp, target);
    } catch (err) {
      await unlink(tmp).catch(() => {});
      throw this.#error(err, action);
    }
    await this.#syncAfterCommit(dir, action, signal);
  }

  protected async _delete(key: string, opts?: OpOptions): Promise<number | undefined> {
    const { dir, base } = keyPath(key);
    const action = `delete ${JSON.stringify(key)}`;
    if (!(await this.#isDir(dir, action))) return undefined;
    const tmp = this.#abs(dir, tempName());
    try {
      await rename(this.#abs(dir, VALUE + base), tmp);
    } catch (err) {
      if (errnoOf(err) === 'ENOENT') return undefined;
      throw this.#error(err, action);
    }
    // The key is gone from here on: every failure is Indeterminate.
    let size: number;
    try {
      size = (await lstat(tmp)).size;
      if (this.#keepDeleted) {
        await rename(tmp, this.#abs(dir, DELETED + base));
      } else {
        await unlink(tmp);
        await unlink(this.#abs(dir, DELETED + base)).catch((err: unknown) => {
          if (errnoOf(err) !== 'ENOENT') throw err;
        });
      }
    } catch (err) {
      throw this.#error(err, action, true);
    }
    await this.#syncAfterCommit(dir, action, opts?.signal);
    if (!this.#keepDeleted) await this.#prune(dir);
    return size;
  }

  protected async _restore(key: string, opts?: OpOptions): Promise<void> {
    const { dir, base } = keyPath(key);
    const action = `restore ${JSON.stringify(key)}`;
    const notFound = (): Determinate =>
      new Determinate(
        ErrorCode.NotFound,
        `${this.description}: cannot ${action}: the key does not exist${this.#keepDeleted ? ' and no deleted value is kept' : ' (deleted values are kept only with keepDeleted)'}`,
      );
    if (!(await this.#isDir(dir, action))) throw notFound();
    const valuePath = this.#abs(dir, VALUE + base);
    if (await this.#exists(valuePath, action)) return;
    if (!this.#keepDeleted) throw notFound();
    const keptPath = this.#abs(dir, DELETED + base);
    try {
      // link, not rename: it never replaces a value set meanwhile by someone else.
      await link(keptPath, valuePath);
    } catch (err) {
      const errno = errnoOf(err);
      if (errno === 'EEXIST') return;
      if (errno === 'ENOENT') {
        if (await this.#exists(valuePath, action)) return;
        throw notFound();
      }
      throw this.#error(err, action);
    }
    try {
      await unlink(keptPath);
    } catch (err) {
      if (errnoOf(err) !== 'ENOENT') throw this.#error(err, action, true);
    }
    await this.#syncAfterCommit(dir, action, opts?.signal);
  }

  protected async _close(): Promise<void> {
    this.#stop.abort();
    await this.#sweeping?.catch(() => {});
  }

  // ---- directories -----------------------------------------------------------------

  #abs(dir: string, name?: string): string {
    const d = dir === '' ? this.root : `${this.root}/${dir}`;
    return name === undefined ? d : `${d}/${name}`;
  }

  #error(err: unknown, action: string, committed = false) {
    return fsError(err, { description: this.description, action, committed });
  }

  async #exists(path: string, action: string): Promise<boolean> {
    try {
      await lstat(path);
      return true;
    } catch (err) {
      if (errnoOf(err) === 'ENOENT') return false;
      throw this.#error(err, action);
    }
  }

  /**
   * Whether `dir` exists as a chain of real directories (never through a symbolic
   * link). Rejects Determinate DataLoss when something else stands in the way.
   */
  async #isDir(dir: string, action: string): Promise<boolean> {
    if (dir === '' || this.#checked.has(dir)) return true;
    let path = '';
    for (const name of dir.split('/')) {
      path = path === '' ? name : `${path}/${name}`;
      if (this.#checked.has(path)) continue;
      try {
        const st = await lstat(this.#abs(path));
        if (!st.isDirectory()) throw this.#notADirectory(path, action);
      } catch (err) {
        if (errnoOf(err) === 'ENOENT') return false;
        throw this.#error(err, action);
      }
      this.#remember(this.#checked, path);
    }
    return true;
  }

  #notADirectory(dir: string, action: string): Determinate {
    return new Determinate(
      ErrorCode.DataLoss,
      `${this.description}: ${action}: ${this.#abs(dir)} is not a directory (a symbolic link inside the root is never followed)`,
    );
  }

  /** Makes `dir` exist, checked, with its entry in its parent durable (once per handle). */
  async #ensureDurableDir(dir: string, action: string): Promise<DirIdentity | undefined> {
    if (dir === '') return undefined;
    let known = this.#durable.get(dir);
    if (known === undefined) {
      const parent = parentOf(dir);
      known = this.#discover(dir, parent, action);
      this.#remember(this.#durable, dir, known);
      known.catch(() => {
        if (this.#durable.get(dir) === known) this.#durable.delete(dir);
      });
    }
    return known;
  }

  async #discover(dir: string, parent: string, action: string): Promise<DirIdentity> {
    const path = this.#abs(dir);
    for (let attempt = 1; ; attempt++) {
      await this.#ensureDurableDir(parent, action);
      try {
        try {
          await mkdir(path);
        } catch (err) {
          if (errnoOf(err) !== 'EEXIST') throw err;
        }
        const st = await lstat(path, { bigint: true });
        if (!st.isDirectory()) throw this.#notADirectory(dir, action);
        // Whoever created it may not have fsynced the parent yet; we must not rely on them.
        await this.#syncer.sync(this.#abs(parent), parent !== '');
        this.#remember(this.#checked, dir);
        return `${st.ino}:${st.birthtimeNs}`;
      } catch (err) {
        // Another process pruned the directory or its parent under us: start over.
        if (errnoOf(err) === 'ENOENT' && attempt < DIR_RETRIES) {
          this.#forget(parent);
          continue;
        }
        throw this.#error(err, action);
      }
    }
  }

  /** Drops what this handle believes about `dir` and its ancestors. */
  #forget(dir: string): void {
    for (let d = dir; d !== ''; d = parentOf(d)) {
      this.#durable.delete(d);
      this.#checked.delete(d);
    }
  }

  #remember<V>(cache: Map<string, V> | Set<string>, dir: string, value?: V): void {
    if (cache.size >= MAX_CACHED_DIRS) cache.clear();
    if (cache instanceof Set) cache.add(dir);
    else cache.set(dir, value!);
  }

  /**
   * The fsync that makes a committed change durable. If the directory turns out to
   * be a different one than this handle made durable (another process removed and
   * re-created it), its entry in the parent is fsynced again. If it is gone, another
   * process has since removed our change with it (a delete, then the pruning of the
   * empty directory): then the nearest ancestor is fsynced, which makes that removal
   * durable instead.
   */
  async #syncAfterCommit(dir: string, action: string, signal: AbortSignal | undefined): Promise<void> {
    const work = (async () => {
      for (let d = dir; ; d = parentOf(d)) {
        let identity: DirIdentity | undefined;
        try {
          identity = await this.#syncer.sync(this.#abs(d), d !== '');
        } catch (err) {
          if (d === '' || errnoOf(err) !== 'ENOENT') throw err;
          this.#forget(d);
          continue;
        }
        if (d === '') return;
        const known = await this.#durable.get(d)?.catch(() => undefined);
        if (known === identity) return;
        this.#forget(d);
        await this.#ensureDurableDir(d, action);
        return;
      }
    })();
    try {
      await (signal === undefined ? work : untilAborted(work, signal));
    } catch (err) {
      throw this.#error(err, action, true);
    }
  }

  /** Removes `dir` and its ancestors while they are empty. */
  async #prune(dir: string): Promise<number> {
    let removed = 0;
    for (let d = dir; d !== ''; d = parentOf(d)) {
      try {
        await rmdir(this.#abs(d));
      } catch {
        break; // ENOTEMPTY (someone is using it), ENOENT (someone removed it), anything else: leave it
      }
      this.#durable.delete(d);
      this.#checked.delete(d);
      removed++;
    }
    return removed;
  }

  // ---- sweep -----------------------------------------------------------------------

  async #sweep(): Promise<SweepReport> {
    const report: SweepReport = { tempFiles: 0, directories: 0 };
    const signal = this.#stop.signal;
    const now = Date.now();
    // Post-order walk so that a directory emptied by the sweep can be removed too.
    const visit = async (dir: string): Promise<void> => {
      if (signal.aborted) return;
      let entries;
      try {
        entries = await readdir(this.#abs(dir), { withFileTypes: true });
      } catch {
        return;
      }
      for (const entry of entries) {
        if (signal.aborted) return;
        const child = dir === '' ? entry.name : `${dir}/${entry.name}`;
        if (entry.isDirectory() && (entry.name[0] === SEGMENT_DIR || entry.name[0] === CHUNK_DIR)) {
          await visit(child);
        } else if (entry.isFile() && entry.name.startsWith(TEMP_PREFIX)) {
          if (await this.#isStaleTemp(this.#abs(child), entry.name, now)) {
            await unlink(this.#abs(child)).then(() => report.tempFiles++, () => {});
          }
        }
      }
      if (dir !== '' && !signal.aborted) {
        // Only this directory: its parent is visited (and tried) after it. ENOTEMPTY or
        // a concurrent writer re-creating it are both fine.
        await rmdir(this.#abs(dir)).then(
          () => {
            this.#forget(dir);
            report.directories++;
          },
          () => {},
        );
      }
    };
    await visit('');
    return report;
  }

  async #isStaleTemp(path: string, name: string, now: number): Promise<boolean> {
    const owner = tempOwner(name);
    if (owner?.thisHost === true && owner.pid !== process.pid && !processAlive(owner.pid)) return true;
    try {
      // The change time, not only the modification time: a delete renames the value
      // to a temporary name, which keeps the value's old mtime but bumps its ctime.
      const st = await lstat(path);
      return now - Math.max(st.mtimeMs, st.ctimeMs) > this.#staleTempMs;
    } catch {
      return false;
    }
  }
}

/** Writes `bytes` to a new file at `path` and fdatasyncs it. */
async function writeDurably(path: string, bytes: Buffer): Promise<void> {
  const handle = await open(path, TEMP_FLAGS, 0o644);
  try {
    let done = 0;
    while (done < bytes.byteLength) {
      const { bytesWritten } = await handle.write(bytes, done, bytes.byteLength - done, done);
      done += bytesWritten;
    }
    await handle.datasync();
  } finally {
    await handle.close();
  }
}

function readFully(fd: number, buf: Buffer): void {
  let done = 0;
  while (done < buf.byteLength) {
    const n = readSync(fd, buf, done, buf.byteLength - done, done);
    if (n === 0) throw new Determinate(ErrorCode.DataLoss, 'value file shrank while being read');
    done += n;
  }
}

async function readPart(fd: number, position: number, length: number): Promise<Buffer> {
  const buf = Buffer.allocUnsafeSlow(length);
  let done = 0;
  while (done < length) {
    const n = await new Promise<number>((res, rej) =>
      readCb(fd, buf, done, length - done, position + done, (err, bytesRead) => (err ? rej(err) : res(bytesRead))),
    );
    if (n === 0) throw new Determinate(ErrorCode.DataLoss, 'value file shrank while being read');
    done += n;
  }
  return buf;
}

/** Fsyncs the parents of every directory that `mkdir -p` just created (from `first` down to `last`). */
function fsyncNewDirectories(first: string, last: string): void {
  const dirs: string[] = [];
  for (let d = last; ; d = dirname(d)) {
    dirs.push(dirname(d));
    if (d === first || dirname(d) === d) break;
  }
  for (const d of dirs) {
    const fd = openSync(d, constants.O_RDONLY | constants.O_DIRECTORY);
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  }
}

/** Whether `key` lives at directory `dir` with last chunk `base`, as keyPath() places it. */
function isPathOf(key: string, dir: string, base: string): boolean {
  const where = keyPath(key);
  return where.dir === dir && where.base === base;
}

/** The parent of a relative directory ('' = the root). */
function parentOf(dir: string): string {
  const cut = dir.lastIndexOf('/');
  return cut < 0 ? '' : dir.slice(0, cut);
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return errnoOf(err) !== 'ESRCH';
  }
}

/** Rejects with an Indeterminate abort error if `signal` aborts before `work` settles. */
function untilAborted<T>(work: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(aborted(signal, true));
  return new Promise<T>((res, rej) => {
    const onAbort = (): void => rej(aborted(signal, true));
    signal.addEventListener('abort', onAbort, { once: true });
    work.then(res, rej).finally(() => signal.removeEventListener('abort', onAbort));
  });
}

/**
 * `file:` URIs (see the module comment). Rejects with Determinate InvalidArgument
 * for another host, a missing path or an unknown parameter.
 */
export async function blobFromUri(loc: LocationUri): Promise<FileBlob> {
  const params = checkParams(loc, ['keepDeleted']);
  if (loc.authority !== undefined && loc.authority !== '' && loc.authority.toLowerCase() !== 'localhost') {
    throw invalidArgument(
      `${loc.display} names the host '${loc.authority}': a file: location is local; write file:///abs/dir or file:rel/dir`,
    );
  }
  if (loc.path === '') throw invalidArgument(`${loc.display} names no directory; write file:///abs/dir or file:rel/dir`);
  const root = isAbsolute(loc.path) ? loc.path : resolve(process.cwd(), loc.path);
  const keepDeleted = boolParam(loc, params.keepDeleted, 'keepDeleted');
  return new FileBlob(root, keepDeleted === undefined ? {} : { keepDeleted });
}
