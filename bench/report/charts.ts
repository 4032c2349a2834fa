// The report's measurements: each function drives one target (ours and its
// baseline, interleaved point by point) and returns finished charts.
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { MemConsensus, SeqNo, type Blob, type Consensus } from 'persist-location';
import { checkLinearizable, stressConsensus, UnreliableConsensus, type HistoryOp } from 'persist-location/testing';
import type { ReportChart, ReportPoint } from '../../src/cli/report-html.js';
import { measure, type Measured } from '../util.js';
import type { BlobTarget, ConsensusTarget, RawConsensus } from './targets.js';

/** How many points and how long each: `quick` is for development, the full plan for the record. */
export interface Plan {
  quick: boolean;
  /** Measuring time of one point. */
  pointMs: number;
  clients: number[];
  versions: number[];
  sizes: number[];
  keys: number[];
  /** Time allowed to fill one key with versions, and one location with keys (each of ours and the baseline). */
  fillMs: number;
  checkerOps: number[];
}

const KiB = 1024;
const MiB = 1024 * KiB;

export function makePlan(quick: boolean): Plan {
  return quick
    ? { quick, pointMs: 250, clients: [1, 4, 16, 64], versions: [0, 100, 1000], sizes: [64, 4 * KiB, 256 * KiB], keys: [1000, 5000], fillMs: 8_000, checkerOps: [1000, 5000, 20_000] }
    : {
        quick,
        pointMs: 1000,
        clients: [1, 4, 16, 64],
        versions: [0, 1000, 10_000, 100_000],
        sizes: [64, 1 * KiB, 16 * KiB, 256 * KiB, 4 * MiB],
        keys: [1000, 10_000, 100_000, 1_000_000],
        fillMs: 45_000,
        checkerOps: [1000, 10_000, 50_000, 100_000],
      };
}

const VALUE = randomBytes(4 * KiB);

/** Progress lines; `failure` marks a chart that could not be made (the page lists them). */
export type Log = (line: string, failure?: boolean) => void;

type Axis = ReportChart['x'];
const CLIENTS: Axis = { label: 'concurrent clients', log: true };
const OPS: Axis = { label: 'operations per second', log: true };
const MS: Axis = { label: 'latency, ms', log: true };

function chart(id: string, group: string, title: string, x: Axis, y: Axis, baselines: string[], points: ReportPoint[], notes: (string | undefined)[]): ReportChart {
  const note = notes.filter((n) => n !== undefined && n !== '').join(' ');
  return { id, group, title, x, y, baselines, points, ...(note === '' ? {} : { note }) };
}

/** Runs `work`; a failure becomes the chart's note instead of ending the report. */
async function attempt(what: string, work: () => Promise<ReportChart[]>, log: Log): Promise<ReportChart[]> {
  try {
    return await work();
  } catch (err) {
    log(`${what}: failed: ${err instanceof Error ? err.message : String(err)}`, true);
    return [];
  }
}

/** One client's compare-and-set loop on its own key, for ours and for the baseline. */
function oursCas(c: Consensus, heads = new Map<string, bigint>()) {
  const run = async (key: string, data: Uint8Array = VALUE) => {
    const e = heads.get(key) ?? 0n;
    const r = await c.compareAndSet(key, e === 0n ? undefined : new SeqNo(e), { seqno: new SeqNo(e + 1n), data });
    if (r !== 'Committed') throw new Error(`unexpected ${r} on ${key}: each loop owns its keys`);
    heads.set(key, e + 1n);
  };
  return { run, heads, count: (key: string) => Number(heads.get(key) ?? 0n) };
}

function rawCas(raw: RawConsensus) {
  const heads = new Map<string, bigint>();
  const run = async (key: string, data: Uint8Array = VALUE) => {
    const e = heads.get(key) ?? 0n;
    await raw.cas(key, e, data);
    heads.set(key, e + 1n);
  };
  return { run, count: (key: string) => Number(heads.get(key) ?? 0n) };
}

