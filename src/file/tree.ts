/**
 * The directories of one handle's root: walking them safely, making them exist
 * durably, and making a committed change durable.
 *
 * Walking. A directory that the layout walks into (by get, set, delete, restore
 * or list) must be a chain of real directories from the root: a symbolic link (or
 * any non-directory) planted where the layout expects a directory is refused,
 * Determinate DataLoss, and a directory that holds a root marker is another
 * location's root (see src/file/roots.ts): get, set, delete and restore through it
 * reject Determinate FailedPrecondition, list skips it. A value name (`vk`, `xk`)
 * that is a directory rejects Determinate and is never read, replaced, renamed or
 * removed. That costs one stat per directory, the first time a handle walks it.
 * A link swapped in for a directory after this handle checked it is followed by
 * the handle until a write through it notices the change (and fails Indeterminate
 * DataLoss): Node.js has no openat(), so checking every component on every
 * operation would cost a system call per level.
 *
 * Durability. A directory is fsynced into its parent the first time a handle uses
 * it, so a value in a freshly created directory survives a crash. Concurrent
 * writers in one directory share its fsyncs (src/file/dir-sync.ts).
 *
 * Sharing a root. Removing an empty directory races with another process creating
 * a file in it: rmdir only removes empty directories, and a writer whose directory
 * vanished under it (ENOENT) re-creates it and retries; a writer that finds its
 * directory re-created by someone else fsyncs the parent again.
 */
import { lstat, mkdir, rmdir } from 'node:fs/promises';
import { aborted, Determinate, ErrorCode, type ExternalError } from '../errors.js';
import { retry, type BackoffPolicy } from '../kit/backoff.js';
import { withDeadline } from '../kit/deadline.js';
import { DirSyncer, type DirIdentity } from './dir-sync.js';
import { errnoOf, fsError } from './errors.js';
import { ROOT_MARKER, VALUE } from './layout.js';
import { holdsMarker } from './roots.js';

/**
 * Attempts of a step whose directory keeps vanishing under it (another process
 * pruning it), at once one after the other: each attempt re-creates what vanished.
 */
export const VANISHED_DIR_RETRY: Readonly<BackoffPolicy> = Object.freeze({ attempts: 20, minDelayMs: 0, maxDelayMs: 0, multiplier: 1, jitter: 0 });

/** Known directories remembered per handle before the caches start over. */
const MAX_CACHED_DIRS = 10_000;

/** The directory state of one handle. Directories are relative to the root, '' is the root. */
export class Tree {
  readonly syncer = new DirSyncer();
  /** Directories that exist, are real directories and whose entry in the parent is durable, with their identity. */
  readonly #durable = new Map<string, Promise<DirIdentity>>();
  /** Directories checked to be real directories (no symbolic link on the way) and no other location's root. */
  readonly #checked = new Set<string>();

  constructor(
    /** The root directory (absolute, symbolic links resolved). */
    readonly root: string,
    /** The handle, for messages: `FileBlob(<root>)`. */
    readonly description: string,
  ) {}

  /** The absolute path of `dir`, or of `name` in it. */
  abs(dir: string, name?: string): string {
    const d = dir === '' ? this.root : `${this.root}/${dir}`;
    return name === undefined ? d : `${d}/${name}`;
  }

  /** `err` as the ExternalError of `action` (see src/file/errors.ts). */
  error(err: unknown, action: string, committed = false): ExternalError {
    return fsError(err, { description: this.description, action, committed });
  }

