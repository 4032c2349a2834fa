/**
 * The write path: `set` writes a temporary file in the target's directory,
 * durably (opened O_DSYNC, so each write returns once its data, and the size and
 * allocation needed to read it back, are on disk: fdatasync's guarantee without
 * a separate call), renames it over the target (the commit point) and fsyncs the
 * directory. A crash leaves the old value or the new one, never a torn or empty
 * value. Two writers of one key both succeed and one value wins whole.
 *
 * Each fs call is one job on libuv's thread pool (4 threads by default), queued
 * behind every other caller's jobs, so a set's latency under load is the number of
 * calls it makes one after the other: open, write, rename and the shared directory
 * fsync. The temporary file is closed beside the rename rather than before it.
 */
import { constants } from 'node:fs';
import { open, rename, unlink } from 'node:fs/promises';
import { aborted } from '../errors.js';
import { retry } from '../kit/backoff.js';
import { errnoOf } from './errors.js';
import { tempName, VALUE } from './layout.js';
import { CREATE_FLAGS } from './roots.js';
import { VANISHED_DIR_RETRY, type Tree } from './tree.js';

/** Stores `bytes` (which nobody else changes meanwhile) as the value `base` in `dir`, atomically and durably. */
export async function writeValue(tree: Tree, dir: string, base: string, bytes: Buffer, action: string, signal: AbortSignal | undefined): Promise<void> {
  const dirPath = tree.abs(dir);
  const target = tree.abs(dir, VALUE + base);
  let vanished: unknown;
  let closing: Promise<void> | undefined;
  const tmp = await retry(
    async () => {
      await tree.ensureDurableDir(dir, action);
      const tmp = `${dirPath}/${tempName()}`;
      try {
        ({ closing } = await writeDurably(tmp, bytes));
        return tmp;
      } catch (err) {
        await unlink(tmp).catch(() => {});
        const mapped = tree.error(err, action);
        if (errnoOf(err) === 'ENOENT') {
          tree.forget(dir); // pruned by another process between our mkdir and our open
          vanished = mapped;
        }
        throw mapped;
      }
    },
    { policy: VANISHED_DIR_RETRY, retryable: (err) => err === vanished },
  );
  try {
    if (signal?.aborted) {
      await unlink(tmp).catch(() => {});
      throw aborted(signal, false);
    }
    try {
      await rename(tmp, target);
    } catch (err) {
      await unlink(tmp).catch(() => {});
      // rename never replaces a directory with a file: nothing was written.
      if (errnoOf(err) === 'EISDIR') throw await tree.notAValue(dir, VALUE + base, action);
      throw tree.error(err, action);
    }
    await tree.syncAfterCommit(dir, action, signal);
  } finally {
    await closing;
  }
}

/** Flags of the temporary file: new, never through a link, every write durable before it returns (where the system has O_DSYNC). */
const TEMP_FLAGS = CREATE_FLAGS | (constants.O_DSYNC ?? 0);

/**
 * Writes `bytes` durably to a new file at `path`; resolves, once they are on
 * disk, with the file's closing (which never rejects: closing a file whose data
 * is on disk loses nothing, and the descriptor is released even when close fails).
 * The closing is wrapped so that awaiting this does not wait for it.
 */
async function writeDurably(path: string, bytes: Buffer): Promise<{ closing: Promise<void> }> {
  const handle = await open(path, TEMP_FLAGS, 0o644);
  try {
    let done = 0;
    while (done < bytes.byteLength) {
      const { bytesWritten } = await handle.write(bytes, done, bytes.byteLength - done, done);
      done += bytesWritten;
    }
    // Without O_DSYNC, or without a write (an empty value), fdatasync does it.
    if (constants.O_DSYNC === undefined || bytes.byteLength === 0) await handle.datasync();
  } catch (err) {
    await handle.close().catch(() => {});
    throw err;
  }
  return { closing: handle.close().catch(() => {}) };
}
