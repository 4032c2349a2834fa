// MemConsensus compareAndSet against a plain-Map loop doing the same work, and the
// linearizability checker's rate on a large recorded history.
import { performance } from 'node:perf_hooks';
import { MemConsensus, SeqNo } from 'persist-location';
import { UnreliableConsensus, checkLinearizable, stressConsensus } from 'persist-location/testing';
import { fmtLatency, measure, report } from './util.js';

/** Faults on the writes only: reads stay reliable, so every lost write would be seen. */
const WRITES = ['compareAndSet', 'truncate'] as const;

const DURATION = Number(process.env.BENCH_DURATION_MS ?? 2000);
const value = new Uint8Array(64).fill(7);

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

for (const clients of [1, 16]) {
  const map = plainMap();
  const base = await measure(clients, DURATION, async (c, i) => {
    await map.cas(`k${c}`, i === 0 ? undefined : BigInt(i), BigInt(i + 1), value);
    if (i % 100 === 99) await map.truncate(`k${c}`, BigInt(i + 1));
  });
  const mem = new MemConsensus();
  const ours = await measure(clients, DURATION, async (c, i) => {
    const r = await mem.compareAndSet(`k${c}`, i === 0 ? undefined : new SeqNo(i), { seqno: new SeqNo(i + 1), data: value });
    if (r !== 'Committed') throw new Error('unexpected mismatch');
    if (i % 100 === 99) await mem.truncate(`k${c}`, new SeqNo(i + 1));
  });
  report(`plain Map CaS, ${clients} client(s)`, base.opsPerSec, 'ops/s');
  report(`MemConsensus compareAndSet, ${clients} client(s)`, ours.opsPerSec, 'ops/s', base.opsPerSec);
  console.log(`  MemConsensus latency: ${fmtLatency(ours)}`);
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
