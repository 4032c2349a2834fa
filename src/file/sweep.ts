/**
 * The sweep of stale temporary files.
 *
 * Temporary files never show in `list`. A handle sweeps stale ones in the
 * background when it opens (`sweepOnOpen`, default true; `sweep()` runs one now).
 * It removes only files whose whole name is one that src/file/layout.ts generates,
 * and only when stale: their writer (pid, on this host) is dead, or they are
 * unchanged for `staleTempMs` (default 15 minutes, judged by the file's change
 * time, which a rename bumps; a writer still busy after that merely sees its `set`
 * fail Determinate, because its temporary file is gone and the target untouched).
 * It walks only directories whose names the layout produces (`d`/`c` and a
 * canonical escaped chunk), never a symbolic link and never another location's
 * root. The only directories it removes are those it emptied itself, by removing
 * a stale temporary file (or a directory it emptied) from them: a directory that
 * was empty already, made by the layout or by anyone else (`docs/`, `config/`),
 * stays.
 */
import { lstat, readdir, rmdir, unlink } from 'node:fs/promises';
import { errnoOf } from './errors.js';
import { CHUNK_DIR, SEGMENT_DIR, isCanonicalChunk, tempOwner } from './layout.js';
import { isForeignRoot, type Tree } from './tree.js';

/** Result of {@link FileBlob.sweep}. */
export interface SweepReport {
  /** Stale temporary files removed. */
  tempFiles: number;
  /** Directories removed because the sweep emptied them. */
  directories: number;
}

/** Temporary files unchanged for longer than this are stale, by default. */
export const DEFAULT_STALE_TEMP_MS = 15 * 60 * 1000;

/** Sweeps `tree` (see the module comment) until done or `signal` fires. */
export async function sweep(tree: Tree, staleTempMs: number, signal: AbortSignal): Promise<SweepReport> {
  const report: SweepReport = { tempFiles: 0, directories: 0 };
  const now = Date.now();
  // Post-order, so that a directory the sweep emptied can go, and then its parent.
  // Resolves whether `dir` itself was removed.
  const visit = async (dir: string): Promise<boolean> => {
    if (signal.aborted) return false;
    let entries;
    try {
      entries = await readdir(tree.abs(dir), { withFileTypes: true });
    } catch {
      return false;
    }
    if (isForeignRoot(dir, entries)) return false;
    let emptied = false;
    for (const entry of entries) {
      if (signal.aborted) return false;
      const child = dir === '' ? entry.name : `${dir}/${entry.name}`;
      if (entry.isDirectory() && isLayoutDir(entry.name)) {
        if (await visit(child)) emptied = true;
      } else if (entry.isFile() && tempOwner(entry.name) !== undefined) {
        if (await isStaleTemp(tree.abs(child), entry.name, now, staleTempMs)) {
          await unlink(tree.abs(child)).then(
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
    return rmdir(tree.abs(dir)).then(
      () => {
        tree.forget(dir);
        report.directories++;
        return true;
      },
      () => false,
    );
  };
  await visit('');
  return report;
}

async function isStaleTemp(path: string, name: string, now: number, staleTempMs: number): Promise<boolean> {
  const owner = tempOwner(name);
  if (owner?.thisHost === true && owner.pid !== process.pid && !processAlive(owner.pid)) return true;
  try {
    // The change time, not only the modification time: a delete renames the value
    // to a temporary name, which keeps the value's old mtime but bumps its ctime.
    const st = await lstat(path);
    return now - Math.max(st.mtimeMs, st.ctimeMs) > staleTempMs;
  } catch {
    return false;
  }
}

/** Whether `name` is a directory name the layout produces. */
function isLayoutDir(name: string): boolean {
  return (name[0] === SEGMENT_DIR || name[0] === CHUNK_DIR) && isCanonicalChunk(name.slice(1));
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return errnoOf(err) !== 'ESRCH';
  }
}
