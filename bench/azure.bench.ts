// AzureBlob against the Azure SDK called directly, same Azurite, same run.
//
//   npx tsc -p . && node dist/bench/azure.bench.js [--quick]
//
// Baselines (one SDK call per operation, default options, SDK retries on):
//   4 KiB set:  BlockBlobClient.upload(buf, len)
//   4 KiB get:  BlobClient.download() + reading the body into one Buffer
//   64 MiB set: BlockBlobClient.uploadData(buf)  (one Put Blob: 64 MiB < its 256 MiB single-shot limit)
//   64 MiB get: BlobClient.downloadToBuffer()    (Get Properties, then 4 MiB ranges, 5 at a time)
// Small operations are paired (baseline and ours alternate inside each client loop) and large
// transfers alternate, so that drift on a busy machine hits both sides alike.
import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { BlobServiceClient } from '@azure/storage-blob';
import { AzureBlob, encodeKey } from 'persist-location/azure';
import { startAzurite } from '../test/servers/azurite.js';
import { fmtLatency, report, sleep, summarize } from './util.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const quick = process.argv.includes('--quick');
const ROUNDS = quick ? 1 : 3;
const SMALL_MS = quick ? 1000 : 2500;
const LARGE_ITERATIONS = quick ? 2 : 4;

async function readAll(stream: NodeJS.ReadableStream | undefined, size: number): Promise<Buffer> {
  const out = Buffer.allocUnsafe(size);
  let at = 0;
  for await (const chunk of (stream ?? []) as AsyncIterable<Buffer>) {
    chunk.copy(out, at);
    at += chunk.length;
  }
  return out;
}

/**
 * Paired small operations: every client loop runs one baseline and one AzureBlob
 * operation per iteration (the order alternating), so that both sides see the same
 * moment of a busy machine. Throughput per side is clients / mean latency.
 */
async function smallOps(clients: number, baseline: (c: number, i: number) => Promise<unknown>, ours: (c: number, i: number) => Promise<unknown>) {
  const lat: [number[], number[]] = [[], []];
  const sides = [baseline, ours];
  let counting = false;
  let stop = false;
  const loops = Array.from({ length: clients }, async (_, c) => {
    for (let i = 0; !stop; i++) {
      for (const side of i % 2 === 0 ? [0, 1] : [1, 0]) {
        const t0 = performance.now();
        await sides[side]!(c, i);
        if (counting) lat[side]!.push(performance.now() - t0);
      }
    }
  });
  await sleep(500);
  counting = true;
  await sleep(ROUNDS * SMALL_MS);
  counting = false;
  stop = true;
  await Promise.all(loops);
  const side = (l: number[]) => {
    const m = summarize(l, 1);
    const mean = l.reduce((a, b) => a + b, 0) / l.length;
    return { opsPerSec: (clients * 1000) / mean, m };
  };
  return { baseline: side(lat[0]), ours: side(lat[1]) };
}

/** Alternating timed runs of a large operation; returns MiB/s of each side (total bytes / total time). */
async function largeOps(bytes: number, baseline: () => Promise<unknown>, ours: () => Promise<unknown>) {
  let tb = 0;
  let to = 0;
  await baseline(); // warm-up
  await ours();
  for (let i = 0; i < LARGE_ITERATIONS; i++) {
    let t0 = performance.now();
    await baseline();
    tb += performance.now() - t0;
    t0 = performance.now();
    await ours();
    to += performance.now() - t0;
  }
  const rate = (ms: number) => (bytes * LARGE_ITERATIONS) / MiB / (ms / 1000);
  return { baseline: rate(tb), ours: rate(to) };
}

