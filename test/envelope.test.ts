// The production envelope over memory stores: withRetry's settling of unknown
// outcomes against stores that fail every write before or after applying it,
// Unreliable's reproducibility, update() under faults and contention, watch(),
// metrics equal to the operations made, a span per operation, and the retry
// defaults of openConsensus/openBlob.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, test } from 'node:test';
import { Registry } from 'prom-client';
import {
  CaSResult,
  Determinate,
  ErrorCode,
  ExternalError,
  Indeterminate,
  MemBlob,
  MemConsensus,
  SCAN_ALL,
  SeqNo,
  openBlob,
  openConsensus,
  update,
  watch,
  withMetrics,
  withRetry,
  withTracing,
  wrapBlob,
  wrapConsensus,
  type Consensus,
  type VersionedData,
} from 'persist-location';
import { UnreliableBlob, UnreliableConsensus, stressConsensus } from 'persist-location/testing';

const v = (seqno: number, data: string): VersionedData => ({ seqno: new SeqNo(seqno), data: Buffer.from(data) });
const text = (d: Uint8Array | undefined) => (d === undefined ? undefined : Buffer.from(d).toString());
const FAST = { minDelayMs: 1, maxDelayMs: 5 };

type Failure = 'before-determinate' | 'before-indeterminate' | 'after';

/**
 * A memory store whose writes fail as `how` says, for the first `times` attempts
 * of each write (Infinity: every attempt), counting the attempts.
 */
function failingWrites(inner: Consensus, how: Failure, times = Infinity) {
  const attempts = { compareAndSet: 0, truncate: 0 };
  const store = wrapConsensus(inner, {
    around: async (op, _args, run) => {
      if (op !== 'compareAndSet' && op !== 'truncate') return run();
      if (++attempts[op] > times) return run();
      if (how === 'before-determinate') throw new Determinate(ErrorCode.Unavailable, 'refused');
      if (how === 'before-indeterminate') throw new Indeterminate(ErrorCode.Unavailable, 'lost before');
      await run();
      throw new Indeterminate(ErrorCode.Unavailable, 'lost after');
    },
  });
  return { store, attempts };
}

const isKind = (determinate: boolean) => (err: unknown) => {
  assert.ok(err instanceof ExternalError, String(err));
  assert.equal(err.determinate, determinate, `${err.name} ${err.code}: ${err.message}`);
  return true;
};

