// EtcdConsensus against the etcd3 client used directly, on the same one-member etcd
// (Debian's /usr/bin/etcd, started on a free loopback port for this run).
//
// Baseline for compareAndSet: the etcd3 client's raw `kv.txn` with the same single
// transaction (compare the head record, put the version and the new head), from 16
// concurrent loops, each on its own key. Baseline for head: one linearizable `kv.range`
// of a key. The rounds alternate baseline / ours (swapping which goes first) so that
// load from other processes on the machine hits both alike; the figures are the sums
// over all rounds.
//
// Run: npx tsc -p . && node dist/bench/etcd.bench.js
import { randomUUID } from 'node:crypto';
import * as etcd3 from 'etcd3';
import { SeqNo } from 'persist-location';
import { EtcdConsensus } from 'persist-location/etcd';
import { startEtcd } from '../test/servers/etcd.js';
import { fmtLatency, measure, report, type Measured } from './util.js';

const CLIENTS = 16;
const ROUND_MS = Number(process.env.BENCH_ROUND_MS ?? 3000);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 4);
const VALUE = Buffer.alloc(128, 'v');

const hex16 = (n: bigint) => Buffer.from(n.toString(16).padStart(16, '0'), 'latin1');

interface Round extends Measured {
  /** Client-process CPU per operation (user + system), warm-up included. */
  cpuUsPerOp: number;
}

/** {@link measure} plus this process's CPU time per operation: much less noisy than throughput on a busy machine. */
async function round(op: (client: number) => Promise<unknown>): Promise<Round> {
  let n = 0;
  const before = process.cpuUsage();
  const m = await measure(CLIENTS, ROUND_MS, async (client) => {
    await op(client);
    n++;
  });
  const used = process.cpuUsage(before);
  return { ...m, cpuUsPerOp: (used.user + used.system) / n };
}

const cpu = (runs: Round[]) => runs.reduce((a, r) => a + r.cpuUsPerOp, 0) / runs.length;

function combine(runs: Measured[]): Measured {
  const ops = runs.reduce((a, r) => a + r.ops, 0);
  const seconds = runs.reduce((a, r) => a + r.seconds, 0);
  const worst = (f: (m: Measured) => number) => Math.max(...runs.map(f));
  const mid = (f: (m: Measured) => number) => runs.map(f).sort((a, b) => a - b)[Math.floor(runs.length / 2)]!;
  return {
    ops,
    seconds,
    opsPerSec: ops / seconds,
    latencyMs: { p50: mid((m) => m.latencyMs.p50), p90: mid((m) => m.latencyMs.p90), p99: mid((m) => m.latencyMs.p99), max: worst((m) => m.latencyMs.max) },
  };
}

/** Runs `a` and `b` `rounds` times each, swapping which goes first every round. */
async function alternate(rounds: number, a: () => Promise<unknown>, b: () => Promise<unknown>): Promise<void> {
  for (let round = 0; round < rounds; round++) {
    if (round % 2 === 0) {
      await a();
      await b();
    } else {
      await b();
      await a();
    }
  }
}

async function main(): Promise<void> {
  const etcd = await startEtcd(1);
  const raw = new etcd3.Etcd3({ hosts: etcd.endpoints });
  const ours = new EtcdConsensus({ endpoints: etcd.endpoints, prefix: `/bench-${randomUUID()}` });
  try {
    // Baseline: the same transaction EtcdConsensus sends, issued with etcd3 directly.
    const rawPrefix = `/raw-${randomUUID()}/`;
    const rawHeads = Array.from({ length: CLIENTS }, () => 0n);
    const rawCas = async (client: number) => {
      const key = Buffer.from(`${rawPrefix}\0h/${client}`);
      const current = rawHeads[client]!;
      const next = current + 1n;
      const compare: etcd3.ICompare =
        current === 0n
          ? { key, target: etcd3.CompareTarget.Create, result: etcd3.CompareResult.Equal, create_revision: 0 }
          : { key, target: etcd3.CompareTarget.Value, result: etcd3.CompareResult.Equal, value: hex16(current) };
      const res = await raw.kv.txn({
        compare: [compare],
        success: [
          { request_put: { key: Buffer.from(`${rawPrefix}\0v/${client}/${hex16(next).toString()}`), value: VALUE } },
          { request_put: { key, value: hex16(next) } },
        ],
        failure: [{ request_range: { key } }],
      });
      if (!res.succeeded) throw new Error('baseline CaS mismatch: the loops own their keys');
      rawHeads[client] = next;
    };
    const ourHeads = Array.from({ length: CLIENTS }, () => 0n);
    const ourCas = async (client: number) => {
      const current = ourHeads[client]!;
      const next = current + 1n;
      const r = await ours.compareAndSet(`k${client}`, current === 0n ? undefined : new SeqNo(current), { seqno: new SeqNo(next), data: VALUE });
      if (r !== 'Committed') throw new Error('CaS mismatch: the loops own their keys');
      ourHeads[client] = next;
    };

    const base: Round[] = [];
    const mine: Round[] = [];
    await alternate(ROUNDS, async () => base.push(await round(rawCas)), async () => mine.push(await round(ourCas)));
    const b = combine(base);
    const m = combine(mine);
    report(`etcd3 kv.txn CaS-equivalent, ${CLIENTS} clients (baseline)`, b.opsPerSec, 'ops/s');
    report(`EtcdConsensus compareAndSet, ${CLIENTS} clients`, m.opsPerSec, 'ops/s', b.opsPerSec);
    console.log(`  baseline rounds: ${base.map((r) => r.opsPerSec.toFixed(0)).join(', ')} ops/s; ${fmtLatency(b)}`);
    console.log(`  ours rounds:     ${mine.map((r) => r.opsPerSec.toFixed(0)).join(', ')} ops/s; ${fmtLatency(m)}`);
    report('etcd3 kv.txn CaS-equivalent: client CPU per op (baseline)', cpu(base), 'us');
    report('EtcdConsensus compareAndSet: client CPU per op', cpu(mine), 'us', cpu(base));

    // head: once the handle knows the head, ours is one range over the versions from it
    // (limit 1); the baseline is a single range of one key.
    const rawHead = async (client: number) => {
      await raw.kv.range({ key: Buffer.from(`${rawPrefix}\0v/${client}/${hex16(rawHeads[client]!).toString()}`) });
    };
    const ourHead = async (client: number) => {
      await ours.head(`k${client}`);
    };
    const hb: Round[] = [];
    const hm: Round[] = [];
    await alternate(ROUNDS, async () => hb.push(await round(rawHead)), async () => hm.push(await round(ourHead)));
    const hB = combine(hb);
    const hM = combine(hm);
    report(`etcd3 kv.range of one key, ${CLIENTS} clients (baseline)`, hB.opsPerSec, 'ops/s');
    report(`EtcdConsensus head, ${CLIENTS} clients`, hM.opsPerSec, 'ops/s', hB.opsPerSec);
    console.log(`  baseline: ${fmtLatency(hB)}`);
    console.log(`  ours:     ${fmtLatency(hM)}`);
    report('etcd3 kv.range: client CPU per op (baseline)', cpu(hb), 'us');
    report('EtcdConsensus head: client CPU per op', cpu(hm), 'us', cpu(hb));
  } finally {
    await ours.close();
    raw.close();
    await etcd.stop();
  }
}

await main();
