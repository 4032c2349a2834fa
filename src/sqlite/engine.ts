/**
 * The synchronous half of SqliteConsensus: one better-sqlite3 connection, its
 * prepared statements, and the group-commit transaction. It runs either on the
 * main thread or inside the writer worker (see worker.ts); it never throws a
 * driver error at its caller for a write batch, it returns what happened, so the
 * answer can cross a thread boundary as plain data.
 */
import Database from 'better-sqlite3';
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { Determinate, ErrorCode } from '../errors.js';
import { retry, type BackoffPolicy } from '../kit/backoff.js';
import type { Exposure } from '../kit/exposure.js';

/** SQLite's `PRAGMA synchronous` levels this backend accepts. */
export type Synchronous = 'full' | 'normal' | 'extra';

/** The numbers `PRAGMA synchronous` reads back. */
const SYNCHRONOUS_LEVEL: Record<Synchronous, number> = { normal: 1, full: 2, extra: 3 };

/** One write of a group-commit batch. */
export type WriteOp =
  | { type: 'cas'; key: string; expected: bigint | undefined; seqno: bigint; data: Uint8Array }
  | { type: 'truncate'; key: string; seqno: bigint };

/** What came of one member of a committed batch. */
export type WriteOutcome =
  | { type: 'cas'; committed: boolean }
  | { type: 'truncate'; deleted: number }
  /** truncate refused: no data, or past the head. */
  | { type: 'precondition'; head: bigint | undefined };

/** A driver error reduced to plain data, so it can be posted between threads. */
export interface RawError {
  code: string;
  message: string;
}

export type BatchResult =
  | { type: 'done'; outcomes: WriteOutcome[] }
  /** BEGIN IMMEDIATE found the write lock taken (or COMMIT was refused and rolled back): nothing happened, retry. */
  | { type: 'busy' }
  /**
   * How far the batch got when `error` struck: `sent` before COMMIT (SQLite's
   * answer decides, see errors.ts), `committed` at COMMIT, `not-sent` when the
   * batch never reached a connection.
   */
  | { type: 'error'; exposure: Exposure; error: RawError };

export interface EngineOptions {
  synchronous: Synchronous;
  /**
   * Create the directory, the file and the table if missing (default true). With
   * false the file must exist and hold the table, and nothing is written to it.
   */
  create?: boolean;
}

/** A {@link RawError} as an Error again, for the error table. */
export function fromRaw(raw: RawError): Error {
  return Object.assign(new Error(raw.message), { code: raw.code });
}

export function rawError(err: unknown): RawError {
  const code = (err as { code?: unknown } | null)?.code;
  return {
    code: typeof code === 'string' ? code : 'UNKNOWN',
    message: err instanceof Error ? err.message : String(err),
  };
}

/** SQLITE_BUSY or SQLITE_LOCKED, including their extended codes. */
export function isBusy(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && /^SQLITE_(BUSY|LOCKED)(_|$)/.test(code);
}

/** Keys are listed in pages of this many, so a listing never holds them all. */
export const KEYS_PAGE = 256;

export class Engine {
  readonly #db: Database.Database;
  readonly #begin: Database.Statement;
  readonly #commit: Database.Statement;
  readonly #rollback: Database.Statement;
  readonly #headSeqno: Database.Statement<[string]>;
  readonly #head: Database.Statement<[string]>;
  readonly #insert: Database.Statement<[string, bigint, Uint8Array]>;
  readonly #deleteBelow: Database.Statement<[string, bigint]>;
  readonly #scan: Database.Statement<[string, bigint, bigint]>;
  readonly #keysFirst: Database.Statement<[bigint]>;
  readonly #keysAfter: Database.Statement<[string, bigint]>;

