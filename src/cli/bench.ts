/**
 * `persist-location bench`: a closed-loop workload generator. Clients run an
 * operation mix for a duration against a scratch location beside the user's (see
 * scratch.ts), under a random key prefix, and the throughput and latency
 * percentiles are reported per operation and overall. With `--processes N` the
 * clients run in N child processes (bench-process.ts) whose measures are merged.
 */
import { randomBytes } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import { performance } from 'node:perf_hooks';
import type { Blob } from '../blob.js';
import { CaSResult, type Consensus } from '../consensus.js';
import { openBlob, openConsensus } from '../location.js';
import { SeqNo } from '../seqno.js';
import { redactUri } from '../uri.js';
import { BLOB_DEFAULT, CONSENSUS_DEFAULT, locationOptionHelp, parseCount, parseDuration, tellResolved, usageIf, type Command, type Context } from './args.js';
import { summarize, type LatencySummary } from './measure.js';
import { EXIT, UsageError, errorKind, formatBytes, plural, formatDuration, formatRate, printReport, printReportJson, scrubSecrets, table, writeErr } from './output.js';
import { runBenchReport } from './bench-report.js';
import { Child, killChildren, requireShared, split } from './processes.js';
import { deriveScratch, localParent, removeScratch, scratchId } from './scratch.js';

const OPS = {
  consensus: ['cas', 'head', 'scan', 'truncate'],
  blob: ['get', 'set', 'list', 'delete'],
} as const;
type Target = keyof typeof OPS;

const DEFAULT_MIX: Record<Target, string> = { consensus: 'cas=50,head=40,scan=10', blob: 'get=60,set=30,list=10' };

/** What `bench --json` prints. */
export interface BenchReport {
  target: Target;
  location: string;
  scratch: string;
  clients: number;
  /** The processes the clients were spread over (`--processes`). */
  processes: number;
  keys: number;
  valueBytes: number;
  mix: Record<string, number>;
  /** How long every process was measuring (from the last start to the first end). */
  durationMs: number;
  total: LatencySummary;
  byOp: Record<string, LatencySummary>;
  /** CaS calls that found another client's write first (each followed by a head). */
  mismatches: number;
  errors: number;
  firstError?: string;
  cleanup: { removed: boolean; note?: string };
  /** True when Ctrl-C stopped the run before its duration. */
  interrupted: boolean;
}

export const bench: Command = {
  name: 'bench',
  summary: 'measure throughput and latency under a workload',
  options: ['target', 'clients', 'keys', 'value-size', 'duration', 'mix', 'processes', 'json', 'report'],
  help: `Usage: persist-location bench [--target consensus|blob] [options]

Runs concurrent clients, each issuing its next operation as soon as the previous one
returns, for a fixed duration, then reports operations per second and p50/p90/p99/max
latency per operation and overall. A live progress line is shown on stderr.

It works in a scratch namespace beside your location (the same one "check" uses, see
"persist-location check --help"), under a random key prefix, and removes it after.

Options:
  --target consensus|blob  what to load (default consensus)
${locationOptionHelp('  --consensus URI          ', 'Consensus location', CONSENSUS_DEFAULT)}
${locationOptionHelp('  --blob URI               ', 'Blob location', BLOB_DEFAULT)}
  --clients N              concurrent clients (default 16)
  --processes N            spread the clients over N child processes (default 1):
                           one Node process cannot load a server from more than one
                           core. They start together; throughput is summed over the
                           time all were measuring, percentiles are over every
                           sample. Not for mem: (it lives in one process)
  --keys N                 distinct keys; fewer keys, more CaS contention (default 16)
  --value-size SIZE        bytes per written value: 256, 4k, 1m, at most 1024m
                           (default 256)
  --duration TIME          how long to run: 500ms, 10s, 2m (default 10s)
  --mix OP=W,...           operation weights (default consensus ${DEFAULT_MIX.consensus},
                           blob ${DEFAULT_MIX.blob});
                           consensus ops: cas head scan truncate; blob ops: get set list delete
  --json                   print the report as JSON on stdout
  --quiet                  no progress line
  --report DIR             instead, measure a series of workloads (clients 1-64, versions
                           retained, value sizes, number of keys) and write DIR/index.html
                           (charts; needs the packages vega and vega-lite) and
                           DIR/report.json; the other workload options are ignored

A cas that finds another client's write first (ExpectationMismatch) counts as a cas
and is followed by a head to learn the new seqno, which counts as a head.

Examples:
  persist-location bench
  persist-location bench --clients 64 --keys 4 --duration 30s
  persist-location bench --clients 64 --processes 4 --consensus postgres://db/app
  persist-location bench --mix cas=90,truncate=10 --value-size 4k
  persist-location bench --target blob --value-size 1m --mix get=50,set=50`,
  run: runBench,
};

