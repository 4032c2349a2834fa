// SqliteConsensus throughput, latency and event-loop lag, against a raw
// better-sqlite3 loop running the same transaction with the same durability on
// one connection, measured in the same run on the same disk.
// Run: npx tsc -p . && node dist/bench/sqlite.bench.js [seconds-per-round=1.5] [rounds=5]
import Database from 'better-sqlite3';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { SeqNo } from 'persist-location';
import { SqliteConsensus, type Synchronous } from 'persist-location/sqlite';
import { fmtLatency, measure, report, sleep, withTimerLag } from './util.js';

const seconds = Number(process.argv[2] ?? 1.5);
const durationMs = seconds * 1000;
const CALLERS = 16;
const VALUE = Buffer.alloc(4096, 7);
const dir = mkdtempSync(join(tmpdir(), 'persist-sqlite-bench-'));
let files = 0;

/**
 * The baseline: BEGIN IMMEDIATE; select head; insert; COMMIT in a tight loop on
 * one connection, WAL mode, the given synchronous level, the same schema and value
 * size. It blocks its thread for the whole run, so it is timed with a clock loop.
 */
function rawLoop(synchronous: Synchronous): { opsPerSec: number; meanMs: number } {
  const db = new Database(join(dir, `raw-${files++}.db`));
  db.pragma('journal_mode = WAL');
  db.pragma(`synchronous = ${synchronous}`);
  db.defaultSafeIntegers(true);
  db.exec('CREATE TABLE consensus (key TEXT NOT NULL, seqno INTEGER NOT NULL, data BLOB NOT NULL, PRIMARY KEY (key, seqno)) WITHOUT ROWID');
  const head = db.prepare('SELECT seqno FROM consensus WHERE key = ? ORDER BY seqno DESC LIMIT 1').pluck();
  const insert = db.prepare('INSERT INTO consensus (key, seqno, data) VALUES (?, ?, ?)');
  const begin = db.prepare('BEGIN IMMEDIATE');
  const commit = db.prepare('COMMIT');
  const once = (i: number) => {
    const key = `k${i % CALLERS}`;
    begin.run();
    const h = head.get(key) as bigint | undefined;
    insert.run(key, (h ?? 0n) + 1n, VALUE);
    commit.run();
  };
  const warm = performance.now() + 300;
  let i = 0;
  while (performance.now() < warm) once(i++);
  const began = performance.now();
  let ops = 0;
  while (performance.now() - began < durationMs) once(i + ops++);
  const elapsed = performance.now() - began;
  db.close();
  return { opsPerSec: (ops / elapsed) * 1000, meanMs: elapsed / ops };
}

async function consensusRun(worker: boolean, synchronous: Synchronous, callers: number) {
  const c = await SqliteConsensus.open(join(dir, `c-${files++}.db`), { worker, synchronous });
  const heads = new Array<bigint>(callers).fill(0n);
  const run = await withTimerLag(() =>
    measure(callers, durationMs, async (client) => {
      const key = `k${client}`;
      const expected = heads[client]!;
      const r = await c.compareAndSet(key, expected === 0n ? undefined : new SeqNo(expected), { seqno: new SeqNo(expected + 1n), data: VALUE });
      if (r !== 'Committed') throw new Error(`unexpected ${r}`);
      heads[client] = expected + 1n;
    }),
  );
  await c.close();
  return run;
}

interface Figure {
  opsPerSec: number[];
  meanMs: number[];
  p50: number[];
  p99: number[];
  lagMax: number[];
  lagP99: number[];
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/**
 * The machine is shared and busy, so every configuration runs in several short
 * rounds, interleaved (raw, inline, worker, raw, ...), and the medians are
 * reported: a burst of load from elsewhere then hits all of them alike.
 */
async function main(): Promise<void> {
  const rounds = Number(process.argv[3] ?? 5);
  console.log(`SqliteConsensus bench: 4 KiB values, ${rounds} interleaved rounds of ${seconds} s per figure (medians), files under ${dir}`);
  for (const synchronous of ['full', 'normal'] as const) {
    for (const callers of [CALLERS, 1]) {
      const figures = new Map<string, Figure>();
      const add = (name: string, f: Partial<Record<keyof Figure, number>>) => {
        const fig = figures.get(name) ?? { opsPerSec: [], meanMs: [], p50: [], p99: [], lagMax: [], lagP99: [] };
        for (const [k, v] of Object.entries(f)) fig[k as keyof Figure].push(v);
        figures.set(name, fig);
      };
      for (let round = 0; round < rounds; round++) {
        const raw = rawLoop(synchronous);
        add('raw', { opsPerSec: raw.opsPerSec, meanMs: raw.meanMs });
        for (const worker of [false, true]) {
          await sleep(100);
          const r = await consensusRun(worker, synchronous, callers);
          add(worker ? 'worker' : 'inline', {
            opsPerSec: r.result.opsPerSec,
            meanMs: 1000 / r.result.opsPerSec * callers,
            p50: r.result.latencyMs.p50,
            p99: r.result.latencyMs.p99,
            lagMax: r.maxLagMs,
            lagP99: r.p99LagMs,
          });
        }
      }
      const raw = figures.get('raw')!;
      const rawOps = median(raw.opsPerSec);
      if (callers === CALLERS) {
        report(`raw better-sqlite3 loop, synchronous=${synchronous} (baseline)`, rawOps, 'CaS/s');
      } else {
        report(`raw better-sqlite3 loop, synchronous=${synchronous}: one CaS (baseline)`, median(raw.meanMs), 'ms');
      }
      for (const mode of ['inline', 'worker']) {
        const f = figures.get(mode)!;
        if (callers === CALLERS) report(`${callers} callers, ${mode}, synchronous=${synchronous}`, median(f.opsPerSec), 'CaS/s', rawOps);
        else report(`1 caller, ${mode}, synchronous=${synchronous}: mean CaS latency`, median(f.meanMs), 'ms', median(raw.meanMs));
        console.log(
          `    latency p50 ${median(f.p50).toFixed(3)} ms, p99 ${median(f.p99).toFixed(3)} ms; ` +
            `timer lag max ${median(f.lagMax).toFixed(1)} ms (worst round ${Math.max(...f.lagMax).toFixed(1)}), p99 ${median(f.lagP99).toFixed(1)} ms; ` +
            `CaS/s per round ${f.opsPerSec.map((x) => x.toFixed(0)).join(' ')} vs raw ${raw.opsPerSec.map((x) => x.toFixed(0)).join(' ')}`,
        );
      }
    }
  }
}

try {
  await main();
} finally {
  rmSync(dir, { recursive: true, force: true });
}
