/**
 * `persist-location bench`: a closed-loop workload generator. Clients run an
 * operation mix for a duration against a scratch location beside the user's (see
 * scratch.ts), under a random key prefix, and the throughput and latency
 * percentiles are reported per operation and overall.
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
import { EXIT, UsageError, formatBytes, plural, formatDuration, formatRate, printReport, printReportJson, scrubSecrets, table, writeErr } from './output.js';
import { runBenchReport } from './bench-report.js';
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
  keys: number;
  valueBytes: number;
  mix: Record<string, number>;
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
  options: ['target', 'clients', 'keys', 'value-size', 'duration', 'mix', 'json', 'report'],
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

/** A workload: `setup` prepares the keys; `op` runs one operation of a kind and returns the kinds it ran. */
interface Workload {
  setup(): Promise<void>;
  op(client: number, kind: string, key: string, record: (kind: string, ms: number) => void): Promise<void>;
  close(): Promise<void>;
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
  const userUri = target === 'consensus' ? ctx.consensusUri : ctx.blobUri;
  tellResolved(ctx, target, userUri);
  const id = scratchId();
  const scratch = deriveScratch(userUri, id);
  const keys = Array.from({ length: nKeys }, (_, i) => `bench-${id}-${i}`);
  const value = randomBytes(valueBytes);

  const latencies = new Map<string, number[]>();
  const all: number[] = [];
  let mismatches = 0;
  let errors = 0;
  let firstError: string | undefined;
  let measuredMs = 0;
  let cleanup: { removed: boolean; note?: string } = { removed: true };
  // A first interrupt stops the clients: the report of what ran is printed and the
  // scratch location removed as usual. A second one ends the process at once.
  let interrupted = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (interrupted) {
      stopWatching();
      process.kill(process.pid, signal);
      return;
    }
    interrupted = true;
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
    const workload =
      target === 'consensus'
        ? await consensusWorkload(scratch.uri, clients, keys, value, () => mismatches++)
        : await blobWorkload(scratch.uri, clients, keys, value, `bench-${id}-`);
    try {
      ctx.progress.start(`bench ${target}: preparing ${plural(nKeys, 'key')}`);
      await workload.setup();
      ctx.progress.finish();
      ctx.progress.start(`bench ${target}`);
      const pick = picker(mix);
      const record = (kind: string, ms: number) => {
        let list = latencies.get(kind);
        if (list === undefined) latencies.set(kind, (list = []));
        list.push(ms);
        all.push(ms);
      };
      const began = performance.now();
      const deadline = began + durationMs;
      const ticker = setInterval(() => {
        const elapsed = performance.now() - began;
        // The line shows the elapsed time already: the detail is what was done in it.
        ctx.progress.tick(elapsed, durationMs, `${all.length} ops  ${formatRate((all.length / elapsed) * 1000)}${errors > 0 ? `  ${plural(errors, 'error')}` : ''}`, false);
      }, 100);
      try {
        await Promise.all(
          Array.from({ length: clients }, async (_, client) => {
            while (performance.now() < deadline && !interrupted) {
              const key = keys[Math.floor(Math.random() * keys.length)]!;
              try {
                await workload.op(client, pick(), key, record);
              } catch (err) {
                errors++;
                firstError ??= scrubSecrets(err instanceof Error ? err.message : String(err));
                // A location that fails every call would otherwise spin: give up.
                if (errors >= 50 && all.length === 0) throw err;
              }
            }
          }),
        );
      } finally {
        clearInterval(ticker);
        measuredMs = performance.now() - began;
        ctx.progress.finish(`bench ${target}: done (${formatDuration(measuredMs)})`);
      }
    } finally {
      await workload.close();
    }
  } finally {
    // Still watching: a first interrupt during the removal lets it finish.
    cleanup = await removeScratch(scratch, target);
    stopWatching();
  }

  const seconds = measuredMs / 1000;
  const byOp: Record<string, LatencySummary> = {};
  for (const [kind, list] of latencies) byOp[kind] = summarize(list, seconds);
  const report: BenchReport = {
    target,
    location: redactUri(userUri),
    scratch: scratch.display,
    clients,
    keys: nKeys,
    valueBytes,
    mix,
    durationMs: measuredMs,
    total: summarize(all, seconds),
    byOp,
    mismatches,
    errors,
    ...(firstError === undefined ? {} : { firstError }),
    cleanup,
    interrupted,
  };
  if (ctx.values.json) await printReportJson(report);
  else await printReport(formatBench(report));
  if (interrupted) return EXIT.interrupted;
  return errors > 0 ? EXIT.failed : EXIT.ok;
}

async function consensusWorkload(uri: string, clients: number, keys: string[], value: Uint8Array, onMismatch: () => void): Promise<Workload> {
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
          onMismatch();
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
    `workload   ${plural(r.clients, 'client')}, ${plural(r.keys, 'key')}, ${formatBytes(r.valueBytes)} values, mix ${mix}, ${formatDuration(r.durationMs)}${r.interrupted ? ' (interrupted)' : ''}`,
    '',
    ...table(rows, ['l', 'r', 'r', 'r', 'r', 'r', 'r']).map((l) => `  ${l}`),
    '',
  ];
  if (r.target === 'consensus') lines.push(`cas mismatches: ${r.mismatches} (another client wrote first; each was followed by a head)`);
  if (r.errors > 0) lines.push(`errors: ${r.errors}; first: ${r.firstError}`);
  if (!r.cleanup.removed) lines.push(`warning: ${r.cleanup.note}`);
  return lines;
}
