/**
 * `check --processes N` and `bench --processes N`: clients spread over N child
 * processes, since one Node process cannot load a server from more than one core.
 *
 * The machinery both share: {@link Child} spawns one child script of the CLI and
 * speaks JSON lines with it (the child's side is {@link childMain}); {@link split}
 * shares the clients out; {@link requireShared} refuses a location that other
 * processes cannot see.
 *
 * For check (stress-process.ts), each child runs its share of the linearizability
 * run's clients and operations on the same keys; their histories, and final reads
 * made here once every child has exited, are merged into one history and checked
 * as one. Bench's children are bench-process.ts (see bench.ts).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { SCAN_ALL, type Consensus } from '../consensus.js';
import { Determinate, ExternalError, Indeterminate, type ErrorCode } from '../errors.js';
import { backendPart } from '../location.js';
import type { LocationKind } from '../scratch.js';
import { SeqNo } from '../seqno.js';
import type { HistoryOp, StressReport } from '../testing/index.js';
import { parseLocationUri } from '../uri.js';
import { UsageError, scrubSecrets } from './output.js';

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
export function split(total: number, parts: number): number[] {
  return Array.from({ length: parts }, (_, i) => Math.floor(total / parts) + (i < total % parts ? 1 : 0));
}

/**
 * Refuses, before anything is opened, a location whose backend says it is not seen
 * by other processes (`mem:`): children would each get their own, empty one. A URI
 * that names no backend passes: opening it says what is wrong.
 */
export function requireShared(uri: string, kind: LocationKind, option: string): void {
  let found;
  try {
    const loc = parseLocationUri(uri);
    found = { loc, ...backendPart(loc, kind) };
  } catch {
    return;
  }
  const { loc, backend, part } = found;
  if (part.capabilities(loc).sharedAcrossProcesses !== true) {
    throw new UsageError(`${option} needs a location other processes see; ${backend.name} locations (${loc.scheme}:) live inside one process (use sqlite:, file: or a server)`);
  }
}

/** Children still running, killed if this process is interrupted (see {@link killChildren}). */
const running = new Set<ChildProcess>();

/** Ends every child of a run still going (an interrupt, before the scratch location is removed). */
export function killChildren(): void {
  for (const child of running) child.kill('SIGKILL');
}

/** The environment variable that carries a child's argument (see {@link Child}). */
const CHILD_ARG_ENV = 'PERSIST_LOCATION_CHILD_ARG';

/** How a child reports the error that ended it (see {@link childMain}). */
interface ChildError {
  message: string;
  determinate?: boolean;
  code?: ErrorCode;
}

/**
 * One child process of the CLI: `script` (a file beside this one) given `arg` as
 * JSON (in its environment). It prints JSON lines on stdout (bigints encoded, see
 * {@link encodeBig}), the last `{"result": ...}` or `{"error": ...}`, and reads the
 * parent's lines on stdin. Errors name it by `name` (`process 2 of 4 of bench`); an
 * ExternalError in the child is one here, of the same kind and code.
 */
export class Child<R> {
  /** The child's result, once it has exited 0 after printing it. */
  readonly result: Promise<R>;
  readonly #child: ChildProcess;
  readonly #waiting = new Map<string, { resolve: (value: unknown) => void; reject: (err: Error) => void }>();
  readonly #seen = new Map<string, unknown>();
  #killedFor: string | undefined;

