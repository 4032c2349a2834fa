/**
 * `persist-location/postgres`: Consensus in a PostgreSQL schema, through the `pg`
 * driver and a connection pool (with the connections statements just gave back kept
 * for the next ones, src/postgres/connections.ts; compareAndSet statements go through
 * src/postgres/wire.ts, pg's own encoder without its general query machinery).
 *
 * Layout (schema `consensus` unless `?schema=` says otherwise, created if missing
 * unless the open says `create: false`):
 *
 *     heads    (key text COLLATE "C" PRIMARY KEY, seqno bigint)        -- one row per key ever written
 *     versions (key text COLLATE "C", seqno bigint, data bytea,
 *               PRIMARY KEY (key, seqno))                              -- every retained version
 *
 * Every operation is one statement (an implicit transaction, READ COMMITTED), so it
 * takes one round trip. compareAndSet updates the key's head row `WHERE seqno =
 * expected` and inserts the version in the same statement: concurrent writers with
 * the same expectation queue on that row lock and all but the first find it changed
 * (see src/postgres/sql.ts). Concurrent compareAndSets on one handle are group
 * committed: calls made in one turn of the event loop, and calls made while
 * `casConcurrency` CaS statements are in flight, leave together as one multi-key
 * statement of the same shape, each call keeping its own outcome
 * (src/postgres/batcher.ts); a lone call is sent in the turn it was made, and so is a
 * value too large to share the 8 MiB budget of a group. truncate
 * locks the head row and deletes below it in one statement, run again if the head
 * moved after the statement's snapshot (see sql.ts). listKeys pages through `heads` by key
 * (keyset paging), never holding more than a page.
 * watch (the envelope's changes method, with `notify: true`): triggers on `heads`
 * send one NOTIFY per committed statement on a channel named after the schema, and
 * each handle LISTENs on a connection of its own while it has watchers (see
 * src/postgres/notify.ts).
 *
 * Errors: see src/postgres/errors.ts for the table. In short: nothing fails
 * Determinate once a statement was sent unless the server's SQLSTATE proves it was
 * rolled back (40001, 40P01, 22/23/42 classes); failing to connect is Determinate
 * Unavailable (PermissionDenied for a refused password or client certificate,
 * 28P01/28000, and for a failed TLS handshake), and so is anything pg throws
 * while it sets up a connection; a statement the client fails to build (encoding
 * its parameters, before anything is sent) is Determinate; a lost connection or an
 * unknown error after sending is Indeterminate; the statement timeout is
 * Indeterminate Timeout. An operation takes at most `connectTimeoutMs` to get a
 * connection plus `statementTimeoutMs` for its statement: the client enforces the
 * latter itself (and sets the server's `statement_timeout` to it), so a dead server
 * cannot hang a caller. A compareAndSet may first wait in the group-commit queue
 * while the statements ahead of it finish; once `connectTimeoutMs` pass without one
 * finishing (or with one on its own key still running) it fails Determinate
 * Unavailable, never sent. A truncate whose head keeps moving runs its statement up
 * to 10 times. close waits for the pool to end at most `connectTimeoutMs +
 * statementTimeoutMs` (by then the server has ended every abandoned statement).
 *
 * URI: `postgres://user:password@host:port/database?schema=NAME&poolSize=N&
 * connectTimeoutMs=MS&statementTimeoutMs=MS&casBatchSize=N&casConcurrency=N` (also
 * `postgresql://`; see {@link PostgresConsensusOptions} for each). Our own
 * parameters are removed and the rest is handed to `pg` as a libpq-style
 * connection string; of libpq's parameters `sslmode`, `sslcert`, `sslkey`,
 * `sslrootcert`, `application_name`, `options`, `host`, `port`, `user`, `password`
 * and `connect_timeout` (seconds, an alternative to `connectTimeoutMs`) are accepted.
 * `sslmode` (disable, require, verify-ca, verify-full, and pg's no-verify) means what
 * it means to libpq, with `sslrootcert`, `sslcert` and `sslkey` naming PEM files; see
 * src/postgres/connection.ts for the table. The connection string is
 * parsed and checked before any connection is made (src/postgres/connection.ts): a
 * bad host, port or sslmode, or a certificate file that cannot be read, rejects
 * the open at once with Determinate InvalidArgument. Idle pooled connections do
 * not keep the process alive.
 *
 * Durability relies on the server's `synchronous_commit` (on by default). The
 * database must be UTF-8 encoded (keys are arbitrary Unicode).
 *
 * CockroachDB: the SQL of the single-call statements keeps to what CockroachDB
 * documents as supported (CTEs with INSERT/UPDATE/DELETE, ON CONFLICT DO NOTHING,
 * SELECT FOR UPDATE, information_schema); the key columns get COLLATE "C" only on
 * PostgreSQL (CockroachDB compares bytewise and refuses "C" columns). The grouped
 * compareAndSet statement updates and inserts `heads` in two subqueries, which
 * CockroachDB (since 21.2) refuses, so on CockroachDB (detected at open from
 * `version()`) each compareAndSet is sent on its own. Its 40001 retry errors are
 * Determinate Aborted (compareAndSet retries them a few times first) and anything
 * unknown (40003 "statement completion unknown") Indeterminate. None of this has
 * been run against CockroachDB: only PostgreSQL 17 is tested.
 */
