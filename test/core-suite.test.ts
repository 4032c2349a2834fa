// Proves the exported conformance suites can fail: each store below (a memory store
// behind a wrapper that changes only what it breaks) breaks one rule of SPEC, and
// the suite must reject with a ConformanceError naming the case and the expectation
// that caught it.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, test } from 'node:test';
import {
  CaSResult,
  Determinate,
  ErrorCode,
  ExternalError,
  Indeterminate,
  MAX_CONSENSUS_SEQNO,
  MemBlob,
  MemConsensus,
  SegmentedBytes,
  SeqNo,
  wrapBlob,
  wrapConsensus,
  type Blob,
  type BlobInterceptor,
  type BlobMetadata,
  type Consensus,
  type ConsensusInterceptor,
} from 'persist-location';
import {
  ConformanceError,
  blobCases,
  blobImplTest,
  consensusCases,
  consensusImplTest,
  type BlobImplTestOptions,
  type ConsensusImplTestOptions,
  type SuiteCase,
} from 'persist-location/testing';

/** A fresh MemConsensus per open, wrapped in the interceptor that breaks it. */
function brokenConsensus(patch: (inner: Consensus) => ConsensusInterceptor): () => Promise<Consensus> {
  return async () => {
    const inner = new MemConsensus();
    return wrapConsensus(inner, patch(inner));
  };
}

/** MemBlob locations shared per path (as the suite requires), each handle wrapped in the interceptor that breaks it. */
function brokenBlob(patch: (inner: Blob) => BlobInterceptor, { share = true, keepDeleted = false } = {}): (path: string) => Promise<Blob> {
  const run = randomUUID();
  return async (path) => {
    const inner = new MemBlob(share ? { name: `${run}/${path}`, keepDeleted } : { keepDeleted });
    return wrapBlob(inner, patch(inner));
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
    return wrapBlob(inner, {
      get: (forward, k, o) => forward(under + k, o),
      set: (forward, k, v, o) => forward(under + k, v, o),
      delete: (forward, k, o) => forward(under + k, o),
      restore: (forward, k, o) => forward(under + k, o),
      list: async function* (forward, p = '', o) {
        for await (const m of forward(under + p, o)) yield { ...m, key: m.key.slice(under.length) };
      },
    });
  };
}

/** Lower-cases strings only, so invalid arguments still reach the real validation. */
const lower = <T>(k: T): T => (typeof k === 'string' ? (k.toLowerCase() as T) : k);

/** Whether `o` carries a real, already aborted signal (a fake one must still reach validation). */
const abortedSignal = (o: { signal?: AbortSignal } | undefined) => o?.signal instanceof AbortSignal && o.signal.aborted;

/** A connection pool of `size`, as a backend's driver keeps one. */
class Pool {
  #free: number;
  readonly #waiting: (() => void)[] = [];

  constructor(size: number) {
    this.#free = size;
  }