  constructor(
    script: string,
    arg: unknown,
    readonly name: string,
    backends: readonly string[],
    onLine: (line: Record<string, unknown>) => void = () => {},
  ) {
    const env = {
      ...process.env,
      PERSIST_LOCATION_BACKENDS: [process.env.PERSIST_LOCATION_BACKENDS ?? '', ...backends].filter((b) => b !== '').join(','),
      // Not an argument: the location URI may hold a password, and any user can read a process's arguments.
      [CHILD_ARG_ENV]: JSON.stringify(arg, encodeBig),
    };
    const path = fileURLToPath(new URL(`./${script}`, import.meta.url));
    const child = (this.#child = spawn(process.execPath, [path], { env, stdio: ['pipe', 'pipe', 'pipe'] }));
    running.add(child);
    // A child that exits early closes its end; what the parent still says is moot.
    child.stdin!.on('error', () => {});
    let err = '';
    let error: ChildError | undefined;
    createInterface({ input: child.stdout! }).on('line', (text) => {
      let line: Record<string, unknown>;
      try {
        line = JSON.parse(text, decodeBig) as Record<string, unknown>;
      } catch {
        err += `${text}\n`;
        return;
      }
      if (line.error !== undefined) error = line.error as ChildError;
      for (const [key, value] of Object.entries(line)) {
        this.#seen.set(key, value);
        this.#waiting.get(key)?.resolve(value);
      }
      onLine(line);
    });
    child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (err += chunk));
    this.result = new Promise<R>((resolve, reject) => {
      child.on('error', (e) => reject(new Error(`${name} could not start: ${e.message}`)));
      child.on('close', (code, signal) => {
        running.delete(child);
        const failure = this.#failure(code, signal, error, err);
        for (const w of this.#waiting.values()) w.reject(failure);
        if (code === 0 && this.#seen.has('result')) resolve(this.#seen.get('result') as R);
        else reject(failure);
      });
    });
    // Rejections are read through `result` or `next`; none is left unhandled.
    this.result.catch(() => {});
  }

  /** The value of the first line with `key` the child prints; rejects if it ends first. */
  next(key: string): Promise<unknown> {
    if (this.#seen.has(key)) return Promise.resolve(this.#seen.get(key));
    const p = new Promise<unknown>((resolve, reject) => this.#waiting.set(key, { resolve, reject }));
    p.catch(() => {});
    return p;
  }

  /** Sends the child one line. */
  send(line: unknown): void {
    this.#child.stdin!.write(`${JSON.stringify(line)}\n`);
  }

  /** Ends the child; its result then rejects saying `reason` (`did not report within 30 s`). */
  kill(reason: string): void {
    if (this.#child.exitCode !== null || this.#child.signalCode !== null) return;
    this.#killedFor ??= reason;
    this.#child.kill('SIGKILL');
  }

  #failure(code: number | null, signal: NodeJS.Signals | null, error: ChildError | undefined, stderr: string): Error {
    if (this.#killedFor !== undefined) return new Error(`${this.name} ${this.#killedFor}, so it was killed`);
    if (error !== undefined) {
      const message = `${this.name}: ${error.message}`;
      if (error.code === undefined) return new Error(message);
      return error.determinate === false ? new Indeterminate(error.code, message) : new Determinate(error.code, message);
    }
    const tail = stderr.trim().split('\n').slice(-3).join(' | ');
    return new Error(`${this.name} ended (${signal ?? `exit ${code}`}) without its result${tail === '' ? '' : `: ${tail}`}`);
  }
}

/**
 * The body of a child script: runs `work` on the argument the parent gave,
 * with `tell` to print a line to the parent, then prints `{"result": ...}` and
 * exits 0; an error is printed as `{"error": ...}` (kind and code kept, credentials
 * scrubbed) and exits 1.
 */
export async function childMain<A, R>(work: (arg: A, tell: (line: Record<string, unknown>) => void) => Promise<R>): Promise<void> {
  const tell = (line: Record<string, unknown>) => process.stdout.write(`${JSON.stringify(line, encodeBig)}\n`);
  try {
    const arg = process.env[CHILD_ARG_ENV] ?? '';
    delete process.env[CHILD_ARG_ENV];
    const result = await work(JSON.parse(arg, decodeBig) as A, tell);
    tell({ result });
  } catch (err) {
    const message = scrubSecrets(err instanceof Error ? err.message : String(err));
    tell({ error: err instanceof ExternalError ? { message, determinate: err.determinate, code: err.code } : { message } });
    process.exitCode = 1;
  } finally {
    // What the parent may still say does not matter now, and must not keep this process alive.
    process.stdin.destroy();
  }
}

/** The child's side: calls `onLine` with each line the parent sends, and `onClose` once it closes its end. */
export function fromParent(onLine: (line: Record<string, unknown>) => void, onClose: () => void): void {
  createInterface({ input: process.stdin })
    .on('line', (text) => onLine(JSON.parse(text) as Record<string, unknown>))
    .on('close', onClose);
}

/** How long a child of the linearizability run may go without printing a line (its first included: opening). */
const STALL_MS = 120_000;

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
    // A child that says nothing for STALL_MS (no progress line, no result) is killed and named.
    let stall: NodeJS.Timeout | undefined;
    const watch = () => {
      clearTimeout(stall);
      stall = setTimeout(() => child.kill(`made no progress for ${STALL_MS / 1000} s`), STALL_MS);
    };
    const child = new Child<ShareResult>('stress-process.js', share, `process ${i + 1} of ${processes} of the linearizability run`, opts.backends, (line) => {
      watch();
      if (typeof line.done !== 'number') return;
      done[i] = line.done;
      opts.onProgress?.(done.reduce((a, b) => a + b, 0), total);
    });
    watch();
    return child.result.finally(() => clearTimeout(stall));
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
  // Loaded here, as check loads the testing code: the other commands never depend on it.
  const { stressReport } = await import('../testing/stress.js');
  const counts = { committed, mismatches: sum((r) => r.mismatches), failed: sum((r) => r.failed), unknown: sum((r) => r.unknown), errors: results.flatMap((r) => r.errors), unproven };
  return stressReport(history, counts, durationMs);
}

function latin1(data: Uint8Array): string {
  return Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString('latin1');
}