describe('withRetry never answers a false Committed or ExpectationMismatch', () => {
  for (const how of ['before-determinate', 'before-indeterminate', 'after'] as const) {
    test(`every write fails ${how} applying: the answer says what happened`, async () => {
      const inner = new MemConsensus();
      const { store, attempts } = failingWrites(inner, how);
      const c = withRetry(store, { ...FAST, attempts: 5 });
      if (how === 'after') {
        // Read at once after the unknown outcome: the version is there.
        assert.equal(await c.compareAndSet('k', undefined, v(1, 'a')), CaSResult.Committed);
        assert.equal(attempts.compareAndSet, 1);
      } else {
        await assert.rejects(c.compareAndSet('k', undefined, v(1, 'a')), isKind(how === 'before-determinate'));
        assert.equal(attempts.compareAndSet, 5);
      }
      const head = await inner.head('k');
      if (how === 'after') assert.equal(text(head?.data), 'a');
      else assert.equal(head, undefined);
      if (how === 'after') {
        // A truncate that keeps failing after applying: unknown, never a count.
        await inner.compareAndSet('k', new SeqNo(1), v(2, 'b'));
        await assert.rejects(c.truncate('k', new SeqNo(2)), isKind(false));
        assert.deepEqual((await inner.scan('k', SeqNo.minimum(), SCAN_ALL)).map((x) => x.seqno.value), [2n]);
      }
    });

    test(`the first attempt of every write fails ${how} applying: settled exactly`, async () => {
      const inner = new MemConsensus();
      const { store } = failingWrites(inner, how, 1);
      const c = withRetry(store, FAST);
      assert.equal(await c.compareAndSet('k', undefined, v(1, 'a')), CaSResult.Committed);
      assert.deepEqual((await inner.scan('k', SeqNo.minimum(), SCAN_ALL)).map((x) => text(x.data)), ['a']);
    });
  }

  test('applied, then another writer wrote on top: still Committed (the version is there)', async () => {
    const inner = new MemConsensus();
    let first = true;
    const c = withRetry(
      wrapConsensus(inner, {
        compareAndSet: async (forward, key, expected, next, opts) => {
          const r = await forward(key, expected, next, opts);
          if (!first) return r;
          first = false;
          await inner.compareAndSet(key, next.seqno, v(Number(next.seqno.value) + 1, 'other'));
          throw new Indeterminate(ErrorCode.Unavailable, 'lost after');
        },
      }),
      FAST,
    );
    assert.equal(await c.compareAndSet('k', undefined, v(1, 'mine')), CaSResult.Committed);
  });

  test('lost before it arrived, and another writer took that seqno: ExpectationMismatch', async () => {
    const inner = new MemConsensus();
    let first = true;
    const c = withRetry(
      wrapConsensus(inner, {
        compareAndSet: async (forward, key, expected, next, opts) => {
          if (!first) return forward(key, expected, next, opts);
          first = false;
          await inner.compareAndSet(key, expected, { seqno: next.seqno, data: Buffer.from('theirs') });
          throw new Indeterminate(ErrorCode.Unavailable, 'lost before');
        },
      }),
      FAST,
    );
    assert.equal(await c.compareAndSet('k', undefined, v(1, 'mine')), CaSResult.ExpectationMismatch);
    assert.equal(text((await inner.head('k'))?.data), 'theirs');
  });

  test('applied, then truncated away before the re-send: Indeterminate, not ExpectationMismatch', async () => {
    const inner = new MemConsensus();
    let first = true;
    const c = withRetry(
      wrapConsensus(inner, {
        compareAndSet: async (forward, key, expected, next, opts) => {
          const r = await forward(key, expected, next, opts);
          if (!first) return r;
          first = false;
          await inner.compareAndSet(key, next.seqno, v(5, 'later'));
          await inner.truncate(key, new SeqNo(5));
          throw new Indeterminate(ErrorCode.Unavailable, 'lost after');
        },
      }),
      FAST,
    );
    await assert.rejects(c.compareAndSet('k', undefined, v(1, 'mine')), isKind(false));
  });

  test('truncate: a re-send after a lost request reports its own count; after an applied one, 0 is not claimed', async () => {
    for (const how of ['before-indeterminate', 'after'] as const) {
      const inner = new MemConsensus();
      for (let i = 1; i <= 4; i++) await inner.compareAndSet('k', i === 1 ? undefined : new SeqNo(i - 1), v(i, `d${i}`));
      const { store } = failingWrites(inner, how, 1);
      const c = withRetry(store, FAST);
      if (how === 'before-indeterminate') assert.equal(await c.truncate('k', new SeqNo(4)), 3);
      else await assert.rejects(c.truncate('k', new SeqNo(4)), isKind(false));
      assert.equal((await inner.scan('k', SeqNo.minimum(), SCAN_ALL)).length, 1);
    }
  });

  test('Determinate failures that are not transient are not retried; reads are', async () => {
    let heads = 0;
    const inner = new MemConsensus();
    const c = withRetry(
      wrapConsensus(inner, {
        head: async (forward, key, opts) => {
          if (++heads < 3) throw new Indeterminate(ErrorCode.Timeout, 'slow');
          return forward(key, opts);
        },
      }),
      FAST,
    );
    assert.equal(await c.head('k'), undefined);
    assert.equal(heads, 3);
    await assert.rejects(c.truncate('k', new SeqNo(1)), { name: 'Determinate', code: ErrorCode.FailedPrecondition });
    await assert.rejects(c.compareAndSet('k', new SeqNo(5), v(5, 'x')), { name: 'Determinate', code: ErrorCode.InvalidArgument });
  });

  test("the caller's signal ends the backoff at once", async () => {
    const c = withRetry(
      wrapConsensus(new MemConsensus(), { head: async () => Promise.reject(new Determinate(ErrorCode.Unavailable, 'down')) }),
      { minDelayMs: 60_000 },
    );
    const started = Date.now();
    await assert.rejects(c.head('k', { signal: AbortSignal.timeout(100) }), { name: 'Determinate', code: ErrorCode.Cancelled });
    assert.ok(Date.now() - started < 30_000, 'the pause was not cut short');
  });

  test('a listing that fails part-way is restarted without repeating keys', async () => {
    const inner = new MemConsensus();
    for (let i = 0; i < 1000; i++) await inner.compareAndSet(`k${i}`, undefined, v(1, 'x'));
    const listed: string[] = [];
    const c = withRetry(new UnreliableConsensus(inner, { seed: 7, failRate: 0.3, operations: ['listKeys'] }), FAST);
    for await (const key of c.listKeys()) listed.push(key);
    assert.deepEqual(listed.sort(), Array.from({ length: 1000 }, (_, i) => `k${i}`).sort());
  });

  test('blob: set and restore are retried, a delete that may have applied is not reported as missing', async () => {
    const inner = new MemBlob();
    let deletes = 0;
    const b = withRetry(
      wrapBlob(new UnreliableBlob(inner, { seed: 3, failRate: 0.5, operations: ['set', 'get', 'restore'] }), {
        delete: async (forward, key, opts) => {
          const r = await forward(key, opts);
          if (++deletes === 1) throw new Indeterminate(ErrorCode.Unavailable, 'lost after');
          return r;
        },
      }),
      FAST,
    );
    for (let i = 0; i < 20; i++) await b.set(`k${i}`, Buffer.from(`v${i}`));
    for (let i = 0; i < 20; i++) assert.equal(text((await b.get(`k${i}`))?.toContiguous()), `v${i}`);
    await b.restore('k1');
    await assert.rejects(b.delete('k0'), isKind(false));
    assert.equal(await inner.get('k0'), undefined);
  });
});

