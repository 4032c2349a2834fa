/**
 * PostgresConsensus's changes method (envelope/changes.ts) on LISTEN/NOTIFY.
 *
 * Sending: two statement-level triggers on the schema's `heads` table (after
 * INSERT, after UPDATE; every committed compareAndSet inserts or updates its key's
 * head row) call one function that sends a single `pg_notify` per statement with
 * the JSON array of the keys it wrote. A group of compareAndSets (batcher.ts) is
 * one statement, so it costs one notification however many calls it holds; a
 * statement that committed nothing sends none. A payload of 8000 bytes or more
 * (PostgreSQL's limit: many long keys) is sent empty instead, meaning "anything may
 * have changed". PostgreSQL delivers a notification only once its transaction
 * commits, to sessions of the same database listening on its channel.
 *
 * The channel is named after the schema, so two locations in one database never
 * wake each other: `persist_<schema>`, or, where that exceeds an identifier's 63
 * bytes, the schema's first 38 characters and 16 hex digits of its SHA-256. The
 * triggers are created at open if missing (one DO block, serialized by an advisory
 * lock so that processes opening a schema together do not race). A role that may
 * not create them (insufficient privilege) still opens: its watchers then find
 * changes by polling at `maxPollMs`.
 *
 * Receiving: a handle LISTENs on one dedicated connection of its own (not a pooled
 * one, which would be handed to a statement), opened when its first key is watched
 * and ended when the last watch stops, or by close(). It never keeps the process
 * alive. When it connects, and whenever it drops (it then reconnects, with backoff,
 * while anyone watches), every iteration ticks: a change made while it was not
 * listening has no notification.
 */
import { createHash } from 'node:crypto';
import pg from 'pg';
import { Notifier } from '../envelope/changes.js';
import { quoteIdent } from './sql.js';

/** Longer payloads are refused by the server: NOTIFY's limit is "shorter than 8000 bytes". */
const MAX_PAYLOAD_BYTES = 7999;
/** Reconnecting the listener: the first pause, doubling up to the last. */
const RECONNECT_MIN_MS = 50;
const RECONNECT_MAX_MS = 2000;

/** The notification channel of the location in `schema` (see the module comment). */
export function channelName(schema: string): string {
  const plain = `persist_${schema}`;
  if (Buffer.byteLength(plain) <= 63) return plain;
  return `persist_${schema.slice(0, 38)}_${createHash('sha256').update(schema).digest('hex').slice(0, 16)}`;
}

/** Where the names in the SQL come from: the schema, already validated (sql.ts). */
const literal = (text: string) => `'${text.replaceAll("'", "''")}'`;

/**
 * One statement that creates the notify function and triggers of `schema` unless
 * they exist (see the module comment).
 */
export function notifySetupSql(schema: string): string {
  const s = quoteIdent(schema);
  const heads = literal(`${s}.heads`);
  const present = `(SELECT count(*) FROM pg_trigger WHERE tgrelid = ${heads}::regclass
      AND tgname IN ('persist_notify_insert', 'persist_notify_update')) = 2`;
  return `DO $persist$
BEGIN
  IF ${present} THEN RETURN; END IF;
  PERFORM pg_advisory_xact_lock(hashtext(${literal(`persist-location notify ${schema}`)}));
  IF ${present} THEN RETURN; END IF;
  CREATE OR REPLACE FUNCTION ${s}.persist_notify() RETURNS trigger LANGUAGE plpgsql AS $fn$
  DECLARE keys text;
  BEGIN
    SELECT json_agg(key)::text INTO keys FROM changed;
    IF keys IS NOT NULL THEN
      PERFORM pg_notify(${literal(channelName(schema))}, CASE WHEN octet_length(keys) <= ${MAX_PAYLOAD_BYTES} THEN keys ELSE '' END);
    END IF;
    RETURN NULL;
  END $fn$;
  DROP TRIGGER IF EXISTS persist_notify_insert ON ${s}.heads;
  DROP TRIGGER IF EXISTS persist_notify_update ON ${s}.heads;
  CREATE TRIGGER persist_notify_insert AFTER INSERT ON ${s}.heads
    REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION ${s}.persist_notify();
  CREATE TRIGGER persist_notify_update AFTER UPDATE ON ${s}.heads
    REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION ${s}.persist_notify();
END $persist$`;
}

