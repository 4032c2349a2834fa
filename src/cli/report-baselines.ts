/**
 * Baselines of the embedded storages for the benchmark report: the same storage
 * driven directly, with nothing of ours around it. A plain Map for memory, one
 * better-sqlite3 connection running the transaction SqliteConsensus runs (same
 * schema, WAL, synchronous=full), and a write+fsync+rename+directory-fsync loop for
 * files. `npm run bench -- --report` and `persist-location bench --report` both use them.
 */
import { constants } from 'node:fs';
import { mkdir, open, readFile, rename } from 'node:fs/promises';
import { join } from 'node:path';
import type { RawBlob, RawConsensus } from './report-charts.js';

const mismatch = (key: string) => new Error(`baseline CaS mismatch on ${key}: each loop owns its keys`);

export const BASELINE_NAMES = {
  mem: 'plain Map',
  sqlite: 'raw better-sqlite3 transaction',
  file: 'write+fsync+rename+dir fsync / readFile',
} as const;

/** Versions in arrays in a Map; each value copied, as any store must. */
export function memRawConsensus(): RawConsensus {
  const map = new Map<string, { seqno: bigint; data: Uint8Array }[]>();
  return {
    async cas(key, expected, data) {
      const versions = map.get(key) ?? [];
      if ((versions[versions.length - 1]?.seqno ?? 0n) !== expected) throw mismatch(key);
      versions.push({ seqno: expected + 1n, data: Uint8Array.from(data) });
      map.set(key, versions);
    },
    async head(key) {
      const versions = map.get(key);
      return versions?.[versions.length - 1];
    },
    async listKeys() {
      let n = 0;
      for (const _ of map.keys()) n++;
      return n;
    },
    async close() {},
  };
}

export function memRawBlob(): RawBlob {
  const map = new Map<string, Uint8Array>();
  return {
    async set(key, data) {
      map.set(key, Uint8Array.from(data));
    },
    async get(key) {
      return map.get(key);
    },
    async close() {},
  };
}

/** A new database file at `path` with SqliteConsensus's schema and durability, on one connection. */
export async function sqliteRawConsensus(path: string): Promise<RawConsensus> {
  const Database = (await import('better-sqlite3')).default;
  const db = new Database(path);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = full');
  db.defaultSafeIntegers(true);
  db.exec('CREATE TABLE consensus (key TEXT NOT NULL, seqno INTEGER NOT NULL, data BLOB NOT NULL, PRIMARY KEY (key, seqno)) WITHOUT ROWID');
  const headSeqno = db.prepare('SELECT seqno FROM consensus WHERE key = ? ORDER BY seqno DESC LIMIT 1').pluck();
  const head = db.prepare('SELECT seqno, data FROM consensus WHERE key = ? ORDER BY seqno DESC LIMIT 1');
  const insert = db.prepare('INSERT INTO consensus (key, seqno, data) VALUES (?, ?, ?)');
  const keys = db.prepare('SELECT DISTINCT key FROM consensus').pluck();
  const cas = db.transaction((key: string, expected: bigint, data: Uint8Array) => {
    if (((headSeqno.get(key) as bigint | undefined) ?? 0n) !== expected) throw mismatch(key);
    insert.run(key, expected + 1n, data);
  });
  return {
    async cas(key, expected, data) {
      cas.immediate(key, expected, data);
    },
    async head(key) {
      return head.get(key);
    },
    async listKeys() {
      let n = 0;
      for (const _ of keys.iterate()) n++;
      return n;
    },
    fast(on) {
      db.pragma(`synchronous = ${on ? 'normal' : 'full'}`);
    },
    async close() {
      db.close();
    },
  };
}

/**
 * The raw durable set both file baselines run (the report's and bench/file.bench.ts):
 * a new temporary file written and fsynced, renamed over `dir/name`, then the
 * directory fsynced, every call on its own.
 */
export async function rawDurableSet(dir: string, name: string, bytes: Uint8Array, tmpName: string): Promise<void> {
  const tmp = join(dir, tmpName);
  const fh = await open(tmp, 'wx');
  try {
    await fh.write(bytes, 0, bytes.length, 0);
    await fh.sync();
  } finally {
    await fh.close();
  }
  await rename(tmp, join(dir, name));
  const d = await open(dir, constants.O_RDONLY | constants.O_DIRECTORY);
  try {
    await d.sync();
  } finally {
    await d.close();
  }
}

/** Files in a new directory `dir`: a set is durable before it returns, as FileBlob's is. */
export async function fileRawBlob(dir: string): Promise<RawBlob> {
  await mkdir(dir, { recursive: true });
  let tmp = 0;
  return {
    set: (key, data) => rawDurableSet(dir, key, data, `.tmp-${tmp++}`),
    get: (key) => readFile(join(dir, key)),
    async close() {},
  };
}
