// Blob histories under concurrency and faults, checked for atomicity: shared by the
// object-store tests (S3Blob, AzureBlob).
import assert from 'node:assert/strict';
import { ExternalError, type Blob, type SegmentedBytes } from 'persist-location';

/** Deterministic bytes: `bytes` long, different for every seed. */
export function pattern(bytes: number, seed: number): Buffer {
  const out = Buffer.alloc(bytes);
  for (let i = 0; i + 4 <= bytes; i += 4) out.writeUInt32LE((i * 2654435761 + seed) >>> 0, i);
  return out;
}

/**
 * Blob history under concurrency and faults. Writers overwrite a few keys with
 * distinct values (each value carries its id in its first 4 bytes, and its size
 * encodes the id too) and scribble over each value's array right after calling
 * set; readers and listers run meanwhile. Afterwards every
 * observation is checked against what was written: a get returns undefined or
 * exactly one written value, whole; a value whose set failed Determinate is never
 * seen; a read never returns undefined after a set was acknowledged, nor a
 * value whose set was acknowledged and then superseded by another acknowledged
 * set before the read began; a listed size is the size of a value that
 * may have been written.
 */
export interface SetRecord {
  key: string;
  size: number;
  start: number;
  end: number;
  outcome: 'ok' | 'determinate' | 'indeterminate' | 'pending';
  error?: ExternalError;
}
export interface Observation {
  key: string;
  /** Value id read; 0 for undefined; -1 for a listed size. */
  id: number;
  size: number;
  start: number;
  end: number;
}
export interface History {
  sets: Map<number, SetRecord>;
  observations: Observation[];
  failures: string[];
  errors: { set: ExternalError[]; get: ExternalError[]; list: ExternalError[] };
  keys: string[];
}

export function historyValue(id: number, size: number): Buffer {
  const out = pattern(size, id);
  out.writeUInt32LE(id, 0);
  return out;
}

export async function runHistory(
  blob: Blob,
  history: History | undefined,
  options: { keys: number; writers: number; readers: number; setsPerWriter: number; sizes: number[] },
): Promise<History> {
  const h: History = history ?? { sets: new Map(), observations: [], failures: [], errors: { set: [], get: [], list: [] }, keys: [] };
  h.keys = Array.from({ length: options.keys }, (_, i) => `key/${i}`);
  let clock = Math.max(0, ...[...h.sets.values()].map((s) => s.end), ...h.observations.map((o) => o.end));
  const tick = (): number => ++clock;
  const failed = (kind: 'set' | 'get' | 'list', err: unknown): void => {
    if (err instanceof ExternalError) h.errors[kind].push(err);
    else h.failures.push(`${kind} threw a non-ExternalError: ${String(err)}`);
  };
  const observe = (key: string, got: SegmentedBytes | undefined, start: number): void => {
    const end = tick();
    if (got === undefined) return void h.observations.push({ key, id: 0, size: 0, start, end });
    const bytes = Buffer.from(got.toContiguous());
    const id = bytes.length >= 4 ? bytes.readUInt32LE(0) : -1;
    const set = h.sets.get(id);
    if (set === undefined || set.key !== key || !historyValue(id, set.size).equals(bytes)) {
      h.failures.push(`get ${key} returned ${bytes.length} bytes that are no whole value written to it (id ${id}, written size ${set?.size})`);
      return;
    }
    h.observations.push({ key, id, size: bytes.length, start, end });
  };
  let nextId = Math.max(0, ...h.sets.keys()) + 1;
  let writing = true;
  const writer = async (w: number): Promise<void> => {
    for (let n = 0; n < options.setsPerWriter; n++) {
      const id = nextId++;
      // The size tells the id: a listed size names the value it belongs to.
      const record: SetRecord = { key: h.keys[(w + n) % h.keys.length]!, size: options.sizes[(w + n) % options.sizes.length]! + 4 * id, start: tick(), end: Infinity, outcome: 'pending' };
      h.sets.set(id, record);
      try {
        const value = historyValue(id, record.size);
        const setting = blob.set(record.key, value);
        // A caller may reuse its array as soon as set has returned: none of this
        // may reach the store, not even through a retried request.
        value.fill(0xa5);
        await setting;
        record.outcome = 'ok';
      } catch (err) {
        failed('set', err);
        record.outcome = err instanceof ExternalError && err.determinate ? 'determinate' : 'indeterminate';
        if (err instanceof ExternalError) record.error = err;
      }
      record.end = tick();
    }
  };
  const reader = async (r: number): Promise<void> => {
    for (let n = 0; writing; n++) {
      const key = h.keys[(r + n) % h.keys.length]!;
      const start = tick();
      try {
        observe(key, await blob.get(key), start);
      } catch (err) {
        failed('get', err);
      }
    }
  };
  const lister = async (): Promise<void> => {
    while (writing) {
      const start = tick();
      try {
        for await (const { key, sizeInBytes } of blob.list('key/')) h.observations.push({ key, id: -1, size: sizeInBytes, start, end: tick() });
      } catch (err) {
        failed('list', err);
      }
    }
  };
  const readers = [...Array.from({ length: options.readers }, (_, r) => reader(r)), lister()];
  await Promise.all(Array.from({ length: options.writers }, (_, w) => writer(w)));
  writing = false;
  await Promise.all(readers);
  return h;
}

