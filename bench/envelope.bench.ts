// The envelope's costs, each against a baseline measured in the same run:
// withMetrics + withTracing around SQLite at 16 clients against the unwrapped
// store (goal >= 0.95x); the lag of watch() seeing a compareAndSet made by another
// process on SQLite, etcd and PostgreSQL against a tight polling loop (head in a
// loop) on the same store (goal p50 < 20 ms); and PostgreSQL compareAndSet
// throughput at 16 clients with the NOTIFY triggers and a watcher, against the
// same schema with its triggers dropped (goal >= 0.95x). etcd and PostgreSQL are
// started here (test/servers/).
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import { SeqNo, openConsensus, watch, withMetrics, withTracing, type Consensus } from 'persist-location';
import { PostgresConsensus } from 'persist-location/postgres';
import { startEtcd } from '../test/servers/etcd.js';
import { startPostgres } from '../test/servers/postgres.js';
import { measure, report } from './util.js';

const DURATION = Number(process.env.BENCH_DURATION_MS ?? 3000);
const dir = mkdtempSync(join(tmpdir(), 'persist-bench-envelope-'));
const value = new Uint8Array(64).fill(7);

async function casLoop(c: Consensus, tag: string) {
  return measure(16, DURATION, async (client, i) => {
    const key = `${tag}-${client}`;
    await c.compareAndSet(key, i === 0 ? undefined : new SeqNo(i), { seqno: new SeqNo(i + 1), data: value });
    if (i % 4 === 0) await c.head(key);
  });
}

