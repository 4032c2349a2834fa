// Cross-checks checkLinearizable against a naive exhaustive search on many random
// tiny histories: the two must agree on every one. The naive search is written
// straight from SPEC, independently of the checker's model and pruning.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { checkLinearizable, type HistoryOp, type HistoryVersion } from 'persist-location/testing';

type Versions = HistoryVersion[];

/** Applies `op` as if it took effect (for an unknown write: as if it succeeded); undefined if impossible. */
function apply(vs: Versions, op: HistoryOp): Versions | undefined {
  const head = vs[vs.length - 1];
  const r = op.result;
  switch (op.op) {
    case 'head': {
      if (r.type !== 'ok') return undefined;
      const v = r.value as HistoryVersion | undefined;
      if (v === undefined) return head === undefined ? vs : undefined;
      return head !== undefined && head.seqno === v.seqno && head.data === v.data ? vs : undefined;
    }
    case 'scan': {
      if (r.type !== 'ok') return undefined;
      const want = vs.filter((v) => v.seqno >= op.from).slice(0, op.limit);
      const got = r.value as HistoryVersion[];
      return JSON.stringify(want.map((v) => [String(v.seqno), v.data])) === JSON.stringify(got.map((v) => [String(v.seqno), v.data])) ? vs : undefined;
    }
    case 'compareAndSet': {
      // SPEC: arguments are checked first; such a call can neither commit nor mismatch.
      if (op.expected !== undefined && op.seqno <= op.expected) return undefined;
      const matches = head === undefined ? op.expected === undefined : op.expected === head.seqno;
      const outcome = r.type === 'ok' ? r.value : 'Committed';
      if (outcome === 'ExpectationMismatch') return matches ? undefined : vs;
      return matches ? [...vs, { seqno: op.seqno, data: op.data }] : undefined;
    }
    case 'truncate': {
      const allowed = head !== undefined && op.seqno <= head.seqno;
      if (r.type === 'ok' && r.value === 'FailedPrecondition') return allowed ? undefined : vs;
      if (!allowed) return undefined;
      const kept = vs.filter((v) => v.seqno >= op.seqno);
      if (r.type === 'ok' && r.value !== vs.length - kept.length) return undefined;
      return kept;
    }
  }
}

/** Is there an order of the known ops plus any subset of the unknown writes that fits real time and the model? */
function naiveLinearizable(history: HistoryOp[]): boolean {
  const byKey = new Map<string, HistoryOp[]>();
  for (const op of history) {
    if (op.result.type === 'failed') continue;
    if (op.result.type === 'unknown' && (op.op === 'head' || op.op === 'scan')) continue;
    byKey.set(op.key, [...(byKey.get(op.key) ?? []), op]);
  }
  for (const ops of byKey.values()) {
    const search = (vs: Versions, left: HistoryOp[]): boolean => {
      if (left.every((op) => op.result.type !== 'ok')) return true; // the rest are unknown writes: skip them all
      for (const [i, op] of left.entries()) {
        // op may go next only if no op still left returned before op was called.
        if (left.some((o) => o !== op && o.result.type === 'ok' && o.end < op.start)) continue;
        const rest = left.filter((_, j) => j !== i);
        const next = apply(vs, op);
        if (next !== undefined && search(next, rest)) return true;
        // An unknown write may also never take effect.
        if (op.result.type !== 'ok' && search(vs, rest)) return true;
      }
      return false;
    };
    if (!search([], ops)) return false;
  }
  return true;
}

/** A small seeded PRNG, so a failure reproduces. */
function rng(seed: number): (n: number) => number {
  let x = seed >>> 0 || 1;
  return (n) => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x % n;
  };
}

/**
 * A random history: ops run against a true model at random instants inside their
 * intervals (unknown writes possibly after they returned, or never), then sometimes
 * a result is corrupted, so both linearizable and broken histories come out.
 */
