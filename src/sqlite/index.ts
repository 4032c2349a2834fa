/**
 * SqliteConsensus: the embedded Consensus backend, one SQLite file shared by every
 * handle and process on the machine.
 *
 * Layout: the file is in WAL mode and holds one table,
 *
 *     consensus(key TEXT, seqno INTEGER, data BLOB, PRIMARY KEY (key, seqno)) WITHOUT ROWID
 *
 * one row per version. Seqnos are signed 64-bit integers read as exact bigints
 * (better-sqlite3 `safeIntegers`). The head of a key is its greatest seqno; a key
 * exists while it has a row, and truncate never deletes the head.
 *
 * Writes (compareAndSet, truncate) use group commit: the writes waiting while the
 * previous batch commits (or issued in the same tick) run in ONE `BEGIN IMMEDIATE
 * ... COMMIT` transaction, each checked on its own against the head as left by the
 * members before it, so the batch pays one fsync. If the batch fails before COMMIT
 * nothing of it was applied (Determinate for every member); if it fails at COMMIT
 * every member is Indeterminate. `synchronous=FULL` by default: a Committed write
 * survives power loss. Reads (head, scan, listKeys) are single statements on the
 * handle's connection; `listKeys` walks distinct keys in pages of 256.
 *
 * Several processes on one file are safe: SQLite's locks serialize the write
 * transactions. A connection never waits inside SQLite (busy_timeout = 0): when the
 * lock is held, BEGIN IMMEDIATE fails with SQLITE_BUSY, which applied nothing, and
 * the batch is retried after a timer with jittered backoff, for up to
 * `busyTimeoutMs`; then it fails Determinate `Aborted`.
 *
 * Threads: by default each handle runs its write batches in a worker thread
 * (node:worker_threads) with a second connection, so the event loop never waits
 * for a COMMIT's fsync; reads stay on the calling thread, where WAL lets them run
 * while the worker commits. Measured on this project's busy 2-core machine, the
 * worker's timer lag under 16 durable callers was lower (typically half) in 4 of 5
 * runs, and its CaS/s within the noise of running batches on the calling thread
 * (bench/results/sqlite.md); it also keeps a slow disk's fsync off the event loop
 * by construction, which decided the default. `worker: false` runs everything on
 * the calling thread with one connection: no thread per handle, but the event
 * loop waits for every batch's fsync. The worker starts without the application's
 * Node options (loaders such as tsx, `--input-type`, ...: it runs compiled
 * JavaScript and needs none of them), so a program run as `node --input-type=module
 * -e ...` or under `--import`/`--require` hooks opens `sqlite:` like any other; see
 * src/sqlite/worker-options.ts for what it keeps.
 *
 * Errors (the one table is {@link sqliteErrors} in src/sqlite/errors.ts, where the
 * full table and its proof live). Nothing is durable before COMMIT is issued, so:
 *
 * | SQLite error                         | before COMMIT, open, read   | at COMMIT     |
 * |--------------------------------------|-----------------------------|---------------|
 * | BUSY/LOCKED at BEGIN                 | retried, then Determinate Aborted | —       |
 * | BUSY at COMMIT (txn left open)       | rolled back, batch retried from BEGIN | —   |
 * | FULL, TOOBIG, NOMEM                  | Determinate ResourceExhausted | Indeterminate |
 * | READONLY, PERM, AUTH                 | Determinate PermissionDenied  | Indeterminate |
 * | CANTOPEN, IOERR                      | Determinate Unavailable       | Indeterminate |
 * | NOTADB                               | Determinate DataLoss          | Indeterminate |
 * | CORRUPT                              | Indeterminate DataLoss        | Indeterminate |
 * | INTERRUPT                            | Determinate Cancelled         | Indeterminate |
 * | anything else                        | Determinate Unknown           | Indeterminate |
 *
 * Watchers (`watch`) are told of changes without reading the table: a handle with
 * watchers asks its read connection for `PRAGMA data_version` every 10 ms, which
 * changes when any connection, in any process, has committed; commits through any
 * handle of this process on the same file tell its watchers at once.
 *
 * A worker that dies with a batch in flight makes that batch Indeterminate; writes
 * submitted after that are Determinate (never sent) until the handle is reopened.
 *
 * URI: `sqlite:///abs/file.db`, `sqlite:/abs/file.db` or `sqlite:rel/file.db`
 * (relative to the working directory; a path starting with `~` is refused, see
 * `localPathOf` in src/uri.ts); the file and its directory are created if missing,
 * unless the open says `create: false`. Parameters:
 *
 * - `synchronous=full|normal|extra` (default `full`): `normal` skips the fsync at
 *   COMMIT, so a Committed write survives a crash of the process, not of the machine.
 * - `busyTimeoutMs=N` (default 10000): how long a write waits for another connection's lock.
 * - `worker=true|false` (default true): run write batches in a worker thread.
 */