describe('stressConsensus through withRetry(UnreliableConsensus(memory, 20%))', () => {
  test('0 violations, at least 95% of operations succeed', async () => {
    const name = `retry-stress-${randomUUID()}`;
    let seed = 1;
    const report = await stressConsensus(async () => withRetry(new UnreliableConsensus(new MemConsensus({ name }), { seed: seed++, failRate: 0.2 }), FAST), {
      ops: 3000,
      clients: 16,
    });
    assert.equal(report.verdict, 'ok', JSON.stringify(report.violations[0]));
    assert.ok(report.ok, report.unproven.join('; '));
    const failed = report.failed + report.unknown;
    assert.ok(failed <= 0.05 * report.ops, `${failed} of ${report.ops} failed`);
  });
});

describe('UnreliableConsensus / UnreliableBlob', () => {
  async function run(seed: number) {
    const inner = new MemConsensus();
    const c = new UnreliableConsensus(inner, { seed, failRate: 0.3 });
    const outcomes: string[] = [];
    for (let i = 1; i <= 200; i++) {
      const expected = (await inner.head('k'))?.seqno;
      outcomes.push(await c.compareAndSet('k', expected, v(i, `d${i}`)).then((x) => x, (e: ExternalError) => e.name));
      outcomes.push(await c.head('k').then((h) => String(h?.seqno), (e: ExternalError) => e.name));
    }
    return { outcomes, stats: { ...c.stats } };
  }

  test('the same seed and calls give the same faults; another seed others', async () => {
    const a = await run(42);
    const b = await run(42);
    const c = await run(43);
    assert.deepEqual(a, b);
    assert.notDeepEqual(a.outcomes, c.outcomes);
    assert.equal(a.stats.calls, 400);
    const failed = a.stats.determinate + a.stats.lost + a.stats.applied;
    assert.ok(failed > 80 && failed < 160, `${failed} of 400 failed at rate 0.3`);
    assert.ok(a.stats.applied > 10, `${a.stats.applied} applied`);
  });

  test('failures are ExternalErrors of code Unavailable; an applied one was applied', async () => {
    const inner = new MemConsensus();
    const c = new UnreliableConsensus(inner, { seed: 1, failRate: 1, appliedRate: 1 });
    await assert.rejects(c.compareAndSet('k', undefined, v(1, 'x')), { name: 'Indeterminate', code: ErrorCode.Unavailable });
    assert.equal(text((await inner.head('k'))?.data), 'x');
    const b = new UnreliableBlob(new MemBlob(), { seed: 1, failRate: 1, appliedRate: 0 });
    await assert.rejects(b.get('k'), (e: unknown) => e instanceof ExternalError && e.code === ErrorCode.Unavailable);
    assert.throws(() => new UnreliableConsensus(inner, { failRate: 2 }), { name: 'Determinate', code: ErrorCode.InvalidArgument });
  });
});