const latency = (series: string, x: number, m: Measured): ReportPoint[] => [
  { series: `${series} p50`, x, y: m.latencyMs.p50 },
  { series: `${series} p99`, x, y: m.latencyMs.p99 },
];

/** Fills `count()` up to `target` with `step`, stopping at `deadline`; true when it got there. */
async function fill(count: () => number, target: number, deadline: number, step: () => Promise<void>, concurrency = 1): Promise<boolean> {
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (count() < target && performance.now() < deadline) await step();
    }),
  );
  return count() >= target;
}

/** Opens ours (and its filler, or ours again when it has none) and the baseline at `tag`, runs `work`, closes them. */
async function withBoth<T>(t: ConsensusTarget, tag: string, work: (ours: Consensus, raw: RawConsensus, filler: Consensus) => Promise<T>): Promise<T> {
  const ours = await t.open(tag);
  try {
    const filler = t.openFiller === undefined ? ours : await t.openFiller(tag);
    try {
      const raw = await t.raw(tag);
      try {
        return await work(ours, raw, filler);
      } finally {
        await raw.close();
      }
    } finally {
      if (filler !== ours) await filler.close();
    }
  } finally {
    await ours.close();
  }
}

/** Runs `work` with the baseline in its fast mode, if it has one. */
async function fastly<T>(raw: RawConsensus, work: () => Promise<T>): Promise<T> {
  raw.fast?.(true);
  try {
    return await work();
  } finally {
    raw.fast?.(false);
  }
}

const fillerNote = (t: ConsensusTarget) =>
  t.openFiller === undefined ? undefined : 'Ours is filled through a second handle with less durability (synchronous=normal), the baseline likewise; points are measured with the defaults.';

