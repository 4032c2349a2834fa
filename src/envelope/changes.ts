/**
 * The seam through which a backend tells watchers that a key changed.
 *
 * A Consensus handle that can tell has a method under {@link CHANGES}: given a key
 * and a signal, it returns an async iterable of ticks, each meaning "this key may
 * have a new head since the last tick", until the signal fires. Ticks may be
 * spurious and may be coalesced, but a change made after the iteration started is
 * followed by a tick. `watch` subscribes before it reads, so it never misses a
 * head. Wrappers forward the method (see wrap.ts); a handle without it is polled.
 */

/** The registered symbol of the changes method. */
export const CHANGES: unique symbol = Symbol.for('persist-location.changes');

/** The changes method of a handle (see the module comment). */
export type ChangesMethod = (key: string, signal: AbortSignal) => AsyncIterable<void>;

/** The changes method of `store`, if it has one. */
export function changesOf(store: object): ChangesMethod | undefined {
  const method = (store as { [CHANGES]?: unknown })[CHANGES];
  return typeof method === 'function' ? (method.bind(store) as ChangesMethod) : undefined;
}

/** What a backend does when a key gains its first iteration or loses its last (see {@link Notifier}). */
export interface NotifierHooks {
  /** `key` has its first iteration: start listening to the storage for it. */
  watched?(key: string): void;
  /** The last iteration of `key` ended: stop listening for it. */
  unwatched?(key: string): void;
}

/**
 * In-process ticks per key: a backend calls {@link notify} after a change is
 * visible, and hands {@link changes} out as its changes method. A backend whose
 * notifications come from its storage (etcd, PostgreSQL) passes hooks, to hold one
 * subscription per watched key (or one while any key is watched) however many
 * iterations share it.
 */
export class Notifier {
  readonly #waiting = new Map<string, Set<() => void>>();
  readonly #hooks: NotifierHooks;

  constructor(hooks: NotifierHooks = {}) {
    this.#hooks = hooks;
  }

  /** Wakes every iteration of `changes(key)`. */
  notify(key: string): void {
    const listeners = this.#waiting.get(key);
    if (listeners !== undefined) for (const wake of listeners) wake();
  }

  /** Wakes every iteration of every key: when the storage may have changed in ways nobody was told of. */
  notifyAll(): void {
    for (const key of [...this.#waiting.keys()]) this.notify(key);
  }

  /** Whether anyone is listening at all. */
  get listening(): boolean {
    return this.#waiting.size > 0;
  }

  /** Whether `key` has an iteration. */
  watching(key: string): boolean {
    return this.#waiting.has(key);
  }

  /** Ticks for `key` until `signal` fires (see the module comment); ticks coalesce. */
  changes(key: string, signal: AbortSignal): AsyncIterable<void> {
    return { [Symbol.asyncIterator]: () => this.#iterator(key, signal) };
  }

  /** Every key someone is listening to. */
  keys(): IterableIterator<string> {
    return this.#waiting.keys();
  }

  #iterator(key: string, signal: AbortSignal): AsyncIterator<void> {
    let pending = false;
    let resolveNext: ((r: IteratorResult<void>) => void) | undefined;
    const wake = () => {
      if (resolveNext === undefined) pending = true;
      else {
        const r = resolveNext;
        resolveNext = undefined;
        r({ done: false, value: undefined });
      }
    };
    const stop = () => {
      const listeners = this.#waiting.get(key);
      if (listeners?.delete(wake) === true && listeners.size === 0) {
        this.#waiting.delete(key);
        this.#hooks.unwatched?.(key);
      }
      signal.removeEventListener('abort', stop);
      const r = resolveNext;
      resolveNext = undefined;
      r?.({ done: true, value: undefined });
    };
    let listeners = this.#waiting.get(key);
    if (listeners === undefined) {
      this.#waiting.set(key, (listeners = new Set()));
      this.#hooks.watched?.(key);
    }
    listeners.add(wake);
    if (signal.aborted) stop();
    else signal.addEventListener('abort', stop, { once: true });
    return {
      next: () => {
        if (signal.aborted) return Promise.resolve({ done: true, value: undefined });
        if (pending) {
          pending = false;
          return Promise.resolve({ done: false, value: undefined });
        }
        return new Promise((resolve) => (resolveNext = resolve));
      },
      return: () => {
        stop();
        return Promise.resolve({ done: true, value: undefined });
      },
    };
  }
}
