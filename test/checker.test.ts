import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, test } from 'node:test';
import { ErrorCode, Indeterminate, MemConsensus } from 'persist-location';
import { UnreliableConsensus, checkLinearizable, stressConsensus, type HistoryOp } from 'persist-location/testing';
import { brokenLocation, type Bugs } from './broken-store.js';

/** Faults on the writes only: reads stay reliable, so every lost write would be seen. */
const WRITES = ['compareAndSet', 'truncate'] as const;

const ok = <const T>(value: T) => ({ type: 'ok' as const, value });
const unknown = { type: 'unknown' as const };
const ver = (seqno: number, data: string) => ({ seqno: BigInt(seqno), data });
const cas = (start: number, end: number, expected: number | undefined, seqno: number, data: string, result: HistoryOp['result']): HistoryOp =>
  ({ op: 'compareAndSet', key: 'k', start, end, expected: expected === undefined ? undefined : BigInt(expected), seqno: BigInt(seqno), data, result }) as HistoryOp;
const head = (start: number, end: number, value: { seqno: bigint; data: string } | undefined): HistoryOp => ({ op: 'head', key: 'k', start, end, result: ok(value) });

describe('checkLinearizable on hand-written histories', () => {
  test('a sequential history that follows the model is ok', () => {
    const r = checkLinearizable([
      head(0, 1, undefined),
      cas(2, 3, undefined, 1, 'a', ok('Committed')),
      cas(4, 5, undefined, 2, 'b', ok('ExpectationMismatch')),
      head(6, 7, ver(1, 'a')),
      { op: 'scan', key: 'k', start: 8, end: 9, from: 0n, limit: 10, result: ok([ver(1, 'a')]) },
      { op: 'truncate', key: 'k', start: 10, end: 11, seqno: 5n, result: ok('FailedPrecondition') },
      { op: 'truncate', key: 'k', start: 12, end: 13, seqno: 1n, result: ok(0) },
    ]);
    assert.equal(r.verdict, 'ok');
    assert.equal(r.ok, true);
    assert.equal(r.ops, 7);
  });

  test('a stale read after a completed write is a violation naming the key and ops', () => {
    const r = checkLinearizable([cas(0, 1, undefined, 1, 'a', ok('Committed')), head(2, 3, undefined)]);
    assert.equal(r.verdict, 'violation');
    assert.equal(r.ok, false);
    assert.equal(r.violations.length, 1);
    assert.equal(r.violations[0]!.key, 'k');
    assert.ok(r.violations[0]!.unordered.some((op) => op.op === 'head'));
  });

  test('a read concurrent with a write may see either state', () => {
    const before = checkLinearizable([cas(0, 10, undefined, 1, 'a', ok('Committed')), head(1, 2, undefined), head(3, 4, ver(1, 'a'))]);
    assert.equal(before.verdict, 'ok');
    const flipped = checkLinearizable([cas(0, 10, undefined, 1, 'a', ok('Committed')), head(1, 2, ver(1, 'a')), head(3, 4, undefined)]);
    assert.equal(flipped.verdict, 'violation', 'once a read saw the write, a later read cannot miss it');
  });

  test('two committed CaS from the same expected head cannot both be real', () => {
    const r = checkLinearizable([cas(0, 10, undefined, 1, 'a', ok('Committed')), cas(0, 10, undefined, 2, 'b', ok('Committed'))]);
    assert.equal(r.verdict, 'violation');
  });

  test('an unknown write may have happened, even after it returned', () => {
    const applied = checkLinearizable([cas(0, 1, undefined, 1, 'a', unknown), head(5, 6, undefined), head(7, 8, ver(1, 'a'))]);
    assert.equal(applied.verdict, 'ok');
    const never = checkLinearizable([cas(0, 1, undefined, 1, 'a', unknown), head(5, 6, undefined)]);
    assert.equal(never.verdict, 'ok');
  });

  test('an unknown write cannot explain data nobody wrote', () => {
    const r = checkLinearizable([cas(0, 1, undefined, 1, 'a', unknown), head(5, 6, ver(1, 'zzz'))]);
    assert.equal(r.verdict, 'violation');
  });

  test('failed operations and unknown reads are ignored', () => {
    const r = checkLinearizable([
      cas(0, 1, undefined, 1, 'a', { type: 'failed' }),
      { op: 'head', key: 'k', start: 2, end: 3, result: unknown },
      head(4, 5, undefined),
    ]);
    assert.equal(r.verdict, 'ok');
    assert.equal(r.ops, 1);
  });

  test('scan and truncate are checked against the model', () => {
    const base = [cas(0, 1, undefined, 1, 'a', ok('Committed')), cas(2, 3, 1, 2, 'b', ok('Committed'))];
    const goodScan: HistoryOp = { op: 'scan', key: 'k', start: 4, end: 5, from: 0n, limit: 1, result: ok([ver(1, 'a')]) };
    assert.equal(checkLinearizable([...base, goodScan]).verdict, 'ok');
    const badScan: HistoryOp = { op: 'scan', key: 'k', start: 4, end: 5, from: 0n, limit: 5, result: ok([ver(2, 'b')]) };
    assert.equal(checkLinearizable([...base, badScan]).verdict, 'violation');
    const badCount: HistoryOp = { op: 'truncate', key: 'k', start: 4, end: 5, seqno: 2n, result: ok(0) };
    assert.equal(checkLinearizable([...base, badCount]).verdict, 'violation');
    const refusedWrongly: HistoryOp = { op: 'truncate', key: 'k', start: 4, end: 5, seqno: 2n, result: ok('FailedPrecondition') };
    assert.equal(checkLinearizable([...base, refusedWrongly]).verdict, 'violation');
  });

  test('keys are independent', () => {
    const r = checkLinearizable([cas(0, 1, undefined, 1, 'a', ok('Committed')), { ...head(2, 3, undefined), key: 'other' }]);
    assert.equal(r.verdict, 'ok');
    assert.equal(r.keys, 2);
  });

  test('running out of steps answers unknown, never ok', () => {
    const history: HistoryOp[] = [];
    for (let i = 0; i < 12; i++) history.push(cas(0, 100, undefined, i + 1, `d${i}`, unknown));
    history.push(head(200, 201, undefined));
    history.push(head(202, 203, ver(99, 'nobody')));
    const r = checkLinearizable(history, { maxStepsPerKey: 5 });
    assert.equal(r.verdict, 'unknown');
    assert.equal(r.ok, false);
    assert.deepEqual(r.undecidedKeys, ['k']);
  });
});

