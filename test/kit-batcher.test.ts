// The kit's group-commit batcher: budgets, per-item outcomes, ordering, aborts,
// conflicts, lanes, lingering and the queue bound.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Determinate, ErrorCode, ExternalError, Indeterminate } from 'persist-location';
import { Batcher, type BatcherOptions, type Settled } from '../src/kit/batcher.js';

interface Item {
  id: number;
  size?: number;
  key?: string;
}

/** A batch handed to the runner, answered when the test says so. */
interface Held {
  items: readonly Item[];
  signal: AbortSignal;
  answer(outcomes?: readonly Settled<string>[]): void;
  fail(err: unknown): void;
}

/** A batcher whose runner holds every batch until the test answers it. */
function held(options: Omit<BatcherOptions<Item, string>, 'run'> = {}) {
  const batches: Held[] = [];
  let arrived: (() => void) | undefined;
  const batcher = new Batcher<Item, string>({
    bytes: (i) => i.size ?? 0,
    ...options,
    run: (items, signal) =>
      new Promise((resolve, reject) => {
        batches.push({
          items,
          signal,
          answer: (outcomes) => resolve(outcomes ?? items.map((i) => ({ value: `ok ${i.id}` }))),
          fail: reject,
        });
        arrived?.();
      }),
  });
  /** Waits (bounded) until `n` batches have reached the runner. */
  const batchCount = async (n: number): Promise<void> => {
    for (let turns = 0; batches.length < n; turns++) {
      if (turns > 1000) throw new Error(`only ${batches.length} of ${n} batches reached the runner`);
      await new Promise<void>((resolve) => {
        arrived = resolve;
        setImmediate(resolve);
      });
    }
  };
  return { batcher, batches, batchCount };
}

const ids = (b: Held) => b.items.map((i) => i.id);
const turn = () => new Promise((r) => setImmediate(r));