import { performance } from 'node:perf_hooks';
import pg from 'pg';
import { ConsensusBase, type ListedKeys } from '../base.js';
import { copyBytes } from '../bytes.js';
import { CaSResult, type Consensus, type OpOptions, type VersionedData } from '../consensus.js';
import { Determinate, ErrorCode, ExternalError, invalidArgument } from '../errors.js';
import { retry, type BackoffPolicy } from '../kit/backoff.js';
import type { Batcher } from '../kit/batcher.js';
import { raceDeadline } from '../kit/deadline.js';
import { firstOf, mapError } from '../kit/exposure.js';
import { casBatcher, type CasCall } from './batcher.js';
import { connectionConfig, tlsPathsOf } from './connection.js';
import { Connections } from './connections.js';
import { encodeErrors, mapConnectError, postgresErrors, sqlState, statementTimedOut, type PostgresTlsContext } from './errors.js';
import { CHANGES } from '../envelope/changes.js';
import { notifySetupSql, PostgresChanges } from './notify.js';
import { casBatchParams, DEFAULT_SCHEMA, statements, validateSchemaName, type Statements } from './sql.js';
import { WireStatement, type WireResult, type WireValue } from './wire.js';
import { SeqNo } from '../seqno.js';
import { boolParam, checkParams, intParam, redactUri, type LocationUri } from '../uri.js';
import { MAX_CONSENSUS_SEQNO } from '../validate.js';

export { encodeErrors, mapConnectError, mapPostgresError, postgresErrors, statementTimedOut } from './errors.js';
export { DEFAULT_SCHEMA, validateSchemaName } from './sql.js';

/** Options of {@link PostgresConsensus.open}. */
export interface PostgresConsensusOptions {
  /** A libpq-style URI or `pg` connection string (credentials are never printed). */
  connectionString: string;
  /** Schema holding the location's tables (default `consensus`); created if missing. */
  schema?: string;
  /** Connections in the pool (default 10). Calls beyond it queue for a connection. */
  poolSize?: number;
  /** Budget to get a connection, including waiting for a free one (default 10 000 ms). */
  connectTimeoutMs?: number;
  /** Budget of one statement once sent (default 30 000 ms); also the server's `statement_timeout`. */
  statementTimeoutMs?: number;
  /**
   * Most compareAndSets sent as one statement (default 64; 1 sends each on its own).
   * Calls made in one turn of the event loop, and calls made while `casConcurrency`
   * batches are in flight, are grouped, up to 8 MiB of keys and values per statement.
   */
  casBatchSize?: number;
  /** compareAndSet statements in flight at once (default min(poolSize, 4)). */
  casConcurrency?: number;
  /** How the handle names itself in messages (default the redacted connection string). */
  display?: string;
  /**
   * Native watch (default false): creates the schema's NOTIFY triggers if missing and
   * LISTENs while keys are watched, so `watch` sees other clients' commits at once.
   * NOTIFY serializes commits on a database-wide lock: measured, compareAndSet at 16
   * clients runs at about 0.6-0.7x with the triggers (bench/envelope.bench.ts), so it
   * is asked for, not given. Without it, `watch` polls with backoff.
   */
  notify?: boolean;
  /**
   * Create the schema and its tables if missing (default true). With false, a schema
   * without both tables rejects Determinate NotFound and no DDL is sent.
   */
  create?: boolean;
}