/** Reads `256`, `4k`, `4KiB`, `1m`, `1MiB`. */
export function parseSize(text: string | undefined, option: string, fallback: number): number {
  if (text === undefined) return fallback;
  const m = /^([0-9]+)\s*(b|k|kb|kib|m|mb|mib)?$/i.exec(text.trim());
  if (m === null) throw new UsageError(`--${option} must be a size like 256, 4k or 1m, got '${text}'`);
  const unit = (m[2] ?? 'b').toLowerCase();
  const bytes = Number(m[1]) * (unit.startsWith('k') ? 1024 : unit.startsWith('m') ? 1024 * 1024 : 1);
  if (bytes > MAX_VALUE_BYTES) throw new UsageError(`--${option} must be at most 1024m (1 GiB), got '${text}'`);
  return bytes;
}

/** The largest value bench writes: it is held in memory, and Node cannot make random buffers past 2 GiB. */
const MAX_VALUE_BYTES = 1024 * 1024 * 1024;

/** Reads `cas=50,head=40,scan=10` into weights, checking the operation names. */
export function parseMix(text: string, target: Target): Record<string, number> {
  const mix: Record<string, number> = {};
  for (const part of text.split(',').map((p) => p.trim()).filter((p) => p !== '')) {
    const m = /^([a-z]+)=([0-9]+(?:\.[0-9]+)?)$/.exec(part);
    if (m === null) throw new UsageError(`--mix must look like ${DEFAULT_MIX[target]}, got '${part}'`);
    if (!(OPS[target] as readonly string[]).includes(m[1]!)) {
      throw new UsageError(`--mix: unknown ${target} operation '${m[1]}'; accepted: ${OPS[target].join(', ')}`);
    }
    mix[m[1]!] = Number(m[2]);
  }
  const total = Object.values(mix).reduce((a, b) => a + b, 0);
  if (total <= 0) throw new UsageError(`--mix needs at least one operation with a weight above 0, got '${text}'`);
  return mix;
}

function picker(mix: Record<string, number>): () => string {
  const entries = Object.entries(mix).filter(([, w]) => w > 0);
  const total = entries.reduce((a, [, w]) => a + w, 0);
  return () => {
    let r = Math.random() * total;
    for (const [op, w] of entries) {
      if ((r -= w) < 0) return op;
    }
    return entries[entries.length - 1]![0];
  };
}

/** A workload: `setup` prepares the keys; `op` runs one operation of a kind and records the kinds it ran. */
interface Workload {
  setup(): Promise<void>;
  op(client: number, kind: string, key: string, record: (kind: string, ms: number) => void): Promise<void>;
  /** CaS calls that found another client's write first. */
  readonly mismatches: number;
  close(): Promise<void>;
}

/** What one process's clients ran (see {@link BenchShare}). */
export interface BenchShare {
  target: Target;
  uri: string;
  clients: number;
  keys: string[];
  valueBytes: number;
  mix: Record<string, number>;
  durationMs: number;
  /** The prefix of every key: the Blob workload lists it. */
  prefix: string;
}

/**
 * What one process's clients measured. Per operation kind, every latency and when
 * it ended; `began` and `ended` bound the measuring, all in milliseconds on one
 * clock (performance.now() in one process, the machine's monotonic clock across
 * several), so that several processes' measures merge (see {@link merge}).
 */