async function main(): Promise<void> {
  const server = await startAzurite();
  try {
    const container = 'bench';
    const sdk = BlobServiceClient.fromConnectionString(server.connectionString).getContainerClient(container);
    await sdk.create();
    const prefix = `run-${randomUUID().slice(0, 8)}`;
    const blob = new AzureBlob({ container, prefix, connectionString: server.connectionString });
    // The baseline writes the very names AzureBlob would, under its own prefix.
    const direct = (key: string) => sdk.getBlockBlobClient(`base-${prefix}/${encodeKey(key)}`);

    console.log(`Azurite on port ${server.port}; ${(ROUNDS * SMALL_MS) / 1000} s of paired small operations per case; ${LARGE_ITERATIONS} large transfers per side`);
    const small = Buffer.alloc(4 * KiB, 7);
    // Every key the get loops read exists on both sides, whatever the set loops reached.
    for (let c = 0; c < 8; c++) {
      await Promise.all(Array.from({ length: 64 }, (_, i) => Promise.all([direct(`s/${c}/${i}`).upload(small, small.length), blob.set(`s/${c}/${i}`, small)])));
    }
    for (const clients of [1, 8]) {
      const sets = await smallOps(
        clients,
        (c, i) => direct(`s/${c}/${i % 64}`).upload(small, small.length),
        (c, i) => blob.set(`s/${c}/${i % 64}`, small),
      );
      report(`4 KiB set, ${clients} client(s): SDK upload()`, sets.baseline.opsPerSec, 'ops/s');
      report(`4 KiB set, ${clients} client(s): AzureBlob.set`, sets.ours.opsPerSec, 'ops/s', sets.baseline.opsPerSec);
      console.log(`    SDK ${fmtLatency(sets.baseline.m)}\n    ours ${fmtLatency(sets.ours.m)}`);
      const gets = await smallOps(
        clients,
        async (c, i) => {
          const r = await direct(`s/${c}/${i % 64}`).download();
          return readAll(r.readableStreamBody, r.contentLength ?? 0);
        },
        (c, i) => blob.get(`s/${c}/${i % 64}`),
      );
      report(`4 KiB get, ${clients} client(s): SDK download()`, gets.baseline.opsPerSec, 'ops/s');
      report(`4 KiB get, ${clients} client(s): AzureBlob.get`, gets.ours.opsPerSec, 'ops/s', gets.baseline.opsPerSec);
      console.log(`    SDK ${fmtLatency(gets.baseline.m)}\n    ours ${fmtLatency(gets.ours.m)}`);
    }

    const large = Buffer.alloc(64 * MiB);
    for (let i = 0; i < large.length; i += 4) large.writeUInt32LE(i, i);
    const sets = await largeOps(large.length, () => direct('large').uploadData(large), () => blob.set('large', large));
    report('64 MiB set: SDK uploadData() (one Put Blob)', sets.baseline, 'MiB/s');
    report('64 MiB set: AzureBlob.set (8 MiB blocks x8, one commit)', sets.ours, 'MiB/s', sets.baseline);
    const gets = await largeOps(
      large.length,
      () => direct('large').downloadToBuffer(),
      async () => {
        const got = await blob.get('large');
        if (got?.length !== large.length) throw new Error('wrong size');
      },
    );
    report('64 MiB get: SDK downloadToBuffer() (defaults)', gets.baseline, 'MiB/s');
    report('64 MiB get: AzureBlob.get (8 MiB ranges x8)', gets.ours, 'MiB/s', gets.baseline);
    const tuned = await largeOps(
      large.length,
      () => direct('large').downloadToBuffer(0, undefined, { blockSize: 8 * MiB, concurrency: 8 }),
      async () => {
        const got = await blob.get('large');
        if (got?.length !== large.length) throw new Error('wrong size');
      },
    );
    report('64 MiB get: SDK downloadToBuffer() (8 MiB x8, as ours)', tuned.baseline, 'MiB/s');
    report('64 MiB get: AzureBlob.get (8 MiB ranges x8)', tuned.ours, 'MiB/s', tuned.baseline);
    await blob.close();
  } finally {
    await server.stop();
  }
}

await main();