/**
 * Byte budget of a grouped compareAndSet statement (keys and values): it bounds the
 * buffers the client builds for one statement (its values travel as one binary
 * bytea[] parameter); a value above the budget is sent alone.
 */
const CAS_BATCH_BYTES = 8 * 1024 * 1024;

/** Keys fetched per listKeys page. */
const LIST_PAGE = 1000;

/** Runs of the truncate statement while compareAndSets keep moving the key's head, one at once after the other. */
const TRUNCATE_RUNS: BackoffPolicy = { attempts: 10, minDelayMs: 0, maxDelayMs: 0, multiplier: 1, jitter: 0 };

/** Runs of one DDL statement while other processes race to create the same objects. */
const CREATION_RUNS: BackoffPolicy = { attempts: 5, minDelayMs: 5, maxDelayMs: 40, multiplier: 2, jitter: 1 };

/**
 * Catalog races while many processes create the same schema at once: unique_violation
 * on a catalog index, duplicate_schema, duplicate_table, duplicate_object (the
 * table's row type), and contention.
 */
const CREATION_RACES = new Set(['23505', '42P06', '42P07', '42710', '40001', '40P01']);

/** PostgreSQL-backed Consensus; see the module comment for layout, errors and URI. */
export class PostgresConsensus extends ConsensusBase {
  readonly description: string;
  /** The schema holding this location. */
  readonly schema: string;
  readonly #connections: Connections;
  readonly #sql: Statements;
  readonly #statementTimeoutMs: number;
  readonly #casConcurrency: number;
  readonly #connectTimeoutMs: number;
  /** Replaced once at open on CockroachDB, which cannot run the grouped statement. */
  #batcher: Batcher<CasCall, CaSResult>;

  readonly #closeBudgetMs: number;
  /** For the message of a failed TLS handshake. */
  readonly #tls: PostgresTlsContext;
  /** The LISTEN connection and its watchers, for {@link CHANGES} (notify.ts). */
  readonly #changes: PostgresChanges;

  private constructor(
    options: Required<Omit<PostgresConsensusOptions, 'display' | 'connectionString' | 'notify' | 'create'>> & { display: string; client: pg.ClientConfig },
  ) {
    super();
    this.schema = options.schema;
    this.description = `PostgresConsensus(${options.display}, schema ${options.schema})`;
    this.#casConcurrency = options.casConcurrency;
    this.#connectTimeoutMs = options.connectTimeoutMs;
    this.#batcher = this.#newBatcher(options.casBatchSize);
    this.#sql = statements(options.schema);
    this.#statementTimeoutMs = options.statementTimeoutMs;
    // The longest pg may rightly take to end the pool: a connection being made, and a
    // statement its caller abandoned running on until the server's statement_timeout.
    this.#closeBudgetMs = options.connectTimeoutMs + options.statementTimeoutMs;
    const { host, port } = options.client;
    this.#tls = { backend: this.description, target: `${host || 'localhost'}:${port || 5432}`, paths: tlsPathsOf(options.client) };
    const pool = new pg.Pool({
      ...options.client,
      max: options.poolSize,
      connectionTimeoutMillis: options.connectTimeoutMs,
      statement_timeout: options.statementTimeoutMs,
      keepAlive: true,
      idleTimeoutMillis: 30_000,
      // Idle connections do not keep the process alive: a script that forgets close() still exits.
      allowExitOnIdle: true,
    });
    this.#connections = new Connections(pool);
    this.#changes = new PostgresChanges(options.client, options.schema, options.connectTimeoutMs);
  }

  /**
   * Ticks when `key` may have a new head, from any client: LISTEN/NOTIFY (see
   * notify.ts). Defined on a handle opened with `notify: true` whose triggers are in
   * place; any other handle has none, and is polled.
   */
  declare readonly [CHANGES]?: (key: string, signal: AbortSignal) => AsyncIterable<void>;

