// The backends the report measures, each with the baseline it is drawn beside: the
// same storage driven directly (the embedded ones' in src/cli/report-baselines.ts;
// here the CaS statement through raw `pg`, the etcd3 txn EtcdConsensus sends, and
// conditional PutObject/GetObject and upload/download through the SDKs). Every
// `open`/`raw` call with a new tag gets a fresh location, so that key counts are exact.
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MemBlob, MemConsensus } from 'persist-location';
import { BASELINE_NAMES, fileRawBlob, memRawBlob, memRawConsensus, sqliteRawConsensus } from '../../src/cli/report-baselines.js';
import type { BlobTarget, ConsensusTarget, RawBlob, RawConsensus } from '../../src/cli/report-charts.js';

const MiB = 1024 * 1024;

export interface Started {
  consensus?: ConsensusTarget;
  blob?: BlobTarget;
  stop(): Promise<void>;
}

export type Backend = () => Promise<Started>;

const mismatch = (key: string) => new Error(`baseline CaS mismatch on ${key}: each loop owns its keys`);

async function scratchDir(name: string): Promise<{ dir: string; remove: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), `persist-report-${name}-`));
  return { dir, remove: () => rm(dir, { recursive: true, force: true }) };
}

/** An object store driven through its SDK: `put` returns the new ETag; `etag` null means "only if absent". */
interface ObjectStore {
  put(key: string, data: Uint8Array, etag?: string | null): Promise<string>;
  get(key: string): Promise<unknown>;
  /** Counts the objects under the baseline's prefix. */
  count(): Promise<number>;
  close(): Promise<void>;
}

/** The object-store baselines: CaS is a conditional put (if absent, then if the last ETag still matches). */
function objectStore(store: ObjectStore): { consensus: RawConsensus; blob: RawBlob } {
  const etags = new Map<string, string>();
  return {
    consensus: {
      async cas(key, expected, data) {
        etags.set(key, await store.put(key, data, expected === 0n ? null : etags.get(key)));
      },
      head: (key) => store.get(key),
      listKeys: () => store.count(),
      close: () => store.close(),
    },
    blob: { set: async (key, data) => void (await store.put(key, data)), get: (key) => store.get(key), close: () => store.close() },
  };
}

const mem: Backend = async () => ({
  consensus: {
    ours: 'MemConsensus',
    baseline: BASELINE_NAMES.mem,
    limits: { versions: 100_000, keys: 1_000_000, valueBytes: 4 * MiB },
    // Private (no name): let go once the chart is done, so no chart pays the collector for another's data.
    open: async () => new MemConsensus(),
    raw: async () => memRawConsensus(),
  },
  blob: {
    ours: 'MemBlob',
    baseline: BASELINE_NAMES.mem,
    valueBytes: 4 * MiB,
    open: async () => new MemBlob(),
    raw: async () => memRawBlob(),
  },
  stop: async () => {},
});

const sqlite: Backend = async () => {
  const { SqliteConsensus } = await import('persist-location/sqlite');
  const scratch = await scratchDir('sqlite');
  return {
    consensus: {
      ours: 'SqliteConsensus (defaults)',
      baseline: BASELINE_NAMES.sqlite,
      limits: { versions: 100_000, keys: 1_000_000, valueBytes: 4 * MiB },
      // The scratch directory is this process's own: a tag names one database file.
      open: (tag) => SqliteConsensus.open(join(scratch.dir, `${tag}.db`)),
      openFiller: (tag) => SqliteConsensus.open(join(scratch.dir, `${tag}.db`), { synchronous: 'normal' }),
      raw: (tag) => sqliteRawConsensus(join(scratch.dir, `raw-${tag}.db`)),
    },
    stop: scratch.remove,
  };
};

const file: Backend = async () => {
  const { FileBlob } = await import('persist-location/file');
  const scratch = await scratchDir('file');
  return {
    blob: {
      ours: 'FileBlob',
      baseline: BASELINE_NAMES.file,
      valueBytes: 4 * MiB,
      open: async (tag) => new FileBlob(join(scratch.dir, `${tag}-${randomUUID()}`)),
      raw: (tag) => fileRawBlob(join(scratch.dir, `raw-${tag}`)),
    },
    stop: scratch.remove,
  };
};