const [etcd, pg] = await Promise.all([startEtcd(1), startPostgres()]);
try {
  const uri = `sqlite:${join(dir, 'wrap.db')}`;
  const plain = await openConsensus(uri);
  const wrapped = withTracing(withMetrics(await openConsensus(uri), { registry: new Registry() }));
  // Alternated, so that drift of the machine falls on both sides.
  const base = [await casLoop(plain, 'a'), await casLoop(plain, 'b')];
  const ours = [await casLoop(wrapped, 'c'), await casLoop(wrapped, 'd')];
  const rate = (ms: typeof base) => ms.reduce((n, m) => n + m.opsPerSec, 0) / ms.length;
  report('SQLite unwrapped, 16 clients', rate(base), 'ops/s');
  report('SQLite withMetrics+withTracing, 16 clients (goal >= 0.95x)', rate(ours), 'ops/s', rate(base));
  await plain.close();
  await wrapped.close();

  // Watch lag across processes: a child writes every 20 ms, putting in each value
  // when it wrote (CLOCK_MONOTONIC, shared by every process).
  const writes = 100;
  const script = (uri: string, key: string) => `
    const { openConsensus, SeqNo } = await import('persist-location');
    const c = await openConsensus(${JSON.stringify(uri)});
    for (let i = 1; i <= ${writes}; i++) {
      await new Promise((r) => setTimeout(r, 20));
      await c.compareAndSet(${JSON.stringify(key)}, i === 1 ? undefined : new SeqNo(i - 1), { seqno: new SeqNo(i), data: Buffer.from(String(Number(process.hrtime.bigint()) / 1e6)) });
    }
    await c.close();`;
  const now = () => Number(process.hrtime.bigint()) / 1e6;
  const wroteAt = (d: Uint8Array) => Number(Buffer.from(d).toString());
  type Observe = (c: Consensus, key: string, seen: (at: number, wrote: number) => void, signal: AbortSignal) => Promise<void>;
  const lagOf = async (uri: string, observe: Observe) => {
    const key = `lag-${randomUUID()}`;
    const c = await openConsensus(uri);
    const lags: number[] = [];
    const stop = new AbortController();
    const watching = observe(c, key, (at, wrote) => lags.push(at - wrote), stop.signal);
    const child = spawn(process.execPath, ['--input-type=module', '-e', script(uri, key)], { stdio: 'inherit', cwd: process.cwd() });
    await new Promise((r) => child.once('exit', r));
    await new Promise((r) => setTimeout(r, 200));
    stop.abort();
    await watching;
    await c.close();
    lags.sort((a, b) => a - b);
    const pct = (p: number) => lags[Math.min(lags.length - 1, Math.floor(p * lags.length))] ?? NaN;
    return { p50: pct(0.5), p99: pct(0.99), seen: lags.length };
  };
  const tightLoop: Observe = async (c, key, seen, signal) => {
    let last = 0n;
    while (!signal.aborted) {
      const h = await c.head(key);
      // A SQLite read resolves without yielding: let timers and the child's exit run.
      await new Promise((r) => setImmediate(r));
      if (h !== undefined && h.seqno.value > last) {
        last = h.seqno.value;
        seen(now(), wroteAt(h.data));
      }
    }
  };
  const watching: Observe = async (c, key, seen, signal) => {
    for await (const h of watch(c, key, { signal })) seen(now(), wroteAt(h.data));
  };
  const lagUris: [string, string][] = [
    ['SQLite', `sqlite:${join(dir, 'watch.db')}`],
    ['etcd', etcd.uri()],
    ['PostgreSQL', pg.url({ notify: 'true' })],
  ];
  for (const [name, lagUri] of lagUris) {
    const tight = await lagOf(lagUri, tightLoop);
    const watched = await lagOf(lagUri, watching);
    report(`${name} watch lag p50, tight polling loop (${tight.seen} heads seen)`, tight.p50, 'ms');
    report(`${name} watch lag p50, watch() (${watched.seen} heads seen, goal < 20 ms)`, watched.p50, 'ms', tight.p50);
    report(`${name} watch lag p99, tight polling loop`, tight.p99, 'ms');
    report(`${name} watch lag p99, watch()`, watched.p99, 'ms', tight.p99);
  }

  // PostgreSQL compareAndSet at 16 clients: without NOTIFY (the default, baseline),
  // with notify: true, and with notify: true and a watcher on one of the keys being written.
  const schemaOf = async (notify: boolean) => {
    const schema = pg.schema('bench');
    return { schema, c: await PostgresConsensus.open({ connectionString: pg.baseUrl, schema, notify }) };
  };
  const silent = await schemaOf(false);
  const notifying = await schemaOf(true);
  const watcher = await PostgresConsensus.open({ connectionString: pg.baseUrl, schema: notifying.schema, notify: true });
  let round = 0;
  const casRate = async (c: Consensus, watched: boolean) => {
    const tag = `r${round++}`;
    const stop = new AbortController();
    const seen = watched ? (async () => { for await (const _ of watch(watcher, `${tag}-0`, { signal: stop.signal })); })() : undefined;
    const m = await casLoop(c, tag);
    stop.abort();
    await seen;
    return m.opsPerSec;
  };
  const rates = { silent: [] as number[], notify: [] as number[], watched: [] as number[] };
  // Alternated, so that drift of the machine falls on every side.
  for (let i = 0; i < 2; i++) {
    rates.silent.push(await casRate(silent.c, false));
    rates.notify.push(await casRate(notifying.c, false));
    rates.watched.push(await casRate(notifying.c, true));
  }
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  report('PostgreSQL CaS, 16 clients, default (no NOTIFY)', mean(rates.silent), 'ops/s');
  report('PostgreSQL CaS, 16 clients, notify=true, no watcher', mean(rates.notify), 'ops/s', mean(rates.silent));
  report('PostgreSQL CaS, 16 clients, notify=true, 1 watcher', mean(rates.watched), 'ops/s', mean(rates.silent));
  await Promise.all([silent.c.close(), notifying.c.close(), watcher.close()]);
} finally {
  await Promise.allSettled([etcd.stop(), pg.stop()]);
  rmSync(dir, { recursive: true, force: true });
}