  /**
   * Opens (creating the file, its directory and the table if missing, unless
   * `options.create` is false). Throws the driver's error, or Determinate
   * FailedPrecondition for a file without the table when it may not create it;
   * SQLITE_BUSY here is retried by {@link openEngine}.
   */
  constructor(path: string, options: EngineOptions) {
    const create = options.create !== false;
    if (create) mkdirSync(dirname(path), { recursive: true });
    const db = new Database(path, { fileMustExist: !create });
    try {
      if (!create) refuseForeign(db, path);
      // Waiting for locks happens in retryBusy, asynchronously, never inside SQLite
      // where it would block the event loop.
      db.pragma('busy_timeout = 0');
      db.defaultSafeIntegers(true);
      const mode = db.pragma('journal_mode = WAL', { simple: true });
      if (String(mode).toLowerCase() !== 'wal') throw new Error(`could not switch ${path} to WAL mode (got ${String(mode)})`);
      db.pragma(`synchronous = ${options.synchronous.toUpperCase()}`);
      const level = Number(db.pragma('synchronous', { simple: true }));
      if (level !== SYNCHRONOUS_LEVEL[options.synchronous]) throw new Error(`could not set synchronous=${options.synchronous} on ${path}`);
      db.exec(
        'CREATE TABLE IF NOT EXISTS consensus (key TEXT NOT NULL, seqno INTEGER NOT NULL, data BLOB NOT NULL, ' +
          'PRIMARY KEY (key, seqno)) WITHOUT ROWID',
      );
      this.#begin = db.prepare('BEGIN IMMEDIATE');
      this.#commit = db.prepare('COMMIT');
      this.#rollback = db.prepare('ROLLBACK');
      this.#headSeqno = db.prepare('SELECT seqno FROM consensus WHERE key = ? ORDER BY seqno DESC LIMIT 1').pluck();
      this.#head = db.prepare('SELECT seqno, data FROM consensus WHERE key = ? ORDER BY seqno DESC LIMIT 1');
      this.#insert = db.prepare('INSERT INTO consensus (key, seqno, data) VALUES (?, ?, ?)');
      this.#deleteBelow = db.prepare('DELETE FROM consensus WHERE key = ? AND seqno < ?');
      this.#scan = db.prepare('SELECT seqno, data FROM consensus WHERE key = ? AND seqno >= ? ORDER BY seqno LIMIT ?');
      this.#keysFirst = db.prepare('SELECT DISTINCT key FROM consensus ORDER BY key LIMIT ?').pluck();
      this.#keysAfter = db.prepare('SELECT DISTINCT key FROM consensus WHERE key > ? ORDER BY key LIMIT ?').pluck();
    } catch (err) {
      db.close();
      throw err;
    }
    this.#db = db;
  }

