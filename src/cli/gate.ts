/**
 * The gate `check` puts between its work and the handles it opens in its scratch
 * locations, so that Ctrl-C can remove those locations for good.
 *
 * Removing a scratch location while the suites still run is a race: a suite that
 * opens its next location, or a write that creates a directory, after the removal
 * leaves data behind. So an interrupt first shuts the gate: every later open or call
 * parks (never settles, so the suites stop where they are), the calls already
 * running are waited for, the handles are closed, and only then is the scratch
 * location removed.
 */
import type { Blob } from '../blob.js';
import type { Consensus } from '../consensus.js';
import { withDeadline } from '../kit/deadline.js';
import { wrapBlob, wrapConsensus } from '../wrap.js';

/** Waits for calls still running after an interrupt at most this long (a hung server must not hold Ctrl-C). */
const SETTLE_MS = 15_000;

export class Gate {
  #shut = false;
  #running = 0;
  #onIdle: (() => void)[] = [];
  readonly #handles: { close(): Promise<void> }[] = [];
  /** Runs every call, listing step and close of a handle opened through the gate through {@link run}. */
  readonly #interceptor = {
    around: <T>(_op: string, _args: readonly unknown[], run: () => Promise<T>): Promise<T> => this.run(run),
    step: <T>(_op: string, _args: readonly unknown[], run: () => Promise<T>): Promise<T> => this.run(run),
    close: (forward: () => Promise<void>): Promise<void> => this.run(forward),
  };

  /** True once {@link shut} was called. */
  get isShut(): boolean {
    return this.#shut;
  }

  /** Runs `work` unless the gate is shut (then parks), counting it while it runs. */
  async run<T>(work: () => Promise<T>): Promise<T> {
    if (this.#shut) return parked();
    this.#running++;
    try {
      return await work();
    } finally {
      if (--this.#running === 0) for (const resolve of this.#onIdle.splice(0)) resolve();
    }
  }

  /** Opens a Consensus through the gate; its calls, listing steps and close go through the gate too. */
  async consensus(open: () => Promise<Consensus>): Promise<Consensus> {
    const inner = await this.run(open);
    this.#handles.push(inner);
    return wrapConsensus(inner, this.#interceptor);
  }

  /**
   * Opens a Blob through the gate; its calls, listing steps and close go through
   * the gate too. An object store's `maxKeyBytes` shows through.
   */
  async blob(open: () => Promise<Blob>): Promise<Blob> {
    const inner = await this.run(open);
    this.#handles.push(inner);
    return wrapBlob(inner, this.#interceptor);
  }

  /**
   * Shuts the gate: later calls park; resolves once the calls already running have
   * settled (or after a while, if one hangs) and every handle opened through the gate
   * is closed.
   */
  async shut(): Promise<void> {
    this.#shut = true;
    const settled = this.#running === 0 ? Promise.resolve() : new Promise<void>((resolve) => this.#onIdle.push(resolve));
    await withinSettleTime(settled);
    await withinSettleTime(Promise.allSettled(this.#handles.map((h) => h.close())));
  }
}

function parked<T>(): Promise<T> {
  return new Promise<T>(() => {});
}

/** Waits for `p` to settle, or for {@link SETTLE_MS}, whichever comes first. */
async function withinSettleTime(p: Promise<unknown>): Promise<void> {
  await withDeadline(undefined, SETTLE_MS, () => p).catch(() => {});
}