  /** Connects, creates the schema and tables if missing (unless `create` is false), and returns a ready handle. */
  static async open(options: PostgresConsensusOptions): Promise<PostgresConsensus> {
    const schema = options.schema ?? DEFAULT_SCHEMA;
    validateSchemaName(schema);
    const create = options.create ?? true;
    if (typeof create !== 'boolean') throw invalidArgument(`PostgresConsensus option create must be true or false, got ${String(create)}`);
    const poolSize = positive(options.poolSize ?? 10, 'poolSize');
    if (options.notify !== undefined && typeof options.notify !== 'boolean') throw invalidArgument(`PostgresConsensus: notify must be a boolean, got ${String(options.notify)}`);
    const display = options.display ?? redactUri(String(options.connectionString));
    const handle = new PostgresConsensus({
      client: connectionConfig(options.connectionString, display),
      schema,
      poolSize,
      casBatchSize: positive(options.casBatchSize ?? 64, 'casBatchSize'),
      casConcurrency: positive(options.casConcurrency ?? Math.min(poolSize, 4), 'casConcurrency'),
      connectTimeoutMs: positive(options.connectTimeoutMs ?? 10_000, 'connectTimeoutMs'),
      statementTimeoutMs: positive(options.statementTimeoutMs ?? 30_000, 'statementTimeoutMs'),
      display,
    });
    try {
      const cockroach = await handle.#createSchema(create);
      // CockroachDB refuses a statement that modifies one table in two subqueries
      // (the grouped statement updates and inserts heads), so each call goes alone.
      if (cockroach) handle.#batcher = handle.#newBatcher(1);
      // Making the triggers is a write: an inspecting open (create false) polls instead.
      else if (options.notify === true && create && (await handle.#setUpNotify())) {
        Object.defineProperty(handle, CHANGES, { value: (key: string, signal: AbortSignal) => handle.#changes.changes(key, signal) });
      }
    } catch (err) {
      await handle.close();
      throw err;
    }
    return handle;
  }

  /**
   * Idempotent and safe when many processes open a fresh schema at once: `IF NOT
   * EXISTS` can still lose a race on the catalog's unique indexes, so those
   * errors are retried (the retry then finds the object). Resolves to whether the
   * server is CockroachDB. With `create` false it only looks, and rejects
   * Determinate NotFound when the tables are not both there.
   */
  async #createSchema(create: boolean): Promise<boolean> {
    const server = await this.#run<{ cockroach: boolean }>('open', undefined, { text: this.#sql.isCockroach });
    const cockroach = server.rows[0]?.cockroach === true;
    const exists = await this.#run<{ n: string }>('open', undefined, { text: this.#sql.tablesExist, values: [this.schema] });
    if (Number(exists.rows[0]?.n) === 2) return cockroach;
    if (!create) {
      throw new Determinate(
        ErrorCode.NotFound,
        `${this.description}: the schema ${this.schema} does not exist or lacks its tables (heads, versions), and opening without create makes none`,
      );
    }
    const ddls = statements(this.schema, cockroach);
    for (const ddl of [ddls.createSchema, ddls.createHeads, ddls.createVersions]) {
      await retry(() => this.#run('create schema', undefined, { text: ddl }), {
        policy: CREATION_RUNS,
        retryable: (err) => CREATION_RACES.has(sqlState((err as { cause?: unknown }).cause) ?? ''),
      });
    }
    return cockroach;
  }

  /** Creates the schema's notify triggers if missing; false for a role not allowed to (it is left to poll, notify.ts). */
  async #setUpNotify(): Promise<boolean> {
    try {
      await this.#run('open', undefined, { text: notifySetupSql(this.schema) });
      return true;
    } catch (err) {
      if (sqlState((err as { cause?: unknown }).cause) !== '42501') throw err;
      return false;
    }
  }

