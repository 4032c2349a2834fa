// Proves the exported conformance suites can fail: each store below breaks one rule
// of SPEC, and the suite must reject with a ConformanceError naming the expectation
// that caught it.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, test } from 'node:test';
import {
  CaSResult,
  ErrorCode,
  ExternalError,
  Indeterminate,
  MAX_CONSENSUS_SEQNO,
  MemBlob,
  MemConsensus,
  SegmentedBytes,
  SeqNo,
  type Blob,
  type Consensus,
} from 'persist-location';
import { ConformanceError, blobImplTest, consensusImplTest } from 'persist-location/testing';

/** A fresh MemConsensus per open, with some methods replaced. */
function brokenConsensus(patch: (inner: Consensus) => Partial<Consensus>): () => Promise<Consensus> {
  return async () => {
    const inner = new MemConsensus();
    const base: Consensus = {
      listKeys: (o) => inner.listKeys(o),
      head: (k, o) => inner.head(k, o),
      compareAndSet: (k, e, n, o) => inner.compareAndSet(k, e, n, o),
      scan: (k, f, l, o) => inner.scan(k, f, l, o),
      truncate: (k, s, o) => inner.truncate(k, s, o),
      close: () => inner.close(),
      [Symbol.asyncDispose]: () => inner.close(),
    };
    return { ...base, ...patch(inner) };
  };
}

/** MemBlob locations shared per path (as the suite requires), with some methods replaced. */
function brokenBlob(patch: (inner: Blob) => Partial<Blob>, share = true): (path: string) => Promise<Blob> {
  const run = randomUUID();
  return async (path) => {
    const inner = new MemBlob(share ? { name: `${run}/${path}` } : {});
    const base: Blob = {
      get: (k, o) => inner.get(k, o),
      list: (p, o) => inner.list(p, o),
      set: (k, v, o) => inner.set(k, v, o),
      delete: (k, o) => inner.delete(k, o),
      restore: (k, o) => inner.restore(k, o),
      close: () => inner.close(),
      [Symbol.asyncDispose]: () => inner.close(),
    };
    return { ...base, ...patch(inner) };
  };
}

/** A SeqNo whose value can be overwritten, as a careless backend's own objects could be. */
function mutableSeqNo(value: bigint): SeqNo {
  return Object.create(SeqNo.prototype, { value: { value, writable: true, enumerable: true } }) as SeqNo;
}

/**
 * MemBlob locations where `a/b` is not a location of its own but the keys under `b/` of
 * location `a`: the way an encoding that is not prefix-free shares objects.
 */
function aliasingBlob(): (path: string) => Promise<Blob> {
  const run = randomUUID();
  return async (path) => {
    const [top, ...rest] = path.split('/');
    const inner = new MemBlob({ name: `${run}/${top}` });
    if (rest.length === 0) return inner;
    const under = `${rest.join('/')}/`;
    return {
      get: (k, o) => inner.get(under + k, o),
      set: (k, v, o) => inner.set(under + k, v, o),
      delete: (k, o) => inner.delete(under + k, o),
      restore: (k, o) => inner.restore(under + k, o),
      list: async function* (p = '', o) {
        for await (const m of inner.list(under + p, o)) yield { ...m, key: m.key.slice(under.length) };
      },
      close: () => inner.close(),
      [Symbol.asyncDispose]: () => inner.close(),
    };
  };
}

/** Lower-cases strings only, so invalid arguments still reach the real validation. */
const lower = <T>(k: T): T => (typeof k === 'string' ? (k.toLowerCase() as T) : k);

/** The stored arrays a broken blob hands out, shared by its handles like a real cache would be. */
const cache = new Map<string, SegmentedBytes | undefined>();

async function failsWith(run: Promise<void>, expectation: string): Promise<void> {
  await assert.rejects(run, (err: Error) => {
    assert.ok(err instanceof ConformanceError, `wanted a ConformanceError, got ${err.stack}`);
    assert.ok(err.message.includes(expectation), `the failure names ${JSON.stringify(expectation)}: ${err.message}`);
    return true;
  });
}

