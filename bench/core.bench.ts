// MemConsensus compareAndSet against a plain-Map loop doing the same work, MemConsensus
// listKeys against iterating a Map of as many keys, and the linearizability checker's
// rate on a large recorded history.
//
// The comparisons run in paired rounds (BENCH_ROUNDS, default 5): the baseline and ours
// back to back, taking turns at going first, so that load from other
// processes hits both alike. Each ratio is printed as the median of the rounds' ratios
// with its spread (lowest and highest round).
import { performance } from 'node:perf_hooks';
import { MemConsensus, SeqNo } from 'persist-location';
import { UnreliableConsensus, checkLinearizable, stressConsensus } from 'persist-location/testing';
import { fmtLatency, measure, report, type Measured } from './util.js';

/** Faults on the writes only: reads stay reliable, so every lost write would be seen. */
const WRITES = ['compareAndSet', 'truncate'] as const;

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
/** Time of each side in each round of the compareAndSet figures. */
const DURATION = Number(process.env.BENCH_DURATION_MS ?? 1000);
/** Location sizes of the listKeys figures. */
const LIST_SIZES = (process.env.BENCH_LIST_KEYS ?? '1000,10000,100000,1000000').split(',').map(Number);
const value = new Uint8Array(64).fill(7);

/** Runs each side once a round, `ROUNDS` rounds, starting each round at the next side; returns every side's figures. */
async function rounds<T>(...sides: (() => Promise<T>)[]): Promise<T[][]> {
  const figures = sides.map((): T[] => []);
  for (let round = 0; round < ROUNDS; round++) {
    for (let i = 0; i < sides.length; i++) {
      const side = (round + i) % sides.length;
      figures[side]!.push(await sides[side]!());
    }
  }
  return figures;
}

