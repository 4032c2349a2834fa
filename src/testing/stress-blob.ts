/**
 * A concurrent stress run for Blob, and the checker of the histories it records.
 *
 * Every value written says who wrote it: the key it was written to, the writer and a
 * counter, a payload of varying length and a checksum over all of it, so a torn,
 * mixed or foreign value is recognised on sight and a size almost always tells which
 * write it came from.
 *
 * The check asks of each read whether what it saw could have been current at some
 * instant between its call and its return, the way a per-key linearizable store
 * behaves. A write W could be current during a read R unless W began after R returned,
 * or some other write that surely happened (it succeeded) began after W returned and
 * itself returned before R began: then W was overwritten before R started. A write
 * that failed Determinate never happened; one that failed Indeterminate may take
 * effect at any time after its call, so it is never known to have returned and never
 * known to overwrite anything. Each of these rules only ever keeps a value possible,
 * so a correct store is never flagged; a store that serves a torn value, a value
 * overwritten before the read began, a wrong size or a key that cannot exist is.
 *
 * - get: the value read (or its absence) is one that could be current.
 * - delete: the size returned (undefined when absent) is that of a value that could be
 *   current just before it.
 * - list: every key listed could hold a value of the listed size during the listing,
 *   and a key left out could be absent during it (a key that held a value throughout
 *   must be listed). Keys are checked one at a time: a listing need not be a snapshot.
 */