const postgres: Backend = async () => {
  const { startPostgres } = await import('../../test/servers/postgres.js');
  const { PostgresConsensus } = await import('persist-location/postgres');
  const pg = (await import('pg')).default;
  const server = await startPostgres({ embedded: true });
  const schemaName = (tag: string) => `${tag.replace(/[^a-z0-9]/g, '')}_${randomUUID().slice(0, 8)}`;
  return {
    consensus: {
      ours: 'PostgresConsensus (defaults)',
      baseline: 'raw pg, the same CaS statement',
      limits: { versions: 100_000, keys: 1_000_000, valueBytes: 4 * MiB },
      note: 'embedded PostgreSQL 17 on loopback',
      open: (tag) => PostgresConsensus.open({ connectionString: server.baseUrl, schema: schemaName(tag) }),
      raw: async (tag) => {
        const s = `raw_${schemaName(tag)}`;
        await server.sql(`CREATE SCHEMA "${s}"`);
        await server.sql(`CREATE TABLE "${s}".heads (key text PRIMARY KEY, seqno bigint NOT NULL)`);
        await server.sql(`CREATE TABLE "${s}".versions (key text NOT NULL, seqno bigint NOT NULL, data bytea NOT NULL, PRIMARY KEY (key, seqno))`);
        const pool = new pg.Pool({ connectionString: server.baseUrl, max: 16 });
        // An idle connection cut when the server stops must not end the process.
        pool.on('error', () => {});
        const casSql = `WITH h AS (UPDATE "${s}".heads SET seqno = $3::bigint WHERE key = $1::text AND seqno = $2::bigint RETURNING key) INSERT INTO "${s}".versions (key, seqno, data) SELECT key, $3::bigint, $4::bytea FROM h`;
        return {
          async cas(key, expected, data) {
            if (expected === 0n) await pool.query(`INSERT INTO "${s}".heads VALUES ($1, 0) ON CONFLICT DO NOTHING`, [key]);
            const r = await pool.query({ name: `cas-${s}`, text: casSql, values: [key, expected.toString(), (expected + 1n).toString(), data] });
            if (r.rowCount !== 1) throw mismatch(key);
          },
          async head(key) {
            const r = await pool.query({ name: `head-${s}`, text: `SELECT seqno, data FROM "${s}".versions WHERE key = $1 ORDER BY seqno DESC LIMIT 1`, values: [key] });
            return r.rows[0];
          },
          async listKeys() {
            const r = await pool.query(`SELECT key FROM "${s}".heads`);
            return r.rows.length;
          },
          close: () => pool.end(),
        };
      },
    },
    stop: () => server.stop(),
  };
};

const etcd: Backend = async () => {
  const { startEtcd } = await import('../../test/servers/etcd.js');
  const { EtcdConsensus } = await import('persist-location/etcd');
  const etcd3 = await import('etcd3');
  const cluster = await startEtcd(1);
  const hex16 = (n: bigint) => Buffer.from(n.toString(16).padStart(16, '0'));
  return {
    consensus: {
      ours: 'EtcdConsensus (defaults)',
      baseline: 'raw etcd3 kv.txn',
      limits: { versions: 100_000, keys: 100_000, valueBytes: 1 * MiB },
      note: 'one etcd member on loopback; values up to 1 MiB (etcd refuses requests past 1.5 MiB)',
      open: async (tag) => new EtcdConsensus({ endpoints: cluster.endpoints, prefix: `/report-${tag}-${randomUUID()}` }),
      raw: async (tag) => {
        const client = new etcd3.Etcd3({ hosts: cluster.endpoints });
        const prefix = `/raw-${tag}-${randomUUID()}/`;
        const headKey = (key: string) => Buffer.from(`${prefix}\0h/${key}`);
        return {
          async cas(key, expected, data) {
            const k = headKey(key);
            const compare: import('etcd3').ICompare =
              expected === 0n
                ? { key: k, target: etcd3.CompareTarget.Create, result: etcd3.CompareResult.Equal, create_revision: 0 }
                : { key: k, target: etcd3.CompareTarget.Value, result: etcd3.CompareResult.Equal, value: hex16(expected) };
            const next = expected + 1n;
            const res = await client.kv.txn({
              compare: [compare],
              success: [{ request_put: { key: Buffer.from(`${prefix}\0v/${key}/${hex16(next).toString()}`), value: Buffer.from(data) } }, { request_put: { key: k, value: hex16(next) } }],
              failure: [],
            });
            if (!res.succeeded) throw mismatch(key);
          },
          async head(key) {
            const h = await client.kv.range({ key: headKey(key) });
            const seqno = h.kvs[0]?.value.toString();
            return seqno === undefined ? undefined : client.kv.range({ key: Buffer.from(`${prefix}\0v/${key}/${seqno}`) });
          },
          async listKeys() {
            const start = Buffer.from(`${prefix}\0h/`);
            const end = Buffer.from(`${prefix}\0h0`);
            let from = start;
            let n = 0;
            for (;;) {
              const page = await client.kv.range({ key: from, range_end: end, limit: 5000, keys_only: true });
              n += page.kvs.length;
              if (!page.more || page.kvs.length === 0) return n;
              from = Buffer.concat([page.kvs[page.kvs.length - 1]!.key, Buffer.from([0])]);
            }
          },
          async close() {
            client.close();
          },
        };
      },
    },
    stop: () => cluster.stop(),
  };
};

