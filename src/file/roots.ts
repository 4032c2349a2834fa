/**
 * Roots: how a directory becomes a location's root, and why no location can be
 * opened inside another one.
 *
 * Every root holds the marker `.pl-root`, a name the layout never gives anything
 * else. Opening writes it if missing (so a root made before markers existed is
 * marked the first time it is opened) and refuses, Determinate FailedPrecondition
 * naming both directories, a root that lies inside another one (a directory above
 * it holds a marker): such a root's names would be the other location's keys. The
 * check runs before anything is created and again after the marker is written, so
 * of two locations opened at the same moment one inside the other, at least one
 * open sees the other's marker; a refused open removes the marker and the
 * directories it created. The other order (the inner location first) cannot be
 * refused at open without reading the whole tree, so the walk checks instead (see
 * src/file/tree.ts): a directory that the layout walks into and that holds a marker
 * is another location's root.
 *
 * Opening without writing (`writeOnOpen: false`): a missing root rejects
 * Determinate NotFound instead of being created, and no marker is written (an
 * unmarked root is marked by the handle's first set, delete or restore instead,
 * see {@link markRoot}). The nesting check still runs.
 *
 * These steps run synchronously: opening is rare, and the constructor that runs
 * them must be done when it returns.
 */
import { closeSync, constants, fsyncSync, lstatSync, mkdirSync, openSync, realpathSync, rmdirSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { lstat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { Determinate, ErrorCode, invalidArgument } from '../errors.js';
import { errnoOf } from './errors.js';
import { ROOT_MARKER } from './layout.js';

/** Flags of a file that must be new and is never reached through a symbolic link. */
export const CREATE_FLAGS = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;
const MARKER_TEXT = 'persist-location FileBlob root: no other location can be opened inside this directory.\n';

/** A root as opened: the real path, and whether it holds its marker. */
export interface OpenedRoot {
  root: string;
  marked: boolean;
}

/**
 * Opens the root at `wanted` for writing: refuses it inside another root, creates
 * it if missing (durably: new directories are fsynced into their parents), marks
 * it, and checks again.
 */
export function openRoot(wanted: string): OpenedRoot {
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
export function findRoot(wanted: string): OpenedRoot {
  let root: string;
  try {
    root = realpathSync(wanted);
  } catch (err) {
    if (errnoOf(err) !== 'ENOENT') throw err;
    throw new Determinate(ErrorCode.NotFound, `FileBlob(${wanted}): the directory ${wanted} does not exist (and opening without create makes none)`, { cause: err });
  }
  if (!statSync(root).isDirectory()) throw invalidArgument(`FileBlob(${wanted}): ${wanted} is not a directory`);
  const outer = enclosingRoot(root);
  if (outer !== undefined) throw nestedRoot(wanted, outer);
  return { root, marked: holdsMarkerSync(root) };
}

/**
 * Marks the root of a handle opened with writeOnOpen: false before its first
 * write, with the same nesting check as an ordinary open.
 */
export function markRoot(root: string): void {
  const made = writeMarker(root);
  const outer = enclosingRoot(root);
  if (outer !== undefined) {
    if (made) unlinkSync(join(root, ROOT_MARKER));
    throw nestedRoot(root, outer);
  }
}

/** Whether `dir` (absolute) holds a root marker, i.e. is a location's root. */
export async function holdsMarker(dir: string): Promise<boolean> {
  try {
    await lstat(join(dir, ROOT_MARKER));
    return true;
  } catch (err) {
    const errno = errnoOf(err);
    if (errno === 'ENOENT' || errno === 'ENOTDIR') return false;
    throw err;
  }
}

/** Fsyncs a directory's entries (a file created or removed in it). */
export function fsyncDirSync(dir: string): void {
  const fd = openSync(dir, constants.O_RDONLY | constants.O_DIRECTORY);
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
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

/** Fsyncs the parents of every directory that `mkdir -p` just created (from `first` down to `last`). */
function fsyncNewDirectories(first: string, last: string): void {
  const dirs: string[] = [];
  for (let d = last; ; d = dirname(d)) {
    dirs.push(dirname(d));
    if (d === first || dirname(d) === d) break;
  }
  for (const d of dirs) fsyncDirSync(d);
}

/** The nearest directory strictly above `path` (absolute, real) that is a location's root. */
function enclosingRoot(path: string): string | undefined {
  for (let d = dirname(path); ; d = dirname(d)) {
    if (holdsMarkerSync(d)) return d;
    if (dirname(d) === d) return undefined;
  }
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
    fd = openSync(join(root, ROOT_MARKER), CREATE_FLAGS, 0o644);
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
