/**
 * `persist-location/file`: FileBlob, the embedded Blob backend, one file per value
 * under a root directory on the local file system.
 *
 * Layout (defined and documented in src/file/layout.ts): a key is split at `/`,
 * each segment escaped to `[a-z0-9._-]` plus `%hh` and cut into names of at most
 * 255 bytes; `foo/Bar/k0` is `<root>/dfoo/d%42ar/vk0`. `d`/`c` directories, `v`
 * value files, `x` kept deleted values, `.pl-tmp.<host>.<pid>.<id>` writes and
 * deletes in flight, and `<root>/.pl-root`, the root marker.
 *
 * Roots. Every root holds the marker `.pl-root`, a name the layout never gives
 * anything else. Opening writes it if missing (so a root made before markers
 * existed is marked the first time it is opened) and refuses, Determinate
 * FailedPrecondition naming both directories, a root that lies inside another
 * one (a directory above it holds a marker): such a root's names would be the
 * other location's keys. The check runs before anything is created and again
 * after the marker is written, so of two locations opened at the same moment one
 * inside the other, at least one open sees the other's marker; a refused open
 * removes the marker and the directories it created. The other order (the inner
 * location first) cannot be refused at open without reading the whole tree, so
 * the walk checks instead: a directory that the layout walks into (by get, set,
 * delete, restore or list) and that holds a marker is another location's root.
 * list skips it; get, set, delete and restore through it reject Determinate
 * FailedPrecondition; a value name (`vk`, `xk`) that is a directory rejects
 * Determinate and is never read, replaced, renamed or removed. That costs one
 * stat per directory, the first time a handle walks it; list finds markers in
 * the directory listings it reads anyway.
 *
 * Writes are atomic and durable. `set` writes a temporary file in the target's
 * directory, fdatasyncs it, renames it over the target and fsyncs the directory
 * (concurrent writers in one directory share that fsync, see src/file/dir-sync.ts).
 * A crash leaves the old value or the new one, never a torn or empty value. A
 * directory is fsynced into its parent the first time a handle uses it, so a value
 * in a freshly created directory survives a crash too. `delete` renames the value
 * to a temporary name (learning its exact size even if another process overwrites
 * it at the same moment), unlinks it, fsyncs the directory, then removes the
 * directories it left empty. A root is never removed: it holds its marker.
 *
 * Several processes may share one root. Two writers of one key both succeed and
 * one value wins whole. Removing an empty directory races with another process
 * creating a file in it: rmdir only removes empty directories, and a writer whose
 * directory vanished under it (ENOENT) re-creates it and retries; a writer that
 * finds its directory re-created by someone else fsyncs the parent again.
 *
 * Sweep. Temporary files never show in `list`. A handle sweeps stale ones in the
 * background when it opens (`sweepOnOpen`, default true; `sweep()` runs one now).
 * It removes only files whose whole name is one that this module generates, and
 * only when stale: their writer (pid, on this host) is dead, or they are unchanged
 * for `staleTempMs` (default 15 minutes, judged by the file's change time, which a
 * rename bumps; a writer still busy after that merely sees its `set` fail
 * Determinate, because its temporary file is gone and the target untouched). It
 * walks only directories whose names the layout produces (`d`/`c` and a
 * canonical escaped chunk), never a symbolic link and never another location's
 * root. The only directories it removes are those it emptied itself, by removing
 * a stale temporary file (or a directory it emptied) from them: a directory that
 * was empty already, made by the layout or by anyone else (`docs/`, `config/`),
 * stays.
 *
 * Opening without writing: `writeOnOpen: false` (URI `?writeOnOpen=false`) makes
 * the open read only. A missing root rejects Determinate NotFound instead of being
 * created, no marker is written (an unmarked root is marked by the handle's first
 * set, delete or restore instead), and no sweep runs. The nesting check still
 * runs. A read-only handle can be built on it.
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
 * Restore. With `keepDeleted` (URI `?keepDeleted=true`) a delete keeps the value it
 * removed as `x<name>`, and `restore` of a missing key hard-links that file back
 * (link never replaces a value set meanwhile). Without it, `restore` succeeds only
 * for existing keys and otherwise rejects Determinate NotFound. Every delete, with
 * or without keepDeleted, follows one protocol, so that the kept value is always
 * the value of the latest delete, or absent: (1) if the key exists, unlink the kept
 * value and fsync the directory; (2) rename the value to a temporary name, the
 * commit point; (3) with keepDeleted hard-link it as the kept value, without,
 * unlink the kept value again; (4) unlink the temporary name. From (1) until (3) no
 * value is kept, so a restore running meanwhile either finds the key (before (2))
 * or rejects NotFound (after): it never links back a value older than the delete,
 * and every outcome is that of the delete and the restore in some order, the
 * restore failing as a backend without restore would. (1) is durable before (2),
 * so no crash leaves the key deleted beside an older kept value: a crash leaves
 * the key, or no key and its deleted value kept, or no key and nothing kept (a
 * crash between (1) and (3) loses the kept value; the deleted value is then a
 * stale temporary file, swept later). A restore leaves the kept file in place, a
 * second name of the restored value; the next delete of the key drops it at (1).
 * Within one process, deletes and restores of one key run one at a time.
 * Across processes, two deletes of one key that overlap (a set landed between
 * them) may both reach (3): the second to get there finds a kept value it cannot
 * order against its own and unlinks it, so nothing is kept; until it has, a
 * restore in a third process could bring back the earlier delete's value.
 *
 * URI: `file:///abs/dir`, `file:/abs/dir`, `file:rel/dir` (relative to the current
 * directory), `file://localhost/abs/dir`. Parameters: `keepDeleted=true|false`,
 * `writeOnOpen=true|false`. The directory is created if missing (unless
 * `writeOnOpen=false`).
 */