const s3: Backend = async () => {
  const { S3RVER_CREDENTIALS, S3rverProcess } = await import('../../test/servers/s3rver.js');
  const { S3Blob, S3Consensus, defaultClientConfig } = await import('persist-location/s3');
  const sdk = await import('@aws-sdk/client-s3');
  process.env.AWS_ACCESS_KEY_ID = S3RVER_CREDENTIALS.accessKeyId;
  process.env.AWS_SECRET_ACCESS_KEY = S3RVER_CREDENTIALS.secretAccessKey;
  const server = await S3rverProcess.start(['report'], { atomic: true });
  const clientConfig = { endpoint: server.endpoint, region: 'us-east-1', forcePathStyle: true };
  const Bucket = 'report';
  const rawClient = (tag: string) => {
    const client = new sdk.S3Client(defaultClientConfig(clientConfig));
    const prefix = `raw-${tag}-${randomUUID()}/`;
    return objectStore({
      async put(key, data, etag) {
        const conditions = etag === undefined ? {} : etag === null ? { IfNoneMatch: '*' } : { IfMatch: etag };
        return (await client.send(new sdk.PutObjectCommand({ Bucket, Key: prefix + key, Body: data, ContentLength: data.length, ...conditions }))).ETag!;
      },
      get: async (key) => (await client.send(new sdk.GetObjectCommand({ Bucket, Key: prefix + key }))).Body!.transformToByteArray(),
      async count() {
        let n = 0;
        let token: string | undefined;
        do {
          const page = await client.send(new sdk.ListObjectsV2Command({ Bucket, Prefix: prefix, ContinuationToken: token }));
          n += page.KeyCount ?? 0;
          token = page.NextContinuationToken;
        } while (token !== undefined);
        return n;
      },
      close: async () => client.destroy(),
    });
  };
  const note = 's3rver (file-backed emulator, atomic conditional writes) on loopback: far slower than S3, and the baseline pays the same';
  return {
    consensus: {
      ours: 'S3Consensus',
      baseline: 'raw conditional PutObject / GetObject',
      limits: { versions: 3_000, keys: 3_000, valueBytes: 4 * MiB },
      note,
      open: (tag) => S3Consensus.open({ bucket: Bucket, prefix: `c-${tag}-${randomUUID()}`, clientConfig }),
      raw: async (tag) => rawClient(tag).consensus,
    },
    blob: {
      ours: 'S3Blob',
      baseline: 'raw PutObject / GetObject',
      valueBytes: 4 * MiB,
      note,
      open: async (tag) => new S3Blob({ bucket: Bucket, prefix: `b-${tag}-${randomUUID()}`, clientConfig }),
      raw: async (tag) => rawClient(tag).blob,
    },
    stop: () => server.stop(),
  };
};

const azure: Backend = async () => {
  const { startAzurite } = await import('../../test/servers/azurite.js');
  const { AzureBlob, AzureConsensus } = await import('persist-location/azure');
  const { BlobServiceClient } = await import('@azure/storage-blob');
  const server = await startAzurite();
  const container = 'report';
  const { connectionString } = server;
  const service = BlobServiceClient.fromConnectionString(connectionString, { retryOptions: { maxTries: 1 }, keepAliveOptions: { enable: true } });
  const containerClient = service.getContainerClient(container);
  await containerClient.createIfNotExists();
  const rawBlob = (tag: string) => {
    const prefix = `raw-${tag}-${randomUUID()}/`;
    return objectStore({
      async put(key, data, etag) {
        const options = etag === undefined ? {} : { conditions: etag === null ? { ifNoneMatch: '*' } : { ifMatch: etag } };
        return (await containerClient.getBlockBlobClient(prefix + key).upload(data, data.length, options)).etag!;
      },
      get: (key) => containerClient.getBlockBlobClient(prefix + key).downloadToBuffer(),
      async count() {
        let n = 0;
        for await (const _ of containerClient.listBlobsFlat({ prefix })) n++;
        return n;
      },
      close: async () => {},
    });
  };
  const note = 'azurite (emulator) on loopback';
  return {
    consensus: {
      ours: 'AzureConsensus',
      baseline: 'raw conditional upload / download',
      limits: { versions: 3_000, keys: 10_000, valueBytes: 4 * MiB },
      note,
      open: (tag) => AzureConsensus.open({ container, prefix: `c-${tag}-${randomUUID()}`, connectionString }),
      raw: async (tag) => rawBlob(tag).consensus,
    },
    blob: {
      ours: 'AzureBlob',
      baseline: 'raw upload / download',
      valueBytes: 4 * MiB,
      note,
      open: async (tag) => new AzureBlob({ container, prefix: `b-${tag}-${randomUUID()}`, connectionString }),
      raw: async (tag) => rawBlob(tag).blob,
    },
    stop: () => server.stop(),
  };
};

/** Every backend, in the order the report shows them. */
export const BACKENDS: Record<string, Backend> = { sqlite, file, postgres, etcd, s3, azure, mem };