  #newBatcher(batchSize: number): Batcher<CasCall, CaSResult> {
    return casBatcher((calls) => this.#sendCas(calls), {
      concurrency: this.#casConcurrency,
      maxBatch: batchSize,
      maxBatchBytes: CAS_BATCH_BYTES,
      queueTimeoutMs: this.#connectTimeoutMs,
      what: `${this.description}: compareAndSet`,
    });
  }

  protected async *_listKeys(opts?: OpOptions): AsyncIterable<ListedKeys> {
    let after = '';
    for (;;) {
      const { rows } = await this.#run<[string]>('listKeys', opts, bound(this.#sql.listKeys, [after, LIST_PAGE], 'arrays'));
      // One page at a time: ConsensusBase hands it out key by key, and stops at an abort.
      yield rows.map(([key]) => key);
      const last = rows[rows.length - 1];
      if (last === undefined || rows.length < LIST_PAGE) return;
      after = last[0];
    }
  }

  protected async _head(key: string, opts?: OpOptions): Promise<VersionedData | undefined> {
    const { rows } = await this.#run<Row>('head', opts, bound(this.#sql.head, [key]));
    return rows[0] === undefined ? undefined : version(rows[0].seqno, rows[0].data);
  }

  protected async _compareAndSet(
    key: string,
    expected: SeqNo | undefined,
    next: VersionedData,
    opts?: OpOptions,
  ): Promise<CaSResult> {
    // Everything taken from the caller now: its bytes reach the socket only later (once
    // a connection is free, or with a later group, or again on a retry), and by then
    // the caller may already be writing into its array again.
    const call = {
      key,
      expected: expected === undefined ? null : expected.value.toString(),
      seqno: next.seqno.value.toString(),
      data: Buffer.from(next.data),
    };
    return this.#batcher.submit(call, opts?.signal);
  }

  /** Sends a batch of compareAndSets (distinct keys); resolves to the keys that committed. */
  async #sendCas(calls: readonly CasCall[]): Promise<ReadonlySet<string>> {
    const one = calls.length === 1 ? calls[0] : undefined;
    if (one !== undefined) {
      const result =
        one.expected === null
          ? await this.#runWire('compareAndSet', this.#sql.casFirst, () => [one.key, one.seqno, one.data])
          : await this.#runWire('compareAndSet', this.#sql.casNext, () => [one.key, one.expected, one.seqno, one.data]);
      return new Set(result.rowCount === 1 ? [one.key] : []);
    }
    const result = await this.#runWire('compareAndSet', this.#sql.casBatch, () => casBatchParams(calls));
    return new Set(result.firstColumn as string[]);
  }

  protected async _scan(key: string, from: SeqNo, limit: number, opts?: OpOptions): Promise<VersionedData[]> {
    // Nothing is stored above bigint's range, and the server would reject the parameter.
    if (from.value > MAX_CONSENSUS_SEQNO) return [];
    // Any integer limit is valid, but the server takes a bigint; no key holds 2^53 versions.
    const rowLimit = String(Math.min(limit, Number.MAX_SAFE_INTEGER));
    const { rows } = await this.#run<[string, Buffer]>('scan', opts, bound(this.#sql.scan, [key, from.value.toString(), rowLimit], 'arrays'));
    return rows.map(([seqno, data]) => version(seqno, data));
  }

  protected async _truncate(key: string, seqno: SeqNo, opts?: OpOptions): Promise<number> {
    if (seqno.value > MAX_CONSENSUS_SEQNO) {
      throw new Determinate(ErrorCode.FailedPrecondition, `${this.description}: cannot truncate ${key} to ${seqno}: it is past any head`);
    }
    type TruncateRow = { head: string | null; seen: string | null; deleted: string };
    const moved = new Determinate(ErrorCode.Aborted, `${this.description}: cannot truncate ${key}: its head kept moving (${TRUNCATE_RUNS.attempts} attempts)`);
    const row = await retry(
      async () => {
        const { rows } = await this.#run<TruncateRow>('truncate', opts, bound(this.#sql.truncate, [key, seqno.value.toString()]));
        // The head moved after the statement's snapshot, so it deleted nothing (see sql.ts).
        if (rows[0] !== undefined && rows[0].head !== rows[0].seen) throw moved;
        return rows[0];
      },
      { policy: TRUNCATE_RUNS, signal: opts?.signal, retryable: (err) => err === moved },
    );
    if (row === undefined || row.head === null) {
      throw new Determinate(ErrorCode.FailedPrecondition, `${this.description}: cannot truncate ${key}: it has no data`);
    }
    if (seqno.value > BigInt(row.head)) {
      throw new Determinate(
        ErrorCode.FailedPrecondition,
        `${this.description}: cannot truncate ${key} to ${seqno}: it is past the head v${row.head}`,
      );
    }
    return Number(row.deleted);
  }

  /**
   * Waits for the pool to end, at most the close budget: past it every statement has
   * ended on the server, and pg finishes closing its sockets on its own.
   */
  protected async _close(): Promise<void> {
    this.#changes.close();
    const pastBudget = new Error('the close budget passed');
    await raceDeadline(undefined, this.#closeBudgetMs, () => this.#connections.end(), { cutOff: () => pastBudget }).catch((err: unknown) => {
      if (err !== pastBudget) throw err;
    });
  }

  /**
   * Runs one statement on a pooled connection under the handle's budgets and the
   * caller's signal, and maps every failure (see src/postgres/errors.ts). A
   * connection whose statement was abandoned (abort, client-side timeout, broken
   * socket) is destroyed rather than returned to the pool.
   */
  #run<R extends pg.QueryResultRow = Record<string, unknown>>(
    what: string,
    opts: OpOptions | undefined,
    query: pg.QueryConfig,
  ): Promise<pg.QueryResult<R>> {
    return this.#on(what, opts, (client) => submit<R>(client, query));
  }

  /** {@link #run} for a compareAndSet statement, through {@link WireStatement}; `values` are encoded before anything is sent. */
  #runWire(what: string, statement: { name: string; text: string }, values: () => readonly WireValue[]): Promise<WireResult> {
    return this.#on(what, undefined, (client) => submitWire(client, statement, values));
  }

  async #on<T>(what: string, opts: OpOptions | undefined, start: (client: pg.PoolClient) => Submitted<T>): Promise<T> {
    const signal = opts?.signal;
    const context = `${this.description}: ${what}`;
    const connections = this.#connections;
    let client = connections.takeKept();
    if (client === undefined) {
      try {
        // Without a signal there is nothing to race: the pool bounds the wait itself.
        client =
          signal === undefined
            ? await connections.connect()
            : await raceDeadline(signal, undefined, () => connections.connect(), {
                exposure: () => 'not-sent',
                // The connection comes later: back with it.
                onLate: (late) => connections.give(late),
              });
      } catch (err) {
        throw mapConnectError(err, { what: context, exposure: 'not-sent', signal }, this.#tls);
      }
    }
    const began = performance.now();
    let statement: Submitted<T> | undefined;
    try {
      const result = await raceDeadline(signal, this.#statementTimeoutMs, () => (statement = start(client)).running, {
        exposure: () => (statement?.unsent() === undefined ? 'sent' : 'not-sent'),
        what: context,
      });
      connections.give(client);
      return result;
    } catch (err) {
      if (statement === undefined) {
        connections.give(client);
        throw err;
      }
      if (err instanceof ExternalError) {
        // Cut off by the signal or the statement timeout: the statement runs on, so
        // the connection is not given back with it.
        connections.give(client, new Error('abandoned statement'));
        throw err;
      }
      const unsent = statement.unsent();
      if (unsent !== undefined) {
        // After a failure to encode, pg closed the prepared statement on the server but
        // still counts it as prepared on this connection; after a failure of the
        // connection, it is dead. Either way it is not reused.
        connections.give(client, toError(err));
        throw mapError(err, unsent === 'encoding' ? encodeErrors : postgresErrors, { what: context, exposure: 'not-sent' });
      }
      // A server error leaves the connection usable; anything else does not.
      connections.give(client, isServerError(err) ? undefined : toError(err));
      const pastStatementTimeout = performance.now() - began >= this.#statementTimeoutMs;
      throw mapError(err, pastStatementTimeout ? firstOf(statementTimedOut, postgresErrors) : postgresErrors, { what: context, exposure: 'sent' });
    }
  }
}

