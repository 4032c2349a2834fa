/**
 * The SQL of PostgresConsensus: schema creation and the statements every
 * operation runs (each operation is one statement, an implicit transaction at READ
 * COMMITTED; only a truncate racing commits on its key runs its statement again).
 * Written in the subset CockroachDB also accepts, except `casBatch` (two
 * modifications of `heads` in one statement), which is never sent to CockroachDB.
 */
import { invalidArgument } from '../errors.js';
import type { CasCall } from './batcher.js';

/** Default schema of a location. */
export const DEFAULT_SCHEMA = 'consensus';

/**
 * Schema names come from URIs, so they are restricted to plain identifiers
 * (then quoted anyway): letters, digits and `_`, not starting with a digit, at
 * most 63 bytes (PostgreSQL's NAMEDATALEN - 1), and not `pg_*` (reserved).
 */
export function validateSchemaName(schema: string): void {
  if (!/^[A-Za-z_][A-Za-z0-9_]{0,62}$/.test(schema) || /^pg_/i.test(schema)) {
    throw invalidArgument(
      `invalid PostgreSQL schema name '${schema}': use 1-63 letters, digits or _, not starting with a digit or pg_`,
    );
  }
}

/** A double-quoted identifier (the name is validated first, so this is belt and braces). */
export function quoteIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

/** The statements of one location, with their prepared-statement names. */
export interface Statements {
  createSchema: string;
  createHeads: string;
  createVersions: string;
  tablesExist: string;
  /** Whether the server is CockroachDB (its version() says so). */
  isCockroach: string;
  /** $1 key, $2 seqno, $3 data: commit the first version iff the key has none. */
  casFirst: { name: string; text: string };
  /** $1 key, $2 expected, $3 seqno, $4 data: commit iff the head is `expected`. */
  casNext: { name: string; text: string };
  /**
   * $1 keys (distinct), $2 expected seqnos (null: no data), $3 new seqnos, $4 data:
   * many compareAndSets in one statement; returns the keys that committed (one
   * column, read by position).
   */
  casBatch: { name: string; text: string };
  /** $1 key. */
  head: { name: string; text: string };
  /** $1 key, $2 from, $3 limit; columns seqno, data (read by position, in this order). */
  scan: { name: string; text: string };
  /**
   * $1 key, $2 seqno: returns the locked (newest) head, the snapshot's head (null:
   * no data) and the rows deleted; nothing is deleted unless the two heads agree.
   */
  truncate: { name: string; text: string };
  /** $1 the last key of the previous page ('' first), $2 page size; one column, key (read by position). */
  listKeys: { name: string; text: string };
}

/**
 * Layout: `heads` holds one row per key with its current head seqno; `versions`
 * holds every retained version. A compare-and-set updates the head row with
 * `WHERE seqno = expected` and inserts the version in the same statement, so two
 * writers expecting the same head serialize on that row lock: the second one
 * re-checks the updated row, finds it changed and inserts nothing. Checking
 * `max(seqno)` of `versions` instead would not be enough, because writers
 * choosing different new seqnos never collide on the primary key.
 */