export interface Measured {
  byKind: Record<string, { ms: number[]; at: number[] }>;
  mismatches: number;
  errors: number;
  firstError?: string;
  began: number;
  ended: number;
}

/** Opens the workload of `share` (its handles on the location), before setup or measuring. */
export function openWorkload(share: BenchShare): Promise<Workload> {
  const value = randomBytes(share.valueBytes);
  return share.target === 'consensus' ? consensusWorkload(share.uri, share.clients, share.keys, value) : blobWorkload(share.uri, share.clients, share.keys, value, share.prefix);
}

/**
 * Runs `share.clients` closed-loop clients on `workload` for `share.durationMs` or
 * until `stop` is aborted; `onTick` is called every 100 ms with the number of
 * operations and errors so far. Times are this process's `performance.now()` plus
 * `clock`.
 */
export async function runClients(workload: Workload, share: BenchShare, stop: AbortSignal, onTick: (ops: number, errors: number, elapsedMs: number) => void, clock = 0): Promise<Measured> {
  const byKind: Measured['byKind'] = {};
  let count = 0;
  let errors = 0;
  let firstError: string | undefined;
  const record = (kind: string, ms: number) => {
    const list = (byKind[kind] ??= { ms: [], at: [] });
    list.ms.push(ms);
    list.at.push(performance.now() + clock);
    count++;
  };
  const pick = picker(share.mix);
  const began = performance.now();
  const deadline = began + share.durationMs;
  const ticker = setInterval(() => onTick(count, errors, performance.now() - began), 100);
  try {
    await Promise.all(
      Array.from({ length: share.clients }, async (_, client) => {
        while (performance.now() < deadline && !stop.aborted) {
          const key = share.keys[Math.floor(Math.random() * share.keys.length)]!;
          try {
            await workload.op(client, pick(), key, record);
          } catch (err) {
            errors++;
            firstError ??= scrubSecrets(`${err instanceof Error ? err.message : String(err)}${errorKind(err)}`);
            // A location that fails every call would otherwise spin: give up.
            if (errors >= 50 && count === 0) throw err;
          }
        }
      }),
    );
  } finally {
    clearInterval(ticker);
  }
  return { byKind, mismatches: workload.mismatches, errors, ...(firstError === undefined ? {} : { firstError }), began: began + clock, ended: performance.now() + clock };
}

/**
 * Several processes' measures as one: throughput is what completed in the window
 * every process was measuring (from the last start to the first end) over its
 * length; latency percentiles are over every sample of every process.
 */
export function merge(measured: readonly Measured[]): Pick<BenchReport, 'durationMs' | 'total' | 'byOp' | 'mismatches' | 'errors' | 'firstError'> {
  const from = Math.max(...measured.map((m) => m.began));
  const to = Math.min(...measured.map((m) => m.ended));
  const seconds = Math.max(0, to - from) / 1000;
  const inWindow = (at: number[]) => at.filter((t) => t >= from && t <= to).length;
  const summary = (lists: { ms: number[]; at: number[] }[]): LatencySummary => {
    const s = summarize(lists.flatMap((l) => l.ms), seconds);
    return { ...s, opsPerSec: seconds > 0 ? lists.reduce((a, l) => a + inWindow(l.at), 0) / seconds : 0 };
  };
  const kinds = [...new Set(measured.flatMap((m) => Object.keys(m.byKind)))];
  const byOp: Record<string, LatencySummary> = {};
  for (const kind of kinds) byOp[kind] = summary(measured.flatMap((m) => m.byKind[kind] ?? []));
  const failing = measured.findIndex((m) => m.firstError !== undefined);
  const firstError = failing < 0 ? undefined : `${measured.length > 1 ? `process ${failing + 1} of ${measured.length}: ` : ''}${measured[failing]!.firstError}`;
  return {
    durationMs: seconds * 1000,
    total: summary(measured.flatMap((m) => Object.values(m.byKind))),
    byOp,
    mismatches: measured.reduce((a, m) => a + m.mismatches, 0),
    errors: measured.reduce((a, m) => a + m.errors, 0),
    ...(firstError === undefined ? {} : { firstError }),
  };
}

