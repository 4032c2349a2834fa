// S3Consensus and AzureConsensus against the same SDK called directly, on one
// emulator each started here (s3rver in atomic mode, which applies conditional
// writes; Azurite).
//
//   npx tsc -p . && node dist/bench/objstore-consensus.bench.js [throughput] [retained]
//
// (both parts when neither is named).
//
// Baselines (same client settings, same server, same run):
// - CaS: each client replaces its own object with a conditional PUT (If-Match of the
//   ETag its last PUT returned) of a value of the same size, as a hand-written
//   compare-and-set loop would; ours: compareAndSet on the client's own key, each
//   expecting the seqno it wrote last.
// - head: one GET of a value of that size; ours: head() of a key holding such values.
// 16 clients, 128-byte values; baseline and ours alternate over rounds. S3 request
// counts per operation are counted by a middleware on the client.
//
// Retained versions (`retained`): one client, 128-byte values, ours on one key
// filled by compareAndSet to 0, 1k and 10k versions; at each point CaS and head p50
// beside the raw SDK's conditional PUT and GET of one object in a prefix filled to
// as many objects as ours holds then (so an emulator slowing with what it stores
// shows in the baseline too), and requests and bytes per operation as Node's HTTP
// client sent and received them.
import { subscribe } from 'node:diagnostics_channel';
import type { ClientRequest, IncomingMessage } from 'node:http';
import { GetObjectCommand, ListObjectsV2Command, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { BlobServiceClient } from '@azure/storage-blob';
import { CaSResult, SeqNo, type Consensus } from 'persist-location';
import { AzureConsensus } from 'persist-location/azure';
import { defaultClientConfig, S3Consensus } from 'persist-location/s3';
import { startAzurite } from '../test/servers/azurite.js';
import { S3RVER_CREDENTIALS, S3rverProcess } from '../test/servers/s3rver.js';
import { fmtLatency, measure, report, type Measured } from './util.js';

const CLIENTS = 16;
const SECONDS = 3;
const ROUNDS = 3;
const VALUE = Buffer.alloc(128, 0x61);

const LEVELS = [0, 1000, 10_000];
const POINT_MS = 2000;
const parts = process.argv.slice(2);
const runs = (part: string) => parts.length === 0 || parts.includes(part);

interface Raw {
  put(key: string, etag: string | undefined): Promise<string>;
  get(key: string): Promise<void>;
  /** How many objects there are under `prefix`. */
  count(prefix: string): Promise<number>;
}

/** Requests and body bytes on the wire, from Node's HTTP client (which both SDKs use). */
const wire = { requests: 0, sent: 0, received: 0 };
subscribe('http.client.request.start', (message) => {
  wire.requests++;
  wire.sent += Number((message as { request: ClientRequest }).request.getHeader('content-length') ?? 0);
});
subscribe('http.client.response.finish', (message) => {
  wire.received += Number((message as { response: IncomingMessage }).response.headers['content-length'] ?? 0);
});

/** Requests and bytes per call of `op`, over `n` calls. */
async function perOp(n: number, op: () => Promise<unknown>): Promise<string> {
  const before = { ...wire };
  for (let i = 0; i < n; i++) await op();
  const per = (k: keyof typeof wire) => (wire[k] - before[k]) / n;
  return `${per('requests').toFixed(2)} req, ${per('sent').toFixed(0)} B sent, ${per('received').toFixed(0)} B received`;
}

/** CaS and head latency against versions retained on the key, beside the raw SDK in a prefix holding as many objects (module comment). */
async function retained(name: string, consensus: Consensus, oursPrefix: string, raw: Raw): Promise<void> {
  const run = `retained-${Date.now()}`;
  const key = 'k';
  let seqno = 0n;
  const cas = async () => {
    const r = await consensus.compareAndSet(key, seqno === 0n ? undefined : new SeqNo(seqno), { seqno: new SeqNo(seqno + 1n), data: VALUE });
    if (r !== CaSResult.Committed) throw new Error(`${name}: compareAndSet at ${seqno}: ${r}`);
    seqno++;
  };
  const head = () => consensus.head(key);
  let etag = await raw.put(`${run}/one`, undefined);
  const rawCas = async () => {
    etag = await raw.put(`${run}/one`, etag);
  };
  const rawGet = () => raw.get(`${run}/one`);
  let filled = 1;
  const p50 = (m: Measured) => m.latencyMs.p50.toFixed(3);
  for (const level of LEVELS) {
    const t0 = performance.now();
    while (seqno < BigInt(Math.max(level, 1))) await cas();
    const objects = await raw.count(oursPrefix);
    const fillFrom = filled;
    const names = Array.from({ length: Math.max(0, objects - filled) }, (_, i) => `${run}/fill-${fillFrom + i}`);
    for (let i = 0; i < names.length; i += 16) await Promise.all(names.slice(i, i + 16).map((n) => raw.put(n, undefined)));
    filled = Math.max(filled, objects);
    const fillS = ((performance.now() - t0) / 1000).toFixed(1);
    const m = { rawCas: await measure(1, POINT_MS, rawCas), cas: await measure(1, POINT_MS, cas), rawGet: await measure(1, POINT_MS, rawGet), head: await measure(1, POINT_MS, head) };
    console.log(
      `${name} at ${seqno} versions retained (${objects} objects of ours, as many raw; filled in ${fillS} s): ` +
        `CaS p50 ${p50(m.cas)} ms vs raw conditional PUT ${p50(m.rawCas)} ms (${(m.cas.latencyMs.p50 / m.rawCas.latencyMs.p50).toFixed(2)}x); ` +
        `head p50 ${p50(m.head)} ms vs raw GET ${p50(m.rawGet)} ms (${(m.head.latencyMs.p50 / m.rawGet.latencyMs.p50).toFixed(2)}x)`,
    );
    console.log(`  per compareAndSet: ${await perOp(256, cas)}; per head: ${await perOp(256, head)}; raw PUT: ${await perOp(64, rawCas)}; raw GET: ${await perOp(64, rawGet)}`);
  }
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/** Runs CaS and head, ours against the raw loop, and prints the medians of paired rounds. */
async function compare(name: string, consensus: Consensus, raw: Raw, counted?: () => Record<string, number>): Promise<void> {
  const seqnos = new Map<number, bigint>();
  const etags = new Map<number, string>();
  const run = `r${Date.now()}`;
  for (let c = 0; c < CLIENTS; c++) {
    await consensus.compareAndSet(`${run}-${c}`, undefined, { seqno: new SeqNo(1), data: VALUE });
    seqnos.set(c, 1n);
    etags.set(c, await raw.put(`${run}/raw-${c}`, undefined));
  }
  const cas = async (c: number) => {
    const last = seqnos.get(c)!;
    const r = await consensus.compareAndSet(`${run}-${c}`, new SeqNo(last), { seqno: new SeqNo(last + 1n), data: VALUE });
    if (r !== CaSResult.Committed) throw new Error(`client ${c}: ${r}`);
    seqnos.set(c, last + 1n);
  };
  const rawCas = async (c: number) => etags.set(c, await raw.put(`${run}/raw-${c}`, etags.get(c)));
  const results: Record<string, { base: Measured[]; ours: Measured[] }> = { cas: { base: [], ours: [] }, head: { base: [], ours: [] } };
  for (let r = 0; r < ROUNDS; r++) {
    results.cas!.base.push(await measure(CLIENTS, SECONDS * 1000, rawCas));
    results.cas!.ours.push(await measure(CLIENTS, SECONDS * 1000, cas));
    results.head!.base.push(await measure(CLIENTS, SECONDS * 1000, (c) => raw.get(`${run}/raw-${c}`)));
    results.head!.ours.push(await measure(CLIENTS, SECONDS * 1000, (c) => consensus.head(`${run}-${c}`)));
  }
  for (const [op, { base, ours }] of Object.entries(results)) {
    const ratios = ours.map((o, i) => o.opsPerSec / base[i]!.opsPerSec);
    report(`${name} ${op}, ${CLIENTS} clients, 128 B`, median(ours.map((m) => m.opsPerSec)), 'ops/s', median(base.map((m) => m.opsPerSec)));
    console.log(`  per-round ratios ${ratios.map((x) => x.toFixed(2)).join(', ')}; last round ours ${fmtLatency(ours.at(-1)!)}; baseline ${fmtLatency(base.at(-1)!)}`);
  }
  if (counted !== undefined) {
    const key = `${run}-count`;
    const n = 200;
    await consensus.compareAndSet(key, undefined, { seqno: new SeqNo(1), data: VALUE });
    const mid = { ...counted() };
    for (let i = 1; i <= n; i++) await consensus.compareAndSet(key, new SeqNo(i), { seqno: new SeqNo(i + 1), data: VALUE });
    const afterCas = { ...counted() };
    for (let i = 0; i < n; i++) await consensus.head(key);
    const afterHead = { ...counted() };
    const per = (a: Record<string, number>, b: Record<string, number>) =>
      Object.entries(b)
        .map(([k, v]) => [k, (v - (a[k] ?? 0)) / n] as const)
        .filter(([, v]) => v > 0)
        .map(([k, v]) => `${v.toFixed(3)} ${k}`)
        .join(', ');
    console.log(`  requests per compareAndSet (cached head): ${per(mid, afterCas)}; per head: ${per(afterCas, afterHead)}`);
  }
}

async function s3(): Promise<void> {
  process.env.AWS_ACCESS_KEY_ID = S3RVER_CREDENTIALS.accessKeyId;
  process.env.AWS_SECRET_ACCESS_KEY = S3RVER_CREDENTIALS.secretAccessKey;
  const server = await S3rverProcess.start(['bench'], { atomic: true });
  const config = { endpoint: server.endpoint, region: 'us-east-1', forcePathStyle: true };
  const raw = new S3Client(defaultClientConfig(config));
  const ours = new S3Client(defaultClientConfig(config));
  const counts: Record<string, number> = {};
  ours.middlewareStack.add(
    (next, context) => (args) => {
      const name = String((context as { commandName?: string }).commandName ?? 'request').replace(/Command$/, '');
      counts[name] = (counts[name] ?? 0) + 1;
      return next(args);
    },
    { step: 'initialize', name: 'countRequests' },
  );
  const consensus = await S3Consensus.open({ bucket: 'bench', prefix: 'consensus', client: ours });
  const sdk: Raw = {
    async put(key, etag) {
      const out = await raw.send(new PutObjectCommand({ Bucket: 'bench', Key: key, Body: VALUE, ContentLength: VALUE.length, ...(etag === undefined ? { IfNoneMatch: '*' } : { IfMatch: etag }) }));
      return out.ETag!;
    },
    async get(key) {
      const out = await raw.send(new GetObjectCommand({ Bucket: 'bench', Key: key }));
      await out.Body!.transformToByteArray();
    },
    async count(prefix) {
      let n = 0;
      let token: string | undefined;
      do {
        const page = await raw.send(new ListObjectsV2Command({ Bucket: 'bench', Prefix: prefix, ...(token !== undefined && { ContinuationToken: token }) }));
        n += page.KeyCount ?? 0;
        token = page.NextContinuationToken;
      } while (token !== undefined);
      return n;
    },
  };
  try {
    if (runs('throughput')) await compare('s3 S3Consensus', consensus, sdk, () => counts);
    if (runs('retained')) await retained('s3 S3Consensus', consensus, 'consensus/', sdk);
  } finally {
    await consensus.close();
    ours.destroy();
    raw.destroy();
    await server.stop();
  }
}

async function azure(): Promise<void> {
  const azurite = await startAzurite();
  const service = BlobServiceClient.fromConnectionString(azurite.connectionString, { retryOptions: { maxTries: 1 }, keepAliveOptions: { enable: true } });
  const container = service.getContainerClient('bench');
  await container.createIfNotExists();
  const consensus = await AzureConsensus.open({ container: 'bench', prefix: 'consensus', connectionString: azurite.connectionString });
  const sdk: Raw = {
    async put(key, etag) {
      const out = await container.getBlockBlobClient(key).upload(VALUE, VALUE.length, { conditions: etag === undefined ? { ifNoneMatch: '*' } : { ifMatch: etag } });
      return out.etag!;
    },
    async get(key) {
      // One GET, its body read whole (downloadToBuffer would ask for the properties first).
      const out = await container.getBlobClient(key).download();
      for await (const _ of out.readableStreamBody!) {
        // drained
      }
    },
    async count(prefix) {
      let n = 0;
      for await (const _ of container.listBlobsFlat({ prefix })) n++;
      return n;
    },
  };
  try {
    if (runs('throughput')) await compare('azure AzureConsensus', consensus, sdk);
    if (runs('retained')) await retained('azure AzureConsensus', consensus, 'consensus/', sdk);
  } finally {
    await consensus.close();
    await azurite.stop();
  }
}

await s3();
await azure();