import {
  close as closeCb,
  closeSync,
  constants,
  fstatSync,
  fsyncSync,
  lstatSync,
  mkdirSync,
  openSync,
  read as readCb,
  readSync,
  realpathSync,
  rmdirSync,
  statSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import { link, lstat, mkdir, open, readdir, rename, rmdir, unlink } from 'node:fs/promises';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { BlobBase } from '../base.js';
import type { BlobMetadata } from '../blob.js';
import { asBuffer, copyBytes } from '../bytes.js';
import type { OpOptions } from '../consensus.js';
import { aborted, Determinate, ErrorCode, invalidArgument } from '../errors.js';
import { SegmentedBytes } from '../segmented-bytes.js';
import { boolParam, checkParams, type LocationUri } from '../uri.js';
import { DirSyncer, type DirIdentity } from './dir-sync.js';
import { errnoOf, fsError } from './errors.js';
import {
  CHUNK_DIR,
  DELETED,
  ROOT_MARKER,
  SEGMENT_DIR,
  VALUE,
  isCanonicalChunk,
  keyPath,
  prefixPlan,
  tempName,
  tempOwner,
  unescapeKey,
} from './layout.js';

export { fsError, type FsErrorContext } from './errors.js';

/** Options of {@link FileBlob}. */
export interface FileBlobOptions {
  /**
   * Keep the last deleted value of each key so that `restore` can bring it back
   * (URI `?keepDeleted=true`). Off by default.
   */
  keepDeleted?: boolean;
  /** Temporary files unchanged (by their ctime) for longer than this are stale whoever wrote them (default 15 minutes). */
  staleTempMs?: number;
  /** Sweep stale temporary files in the background on open (default: the value of `writeOnOpen`). */
  sweepOnOpen?: boolean;
  /**
   * Whether opening may write (URI `?writeOnOpen=false`; default true): create a
   * missing root, write the root marker, sweep. With false a missing root rejects
   * Determinate NotFound, an unmarked root is marked only by this handle's first
   * set, delete or restore, and no sweep runs (`sweepOnOpen: true` with it rejects
   * InvalidArgument).
   */
  writeOnOpen?: boolean;
}

/** Result of {@link FileBlob.sweep}. */
export interface SweepReport {
  /** Stale temporary files removed. */
  tempFiles: number;
  /** Directories removed because the sweep emptied them. */
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
const MARKER_TEXT = 'persist-location FileBlob root: no other location can be opened inside this directory.\n';

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
  /** Directories (relative) checked to be real directories (no symbolic link on the way) and no other location's root. */
  readonly #checked = new Set<string>();
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
    if (options.sweepOnOpen ?? writeOnOpen) {
      this.#sweeping = this.#sweep();
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
    this.#sweeping = this.#sweep();
    return this.#sweeping;
  }

  protected async _get(key: string, opts?: OpOptions): Promise<SegmentedBytes | undefined> {
    const { dir, base } = keyPath(key);
    const action = `get ${JSON.stringify(key)}`;
    if (!(await this.#isDir(dir, action))) return undefined;
    const path = this.#abs(dir, VALUE + base);
    let fd: number;
    try {
      fd = openSync(path, READ_FLAGS);
    } catch (err) {
      if (errnoOf(err) === 'ENOENT') return undefined;
      throw this.#error(err, action);
    }
    let size: number;
    try {
      const st = fstatSync(fd);
      size = st.isFile() ? st.size : -1;
    } catch (err) {
      closeSync(fd);
      throw this.#error(err, action);
    }
    if (size < 0) {
      closeSync(fd);
      throw await this.#notAValue(dir, VALUE + base, action);
    }
    if (size <= SYNC_READ_MAX) {
      const buf = Buffer.allocUnsafeSlow(size);
      try {
        readFully(fd, buf);
      } catch (err) {
        throw this.#error(err, action);
      } finally {
        closeSync(fd);
      }
      return new SegmentedBytes(buf);
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
    if (!(await this.#isDir(plan.dir, action, true))) return;
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
      if (dir !== '' && entries.some((e) => e.name === ROOT_MARKER)) continue; // another location's root
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
    if (!this.#marked) await this.#markRoot(action);
    const dirPath = this.#abs(dir);
    const target = this.#abs(dir, VALUE + base);
    // A copy: the write happens after awaits, and the caller may reuse its array meanwhile.
    const bytes = asBuffer(copyBytes(value));
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
      // rename never replaces a directory with a file: nothing was written.
      if (errnoOf(err) === 'EISDIR') throw await this.#notAValue(dir, VALUE + base, action);
      throw this.#error(err, action);
    }
    await this.#syncAfterCommit(dir, action, signal);
  }

  protected async _delete(key: string, opts?: OpOptions): Promise<number | undefined> {
    const { dir, base } = keyPath(key);
    const action = `delete ${JSON.stringify(key)}`;
    if (!(await this.#isDir(dir, action))) return undefined;
    if (!this.#marked) await this.#markRoot(action);
    return inTurn(this.#abs(dir, VALUE + base), () => this.#deleteValue(dir, base, action, opts?.signal));
  }

  /** The delete protocol of the module comment ("Restore"), steps (1) to (4). */
  async #deleteValue(dir: string, base: string, action: string, signal: AbortSignal | undefined): Promise<number | undefined> {
    const valuePath = this.#abs(dir, VALUE + base);
    const keptPath = this.#abs(dir, DELETED + base);
    try {
      if (!(await this.#isValue(dir, base, action))) return undefined;
      // (1): from here until (3) no value is kept; durably so, before the key goes.
      if (await this.#dropKept(keptPath)) await this.#syncer.sync(this.#abs(dir), dir !== '');
    } catch (err) {
      throw this.#error(err, action);
    }
    const tmp = this.#abs(dir, tempName());
    try {
      await rename(valuePath, tmp); // (2)
    } catch (err) {
      if (errnoOf(err) === 'ENOENT') return undefined;
      throw this.#error(err, action);
    }
    // The key is gone from here on: every failure is Indeterminate.
    let size: number;
    try {
      const st = await lstat(tmp);
      if (!st.isFile()) {
        // A directory swapped in after the check above (another location's root being
        // created): it is not ours to move, so it goes back.
        await rename(tmp, valuePath);
        throw await this.#notAValue(dir, VALUE + base, action);
      }
      size = st.size;
      if (this.#keepDeleted) {
        try {
          await link(tmp, keptPath); // (3)
        } catch (err) {
          if (errnoOf(err) !== 'EEXIST') throw err;
          // A delete in another process kept its value meanwhile; which of the two
          // removed the later value is unknown, so neither is kept.
          await this.#dropKept(keptPath);
        }
      } else {
        await this.#dropKept(keptPath); // (3): a keeping delete in another process may have kept one meanwhile
      }
      await unlink(tmp); // (4)
    } catch (err) {
      throw this.#error(err, action, true);
    }
    await this.#syncAfterCommit(dir, action, signal);
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
    if (await this.#isValue(dir, base, action)) return;
    if (!this.#keepDeleted) throw notFound();
    if (!this.#marked) await this.#markRoot(action);
    const valuePath = this.#abs(dir, VALUE + base);
    const keptPath = this.#abs(dir, DELETED + base);
    await inTurn(valuePath, async () => {
      try {
        // link, not rename: it never replaces a value set meanwhile by someone else.
        await link(keptPath, valuePath);
      } catch (err) {
        const errno = errnoOf(err);
        if (errno === 'EEXIST') {
          await this.#isValue(dir, base, action); // rejects if what is there is no value
          return;
        }
        if (errno === 'ENOENT' || (await this.#isDirectory(keptPath))) {
          if (await this.#isValue(dir, base, action)) return;
          throw notFound();
        }
        throw this.#error(err, action);
      }
      await this.#syncAfterCommit(dir, action, opts?.signal);
    });
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

  /**
   * Whether `dir` exists as a chain of real directories (never through a symbolic
   * link) none of which is another location's root. Rejects Determinate DataLoss
   * when something else stands in the way; for another location's root rejects
   * Determinate FailedPrecondition, or resolves false if `skipForeign`.
   */
  async #isDir(dir: string, action: string, skipForeign = false): Promise<boolean> {
    if (dir === '' || this.#checked.has(dir)) return true;
    let path = '';
    for (const name of dir.split('/')) {
      path = path === '' ? name : `${path}/${name}`;
      if (this.#checked.has(path)) continue;
      try {
        const st = await lstat(this.#abs(path));
        if (!st.isDirectory()) throw this.#notADirectory(path, action);
        if (await holdsMarker(this.#abs(path))) {
          if (skipForeign) return false;
          throw this.#foreignRoot(this.#abs(path), action);
        }
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

  #foreignRoot(path: string, action: string): Determinate {
    return new Determinate(
      ErrorCode.FailedPrecondition,
      `${this.description}: ${action}: ${path} is the root of another location (it holds ${ROOT_MARKER}); nothing inside it is this location's`,
    );
  }

  /** The error for `dir`/`name`, where a value file belongs, being something else. */
  async #notAValue(dir: string, name: string, action: string): Promise<Determinate> {
    const path = this.#abs(dir, name);
    if (await holdsMarker(path).catch(() => false)) return this.#foreignRoot(path, action);
    return new Determinate(ErrorCode.DataLoss, `${this.description}: ${action}: ${path} is not a regular file`);
  }

  /** Whether the value of `dir`/`base` exists; rejects Determinate if something other than a file is in its place. */
  async #isValue(dir: string, base: string, action: string): Promise<boolean> {
    try {
      if ((await lstat(this.#abs(dir, VALUE + base))).isFile()) return true;
    } catch (err) {
      if (errnoOf(err) === 'ENOENT') return false;
      throw this.#error(err, action);
    }
    throw await this.#notAValue(dir, VALUE + base, action);
  }

  /**
   * Unlinks the kept deleted value at `path`; resolves whether there was one. A
   * directory there is not ours and stays (then nothing is kept for that key).
   */
  async #dropKept(path: string): Promise<boolean> {
    try {
      await unlink(path);
      return true;
    } catch (err) {
      const errno = errnoOf(err);
      if (errno === 'ENOENT') return false;
      if ((errno === 'EISDIR' || errno === 'EPERM') && (await this.#isDirectory(path))) return false;
      throw err;
    }
  }

  async #isDirectory(path: string): Promise<boolean> {
    return lstat(path).then(
      (st) => st.isDirectory(),
      () => false,
    );
  }

  /**
   * Marks the root of a handle opened with writeOnOpen: false before its first
   * write, with the same nesting check as an ordinary open.
   */
  async #markRoot(action: string): Promise<void> {
    try {
      const made = writeMarker(this.root);
      const outer = enclosingRoot(this.root);
      if (outer !== undefined) {
        if (made) unlinkSync(join(this.root, ROOT_MARKER));
        throw nestedRoot(this.root, outer);
      }
    } catch (err) {
      throw this.#error(err, action);
    }
    this.#marked = true;
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
        let made = true;
        try {
          await mkdir(path);
        } catch (err) {
          if (errnoOf(err) !== 'EEXIST') throw err;
          made = false;
        }
        const st = await lstat(path, { bigint: true });
        if (!st.isDirectory()) throw this.#notADirectory(dir, action);
        // A directory made by someone else may be another location's root (one made
        // here cannot become one: opening a root inside this one is refused).
        if (!made && !this.#checked.has(dir) && (await holdsMarker(path))) throw this.#foreignRoot(path, action);
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
    // Post-order, so that a directory the sweep emptied can go, and then its parent.
    // Resolves whether `dir` itself was removed.
    const visit = async (dir: string): Promise<boolean> => {
      if (signal.aborted) return false;
      let entries;
      try {
        entries = await readdir(this.#abs(dir), { withFileTypes: true });
      } catch {
        return false;
      }
      if (dir !== '' && entries.some((e) => e.name === ROOT_MARKER)) return false; // another location's root
      let emptied = false;
      for (const entry of entries) {
        if (signal.aborted) return false;
        const child = dir === '' ? entry.name : `${dir}/${entry.name}`;
        if (entry.isDirectory() && isLayoutDir(entry.name)) {
          if (await visit(child)) emptied = true;
        } else if (entry.isFile() && tempOwner(entry.name) !== undefined) {
          if (await this.#isStaleTemp(this.#abs(child), entry.name, now)) {
            await unlink(this.#abs(child)).then(
              () => {
                report.tempFiles++;
                emptied = true;
              },
              () => {},
            );
          }
        }
      }
      if (dir === '' || !emptied || signal.aborted) return false;
      // Only a directory this sweep took something of ours from: one that was empty
      // already may be someone else's. ENOTEMPTY, or a writer re-creating it, is fine.
      return rmdir(this.#abs(dir)).then(
        () => {
          this.#forget(dir);
          report.directories++;
          return true;
        },
        () => false,
      );
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
  for (const d of dirs) fsyncDirSync(d);
}

/** Fsyncs a directory's entries (a file created or removed in it). */
function fsyncDirSync(dir: string): void {
  const fd = openSync(dir, constants.O_RDONLY | constants.O_DIRECTORY);
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** Whether `dir` (absolute) holds a root marker, i.e. is a location's root. */
async function holdsMarker(dir: string): Promise<boolean> {
  try {
    await lstat(join(dir, ROOT_MARKER));
    return true;
  } catch (err) {
    const errno = errnoOf(err);
    if (errno === 'ENOENT' || errno === 'ENOTDIR') return false;
    throw err;
  }
}

function holdsMarkerSync(dir: string): boolean {
  try {
    lstatSync(join(dir, ROOT_MARKER));
    return true;
  } catch (err) {
    const errno = errnoOf(err);
    if (errno === 'ENOENT' || errno === 'ENOTDIR') return false;
    throw err;
  }
}

/** The nearest directory strictly above `path` (absolute, real) that is a location's root. */
function enclosingRoot(path: string): string | undefined {
  for (let d = dirname(path); ; d = dirname(d)) {
    if (holdsMarkerSync(d)) return d;
    if (dirname(d) === d) return undefined;
  }
}

function nestedRoot(wanted: string, outer: string): Determinate {
  return new Determinate(
    ErrorCode.FailedPrecondition,
    `FileBlob(${wanted}): cannot open a location inside the location rooted at ${outer}: the directories there hold that location's keys; open ${outer} itself, or a directory outside it`,
  );
}

/** Creates the root marker in `root` if missing; returns whether it was created now. */
function writeMarker(root: string): boolean {
  let fd: number;
  try {
    fd = openSync(join(root, ROOT_MARKER), TEMP_FLAGS, 0o644);
  } catch (err) {
    if (errnoOf(err) === 'EEXIST') return false;
    throw err;
  }
  try {
    writeSync(fd, MARKER_TEXT);
  } finally {
    closeSync(fd);
  }
  fsyncDirSync(root);
  return true;
}

/**
 * Opens the root at `wanted` for writing: refuses it inside another root, creates
 * it if missing, marks it, and checks again (see "Roots" in the module comment).
 */
function openRoot(wanted: string): { root: string; marked: boolean } {
  const outerBefore = enclosingOrSelf(wanted);
  if (outerBefore !== undefined) throw nestedRoot(wanted, outerBefore);
  let created: string | undefined;
  try {
    created = mkdirSync(wanted, { recursive: true });
  } catch (err) {
    if (errnoOf(err) === 'EEXIST') throw invalidArgument(`FileBlob(${wanted}): ${wanted} exists and is not a directory`);
    throw err;
  }
  if (created !== undefined) fsyncNewDirectories(created, wanted);
  const root = realpathSync(wanted);
  const made = writeMarker(root);
  const outer = enclosingRoot(root);
  if (outer !== undefined) {
    // An enclosing root was opened at the same moment: undo what this open made.
    if (made) unlinkSync(join(root, ROOT_MARKER));
    if (created !== undefined) {
      for (let d = wanted; ; d = dirname(d)) {
        try {
          rmdirSync(d);
        } catch {
          break;
        }
        if (d === created) break;
      }
    }
    throw nestedRoot(wanted, outer);
  }
  return { root, marked: true };
}

/** Opens an existing root without writing anything (writeOnOpen: false). */
function findRoot(wanted: string): { root: string; marked: boolean } {
  let root: string;
  try {
    root = realpathSync(wanted);
  } catch (err) {
    if (errnoOf(err) !== 'ENOENT') throw err;
    throw new Determinate(ErrorCode.NotFound, `FileBlob(${wanted}): ${wanted} does not exist (writeOnOpen: false creates nothing)`, { cause: err });
  }
  if (!statSync(root).isDirectory()) throw invalidArgument(`FileBlob(${wanted}): ${wanted} is not a directory`);
  const outer = enclosingRoot(root);
  if (outer !== undefined) throw nestedRoot(wanted, outer);
  return { root, marked: holdsMarkerSync(root) };
}

/**
 * The root that `wanted` (absolute, maybe missing) would lie inside: looked for from
 * its nearest existing directory, which counts itself when `wanted` is below it.
 */
function enclosingOrSelf(wanted: string): string | undefined {
  for (let p = wanted; ; p = dirname(p)) {
    let real: string;
    try {
      real = realpathSync(p);
    } catch (err) {
      const errno = errnoOf(err);
      if ((errno === 'ENOENT' || errno === 'ENOTDIR') && dirname(p) !== p) continue;
      throw err;
    }
    if (p !== wanted && holdsMarkerSync(real)) return real;
    return enclosingRoot(real);
  }
}

/** Whether `name` is a directory name the layout produces. */
function isLayoutDir(name: string): boolean {
  return (name[0] === SEGMENT_DIR || name[0] === CHUNK_DIR) && isCanonicalChunk(name.slice(1));
}

/** The last call of {@link inTurn} per path, settled or not. */
const turns = new Map<string, Promise<void>>();

/**
 * Runs `work` after every earlier call for the same `path` in this process has
 * settled: deletes and restores of one key, one at a time.
 */
function inTurn<T>(path: string, work: () => Promise<T>): Promise<T> {
  const previous = turns.get(path);
  const result = previous === undefined ? work() : previous.then(work);
  const settled = result.then(
    () => {},
    () => {},
  );
  turns.set(path, settled);
  void settled.then(() => {
    if (turns.get(path) === settled) turns.delete(path);
  });
  return result;
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
  const params = checkParams(loc, ['keepDeleted', 'writeOnOpen']);
  if (loc.authority !== undefined && loc.authority !== '' && loc.authority.toLowerCase() !== 'localhost') {
    throw invalidArgument(
      `${loc.display} names the host '${loc.authority}': a file: location is local; write file:///abs/dir or file:rel/dir`,
    );
  }
  if (loc.path === '') throw invalidArgument(`${loc.display} names no directory; write file:///abs/dir or file:rel/dir`);
  const root = isAbsolute(loc.path) ? loc.path : resolve(process.cwd(), loc.path);
  const options: FileBlobOptions = {};
  const keepDeleted = boolParam(loc, params.keepDeleted, 'keepDeleted');
  const writeOnOpen = boolParam(loc, params.writeOnOpen, 'writeOnOpen');
  if (keepDeleted !== undefined) options.keepDeleted = keepDeleted;
  if (writeOnOpen !== undefined) options.writeOnOpen = writeOnOpen;
  return new FileBlob(root, options);
}
export { fileBackend } from './backend.js';
