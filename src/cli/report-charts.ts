/**
 * The measurements of the benchmark report (see report-html.ts for the page): each
 * function drives one target, ours and, where one exists, its baseline (the same
 * storage driven directly), interleaved point by point, and returns finished charts.
 * Used by `npm run bench -- --report DIR` for every backend and by
 * `persist-location bench --report DIR` for the user's own location.
 */
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import type { Blob } from '../blob.js';
import type { Consensus } from '../consensus.js';
import { SeqNo } from '../seqno.js';
import { summarize, type LatencySummary } from './measure.js';
import type { ReportChart, ReportPoint } from './report-html.js';

/** The baseline for Consensus: `cas` throws when the head is not `expected` (0n: none yet). */
export interface RawConsensus {
  cas(key: string, expected: bigint, data: Uint8Array): Promise<void>;
  head(key: string): Promise<unknown>;
  /** Reads every key once; returns how many. */
  listKeys(): Promise<number>;
  /** Makes later writes cheaper and less durable (on) or as durable as ours again (off), for filling. */
  fast?(on: boolean): void;
  close(): Promise<void>;
}

export interface RawBlob {
  set(key: string, data: Uint8Array): Promise<void>;
  get(key: string): Promise<unknown>;
  close(): Promise<void>;
}

/** How far a target is taken: the points past these are left out, and the chart says so. */
export interface Limits {
  versions: number;
  keys: number;
  valueBytes: number;
}

/** A Consensus to measure. Every `open`/`raw` call with a new tag is a fresh location, so that key counts are exact. */
export interface ConsensusTarget {
  open(tag: string): Promise<Consensus>;
  /**
   * A second handle on the location `open(tag)` opened, cheaper and less durable per
   * write, used only to fill it (the points are measured on the first).
   */
  openFiller?(tag: string): Promise<Consensus>;
  /** The baseline, where there is one for this storage. */
  raw?(tag: string): Promise<RawConsensus>;
  ours: string;
  baseline: string;
  limits: Limits;
  /** Said on every chart of this target (e.g. the server runs on an emulator). */
  note?: string;
}

export interface BlobTarget {
  open(tag: string): Promise<Blob>;
  raw?(tag: string): Promise<RawBlob>;
  ours: string;
  baseline: string;
  valueBytes: number;
  note?: string;
}

/** Throughput and latency of `clients` closed loops running `op` for `durationMs`, after a short warm-up. */
export async function measure(clients: number, durationMs: number, op: (client: number) => Promise<unknown>): Promise<LatencySummary> {
  // Deadlines are read from the clock in each loop rather than set by timers: an
  // op that resolves in a microtask would never let a timer fire.
  const latencies: number[] = [];
  const countFrom = performance.now() + Math.min(200, durationMs / 4);
  const end = countFrom + durationMs;
  await Promise.all(
    Array.from({ length: clients }, async (_, client) => {
      for (;;) {
        const t0 = performance.now();
        if (t0 >= end) return;
        await op(client);
        if (t0 >= countFrom) latencies.push(performance.now() - t0);
      }
    }),
  );
  return summarize(latencies, (performance.now() - countFrom) / 1000);
}

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
}

const KiB = 1024;
const MiB = 1024 * KiB;

export function makePlan(quick: boolean): Plan {
  return quick
    ? { quick, pointMs: 250, clients: [1, 4, 16, 64], versions: [0, 100, 1000], sizes: [64, 4 * KiB, 256 * KiB], keys: [300, 1000, 3000], fillMs: 8_000 }
    : {
        quick,
        pointMs: 1000,
        clients: [1, 4, 16, 64],
        versions: [0, 1000, 3000, 10_000, 30_000, 100_000],
        sizes: [64, 1 * KiB, 16 * KiB, 256 * KiB, 4 * MiB],
        keys: [1000, 3000, 10_000, 30_000, 100_000, 300_000, 1_000_000],
        fillMs: 45_000,
      };
}

const VALUE = randomBytes(4 * KiB);

/** Progress lines; `failure` marks a chart that could not be made (the page lists them). */
export type Log = (line: string, failure?: boolean) => void;