describe('update', () => {
  test('a counter from 8 concurrent callers under 20% faults: each update exactly once', async () => {
    const name = `counter-${randomUUID()}`;
    const per = 25;
    const callers = Array.from({ length: 8 }, async (_, w) => {
      const c = new UnreliableConsensus(new MemConsensus({ name }), { seed: 100 + w, failRate: 0.2 });
      const reported: VersionedData[] = [];
      for (let n = 0; n < per; n++) {
        const head = await update(
          c,
          'counter',
          (cur) => {
            const count = cur === undefined ? 0 : (JSON.parse(text(cur.data)!) as { count: number }).count;
            return Buffer.from(JSON.stringify({ count: count + 1, writer: w, n }));
          },
          { retry: FAST },
        );
        reported.push(head!);
      }
      return reported;
    });
    const reported = (await Promise.all(callers)).flat();
    const history = await new MemConsensus({ name }).scan('counter', SeqNo.minimum(), SCAN_ALL);
    assert.equal(history.length, 8 * per);
    const seen = new Set(history.map((h) => text(h.data)));
    assert.equal(seen.size, 8 * per);
    history.forEach((h, i) => assert.equal((JSON.parse(text(h.data)!) as { count: number }).count, i + 1));
    for (const r of reported) assert.equal(text(history[Number(r.seqno.value)]!.data), text(r.data), `reported ${r.seqno}`);
  });

  test('fn returning undefined leaves the key; the head is returned', async () => {
    const c = new MemConsensus();
    assert.equal(await update(c, 'k', () => undefined), undefined);
    const first = await update(c, 'k', () => Buffer.from('a'));
    assert.equal(first?.seqno.value, 0n);
    const kept = await update(c, 'k', (cur) => (text(cur?.data) === 'a' ? undefined : Buffer.from('b')));
    assert.equal(text(kept?.data), 'a');
  });

  test('gives up Determinate after the attempts it was given, when every write is beaten', async () => {
    const inner = new MemConsensus();
    let i = 0;
    const beaten = wrapConsensus(inner, {
      compareAndSet: async (forward, key, expected, next, opts) => {
        i++;
        await inner.compareAndSet(key, expected, v(Number(next.seqno.value), `rival${i}`));
        return forward(key, expected, next, opts);
      },
    });
    await assert.rejects(update(beaten, 'k', () => Buffer.from('mine'), { attempts: 3 }), { name: 'Determinate', code: ErrorCode.Aborted });
    assert.equal(i, 3);
  });
});