import { existsSync } from 'node:fs';
import { resolve as resolvePath } from 'node:path';
import { ConsensusBase, type ListedKeys } from '../base.js';
import { CaSResult, type OpOptions, type VersionedData } from '../consensus.js';
import { Determinate, ErrorCode, invalidArgument } from '../errors.js';
import { SeqNo } from '../seqno.js';
import { Engine, KEYS_PAGE, openEngine, retryBusy, type Synchronous, type WriteOp } from './engine.js';
import { mapSqliteError } from './errors.js';
import { GroupCommit } from './group-commit.js';
import { InlineWriter, WorkerWriter, type Writer } from './writer.js';
import { boolParam, checkParams, intParam, localPathOf, type LocationUri } from '../uri.js';
import { MAX_CONSENSUS_SEQNO, utf8Length } from '../validate.js';
import { copyBytes } from '../bytes.js';
import { CHANGES, Notifier } from '../envelope/changes.js';

export { mapSqliteError, sqliteErrors } from './errors.js';
export type { Synchronous } from './engine.js';

/** Options of {@link SqliteConsensus.open}. */
export interface SqliteConsensusOptions {
  /** `PRAGMA synchronous` (default `full`: Committed survives power loss). */
  synchronous?: Synchronous;
  /** How long a write or read waits for a lock held by another connection (default 10000 ms). */
  busyTimeoutMs?: number;
  /** Run write batches in a worker thread, so fsync never blocks the event loop (default true). */
  worker?: boolean;
  /** Used in messages instead of the path (e.g. the URI it was opened from). */
  displayName?: string;
  /**
   * Create the file, its directory and the table if missing (default true). With
   * false a missing file rejects Determinate NotFound, a file that is not this
   * backend's database Determinate FailedPrecondition, and nothing is written.
   */
  create?: boolean;
}

const SYNCHRONOUS: readonly Synchronous[] = ['full', 'normal', 'extra'];


const DEFAULT_BUSY_TIMEOUT_MS = 10_000;

/** How often a handle with watchers asks whether another connection committed. */
const DATA_VERSION_POLL_MS = 10;

/** Per database file (absolute path), the watchers of every handle in this process. */
const notifiers = new Map<string, Notifier>();

function notifierOf(path: string): Notifier {
  let n = notifiers.get(path);
  if (n === undefined) notifiers.set(path, (n = new Notifier()));
  return n;
}

/**
 * SQLite's largest string or blob (SQLITE_MAX_LENGTH, 10^9 bytes), less room for
 * the key and seqno in the same row.
 */
export const MAX_VALUE_BYTES = 1_000_000_000 - 2048;

/** Consensus in one SQLite file; see the module comment for layout and guarantees. */
export class SqliteConsensus extends ConsensusBase {
  readonly description: string;
  /** The absolute path of the database file. */
  readonly path: string;
  /** The `PRAGMA synchronous` level of this handle's connections. */
  readonly synchronous: Synchronous;
  readonly #engine: Engine;
  readonly #writer: Writer;
  readonly #commits: GroupCommit;
  readonly #busyTimeoutMs: number;
  /** Watchers of this handle, and the data_version poll that runs while there are any. */
  #watchers = 0;
  #poll: NodeJS.Timeout | undefined;

  private constructor(path: string, synchronous: Synchronous, description: string, engine: Engine, writer: Writer, busyTimeoutMs: number) {
    super();
    this.path = path;
    this.synchronous = synchronous;
    this.description = description;
    this.#engine = engine;
    this.#writer = writer;
    this.#busyTimeoutMs = busyTimeoutMs;
    this.#commits = new GroupCommit((members) => writer.run(members), description);
  }