type Axis = ReportChart['x'];
const CLIENTS: Axis = { label: 'concurrent clients', log: true };
const OPS: Axis = { label: 'operations per second', log: true };
const MS: Axis = { label: 'latency, ms', log: true };

export function chart(id: string, group: string, title: string, x: Axis, y: Axis, baselines: string[], points: ReportPoint[], notes: (string | undefined)[]): ReportChart {
  const note = notes.filter((n) => n !== undefined && n !== '').join(' ');
  return { id, group, title, x, y, baselines, points, ...(note === '' ? {} : { note }) };
}

/** Runs `work`; a failure becomes the chart's note instead of ending the report. */
export async function attempt(what: string, work: () => Promise<ReportChart[]>, log: Log): Promise<ReportChart[]> {
  try {
    return await work();
  } catch (err) {
    log(`${what}: failed: ${err instanceof Error ? err.message : String(err)}`, true);
    return [];
  }
}

/**
 * One side of a Consensus chart, ours or the baseline: a compare-and-set loop that
 * keeps each key's head (every loop owns its keys), head, listKeys, and how to fill.
 */
interface ConsensusSide {
  series: string;
  cas(key: string, data?: Uint8Array): Promise<void>;
  /** The same, through the filler when there is one (the heads are shared). */
  fillCas(key: string, data?: Uint8Array): Promise<void>;
  count(key: string): number;
  head(key: string): Promise<unknown>;
  listKeys(): Promise<number>;
  /** Runs a fill with the cheaper writes, if this side has them. */
  filling<T>(work: () => Promise<T>): Promise<T>;
}

function casLoop(write: (key: string, expected: bigint, data: Uint8Array) => Promise<void>, heads: Map<string, bigint>) {
  return async (key: string, data: Uint8Array = VALUE) => {
    const e = heads.get(key) ?? 0n;
    await write(key, e, data);
    heads.set(key, e + 1n);
  };
}

function oursWrite(c: Consensus) {
  return async (key: string, e: bigint, data: Uint8Array) => {
    const r = await c.compareAndSet(key, e === 0n ? undefined : new SeqNo(e), { seqno: new SeqNo(e + 1n), data });
    if (r !== 'Committed') throw new Error(`unexpected ${r} on ${key}: each loop owns its keys`);
  };
}

/** Runs `work` with a list it pushes closers onto, then runs them, last first, whatever happened. */
async function closingAfter<T>(work: (closing: (() => Promise<void>)[]) => Promise<T>): Promise<T> {
  const closing: (() => Promise<void>)[] = [];
  try {
    return await work(closing);
  } finally {
    for (const close of closing.reverse()) await close();
  }
}

/** Opens the sides at `tag` (baseline first, when there is one), runs `work`, closes them. */
function withSides<T>(t: ConsensusTarget, tag: string, work: (sides: ConsensusSide[]) => Promise<T>): Promise<T> {
  return closingAfter(async (closing) => {
    const sides: ConsensusSide[] = [];
    if (t.raw !== undefined) {
      const raw = await t.raw(tag);
      closing.push(() => raw.close());
      const heads = new Map<string, bigint>();
      const cas = casLoop((k, e, d) => raw.cas(k, e, d), heads);
      sides.push({
        series: t.baseline,
        cas,
        fillCas: cas,
        count: (key) => Number(heads.get(key) ?? 0n),
        head: (key) => raw.head(key),
        listKeys: () => raw.listKeys(),
        async filling(work) {
          raw.fast?.(true);
          try {
            return await work();
          } finally {
            raw.fast?.(false);
          }
        },
      });
    }
    const ours = await t.open(tag);
    closing.push(() => ours.close());
    const filler = t.openFiller === undefined ? ours : await t.openFiller(tag);
    if (filler !== ours) closing.push(() => filler.close());
    const heads = new Map<string, bigint>();
    sides.push({
      series: t.ours,
      cas: casLoop(oursWrite(ours), heads),
      fillCas: casLoop(oursWrite(filler), heads),
      count: (key) => Number(heads.get(key) ?? 0n),
      head: (key) => ours.head(key),
      async listKeys() {
        let n = 0;
        for await (const _ of ours.listKeys()) n++;
        return n;
      },
      filling: (work) => work(),
    });
    return work(sides);
  });
}