function randomHistory(rand: (n: number) => number): HistoryOp[] {
  const n = 2 + rand(5);
  const keys = rand(4) === 0 ? ['a', 'b'] : ['a'];
  const planned: { op: HistoryOp; at: number; applies: boolean }[] = [];
  for (let i = 0; i < n; i++) {
    const start = rand(8);
    const end = start + rand(4);
    const key = keys[rand(keys.length)]!;
    const kind = rand(10);
    const base = { key, start, end, client: i };
    let op: HistoryOp;
    if (kind < 2) op = { ...base, op: 'head', result: { type: 'ok', value: undefined } };
    else if (kind < 6) {
      const expected = rand(3) === 0 ? undefined : BigInt(rand(4));
      op = { ...base, op: 'compareAndSet', expected, seqno: BigInt(1 + rand(5)), data: `d${i}`, result: { type: 'ok', value: 'Committed' } };
    } else if (kind < 8) op = { ...base, op: 'scan', from: BigInt(rand(4)), limit: 1 + rand(3), result: { type: 'ok', value: [] } };
    else op = { ...base, op: 'truncate', seqno: BigInt(rand(5)), result: { type: 'ok', value: 0 } };
    const unknown = (op.op === 'compareAndSet' || op.op === 'truncate') && rand(4) === 0;
    // An unknown write may land any time after its call, even after it returned.
    const at = unknown ? start + rand(8) + 0.5 : start + rand(end - start + 1) * 0.999 + 0.0005;
    planned.push({ op, at, applies: !unknown || rand(2) === 0 });
    if (unknown) op.result = { type: 'unknown' };
  }
  const state = new Map<string, Versions>();
  for (const p of [...planned].sort((x, y) => x.at - y.at)) {
    const op = p.op;
    const vs = state.get(op.key) ?? [];
    const head = vs[vs.length - 1];
    if (op.op === 'head') op.result = { type: 'ok', value: head && { ...head } };
    else if (op.op === 'scan') op.result = { type: 'ok', value: vs.filter((v) => v.seqno >= op.from).slice(0, op.limit).map((v) => ({ ...v })) };
    else if (op.op === 'compareAndSet') {
      if (op.expected !== undefined && op.seqno <= op.expected) {
        op.result = { type: 'failed' }; // rejected InvalidArgument
        continue;
      }
      const matches = head === undefined ? op.expected === undefined : op.expected === head.seqno;
      if (p.applies && matches) state.set(op.key, [...vs, { seqno: op.seqno, data: op.data }]);
      if (op.result.type === 'ok') op.result = { type: 'ok', value: matches ? 'Committed' : 'ExpectationMismatch' };
    } else {
      const allowed = head !== undefined && op.seqno <= head.seqno;
      const kept = vs.filter((v) => v.seqno >= op.seqno);
      if (allowed && p.applies) state.set(op.key, kept);
      if (op.result.type === 'ok') op.result = { type: 'ok', value: allowed ? vs.length - kept.length : 'FailedPrecondition' };
    }
  }
  if (rand(2) === 0) corrupt(planned[rand(planned.length)]!.op, rand);
  return planned.map((p) => p.op);
}

function corrupt(op: HistoryOp, rand: (n: number) => number): void {
  switch (op.op) {
    case 'head':
      op.result = { type: 'ok', value: rand(2) === 0 ? undefined : { seqno: BigInt(1 + rand(5)), data: `d${rand(6)}` } };
      break;
    case 'scan':
      op.result = { type: 'ok', value: rand(2) === 0 ? [] : [{ seqno: BigInt(1 + rand(5)), data: `d${rand(6)}` }] };
      break;
    case 'compareAndSet':
      op.result = { type: 'ok', value: rand(2) === 0 ? 'Committed' : 'ExpectationMismatch' };
      if (rand(3) === 0) op.seqno = op.expected ?? 0n; // a commit the store should have refused
      break;
    case 'truncate':
      op.result = { type: 'ok', value: rand(3) === 0 ? 'FailedPrecondition' : rand(3) };
      break;
  }
}

describe('checkLinearizable agrees with a naive exhaustive search', () => {
  test('on 4000 random tiny histories', () => {
    const rand = rng(20261127);
    const seen = { ok: 0, violation: 0 };
    for (let i = 0; i < 4000; i++) {
      const history = randomHistory(rand);
      const want = naiveLinearizable(history) ? 'ok' : 'violation';
      const got = checkLinearizable(history).verdict;
      seen[want]++;
      assert.equal(got, want, `history #${i}: ${JSON.stringify(history, (_, v) => (typeof v === 'bigint' ? `${v}n` : v))}`);
    }
    // Both verdicts must be common, or the comparison proves little.
    assert.ok(seen.ok > 500 && seen.violation > 500, JSON.stringify(seen));
  });
});

describe('checkLinearizable on adversarial hand-written histories', () => {
  const ok = <const T>(value: T) => ({ type: 'ok' as const, value });
  const cas = (start: number, end: number, expected: number | undefined, seqno: number, data: string, result: HistoryOp['result']): HistoryOp =>
    ({ op: 'compareAndSet', key: 'k', start, end, expected: expected === undefined ? undefined : BigInt(expected), seqno: BigInt(seqno), data, result }) as HistoryOp;
  const head = (start: number, end: number, seqno: number, data: string): HistoryOp => ({ op: 'head', key: 'k', start, end, result: ok({ seqno: BigInt(seqno), data }) });

  test('a commit of a seqno not above the expected one is a violation', () => {
    // A store that let v3 follow v5 (SPEC requires InvalidArgument) must not pass.
    const r = checkLinearizable([cas(0, 1, undefined, 5, 'a', ok('Committed')), cas(2, 3, 5, 3, 'b', ok('Committed')), head(4, 5, 3, 'b')]);
    assert.equal(r.verdict, 'violation');
  });

  test('an unknown write pruned as dead is not needed later even when the head goes down', () => {
    // If a store could move the head below an unknown CaS's expectation, pruning that
    // CaS would be wrong; the model must refuse the downward move instead.
    const r = checkLinearizable([
      cas(0, 1, undefined, 5, 'a', ok('Committed')),
      cas(2, 3, 5, 2, 'b', ok('Committed')),
      cas(4, 100, 2, 4, 'u', { type: 'unknown' }),
      head(10, 11, 4, 'u'),
    ]);
    assert.equal(r.verdict, 'violation');
  });

  test('a scan whose limit SPEC forbids cannot have succeeded', () => {
    const r = checkLinearizable([cas(0, 1, undefined, 1, 'a', ok('Committed')), { op: 'scan', key: 'k', start: 2, end: 3, from: 0n, limit: 0, result: ok([]) }]);
    assert.equal(r.verdict, 'violation');
  });
});