describe('consensusImplTest fails stores that break SPEC', () => {
  const cases: [string, (c: Consensus) => Partial<Consensus>, string][] = [
    ['a CaS expecting nothing overwrites a written key', (c) => ({
      compareAndSet: async (k, e, n, o) => {
        const head = await c.head(k);
        return c.compareAndSet(k, e ?? (head && head.seqno.value < n.seqno.value ? head.seqno : undefined), n, o);
      },
    }), '2: CaS expecting nothing on a written key is ExpectationMismatch'],
    ['an invalid CaS rejects Indeterminate', (c) => ({
      compareAndSet: (k, e, n, o) =>
        c.compareAndSet(k, e, n, o).catch((err: unknown) => {
          throw err instanceof ExternalError && err.code === ErrorCode.InvalidArgument ? new Indeterminate(ErrorCode.Unknown, err.message) : err;
        }),
    }), '6: CaS with new == expected rejects'],
    ['scan ignores its limit', (c) => ({ scan: (k, f, _l, o) => c.scan(k, f, Number.MAX_SAFE_INTEGER, o) }), '7: scan from v0 limit 1'],
    ['scan returns versions descending', (c) => ({ scan: async (k, f, l, o) => (await c.scan(k, f, l, o)).reverse() }), '7: scan from v5'],
    ['truncate reports nothing deleted', (c) => ({ truncate: async (k, s, o) => (await c.truncate(k, s, o), 0) }), '8: truncate(v6) deletes one version'],
    ['truncate of an empty key succeeds', (c) => ({ truncate: (k, s, o) => c.truncate(k, s, o).catch(() => 0) }), '1: truncate of a fresh key rejects'],
    ['values are cut at 8 KiB', (c) => ({ compareAndSet: (k, e, n, o) => c.compareAndSet(k, e, { seqno: n.seqno, data: n.data.subarray(0, 8192) }, o) }), '10: the 10 KiB value reads back exactly'],
    ['seqnos above 2^63-1 are accepted', (c) => ({
      compareAndSet: async (k, e, n, o) => (n.seqno.value > MAX_CONSENSUS_SEQNO ? CaSResult.Committed : c.compareAndSet(k, e, n, o)),
    }), '11: seqno 2^63 rejects InvalidArgument'],
    ['head ignores its signal', (c) => ({ head: (k) => c.head(k) }), 'head with an already aborted signal'],
    ['keys are folded to lower case', (c) => ({
      head: (k, o) => c.head(lower(k), o),
      compareAndSet: (k, e, n, o) => c.compareAndSet(lower(k), e, n, o),
      scan: (k, f, l, o) => c.scan(lower(k), f, l, o),
      truncate: (k, s, o) => c.truncate(lower(k), s, o),
    }), 'hostile key "case" commits'],
    ['head hands out the stored array', (c) => {
      const cache = new Map<string, Awaited<ReturnType<Consensus['head']>>>();
      return {
        head: async (k, o) => {
          if (o?.signal?.aborted || typeof k !== 'string') return c.head(k, o);
          if (!cache.has(k)) cache.set(k, await c.head(k, o));
          return cache.get(k);
        },
        compareAndSet: async (k, e, n, o) => (cache.delete(k), c.compareAndSet(k, e, n, o)),
        truncate: async (k, s, o) => (cache.delete(k), c.truncate(k, s, o)),
      };
    }, 'isolation: mutating a returned array does not change the stored value'],
    ['CaS reads its argument after the call returns', (c) => ({
      compareAndSet: async (k, e, n, o) => {
        await new Promise((resolve) => setImmediate(resolve));
        return c.compareAndSet(k, e, n, o);
      },
    }), "isolation: changing the caller's bytes or version object while CaS is in flight"],
    ['head hands out one mutable seqno object per key', (c) => {
      const handedOut = new Map<string, SeqNo>();
      return {
        head: async (k, o) => {
          const head = await c.head(k, o);
          if (head === undefined || typeof k !== 'string') return head;
          const mine = handedOut.get(k);
          if (mine === undefined || mine.value < head.seqno.value) handedOut.set(k, mutableSeqNo(head.seqno.value));
          return { seqno: handedOut.get(k)!, data: head.data };
        },
      };
    }, "seqno isolation: changing a returned head's seqno does not change the stored head"],
  ];
  for (const [name, patch, expectation] of cases) {
    test(name, () => failsWith(consensusImplTest(brokenConsensus(patch)), expectation));
  }

  test('the same harness without a patch passes', () => consensusImplTest(brokenConsensus(() => ({}))));
});