export async function consensusCharts(name: string, t: ConsensusTarget, plan: Plan, log: Log): Promise<ReportChart[]> {
  const group = `${name}: Consensus`;
  const charts: ReportChart[] = [];
  const base = t.baseline;
  const p50p99 = [`${base} p50`, `${base} p99`];

  charts.push(
    ...(await attempt(`${name} clients`, () =>
      withBoth(t, 'clients', async (ours, raw) => {
        const points: ReportPoint[] = [];
        const o = oursCas(ours);
        const r = rawCas(raw);
        for (const n of plan.clients) {
          const b = await measure(n, plan.pointMs, (client) => r.run(`c${n}-${client}`));
          const m = await measure(n, plan.pointMs, (client) => o.run(`c${n}-${client}`));
          points.push({ series: base, x: n, y: b.opsPerSec }, { series: t.ours, x: n, y: m.opsPerSec });
          log(`${name} CaS x${n} clients: ours ${m.opsPerSec.toFixed(0)}/s, baseline ${b.opsPerSec.toFixed(0)}/s`);
        }
        return [chart(`${name}.cas-clients`, group, 'compareAndSet throughput vs clients (4 KiB, one key per client)', CLIENTS, OPS, [base], points, [t.note])];
      }),
    log)),
  );

  charts.push(
    ...(await attempt(`${name} versions`, () =>
      withBoth(t, 'versions', async (ours, raw, filler) => {
        const cas: ReportPoint[] = [];
        const head: ReportPoint[] = [];
        const o = oursCas(ours);
        const oFill = oursCas(filler, o.heads);
        const r = rawCas(raw);
        const oursDeadline = performance.now() + plan.fillMs;
        const rawDeadline = performance.now() + plan.fillMs;
        const levels = plan.versions.filter((v) => v <= t.limits.versions);
        const missed = new Set<string>();
        for (const level of levels) {
          for (const [series, loop, filling, deadline, headOf] of [
            [base, r, (step: () => Promise<boolean>) => fastly(raw, step), rawDeadline, () => raw.head('v')],
            [t.ours, o, (step: () => Promise<boolean>) => step(), oursDeadline, () => ours.head('v')],
          ] as const) {
            const step = loop === o ? () => oFill.run('v') : () => loop.run('v');
            if (!(await filling(() => fill(() => loop.count('v'), level, deadline, step)))) {
              missed.add(`${series} reached ${loop.count('v')} of ${level}`);
              continue;
            }
            cas.push(...latency(series, Math.max(level, 1), await measure(1, plan.pointMs, () => loop.run('v'))));
            head.push(...latency(series, Math.max(level, 1), await measure(1, plan.pointMs, headOf)));
          }
          log(`${name} versions ${level}: done`);
        }
        const notes = [
          t.note,
          'x = versions kept on the key (0 drawn at 1); filled by compareAndSet on the one key, one at a time.',
          fillerNote(t),
          levels.length < plan.versions.length ? `Not measured past ${t.limits.versions} versions on this backend (too slow to fill here).` : undefined,
          missed.size > 0 ? `Filling stopped after ${plan.fillMs / 1000} s: ${[...missed].join('; ')}.` : undefined,
        ];
        const versions: Axis = { label: 'versions retained on the key', log: true };
        return [
          chart(`${name}.cas-versions`, group, 'compareAndSet latency vs versions retained', versions, MS, p50p99, cas, notes),
          chart(`${name}.head-versions`, group, 'head latency vs versions retained', versions, MS, p50p99, head, notes),
        ];
      }),
    log)),
  );

  charts.push(
    ...(await attempt(`${name} sizes`, () =>
      withBoth(t, 'sizes', async (ours, raw) => {
        const points: ReportPoint[] = [];
        const o = oursCas(ours);
        const r = rawCas(raw);
        const sizes = plan.sizes.filter((s) => s <= t.limits.valueBytes);
        for (const size of sizes) {
          const data = randomBytes(size);
          points.push(...latency(base, size, await measure(1, plan.pointMs, () => r.run(`s${size}`, data))));
          points.push(...latency(t.ours, size, await measure(1, plan.pointMs, () => o.run(`s${size}`, data))));
          log(`${name} value ${size} B: done`);
        }
        const notes = [t.note, sizes.length < plan.sizes.length ? `Values past ${t.limits.valueBytes} bytes left out on this backend.` : undefined];
        return [chart(`${name}.cas-size`, group, 'compareAndSet latency vs value size (1 client)', { label: 'value bytes', log: true }, MS, p50p99, points, notes)];
      }),
    log)),
  );

  charts.push(...(await attempt(`${name} keys`, () => keysCharts(name, group, t, plan, log), log)));
  return charts;
}

/** Peak growth of the process's resident memory while `work` runs, sampled every 5 ms. */
async function peakRss<T>(work: () => Promise<T>): Promise<{ result: T; seconds: number; mib: number }> {
  (globalThis as { gc?: () => void }).gc?.();
  const before = process.memoryUsage.rss();
  let peak = before;
  const timer = setInterval(() => (peak = Math.max(peak, process.memoryUsage.rss())), 5);
  const t0 = performance.now();
  try {
    const result = await work();
    const seconds = (performance.now() - t0) / 1000;
    peak = Math.max(peak, process.memoryUsage.rss());
    return { result, seconds, mib: (peak - before) / MiB };
  } finally {
    clearInterval(timer);
  }
}

