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
import { open, rename, unlink, type FileHandle } from 'node:fs/promises';
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
  const { tmp, file } = await retry(
    async () => {
      await tree.ensureDurableDir(dir, action);
      const tmp = `${dirPath}/${tempName()}`;
      try {
        return { tmp, file: await writeDurably(tmp, bytes) };
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
  let closing: Promise<void> | undefined;
  try {
    if (signal?.aborted) {
      await unlink(tmp).catch(() => {});
      throw aborted(signal, false);
    }
    const renaming = rename(tmp, target);
    closing = closeQuietly(file); // queued after the rename, which is what the caller waits for
    try {
      await renaming;
    } catch (err) {
      await unlink(tmp).catch(() => {});
      // rename never replaces a directory with a file: nothing was written.
      if (errnoOf(err) === 'EISDIR') throw await tree.notAValue(dir, VALUE + base, action);
      throw tree.error(err, action);
    }
    await tree.syncAfterCommit(dir, action, signal);
  } finally {
    await (closing ?? closeQuietly(file));
  }
}

/** Flags of the temporary file: new, never through a link, every write durable before it returns (where the system has O_DSYNC). */
const TEMP_FLAGS = CREATE_FLAGS | (constants.O_DSYNC ?? 0);

/** Writes `bytes` to a new file at `path`; resolves with the file, still open, once they are on disk. */
async function writeDurably(path: string, bytes: Buffer): Promise<FileHandle> {
  const handle = await open(path, TEMP_FLAGS, 0o644);
  try {
    let done = 0;
    while (done < bytes.byteLength) {
      const { bytesWritten } = await handle.write(bytes, done, bytes.byteLength - done, done);
      done += bytesWritten;
    }
    // Without O_DSYNC, or without a write (an empty value), fdatasync does it.
    if (constants.O_DSYNC === undefined || bytes.byteLength === 0) await handle.datasync();
    return handle;
  } catch (err) {
    await closeQuietly(handle);
    throw err;
  }
}

/** Closes a file whose data is on disk (or is being discarded): a failed close loses nothing, and Linux releases the descriptor even then. */
function closeQuietly(handle: FileHandle): Promise<void> {
  return handle.close().catch(() => {});
}