/** The keys a notification names; undefined for "anything may have changed". */
export function keysOfPayload(payload: string | undefined): string[] | undefined {
  if (payload === undefined || payload === '') return undefined;
  try {
    const keys: unknown = JSON.parse(payload);
    return Array.isArray(keys) && keys.every((k) => typeof k === 'string') ? keys : undefined;
  } catch {
    return undefined;
  }
}

/** One handle's listener and the iterations it wakes (see the module comment). */
export class PostgresChanges {
  readonly #config: pg.ClientConfig;
  readonly #channel: string;
  readonly #notifier = new Notifier({ watched: () => this.#wanted(), unwatched: () => this.#wanted() });
  #client: pg.Client | undefined;
  #retry: NodeJS.Timeout | undefined;
  #pauseMs = RECONNECT_MIN_MS;
  #closed = false;

  /**
   * @param config the handle's connection settings (the listener's connect and
   *   LISTEN are bounded by `connectTimeoutMs`)
   */
  constructor(config: pg.ClientConfig, schema: string, connectTimeoutMs: number) {
    this.#config = { ...config, connectionTimeoutMillis: connectTimeoutMs, query_timeout: connectTimeoutMs, keepAlive: true };
    this.#channel = channelName(schema);
  }

  /** Ticks for `key` until `signal` fires. */
  changes(key: string, signal: AbortSignal): AsyncIterable<void> {
    return this.#notifier.changes(key, signal);
  }

  /** Ends the listener; the iterations tick once more, and their reads then report the closed handle. */
  close(): void {
    this.#closed = true;
    this.#stop();
    this.#notifier.notifyAll();
  }

  /** Listens while any key is watched, and only then. */
  #wanted(): void {
    if (this.#notifier.listening && !this.#closed) {
      if (this.#client === undefined && this.#retry === undefined) this.#listen();
    } else this.#stop();
  }

  #listen(): void {
    const client = new pg.Client(this.#config);
    this.#client = client;
    const lost = () => {
      if (this.#client !== client) return;
      this.#client = undefined;
      client.end().catch(() => {});
      this.#notifier.notifyAll();
      if (!this.#notifier.listening || this.#closed) return;
      this.#retry = setTimeout(() => {
        this.#retry = undefined;
        this.#wanted();
      }, this.#pauseMs);
      this.#retry.unref();
      this.#pauseMs = Math.min(RECONNECT_MAX_MS, this.#pauseMs * 2);
    };
    client.on('error', lost);
    client.on('end', lost);
    client.on('notification', (msg) => {
      if (msg.channel !== this.#channel) return;
      const keys = keysOfPayload(msg.payload);
      if (keys === undefined) this.#notifier.notifyAll();
      else for (const key of keys) this.#notifier.notify(key);
    });
    client
      .connect()
      .then(() => {
        // Only once connected: pg has no socket to unref before (and @types/pg omits the method).
        (client as unknown as { unref(): void }).unref();
        return client.query(`LISTEN ${quoteIdent(this.#channel)}`);
      })
      .then(() => {
        if (this.#client !== client) return;
        this.#pauseMs = RECONNECT_MIN_MS;
        // Changes made before LISTEN took effect have no notification.
        this.#notifier.notifyAll();
      }, lost);
  }

  #stop(): void {
    clearTimeout(this.#retry);
    this.#retry = undefined;
    const client = this.#client;
    this.#client = undefined;
    // Not awaited: the server's goodbye adds nothing, and a dead connection never says it.
    client?.end().catch(() => {});
  }
}
