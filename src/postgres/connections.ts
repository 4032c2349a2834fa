/**
 * The connections of one handle: a `pg.Pool`, and in front of it the connections
 * statements gave back in the last second, kept checked out for the next statement
 * (the most recent first). Taking a kept connection is a pop, where the pool's
 * checkout costs a promise, a deferred pulse of its queue, a timer for its connect
 * budget and another for its idle timeout: on a lone compareAndSet's round trip
 * over loopback that was a tenth of the client's CPU.
 *
 * What the pool guarantees still holds:
 * - A connection is never kept while someone waits in the pool: it goes back to
 *   the pool, which hands it to the first waiter. (A caller only waits in the pool
 *   after finding nothing kept, and JavaScript runs one of these at a time.)
 * - A kept connection does not keep the process alive (like the pool's idle ones
 *   with `allowExitOnIdle`), and one unused for a second goes back to the pool,
 *   whose idle timeout then closes it.
 * - A connection that fails while kept (the server restarts, the socket breaks) is
 *   dropped at once, so nothing takes a dead connection.
 * - A connection given back with an error is destroyed, as the pool does.
 */
import { performance } from 'node:perf_hooks';
import type pg from 'pg';

/** How long a given-back connection stays kept before it returns to the pool. */
const KEEP_MS = 1000;

interface Kept {
  client: pg.PoolClient;
  at: number;
}

/** pg's Client has these (they ref and unref its socket), @types/pg does not declare them. */
type Refable = { ref(): void; unref(): void };

export class Connections {
  readonly #pool: pg.Pool;
  readonly #kept: Kept[] = [];
  #trim: NodeJS.Timeout | undefined;
  #closing = false;

  constructor(pool: pg.Pool) {
    this.#pool = pool;
    // An 'error' event without a listener would crash the process (on a connection
    // being discarded after an abandoned statement, say); the query running on it,
    // or the pool for an idle one, hears of the failure on its own.
    pool.on('error', () => {});
    pool.on('connect', (client) => {
      client.on('error', () => this.#drop(client as pg.PoolClient));
      client.on('end', () => this.#drop(client as pg.PoolClient));
    });
  }

  /** A kept connection, if any (the most recently given back). */
  takeKept(): pg.PoolClient | undefined {
    const kept = this.#kept.pop();
    if (kept === undefined) return undefined;
    (kept.client as unknown as Refable).ref();
    return kept.client;
  }

  /** A connection from the pool, waiting at most its connect budget. */
  connect(): Promise<pg.PoolClient> {
    return this.#pool.connect();
  }

  /** Gives back a connection taken from here; with `err`, it is destroyed. */
  give(client: pg.PoolClient, err?: Error): void {
    if (err !== undefined || this.#closing || this.#pool.waitingCount > 0) {
      client.release(err);
      return;
    }
    (client as unknown as Refable).unref();
    this.#kept.push({ client, at: performance.now() });
    this.#trim ??= setTimeout(() => this.#trimIdle(), KEEP_MS).unref();
  }

  /** Gives every kept connection back to the pool and ends it. */
  end(): Promise<void> {
    this.#closing = true;
    clearTimeout(this.#trim);
    for (const { client } of this.#kept.splice(0)) client.release();
    return this.#pool.end();
  }

  #trimIdle(): void {
    this.#trim = undefined;
    const cutoff = performance.now() - KEEP_MS;
    // The oldest are at the bottom of the stack.
    let stale = 0;
    while (stale < this.#kept.length && this.#kept[stale]!.at <= cutoff) stale++;
    for (const { client } of this.#kept.splice(0, stale)) client.release();
    if (this.#kept.length > 0) this.#trim = setTimeout(() => this.#trimIdle(), KEEP_MS).unref();
  }

  #drop(client: pg.PoolClient): void {
    const at = this.#kept.findIndex((k) => k.client === client);
    if (at === -1) return;
    this.#kept.splice(at, 1);
    client.release(new Error('the connection failed while kept'));
  }
}