async function runBench(ctx: Context): Promise<number> {
  usageIf(ctx.args.length > 0, `unexpected argument '${ctx.args[0]}' (bench takes options only)`);
  if (ctx.values.report !== undefined) return runBenchReport(ctx, ctx.values.report);
  const targetText = ctx.values.target ?? 'consensus';
  usageIf(targetText !== 'consensus' && targetText !== 'blob', `--target must be consensus or blob, got '${targetText}'`);
  const target = targetText as Target;
  const clients = parseCount(ctx.values.clients, 'clients', 16);
  const nKeys = parseCount(ctx.values.keys, 'keys', 16);
  const valueBytes = parseSize(ctx.values['value-size'], 'value-size', 256);
  const durationMs = parseDuration(ctx.values.duration, 'duration', 10_000);
  const mix = parseMix(ctx.values.mix ?? DEFAULT_MIX[target], target);
  // More processes than clients would leave some idle.
  const processes = Math.min(parseCount(ctx.values.processes, 'processes', 1), clients);
  const userUri = target === 'consensus' ? ctx.consensusUri : ctx.blobUri;
  if (processes > 1) requireShared(userUri, target, '--processes');
  tellResolved(ctx, target, userUri);
  const id = scratchId();
  const scratch = deriveScratch(userUri, id);
  const prefix = `bench-${id}-`;
  const share: BenchShare = { target, uri: scratch.uri, clients, keys: Array.from({ length: nKeys }, (_, i) => `${prefix}${i}`), valueBytes, mix, durationMs, prefix };

  let measured: Measured[] = [];
  let cleanup: { removed: boolean; note?: string } = { removed: true };
  // A first interrupt stops the clients: the report of what ran is printed and the
  // scratch location removed as usual. A second one ends the process at once.
  const stop = new AbortController();
  const onSignal = (signal: NodeJS.Signals) => {
    if (stop.signal.aborted) {
      stopWatching();
      killChildren();
      process.kill(process.pid, signal);
      return;
    }
    stop.abort();
    ctx.progress.finish();
    writeErr('persist-location: interrupted; stopping the clients and removing the scratch location (interrupt again to leave it)\n');
  };
  const stopWatching = () => {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    const parent = localParent(scratch);
    if (parent !== undefined) await mkdir(parent, { recursive: true });
    // The keys are made once, here; each process's clients then open their own handles.
    const workload = await openWorkload(processes > 1 ? { ...share, clients: 1 } : share);
    try {
      ctx.progress.start(`bench ${target}: preparing ${plural(nKeys, 'key')}`);
      await workload.setup();
      ctx.progress.finish();
      const tick = (ops: number, errors: number, elapsed: number) =>
        // The line shows the elapsed time already: the detail is what was done in it.
        ctx.progress.tick(elapsed, durationMs, `${ops} ops  ${formatRate((ops / elapsed) * 1000)}${errors > 0 ? `  ${plural(errors, 'error')}` : ''}`, false);
      if (processes > 1) {
        await workload.close();
        measured = await benchInProcesses(share, processes, ctx.values.backend ?? [], stop.signal, (label) => ctx.progress.start(label), tick);
      } else {
        ctx.progress.start(`bench ${target}`);
        measured = [await runClients(workload, share, stop.signal, tick)];
      }
      ctx.progress.finish(`bench ${target}: done (${formatDuration(Math.max(...measured.map((m) => m.ended - m.began)))})`);
    } finally {
      await workload.close();
    }
  } finally {
    // Still watching: a first interrupt during the removal lets it finish.
    cleanup = await removeScratch(scratch, target);
    stopWatching();
  }

  const report: BenchReport = {
    target,
    location: redactUri(userUri),
    scratch: scratch.display,
    clients,
    processes,
    keys: nKeys,
    valueBytes,
    mix,
    ...merge(measured),
    cleanup,
    interrupted: stop.signal.aborted,
  };
  if (ctx.values.json) await printReportJson(report);
  else await printReport(formatBench(report));
  if (report.interrupted) return EXIT.interrupted;
  return report.errors > 0 ? EXIT.failed : EXIT.ok;
}