import { createHash, randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import type { Blob, BlobMetadata } from '../blob.js';
import { ExternalError } from '../errors.js';
import type { Outcome } from './linearizability.js';
import { seededRandom } from './random.js';

interface BlobOpBase {
  /** Which client issued it (for reports only). */
  client?: number;
  /** When it was called; any monotonic clock, the same for the whole history. */
  start: number;
  /** When it returned (ignored for unknown outcomes). */
  end: number;
}

/** One recorded Blob operation. */
export type BlobHistoryOp =
  /** `value` names the written value uniquely among the sets of its key; `size` is its length. */
  | (BlobOpBase & { op: 'set'; key: string; value: string; size: number; result: Outcome<undefined> })
  /** The name of the value read (as its set recorded it), any other string for a value no set wrote, or undefined. */
  | (BlobOpBase & { op: 'get'; key: string; result: Outcome<string | undefined> })
  | (BlobOpBase & { op: 'delete'; key: string; result: Outcome<number | undefined> })
  | (BlobOpBase & { op: 'list'; prefix: string; result: Outcome<BlobMetadata[]> });

/** An operation whose result no order of the writes explains. */
export interface BlobViolation {
  op: BlobHistoryOp;
  key: string;
  problem: string;
  /** What the operation could have seen: value names (`(absent)` for none) or sizes. */
  possible: string[];
}

export interface BlobStressOptions {
  /** Operations in all, across clients (default 2000). */
  ops?: number;
  /** Distinct keys (default 4). Fewer keys, more contention. */
  keys?: number;
  /** Concurrent clients (default 16). */
  clients?: number;
  /** Handles opened with `open()` and shared round-robin by the clients (default min(clients, 4)). */
  handles?: number;
  /** Largest payload added to a written value, in bytes (default 256); each write picks a length up to it. */
  valueBytes?: number;
  /** Prefix of the keys used (default a random `stress-blob-<uuid>-`), so runs never collide. */
  keyPrefix?: string;
  /** Seeds the choice of operations, keys and value sizes (default random; the report gives it). */
  seed?: number;
  /** Called after each operation. */
  onProgress?: (done: number, total: number) => void;
}

export interface BlobStressReport {
  /**
   * True iff every operation's result was explained, no client hit a non-storage error,
   * every final read succeeded and at least one set succeeded.
   */
  ok: boolean;
  /** Operations issued by clients, plus the final reads. */
  ops: number;
  violations: BlobViolation[];
  /** Operations that succeeded, by kind. */
  sets: number;
  gets: number;
  deletes: number;
  lists: number;
  /** Operations that failed Determinate (they did not happen). */
  failed: number;
  /** Operations that failed Indeterminate (they might have happened). */
  unknown: number;
  /** Errors that were not ExternalErrors: bugs in the backend. */
  errors: string[];
  /** Why the run proves less than it should (a final read failed, nothing was written); any entry makes `ok` false. */
  unproven: string[];
  /** The seed the run used. */
  seed: number;
  durationMs: number;
  opsPerSec: number;
  latencyMs: { p50: number; p90: number; p99: number; max: number };
  history: BlobHistoryOp[];
}

const ABSENT = '(absent)';

/**
 * Drives concurrent clients doing get / set / delete / list over a few keys through
 * several handles on one location (each `open()` must return a new handle on the same
 * location), reads every key at the end, and checks the history with
 * {@link checkBlobHistory}.
 */
export async function stressBlob(open: () => Promise<Blob>, opts: BlobStressOptions = {}): Promise<BlobStressReport> {
  const total = opts.ops ?? 2000;
  const nKeys = opts.keys ?? 4;
  const nClients = opts.clients ?? 16;
  const maxPayload = opts.valueBytes ?? 256;
  // Zero keys or clients would record nothing and still report ok.
  for (const [name, value, least] of [['ops', total, 0], ['keys', nKeys, 1], ['clients', nClients, 1], ['handles', opts.handles ?? 1, 1], ['valueBytes', maxPayload, 0]] as const) {
    if (!Number.isSafeInteger(value) || value < least) {
      throw new RangeError(`stressBlob: ${name} must be an integer >= ${least}, got ${String(value)}`);
    }
  }
  const seed = opts.seed ?? Math.floor(Math.random() * 2 ** 32);
  if (!Number.isSafeInteger(seed)) throw new RangeError(`stressBlob: seed must be an integer, got ${String(seed)}`);
  const random = seededRandom(seed);
  const nHandles = Math.max(1, Math.min(opts.handles ?? Math.min(nClients, 4), nClients));
  const prefix = opts.keyPrefix ?? `stress-blob-${randomUUID()}-`;
  const keys = Array.from({ length: nKeys }, (_, i) => `${prefix}${i}`);
  const codec = new ValueCodec(randomUUID().slice(0, 8));
  const handles: Blob[] = [];
  const history: BlobHistoryOp[] = [];
  const latencies: number[] = [];
  const errors: string[] = [];
  const unproven: string[] = [];
  const counts = { sets: 0, gets: 0, deletes: 0, lists: 0, failed: 0, unknown: 0 };
  let issued = 0;
  let finished = 0;

  const outcomeOf = <T>(err: unknown): Outcome<T> => {
    if (err instanceof ExternalError) {
      if (err.determinate) counts.failed++;
      else counts.unknown++;
      return err.determinate ? { type: 'failed' } : { type: 'unknown' };
    }
    errors.push(err instanceof Error ? `${err.name}: ${err.message}` : String(err));
    return { type: 'unknown' };
  };

  const record = (op: BlobHistoryOp) => {
    latencies.push(op.end - op.start);
    history.push(op);
    opts.onProgress?.(++finished, total + keys.length + 1);
    return op;
  };

  const counters = new Map<number, number>();
  /** One operation; `kind` in [0, 100) picks it: 35% get, 35% set, 15% delete, 15% list. */
  const run = async (client: number, b: Blob, keyIndex: number, kind: number): Promise<BlobHistoryOp> => {
    const key = keys[keyIndex]!;
    const start = performance.now();
    if (kind < 35) {
      let result: Outcome<string | undefined>;
      let end: number;
      try {
        const got = await b.get(key);
        // Before decoding: a large value's checksum is not part of the get.
        end = performance.now();
        result = { type: 'ok', value: got === undefined ? undefined : codec.name(got.toContiguous(), got.length) };
        counts.gets++;
      } catch (err) {
        end = performance.now();
        result = outcomeOf(err);
      }
      return record({ op: 'get', key, client, start, end, result });
    }
    if (kind < 70) {
      const n = (counters.get(client) ?? 0) + 1;
      counters.set(client, n);
      const { value, bytes } = codec.encode(keyIndex, client, n, Math.floor(random() * (maxPayload + 1)));
      const writeStart = performance.now();
      let result: Outcome<undefined>;
      try {
        await b.set(key, bytes);
        result = { type: 'ok', value: undefined };
        counts.sets++;
      } catch (err) {
        result = outcomeOf(err);
      }
      return record({ op: 'set', key, client, start: writeStart, end: performance.now(), value, size: bytes.byteLength, result });
    }
    if (kind < 85) {
      let result: Outcome<number | undefined>;
      try {
        result = { type: 'ok', value: await b.delete(key) };
        counts.deletes++;
      } catch (err) {
        result = outcomeOf(err);
      }
      return record({ op: 'delete', key, client, start, end: performance.now(), result });
    }
    let result: Outcome<BlobMetadata[]>;
    try {
      const all: BlobMetadata[] = [];
      for await (const m of b.list(prefix)) all.push({ key: m.key, sizeInBytes: m.sizeInBytes });
      result = { type: 'ok', value: all };
      counts.lists++;
    } catch (err) {
      result = outcomeOf(err);
    }
    return record({ op: 'list', prefix, client, start, end: performance.now(), result });
  };

  const began = performance.now();
  try {
    for (let i = 0; i < nHandles; i++) handles.push(await open());
    await Promise.all(
      Array.from({ length: nClients }, async (_, client) => {
        const b = handles[client % nHandles]!;
        while (issued < total) {
          issued++;
          await run(client, b, Math.floor(random() * keys.length), Math.floor(random() * 100));
        }
      }),
    );
    // Final reads: a set that was acknowledged and then lost shows up here.
    const reader = handles[0]!;
    for (const [i, key] of keys.entries()) {
      const op = await run(-1, reader, i, 0);
      if (op.result.type !== 'ok') unproven.push(`the final get of ${key} failed, so a lost set of it would go unseen`);
    }
    if ((await run(-1, reader, 0, 99)).result.type !== 'ok') unproven.push('the final list failed');
    if (total > 0 && counts.sets === 0) unproven.push('no set succeeded, so the run proved nothing');
  } finally {
    await Promise.all(handles.map((h) => h.close()));
  }
  const durationMs = performance.now() - began;
  const { violations } = checkBlobHistory(history);
  latencies.sort((a, b) => a - b);
  const pct = (p: number) => latencies[Math.min(latencies.length - 1, Math.floor((p / 100) * latencies.length))] ?? 0;
  return {
    ok: violations.length === 0 && errors.length === 0 && unproven.length === 0,
    ops: history.length,
    violations,
    ...counts,
    errors,
    unproven,
    seed,
    durationMs,
    opsPerSec: (history.length / durationMs) * 1000,
    latencyMs: { p50: pct(50), p90: pct(90), p99: pct(99), max: latencies[latencies.length - 1] ?? 0 },
    history,
  };
}

/**
 * Values that name themselves: `sb1 <run> k<key> c<client> n<counter> <payload length>\n`,
 * then the payload, then `\n` and 16 hex digits of SHA-256 over everything before.
 */
class ValueCodec {
  readonly #run: string;

  constructor(run: string) {
    this.#run = run;
  }

  encode(keyIndex: number, client: number, n: number, payloadBytes: number): { value: string; bytes: Uint8Array } {
    const header = Buffer.from(`sb1 ${this.#run} k${keyIndex} c${client} n${n} ${payloadBytes}\n`, 'latin1');
    // Each write's payload is its own pattern, so halves of two writes never form a third.
    const pattern = createHash('sha256').update(header).digest();
    const payload = Buffer.alloc(payloadBytes);
    for (let i = 0; i < payloadBytes; i += pattern.length) pattern.copy(payload, i);
    const body = Buffer.concat([header, payload]);
    const sum = createHash('sha256').update(body).digest('hex').slice(0, 16);
    return { value: valueName(keyIndex, client, n), bytes: Buffer.concat([body, Buffer.from(`\n${sum}`, 'latin1')]) };
  }

  /** The name of the write that produced `bytes`, or a description of what is wrong with them. */
  name(bytes: Uint8Array, length: number): string {
    const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const describe = (why: string) => `unreadable value of ${buf.byteLength} bytes (${why}): ${JSON.stringify(buf.subarray(0, 60).toString('latin1'))}`;
    if (buf.byteLength !== length) return describe(`its SegmentedBytes length says ${length}`);
    const eol = buf.indexOf(0x0a);
    if (eol < 0) return describe('no header');
    const fields = /^sb1 (\S+) k(\d+) c(-?\d+) n(\d+) (\d+)$/.exec(buf.subarray(0, eol).toString('latin1'));
    if (fields === null) return describe('not a value this harness writes');
    const [, run, key, client, n, payload] = fields;
    if (run !== this.#run) return describe(`written by another run, ${run}`);
    const bodyEnd = eol + 1 + Number(payload);
    if (buf.byteLength !== bodyEnd + 17) return describe(`cut or padded: its header says ${bodyEnd + 17} bytes`);
    const sum = createHash('sha256').update(buf.subarray(0, bodyEnd)).digest('hex').slice(0, 16);
    if (buf.subarray(bodyEnd).toString('latin1') !== `\n${sum}`) return describe('checksum mismatch: torn or mixed');
    return valueName(Number(key), Number(client), Number(n));
  }
}

const valueName = (keyIndex: number, client: number, n: number) => `k${keyIndex}/c${client}/n${n}`;

/** A write that may have happened: its value (ABSENT for a delete), and when it may have taken effect. */
interface Write {
  name: string;
  size: number | undefined;
  start: number;
  /** Infinity when it might still take effect after it returned (an Indeterminate outcome). */
  end: number;
  /** When a write that surely happened after it returned first returned: it was overwritten by then. */
  overwrittenBy: number;
  op: BlobHistoryOp | undefined;
}

/**
 * Checks a Blob history as described at the top of this module. Histories recorded
 * elsewhere work too: a set's `value` must name its value uniquely among the sets of its
 * key, and a get must record that name for what it read.
 */
export function checkBlobHistory(history: readonly BlobHistoryOp[]): { ok: boolean; violations: BlobViolation[] } {
  const writes = new Map<string, Write[]>();
  const writesOf = (key: string) => {
    let list = writes.get(key);
    if (list === undefined) {
      list = [{ name: ABSENT, size: undefined, start: -Infinity, end: -Infinity, overwrittenBy: Infinity, op: undefined }];
      writes.set(key, list);
    }
    return list;
  };
  for (const op of history) {
    if (op.op === 'list' || op.op === 'get' || op.result.type === 'failed') continue;
    const end = op.result.type === 'ok' ? op.end : Infinity;
    const [name, size] = op.op === 'set' ? [op.value, op.size] : [ABSENT, undefined];
    writesOf(op.key).push({ name, size, start: op.start, end, overwrittenBy: Infinity, op });
  }
  for (const list of writes.values()) markOverwrites(list);
  const setKeys = new Set(history.flatMap((op) => (op.op === 'set' ? [op.key] : [])));

  const violations: BlobViolation[] = [];
  const possibleFor = (key: string, reader: BlobHistoryOp) =>
    writesOf(key).filter((w) => w.op !== reader && w.start <= reader.end && !(w.overwrittenBy < reader.start));
  const flag = (op: BlobHistoryOp, key: string, problem: string, possible: string[]) => violations.push({ op, key, problem, possible });

  for (const op of history) {
    if (op.result.type !== 'ok') continue;
    if (op.op === 'get') {
      const got = op.result.value ?? ABSENT;
      const possible = possibleFor(op.key, op);
      if (possible.some((w) => w.name === got)) continue;
      const writer = writesOf(op.key).find((w) => w.name === got && w.op !== undefined);
      const problem =
        got === ABSENT
          ? 'get returned nothing, though the key held a value throughout'
          : writer === undefined
            ? `get returned a value no set of this key wrote: ${got}`
            : writer.start > op.end
              ? `get returned ${got}, whose set began after the get returned`
              : `get returned ${got}, which was overwritten before the get began (stale)`;
      flag(op, op.key, problem, possible.map((w) => w.name));
    } else if (op.op === 'delete') {
      const size = op.result.value;
      const possible = possibleFor(op.key, op);
      if (possible.some((w) => w.size === size)) continue;
      flag(op, op.key, `delete returned ${String(size)}, the size of no value that could have been current`, possible.map(sizeOf));
    } else if (op.op === 'list') {
      const seen = new Set<string>();
      for (const m of op.result.value) {
        if (seen.has(m.key)) flag(op, m.key, 'list yielded the key twice', []);
        seen.add(m.key);
        if (!m.key.startsWith(op.prefix)) {
          flag(op, m.key, `list(${JSON.stringify(op.prefix)}) yielded a key outside its prefix`, []);
          continue;
        }
        const possible = setKeys.has(m.key) ? possibleFor(m.key, op) : [];
        if (!possible.some((w) => w.name !== ABSENT && w.size === m.sizeInBytes)) {
          const problem = setKeys.has(m.key)
            ? `list yielded the key with size ${m.sizeInBytes}, which no value that could have been current has`
            : 'list yielded a key no set wrote';
          flag(op, m.key, problem, possible.map(sizeOf));
        }
      }
      for (const key of setKeys) {
        if (!key.startsWith(op.prefix) || seen.has(key)) continue;
        const possible = possibleFor(key, op);
        if (!possible.some((w) => w.name === ABSENT)) flag(op, key, 'list left out the key, though it held a value throughout', possible.map(sizeOf));
      }
    }
  }
  return { ok: violations.length === 0, violations };
}

const sizeOf = (w: Write) => (w.name === ABSENT ? ABSENT : `${w.size} bytes (${w.name})`);

/**
 * Sets `overwrittenBy` of every write: the earliest return of a write that surely
 * happened and began after it returned (for the initial absence, of any write that
 * surely happened).
 */
function markOverwrites(list: Write[]): void {
  const sure = list.filter((w) => w.op !== undefined && w.end !== Infinity).sort((a, b) => a.start - b.start);
  // earliestEnd[i]: the earliest end among sure[i..].
  const earliestEnd = new Array<number>(sure.length + 1).fill(Infinity);
  for (let i = sure.length - 1; i >= 0; i--) earliestEnd[i] = Math.min(sure[i]!.end, earliestEnd[i + 1]!);
  for (const w of list) {
    // The first sure write beginning strictly after w returned.
    let lo = 0;
    let hi = sure.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (sure[mid]!.start > w.end) hi = mid;
      else lo = mid + 1;
    }
    w.overwrittenBy = earliestEnd[lo]!;
  }
}