describe('stressConsensus catches broken stores', () => {
  const cases: [string, Bugs][] = [
    ['stale head', { staleHead: true }],
    ['lost update', { lostUpdate: true }],
    ['acknowledged-but-lost write', { ackedButLost: true }],
    ['truncate that drops the head', { truncateDropsHead: true }],
  ];
  for (const [name, bugs] of cases) {
    test(`${name} is reported as a violation`, async () => {
      const report = await stressConsensus(brokenLocation(bugs), { ops: 1500, keys: 4, clients: 8 });
      assert.equal(report.verdict, 'violation', `${name}: verdict ${report.verdict}`);
      assert.equal(report.ok, false);
      assert.ok(report.violations.length > 0);
      assert.ok(report.violations[0]!.unordered.length > 0, 'the violation names the operations it could not order');
    });
  }

  test('options that would record nothing are refused, not reported ok', async () => {
    for (const opts of [{ keys: 0 }, { clients: 0 }, { ops: -1 }, { handles: Number.NaN }, { keys: 1.5 }]) {
      await assert.rejects(stressConsensus(brokenLocation({}), opts), RangeError, JSON.stringify(opts));
    }
  });

  test('a run that proves nothing is not ok: no write committed, or the final reads failed', async () => {
    const never = await stressConsensus(async () => new UnreliableConsensus(new MemConsensus({ name: `never-${randomUUID()}` }), { failRate: 1, operations: WRITES }), {
      ops: 300,
      keys: 2,
      clients: 4,
    });
    assert.equal(never.committed, 0);
    assert.equal(never.ok, false);
    assert.match(never.unproven.join('; '), /no compareAndSet committed/);

    // Reads that always fail Indeterminate: the history is trivially linearizable,
    // but a lost write would go unseen.
    const name = `blind-${randomUUID()}`;
    const blind = await stressConsensus(
      async () => {
        const inner = new MemConsensus({ name });
        return new Proxy(inner, {
          get(target, prop, receiver) {
            if (prop === 'head' || prop === 'scan') return () => Promise.reject(new Indeterminate(ErrorCode.Unavailable, 'reads are down'));
            const value: unknown = Reflect.get(target, prop, receiver);
            return typeof value === 'function' ? value.bind(target) : value;
          },
        });
      },
      { ops: 300, keys: 2, clients: 4 },
    );
    assert.equal(blind.verdict, 'ok');
    assert.ok(blind.committed > 0);
    assert.equal(blind.ok, false);
    assert.match(blind.unproven.join('; '), /final head of .* failed/);
  });

  test('the same broken-store harness without bugs passes', async () => {
    const report = await stressConsensus(brokenLocation({}), { ops: 1500, keys: 4, clients: 8 });
    assert.equal(report.verdict, 'ok', JSON.stringify(report.violations[0]));
  });

  test('a correct store passes when 5% of writes report an unknown outcome', async () => {
    const name = `flaky-${randomUUID()}`;
    const report = await stressConsensus(async () => new UnreliableConsensus(new MemConsensus({ name }), { failRate: 0.05, operations: WRITES }), {
      ops: 3000,
      keys: 4,
      clients: 16,
    });
    assert.equal(report.verdict, 'ok', JSON.stringify(report.violations[0]));
    assert.ok(report.unknown > 20, `only ${report.unknown} unknown outcomes`);
  });
});
