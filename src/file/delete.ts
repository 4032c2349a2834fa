/**
 * Delete and restore.
 *
 * `delete` renames the value to a temporary name (learning its exact size even if
 * another process overwrites it at the same moment), unlinks it, fsyncs the
 * directory, then removes the directories it left empty. A root is never removed:
 * it holds its marker.
 *
 * With `keepDeleted` a delete keeps the value it removed as `x<name>`, and
 * `restore` of a missing key hard-links that file back (link never replaces a
 * value set meanwhile). Without it, `restore` succeeds only for existing keys and
 * otherwise rejects Determinate NotFound. Every delete, with or without
 * keepDeleted, follows one protocol, so that the kept value is always the value of
 * the latest delete, or absent:
 *
 * 1. if the key exists, unlink the kept value and fsync the directory;
 * 2. rename the value to a temporary name, the commit point;
 * 3. with keepDeleted hard-link it as the kept value, without, unlink the kept
 *    value again;
 * 4. unlink the temporary name.
 *
 * From (1) until (3) no value is kept, so a restore running meanwhile either finds
 * the key (before (2)) or rejects NotFound (after): it never links back a value
 * older than the delete, and every outcome is that of the delete and the restore
 * in some order, the restore failing as a backend without restore would. (1) is
 * durable before (2), so no crash leaves the key deleted beside an older kept
 * value: a crash leaves the key, or no key and its deleted value kept, or no key
 * and nothing kept (a crash between (1) and (3) loses the kept value; the deleted
 * value is then a stale temporary file, swept later). A restore leaves the kept
 * file in place, a second name of the restored value; the next delete of the key
 * drops it at (1).
 *
 * Within one process, deletes and restores of one key run one at a time. Across
 * processes, two deletes of one key that overlap (a set landed between them) may
 * both reach (3): the second to get there finds a kept value it cannot order
 * against its own and unlinks it, so nothing is kept; until it has, a restore in a
 * third process could bring back the earlier delete's value.
 */
import { link, lstat, rename, unlink } from 'node:fs/promises';
import { Determinate, ErrorCode } from '../errors.js';
import { errnoOf } from './errors.js';
import { DELETED, tempName, VALUE } from './layout.js';
import { isDirectory, type Tree } from './tree.js';

/** What delete and restore need to know of the handle. */
export interface DeleteContext {
  tree: Tree;
  keepDeleted: boolean;
  /** Marks an unmarked root before the first change (see markRoot in src/file/roots.ts). */
  ensureMarked(action: string): Promise<void>;
}

/**
 * Deletes the value `base` in `dir` (a directory that exists) by the protocol
 * above; resolves its size, or undefined if there was none.
 */
export function deleteValue(ctx: DeleteContext, dir: string, base: string, action: string, signal: AbortSignal | undefined): Promise<number | undefined> {
  return inTurn(ctx.tree.abs(dir, VALUE + base), () => deleteNow(ctx, dir, base, action, signal));
}

async function deleteNow(ctx: DeleteContext, dir: string, base: string, action: string, signal: AbortSignal | undefined): Promise<number | undefined> {
  const { tree } = ctx;
  const valuePath = tree.abs(dir, VALUE + base);
  const keptPath = tree.abs(dir, DELETED + base);
  try {
    if (!(await tree.isValue(dir, base, action))) return undefined;
    // (1): from here until (3) no value is kept; durably so, before the key goes.
    if (await dropKept(keptPath)) await tree.syncer.sync(tree.abs(dir), dir !== '');
  } catch (err) {
    throw tree.error(err, action);
  }
  const tmp = tree.abs(dir, tempName());
  try {
    await rename(valuePath, tmp); // (2)
  } catch (err) {
    if (errnoOf(err) === 'ENOENT') return undefined;
    throw tree.error(err, action);
  }
  // The key is gone from here on: every failure is Indeterminate.
  let size: number;
  try {
    const st = await lstat(tmp);
    if (!st.isFile()) {
      // A directory swapped in after the check above (another location's root being
      // created): it is not ours to move, so it goes back.
      await rename(tmp, valuePath);
      throw await tree.notAValue(dir, VALUE + base, action);
    }
    size = st.size;
    if (ctx.keepDeleted) {
      try {
        await link(tmp, keptPath); // (3)
      } catch (err) {
        if (errnoOf(err) !== 'EEXIST') throw err;
        // A delete in another process kept its value meanwhile; which of the two
        // removed the later value is unknown, so neither is kept.
        await dropKept(keptPath);
      }
    } else {
      await dropKept(keptPath); // (3): a keeping delete in another process may have kept one meanwhile
    }
    await unlink(tmp); // (4)
  } catch (err) {
    throw tree.error(err, action, true);
  }
  await tree.syncAfterCommit(dir, action, signal);
  if (!ctx.keepDeleted) await tree.prune(dir);
  return size;
}

/** Restores the value `base` in `dir`: see the module comment. */
export async function restoreValue(ctx: DeleteContext, dir: string, base: string, action: string, signal: AbortSignal | undefined): Promise<void> {
  const { tree, keepDeleted } = ctx;
  const notFound = (): Determinate =>
    new Determinate(
      ErrorCode.NotFound,
      `${tree.description}: cannot ${action}: the key does not exist${keepDeleted ? ' and no deleted value is kept' : ' (deleted values are kept only with keepDeleted)'}`,
    );
  if (!(await tree.isDir(dir, action))) throw notFound();
  if (await tree.isValue(dir, base, action)) return;
  if (!keepDeleted) throw notFound();
  await ctx.ensureMarked(action);
  const valuePath = tree.abs(dir, VALUE + base);
  const keptPath = tree.abs(dir, DELETED + base);
  await inTurn(valuePath, async () => {
    try {
      // link, not rename: it never replaces a value set meanwhile by someone else.
      await link(keptPath, valuePath);
    } catch (err) {
      const errno = errnoOf(err);
      if (errno === 'EEXIST') {
        await tree.isValue(dir, base, action); // rejects if what is there is no value
        return;
      }
      if (errno === 'ENOENT' || (await isDirectory(keptPath))) {
        if (await tree.isValue(dir, base, action)) return;
        throw notFound();
      }
      throw tree.error(err, action);
    }
    await tree.syncAfterCommit(dir, action, signal);
  });
}

/**
 * Unlinks the kept deleted value at `path`; resolves whether there was one. A
 * directory there is not ours and stays (then nothing is kept for that key).
 */
async function dropKept(path: string): Promise<boolean> {
  try {
    await unlink(path);
    return true;
  } catch (err) {
    const errno = errnoOf(err);
    if (errno === 'ENOENT') return false;
    if ((errno === 'EISDIR' || errno === 'EPERM') && (await isDirectory(path))) return false;
    throw err;
  }
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