  /**
   * Whether `dir` exists as a chain of real directories (never through a symbolic
   * link) none of which is another location's root. Rejects Determinate DataLoss
   * when something else stands in the way; for another location's root rejects
   * Determinate FailedPrecondition, or resolves false if `skipForeign`.
   */
  async isDir(dir: string, action: string, skipForeign = false): Promise<boolean> {
    if (dir === '' || this.#checked.has(dir)) return true;
    let path = '';
    for (const name of dir.split('/')) {
      path = path === '' ? name : `${path}/${name}`;
      if (this.#checked.has(path)) continue;
      try {
        const st = await lstat(this.abs(path));
        if (!st.isDirectory()) throw this.#notADirectory(path, action);
        if (await holdsMarker(this.abs(path))) {
          if (skipForeign) return false;
          throw this.foreignRoot(this.abs(path), action);
        }
      } catch (err) {
        if (errnoOf(err) === 'ENOENT') return false;
        throw this.error(err, action);
      }
      this.#remember(this.#checked, path);
    }
    return true;
  }

  foreignRoot(path: string, action: string): Determinate {
    return new Determinate(
      ErrorCode.FailedPrecondition,
      `${this.description}: ${action}: ${path} is the root of another location (it holds ${ROOT_MARKER}); nothing inside it is this location's`,
    );
  }

  /** The error for `dir`/`name`, where a value file belongs, being something else. */
  async notAValue(dir: string, name: string, action: string): Promise<Determinate> {
    const path = this.abs(dir, name);
    if (await holdsMarker(path).catch(() => false)) return this.foreignRoot(path, action);
    return new Determinate(ErrorCode.DataLoss, `${this.description}: ${action}: ${path} is not a regular file`);
  }

  /** Whether the value of `dir`/`base` exists; rejects Determinate if something other than a file is in its place. */
  async isValue(dir: string, base: string, action: string): Promise<boolean> {
    try {
      if ((await lstat(this.abs(dir, VALUE + base))).isFile()) return true;
    } catch (err) {
      if (errnoOf(err) === 'ENOENT') return false;
      throw this.error(err, action);
    }
    throw await this.notAValue(dir, VALUE + base, action);
  }

  /** Makes `dir` exist, checked, with its entry in its parent durable (once per handle). */
  async ensureDurableDir(dir: string, action: string): Promise<DirIdentity | undefined> {
    if (dir === '') return undefined;
    let known = this.#durable.get(dir);
    if (known === undefined) {
      known = this.#discover(dir, parentOf(dir), action);
      this.#remember(this.#durable, dir, known);
      known.catch(() => {
        if (this.#durable.get(dir) === known) this.#durable.delete(dir);
      });
    }
    return known;
  }

  /** Creates or finds `dir`, then fsyncs its parent; starts over when another process pruned the parent meanwhile. */
  #discover(dir: string, parent: string, action: string): Promise<DirIdentity> {
    const path = this.abs(dir);
    let vanished: unknown;
    const attempt = async (): Promise<DirIdentity> => {
      await this.ensureDurableDir(parent, action);
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
        if (!made && !this.#checked.has(dir) && (await holdsMarker(path))) throw this.foreignRoot(path, action);
        // Whoever created it may not have fsynced the parent yet; we must not rely on them.
        await this.syncer.sync(this.abs(parent), parent !== '');
        this.#remember(this.#checked, dir);
        return `${st.ino}:${st.birthtimeNs}`;
      } catch (err) {
        const mapped = this.error(err, action);
        if (errnoOf(err) === 'ENOENT') {
          this.forget(parent);
          vanished = mapped;
        }
        throw mapped;
      }
    };
    return retry(attempt, { policy: VANISHED_DIR_RETRY, retryable: (err) => err === vanished });
  }

  /** Drops what this handle believes about `dir` and its ancestors. */
  forget(dir: string): void {
    for (let d = dir; d !== ''; d = parentOf(d)) {
      this.#durable.delete(d);
      this.#checked.delete(d);
    }
  }

  /**
   * The fsync that makes a committed change durable. If the directory turns out to
   * be a different one than this handle made durable (another process removed and
   * re-created it), its entry in the parent is fsynced again. If it is gone, another
   * process has since removed our change with it (a delete, then the pruning of the
   * empty directory): then the nearest ancestor is fsynced, which makes that removal
   * durable instead. An abort answers at once, Indeterminate.
   */
  async syncAfterCommit(dir: string, action: string, signal: AbortSignal | undefined): Promise<void> {
    const work = (async () => {
      for (let d = dir; ; d = parentOf(d)) {
        let identity: DirIdentity | undefined;
        try {
          identity = await this.syncer.sync(this.abs(d), d !== '');
        } catch (err) {
          if (d === '' || errnoOf(err) !== 'ENOENT') throw err;
          this.forget(d);
          continue;
        }
        if (d === '') return;
        const known = await this.#durable.get(d)?.catch(() => undefined);
        if (known === identity) return;
        this.forget(d);
        await this.ensureDurableDir(d, action);
        return;
      }
    })();
    work.catch(() => {}); // an abort may answer first; the failure is then dropped
    try {
      await (signal === undefined ? work : withDeadline(signal, undefined, () => work, { cutOff: () => aborted(signal, 'committed') }));
    } catch (err) {
      throw this.error(err, action, true);
    }
  }

  /** Removes `dir` and its ancestors while they are empty; resolves how many went. */
  async prune(dir: string): Promise<number> {
    let removed = 0;
    for (let d = dir; d !== ''; d = parentOf(d)) {
      try {
        await rmdir(this.abs(d));
      } catch {
        break; // ENOTEMPTY (someone is using it), ENOENT (someone removed it), anything else: leave it
      }
      this.#durable.delete(d);
      this.#checked.delete(d);
      removed++;
    }
    return removed;
  }

  #notADirectory(dir: string, action: string): Determinate {
    return new Determinate(
      ErrorCode.DataLoss,
      `${this.description}: ${action}: ${this.abs(dir)} is not a directory (a symbolic link inside the root is never followed)`,
    );
  }

  #remember<V>(cache: Map<string, V> | Set<string>, dir: string, value?: V): void {
    if (cache.size >= MAX_CACHED_DIRS) cache.clear();
    if (cache instanceof Set) cache.add(dir);
    else cache.set(dir, value!);
  }
}

/** The parent of a relative directory ('' = the root). */
export function parentOf(dir: string): string {
  const cut = dir.lastIndexOf('/');
  return cut < 0 ? '' : dir.slice(0, cut);
}

/** Whether the directory `dir`, whose listing is `entries`, is another location's root (holds a marker). */
export function isForeignRoot(dir: string, entries: readonly { name: string }[]): boolean {
  return dir !== '' && entries.some((e) => e.name === ROOT_MARKER);
}

/** Whether `path` is a directory (not through a symbolic link); false when it cannot be told. */
export async function isDirectory(path: string): Promise<boolean> {
  return lstat(path).then(
    (st) => st.isDirectory(),
    () => false,
  );
}