async function keysCharts(name: string, group: string, t: ConsensusTarget, plan: Plan, log: Log): Promise<ReportChart[]> {
  return withBoth(t, 'keys', async (ours, raw, filler) => {
    const time: ReportPoint[] = [];
    const memory: ReportPoint[] = [];
    const levels = plan.keys.filter((k) => k <= t.limits.keys);
    const filled = { ours: 0, raw: 0 };
    const missed: string[] = [];
    const key = (i: number) => `k${i.toString().padStart(7, '0')}`;
    const oursDeadline = performance.now() + plan.fillMs;
    const rawDeadline = performance.now() + plan.fillMs;
    for (const level of levels) {
      const sides = [
        {
          series: t.baseline,
          side: 'raw' as const,
          deadline: rawDeadline,
          filling: (step: () => Promise<boolean>) => fastly(raw, step),
          write: (k: string) => raw.cas(k, 0n, VALUE.subarray(0, 64)),
          list: () => raw.listKeys(),
        },
        {
          series: t.ours,
          side: 'ours' as const,
          deadline: oursDeadline,
          filling: (step: () => Promise<boolean>) => step(),
          write: async (k: string) => void (await filler.compareAndSet(k, undefined, { seqno: new SeqNo(1), data: VALUE.subarray(0, 64) })),
          list: async () => {
            let n = 0;
            for await (const _ of ours.listKeys()) n++;
            return n;
          },
        },
      ];
      for (const s of sides) {
        if (!(await s.filling(() => fill(() => filled[s.side], level, s.deadline, () => s.write(key(filled[s.side]++)), 64)))) {
          missed.push(`${s.series} reached ${filled[s.side]} of ${level}`);
          continue;
        }
        const m = await peakRss(s.list);
        if (m.result !== filled[s.side]) throw new Error(`${s.series} listed ${m.result} keys, ${filled[s.side]} were written`);
        time.push({ series: s.series, x: level, y: m.seconds * 1000 });
        memory.push({ series: s.series, x: level, y: Math.max(m.mib, 0.01) });
      }
      log(`${name} keys ${level}: done`);
    }
    const notes = [
      t.note,
      'Filled by compareAndSet (one version per key, 64 B) from 64 concurrent loops, ours and the baseline alike.',
      fillerNote(t),
      levels.length < plan.keys.length ? `Not measured past ${t.limits.keys} keys on this backend (too slow to fill here).` : undefined,
      missed.length > 0 ? `Filling stopped after ${plan.fillMs / 1000} s: ${missed.join('; ')}.` : undefined,
    ];
    const keys: Axis = { label: 'keys in the location', log: true };
    return [
      chart(`${name}.listkeys-time`, group, 'listKeys: time to read every key', keys, { label: 'ms', log: true }, [t.baseline], time, notes),
      chart(`${name}.listkeys-memory`, group, 'listKeys: peak growth of this process\'s memory', keys, { label: 'MiB (resident, sampled every 5 ms)', log: true }, [t.baseline], memory, [
        ...notes,
        'The memory of a server process (PostgreSQL, etcd, emulators) is not counted.',
      ]),
    ];
  });
}

