// The wrapper shape: identity, counting and composed wrappers pass the conformance
// suites over memory stores; listings and close forward exactly.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, test } from 'node:test';
import {
  CaSResult,
  MemBlob,
  MemConsensus,
  SeqNo,
  stepwise,
  wrapBlob,
  wrapConsensus,
  WrappedBlob,
  WrappedConsensus,
  type Blob,
  type BlobInterceptor,
  type Consensus,
  type ConsensusInterceptor,
} from 'persist-location';
import { blobImplTest, consensusImplTest } from 'persist-location/testing';

/** A wrapper that counts every call, listing and close that passes through it. */
function counting() {
  const calls = new Map<string, number>();
  const bump = (name: string) => calls.set(name, (calls.get(name) ?? 0) + 1);
  const consensus: ConsensusInterceptor = {
    around: (op, _args, run) => {
      bump(op);
      return run();
    },
    async *listKeys(forward, opts) {
      bump('listKeys');
      yield* forward(opts);
    },
    close(forward) {
      bump('close');
      return forward();
    },
  };
  const blob: BlobInterceptor = {
    around: (op, _args, run) => {
      bump(op);
      return run();
    },
    async *list(forward, prefix, opts) {
      bump('list');
      yield* forward(prefix, opts);
    },
    close(forward) {
      bump('close');
      return forward();
    },
  };
  return { calls, consensus, blob };
}

/**
 * A wrapper that changes a call on its way in (the data is copied, not aliased) and
 * passes malformed arguments on untouched, for the inner store to refuse.
 */
const copyingWrites: ConsensusInterceptor = {
  compareAndSet: (forward, key, expected, next, opts) =>
    forward(key, expected, next?.data instanceof Uint8Array ? { seqno: next.seqno, data: new Uint8Array(next.data) } : next, opts),
};

function sharedBlobs(wrap: (inner: Blob) => Blob): (path: string) => Promise<Blob> {
  const run = randomUUID();
  return async (path) => wrap(new MemBlob({ name: `${run}/${path}` }));
}

describe('wrapConsensus / wrapBlob pass the conformance suites', () => {
  test('an identity wrapper', async () => {
    await consensusImplTest(async () => wrapConsensus(new MemConsensus(), {}));
    await blobImplTest(sharedBlobs((inner) => wrapBlob(inner, {})));
  });

  test('a counting wrapper, which sees every operation', async () => {
    const c = counting();
    await consensusImplTest(async () => wrapConsensus(new MemConsensus(), c.consensus));
    for (const op of ['head', 'compareAndSet', 'scan', 'truncate', 'listKeys', 'close']) {
      assert.ok((c.calls.get(op) ?? 0) > 0, `${op} was never counted: ${JSON.stringify([...c.calls])}`);
    }
    const b = counting();
    await blobImplTest(sharedBlobs((inner) => wrapBlob(inner, b.blob)));
    for (const op of ['get', 'set', 'delete', 'restore', 'list', 'close']) {
      assert.ok((b.calls.get(op) ?? 0) > 0, `${op} was never counted: ${JSON.stringify([...b.calls])}`);
    }
  });

  test('two wrappers composed, in either order', async () => {
    const outer = counting();
    const inner = counting();
    await consensusImplTest(async () => wrapConsensus(wrapConsensus(new MemConsensus(), copyingWrites), outer.consensus));
    await consensusImplTest(async () => wrapConsensus(wrapConsensus(new MemConsensus(), inner.consensus), copyingWrites));
    assert.ok((outer.calls.get('compareAndSet') ?? 0) > 0 && (inner.calls.get('compareAndSet') ?? 0) > 0);
    const a = counting();
    const z = counting();
    await blobImplTest(sharedBlobs((b) => wrapBlob(wrapBlob(b, a.blob), z.blob)));
    assert.deepEqual([...a.calls].sort(), [...z.calls].sort(), 'both layers saw the same calls');
  });
});

