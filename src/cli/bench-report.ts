/**
 * `persist-location bench --report DIR`: the benchmark report's charts (see
 * report-charts.ts) for the user's own location, measured in scratch locations
 * beside it (one per chart, see scratch.ts) that are removed after, and written as
 * DIR/report.json and DIR/index.html (report-html.ts). The charts are those that
 * make sense for one location: throughput vs clients, latency vs versions retained
 * and value size, listKeys vs keys (Consensus); set/get vs clients and value size
 * (Blob). The baseline, the same storage driven directly, is drawn where this
 * command has one for the scheme: memory, SQLite and files.
 */
import { mkdir } from 'node:fs/promises';
import { resolve } from 'node:path';
import { openBlob, openConsensus } from '../location.js';
import { parseLocationUri, redactUri } from '../uri.js';
import { tellResolved, usageIf, type Context } from './args.js';
import { EXIT, writeErr } from './output.js';
import { BASELINE_NAMES, fileRawBlob, memRawBlob, memRawConsensus, sqliteRawConsensus } from './report-baselines.js';
import { blobCharts, consensusCharts, type BlobTarget, type ConsensusTarget, type Log, type Plan } from './report-charts.js';
import { machineFacts, writeReport, type ReportChart } from './report-html.js';
import { deriveScratch, localParent, removeScratch, scratchId, type ScratchLocation } from './scratch.js';

const KiB = 1024;
const MiB = 1024 * KiB;

/** Smaller than the repository's full report: a user's location may be remote and shared. */
const PLAN: Plan = {
  quick: false,
  pointMs: 500,
  clients: [1, 4, 16, 64],
  versions: [0, 100, 1000],
  sizes: [64, 4 * KiB, 64 * KiB, 1 * MiB],
  keys: [100, 1000],
  fillMs: 20_000,
};

/** The local path of a scratch child URI (sqlite:, file:). */
const pathOf = (uri: string) => resolve(parseLocationUri(uri).path);

function consensusTarget(scratch: ScratchLocation): ConsensusTarget {
  const raw: Record<string, ConsensusTarget['raw']> = {
    mem: async () => memRawConsensus(),
    sqlite: (tag) => sqliteRawConsensus(pathOf(scratch.child(`raw-${tag}`))),
  };
  const withParam = (uri: string, param: string) => `${uri}${uri.includes('?') ? '&' : '?'}${param}`;
  return {
    ours: `${scratch.scheme}: through persist-location`,
    baseline: BASELINE_NAMES[scratch.scheme as keyof typeof BASELINE_NAMES] ?? 'none',
    limits: { versions: 1000, keys: 1000, valueBytes: 1 * MiB },
    open: (tag) => openConsensus(scratch.child(tag)),
    ...(scratch.scheme === 'sqlite' ? { openFiller: (tag: string) => openConsensus(withParam(scratch.child(tag), 'synchronous=normal')) } : {}),
    ...(raw[scratch.scheme] === undefined ? {} : { raw: raw[scratch.scheme] }),
  };
}

function blobTarget(scratch: ScratchLocation): BlobTarget {
  const raw: Record<string, BlobTarget['raw']> = {
    mem: async () => memRawBlob(),
    file: (tag) => fileRawBlob(pathOf(scratch.child(`raw-${tag}`))),
  };
  return {
    ours: `${scratch.scheme}: through persist-location`,
    baseline: BASELINE_NAMES[scratch.scheme as keyof typeof BASELINE_NAMES] ?? 'none',
    valueBytes: 1 * MiB,
    open: (tag) => openBlob(scratch.child(tag)),
    ...(raw[scratch.scheme] === undefined ? {} : { raw: raw[scratch.scheme] }),
  };
}

export async function runBenchReport(ctx: Context, dir: string): Promise<number> {
  usageIf(dir === '', '--report needs a directory');
  const targetText = ctx.values.target ?? 'consensus';
  usageIf(targetText !== 'consensus' && targetText !== 'blob', `--target must be consensus or blob, got '${targetText}'`);
  const target = targetText as 'consensus' | 'blob';
  const userUri = target === 'consensus' ? ctx.consensusUri : ctx.blobUri;
  tellResolved(ctx, target, userUri);
  const scratch = deriveScratch(userUri, scratchId());
  const charts: ReportChart[] = [];
  const failures: string[] = [];
  const log: Log = (line, failure) => {
    ctx.progress.start(`bench --report: ${line}`);
    if (failure === true) failures.push(line);
  };
  const began = Date.now();
  let cleanup: { removed: boolean; note?: string } = { removed: true };
  try {
    const parent = localParent(scratch);
    if (parent !== undefined) await mkdir(parent, { recursive: true });
    if (target === 'consensus') charts.push(...(await consensusCharts(scratch.scheme, consensusTarget(scratch), PLAN, log)));
    else charts.push(...(await blobCharts(scratch.scheme, blobTarget(scratch), PLAN, log)));
  } finally {
    ctx.progress.finish();
    cleanup = await removeScratch(scratch, target);
  }
  const page = await writeReport(dir, {
    title: `persist-location bench report: ${redactUri(userUri)}`,
    date: new Date().toISOString(),
    machine: machineFacts(),
    node: process.version,
    commit: 'n/a (persist-location bench)',
    notes: [
      `Made by \`persist-location bench --report\` for ${target} at ${redactUri(userUri)}, in scratch locations beside it (${scratch.display}), in ${((Date.now() - began) / 1000).toFixed(0)} s, ${PLAN.pointMs} ms per point.`,
      ...failures.map((f) => `Missing: ${f}.`),
      ...(cleanup.removed ? [] : [`Warning: ${cleanup.note}`]),
    ],
    charts,
  });
  writeErr(`report: ${page} (${charts.length} charts)\n`);
  if (!cleanup.removed) writeErr(`warning: ${cleanup.note}\n`);
  return failures.length === 0 && charts.length > 0 ? EXIT.ok : EXIT.failed;
}
