// S3Blob against the same SDK called directly, on one s3rver started here.
//
//   npx tsc -p . && node dist/bench/s3.bench.js
//
// Baselines (same S3Client settings, same server, same run):
// - 4 KiB set / get: one PutObject / one GetObject (body read with transformToByteArray);
// - 64 MiB set: `Upload` from @aws-sdk/lib-storage (its defaults: 5 MiB parts, 4 in flight);
// - 64 MiB get: one GetObject, body read with transformToByteArray.
// Baseline and S3Blob rounds alternate so that load from other processes hits both alike.
import { performance } from 'node:perf_hooks';
import { GetObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { defaultClientConfig, S3Blob } from 'persist-location/s3';
import { S3RVER_CREDENTIALS, S3rverProcess } from '../test/servers/s3rver.js';
import { fmtLatency, measure, report } from './util.js';

const KiB = 1024;
const MiB = 1024 * KiB;

async function main(): Promise<void> {
  process.env.AWS_ACCESS_KEY_ID = S3RVER_CREDENTIALS.accessKeyId;
  process.env.AWS_SECRET_ACCESS_KEY = S3RVER_CREDENTIALS.secretAccessKey;
  const server = await S3rverProcess.start(['bench']);
  const config = { endpoint: server.endpoint, region: 'us-east-1', forcePathStyle: true };
  const client = new S3Client(defaultClientConfig(config));
  const blob = new S3Blob({ bucket: 'bench', prefix: 'blob', clientConfig: config });
  const Bucket = 'bench';
  try {
    const small = Buffer.alloc(4 * KiB, 0x61);
    const clients = 4;
    const seconds = 3;
    // 4 KiB
    for (let i = 0; i < clients; i++) {
      await client.send(new PutObjectCommand({ Bucket, Key: `base/small-${i}`, Body: small }));
      await blob.set(`small-${i}`, small);
    }
    const rounds = 2;
    const setBase: number[] = [];
    const setOurs: number[] = [];
    const getBase: number[] = [];
    const getOurs: number[] = [];
    let lastSet = { base: '', ours: '' };
    let lastGet = { base: '', ours: '' };
    for (let r = 0; r < rounds; r++) {
      const b = await measure(clients, seconds * 1000, (c) => client.send(new PutObjectCommand({ Bucket, Key: `base/small-${c}`, Body: small, ContentLength: small.length })));
      const o = await measure(clients, seconds * 1000, (c) => blob.set(`small-${c}`, small));
      setBase.push(b.opsPerSec);
      setOurs.push(o.opsPerSec);
      lastSet = { base: fmtLatency(b), ours: fmtLatency(o) };
      const gb = await measure(clients, seconds * 1000, async (c) => {
        const out = await client.send(new GetObjectCommand({ Bucket, Key: `base/small-${c}` }));
        return out.Body!.transformToByteArray();
      });
      const go = await measure(clients, seconds * 1000, (c) => blob.get(`small-${c}`));
      getBase.push(gb.opsPerSec);
      getOurs.push(go.opsPerSec);
      lastGet = { base: fmtLatency(gb), ours: fmtLatency(go) };
    }
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    console.log(`# 4 KiB, ${clients} concurrent clients, ${rounds} alternating rounds of ${seconds} s each`);
    report('4 KiB set: PutObject (baseline)', mean(setBase), 'ops/s');
    report('4 KiB set: S3Blob.set', mean(setOurs), 'ops/s', mean(setBase));
    console.log(`    baseline ${lastSet.base}\n    S3Blob   ${lastSet.ours}`);
    report('4 KiB get: GetObject (baseline)', mean(getBase), 'ops/s');
    report('4 KiB get: S3Blob.get', mean(getOurs), 'ops/s', mean(getBase));
    console.log(`    baseline ${lastGet.base}\n    S3Blob   ${lastGet.ours}`);

    // 64 MiB
    const large = Buffer.alloc(64 * MiB);
    for (let i = 0; i < large.length; i += 4) large.writeUInt32LE(i, i);
    const reps = 4;
    const t = { setBase: 0, setOurs: 0, getBase: 0, getOurs: 0 };
    const timed = async (work: () => Promise<unknown>): Promise<number> => {
      const t0 = performance.now();
      await work();
      return (performance.now() - t0) / 1000;
    };
    for (let r = 0; r < reps; r++) {
      t.setBase += await timed(() => new Upload({ client, params: { Bucket, Key: 'base/large', Body: large } }).done());
      t.setOurs += await timed(() => blob.set('large', large));
      t.getBase += await timed(async () => {
        const out = await client.send(new GetObjectCommand({ Bucket, Key: 'base/large' }));
        const bytes = await out.Body!.transformToByteArray();
        if (bytes.length !== large.length) throw new Error('short read');
      });
      t.getOurs += await timed(async () => {
        const got = await blob.get('large');
        if (got?.length !== large.length) throw new Error('short read');
      });
    }
    const mbps = (secs: number) => (reps * 64) / secs;
    console.log(`# 64 MiB, one operation at a time, ${reps} alternating repetitions`);
    report('64 MiB set: lib-storage Upload (baseline)', mbps(t.setBase), 'MiB/s');
    report('64 MiB set: S3Blob.set (multipart)', mbps(t.setOurs), 'MiB/s', mbps(t.setBase));
    report('64 MiB get: one GetObject (baseline)', mbps(t.getBase), 'MiB/s');
    report('64 MiB get: S3Blob.get (parallel ranges)', mbps(t.getOurs), 'MiB/s', mbps(t.getBase));
  } finally {
    await blob.close();
    client.destroy();
    await server.stop();
  }
}

await main();