describe('Batcher', () => {
  test('a lone item leaves at once; the items that arrive meanwhile form the next batch, in order', async () => {
    const { batcher, batches, batchCount } = held();
    const first = batcher.submit({ id: 0 });
    await batchCount(1);
    assert.deepEqual(ids(batches[0]!), [0]);
    const rest = [1, 2, 3, 4].map((id) => batcher.submit({ id }));
    await turn();
    assert.equal(batches.length, 1, 'one lane: nothing else leaves while a batch is in flight');
    batches[0]!.answer();
    assert.equal(await first, 'ok 0');
    await batchCount(2);
    assert.deepEqual(ids(batches[1]!), [1, 2, 3, 4]);
    batches[1]!.answer();
    assert.deepEqual(await Promise.all(rest), ['ok 1', 'ok 2', 'ok 3', 'ok 4']);
    await batcher.drain();
  });

  test('never exceeds its item and byte budgets; an item over the byte budget goes alone; queue order is kept', async () => {
    let seed = 7;
    const random = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    const sizes = Array.from({ length: 300 }, () => 1 + Math.floor(random() * 14));
    const seen: number[][] = [];
    const batcher = new Batcher<Item, number>({
      maxItems: 4,
      maxBytes: 10,
      bytes: (i) => i.size!,
      linger: true,
      run: async (items) => {
        seen.push(items.map((i) => i.id));
        await turn();
        return items.map((i) => ({ value: i.id * 2 }));
      },
    });
    const results = await Promise.all(sizes.map((size, id) => batcher.submit({ id, size })));
    assert.deepEqual(results, sizes.map((_, id) => id * 2), 'each item gets its own result');
    assert.deepEqual(seen.flat(), sizes.map((_, id) => id), 'batches take items in queue order');
    for (const batch of seen) {
      const bytes = batch.reduce((sum, id) => sum + sizes[id]!, 0);
      assert.ok(batch.length <= 4, `a batch of ${batch.length} items`);
      assert.ok(bytes <= 10 || batch.length === 1, `a batch of ${bytes} bytes: ${JSON.stringify(batch.map((id) => sizes[id]))}`);
    }
    assert.ok(seen.some((b) => b.length > 1), 'some batches grouped several items');
    assert.ok(seen.some((b) => b.length === 1 && sizes[b[0]!]! > 10), 'an oversized item went alone');
  });

  test('a batch stops at the first item that does not fit, rather than let smaller ones overtake it', async () => {
    const { batcher, batches, batchCount } = held({ maxBytes: 10 });
    const blocker = batcher.submit({ id: 0, size: 1 });
    await batchCount(1);
    const queued = [
      { id: 1, size: 6 },
      { id: 2, size: 6 },
      { id: 3, size: 1 },
      { id: 4, size: 30 },
      { id: 5, size: 1 },
    ].map((i) => batcher.submit(i));
    batches[0]!.answer();
    await blocker;
    for (let n = 2; n <= 5; n++) {
      await batchCount(n);
      batches[n - 1]!.answer();
    }
    await Promise.all(queued);
    assert.deepEqual(batches.slice(1).map(ids), [[1], [2, 3], [4], [5]]);
  });

  test('each item keeps its own outcome, error or value', async () => {
    const { batcher, batches, batchCount } = held({ linger: true });
    const a = batcher.submit({ id: 1 });
    const b = batcher.submit({ id: 2 });
    await batchCount(1);
    const refused = new Determinate(ErrorCode.FailedPrecondition, 'truncate past the head');
    batches[0]!.answer([{ value: 'one' }, { error: refused }]);
    assert.equal(await a, 'one');
    await assert.rejects(b, (e) => e === refused);
  });

  test('a failed batch fails all its items: an ExternalError as is, anything else Indeterminate', async () => {
    const { batcher, batches, batchCount } = held({ linger: true, what: 'Store(x): compareAndSet' });
    const busy = new Determinate(ErrorCode.Aborted, 'database is locked');
    const first = [batcher.submit({ id: 1 }), batcher.submit({ id: 2 })];
    await batchCount(1);
    batches[0]!.fail(busy);
    for (const p of first) await assert.rejects(p, (e) => e === busy);
    const crash = new Error('the worker died');
    const second = [batcher.submit({ id: 3 }), batcher.submit({ id: 4 })];
    await batchCount(2);
    batches[1]!.fail(crash);
    for (const p of second) {
      await assert.rejects(p, (e) => e instanceof Indeterminate && e.code === ErrorCode.Unknown && e.cause === crash && /^Store\(x\): compareAndSet/.test(e.message));
    }
    const third = [batcher.submit({ id: 5 }), batcher.submit({ id: 6 })];
    await batchCount(3);
    batches[2]!.answer([{ value: 'only one' }]);
    for (const p of third) await assert.rejects(p, (e) => e instanceof Indeterminate, 'a runner answering too few outcomes');
  });

  test('abort: a queued item leaves unsent (Determinate); a sent one rejects Indeterminate at once while its batch runs on', async () => {
    const { batcher, batches, batchCount } = held();
    const inFlight = new AbortController();
    const sent = batcher.submit({ id: 0 }, inFlight.signal);
    await batchCount(1);
    const waiting = new AbortController();
    const queued = batcher.submit({ id: 1 }, waiting.signal);
    const other = batcher.submit({ id: 2 });
    waiting.abort(new Error('caller gave up'));
    await assert.rejects(queued, (e) => e instanceof Determinate && e.code === ErrorCode.Cancelled);
    inFlight.abort(new Error('caller gave up'));
    await assert.rejects(sent, (e) => e instanceof Indeterminate && e.code === ErrorCode.Cancelled);
    assert.equal(batches[0]!.signal.aborted, true, 'every caller of the batch is gone: its signal fires');
    let drained = false;
    void batcher.drain().then(() => (drained = true));
    await turn();
    assert.equal(drained, false, 'drain waits for the batch still in flight');
    batches[0]!.answer();
    await batchCount(2);
    assert.deepEqual(ids(batches[1]!), [2], 'the aborted queued item never reached the runner');
    assert.equal(batches[1]!.signal.aborted, false);
    batches[1]!.answer();
    assert.equal(await other, 'ok 2');
    await batcher.drain();
    await assert.rejects(batcher.submit({ id: 3 }, AbortSignal.abort()), (e) => e instanceof Determinate);
    assert.equal(batches.length, 2);
  });

  test('a batch signal fires only once all its callers are gone', async () => {
    const { batcher, batches, batchCount } = held({ linger: true });
    const one = new AbortController();
    const a = batcher.submit({ id: 1 }, one.signal);
    const b = batcher.submit({ id: 2 });
    await batchCount(1);
    one.abort();
    await assert.rejects(a);
    assert.equal(batches[0]!.signal.aborted, false);
    batches[0]!.answer();
    assert.equal(await b, 'ok 2');
  });

  test('items with one conflict key never share a batch nor run in two lanes at once', async () => {
    const inflight = new Set<string>();
    const seen: string[][] = [];
    const batcher = new Batcher<Item, number>({
      lanes: 3,
      linger: true,
      conflictKey: (i) => i.key!,
      run: async (items) => {
        const keys = items.map((i) => i.key!);
        assert.equal(new Set(keys).size, keys.length, `one batch holds ${JSON.stringify(keys)}`);
        for (const k of keys) {
          assert.ok(!inflight.has(k), `${k} is in two batches at once`);
          inflight.add(k);
        }
        seen.push(keys);
        await turn();
        for (const k of keys) inflight.delete(k);
        return items.map((i) => ({ value: i.id }));
      },
    });
    const keys = ['a', 'a', 'b', 'a', 'c', 'b', 'a', 'd', 'd', 'a'];
    const out = await Promise.all(keys.map((key, id) => batcher.submit({ id, key })));
    assert.deepEqual(out, keys.map((_, id) => id));
    assert.ok(seen.length >= 5, 'key a alone needs five batches');
    assert.ok(seen.some((b) => b.length > 1), 'items with other keys still grouped');
  });

  test('at most `lanes` batches in flight', async () => {
    const { batcher, batches, batchCount } = held({ lanes: 2, maxItems: 1 });
    const all = [0, 1, 2, 3].map((id) => batcher.submit({ id }));
    await batchCount(2);
    await turn();
    assert.equal(batches.length, 2);
    batches[0]!.answer();
    await batchCount(3);
    assert.equal(batches.length, 3);
    batches[1]!.answer();
    batches[2]!.answer();
    await batchCount(4);
    batches[3]!.answer();
    assert.deepEqual(await Promise.all(all), ['ok 0', 'ok 1', 'ok 2', 'ok 3']);
  });

  test('linger: callers of the same turn join one batch; without it the first leaves alone', async () => {
    for (const [linger, first] of [
      [true, [0, 1, 2]],
      [false, [0]],
    ] as const) {
      const { batcher, batches, batchCount } = held({ linger });
      const all = [0, 1, 2].map((id) => batcher.submit({ id }));
      await batchCount(1);
      assert.deepEqual(ids(batches[0]!), first, `linger ${linger}`);
      batches[0]!.answer();
      if (!linger) {
        await batchCount(2);
        batches[1]!.answer();
      }
      await Promise.all(all);
    }
  });

  test('an item that waits in the queue past queueTimeoutMs leaves it, Determinate Unavailable', async () => {
    const { batcher, batches, batchCount } = held({ queueTimeoutMs: 20, what: 'Store(x): compareAndSet' });
    const stuck = batcher.submit({ id: 0 });
    await batchCount(1);
    const behind = batcher.submit({ id: 1 });
    // The runner here holds no handle and the queue timer is unref'd: a bound keeps the test alive.
    const keepAlive = setTimeout(() => {}, 10_000);
    const err = await behind.catch((e: unknown) => e);
    clearTimeout(keepAlive);
    assert.ok(err instanceof Determinate && err.code === ErrorCode.Unavailable, String(err));
    assert.match((err as ExternalError).message, /^Store\(x\): compareAndSet: not sent: it waited 20 ms/);
    batches[0]!.answer();
    assert.equal(await stuck, 'ok 0', 'a sent item is never timed out by the queue bound');
    await batcher.drain();
    assert.equal(batches.length, 1, 'the timed-out item never reached the runner');
  });

  test('bad options are a RangeError', () => {
    const run = async () => [];
    for (const bad of [{ lanes: 0 }, { maxItems: 1.5 }, { maxBytes: -1 }, { queueTimeoutMs: 0 }]) {
      assert.throws(() => new Batcher<Item, string>({ run, ...bad }), RangeError, JSON.stringify(bad));
    }
  });

  test('with queueTimeoutRestarts, a queue that keeps moving drains past the timeout; an item behind its own key still times out', async () => {
    // Batches of one, finished every 100 ms, on a queue that outlasts the 1000 ms bound
    // as a whole; the item on key `s` waits behind a batch on `s` that never finishes.
    const { batcher, batches, batchCount } = held({ queueTimeoutMs: 1000, queueTimeoutRestarts: true, lanes: 2, maxItems: 1, conflictKey: (i) => i.key ?? String(i.id) });
    const keepAlive = setTimeout(() => {}, 30_000);
    try {
      const stuck = batcher.submit({ id: 100, key: 's' });
      await batchCount(1);
      const mover = Array.from({ length: 16 }, (_, id) => batcher.submit({ id }));
      const behindStuck = batcher.submit({ id: 101, key: 's' }).catch((e: unknown) => e);
      for (let n = 2; n <= 17; n++) {
        await batchCount(n);
        await new Promise((r) => setTimeout(r, 100));
        batches[n - 1]!.answer();
      }
      assert.deepEqual(await Promise.all(mover), mover.map((_, id) => `ok ${id}`), 'every item of the moving queue was sent');
      const err = await behindStuck;
      assert.ok(err instanceof Determinate && err.code === ErrorCode.Unavailable, String(err));
      assert.match((err as Error).message, /waited 1000 ms in the queue without a batch ahead of it finishing/);
      batches[0]!.answer();
      assert.equal(await stuck, 'ok 100');
      await batcher.drain();
      assert.ok(batches.every((b) => !ids(b).includes(101)), 'the timed-out item never reached the runner');
    } finally {
      clearTimeout(keepAlive);
    }
  });
});