  /**
   * Opens the database at `path` (relative to the working directory), creating the
   * file, its directory and the table if missing (unless `create` is false).
   */
  static async open(path: string, options: SqliteConsensusOptions = {}): Promise<SqliteConsensus> {
    const synchronous = options.synchronous ?? 'full';
    if (!SYNCHRONOUS.includes(synchronous)) {
      throw invalidArgument(`synchronous must be one of ${SYNCHRONOUS.join(', ')}, got ${String(synchronous)}`);
    }
    const busyTimeoutMs = options.busyTimeoutMs ?? DEFAULT_BUSY_TIMEOUT_MS;
    if (!Number.isSafeInteger(busyTimeoutMs) || busyTimeoutMs < 0) {
      throw invalidArgument(`busyTimeoutMs must be a non-negative integer, got ${String(busyTimeoutMs)}`);
    }
    if (typeof path !== 'string' || path === '') throw invalidArgument('the SQLite database path must be a non-empty string');
    const create = options.create ?? true;
    if (typeof create !== 'boolean') throw invalidArgument(`create must be true or false, got ${String(create)}`);
    const abs = resolvePath(path);
    const description = `SqliteConsensus(${options.displayName ?? abs})`;
    if (!create && !existsSync(abs)) {
      throw new Determinate(ErrorCode.NotFound, `${description}: the database file ${abs} does not exist (and opening without create makes none)`);
    }
    let engine: Engine | undefined;
    try {
      engine = await openEngine(abs, { synchronous, create }, busyTimeoutMs);
      const writer = options.worker !== false ? await WorkerWriter.start(abs, { synchronous, create }, busyTimeoutMs) : new InlineWriter(engine, busyTimeoutMs);
      return new SqliteConsensus(abs, synchronous, description, engine, writer, busyTimeoutMs);
    } catch (err) {
      engine?.close();
      throw mapSqliteError(err, { what: `${description}: while opening`, exposure: 'sent' });
    }
  }

  protected async *_listKeys(): AsyncIterable<ListedKeys> {
    let after: string | undefined;
    for (;;) {
      const page = await this.#read(() => this.#engine.keysPage(after));
      // ConsensusBase hands the page out key by key, and stops at an abort.
      yield page;
      if (page.length < KEYS_PAGE) return;
      after = page[page.length - 1];
    }
  }

  protected async _head(key: string): Promise<VersionedData | undefined> {
    const row = await this.#read(() => this.#engine.head(key));
    return row === undefined ? undefined : { seqno: new SeqNo(row.seqno), data: row.data };
  }

  protected async _compareAndSet(key: string, expected: SeqNo | undefined, next: VersionedData, opts?: OpOptions): Promise<CaSResult> {
    if (next.data.byteLength > MAX_VALUE_BYTES - utf8Length(key)) {
      throw new Determinate(
        ErrorCode.ResourceExhausted,
        `${this.description}: a value of ${next.data.byteLength} bytes is larger than SQLite's limit of ${MAX_VALUE_BYTES} bytes per row`,
      );
    }
    // Copied now: the caller may reuse its buffer before the batch runs.
    const op: WriteOp = { type: 'cas', key, expected: expected?.value, seqno: next.seqno.value, data: copyBytes(next.data) };
    const outcome = await this.#commits.submit(op, opts?.signal);
    if (outcome.type === 'cas' && outcome.committed) {
      notifiers.get(this.path)?.notify(key);
      return CaSResult.Committed;
    }
    return CaSResult.ExpectationMismatch;
  }

  /** Ticks when `key` may have changed, through any connection (see the module comment). */
  [CHANGES](key: string, signal: AbortSignal): AsyncIterable<void> {
    const ticks = notifierOf(this.path).changes(key, signal);
    const watching = async function* (this: SqliteConsensus): AsyncGenerator<void> {
      this.#watch(+1);
      try {
        yield* ticks;
      } finally {
        this.#watch(-1);
      }
    };
    return watching.call(this);
  }

