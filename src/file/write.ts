/**
 * The write path: `set` writes a temporary file in the target's directory,
 * fdatasyncs it, renames it over the target (the commit point) and fsyncs the
 * directory. A crash leaves the old value or the new one, never a torn or empty
 * value. Two writers of one key both succeed and one value wins whole.
 */
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
  const tmp = await retry(
    async () => {
      await tree.ensureDurableDir(dir, action);
      const tmp = `${dirPath}/${tempName()}`;
      try {
        await writeDurably(tmp, bytes);
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
}

/** Writes `bytes` to a new file at `path` and fdatasyncs it. */
async function writeDurably(path: string, bytes: Buffer): Promise<void> {
  const handle = await open(path, CREATE_FLAGS, 0o644);
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
