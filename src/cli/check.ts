/**
 * `persist-location check`: runs the conformance suites and a concurrent
 * linearizability run against scratch locations beside the user's (see scratch.ts),
 * and reports pass/fail, operations, throughput and latency per check.
 */
import { mkdir } from 'node:fs/promises';
import { performance } from 'node:perf_hooks';
import { allBackends, type BackendCapabilities } from '../backend.js';
import { ErrorCode, ExternalError } from '../errors.js';
import { backendPart, openBlob, openConsensus } from '../location.js';
import type { StressReport } from '../testing/index.js';
import { parseLocationUri, redactUri } from '../uri.js';
import { BLOB_DEFAULT, CONSENSUS_DEFAULT, locationOptionHelp, parseCount, resolvedLocation, usageIf, type Command, type Context } from './args.js';
import { Gate } from './gate.js';
import { killChildren, requireShared, stressInProcesses } from './processes.js';
import { Recorder, measuredBlob, measuredConsensus, type LatencySummary } from './measure.js';
import { EXIT, errorKind, formatDuration, plural, formatRate, printReport, printReportJson, scrubSecrets, table, type Progress } from './output.js';
import { deriveScratch, localParent, removeOnInterrupt, removeScratch, scratchId, type LocationKind, type ScratchLocation } from './scratch.js';

/** One line of the report. */
export interface CheckResult {
  name: string;
  target: LocationKind;
  status: 'pass' | 'fail' | 'skip';
  durationMs: number;
  /** Operations, throughput and latency of the check (absent when skipped). */
  stats?: LatencySummary;
  /** Why it failed or was skipped. */
  error?: string;
  /** The linearizability run's counts. */
  stress?: Omit<StressReport, 'history' | 'violations' | 'latencyMs' | 'opsPerSec' | 'durationMs' | 'ops'> & { violations: number; firstViolation?: unknown };
}

/** What `check --json` prints. */
export interface CheckReport {
  ok: boolean;
  durationMs: number;
  /** `resolved`: the absolute form of a relative local URI (see resolvedLocation). */
  locations: Partial<Record<LocationKind, { location: string; resolved?: string; scratch: string }>>;
  checks: CheckResult[];
  cleanup: { target: LocationKind; scratch: string; removed: boolean; note?: string }[];
  /** With --faults: what was injected under withRetry, summed over every handle. */
  faults?: { rate: number; calls: number; determinate: number; lost: number; applied: number };
}

/**
 * Opening for the checks: as a user would (openConsensus/openBlob with their
 * defaults), or with --faults through withRetry(Unreliable...(location)). The
 * conformance suites see only faults that were not applied (and none on Blob
 * set and restore), which withRetry recovers exactly; the linearizability run also sees
 * writes that failed after being applied.
 */
class Opener {
  readonly #stores: { stats: { calls: number; determinate: number; lost: number; applied: number } }[] = [];
  #seed = 1;

  constructor(readonly faultRate: number | undefined) {}

