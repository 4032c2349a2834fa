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
import type { Blob, BlobMetadata } from '../blob.js';
import type { CaSResult, Consensus, OpOptions, VersionedData } from '../consensus.js';
import type { SegmentedBytes } from '../segmented-bytes.js';
import type { SeqNo } from '../seqno.js';

/** Waits for calls still running after an interrupt at most this long (a hung server must not hold Ctrl-C). */
const SETTLE_MS = 15_000;

export class Gate {
  #shut = false;
  #running = 0;
  #onIdle: (() => void)[] = [];
  readonly #handles: { close(): Promise<void> }[] = [];

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

  /** Opens a Consensus through the gate; its calls go through the gate too. */
  async consensus(open: () => Promise<Consensus>): Promise<Consensus> {
    const inner = await this.run(open);
    this.#handles.push(inner);
    return {
      listKeys: (opts?: OpOptions) => this.#iterable(() => inner.listKeys(opts)),
      head: (key: string, opts?: OpOptions): Promise<VersionedData | undefined> => this.run(() => inner.head(key, opts)),
      compareAndSet: (key: string, expected: SeqNo | undefined, next: VersionedData, opts?: OpOptions): Promise<CaSResult> =>
        this.run(() => inner.compareAndSet(key, expected, next, opts)),
      scan: (key: string, from: SeqNo, limit: number, opts?: OpOptions): Promise<VersionedData[]> => this.run(() => inner.scan(key, from, limit, opts)),
      truncate: (key: string, seqno: SeqNo, opts?: OpOptions): Promise<number> => this.run(() => inner.truncate(key, seqno, opts)),
      close: () => this.run(() => inner.close()),
      [Symbol.asyncDispose]: () => this.run(() => inner.close()),
    };
  }

  /** Opens a Blob through the gate; its calls go through the gate too. */
  async blob(open: () => Promise<Blob>): Promise<Blob> {
    const inner = await this.run(open);
    this.#handles.push(inner);
    const gated: Blob = {
      get: (key: string, opts?: OpOptions): Promise<SegmentedBytes | undefined> => this.run(() => inner.get(key, opts)),
      list: (prefix?: string, opts?: OpOptions) => this.#iterable<BlobMetadata>(() => inner.list(prefix, opts)),
      set: (key: string, value: Uint8Array, opts?: OpOptions): Promise<void> => this.run(() => inner.set(key, value, opts)),
      delete: (key: string, opts?: OpOptions): Promise<number | undefined> => this.run(() => inner.delete(key, opts)),
      restore: (key: string, opts?: OpOptions): Promise<void> => this.run(() => inner.restore(key, opts)),
      close: () => this.run(() => inner.close()),
      [Symbol.asyncDispose]: () => this.run(() => inner.close()),
    };
    // Object stores cap keys lower than the interface does: check reads the cap.
    const cap = (inner as Blob & { maxKeyBytes?: number }).maxKeyBytes;
    return cap === undefined ? gated : Object.assign(gated, { maxKeyBytes: cap });
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

  #iterable<T>(make: () => AsyncIterable<T>): AsyncIterable<T> {
    const gate = this;
    return {
      [Symbol.asyncIterator](): AsyncIterator<T> {
        let it: AsyncIterator<T> | undefined;
        return {
          next: () => gate.run(() => (it ??= make()[Symbol.asyncIterator]()).next()),
          return: (value?: unknown) => gate.run(async () => (await it?.return?.(value)) ?? { done: true as const, value: undefined }),
        };
      },
    };
  }
}

function parked<T>(): Promise<T> {
  return new Promise<T>(() => {});
}

async function withinSettleTime(p: Promise<unknown>): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([p, new Promise<void>((resolve) => (timer = setTimeout(resolve, SETTLE_MS)))]);
  clearTimeout(timer);
}