  async take(): Promise<void> {
    if (this.#free > 0) this.#free--;
    else await new Promise<void>((resolve) => this.#waiting.push(resolve));
  }

  give(): void {
    const next = this.#waiting.shift();
    if (next === undefined) this.#free++;
    else next();
  }

  /** Runs `work` on a connection; at once when one is free, so `work` sees its arguments as they were passed. */
  with<T>(work: () => Promise<T>): Promise<T> {
    const run = () => work().finally(() => this.give());
    if (this.#free > 0) {
      this.#free--;
      return run();
    }
    return new Promise<void>((resolve) => this.#waiting.push(resolve)).then(run);
  }
}

/**
 * A listing that takes a connection from `pool` for as long as it runs. With `leak`,
 * breaking out of the loop ends the listing but keeps its connection; without, the
 * listing ignores the break and would go on yielding.
 */
function listing<T>(pool: Pool, list: () => AsyncIterable<T>, broken: 'leaks its connection' | 'ignores return'): AsyncIterable<T> {
  return {
    [Symbol.asyncIterator]() {
      let inner: AsyncIterator<T> | undefined;
      let done = false;
      return {
        async next(): Promise<IteratorResult<T>> {
          if (done) return { done: true, value: undefined };
          if (inner === undefined) {
            await pool.take();
            inner = list()[Symbol.asyncIterator]();
          }
          const r = await inner.next();
          if (r.done) {
            done = true;
            pool.give();
          }
          return r;
        },
        async return(): Promise<IteratorResult<T>> {
          if (broken === 'leaks its connection') done = true;
          return { done: true, value: undefined };
        },
      };
    },
  };
}

/** Yields what `list` yields, but only the first `n` items: a listing that never asks for the next page. */
async function* firstPage<T>(list: AsyncIterable<T>, n: number): AsyncGenerator<T> {
  let seen = 0;
  for await (const item of list) {
    if (++seen > n) return;
    yield item;
  }
}

/** Yields what `list` yields, its `n`th item twice: a listing that repeats a page boundary. */
async function* repeatsItem<T>(list: AsyncIterable<T>, n: number): AsyncGenerator<T> {
  let seen = 0;
  for await (const item of list) {
    yield item;
    if (++seen === n) yield item;
  }
}

/** The one case whose name starts with `prefix`. */
function caseNamed<C>(cases: readonly SuiteCase<C>[], prefix: string): SuiteCase<C> {
  const found = cases.filter((c) => c.name.startsWith(prefix));
  assert.equal(found.length, 1, `exactly one case starts with ${JSON.stringify(prefix)}: ${found.map((c) => c.name).join(' | ')}`);
  return found[0]!;
}

async function failsWith(run: Promise<void>, caseName: string, expectation: string): Promise<void> {
  await assert.rejects(run, (err: Error) => {
    assert.ok(err instanceof ConformanceError, `wanted a ConformanceError, got ${err.stack}`);
    assert.equal(err.caseName, caseName, `the failure names its case: ${err.message}`);
    assert.ok(err.message.includes(JSON.stringify(caseName)), `the message names the case: ${err.message}`);
    assert.ok(err.message.includes(expectation), `the failure names ${JSON.stringify(expectation)}: ${err.message}`);
    return true;
  });
}

/**
 * A store broken in one way. `caseName` (a unique prefix) is the first case of the
 * whole suite to catch it; with `only`, the suite runs just that case (an earlier case
 * catches it too, and this shows the later one would as well).
 */
interface Broken<S, I, O> {
  name: string;
  patch: (inner: S) => I;
  caseName: string;
  expectation: string;
  only?: boolean;
  options?: O;
}

describe('consensusImplTest fails stores that break SPEC', () => {
  const broken: Broken<Consensus, ConsensusInterceptor, ConsensusImplTestOptions>[] = [
    {
      name: 'a CaS expecting nothing overwrites a written key',
      patch: (c) => ({
        compareAndSet: async (forward, k, e, n, o) => {
          const head = await c.head(k);
          return forward(k, e ?? (head && head.seqno.value < n.seqno.value ? head.seqno : undefined), n, o);
        },
      }),
      caseName: '2:',
      expectation: 'CaS expecting nothing on a written key is ExpectationMismatch',
    },
    {
      name: 'an invalid CaS rejects Indeterminate',
      patch: () => ({
        compareAndSet: (forward, k, e, n, o) =>
          forward(k, e, n, o).catch((err: unknown) => {
            throw err instanceof ExternalError && err.code === ErrorCode.InvalidArgument ? new Indeterminate(ErrorCode.Unknown, err.message) : err;
          }),
      }),
      caseName: '6:',
      expectation: 'CaS with new == expected rejects',
    },
    { name: 'scan ignores its limit', patch: () => ({ scan: (forward, k, f, _l, o) => forward(k, f, Number.MAX_SAFE_INTEGER, o) }), caseName: '7:', expectation: 'scan from v0 limit 1' },
    { name: 'scan returns versions descending', patch: () => ({ scan: async (forward, k, f, l, o) => (await forward(k, f, l, o)).reverse() }), caseName: '7:', expectation: 'scan from v5' },
    {
      name: 'truncate reports nothing deleted',
      patch: () => ({ truncate: async (forward, k, s, o) => (await forward(k, s, o), 0) }),
      caseName: '8:',
      expectation: 'truncate(v6) deletes one version',
    },
    { name: 'truncate of an empty key succeeds', patch: () => ({ truncate: (forward, k, s, o) => forward(k, s, o).catch(() => 0) }), caseName: '1:', expectation: 'truncate of a fresh key rejects' },
    {
      name: 'values are cut at 8 KiB',
      patch: () => ({ compareAndSet: (forward, k, e, n, o) => forward(k, e, { seqno: n.seqno, data: n.data.subarray(0, 8192) }, o) }),
      caseName: '10:',
      expectation: 'the 10 KiB value reads back exactly',
    },
    {
      name: 'seqnos above 2^63-1 are accepted',
      patch: () => ({ compareAndSet: async (forward, k, e, n, o) => (n.seqno.value > MAX_CONSENSUS_SEQNO ? CaSResult.Committed : forward(k, e, n, o)) }),
      caseName: '11:',
      expectation: 'seqno 2^63 rejects InvalidArgument',
    },
    {
      name: 'an empty value reads back as no version',
      patch: () => ({ head: async (forward, k, o) => ((h) => (h?.data.byteLength === 0 ? undefined : h))(await forward(k, o)) }),
      caseName: '10:',
      expectation: 'the empty value reads back empty',
    },
    {
      name: 'an empty value reads back as no version (its own case)',
      patch: () => ({ head: async (forward, k, o) => ((h) => (h?.data.byteLength === 0 ? undefined : h))(await forward(k, o)) }),
      caseName: 'empty values:',
      expectation: 'head of a key holding an empty value is that version',
      only: true,
    },
    {
      name: 'scan takes limit 0 as "no limit"',
      patch: () => ({ scan: (forward, k, f, l, o) => forward(k, f, l === 0 ? Number.MAX_SAFE_INTEGER : l, o) }),
      caseName: 'limits: a scan limit',
      expectation: 'scan rejects limit 0',
    },
    {
      name: 'scan refuses limits of 2^63 and above, as a driver binding 64-bit integers does',
      patch: () => ({
        scan: (forward, k, f, l, o) => (Number.isInteger(l) && l >= 2 ** 63 ? Promise.reject(new Determinate(ErrorCode.Unknown, 'the bound bigint is too big')) : forward(k, f, l, o)),
      }),
      caseName: 'limits: any positive integer',
      expectation: 'scan accepts limit 9223372036854776000',
    },
    {
      name: 'SCAN_ALL stops at 20 versions',
      patch: () => ({ scan: (forward, k, f, l, o) => forward(k, f, Number.isInteger(l) ? Math.min(l, 20) : l, o) }),
      caseName: 'limits: SCAN_ALL',
      expectation: 'scan with SCAN_ALL returns every version, ascending',
    },
    {
      name: 'head reads storage for an over-long key',
      patch: () => ({ head: (forward, k, o) => (typeof k === 'string' && Buffer.byteLength(k) > 1024 ? Promise.resolve(undefined) : forward(k, o)) }),
      caseName: 'invalid arguments: bad keys',
      expectation: 'head rejects a 1025-byte key',
    },
    {
      name: 'listKeys yields only its first page of 1000 keys',
      patch: () => ({ listKeys: (forward, o) => firstPage(forward(o), 1000) }),
      caseName: 'listing: 1200 keys',
      expectation: 'listKeys yields 1200 keys, each once',
    },
    {
      name: 'listKeys repeats the last key of a page of 1000',
      patch: () => ({ listKeys: (forward, o) => repeatsItem(forward(o), 1000) }),
      caseName: 'listing: 1200 keys',
      expectation: 'listKeys yields 1200 keys, each once',
    },
    {
      name: 'a listing goes on after the loop breaks',
      patch: () => {
        const pool = new Pool(4);
        return { listKeys: (forward, o) => listing(pool, () => forward(o), 'ignores return') };
      },
      caseName: 'listing: a loop that breaks early',
      expectation: 'after the loop breaks, the listing yields nothing more',
    },
    {
      name: 'a listing broken off keeps its connection',
      patch: () => {
        const pool = new Pool(4);
        return {
          listKeys: (forward, o) => listing(pool, () => forward(o), 'leaks its connection'),
          head: (forward, k, o) => pool.with(() => forward(k, o)),
          compareAndSet: (forward, k, e, n, o) => pool.with(() => forward(k, e, n, o)),
        };
      },
      caseName: 'listing: a loop that breaks early',
      expectation: '16 listings broken off at once end',
      options: { waitMs: 1000 },
    },
    {
      name: 'head ignores its signal',
      patch: () => ({ head: (forward, k, o) => forward(k, abortedSignal(o) ? undefined : o) }),
      caseName: 'abort:',
      expectation: 'head aborted with an Error rejects Determinate Cancelled',
    },
    {
      name: 'an aborted scan rejects Indeterminate',
      patch: () => ({
        scan: (forward, k, f, l, o) => (abortedSignal(o) ? Promise.reject(new Indeterminate(ErrorCode.Cancelled, 'aborted')) : forward(k, f, l, o)),
      }),
      caseName: 'abort:',
      expectation: 'scan aborted with an Error rejects Determinate Cancelled',
    },
    {
      name: 'an aborted truncate truncates, then reports the abort',
      patch: () => ({
        truncate: async (forward, k, s, o) => {
          if (!abortedSignal(o)) return forward(k, s, o);
          await forward(k, s);
          throw new Determinate(ErrorCode.Cancelled, 'aborted');
        },
      }),
      caseName: 'abort:',
      expectation: 'aborted CaS and truncate changed nothing',
    },
    {
      name: 'keys are folded to lower case',
      patch: () => ({
        head: (forward, k, o) => forward(lower(k), o),
        compareAndSet: (forward, k, e, n, o) => forward(lower(k), e, n, o),
        scan: (forward, k, f, l, o) => forward(lower(k), f, l, o),
        truncate: (forward, k, s, o) => forward(lower(k), s, o),
      }),
      caseName: 'hostile keys:',
      expectation: 'hostile key "case" commits',
    },
    {
      name: 'head hands out the stored array',
      patch: () => {
        const cache = new Map<string, Awaited<ReturnType<Consensus['head']>>>();
        return {
          head: async (forward, k, o) => {
            if (o?.signal?.aborted || typeof k !== 'string') return forward(k, o);
            if (!cache.has(k)) cache.set(k, await forward(k, o));
            return cache.get(k);
          },
          compareAndSet: async (forward, k, e, n, o) => (cache.delete(k), forward(k, e, n, o)),
          truncate: async (forward, k, s, o) => (cache.delete(k), forward(k, s, o)),
        };
      },
      caseName: "isolation: stored bytes are neither the caller's array",
      expectation: 'mutating a returned array does not change the stored value',
    },
    {
      name: 'CaS reads its argument after the call returns',
      patch: () => ({
        compareAndSet: async (forward, k, e, n, o) => {
          await new Promise((resolve) => setImmediate(resolve));
          return forward(k, e, n, o);
        },
      }),
      caseName: "isolation: changing a CaS's arguments",
      expectation: "changing the caller's bytes or version object while CaS is in flight",
    },
    {
      name: 'head hands out one mutable seqno object per key',
      patch: () => {
        const handedOut = new Map<string, SeqNo>();
        return {
          head: async (forward, k, o) => {
            const head = await forward(k, o);
            if (head === undefined || typeof k !== 'string') return head;
            const mine = handedOut.get(k);
            if (mine === undefined || mine.value < head.seqno.value) handedOut.set(k, mutableSeqNo(head.seqno.value));
            return { seqno: handedOut.get(k)!, data: head.data };
          },
        };
      },
      caseName: 'isolation: seqnos',
      expectation: "changing a returned head's seqno does not change the stored head",
    },
  ];
  for (const b of broken) {
    test(b.name, async () => {
      const kase = caseNamed(consensusCases, b.caseName);
      const options = { ...b.options, ...(b.only ? { cases: [kase] } : {}) };
      await failsWith(consensusImplTest(brokenConsensus(b.patch), options), kase.name, b.expectation);
    });
  }

  test('the same harness without a patch passes', () => consensusImplTest(brokenConsensus(() => ({}))));
});

describe('blobImplTest fails stores that break SPEC', () => {
  /** The stored arrays a broken blob hands out, shared by its handles on one location like a real cache would be. */
  const caches = new Map<string, Map<string, SegmentedBytes | undefined>>();
  const large = { largeValueBytes: 2 << 20 };
  const broken: (Broken<Blob, BlobInterceptor, BlobImplTestOptions> & { store?: { share?: boolean; keepDeleted?: boolean } })[] = [
    {
      name: 'handles on one path do not share data',
      patch: () => ({}),
      store: { share: false },
      caseName: '2:',
      expectation: 'foo/bar/k0 is visible through the second handle',
    },
    {
      name: 'delete of an empty value returns undefined',
      patch: () => ({ delete: async (forward, k, o) => (await forward(k, o)) || undefined }),
      caseName: '4:',
      expectation: 'deleting an empty value returns 0',
    },
    { name: 'restore always succeeds', patch: () => ({ restore: async () => {} }), caseName: '5: restore keeps', expectation: 'restoring a key that never existed rejects Determinate' },
    {
      name: 'restore does not bring back a deleted value, though the capabilities say keepsDeleted',
      patch: () => ({}),
      options: { capabilities: { keepsDeleted: true } },
      caseName: '5: restore brings',
      expectation: 'restoring a deleted key succeeds',
    },
    {
      name: 'restore brings back a deleted value, though the capabilities say keepsDeleted: false',
      patch: () => ({}),
      store: { keepDeleted: true },
      options: { capabilities: { keepsDeleted: false } },
      caseName: '5: restore of a deleted value rejects',
      expectation: 'restoring a deleted key rejects Determinate',
    },
    { name: 'list ignores its prefix', patch: () => ({ list: (forward, _p, o) => forward('', o) }), caseName: '7:', expectation: 'list("k-prefix") gives exactly those keys' },
    {
      name: 'list treats the prefix as a directory',
      patch: () => ({
        list: async function* (forward, p = '', o) {
          for await (const m of forward(p, o)) if (p === '' || m.key.slice(p.length).startsWith('/') || p.endsWith('/')) yield m;
        },
      }),
      caseName: '7:',
      expectation: 'list("k-prefix") gives exactly those keys',
    },
    {
      name: 'large values are cut at 1 MiB',
      patch: () => ({ set: (forward, k, v, o) => forward(k, v instanceof Uint8Array ? v.subarray(0, 1 << 20) : v, o) }),
      caseName: 'values: a large value',
      expectation: 'the large value has its full length',
    },
    {
      name: 'an empty value reads back as missing',
      patch: () => ({ get: async (forward, k, o) => ((v) => (v?.length === 0 ? undefined : v))(await forward(k, o)) }),
      caseName: '4:',
      expectation: 'an empty value reads back empty, not missing',
    },
    {
      name: 'an empty value reads back as missing (its own case)',
      patch: () => ({ get: async (forward, k, o) => ((v) => (v?.length === 0 ? undefined : v))(await forward(k, o)) }),
      caseName: 'empty values:',
      expectation: 'an empty value reads back as a value, not as missing',
      only: true,
    },
    {
      name: 'list yields only its first page of 1000 keys',
      patch: () => ({ list: (forward, p, o) => firstPage(forward(p, o), 1000) }),
      caseName: 'listing: 1200 keys',
      expectation: 'list yields 1200 keys, each once',
    },
    {
      name: 'list repeats the last key of a page of 1000',
      patch: () => ({ list: (forward, p, o) => repeatsItem(forward(p, o), 1000) }),
      caseName: 'listing: 1200 keys',
      expectation: 'list yields 1200 keys, each once',
    },
    {
      name: 'a listing goes on after the loop breaks',
      patch: () => {
        const pool = new Pool(4);
        return { list: (forward, p, o) => listing<BlobMetadata>(pool, () => forward(p, o), 'ignores return') };
      },
      caseName: 'listing: a loop that breaks early',
      expectation: 'after the loop breaks, the listing yields nothing more',
    },
    {
      name: 'a listing broken off keeps its connection',
      patch: () => {
        const pool = new Pool(4);
        return {
          list: (forward, p, o) => listing<BlobMetadata>(pool, () => forward(p, o), 'leaks its connection'),
          get: (forward, k, o) => pool.with(() => forward(k, o)),
          set: (forward, k, v, o) => pool.with(() => forward(k, v, o)),
        };
      },
      caseName: 'listing: a loop that breaks early',
      expectation: '16 listings broken off at once end',
      options: { waitMs: 1000 },
    },
    {
      name: 'get ignores its signal',
      patch: () => ({ get: (forward, k, o) => forward(k, abortedSignal(o) ? undefined : o) }),
      caseName: 'abort:',
      expectation: 'get aborted with an Error rejects Determinate Cancelled',
    },
    {
      name: 'an aborted delete deletes, then reports the abort',
      patch: () => ({
        delete: async (forward, k, o) => {
          if (!abortedSignal(o)) return forward(k, o);
          await forward(k);
          throw new Determinate(ErrorCode.Cancelled, 'aborted');
        },
      }),
      caseName: 'abort:',
      expectation: 'aborted overwrites and deletes changed nothing',
    },
    {
      name: 'an aborted list rejects Indeterminate',
      patch: () => ({
        list: (forward, p, o) =>
          abortedSignal(o)
            ? {
                [Symbol.asyncIterator]: () => ({ next: () => Promise.reject(new Indeterminate(ErrorCode.Cancelled, 'aborted')) }),
              }
            : forward(p, o),
      }),
      caseName: 'abort:',
      expectation: 'list aborted with an Error rejects Determinate Cancelled',
    },
    {
      name: 'get hands out the stored array',
      patch: (b) => {
        const where = (b as MemBlob).description;
        if (!caches.has(where)) caches.set(where, new Map());
        const cache = caches.get(where)!;
        return {
          get: async (forward, k, o) => {
            if (o?.signal?.aborted || typeof k !== 'string') return forward(k, o);
            if (!cache.has(k)) cache.set(k, await forward(k, o));
            return cache.get(k);
          },
          set: async (forward, k, v, o) => (cache.delete(k), forward(k, v, o)),
          delete: async (forward, k, o) => (cache.delete(k), forward(k, o)),
          restore: async (forward, k, o) => (cache.delete(k), forward(k, o)),
        };
      },
      caseName: 'isolation:',
      expectation: 'mutating a returned array does not change the stored value',
    },
    {
      name: 'keys are folded to lower case',
      patch: () => ({
        get: (forward, k, o) => forward(lower(k), o),
        set: (forward, k, v, o) => forward(lower(k), v, o),
        delete: (forward, k, o) => forward(lower(k), o),
        list: async function* (forward, p = '', o) {
          yield* forward(lower(p), o);
        },
      }),
      caseName: 'hostile keys:',
      expectation: 'hostile key "Case" reads back its own value',
    },
    {
      name: 'keys over 1000 bytes are refused, below the cap the suite is told',
      patch: () => ({
        set: (forward, k, v, o) => (typeof k === 'string' && Buffer.byteLength(k) > 1000 ? Promise.reject(new Determinate(ErrorCode.InvalidArgument, 'key over 1000 bytes')) : forward(k, v, o)),
      }),
      caseName: 'hostile keys:',
      expectation: 'hostile key "max-',
    },
    {
      name: 'keys over the stated cap of 500 bytes are accepted',
      patch: () => ({}),
      options: { capabilities: { maxKeyBytes: 500 } },
      caseName: 'invalid arguments: bad keys',
      expectation: 'get rejects a key of 501 bytes',
    },
    {
      name: "set reads the caller's array after the call returns",
      patch: () => ({
        set: async (forward, k, v, o) => {
          await new Promise((resolve) => setImmediate(resolve));
          return forward(k, v, o);
        },
      }),
      caseName: 'isolation:',
      expectation: "mutating the caller's array while set is in flight does not change the stored value",
    },
  ];
  for (const b of broken) {
    test(b.name, async () => {
      const kase = caseNamed(blobCases, b.caseName);
      const options = { ...large, ...b.options, ...(b.only ? { cases: [kase] } : {}) };
      await failsWith(blobImplTest(brokenBlob(b.patch, b.store), options), kase.name, b.expectation);
    });
  }

  test('a nested location that is a key prefix of its parent fails the nesting check', () =>
    failsWith(
      blobImplTest(aliasingBlob(), large),
      caseNamed(blobCases, 'nesting: locations nested by path are independent or refused Determinate (outer').name,
      'nesting (data, outer opened first): the outer location lists only its own key',
    ));

  test('the same harness without a patch passes, whatever it says of keepsDeleted that is true', async () => {
    await blobImplTest(brokenBlob(() => ({})), large);
    await blobImplTest(brokenBlob(() => ({})), { ...large, capabilities: { keepsDeleted: false } });
    await blobImplTest(brokenBlob(() => ({}), { keepDeleted: true }), { ...large, capabilities: { keepsDeleted: true } });
  });
});