export function statements(schema: string, cockroach = false): Statements {
  const s = quoteIdent(schema);
  const heads = `${s}.heads`;
  const versions = `${s}.versions`;
  // Prepared-statement names are per connection, and each handle has its own pool.
  const collateC = cockroach ? '' : 'COLLATE "C"';
  const named = (name: string, text: string) => ({ name: `persist_${name}`, text: text.replace(/\s+/g, ' ').trim() });
  return {
    createSchema: `CREATE SCHEMA IF NOT EXISTS ${s}`,
    // COLLATE "C": byte order, so the indexes never depend on the OS's locale data
    // (a glibc upgrade can silently reorder a locale). CockroachDB compares strings
    // bytewise already and refuses a "C" column, so it gets none.
    createHeads: `CREATE TABLE IF NOT EXISTS ${heads} (
      key text ${collateC} NOT NULL PRIMARY KEY,
      seqno bigint NOT NULL)`,
    createVersions: `CREATE TABLE IF NOT EXISTS ${versions} (
      key text ${collateC} NOT NULL,
      seqno bigint NOT NULL,
      data bytea NOT NULL,
      PRIMARY KEY (key, seqno))`,
    isCockroach: `SELECT version() LIKE '%CockroachDB%' AS cockroach`,
    tablesExist: `SELECT count(*) AS n FROM information_schema.tables
      WHERE table_schema = $1 AND table_name IN ('heads', 'versions')`,
    casFirst: named(
      'cas_first',
      `WITH h AS (
         INSERT INTO ${heads} (key, seqno) VALUES ($1::text, $2::bigint)
         ON CONFLICT (key) DO NOTHING
         RETURNING key)
       INSERT INTO ${versions} (key, seqno, data) SELECT key, $2::bigint, $3::bytea FROM h`,
    ),
    casNext: named(
      'cas_next',
      `WITH h AS (
         UPDATE ${heads} SET seqno = $3::bigint
         WHERE key = $1::text AND seqno = $2::bigint
         RETURNING key)
       INSERT INTO ${versions} (key, seqno, data) SELECT key, $3::bigint, $4::bytea FROM h`,
    ),
    // The same two steps for many keys at once (group commit, see batcher.ts). Not
    // for CockroachDB: it refuses two subqueries modifying one table (heads).
    casBatch: named(
      'cas_batch',
      `WITH input AS (
         SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bytea[]) AS i (key, expected, seqno, data)),
       upd AS (
         UPDATE ${heads} AS h SET seqno = i.seqno FROM input AS i
         WHERE h.key = i.key AND h.seqno = i.expected
         RETURNING h.key),
       ins AS (
         INSERT INTO ${heads} (key, seqno) SELECT key, seqno FROM input WHERE expected IS NULL
         ON CONFLICT (key) DO NOTHING
         RETURNING key),
       won AS (SELECT key FROM upd UNION ALL SELECT key FROM ins)
       INSERT INTO ${versions} (key, seqno, data)
       SELECT i.key, i.seqno, i.data FROM input AS i JOIN won AS w ON w.key = i.key
       RETURNING key`,
    ),
    head: named('head', `SELECT seqno, data FROM ${versions} WHERE key = $1::text ORDER BY seqno DESC LIMIT 1`),
    scan: named(
      'scan',
      `SELECT seqno, data FROM ${versions}
       WHERE key = $1::text AND seqno >= $2::bigint ORDER BY seqno LIMIT $3::bigint`,
    ),
    // The head row is locked so that truncates of one key run one at a time: two
    // concurrent deletes could otherwise each take part of the same rows and both
    // report partial counts, which no serial order explains. Under READ COMMITTED
    // the lock returns the newest head, but the DELETE only sees the versions of the
    // statement's snapshot: if compareAndSets committed in between (`seen`, the
    // snapshot's head, differs from `head`), versions below the new head may be
    // invisible to it, so nothing is deleted and the caller runs the statement
    // again with a fresh snapshot. When both agree, the snapshot holds every version
    // up to the head (a version only lands together with its head), and new ones
    // land above it, so the delete can never remove the current head.
    truncate: named(
      'truncate',
      `WITH h AS (SELECT seqno FROM ${heads} WHERE key = $1::text FOR UPDATE),
       s AS (SELECT seqno FROM ${heads} WHERE key = $1::text),
       d AS (
         DELETE FROM ${versions}
         WHERE key = $1::text AND seqno < $2::bigint AND $2::bigint <= (SELECT seqno FROM h)
           AND (SELECT seqno FROM h) = (SELECT seqno FROM s)
         RETURNING 1)
       SELECT (SELECT seqno FROM h) AS head, (SELECT seqno FROM s) AS seen, (SELECT count(*) FROM d) AS deleted`,
    ),
    listKeys: named('list_keys', `SELECT key FROM ${heads} WHERE key > $1::text ORDER BY key LIMIT $2::bigint`),
  };
}

/**
 * The parameters of `casBatch`, each a one-dimensional array in PostgreSQL's binary
 * format (what array_recv reads). A Buffer parameter travels as binary, so the
 * client neither hex-encodes the values nor builds array literals, and the server
 * parses none: each element travels as its own bytes, behind its length.
 */
export function casBatchParams(calls: readonly CasCall[]): Buffer[] {
  return [
    binaryArray(OID_TEXT, calls.map((c) => Buffer.from(c.key, 'utf8'))),
    int8Array(calls.map((c) => c.expected)),
    int8Array(calls.map((c) => c.seqno)),
    binaryArray(OID_BYTEA, calls.map((c) => c.data)),
  ];
}

const OID_INT8 = 20;
const OID_TEXT = 25;
const OID_BYTEA = 17;

/** bigint[] of decimal strings, null for SQL NULL. */
function int8Array(values: readonly (string | null)[]): Buffer {
  return binaryArray(
    OID_INT8,
    values.map((v) => {
      if (v === null) return null;
      const b = Buffer.allocUnsafe(8);
      b.writeBigInt64BE(BigInt(v));
      return b;
    }),
  );
}

/**
 * Header (dimensions, has-null flag, element type; then length and lower bound of
 * the one dimension), then each element as a 32-bit length (-1: NULL) and its bytes.
 */
function binaryArray(elementOid: number, elements: readonly (Buffer | null)[]): Buffer {
  let size = 20;
  for (const e of elements) size += 4 + (e?.byteLength ?? 0);
  const out = Buffer.allocUnsafe(size);
  out.writeInt32BE(1, 0);
  out.writeInt32BE(elements.includes(null) ? 1 : 0, 4);
  out.writeInt32BE(elementOid, 8);
  out.writeInt32BE(elements.length, 12);
  out.writeInt32BE(1, 16);
  let at = 20;
  for (const e of elements) {
    if (e === null) {
      at = out.writeInt32BE(-1, at);
    } else {
      at = out.writeInt32BE(e.byteLength, at);
      at += e.copy(out, at);
    }
  }
  return out;
}
