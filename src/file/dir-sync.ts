/**
 * Group commit for directory fsyncs.
 *
 * A rename becomes durable once its directory is fsynced, and one fsync covers
 * every rename that finished before the fsync *started*. So concurrent writers to
 * one directory share fsyncs: a caller either starts an fsync (none is running), or
 * joins the one queued to start when the running one finishes (never the running
 * one itself, which may have started before the caller's rename).
 *
 * While a directory is busy (an fsync running or queued) it stays open, so each
 * fsync after the first costs one step on the thread pool (fsync, beside an lstat)
 * rather than open, fsync, stat and close one after the other. A held descriptor
 * may outlive the directory entry it was opened by: another process can remove the
 * directory (once empty) and create a new one at the same path, and a rename by
 * path then lands in the new one. So every fsync of a held descriptor is paired
 * with an lstat of the path, both started after the caller's call: if the path
 * still names the held directory then, the fsync synced what the path named after
 * the call, as opening it afresh would have. If the path names another directory,
 * that one is opened and fsynced instead.
 */
import { lstat, open, type FileHandle } from 'node:fs/promises';
import { constants } from 'node:fs';

/** Identifies one directory inode: `ino:birthtime`, so a directory removed and re-created is told apart. */
export type DirIdentity = string;

/** A directory held open while it is busy, with its identity. */
interface Held {
  handle: FileHandle;
  identity: DirIdentity;
}

interface DirState {
  running: Promise<DirIdentity | undefined> | undefined;
  queued: Promise<DirIdentity | undefined> | undefined;
  held: Held | undefined;
}

export class DirSyncer {
  readonly #dirs = new Map<string, DirState>();

  /**
   * Resolves once an fsync of `dir` that started after this call has completed,
   * with the identity of the directory that was synced (undefined unless
   * `identify`; a directory should be synced with the same `identify` every time).
   * Without `identify` the path is trusted to name the same directory while it is
   * busy (right for the root, which is never removed).
   */
  sync(dir: string, identify = true): Promise<DirIdentity | undefined> {
    let state = this.#dirs.get(dir);
    if (state === undefined) this.#dirs.set(dir, (state = { running: undefined, queued: undefined, held: undefined }));
    if (state.queued !== undefined) return state.queued;
    if (state.running === undefined) return this.#start(dir, state, identify);
    const s = state;
    s.queued = state.running.then(
      () => undefined,
      () => undefined,
    ).then(() => {
      s.queued = undefined;
      return this.#start(dir, s, identify);
    });
    return s.queued;
  }

  #start(dir: string, state: DirState, identify: boolean): Promise<DirIdentity | undefined> {
    const run: Promise<DirIdentity | undefined> = syncHeld(dir, state, identify).finally(() => {
      if (state.running !== run) return;
      state.running = undefined;
      if (state.queued !== undefined) return;
      this.#dirs.delete(dir);
      release(state);
    });
    state.running = run;
    return run;
  }
}

/** One fsync of `dir` through the descriptor `state` holds, opening (or replacing) it as needed. */
async function syncHeld(dir: string, state: DirState, identify: boolean): Promise<DirIdentity | undefined> {
  const held = state.held;
  if (held !== undefined) {
    try {
      const [, now] = await Promise.all([held.handle.sync(), identify ? identityAt(dir) : undefined]);
      if (!identify) return undefined;
      if (now === held.identity) return now;
    } catch (err) {
      release(state);
      throw err;
    }
    release(state); // the path names another directory now: sync that one instead
  }
  const handle = await open(dir, constants.O_RDONLY | constants.O_DIRECTORY);
  try {
    const [, st] = await Promise.all([handle.sync(), handle.stat({ bigint: true })]);
    state.held = { handle, identity: `${st.ino}:${st.birthtimeNs}` };
  } catch (err) {
    await handle.close().catch(() => {});
    throw err;
  }
  return identify ? state.held.identity : undefined;
}

/** Closes the descriptor `state` holds, if any (in the background: a close loses nothing an fsync made durable). */
function release(state: DirState): void {
  const held = state.held;
  state.held = undefined;
  held?.handle.close().catch(() => {});
}

/** The identity of the directory `dir` names now; rejects (ENOENT) if none. */
async function identityAt(dir: string): Promise<DirIdentity> {
  const st = await lstat(dir, { bigint: true });
  return `${st.ino}:${st.birthtimeNs}`;
}