const latency = (series: string, x: number, m: LatencySummary): ReportPoint[] => [
  { series: `${series} p50`, x, y: m.latencyMs.p50 },
  { series: `${series} p99`, x, y: m.latencyMs.p99 },
];

/**
 * Each side's own filling time: `fillMs` spent filling that side, however long the
 * other sides' filling and every measurement take (one wall-clock deadline for all
 * gave the side filled second what the first left over). `within(i, fill)` runs
 * `fill` with side i's deadline and charges it the time taken.
 */
function fillBudgets(sides: number, fillMs: number): (i: number, fill: (deadline: number) => Promise<boolean>) => Promise<boolean> {
  const left = new Array<number>(sides).fill(fillMs);
  return async (i, fill) => {
    const began = performance.now();
    try {
      return await fill(began + left[i]!);
    } finally {
      left[i]! -= performance.now() - began;
    }
  };
}

/** Fills `count()` up to `target` with `step`, stopping at `deadline`; true when it got there. */
async function fill(count: () => number, target: number, deadline: number, step: () => Promise<void>, concurrency = 1): Promise<boolean> {
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (count() < target && performance.now() < deadline) await step();
    }),
  );
  return count() >= target;
}

const fillerNote = (t: ConsensusTarget) =>
  t.openFiller === undefined ? undefined : `Ours is filled through a second handle with less durability (synchronous=normal)${t.raw === undefined ? '' : ', the baseline likewise'}; points are measured with the defaults.`;
/** The notes of a chart whose points need filling: how it was filled, and which points are missing and why. */
function fillNotes(t: ConsensusTarget, plan: Plan, how: string, planned: number[], limit: number, unit: string, missed: string[]): (string | undefined)[] {
  return [
    t.note,
    noBaseline(t),
    how,
    fillerNote(t),
    planned.some((level) => level > limit) ? `Not measured past ${limit} ${unit} on this backend (too slow to fill here).` : undefined,
    missed.length > 0 ? `Filling stopped after ${plan.fillMs / 1000} s of filling each side: ${missed.join('; ')}.` : undefined,
  ];
}

const noBaseline = (t: { raw?: unknown }) => (t.raw === undefined ? 'No baseline: there is no raw driver loop for this storage here.' : undefined);
const baselinesOf = (t: { raw?: unknown; baseline: string }, suffixes: string[]) => (t.raw === undefined ? [] : suffixes.map((s) => `${t.baseline}${s}`));