describe('blobImplTest fails stores that break SPEC', () => {
  const cases: [string, (b: Blob) => Partial<Blob>, string, boolean?][] = [
    ['handles on one path do not share data', () => ({}), '2: foo/bar/k0 is visible through the second handle', false],
    ['delete of an empty value returns undefined', (b) => ({ delete: async (k, o) => (await b.delete(k, o)) || undefined }), '4: deleting an empty value returns 0'],
    ['restore always succeeds', () => ({ restore: async () => {} }), '5:'],
    ['list ignores its prefix', (b) => ({ list: (_p, o) => b.list('', o) }), '7: list("k-prefix") gives exactly those keys'],
    ['list treats the prefix as a directory', (b) => ({
      list: async function* (p = '', o) {
        for await (const m of b.list(p, o)) if (p === '' || m.key.slice(p.length).startsWith('/') || p.endsWith('/')) yield m;
      },
    }), '7: list("k-prefix") gives exactly those keys'],
    ['large values are cut at 1 MiB', (b) => ({ set: (k, v, o) => b.set(k, v instanceof Uint8Array ? v.subarray(0, 1 << 20) : v, o) }), 'the large value has its full length'],
    ['get ignores its signal', (b) => ({ get: (k) => b.get(k) }), 'get with an already aborted signal'],
    ['get hands out the stored array', (b) => {
      return {
        get: async (k, o) => {
          if (o?.signal?.aborted || typeof k !== 'string') return b.get(k, o);
          if (!cache.has(k)) cache.set(k, await b.get(k, o));
          return cache.get(k);
        },
        set: async (k, v, o) => (cache.delete(k), b.set(k, v, o)),
        delete: async (k, o) => (cache.delete(k), b.delete(k, o)),
        restore: async (k, o) => (cache.delete(k), b.restore(k, o)),
      };
    }, 'mutating a returned array does not change the stored value'],
    ['keys are folded to lower case', (b) => ({
      get: (k, o) => b.get(lower(k), o),
      set: (k, v, o) => b.set(lower(k), v, o),
      delete: (k, o) => b.delete(lower(k), o),
      list: async function* (p = '', o) {
        yield* b.list(lower(p), o);
      },
    }), 'hostile key "Case" reads back its own value'],
    ['set reads the caller\'s array after the call returns', (b) => ({
      set: async (k, v, o) => {
        await new Promise((resolve) => setImmediate(resolve));
        return b.set(k, v, o);
      },
    }), "mutating the caller's array while set is in flight does not change the stored value"],
  ];
  for (const [name, patch, expectation, share] of cases) {
    test(name, () => failsWith(blobImplTest(brokenBlob(patch, share ?? true), { largeValueBytes: 2 << 20 }), expectation));
  }

  test('a nested location that is a key prefix of its parent fails the nesting check', () =>
    failsWith(blobImplTest(aliasingBlob(), { largeValueBytes: 2 << 20 }), 'nesting (data, outer opened first): the outer location lists only its own key'));

  test('the same harness without a patch passes', () => blobImplTest(brokenBlob(() => ({})), { largeValueBytes: 2 << 20 }));
});
