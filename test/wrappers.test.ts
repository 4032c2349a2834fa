// Every wrapper meant to be transparent passes the conformance suites around a
// memory store, alone and composed with the others, and a composition that injects
// unknown outcomes still records linearizable histories.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, test } from 'node:test';
import { MemBlob, MemConsensus, withMetrics, withRetry, withTracing, type Blob, type Consensus } from 'persist-location';
import { Registry } from 'prom-client';
import { UnreliableConsensus, blobImplTest, consensusImplTest, stressBlob, stressConsensus } from 'persist-location/testing';
import { Gate } from '../src/cli/gate.js';
import { Recorder, measuredBlob, measuredConsensus } from '../src/cli/measure.js';

/** Faults on the writes only: reads stay reliable, so every lost write would be seen. */
const WRITES = ['compareAndSet', 'truncate'] as const;

type Wrap<S> = (inner: S) => Promise<S>;

const registry = new Registry();

/** The wrappers of a Consensus, each as the code that uses it builds it. */
function consensusWrappers(rec: Recorder): [string, Wrap<Consensus>][] {
  const gate = new Gate();
  return [
    ['an open Gate', (inner) => gate.consensus(async () => inner)],
    ['measuredConsensus', async (inner) => measuredConsensus(inner, rec)],
    ['UnreliableConsensus at rate 0', async (inner) => new UnreliableConsensus(inner, { failRate: 0, operations: WRITES })],
    ['withRetry', async (inner) => withRetry(inner, { minDelayMs: 1, maxDelayMs: 5 })],
    ['withMetrics', async (inner) => withMetrics(inner, { registry })],
    ['withTracing', async (inner) => withTracing(inner)],
  ];
}

function blobWrappers(rec: Recorder): [string, Wrap<Blob>][] {
  const gate = new Gate();
  return [
    ['an open Gate', (inner) => gate.blob(async () => inner)],
    ['measuredBlob', async (inner) => measuredBlob(inner, rec)],
    ['withRetry', async (inner) => withRetry(inner, { minDelayMs: 1, maxDelayMs: 5 })],
    ['withMetrics', async (inner) => withMetrics(inner, { registry })],
    ['withTracing', async (inner) => withTracing(inner)],
  ];
}

/** `wraps` applied innermost first. */
function composed<S>(wraps: Wrap<S>[]): Wrap<S> {
  return async (inner) => {
    let store = inner;
    for (const wrap of wraps) store = await wrap(store);
    return store;
  };
}

/** Blob handles that share data per path, as the suite requires, each behind `wrap`. */
function sharedBlobs(wrap: Wrap<Blob>, keepDeleted = false): (path: string) => Promise<Blob> {
  const run = randomUUID();
  return async (path) => wrap(new MemBlob({ name: `${run}/${path}`, keepDeleted }));
}

describe('each wrapper passes the consensus suite around MemConsensus', () => {
  const rec = new Recorder();
  for (const [name, wrap] of consensusWrappers(rec)) {
    test(name, () => consensusImplTest(async () => wrap(new MemConsensus())));
  }

  test('all composed, in either order', async () => {
    const wraps = consensusWrappers(new Recorder()).map(([, w]) => w);
    await consensusImplTest(async () => composed(wraps)(new MemConsensus()));
    await consensusImplTest(async () => composed([...wraps].reverse())(new MemConsensus()));
  });

  test('measuredConsensus recorded the calls that went through it', () => {
    assert.ok(rec.count > 100, `only ${rec.count} calls recorded`);
  });
});

describe('each wrapper passes the blob suite around MemBlob', () => {
  const rec = new Recorder();
  for (const [name, wrap] of blobWrappers(rec)) {
    test(name, async () => {
      await blobImplTest(sharedBlobs(wrap), { capabilities: { keepsDeleted: false } });
      await blobImplTest(sharedBlobs(wrap, true), { capabilities: { keepsDeleted: true } });
    });
  }

  test('all composed, in either order', async () => {
    const wraps = blobWrappers(new Recorder()).map(([, w]) => w);
    await blobImplTest(sharedBlobs(composed(wraps)));
    await blobImplTest(sharedBlobs(composed([...wraps].reverse())));
  });

  test('measuredBlob recorded the calls that went through it', () => {
    assert.ok(rec.count > 100, `only ${rec.count} calls recorded`);
  });
});

describe('compositions under concurrent clients', () => {
  test('Gate, measured and UnreliableConsensus at 5% of writes together: histories stay linearizable', async () => {
    const name = `wrapped-${randomUUID()}`;
    const rec = new Recorder();
    const gate = new Gate();
    const open = () => gate.consensus(async () => measuredConsensus(new UnreliableConsensus(new MemConsensus({ name }), { failRate: 0.05, operations: WRITES }), rec));
    const report = await stressConsensus(open, { ops: 2000, keys: 4, clients: 16 });
    assert.equal(report.verdict, 'ok', JSON.stringify(report.violations[0]));
    assert.ok(report.ok, report.unproven.join('; '));
    assert.ok(report.unknown > 10, `only ${report.unknown} unknown outcomes were injected`);
    assert.ok(rec.count >= 2000, `only ${rec.count} calls recorded`);
    // The gate was in the path too: once shut, a handle's calls park.
    const handle = await open();
    await gate.shut();
    const parked = await Promise.race([handle.head('k').then(() => 'answered'), new Promise((resolve) => setTimeout(() => resolve('parked'), 50))]);
    assert.equal(parked, 'parked');
  });

  test('withRetry around UnreliableConsensus at 20%, inside metrics and tracing: linearizable, 95% succeed', async () => {
    const name = `wrapped-${randomUUID()}`;
    let seed = 1;
    const open = async () =>
      withTracing(withMetrics(withRetry(new UnreliableConsensus(new MemConsensus({ name }), { seed: seed++, failRate: 0.2 }), { minDelayMs: 1, maxDelayMs: 5 }), { registry }));
    const report = await stressConsensus(open, { ops: 2000 });
    assert.equal(report.verdict, 'ok', JSON.stringify(report.violations[0]));
    assert.ok(report.failed + report.unknown <= 0.05 * report.ops, `${report.failed + report.unknown} of ${report.ops} failed`);
  });

  test('a gated, measured blob passes the blob stress', async () => {
    const name = `wrapped-${randomUUID()}`;
    const gate = new Gate();
    const rec = new Recorder();
    const report = await stressBlob(async () => gate.blob(async () => measuredBlob(new MemBlob({ name }), rec)), { ops: 1000 });
    assert.ok(report.ok, JSON.stringify(report.violations[0]));
    assert.ok(rec.count >= 1000, `only ${rec.count} calls recorded`);
  });
});