  #watch(delta: number): void {
    this.#watchers += delta;
    if (this.#watchers > 0 && this.#poll === undefined && !this.closed) {
      let seen = this.#engine.dataVersion();
      this.#poll = setInterval(() => {
        let now: bigint;
        try {
          now = this.#engine.dataVersion();
        } catch {
          // A busy or closed connection: the watchers' own reads will say so.
          return;
        }
        if (now === seen) return;
        seen = now;
        const notifier = notifiers.get(this.path);
        if (notifier !== undefined) for (const key of [...notifier.keys()]) notifier.notify(key);
      }, DATA_VERSION_POLL_MS);
      this.#poll.unref();
    } else if (this.#watchers === 0) this.#stopPoll();
  }

  #stopPoll(): void {
    clearInterval(this.#poll);
    this.#poll = undefined;
  }

  protected async _scan(key: string, from: SeqNo, limit: number): Promise<VersionedData[]> {
    if (from.value > MAX_CONSENSUS_SEQNO) return [];
    const rows = await this.#read(() => this.#engine.scan(key, from.value, limit));
    return rows.map((row) => ({ seqno: new SeqNo(row.seqno), data: row.data }));
  }

  protected async _truncate(key: string, seqno: SeqNo, opts?: OpOptions): Promise<number> {
    const outcome = await this.#commits.submit({ type: 'truncate', key, seqno: seqno.value }, opts?.signal);
    if (outcome.type === 'truncate') return outcome.deleted;
    if (outcome.type !== 'precondition') throw new Error(`${this.description}: unexpected truncate outcome ${outcome.type}`);
    const why = outcome.head === undefined ? 'it has no data' : `${seqno} is past the head v${outcome.head}`;
    throw new Determinate(ErrorCode.FailedPrecondition, `${this.description}: cannot truncate ${JSON.stringify(key)}: ${why}`);
  }

  protected async _close(): Promise<void> {
    this.#stopPoll();
    await this.#commits.drain();
    try {
      await this.#writer.close();
    } finally {
      this.#engine.close();
    }
  }

  /** A read statement, retried while another connection holds a lock it needs. */
  async #read<T>(read: () => T): Promise<T> {
    // A listKeys loop (or a read waiting out a lock) can outlive close(): say so
    // rather than report the closed connection as a storage error.
    let closed: Error | undefined;
    const guarded = (): T => {
      if (this.closed) throw (closed = new Error(`${this.description} is closed`));
      return read();
    };
    try {
      return await retryBusy(guarded, this.#busyTimeoutMs);
    } catch (err) {
      if (err === closed) throw err;
      // A read changes nothing; SQLite's answer is mapped as for a statement that ran.
      throw mapSqliteError(err, { what: `${this.description}: while reading`, exposure: 'sent' });
    }
  }

}

/** `sqlite:` URIs for {@link openConsensus}; see the module comment for the forms. */
export async function consensusFromUri(loc: LocationUri, create = true): Promise<SqliteConsensus> {
  const params = checkParams(loc, ['synchronous', 'busyTimeoutMs', 'worker']);
  if (loc.authority !== undefined && loc.authority !== '') {
    throw invalidArgument(`${loc.display}: a sqlite: URI names a local file, not a host; use sqlite:///abs/file.db or sqlite:rel/file.db`);
  }
  if (loc.path === '' || loc.path.endsWith('/')) throw invalidArgument(`${loc.display}: expected a database file path, e.g. sqlite:///abs/file.db`);
  const synchronous = params.synchronous?.toLowerCase();
  if (synchronous !== undefined && !SYNCHRONOUS.includes(synchronous as Synchronous)) {
    throw invalidArgument(`parameter synchronous of ${loc.display} must be one of ${SYNCHRONOUS.join(', ')}, got '${params.synchronous}'`);
  }
  return SqliteConsensus.open(localPathOf(loc), {
    create,
    synchronous: synchronous as Synchronous | undefined,
    busyTimeoutMs: intParam(loc, params.busyTimeoutMs, 'busyTimeoutMs'),
    worker: boolParam(loc, params.worker, 'worker'),
    displayName: loc.display,
  });
}
export { sqliteBackend } from './backend.js';