/** Opens the location at a `postgres://` or `postgresql://` URI (see the module comment). */
export async function consensusFromUri(loc: LocationUri, create = true): Promise<Consensus> {
  return PostgresConsensus.open({ ...postgresOptionsFromUri(loc), create });
}

const OWN_PARAMS = ['schema', 'poolSize', 'connectTimeoutMs', 'statementTimeoutMs', 'casBatchSize', 'casConcurrency', 'notify'] as const;
const LIBPQ_PARAMS = [
  'sslmode',
  'sslcert',
  'sslkey',
  'sslrootcert',
  'application_name',
  'options',
  'host',
  'port',
  'user',
  'password',
  'connect_timeout',
] as const;

/** Splits a location URI into our options and the connection string handed to `pg`. */
export function postgresOptionsFromUri(loc: LocationUri): PostgresConsensusOptions {
  const params = checkParams(loc, [...OWN_PARAMS, ...LIBPQ_PARAMS]);
  const rest = new URLSearchParams();
  for (const [name, value] of loc.params) {
    if (!(OWN_PARAMS as readonly string[]).includes(name)) rest.append(name, value);
  }
  let connectTimeoutMs = intParam(loc, params.connectTimeoutMs, 'connectTimeoutMs');
  const libpqSeconds = intParam(loc, params.connect_timeout, 'connect_timeout');
  if (connectTimeoutMs === undefined && libpqSeconds !== undefined) connectTimeoutMs = libpqSeconds * 1000;
  if (params.schema !== undefined) validateSchemaName(params.schema);
  const database = loc.path.replace(/^\//, '');
  const query = rest.toString();
  const connectionString = `postgres://${loc.authority ?? ''}/${encodeURIComponent(database)}${query === '' ? '' : `?${query}`}`;
  return {
    connectionString,
    schema: params.schema,
    poolSize: intParam(loc, params.poolSize, 'poolSize'),
    connectTimeoutMs,
    statementTimeoutMs: intParam(loc, params.statementTimeoutMs, 'statementTimeoutMs'),
    casBatchSize: intParam(loc, params.casBatchSize, 'casBatchSize'),
    casConcurrency: intParam(loc, params.casConcurrency, 'casConcurrency'),
    notify: boolParam(loc, params.notify, 'notify'),
    display: loc.display,
  };
}

/**
 * A named statement with its parameters (a literal: cheaper than spreading the
 * statement). With `arrays`, each row is an array in the order of the statement's
 * columns, so pg builds no object per row (the pages of scan and listKeys, and the
 * keys a grouped compareAndSet returns).
 */
function bound(statement: { name: string; text: string }, values: unknown[], rows: 'objects' | 'arrays' = 'objects'): pg.QueryConfig {
  if (rows === 'objects') return { name: statement.name, text: statement.text, values };
  const arrays: pg.QueryArrayConfig = { name: statement.name, text: statement.text, values, rowMode: 'array' };
  return arrays;
}

type Row = { seqno: string; data: Buffer };

function version(seqno: string, data: Buffer): VersionedData {
  // The driver may hand back a view into a shared pool slab; give callers their own bytes.
  return { seqno: new SeqNo(BigInt(seqno)), data: copyBytes(data) };
}

function positive(n: number, name: string): number {
  if (!Number.isSafeInteger(n) || n < 1) throw invalidArgument(`PostgresConsensus option ${name} must be a positive integer, got ${n}`);
  return n;
}

/**
 * A statement handed to a client: its outcome, and, for a failure, why it was
 * never sent (its parameters could not be encoded, or the connection could not
 * take it), or undefined once it may have been.
 */
interface Submitted<T> {
  running: Promise<T>;
  unsent: () => 'encoding' | 'connection' | undefined;
}

/**
 * Hands `query` to pg and tells whether a failure happened before it was sent. pg
 * writes a statement's messages synchronously within `client.query` (corked, so they
 * leave together when it returns), and when it cannot encode the parameters it fails
 * the query right there, before writing the Execute message; any failure reported
 * later is after the statement may have run.
 */
function submit<R extends pg.QueryResultRow>(client: pg.PoolClient, query: pg.QueryConfig): Submitted<pg.QueryResult<R>> {
  let submitting = true;
  let failedWhileSubmitting = false;
  const running = new Promise<pg.QueryResult<R>>((resolve, reject) => {
    try {
      client.query<R>(query, (err, result) => {
        if (err) {
          failedWhileSubmitting ||= submitting;
          reject(err);
        } else {
          resolve(result);
        }
      });
    } catch (err) {
      failedWhileSubmitting = true;
      reject(err);
    }
  });
  submitting = false;
  return { running, unsent: () => (failedWhileSubmitting ? 'encoding' : undefined) };
}

/**
 * {@link submit} for a {@link WireStatement}: unsent until its messages reached the
 * socket, from a failure to encode (before it exists) or of the connection (pg
 * refuses a query on a connection that failed, or the socket is closed).
 */
function submitWire(client: pg.PoolClient, statement: { name: string; text: string }, values: () => readonly WireValue[]): Submitted<WireResult> {
  let wire: WireStatement | undefined;
  const running = new Promise<WireResult>((resolve, reject) => {
    wire = new WireStatement(statement, values(), (err, result) => (err === undefined ? resolve(result) : reject(err)));
    client.query(wire);
  });
  return { running, unsent: () => (wire === undefined ? 'encoding' : wire.sent ? undefined : 'connection') };
}

function isServerError(err: unknown): boolean {
  return err instanceof pg.DatabaseError && err.severity !== 'FATAL' && err.severity !== 'PANIC';
}

function toError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}
export { postgresBackend } from './backend.js';