describe('the wrapper shape', () => {
  /** A Consensus whose listing records whether it was released, and which counts closes. */
  function spy() {
    const state = { released: false, closes: 0 };
    const mem = new MemConsensus();
    const inner: Consensus = {
      async *listKeys() {
        try {
          yield 'a';
          yield 'b';
          yield 'c';
        } finally {
          state.released = true;
        }
      },
      head: (k, o) => mem.head(k, o),
      compareAndSet: (k, e, n, o) => mem.compareAndSet(k, e, n, o),
      scan: (k, f, l, o) => mem.scan(k, f, l, o),
      truncate: (k, s, o) => mem.truncate(k, s, o),
      close: async () => {
        state.closes++;
      },
      [Symbol.asyncDispose]: async () => {
        state.closes++;
      },
    };
    return { inner, state };
  }

  test('a break out of a listing releases the inner listing, forwarded, hooked or stepwise', async () => {
    const steps: string[] = [];
    const shapes: [string, (c: Consensus) => Consensus][] = [
      ['forwarded', (c) => wrapConsensus(c, {})],
      ['hooked', (c) => wrapConsensus(c, counting().consensus)],
      ['composed', (c) => wrapConsensus(wrapConsensus(c, counting().consensus), {})],
      [
        'stepwise',
        (c) =>
          wrapConsensus(c, {
            listKeys: (forward, opts) =>
              stepwise(forward(opts), (run) => {
                steps.push('step');
                return run();
              }),
          }),
      ],
    ];
    for (const [name, wrap] of shapes) {
      const { inner, state } = spy();
      for await (const key of wrap(inner).listKeys()) {
        assert.equal(key, 'a');
        break;
      }
      assert.ok(state.released, `${name}: the inner listing was not released by the break`);
    }
    assert.deepEqual(steps, ['step', 'step'], 'stepwise ran the first next and the return');
  });

  test('close closes the inner store once, however often the wrapper (or a composition) is closed or disposed', async () => {
    const { inner, state } = spy();
    const once = wrapConsensus(inner, {});
    await Promise.all([once.close(), once.close(), once[Symbol.asyncDispose]()]);
    assert.equal(state.closes, 1);
    const second = spy();
    const c = counting();
    const composed = wrapConsensus(wrapConsensus(second.inner, c.consensus), counting().consensus);
    await composed.close();
    await composed[Symbol.asyncDispose]();
    assert.equal(second.state.closes, 1);
    assert.equal(c.calls.get('close'), 1);
  });

  test('around sees the op and arguments and runs the method hook inside it; hooks may call forward several times', async () => {
    const seen: string[] = [];
    const mem = new MemConsensus();
    const wrapped = wrapConsensus(mem, {
      around: async (op, args, run) => {
        seen.push(`${op}(${String(args[0])}) in`);
        const out = await run();
        seen.push(`${op} out`);
        return out;
      },
      compareAndSet: async (forward, key, expected, next, opts) => {
        seen.push('hook');
        const first = await forward(key, expected, next, opts);
        return first === CaSResult.Committed ? first : forward(key, expected, next, opts);
      },
    });
    assert.equal(await wrapped.compareAndSet('k', undefined, { seqno: new SeqNo(1), data: new Uint8Array([1]) }), CaSResult.Committed);
    assert.equal((await wrapped.head('k'))?.seqno.value, 1n);
    assert.deepEqual(seen, ['compareAndSet(k) in', 'hook', 'compareAndSet out', 'head(k) in', 'head out']);
  });

  test('a hook that throws rejects the call instead of throwing', async () => {
    const boom = new Error('hook failed');
    const wrapped = wrapBlob(new MemBlob(), {
      get: () => {
        throw boom;
      },
      around: (op, _a, run) => {
        if (op === 'delete') throw boom;
        return run();
      },
      close: () => {
        throw boom;
      },
    });
    const calls = [() => wrapped.get('k'), () => wrapped.delete('k'), () => wrapped.close()];
    for (const call of calls) {
      let promise: Promise<unknown> | undefined;
      assert.doesNotThrow(() => (promise = call()));
      await assert.rejects(promise!, (e) => e === boom);
    }
    await wrapped.set('k', new Uint8Array([1]));
  });

  test("a blob's published key cap shows through, and nothing is invented when there is none", async () => {
    const capped = Object.assign(new MemBlob(), {});
    Object.defineProperty(capped, 'maxKeyBytes', { get: () => 700 });
    const wrapped = wrapBlob(wrapBlob(capped, {}), {}) as Blob & { maxKeyBytes?: number };
    assert.equal(wrapped.maxKeyBytes, 700);
    const mem = new MemBlob();
    const plain: Blob = {
      get: (k, o) => mem.get(k, o),
      list: (p, o) => mem.list(p, o),
      set: (k, v, o) => mem.set(k, v, o),
      delete: (k, o) => mem.delete(k, o),
      restore: (k, o) => mem.restore(k, o),
      close: () => mem.close(),
      [Symbol.asyncDispose]: () => mem.close(),
    };
    assert.equal('maxKeyBytes' in wrapBlob(plain, {}), false);
  });

  test('step sees each step of a listing with its name and arguments, and starts the listing inside the first step', async () => {
    const steps: string[] = [];
    const { inner, state } = spy();
    let started = 0;
    const wrapped = wrapConsensus(inner, {
      listKeys: (forward, opts) => {
        started++;
        return forward(opts);
      },
      step: async (op, args, run) => {
        steps.push(`${op}(${args.length}) in`);
        const out = await run();
        steps.push('out');
        return out;
      },
    });
    const listing = wrapped.listKeys({});
    assert.equal(started, 0, 'nothing starts before the first step');
    const seen: string[] = [];
    for await (const key of listing) {
      seen.push(key);
      if (seen.length === 2) break;
    }
    assert.deepEqual(seen, ['a', 'b']);
    assert.equal(started, 1);
    assert.ok(state.released, 'the break reached the inner listing');
    assert.deepEqual(steps, ['listKeys(1) in', 'out', 'listKeys(1) in', 'out', 'listKeys(1) in', 'out'], 'two nexts and the return');
  });

  test('a step that refuses rejects the iteration, and the inner listing is never started', async () => {
    const boom = new Error('step refused');
    let started = false;
    const blob = wrapBlob(new MemBlob(), {
      list: (forward, prefix, opts) => {
        started = true;
        return forward(prefix, opts);
      },
      step: () => {
        throw boom;
      },
    });
    const it = blob.list('p')[Symbol.asyncIterator]();
    let next: Promise<unknown> | undefined;
    assert.doesNotThrow(() => (next = it.next()));
    await assert.rejects(next!, (e) => e === boom);
    assert.equal(started, false);
  });

  test('steps of composed wrappers nest, the outer one outside', async () => {
    const order: string[] = [];
    const layer = (name: string): ConsensusInterceptor => ({
      step: async (_op, _args, run) => {
        order.push(`${name} in`);
        try {
          return await run();
        } finally {
          order.push(`${name} out`);
        }
      },
    });
    const { inner } = spy();
    const wrapped = wrapConsensus(wrapConsensus(inner, layer('inner')), layer('outer'));
    for await (const key of wrapped.listKeys()) {
      assert.equal(key, 'a');
      break;
    }
    assert.deepEqual(order.slice(0, 4), ['outer in', 'inner in', 'inner out', 'outer out']);
  });

  test('a wrapper can be a class with state of its own', async () => {
    class Counted extends WrappedConsensus {
      writes = 0;
      constructor(inner: Consensus) {
        super(inner, {
          compareAndSet: (forward, ...args) => {
            this.writes++;
            return forward(...args);
          },
        });
      }
    }
    const handles: Counted[] = [];
    await consensusImplTest(async () => {
      handles.push(new Counted(new MemConsensus()));
      return handles[handles.length - 1]!;
    });
    assert.ok(handles.every((h) => h instanceof WrappedConsensus));
    assert.ok(handles.some((h) => h.writes > 0), 'the hook counted on the instance');
    const blob = new WrappedBlob(new MemBlob(), {});
    await blob.set('k', new Uint8Array([1]));
    await blob[Symbol.asyncDispose]();
    await assert.rejects(blob.get('k'), /is closed/);
  });

  test('a closed inner store still answers as closed through the wrapper', async () => {
    const wrapped = wrapConsensus(new MemConsensus(), {});
    await wrapped.close();
    await assert.rejects(wrapped.head('k'), /is closed/);
  });
});