describe('watch', () => {
  async function watchWhileWriting(c: Consensus, writer: Consensus, writes: number) {
    const stop = new AbortController();
    const seen: bigint[] = [];
    const done = (async () => {
      for await (const head of watch(c, 'k', { signal: stop.signal, retry: FAST })) {
        seen.push(head.seqno.value);
        if (head.seqno.value === BigInt(writes)) stop.abort();
      }
    })();
    await writer.compareAndSet('k', undefined, v(0, 'start'));
    for (let i = 1; i <= writes; i++) {
      await writer.compareAndSet('k', new SeqNo(i - 1), v(i, `d${i}`));
      if (i % 7 === 0) await new Promise((r) => setTimeout(r, 2));
    }
    const timer = setTimeout(() => stop.abort(), 10_000);
    await done;
    clearTimeout(timer);
    return seen;
  }

  test('memory, notified: every head newer than the last, ending at the final one', async () => {
    const name = `watch-${randomUUID()}`;
    const seen = await watchWhileWriting(new MemConsensus({ name }), new MemConsensus({ name }), 100);
    assert.equal(seen.at(-1), 100n, `last seen ${seen.at(-1)}`);
    for (let i = 1; i < seen.length; i++) assert.ok(seen[i]! > seen[i - 1]!, `went from ${seen[i - 1]} to ${seen[i]}`);
  });

  test('polled (a store without notifications), through retries and faults', async () => {
    const name = `watch-poll-${randomUUID()}`;
    const inner = new MemConsensus({ name });
    // A plain object: nothing forwards the memory store's notifications.
    const bare: Consensus = {
      listKeys: (o) => inner.listKeys(o),
      head: (k, o) => inner.head(k, o),
      compareAndSet: (k, e, n, o) => inner.compareAndSet(k, e, n, o),
      scan: (k, f, l, o) => inner.scan(k, f, l, o),
      truncate: (k, s, o) => inner.truncate(k, s, o),
      close: () => inner.close(),
      [Symbol.asyncDispose]: () => inner.close(),
    };
    const seen = await watchWhileWriting(new UnreliableConsensus(bare, { seed: 5, failRate: 0.2 }), new MemConsensus({ name }), 60);
    assert.equal(seen.at(-1), 60n);
    for (let i = 1; i < seen.length; i++) assert.ok(seen[i]! > seen[i - 1]!);
  });

  test('starts with the current head, and ends quietly when the signal fires', async () => {
    const c = new MemConsensus();
    await c.compareAndSet('k', undefined, v(3, 'x'));
    const stop = new AbortController();
    const seen: bigint[] = [];
    setTimeout(() => stop.abort(), 100);
    for await (const head of watch(withRetry(c), 'k', { signal: stop.signal })) seen.push(head.seqno.value);
    assert.deepEqual(seen, [3n]);
  });
});

describe('withMetrics', () => {
  test('the metric values equal the operations actually made', async () => {
    const registry = new Registry();
    const made = new Map<string, number>();
    const inner = new MemConsensus();
    const counted = wrapConsensus(new UnreliableConsensus(inner, { seed: 9, failRate: 0.2 }), {
      around: async (op, _args, run) => {
        try {
          const r = await run();
          const k = `${op} ${r === 'ExpectationMismatch' ? 'mismatch' : 'ok'}`;
          made.set(k, (made.get(k) ?? 0) + 1);
          return r;
        } catch (err) {
          const k = `${op} ${(err as ExternalError).determinate ? 'determinate' : 'indeterminate'}`;
          made.set(k, (made.get(k) ?? 0) + 1);
          throw err;
        }
      },
    });
    const c = withMetrics(counted, { registry, labels: { location: 'test' } });
    let written = 0;
    for (let i = 1; i <= 200; i++) {
      const data = Buffer.from(`value-${i}`);
      const expected = (await inner.head('k'))?.seqno;
      const r = await c.compareAndSet('k', expected, { seqno: new SeqNo(i), data }).catch(() => undefined);
      if (r !== undefined) written += data.byteLength;
      await c.head('k').catch(() => undefined);
    }
    const ops = await registry.getSingleMetric('persist_location_ops_total')!.get();
    const got = new Map(ops.values.map((s) => [`${s.labels.op} ${s.labels.outcome}`, s.value]));
    assert.deepEqual(new Map([...got].sort()), new Map([...made].sort()));
    for (const s of ops.values) assert.equal(s.labels.location, 'test');
    const bytes = await registry.getSingleMetric('persist_location_bytes_total')!.get();
    const writes = bytes.values.find((s) => s.labels.op === 'compareAndSet' && s.labels.direction === 'write');
    assert.equal(writes?.value, written);
    const hist = await registry.getSingleMetric('persist_location_op_duration_seconds')!.get();
    const count = hist.values.filter((s) => (s as { metricName?: string }).metricName === 'persist_location_op_duration_seconds_count').reduce((n, s) => n + s.value, 0);
    assert.equal(count, [...made.values()].reduce((a, b) => a + b, 0));
  });
});