/** How long each child may take to open its handles and say it is ready. */
const READY_MS = 60_000;
/** How long past the duration each child may take to stop its clients and report. */
const REPORT_MS = 60_000;

/**
 * The clients of `share` spread over `processes` child processes (bench-process.ts)
 * that start measuring together: each opens its handles and says it is ready, and
 * once all are, each is told to go. A child that fails, or does not report in
 * time (it is killed), fails the run, naming it; the others are then stopped.
 */
async function benchInProcesses(
  share: BenchShare,
  processes: number,
  backends: readonly string[],
  stop: AbortSignal,
  onPhase: (label: string) => void,
  onTick: (ops: number, errors: number, elapsedMs: number) => void,
): Promise<Measured[]> {
  const done = new Array<{ ops: number; errors: number }>(processes).fill({ ops: 0, errors: 0 });
  let began = 0;
  const children = split(share.clients, processes).map(
    (clients, i) =>
      new Child<Measured>('bench-process.js', { ...share, clients }, `process ${i + 1} of ${processes} of bench`, backends, (line) => {
        if (typeof line.ops !== 'number' || typeof line.errors !== 'number') return;
        done[i] = { ops: line.ops, errors: line.errors };
        onTick(
          done.reduce((a, d) => a + d.ops, 0),
          done.reduce((a, d) => a + d.errors, 0),
          performance.now() - began,
        );
      }),
  );
  const onStop = () => children.forEach((c) => c.send({ stop: true }));
  stop.addEventListener('abort', onStop);
  const killLate = (ms: number, what: string, pending: (i: number) => boolean) =>
    setTimeout(() => children.forEach((c, i) => pending(i) && c.kill(`did not ${what} within ${formatDuration(ms)}`)), ms);
  try {
    onPhase(`bench ${share.target}: starting ${processes} processes`);
    const ready = new Array<boolean>(processes).fill(false);
    const readyTimer = killLate(READY_MS, 'say it was ready', (i) => !ready[i]);
    try {
      // A child that fails while the others open fails the run at once.
      await Promise.race([Promise.all(children.map((c, i) => c.next('ready').then(() => (ready[i] = true)))), ...children.map((c) => c.result.then(() => {}))]);
    } finally {
      clearTimeout(readyTimer);
    }
    onPhase(`bench ${share.target}`);
    began = performance.now();
    for (const c of children) c.send({ go: true });
    const reported = new Array<boolean>(processes).fill(false);
    const reportTimer = killLate(share.durationMs + REPORT_MS, 'report its measures', (i) => !reported[i]);
    try {
      return await Promise.all(children.map((c, i) => c.result.then((m) => ((reported[i] = true), m))));
    } finally {
      clearTimeout(reportTimer);
    }
  } catch (err) {
    for (const c of children) c.kill('was stopped after another process failed');
    await Promise.allSettled(children.map((c) => c.result));
    throw err;
  } finally {
    stop.removeEventListener('abort', onStop);
  }
}

