/**
 * Group commit for directory fsyncs.
 *
 * A rename becomes durable once its directory is fsynced, and one fsync covers
 * every rename that finished before the fsync *started*. So concurrent writers to
 * one directory share fsyncs: a caller either starts an fsync (none is running), or
 * joins the one queued to start when the running one finishes (never the running
 * one itself, which may have started before the caller's rename).
 */
import { open } from 'node:fs/promises';
import { constants } from 'node:fs';

/** Identifies one directory inode: `ino:birthtime`, so a directory removed and re-created is told apart. */
export type DirIdentity = string;

interface DirState {
  running: Promise<DirIdentity | undefined> | undefined;
  queued: Promise<DirIdentity | undefined> | undefined;
}

export class DirSyncer {
  readonly #dirs = new Map<string, DirState>();

  /**
   * Resolves once an fsync of `dir` that started after this call has completed,
   * with the identity of the directory that was synced (undefined unless
   * `identify`; a directory should be synced with the same `identify` every time).
   */
  sync(dir: string, identify = true): Promise<DirIdentity | undefined> {
    let state = this.#dirs.get(dir);
    if (state === undefined) this.#dirs.set(dir, (state = { running: undefined, queued: undefined }));
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
    const run: Promise<DirIdentity | undefined> = fsyncDir(dir, identify).finally(() => {
      if (state.running !== run) return;
      state.running = undefined;
      if (state.queued === undefined) this.#dirs.delete(dir);
    });
    state.running = run;
    return run;
  }
}

/** Fsyncs one directory and, if asked, returns its identity. */
export async function fsyncDir(dir: string, identify: boolean): Promise<DirIdentity | undefined> {
  const handle = await open(dir, constants.O_RDONLY | constants.O_DIRECTORY);
  try {
    await handle.sync();
    if (!identify) return undefined;
    const st = await handle.stat({ bigint: true });
    return `${st.ino}:${st.birthtimeNs}`;
  } finally {
    await handle.close();
  }
}
