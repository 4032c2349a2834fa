/**
 * `check --processes N`: the linearizability run's clients spread over N child
 * processes (stress-process.ts), since one Node process cannot load a server from
 * more than one core. Each child runs its share of the clients and operations on
 * the same keys; their histories, and final reads made here once every child has
 * exited, are merged into one history and checked as one.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { SCAN_ALL, type Consensus } from '../consensus.js';
import { SeqNo } from '../seqno.js';
import type { HistoryOp, StressReport } from '../testing/index.js';
import { summarize } from './measure.js';

/** What one child runs. */
export interface StressShare {
  uri: string;
  ops: number;
  clients: number;
  keys: number;
  keyPrefix: string;
  /** The number of its first client, so that the merged history tells processes apart. */
  clientBase: number;
}

/** What one child reports. */
interface ShareResult extends Pick<StressReport, 'committed' | 'mismatches' | 'failed' | 'unknown' | 'errors'> {
  history: HistoryOp[];
}

/** Milliseconds to add to `performance.now()` of this process to read the machine's monotonic clock. */
export function monotonicOffset(): number {
  return Number(process.hrtime.bigint()) / 1e6 - performance.now();
}

/** JSON replacer and reviver for the bigints of a history. */
export function encodeBig(_key: string, value: unknown): unknown {
  return typeof value === 'bigint' ? { $big: value.toString() } : value;
}
function decodeBig(_key: string, value: unknown): unknown {
  const big = (value as { $big?: unknown } | null)?.$big;
  return typeof value === 'object' && typeof big === 'string' ? BigInt(big) : value;
}

/** `total` split into `parts` shares that differ by at most one. */
function split(total: number, parts: number): number[] {
  return Array.from({ length: parts }, (_, i) => Math.floor(total / parts) + (i < total % parts ? 1 : 0));
}

/** Children still running, killed if this process is interrupted (see {@link killChildren}). */
const running = new Set<ChildProcess>();

/** Ends every child of a run still going (an interrupt, before the scratch location is removed). */
export function killChildren(): void {
  for (const child of running) child.kill('SIGKILL');
}

/**
 * The linearizability run with `opts.clients` clients spread over `processes` child
 * processes (each at least one client), checked as one history. `open` gives the
 * handle of this process that makes the final reads; `backends` are the modules the
 * children import first (--backend).
 */
export async function stressInProcesses(
  uri: string,
  open: () => Promise<Consensus>,
  opts: { ops: number; clients: number; keys: number; processes: number; backends: readonly string[]; onProgress?: (done: number, total: number) => void },
): Promise<StressReport> {
  const processes = Math.min(opts.processes, opts.clients);
  const keyPrefix = `stress-${randomUUID()}-`;
  const keys = Array.from({ length: opts.keys }, (_, i) => `${keyPrefix}${i}`);
  const clients = split(opts.clients, processes);
  const ops = split(opts.ops, processes);
  // Each child counts its own final reads too.
  const total = opts.ops + processes * keys.length * 2;
  const done = new Array<number>(processes).fill(0);
  const began = performance.now();
  let base = 0;
  const shares = clients.map((n, i) => {
    const share: StressShare = { uri, ops: ops[i]!, clients: n, keys: opts.keys, keyPrefix, clientBase: base };
    base += n + 1;
    return runShare(share, i, opts.backends, (n) => {
      done[i] = n;
      opts.onProgress?.(done.reduce((a, b) => a + b, 0), total);
    });
  });
  // Every child is waited for, even when one fails, so that none is left running.
  const settled = await Promise.allSettled(shares);
  const failure = settled.find((s) => s.status === 'rejected');
  if (failure !== undefined) throw failure.reason;
  const results = settled.map((s) => (s as PromiseFulfilledResult<ShareResult>).value);

  const history = results.flatMap((r) => r.history);
  const unproven: string[] = [];
  // Final reads, after every child exited: an acknowledged write that was lost shows up here.
  const reader = await open();
  const clock = monotonicOffset();
  try {
    for (const key of keys) {
      const start = performance.now() + clock;
      const ops: HistoryOp[] = [];
      try {
        const h = await reader.head(key);
        ops.push({ op: 'head', key, client: -1, start, end: performance.now() + clock, result: { type: 'ok', value: h && { seqno: h.seqno.value, data: latin1(h.data) } } });
        const scanStart = performance.now() + clock;
        const all = await reader.scan(key, new SeqNo(0), SCAN_ALL);
        const value = all.map((v) => ({ seqno: v.seqno.value, data: latin1(v.data) }));
        ops.push({ op: 'scan', key, client: -1, start: scanStart, end: performance.now() + clock, from: 0n, limit: SCAN_ALL, result: { type: 'ok', value } });
      } catch {
        unproven.push(`the final read of ${key} failed, so lost writes on it would go unseen`);
      }
      history.push(...ops);
    }
  } finally {
    await reader.close();
  }
  const durationMs = performance.now() - began;
  const sum = (f: (r: ShareResult) => number) => results.reduce((a, r) => a + f(r), 0);
  const committed = sum((r) => r.committed);
  if (committed === 0) unproven.push('no compareAndSet committed, so the run proved nothing');
  const errors = results.flatMap((r) => r.errors);
  // Loaded here, as check loads the testing code: the other commands never depend on it.
  const { checkLinearizable } = await import('../testing/index.js');
  const check = checkLinearizable(history);
  const { latencyMs } = summarize(
    history.map((op) => op.end - op.start),
    durationMs / 1000,
  );
  return {
    ok: check.ok && errors.length === 0 && unproven.length === 0,
    verdict: check.verdict,
    ops: history.length,
    violations: check.violations,
    undecidedKeys: check.undecidedKeys,
    committed,
    mismatches: sum((r) => r.mismatches),
    failed: sum((r) => r.failed),
    unknown: sum((r) => r.unknown),
    errors,
    unproven,
    durationMs,
    opsPerSec: (history.length / durationMs) * 1000,
    latencyMs,
    history,
  };
}

function latin1(data: Uint8Array): string {
  return Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString('latin1');
}

const CHILD = fileURLToPath(new URL('./stress-process.js', import.meta.url));

/** Runs one child to its end and parses what it printed. */
function runShare(share: StressShare, index: number, backends: readonly string[], onDone: (n: number) => void): Promise<ShareResult> {
  const env = { ...process.env, PERSIST_LOCATION_BACKENDS: [process.env.PERSIST_LOCATION_BACKENDS ?? '', ...backends].filter((b) => b !== '').join(',') };
  const child = spawn(process.execPath, [CHILD, JSON.stringify(share)], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  running.add(child);
  let out = '';
  let err = '';
  let result: ShareResult | undefined;
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
    out += chunk;
    let nl: number;
    while ((nl = out.indexOf('\n')) >= 0) {
      const line = JSON.parse(out.slice(0, nl), decodeBig) as { done?: number; share?: ShareResult };
      out = out.slice(nl + 1);
      if (line.done !== undefined) onDone(line.done);
      if (line.share !== undefined) result = line.share;
    }
  });
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (err += chunk));
  return new Promise((resolve, reject) => {
    child.on('error', (e) => reject(new Error(`process ${index + 1} of the linearizability run could not start: ${e.message}`)));
    child.on('close', (code, signal) => {
      running.delete(child);
      if (code === 0 && result !== undefined) resolve(result);
      else reject(new Error(`process ${index + 1} of the linearizability run ended (${signal ?? `exit ${code}`}) without its history${err.trim() === '' ? '' : `: ${err.trim().split('\n').slice(-3).join(' | ')}`}`));
    });
  });
}