  async consensus(uri: string, applied: boolean) {
    if (this.faultRate === undefined) return openConsensus(uri);
    const [{ UnreliableConsensus }, { withRetry }] = await Promise.all([import('../testing/index.js'), import('../envelope/retry.js')]);
    const u = new UnreliableConsensus(await openConsensus(uri, { retry: false }), { failRate: this.faultRate, appliedRate: applied ? 0.5 : 0, seed: this.#seed++ });
    this.#stores.push(u);
    return withRetry(u, FAULT_RETRY);
  }

  async blob(uri: string) {
    if (this.faultRate === undefined) return openBlob(uri);
    const [{ UnreliableBlob }, { withRetry }] = await Promise.all([import('../testing/index.js'), import('../envelope/retry.js')]);
    // Not set or restore: their refusal after an unknown outcome cannot prove the
    // earlier attempt did nothing, so withRetry rightly leaves it Indeterminate,
    // where the suite demands Determinate.
    const u = new UnreliableBlob(await openBlob(uri, { retry: false }), {
      failRate: this.faultRate,
      appliedRate: 0,
      seed: this.#seed++,
      operations: ['get', 'delete', 'list'],
    });
    this.#stores.push(u);
    return withRetry(u, FAULT_RETRY);
  }

  summary(): CheckReport['faults'] {
    if (this.faultRate === undefined) return undefined;
    const sum = { rate: this.faultRate, calls: 0, determinate: 0, lost: 0, applied: 0 };
    for (const { stats } of this.#stores) {
      sum.calls += stats.calls;
      sum.determinate += stats.determinate;
      sum.lost += stats.lost;
      sum.applied += stats.applied;
    }
    return sum;
  }
}

/** Short pauses: the injected faults are not a server that needs time to come back. */
const FAULT_RETRY = { minDelayMs: 1, maxDelayMs: 100 };

export const check: Command = {
  name: 'check',
  summary: 'verify a location: conformance suites and a linearizability run',
  options: ['ops', 'clients', 'keys', 'processes', 'only', 'json', 'faults'],
  get help() {
    return `Usage: persist-location check [--consensus URI] [--blob URI] [options]

Verifies that the locations behave as persist-location requires: runs the Consensus
and Blob conformance suites and a concurrent linearizability run (many clients on
several handles doing head/compareAndSet/scan/truncate, the history then checked),
and reports pass/fail per check with operations, throughput and p50/p99 latency.
Progress is shown on stderr while it works.

It works in a scratch namespace beside your location, never inside it, and removes
it afterwards, so your keys are untouched and "consensus list" / "blob ls" show
none of its keys:
${scratchHelp()}
If a scratch namespace cannot be removed, the report says what is left and how to
remove it.

Options:
${locationOptionHelp('  --consensus URI         ', 'Consensus location', CONSENSUS_DEFAULT)}
${locationOptionHelp('  --blob URI              ', 'Blob location', BLOB_DEFAULT)}
  --only consensus|blob   check only one of the two
  --ops N                 operations of the linearizability run, at least 100
                          (default 2000)
  --clients N             its concurrent clients (default 16)
  --keys N                its keys; fewer keys, more contention (default 8)
  --processes N           spread its clients over N child processes, their
                          histories checked as one (default 1: this process);
                          one Node process cannot load a server from more cores
  --faults RATE           inject faults into a RATE share (0 to 1) of the calls,
                          under withRetry: reports what was injected, and the
                          checks pass only if withRetry recovered from it
  --json                  print the report as JSON on stdout
  --quiet                 no progress on stderr

Exit code 0 only if every check passed, 1 otherwise.

Examples:
  persist-location check
  persist-location check --ops 10000 --clients 32 --processes 4
  persist-location check --only consensus --consensus postgres://app@db:5432/app
  persist-location check --json > check-report.json
  persist-location check --faults 0.1`;
  },
  run: runCheck,
};

/** How each registered backend's locations map to their scratch locations. */
function scratchHelp(): string {
  const rows = allBackends().flatMap((b) => (b.scratch === undefined ? [] : [b.scratch.summary]));
  const width = Math.max(...rows.map((r) => r.location.length));
  return rows.map((r) => `  ${r.location.padEnd(width)}  ->  ${r.scratch}`).join('\n');
}

async function runCheck(ctx: Context): Promise<number> {
  usageIf(ctx.args.length > 0, `unexpected argument '${ctx.args[0]}' (check takes options only)`);
  const only = ctx.values.only;
  usageIf(only !== undefined && only !== 'consensus' && only !== 'blob', `--only must be consensus or blob, got '${only}'`);
  const stressOpts = {
    // Fewer operations would hardly exercise the location (and might hold no write).
    ops: parseCount(ctx.values.ops, 'ops', 2000, 100),
    clients: parseCount(ctx.values.clients, 'clients', 16),
    keys: parseCount(ctx.values.keys, 'keys', 8),
    processes: parseCount(ctx.values.processes, 'processes', 1),
    backends: ctx.values.backend ?? [],
  };
  const faults = ctx.values.faults === undefined ? undefined : Number(ctx.values.faults);
  usageIf(faults !== undefined && !(faults >= 0 && faults <= 1), `--faults must be a number from 0 to 1, got '${ctx.values.faults}'`);
  usageIf(faults !== undefined && stressOpts.processes > 1, '--faults and --processes cannot be used together (the faults are injected in this process)');
  if (stressOpts.processes > 1 && only !== 'blob') requireShared(ctx.consensusUri, 'consensus', '--processes');
  const opener = new Opener(faults);
  const targets: LocationKind[] = only === undefined ? ['consensus', 'blob'] : [only as LocationKind];
  // Derive every scratch name first, so a URI that has none fails before any work.
  const id = scratchId();
  const scratches = new Map<LocationKind, ScratchLocation>();
  for (const target of targets) scratches.set(target, deriveScratch(target === 'consensus' ? ctx.consensusUri : ctx.blobUri, id));

  const began = performance.now();
  const report: CheckReport = { ok: false, durationMs: 0, locations: {}, checks: [], cleanup: [] };
  // Every open and call in the scratch locations goes through the gate, so that an
  // interrupt can stop them all before it removes the locations.
  const gate = new Gate();
  // Targets whose location was opened: anything of ours can only be in those.
  const opened = new Set<LocationKind>();
  const stopWatching = removeOnInterrupt(
    targets.map((t) => [scratches.get(t)!, t] as const),
    () => ctx.progress.silence(),
    () => {
      killChildren();
      return gate.shut();
    },
  );
  try {
    for (const target of targets) {
      const scratch = scratches.get(target)!;
      const uri = target === 'consensus' ? ctx.consensusUri : ctx.blobUri;
      const resolved = resolvedLocation(uri);
      report.locations[target] = { location: redactUri(uri), ...(resolved !== undefined && { resolved }), scratch: scratch.display };
      if (target === 'consensus') report.checks.push(...(await checkConsensus(scratch, stressOpts, ctx.progress, gate, opened, opener)));
      else report.checks.push(...(await checkBlob(scratch, ctx.progress, gate, opened, opener)));
    }
  } finally {
    // Still watching: an interrupt now removes the scratch locations all the same.
    for (const target of targets) {
      const scratch = scratches.get(target)!;
      // A server that could not be reached has nothing of ours, and would only fail again.
      const unreachable = !opened.has(target) && scratch.localPath === undefined;
      const done = unreachable ? { removed: true, note: 'nothing to remove: the location could not be opened' } : await removeScratch(scratch, target);
      report.cleanup.push({ target, scratch: scratch.display, ...done });
    }
    stopWatching();
  }
  report.durationMs = performance.now() - began;
  const injected = opener.summary();
  if (injected !== undefined) report.faults = injected;
  report.ok = report.checks.every((c) => c.status === 'pass');
  if (ctx.values.json) await printReportJson(report);
  else await printReport(formatReport(report));
  return report.ok ? EXIT.ok : EXIT.failed;
}

async function checkConsensus(
  scratch: ScratchLocation,
  stressOpts: { ops: number; clients: number; keys: number; processes: number; backends: readonly string[] },
  progress: Progress,
  gate: Gate,
  reached: Set<LocationKind>,
  opener: Opener,
): Promise<CheckResult[]> {
  const open = (uri: string, applied = false) => gate.consensus(() => opener.consensus(uri, applied));
  const opened = await step('consensus', 'open location', progress, async () => {
    await gate.run(() => makeParent(scratch));
    const c = await open(scratch.uri);
    reached.add('consensus');
    try {
      // Some backends connect lazily: one read shows now that the server answers,
      // rather than after every operation of the runs below has timed out.
      await c.head(PROBE_KEY).catch(unreached(reached, 'consensus'));
    } finally {
      await c.close();
    }
  });
  if (opened.status === 'fail') {
    return [opened, skipped('consensus', 'consensus conformance'), skipped('consensus', 'consensus linearizability')];
  }

  // Loaded here, so that the other commands never depend on the testing code.
  const { consensusImplTest, stressConsensus } = await import('../testing/index.js');
  const rec = new Recorder();
  let suite = 0;
  const conformance = await step('consensus', 'consensus conformance', progress, async () => {
    rec.onRecord = (n) => progress.tick(n, undefined);
    await consensusImplTest(async () => measuredConsensus(await open(scratch.child(`suite${String(++suite).padStart(3, '0')}`)), rec), { capabilities: capabilitiesOf(scratch, 'consensus') });
  }, rec);

  let stress: StressReport | undefined;
  const linearizability = await step('consensus', 'consensus linearizability', progress, async () => {
    const { processes, backends: _b, ...inOne } = stressOpts;
    const onProgress = (done: number, total: number) => progress.tick(done, total);
    stress =
      processes > 1
        ? await stressInProcesses(scratch.uri, () => open(scratch.uri), { ...stressOpts, onProgress })
        : await stressConsensus(() => open(scratch.uri, true), { ...inOne, onProgress });
    const problem = stressProblem(stress);
    if (problem !== undefined) throw new Error(problem);
  });
  if (stress !== undefined) {
    const { history: _h, violations, latencyMs, opsPerSec, durationMs: _d, ops, ...counts } = stress;
    linearizability.stats = { ops, opsPerSec, latencyMs };
    linearizability.stress = { ...counts, violations: violations.length, ...(violations.length > 0 ? { firstViolation: violations[0] } : {}) };
  }
  return [opened, conformance, linearizability];
}

/**
 * Why a linearizability run did not pass, or undefined when it did. A history of
 * failed operations is trivially linearizable but proves nothing (against a server
 * that refuses every write, or stops answering, all of them fail), so a run in
 * which most operations failed with storage errors does not pass either.
 */
export function stressProblem(
  r: Pick<StressReport, 'ok' | 'ops' | 'errors' | 'unproven' | 'verdict' | 'violations' | 'undecidedKeys' | 'committed' | 'failed' | 'unknown'>,
): string | undefined {
  const storageErrors = r.failed + r.unknown;
  const mostFailed = storageErrors * 2 > r.ops;
  if (r.ok && !mostFailed) return undefined;
  if (r.errors.length > 0) return `${plural(r.errors.length, 'operation')} failed with a non-storage error (a backend bug), first: ${r.errors[0]}`;
  if (r.verdict === 'violation') {
    return `the history is NOT linearizable: ${plural(r.violations.length, 'violation')}, first: ${JSON.stringify(r.violations[0], bigintJson).slice(0, 500)}`;
  }
  if (r.verdict !== 'ok') {
    return `the history could not be checked (verdict ${r.verdict}; undecided keys: ${r.undecidedKeys.length}); try fewer --ops or more --keys`;
  }
  if (mostFailed) {
    return `${storageErrors} of ${r.ops} operations failed with a storage error (${r.failed} determinate, ${r.unknown} indeterminate; ${r.committed} committed): too few succeeded to verify anything`;
  }
  if (r.unproven.length > 0) return `the run proved too little: ${r.unproven.join('; ')}`;
  return 'the run did not pass';
}

async function checkBlob(scratch: ScratchLocation, progress: Progress, gate: Gate, reached: Set<LocationKind>, opener: Opener): Promise<CheckResult[]> {
  const open = (uri: string) => gate.blob(() => opener.blob(uri));
  const opened = await step('blob', 'open location', progress, async () => {
    await gate.run(() => makeParent(scratch));
    const b = await open(scratch.child('path0'));
    reached.add('blob');
    try {
      await b.get(PROBE_KEY).catch(unreached(reached, 'blob')); // as for Consensus: the server answers
    } finally {
      await b.close();
    }
  });
  if (opened.status === 'fail') return [opened, skipped('blob', 'blob conformance')];
  const { blobImplTest } = await import('../testing/index.js');
  const rec = new Recorder();
  const conformance = await step('blob', 'blob conformance', progress, async () => {
    rec.onRecord = (n) => progress.tick(n, undefined);
    await blobImplTest(async (path) => measuredBlob(await open(scratch.child(path)), rec), { capabilities: capabilitiesOf(scratch, 'blob') });
  }, rec);
  return [opened, conformance];
}

/**
 * What the backend says the suites' locations can do, stated for the first child each
 * suite opens (the consensus suite's children all have names of one length). A key cap may be lower under a longer prefix: the blob suite opens
 * every location whose keys come near it on a path as long as `path0`.
 */
function capabilitiesOf(scratch: ScratchLocation, kind: LocationKind): BackendCapabilities {
  // Every consensus child's name has one length (suite001, suite002, ...), so one cap holds for all.
  const loc = parseLocationUri(scratch.child(kind === 'blob' ? 'path0' : 'suite001'));
  return backendPart(loc, kind).part.capabilities(loc);
}

/** A key only read, never written, to see that a location answers. */
const PROBE_KEY = 'persist-location-check-probe';

/**
 * Rethrows the probe's error; a lazily connecting backend that cannot reach its server
 * has written nothing, so `target` is not counted as reached (no cleanup is tried).
 */
function unreached(reached: Set<LocationKind>, target: LocationKind): (err: unknown) => never {
  return (err) => {
    if (err instanceof ExternalError && err.determinate && err.code === ErrorCode.Unavailable) reached.delete(target);
    throw err;
  };
}

/** Creates the folder a local scratch location goes in (`.persist/` on first use). */
async function makeParent(scratch: ScratchLocation): Promise<void> {
  const parent = localParent(scratch);
  if (parent !== undefined) await mkdir(parent, { recursive: true });
}

/** Runs one check, timing it and turning a throw into a failed result. */
async function step(target: LocationKind, name: string, progress: Progress, work: () => Promise<void>, rec?: Recorder): Promise<CheckResult> {
  const label = name === 'open location' ? `${target}: open location` : name;
  progress.start(label);
  const began = performance.now();
  let error: string | undefined;
  try {
    await work();
  } catch (err) {
    error = describe(err);
  }
  const durationMs = performance.now() - began;
  const result: CheckResult = { name: label, target, status: error === undefined ? 'pass' : 'fail', durationMs };
  if (rec !== undefined) result.stats = rec.summary(durationMs / 1000);
  if (error !== undefined) result.error = error;
  progress.finish(`${label}: ${error === undefined ? 'pass' : 'FAIL'} (${formatDuration(durationMs)})`);
  return result;
}

function skipped(target: LocationKind, name: string): CheckResult {
  return { name, target, status: 'skip', durationMs: 0, error: 'skipped: the location could not be opened' };
}

/** An error's message, with its causes' messages (a conformance failure's message spans lines). */
function describe(err: unknown): string {
  const parts: string[] = [];
  let e: unknown = err;
  for (let depth = 0; e !== undefined && e !== null && depth < 4; depth++) {
    const text = e instanceof Error ? `${e.name === 'Error' || e.name === 'ConformanceError' || e instanceof ExternalError ? '' : `${e.name}: `}${e.message}${errorKind(e)}` : String(e);
    if (!parts.some((p) => p.includes(text))) parts.push(text);
    e = e instanceof Error ? e.cause : undefined;
  }
  return scrubSecrets(parts.join('\n  caused by: '));
}

function bigintJson(_key: string, value: unknown): unknown {
  return typeof value === 'bigint' ? value.toString() : value;
}

/** The report for people. */
export function formatReport(r: CheckReport): string[] {
  const lines: string[] = ['persist-location check', ''];
  for (const [target, loc] of Object.entries(r.locations)) {
    lines.push(`${target.padEnd(10)} ${loc.location}`);
    if (loc.resolved !== undefined) lines.push(`${''.padEnd(10)} resolved: ${loc.resolved}`);
    lines.push(`${''.padEnd(10)} scratch: ${loc.scratch}`);
  }
  lines.push('');
  const rows = r.checks.map((c) => {
    const s = c.stats;
    return [
      c.status === 'pass' ? 'PASS' : c.status === 'fail' ? 'FAIL' : 'SKIP',
      c.name,
      s === undefined ? '' : `${s.ops} ops`,
      c.status === 'skip' ? '' : formatDuration(c.durationMs),
      s === undefined ? '' : formatRate(s.opsPerSec),
      s === undefined ? '' : `p50 ${formatDuration(s.latencyMs.p50)}`,
      s === undefined ? '' : `p99 ${formatDuration(s.latencyMs.p99)}`,
    ];
  });
  const formatted = table(rows, ['l', 'l', 'r', 'r', 'r', 'r', 'r']);
  r.checks.forEach((c, i) => {
    lines.push(`  ${formatted[i]}`);
    if (c.stress !== undefined) {
      lines.push(`        ${c.stress.committed} committed, ${c.stress.mismatches} mismatched, ${c.stress.unknown} indeterminate, ${c.stress.failed} failed; verdict: ${c.stress.verdict}`);
    }
    if (c.status === 'fail' && c.error !== undefined) lines.push(...c.error.split('\n').map((l) => `        ${l}`));
  });
  if (r.faults !== undefined) {
    const f = r.faults;
    lines.push(
      '',
      `faults: ${f.determinate + f.lost + f.applied} of ${f.calls} calls failed by injection at rate ${f.rate} (${f.determinate} refused, ${f.lost} lost, ${f.applied} applied then lost);`,
      `        withRetry recovered every one the checks above did not report as failed or indeterminate`,
    );
  }
  lines.push('');
  for (const c of r.cleanup) {
    if (!c.removed) lines.push(`warning: ${c.note ?? `scratch ${c.scratch} was not removed`}`);
  }
  const passed = r.checks.filter((c) => c.status === 'pass').length;
  lines.push(
    r.ok
      ? `All ${plural(passed, 'check')} passed in ${formatDuration(r.durationMs)}.`
      : `${r.checks.length - passed} of ${plural(r.checks.length, 'check')} did not pass (${formatDuration(r.durationMs)}).`,
  );
  return lines;
}
