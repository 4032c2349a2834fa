// The envelope's costs, each against a baseline measured in the same run:
// withMetrics + withTracing around SQLite at 16 clients against the unwrapped
// store (goal >= 0.95x), and the lag of watch() seeing a compareAndSet made by
// another process on SQLite against a tight polling loop (head in a loop).
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import { SeqNo, openConsensus, watch, withMetrics, withTracing, type Consensus } from 'persist-location';
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

  // Watch lag across processes: a child writes every 20 ms and prints when it wrote.
  const lagUri = `sqlite:${join(dir, 'watch.db')}`;
  const writes = 100;
  const script = `
    const { openConsensus, SeqNo } = await import('persist-location');
    const c = await openConsensus(${JSON.stringify(lagUri)});
    for (let i = 1; i <= ${writes}; i++) {
      await new Promise((r) => setTimeout(r, 20));
      await c.compareAndSet('k', i === 1 ? undefined : new SeqNo(i - 1), { seqno: new SeqNo(i), data: Buffer.from(String(performance.timeOrigin + performance.now())) });
    }
    await c.close();`;
  const lagOf = async (observe: (c: Consensus, seen: (at: number, wrote: number) => void, signal: AbortSignal) => Promise<void>) => {
    const c = await openConsensus(`${lagUri}`);
    const lags: number[] = [];
    const stop = new AbortController();
    const watching = observe(c, (at, wrote) => lags.push(at - wrote), stop.signal);
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: 'inherit', cwd: process.cwd() });
    await new Promise((r) => child.once('exit', r));
    await new Promise((r) => setTimeout(r, 200));
    stop.abort();
    await watching;
    await c.close();
    rmSync(join(dir, 'watch.db'), { force: true });
    lags.sort((a, b) => a - b);
    return { p50: lags[Math.floor(lags.length / 2)] ?? NaN, seen: lags.length };
  };
  const now = () => performance.timeOrigin + performance.now();
  const wroteAt = (d: Uint8Array) => Number(Buffer.from(d).toString());
  const tight = await lagOf(async (c, seen, signal) => {
    let last = 0n;
    while (!signal.aborted) {
      const h = await c.head('k');
      // A SQLite read resolves without yielding: let timers and the child's exit run.
      await new Promise((r) => setImmediate(r));
      if (h !== undefined && h.seqno.value > last) {
        last = h.seqno.value;
        seen(now(), wroteAt(h.data));
      }
    }
  });
  const watched = await lagOf(async (c, seen, signal) => {
    for await (const h of watch(c, 'k', { signal })) seen(now(), wroteAt(h.data));
  });
  report(`watch lag p50, tight polling loop (${tight.seen} heads seen)`, tight.p50, 'ms');
  report(`watch lag p50, watch() across processes (${watched.seen} heads seen, goal < 20 ms)`, watched.p50, 'ms', tight.p50);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