export async function consensusCharts(name: string, t: ConsensusTarget, plan: Plan, log: Log): Promise<ReportChart[]> {
  const group = `${name}: Consensus`;
  const charts: ReportChart[] = [];
  const p50p99 = baselinesOf(t, [' p50', ' p99']);

  charts.push(
    ...(await attempt(`${name} clients`, () =>
      withSides(t, 'clients', async (sides) => {
        const points: ReportPoint[] = [];
        for (const n of plan.clients) {
          const line: string[] = [];
          for (const side of sides) {
            const m = await measure(n, plan.pointMs, (client) => side.cas(`c${n}-${client}`));
            points.push({ series: side.series, x: n, y: m.opsPerSec });
            line.push(`${side.series} ${m.opsPerSec.toFixed(0)}/s`);
          }
          log(`${name} CaS x${n} clients: ${line.join(', ')}`);
        }
        return [chart(`${name}.cas-clients`, group, 'compareAndSet throughput vs clients (4 KiB, one key per client)', CLIENTS, OPS, baselinesOf(t, ['']), points, [t.note, noBaseline(t)])];
      }),
    log)),
  );

  charts.push(
    ...(await attempt(`${name} versions`, () =>
      withSides(t, 'versions', async (sides) => {
        const cas: ReportPoint[] = [];
        const head: ReportPoint[] = [];
        const within = fillBudgets(sides.length, plan.fillMs);
        const levels = plan.versions.filter((v) => v <= t.limits.versions);
        const missed = new Set<string>();
        for (const level of levels) {
          for (const [i, side] of sides.entries()) {
            if (!(await within(i, (deadline) => side.filling(() => fill(() => side.count('v'), level, deadline, () => side.fillCas('v')))))) {
              missed.add(`${side.series} reached ${side.count('v')} of ${level}`);
              continue;
            }
            cas.push(...latency(side.series, Math.max(level, 1), await measure(1, plan.pointMs, () => side.cas('v'))));
            head.push(...latency(side.series, Math.max(level, 1), await measure(1, plan.pointMs, () => side.head('v'))));
          }
          log(`${name} versions ${level}: done`);
        }
        const notes = fillNotes(t, plan, 'x = versions kept on the key (0 drawn at 1); filled by compareAndSet on the one key, one at a time.', plan.versions, t.limits.versions, 'versions', [...missed]);
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
      withSides(t, 'sizes', async (sides) => {
        const points: ReportPoint[] = [];
        const sizes = plan.sizes.filter((s) => s <= t.limits.valueBytes);
        for (const size of sizes) {
          const data = randomBytes(size);
          for (const side of sides) points.push(...latency(side.series, size, await measure(1, plan.pointMs, () => side.cas(`s${size}`, data))));
          log(`${name} value ${size} B: done`);
        }
        const notes = [t.note, noBaseline(t), sizes.length < plan.sizes.length ? `Values past ${t.limits.valueBytes} bytes left out on this backend.` : undefined];
        return [chart(`${name}.cas-size`, group, 'compareAndSet latency vs value size (1 client)', { label: 'value bytes', log: true }, MS, p50p99, points, notes)];
      }),
    log)),
  );

  charts.push(...(await attempt(`${name} keys`, () => keysCharts(name, group, t, plan, log), log)));
  return charts;
}

/** What this process holds: its JS heap and the buffers outside it (a worker thread's heap is not in it). */
function heldBytes(): number {
  const m = process.memoryUsage();
  return m.heapUsed + m.external;
}

/** Peak growth of {@link heldBytes} while `work` runs, sampled every 5 ms, after a collection (with --expose-gc). */
async function peakMemory<T>(work: () => Promise<T>): Promise<{ result: T; seconds: number; mib: number }> {
  (globalThis as { gc?: () => void }).gc?.();
  const before = heldBytes();
  let peak = before;
  const timer = setInterval(() => (peak = Math.max(peak, heldBytes())), 5);
  const t0 = performance.now();
  try {
    const result = await work();
    const seconds = (performance.now() - t0) / 1000;
    peak = Math.max(peak, heldBytes());
    return { result, seconds, mib: (peak - before) / MiB };
  } finally {
    clearInterval(timer);
  }
}

async function keysCharts(name: string, group: string, t: ConsensusTarget, plan: Plan, log: Log): Promise<ReportChart[]> {
  return withSides(t, 'keys', async (sides) => {
    const time: ReportPoint[] = [];
    const memory: ReportPoint[] = [];
    const levels = plan.keys.filter((k) => k <= t.limits.keys);
    const filled = sides.map(() => 0);
    const within = fillBudgets(sides.length, plan.fillMs);
    const missed: string[] = [];
    const key = (i: number) => `k${i.toString().padStart(7, '0')}`;
    const small = VALUE.subarray(0, 64);
    for (const level of levels) {
      for (const [i, side] of sides.entries()) {
        const step = () => side.fillCas(key(filled[i]!++), small);
        if (!(await within(i, (deadline) => side.filling(() => fill(() => filled[i]!, level, deadline, step, 64))))) {
          missed.push(`${side.series} reached ${filled[i]} of ${level}`);
          continue;
        }
        const m = await peakMemory(() => side.listKeys());
        if (m.result !== filled[i]) throw new Error(`${side.series} listed ${m.result} keys, ${filled[i]} were written`);
        time.push({ series: side.series, x: level, y: m.seconds * 1000 });
        memory.push({ series: side.series, x: level, y: Math.max(m.mib, 0.01) });
      }
      log(`${name} keys ${level}: done`);
    }
    const notes = fillNotes(t, plan, 'Filled by compareAndSet (one version per key, 64 B) from 64 concurrent loops, ours and the baseline alike.', plan.keys, t.limits.keys, 'keys', missed);
    const keys: Axis = { label: 'keys in the location', log: true };
    const baselines = baselinesOf(t, ['']);
    return [
      chart(`${name}.listkeys-time`, group, 'listKeys: time to read every key', keys, { label: 'ms', log: true }, baselines, time, notes),
      chart(`${name}.listkeys-memory`, group, "listKeys: peak growth of this process's memory", keys, { label: 'MiB held (heap + buffers)', log: true }, baselines, memory, [
        ...notes,
        'Peak growth of this process\'s JS heap and buffers while listing (sampled every 5 ms, after a collection; garbage not yet collected counts; points below 0.01 MiB drawn at 0.01); worker threads and server processes (PostgreSQL, etcd, emulators) are not counted.',
      ]),
    ];
  });
}

export async function blobCharts(name: string, t: BlobTarget, plan: Plan, log: Log): Promise<ReportChart[]> {
  const group = `${name}: Blob`;
  type Side = { series: string; set(key: string, data: Uint8Array): Promise<unknown>; get(key: string): Promise<unknown> };
  const withBlobSides = <T>(tag: string, work: (sides: Side[]) => Promise<T>): Promise<T> =>
    closingAfter(async (closing) => {
      const sides: Side[] = [];
      if (t.raw !== undefined) {
        const raw = await t.raw(tag);
        closing.push(() => raw.close());
        sides.push({ series: t.baseline, set: (k, d) => raw.set(k, d), get: (k) => raw.get(k) });
      }
      const ours = await t.open(tag);
      closing.push(() => ours.close());
      sides.push({ series: t.ours, set: (k, d) => ours.set(k, d), get: (k) => ours.get(k) });
      return work(sides);
    });
  const baselines = baselinesOf(t, [' set', ' get']);
  const clients = await attempt(`${name} blob clients`, () =>
    withBlobSides('clients', async (sides) => {
      const points: ReportPoint[] = [];
      for (const n of plan.clients) {
        const line: string[] = [];
        for (const op of ['set', 'get'] as const) {
          for (const side of sides) {
            const m = await measure(n, plan.pointMs, (c) => (op === 'set' ? side.set(`b${c}`, VALUE) : side.get(`b${c}`)));
            points.push({ series: `${side.series} ${op}`, x: n, y: m.opsPerSec });
            line.push(`${side.series} ${op} ${m.opsPerSec.toFixed(0)}/s`);
          }
        }
        log(`${name} blob x${n} clients: ${line.join(', ')}`);
      }
      return [chart(`${name}.blob-clients`, group, 'set and get throughput vs clients (4 KiB, one key per client)', CLIENTS, OPS, baselines, points, [t.note, noBaseline(t)])];
    }),
  log);
  const sizes = await attempt(`${name} blob sizes`, () =>
    withBlobSides('sizes', async (sides) => {
      const points: ReportPoint[] = [];
      const list = plan.sizes.filter((s) => s <= t.valueBytes);
      for (const size of list) {
        const data = randomBytes(size);
        for (const op of ['set', 'get'] as const) {
          for (const side of sides) {
            const m = await measure(1, plan.pointMs, () => (op === 'set' ? side.set(`s${size}`, data) : side.get(`s${size}`)));
            points.push({ series: `${side.series} ${op}`, x: size, y: m.latencyMs.p50 });
          }
        }
        log(`${name} blob value ${size} B: done`);
      }
      return [chart(`${name}.blob-size`, group, 'set and get p50 latency vs value size (1 client)', { label: 'value bytes', log: true }, MS, baselines, points, [t.note, noBaseline(t)])];
    }),
  log);
  return [...clients, ...sizes];
}