  /**
   * Runs every member in ONE transaction, each checked against the head as left by
   * the members before it, then commits once (one fsync for the whole batch).
   */
  commitBatch(members: readonly WriteOp[]): BatchResult {
    // A ROLLBACK that failed earlier must not leave this connection holding the
    // write lock, nor let this batch's writes join that transaction.
    if (this.#db.inTransaction && !this.#rollbackQuietly()) {
      return { type: 'error', exposure: 'sent', error: { code: 'SQLITE_ERROR', message: 'a previous transaction could not be rolled back' } };
    }
    try {
      this.#begin.run();
    } catch (err) {
      return isBusy(err) ? { type: 'busy' } : { type: 'error', exposure: 'sent', error: rawError(err) };
    }
    let outcomes: WriteOutcome[];
    try {
      outcomes = members.map((m) => this.#apply(m));
    } catch (err) {
      // COMMIT was never issued, so nothing of this batch can be durable.
      this.#rollbackQuietly();
      return { type: 'error', exposure: 'sent', error: rawError(err) };
    }
    try {
      this.#commit.run();
    } catch (err) {
      // SQLite documents that a COMMIT refused with SQLITE_BUSY leaves the
      // transaction open and unapplied; only then is the outcome known. Any other
      // error at COMMIT (an fsync that failed, a full disk while the WAL is padded
      // after the commit frame, ...) may have left the commit frame on disk.
      if (isBusy(err) && this.#db.inTransaction && this.#rollbackQuietly()) return { type: 'busy' };
      if (this.#db.inTransaction) this.#rollbackQuietly();
      return { type: 'error', exposure: 'committed', error: rawError(err) };
    }
    return { type: 'done', outcomes };
  }

  #apply(m: WriteOp): WriteOutcome {
    const head = this.#headSeqno.get(m.key) as bigint | undefined;
    if (m.type === 'cas') {
      const matches = head === undefined ? m.expected === undefined : m.expected === head;
      if (!matches) return { type: 'cas', committed: false };
      this.#insert.run(m.key, m.seqno, m.data);
      return { type: 'cas', committed: true };
    }
    // Compared before binding: a truncate seqno may be above 2^63-1, which no
    // head can reach and SQLite cannot bind.
    if (head === undefined || m.seqno > head) return { type: 'precondition', head };
    return { type: 'truncate', deleted: Number(this.#deleteBelow.run(m.key, m.seqno).changes) };
  }

  /**
   * Reads on this connection (worker: false) must never see the writes of a batch
   * that failed but whose ROLLBACK failed too: they were reported as not (or maybe
   * not) applied, and may yet vanish.
   */
  #outsideTransaction(): void {
    if (!this.#rollbackQuietly()) {
      throw Object.assign(new Error('a failed write transaction could not be rolled back'), { code: 'SQLITE_ERROR' });
    }
  }

  /** True if the transaction is gone afterwards. */
  #rollbackQuietly(): boolean {
    if (!this.#db.inTransaction) return true;
    try {
      this.#rollback.run();
    } catch {
      // Nothing to add: the caller reports the original error.
    }
    return !this.#db.inTransaction;
  }

  /**
   * SQLite's `PRAGMA data_version`: it changes when another connection (of this
   * process or another) has committed since this connection last asked.
   */
  dataVersion(): bigint {
    return BigInt(this.#db.pragma('data_version', { simple: true }) as number | bigint);
  }

  head(key: string): { seqno: bigint; data: Uint8Array } | undefined {
    this.#outsideTransaction();
    return this.#head.get(key) as { seqno: bigint; data: Buffer } | undefined;
  }

  scan(key: string, from: bigint, limit: number): { seqno: bigint; data: Uint8Array }[] {
    this.#outsideTransaction();
    return this.#scan.all(key, from, BigInt(Math.min(limit, Number.MAX_SAFE_INTEGER))) as { seqno: bigint; data: Buffer }[];
  }

  /** Up to {@link KEYS_PAGE} distinct keys after `after` (all keys from the start when undefined), ascending. */
  keysPage(after: string | undefined): string[] {
    this.#outsideTransaction();
    const page = BigInt(KEYS_PAGE);
    return (after === undefined ? this.#keysFirst.all(page) : this.#keysAfter.all(after, page)) as string[];
  }

  close(): void {
    this.#db.close();
  }
}

/**
 * Throws Determinate FailedPrecondition unless `db` (opened without creating) is a
 * SQLite database holding this backend's table; reads only, before any pragma
 * that would write (switching to WAL).
 */
function refuseForeign(db: Database.Database, path: string): void {
  let tables: number;
  try {
    tables = Number(db.prepare("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'consensus'").pluck().get());
  } catch (err) {
    if ((err as { code?: unknown }).code !== 'SQLITE_NOTADB') throw err;
    tables = -1;
  }
  if (tables === 1) return;
  const what = tables < 0 ? 'is not a SQLite database' : 'is a SQLite database without the consensus table';
  throw new Determinate(ErrorCode.FailedPrecondition, `${path} ${what}, so it is not a SqliteConsensus location (opening without create writes nothing to it)`);
}

/** Waits between attempts at a lock held by another connection: 1 ms doubling to 50 ms, until `busyTimeoutMs`. */
const BUSY_BACKOFF: BackoffPolicy = { attempts: Infinity, minDelayMs: 1, maxDelayMs: 50, multiplier: 2, jitter: 0.25 };

/** The error {@link retryBusy} throws when the lock stayed taken too long. */
export function busyTimeout(timeoutMs: number): Error & { code: string } {
  return Object.assign(new Error(`the database stayed locked by another connection for ${timeoutMs} ms`), { code: 'SQLITE_BUSY' });
}

/** What {@link retryBusy} retries on: a `busy` result, thrown. */
const BUSY = Object.assign(new Error('busy'), { code: 'SQLITE_BUSY' });

/**
 * Runs `attempt` until it stops answering busy (a `busy` result or a thrown
 * SQLITE_BUSY/LOCKED), for at most `timeoutMs`; then throws {@link busyTimeout}.
 * The pauses are timers, so the thread stays responsive while another connection
 * holds the lock.
 */
export async function retryBusy<T>(attempt: () => T | { type: 'busy' }, timeoutMs: number): Promise<T> {
  try {
    return await retry(
      async () => {
        const r = attempt();
        if (typeof r === 'object' && r !== null && (r as { type?: unknown }).type === 'busy') throw BUSY;
        return r as T;
      },
      { policy: BUSY_BACKOFF, budgetMs: timeoutMs, retryable: isBusy },
    );
  } catch (err) {
    throw isBusy(err) ? busyTimeout(timeoutMs) : err;
  }
}

/** Opens an {@link Engine}, waiting out other connections that are creating the schema. */
export function openEngine(path: string, options: EngineOptions, timeoutMs: number): Promise<Engine> {
  return retryBusy(() => new Engine(path, options), timeoutMs);
}

/**
 * One group-commit batch with busy retries: what both the main thread and the
 * writer worker run. Running out of `busyTimeoutMs` is reported as an SQLITE_BUSY
 * error before COMMIT (nothing happened).
 */
export async function runBatch(engine: Engine, members: readonly WriteOp[], busyTimeoutMs: number): Promise<BatchResult> {
  try {
    return await retryBusy(() => engine.commitBatch(members), busyTimeoutMs);
  } catch (err) {
    // commitBatch returns every driver error; only the busy timeout is thrown.
    return { type: 'error', exposure: 'sent', error: rawError(err) };
  }
}