/** Everything the history shows that no atomic blob could have produced. */
export function historyViolations(h: History): string[] {
  const violations = [...h.failures];
  for (const o of h.observations) {
    const writes = [...h.sets.entries()].filter(([, s]) => s.key === o.key);
    const what = o.id === -1 ? `list saw ${o.key} with ${o.size} bytes` : o.id === 0 ? `get ${o.key} returned undefined` : `get ${o.key} returned value ${o.id}`;
    const acked = writes.filter(([, s]) => s.outcome === 'ok' && s.end < o.start);
    if (o.id === 0) {
      if (acked.length > 0) violations.push(`${what} after set ${acked[0]![0]} was acknowledged`);
      continue;
    }
    const candidates = writes.filter(([id, s]) => (o.id === -1 ? s.size === o.size : id === o.id) && s.start < o.end);
    const possible = candidates.filter(([, s]) => s.outcome !== 'determinate');
    if (possible.length === 0) {
      violations.push(`${what}: ${candidates.length > 0 ? `its set failed Determinate (${candidates[0]![1].error?.message})` : 'no such value was being written'}`);
      continue;
    }
    // Staleness only for an acknowledged get of a value whose set was acknowledged:
    // an Indeterminate set may still take effect after its caller gave up.
    const [id, set] = possible[0]!;
    if (o.id === -1 || set.outcome !== 'ok') continue;
    const newer = acked.find(([other, s]) => other !== id && set.end < s.start);
    if (newer !== undefined) violations.push(`${what}, stale: set ${newer[0]} had been acknowledged before`);
  }
  return violations;
}

/** Reads every key once more after the history, and checks those reads with the rest. */
export async function checkFinalValues(blob: Blob, h: History): Promise<void> {
  const last = Math.max(...[...h.sets.values()].map((s) => s.end), ...h.observations.map((o) => o.end));
  for (const key of h.keys) {
    const got = await blob.get(key);
    const bytes = got === undefined ? undefined : Buffer.from(got.toContiguous());
    const id = bytes === undefined ? 0 : bytes.readUInt32LE(0);
    const set = h.sets.get(id);
    assert.ok(bytes === undefined || (set?.key === key && historyValue(id, set.size).equals(bytes)), `${key} holds a whole value written to it`);
    h.observations.push({ key, id, size: bytes?.length ?? 0, start: last + 1, end: last + 2 });
  }
  assert.deepEqual(historyViolations(h), []);
}
