/**
 * EtcdConsensus's changes method (envelope/changes.ts) on etcd's own watch.
 *
 * Every compareAndSet puts the key's head record (etcd/layout.ts), so a watch on
 * that one etcd key, puts only, sees every commit from any client. A handle holds
 * one etcd watch per key being watched, shared by every iteration on that key; it
 * is created with the key's first iteration and cancelled with its last one, or by
 * close(). etcd3 carries all of a client's watches on one gRPC stream.
 *
 * A tick may be spurious but is never missed: besides each put, every iteration of
 * the key ticks when the watch is acknowledged (a commit between subscribing and
 * that moment has no event), when its stream drops, and when it is acknowledged
 * again after reconnecting (etcd3 resumes from the last revision it saw, but a tick
 * costs one read). If etcd cancels a watch (its revision was compacted away while
 * disconnected, or it is refused), the iterations tick and a new watch from the
 * current revision replaces it after a pause.
 */
import type * as etcd3 from 'etcd3';
import { Notifier } from '../envelope/changes.js';
import type { Layout } from './layout.js';

/** Pause before replacing a watch etcd cancelled, so a refused one does not spin. */
const REWATCH_MS = 500;

/** One handle's etcd watches, one per watched key (see the module comment). */
export class EtcdChanges {
  readonly #client: etcd3.Etcd3;
  readonly #layout: Layout;
  readonly #watches = new Map<string, etcd3.Watcher>();
  readonly #rewatch = new Map<string, NodeJS.Timeout>();
  readonly #notifier = new Notifier({ watched: (key) => this.#watch(key), unwatched: (key) => this.#unwatch(key) });
  #closed = false;

  constructor(client: etcd3.Etcd3, layout: Layout) {
    this.#client = client;
    this.#layout = layout;
  }

  /** Ticks for `key` until `signal` fires. */
  changes(key: string, signal: AbortSignal): AsyncIterable<void> {
    return this.#notifier.changes(key, signal);
  }

  /** This handle committed to `key`: tick its iterations now rather than on the watch event. */
  committed(key: string): void {
    this.#notifier.notify(key);
  }

  /** Cancels every watch; the iterations tick once more, and their reads then report the closed handle. */
  close(): void {
    this.#closed = true;
    for (const key of [...this.#watches.keys()]) this.#unwatch(key);
    this.#notifier.notifyAll();
  }

  #watch(key: string): void {
    if (this.#closed) return;
    const tick = () => this.#notifier.notify(key);
    const watcher = this.#client.watch().key(this.#layout.headKey(key)).only('put').watcher();
    watcher.on('put', tick).on('connected', tick).on('disconnected', tick);
    watcher.on('error', () => {
      // Cancelled by etcd (compacted, refused): the watch is gone for good.
      if (this.#watches.get(key) !== watcher) return;
      this.#watches.delete(key);
      tick();
      const timer = setTimeout(() => {
        this.#rewatch.delete(key);
        if (this.#notifier.watching(key)) this.#watch(key);
      }, REWATCH_MS);
      timer.unref();
      this.#rewatch.set(key, timer);
    });
    this.#watches.set(key, watcher);
  }

  #unwatch(key: string): void {
    clearTimeout(this.#rewatch.get(key));
    this.#rewatch.delete(key);
    const watcher = this.#watches.get(key);
    this.#watches.delete(key);
    // Not awaited: etcd's answer to the cancel only confirms it (and a dead stream never answers).
    watcher?.cancel().catch(() => {});
  }
}