export async function blobCharts(name: string, t: BlobTarget, plan: Plan, log: Log): Promise<ReportChart[]> {
  const group = `${name}: Blob`;
  const both = async <T>(tag: string, work: (ours: Blob, raw: Awaited<ReturnType<BlobTarget['raw']>>) => Promise<T>): Promise<T> => {
    const ours = await t.open(tag);
    try {
      const raw = await t.raw(tag);
      try {
        return await work(ours, raw);
      } finally {
        await raw.close();
      }
    } finally {
      await ours.close();
    }
  };
  const baselines = [`${t.baseline} set`, `${t.baseline} get`];
  const clients = await attempt(`${name} blob clients`, () =>
    both('clients', async (ours, raw) => {
      const points: ReportPoint[] = [];
      for (const n of plan.clients) {
        const rs = await measure(n, plan.pointMs, (c) => raw.set(`b${c}`, VALUE));
        const os = await measure(n, plan.pointMs, (c) => ours.set(`b${c}`, VALUE));
        const rg = await measure(n, plan.pointMs, (c) => raw.get(`b${c}`));
        const og = await measure(n, plan.pointMs, (c) => ours.get(`b${c}`));
        points.push(
          { series: `${t.baseline} set`, x: n, y: rs.opsPerSec },
          { series: `${t.ours} set`, x: n, y: os.opsPerSec },
          { series: `${t.baseline} get`, x: n, y: rg.opsPerSec },
          { series: `${t.ours} get`, x: n, y: og.opsPerSec },
        );
        log(`${name} blob x${n} clients: set ${os.opsPerSec.toFixed(0)}/s vs ${rs.opsPerSec.toFixed(0)}/s, get ${og.opsPerSec.toFixed(0)}/s vs ${rg.opsPerSec.toFixed(0)}/s`);
      }
      return [chart(`${name}.blob-clients`, group, 'set and get throughput vs clients (4 KiB, one key per client)', CLIENTS, OPS, baselines, points, [t.note])];
    }),
  log);
  const sizes = await attempt(`${name} blob sizes`, () =>
    both('sizes', async (ours, raw) => {
      const points: ReportPoint[] = [];
      const list = plan.sizes.filter((s) => s <= t.valueBytes);
      for (const size of list) {
        const data = randomBytes(size);
        const rs = await measure(1, plan.pointMs, () => raw.set(`s${size}`, data));
        const os = await measure(1, plan.pointMs, () => ours.set(`s${size}`, data));
        const rg = await measure(1, plan.pointMs, () => raw.get(`s${size}`));
        const og = await measure(1, plan.pointMs, () => ours.get(`s${size}`));
        points.push(
          { series: `${t.baseline} set`, x: size, y: rs.latencyMs.p50 },
          { series: `${t.ours} set`, x: size, y: os.latencyMs.p50 },
          { series: `${t.baseline} get`, x: size, y: rg.latencyMs.p50 },
          { series: `${t.ours} get`, x: size, y: og.latencyMs.p50 },
        );
        log(`${name} blob value ${size} B: done`);
      }
      return [chart(`${name}.blob-size`, group, 'set and get p50 latency vs value size (1 client)', { label: 'value bytes', log: true }, MS, baselines, points, [t.note])];
    }),
  log);
  return [...clients, ...sizes];
}

/**
 * The checker's time against history length. Its baseline is the least any checker
 * must do with the same history: one pass grouping operations by key and sorting
 * each key's by start time.
 */
export async function checkerCharts(plan: Plan, log: Log): Promise<ReportChart[]> {
  const points: ReportPoint[] = [];
  const baseline = 'group by key + sort (lower bound)';
  for (const ops of plan.checkerOps) {
    const name = `report-checker-${ops}`;
    const recorded = await stressConsensus(async () => new UnreliableConsensus(new MemConsensus({ name }), { failRate: 0.05, operations: ['compareAndSet', 'truncate'] }), {
      ops,
      keys: Math.max(1, Math.round(ops / 100)),
      clients: 16,
    });
    const t0 = performance.now();
    const verdict = checkLinearizable(recorded.history);
    const checkMs = performance.now() - t0;
    if (verdict.verdict !== 'ok') throw new Error(`checker: a ${ops}-operation history of MemConsensus was judged ${verdict.verdict}`);
    const t1 = performance.now();
    const byKey = new Map<string, HistoryOp[]>();
    for (const op of recorded.history) {
      const list = byKey.get(op.key) ?? [];
      list.push(op);
      byKey.set(op.key, list);
    }
    for (const list of byKey.values()) list.sort((a, b) => a.start - b.start);
    const sortMs = performance.now() - t1;
    points.push({ series: 'checkLinearizable', x: recorded.history.length, y: checkMs }, { series: baseline, x: recorded.history.length, y: Math.max(sortMs, 0.001) });
    log(`checker ${recorded.history.length} ops: ${checkMs.toFixed(1)} ms (sort ${sortMs.toFixed(1)} ms)`);
  }
  return [
    chart('checker.history', 'linearizability checker', 'checkLinearizable time vs history length', { label: 'operations in the history', log: true }, { label: 'ms', log: true }, [baseline], points, [
      'Histories recorded by stressConsensus on MemConsensus with 5% of writes made indeterminate (UnreliableConsensus), 16 clients, one key per 100 operations.',
    ]),
  ];
}