function median(xs: readonly number[]): number {
  const sorted = [...xs].sort((x, y) => x - y);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** `ours[i] / base[i]` per round: median, spread and every round. */
function ratios(ours: readonly number[], base: readonly number[]): string {
  const rs = ours.map((o, i) => o / base[i]!);
  const sorted = [...rs].sort((x, y) => x - y);
  const f = (r: number) => r.toFixed(2);
  return `median ${f(median(rs))}x, spread ${f(sorted[0]!)}-${f(sorted[sorted.length - 1]!)}x (rounds ${rs.map(f).join(', ')})`;
}

/**
 * The baseline: a Map of version lists, the CaS check, a copy of the value in.
 * Both sides truncate every 100 versions so memory stays bounded.
 */
function plainMap() {
  const state = new Map<string, { seqno: bigint; data: Uint8Array }[]>();
  const cas = async (key: string, expected: bigint | undefined, seqno: bigint, data: Uint8Array) => {
    const versions = state.get(key);
    const head = versions?.[versions.length - 1];
    if ((head?.seqno ?? undefined) !== expected) return 'ExpectationMismatch';
    const copy = new Uint8Array(data.byteLength);
    copy.set(data);
    if (versions === undefined) state.set(key, [{ seqno, data: copy }]);
    else versions.push({ seqno, data: copy });
    return 'Committed';
  };
  const truncate = async (key: string, seqno: bigint) => {
    const versions = state.get(key) ?? [];
    let n = 0;
    while (n < versions.length && versions[n]!.seqno < seqno) n++;
    versions.splice(0, n);
    return n;
  };
  return { cas, truncate };
}

console.log(`${ROUNDS} paired rounds; compareAndSet ${DURATION} ms per side per round`);
for (const clients of [1, 16]) {
  // Fresh stores each round, so that no round inherits another's heap.
  const [base = [], ours = []] = await rounds<Measured>(
    () => {
      const map = plainMap();
      return measure(clients, DURATION, async (c, i) => {
        await map.cas(`k${c}`, i === 0 ? undefined : BigInt(i), BigInt(i + 1), value);
        if (i % 100 === 99) await map.truncate(`k${c}`, BigInt(i + 1));
      });
    },
    () => {
      const mem = new MemConsensus();
      return measure(clients, DURATION, async (c, i) => {
        const r = await mem.compareAndSet(`k${c}`, i === 0 ? undefined : new SeqNo(i), { seqno: new SeqNo(i + 1), data: value });
        if (r !== 'Committed') throw new Error('unexpected mismatch');
        if (i % 100 === 99) await mem.truncate(`k${c}`, new SeqNo(i + 1));
      });
    },
  );
  const rate = (ms: Measured[]) => ms.map((m) => m.opsPerSec);
  report(`plain Map CaS, ${clients} client(s), median`, median(rate(base)), 'ops/s');
  report(`MemConsensus compareAndSet, ${clients} client(s), median`, median(rate(ours)), 'ops/s');
  console.log(`  MemConsensus / plain Map (goal >= 0.5x): ${ratios(rate(ours), rate(base))}`);
  console.log(`  MemConsensus latency (last round): ${fmtLatency(ours[ours.length - 1]!)}`);
}

/**
 * The least any AsyncIterable<string> costs a `for await` loop: an iterator over an
 * array whose every step is an already settled promise. No listing can come nearer
 * the Map than this: the loop awaits every step.
 */
function settledSteps(keys: readonly string[]): AsyncIterable<string> {
  let at = 0;
  const iterator: AsyncIterator<string> = {
    next: () => Promise.resolve(at < keys.length ? { done: false, value: keys[at++]! } : { done: true, value: undefined }),
  };
  return { [Symbol.asyncIterator]: () => iterator };
}

/** Time per key of reading every key with `list`, repeated to at least a million keys read. */
async function perKey(n: number, list: () => Promise<number>): Promise<number> {
  const reps = Math.max(1, Math.ceil(1_000_000 / n));
  const t0 = performance.now();
  for (let r = 0; r < reps; r++) {
    const got = await list();
    if (got !== n) throw new Error(`listed ${got} keys, ${n} were written`);
  }
  return ((performance.now() - t0) * 1e6) / (reps * n);
}

console.log(`\nlistKeys: every key of a location of one version per key, read in a for-await loop; ns per key, and ours as a multiple of each baseline's cost (lower is better)`);
for (const n of LIST_SIZES) {
  const mem = new MemConsensus();
  const map = new Map<string, { seqno: bigint; data: Uint8Array }[]>();
  for (let i = 0; i < n; i++) {
    const key = `k${i.toString().padStart(7, '0')}`;
    await mem.compareAndSet(key, undefined, { seqno: new SeqNo(1), data: value });
    map.set(key, [{ seqno: 1n, data: value }]);
  }
  (globalThis as { gc?: () => void }).gc?.();
  const count = async (keys: AsyncIterable<string>) => {
    let got = 0;
    for await (const _ of keys) got++;
    return got;
  };
  const [base = [], floor = [], ours = []] = await rounds(
    () =>
      perKey(n, async () => {
        let got = 0;
        for (const _ of map.keys()) got++;
        return got;
      }),
    () => perKey(n, () => count(settledSteps([...map.keys()]))),
    () => perKey(n, () => count(mem.listKeys())),
  );
  const label = `${n} keys`.padStart(13);
  const ns = (x: number) => `${x.toFixed(1)} ns`;
  console.log(`${label}: Map ${ns(median(base))}, settled steps ${ns(median(floor))}, MemConsensus ${ns(median(ours))}`);
  console.log(`${' '.repeat(15)}MemConsensus / Map: ${ratios(ours, base)}`);
  console.log(`${' '.repeat(15)}MemConsensus / settled steps: ${ratios(ours, floor)}`);
}

// A 100k-operation, 1000-key, 16-client history with 5% unknown write outcomes.
const name = 'bench-history';
const recorded = await stressConsensus(async () => new UnreliableConsensus(new MemConsensus({ name }), { failRate: 0.05, operations: WRITES }), {
  ops: 100_000,
  keys: 1000,
  clients: 16,
});
const t0 = performance.now();
const verdict = checkLinearizable(recorded.history);
const seconds = (performance.now() - t0) / 1000;
console.log(`history: ${recorded.history.length} ops, ${verdict.keys} keys, ${recorded.unknown} unknown outcomes; verdict ${verdict.verdict}, ${verdict.steps} steps`);
report('checkLinearizable, 100k ops / 1000 keys / 16 clients', seconds, 's (goal < 5 s)');
report('checkLinearizable rate', recorded.history.length / seconds, 'ops/s');
if (verdict.verdict !== 'ok') process.exitCode = 1;