async function consensusWorkload(uri: string, clients: number, keys: string[], value: Uint8Array): Promise<Workload> {
  // Several handles, as several processes would have; clients share them round-robin.
  const handles: Consensus[] = [];
  try {
    for (let i = 0; i < Math.min(clients, 4); i++) handles.push(await openConsensus(uri));
  } catch (err) {
    await Promise.all(handles.map((h) => h.close()));
    throw err;
  }
  // Each client's idea of each key's head seqno; wrong ones are corrected by a head.
  const known = Array.from({ length: clients }, () => new Map<string, bigint>());
  let mismatches = 0;
  const timed = async <T>(kind: string, record: (kind: string, ms: number) => void, work: () => Promise<T>): Promise<T> => {
    const t0 = performance.now();
    const out = await work();
    record(kind, performance.now() - t0);
    return out;
  };
  return {
    async setup() {
      const c = handles[0]!;
      for (const key of keys) await c.compareAndSet(key, undefined, { seqno: new SeqNo(1), data: value });
      for (const map of known) for (const key of keys) map.set(key, 1n);
    },
    async op(client, kind, key, record) {
      const c = handles[client % handles.length]!;
      const mine = known[client]!;
      const head = mine.get(key) ?? 1n;
      if (kind === 'cas') {
        const result = await timed('cas', record, () => c.compareAndSet(key, new SeqNo(head), { seqno: new SeqNo(head + 1n), data: value }));
        if (result === CaSResult.Committed) {
          mine.set(key, head + 1n);
        } else {
          mismatches++;
          const h = await timed('head', record, () => c.head(key));
          if (h !== undefined) mine.set(key, h.seqno.value);
        }
      } else if (kind === 'head') {
        const h = await timed('head', record, () => c.head(key));
        if (h !== undefined) mine.set(key, h.seqno.value);
      } else if (kind === 'scan') {
        await timed('scan', record, () => c.scan(key, new SeqNo(head > 9n ? head - 9n : 0n), 10));
      } else {
        // Keeps the last few versions; at or below the known head, so it never fails.
        await timed('truncate', record, () => c.truncate(key, new SeqNo(head > 5n ? head - 5n : 0n)));
      }
    },
    get mismatches() {
      return mismatches;
    },
    async close() {
      await Promise.all(handles.map((h) => h.close()));
    },
  };
}

async function blobWorkload(uri: string, clients: number, keys: string[], value: Uint8Array, prefix: string): Promise<Workload> {
  const handles: Blob[] = [];
  try {
    for (let i = 0; i < Math.min(clients, 4); i++) handles.push(await openBlob(uri));
  } catch (err) {
    await Promise.all(handles.map((h) => h.close()));
    throw err;
  }
  return {
    async setup() {
      for (const key of keys) await handles[0]!.set(key, value);
    },
    async op(client, kind, key, record) {
      const b = handles[client % handles.length]!;
      const t0 = performance.now();
      if (kind === 'get') await b.get(key);
      else if (kind === 'set') await b.set(key, value);
      else if (kind === 'delete') await b.delete(key);
      else for await (const _ of b.list(prefix)) void _;
      record(kind, performance.now() - t0);
    },
    mismatches: 0,
    async close() {
      await Promise.all(handles.map((h) => h.close()));
    },
  };
}

function formatBench(r: BenchReport): string[] {
  const mix = Object.entries(r.mix).map(([k, w]) => `${k}=${w}`).join(',');
  const row = (name: string, s: LatencySummary) => [
    name,
    String(s.ops),
    formatRate(s.opsPerSec),
    formatDuration(s.latencyMs.p50),
    formatDuration(s.latencyMs.p90),
    formatDuration(s.latencyMs.p99),
    formatDuration(s.latencyMs.max),
  ];
  const rows = [['op', 'ops', 'throughput', 'p50', 'p90', 'p99', 'max'], ...Object.entries(r.byOp).sort().map(([k, s]) => row(k, s)), row('all', r.total)];
  const lines = [
    `persist-location bench ${r.target}`,
    '',
    `location   ${r.location}`,
    `scratch    ${r.scratch}`,
    `workload   ${plural(r.clients, 'client')}${r.processes > 1 ? ` over ${r.processes} processes` : ''}, ${plural(r.keys, 'key')}, ${formatBytes(r.valueBytes)} values, mix ${mix}, ${formatDuration(r.durationMs)}${r.interrupted ? ' (interrupted)' : ''}`,
    '',
    ...table(rows, ['l', 'r', 'r', 'r', 'r', 'r', 'r']).map((l) => `  ${l}`),
    '',
  ];
  if (r.target === 'consensus') lines.push(`cas mismatches: ${r.mismatches} (another client wrote first; each was followed by a head)`);
  if (r.errors > 0) lines.push(`errors: ${r.errors}; first: ${r.firstError}`);
  if (!r.cleanup.removed) lines.push(`warning: ${r.cleanup.note}`);
  return lines;
}