/** A tracer written against the @opentelemetry/api interfaces that records its spans. */
function recordingTracer() {
  const spans: { name: string; attributes: Record<string, unknown>; status?: { code: number }; ended: boolean; exceptions: number }[] = [];
  const tracer = {
    startSpan(name: string, options?: { attributes?: Record<string, unknown> }) {
      const rec = { name, attributes: { ...options?.attributes }, status: undefined as { code: number } | undefined, ended: false, exceptions: 0 };
      spans.push(rec);
      const span = {
        setAttribute: (k: string, val: unknown) => ((rec.attributes[k] = val), span),
        setAttributes: (a: Record<string, unknown>) => (Object.assign(rec.attributes, a), span),
        setStatus: (s: { code: number }) => ((rec.status = s), span),
        recordException: () => void rec.exceptions++,
        end: () => void (rec.ended = true),
        isRecording: () => true,
        spanContext: () => ({ traceId: '0'.repeat(32), spanId: '0'.repeat(16), traceFlags: 1 }),
        addEvent: () => span,
        addLink: () => span,
        addLinks: () => span,
        updateName: () => span,
      };
      return span;
    },
    startActiveSpan(name: string, options: { attributes?: Record<string, unknown> }, fn: (span: unknown) => unknown) {
      return fn(tracer.startSpan(name, options));
    },
  };
  return { tracer, spans };
}

describe('withTracing', () => {
  test('one span per operation, named and keyed, with error status on failure', async () => {
    const { tracer, spans } = recordingTracer();
    const c = withTracing(new MemConsensus(), { tracer: tracer as never });
    await c.compareAndSet('k', undefined, v(1, 'x'));
    await c.compareAndSet('k', undefined, v(2, 'y'));
    await c.head('k');
    await assert.rejects(c.truncate('k', new SeqNo(9)));
    for await (const _ of c.listKeys()) void _;
    assert.deepEqual(
      spans.map((s) => s.name),
      ['consensus.compareAndSet', 'consensus.compareAndSet', 'consensus.head', 'consensus.truncate', 'consensus.listKeys'],
    );
    assert.ok(spans.every((s) => s.ended));
    assert.equal(spans[0]!.attributes['persist_location.key'], 'k');
    assert.equal(spans[1]!.attributes['persist_location.outcome'], 'mismatch');
    assert.equal(spans[3]!.status?.code, 2);
    assert.equal(spans[3]!.attributes['persist_location.outcome'], 'determinate');
    assert.equal(spans[2]!.status, undefined);

    const b = withTracing(new MemBlob(), { tracer: tracer as never });
    await b.set('a', Buffer.from('1'));
    await b.get('a');
    assert.deepEqual(spans.slice(-2).map((s) => [s.name, s.attributes['persist_location.key']]), [['blob.set', 'a'], ['blob.get', 'a']]);
  });

  test('without a tracer it uses the API (a no-op until a provider is registered)', async () => {
    const c = withTracing(new MemConsensus());
    assert.equal(await c.compareAndSet('k', undefined, v(1, 'x')), CaSResult.Committed);
  });
});

describe('openConsensus / openBlob retry option', () => {
  test('embedded backends are not wrapped unless asked; retry: false never is', async () => {
    const name = `open-${randomUUID()}`;
    assert.ok((await openConsensus(`mem://${name}`)) instanceof MemConsensus);
    assert.ok((await openBlob(`mem://${name}`)) instanceof MemBlob);
    const retried = await openConsensus(`mem://${name}`, { retry: { attempts: 3 } });
    assert.ok(!(retried instanceof MemConsensus));
    assert.equal(await retried.compareAndSet('k', undefined, v(1, 'x')), CaSResult.Committed);
    assert.ok((await openConsensus(`mem://${name}`, { retry: false })) instanceof MemConsensus);
    await assert.rejects(openConsensus(`mem://${name}`, { retry: { attempts: 0 } }), { name: 'Determinate', code: ErrorCode.InvalidArgument });
  });
});
