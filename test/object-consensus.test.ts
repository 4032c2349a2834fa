// ObjectConsensus (Consensus on conditional writes alone) over an in-memory object
// store with exact conditional semantics, with and without injected faults: lost
// replies, requests that never arrive, 409 conflicts, and a writer stalled across a
// truncate. The S3 and Azure backends run the same class over their stores.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { crc32 } from 'node:zlib';
import { describe, test } from 'node:test';
import { CaSResult, Determinate, ErrorCode, Indeterminate, SeqNo, type Consensus } from 'persist-location';
import { consensusImplTest, stressConsensus } from 'persist-location/testing';
import {
  ObjectConsensus,
  type ConditionalObjects,
  type ConsensusLayout,
  type PutOutcome,
  type StoredObject,
  type WriteCondition,
} from '../src/objstore/consensus.js';

/** Objects in a Map, with S3's conditional-write semantics applied atomically. */
class MemoryObjects implements ConditionalObjects {
  readonly objects = new Map<string, StoredObject>();
  requests = { get: 0, put: 0, delete: 0, list: 0 };

  async get(name: string): Promise<StoredObject | undefined> {
    this.requests.get++;
    await Promise.resolve();
    const o = this.objects.get(name);
    return o && { bytes: o.bytes.slice(), etag: o.etag };
  }

  async put(name: string, body: Uint8Array, condition: WriteCondition): Promise<PutOutcome> {
    this.requests.put++;
    await Promise.resolve();
    return this.apply(name, body, condition);
  }

  apply(name: string, body: Uint8Array, condition: WriteCondition): PutOutcome {
    const current = this.objects.get(name);
    if ('ifNoneMatch' in condition && current !== undefined) return 'changed';
    if ('ifMatch' in condition && current?.etag !== condition.ifMatch) return 'changed';
    const etag = randomUUID();
    this.objects.set(name, { bytes: body.slice(), etag });
    return { etag };
  }

  async delete(name: string): Promise<void> {
    this.requests.delete++;
    await Promise.resolve();
    this.objects.delete(name);
  }

  async *list(prefix: string): AsyncIterable<string> {
    this.requests.list++;
    for (const name of [...this.objects.keys()].sort()) if (name.startsWith(prefix)) yield name;
  }
}

/** Faults on writes, decided by a seeded generator so a failure reproduces. */
class FaultyObjects implements ConditionalObjects {
  #seed: number;
  injected = { lostReply: 0, notSent: 0, conflict: 0 };
  constructor(
    readonly inner: MemoryObjects,
    readonly rate: number,
    seed = 1,
  ) {
    this.#seed = seed;
  }
  #random(): number {
    // mulberry32
    let t = (this.#seed += 0x6d2b79f5);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  get(name: string): Promise<StoredObject | undefined> {
    return this.inner.get(name);
  }
  async put(name: string, body: Uint8Array, condition: WriteCondition): Promise<PutOutcome> {
    const r = this.#random();
    if (r < this.rate / 3) {
      this.injected.notSent++;
      throw new Indeterminate(ErrorCode.Timeout, 'injected: request lost on the way');
    }
    if (r < (2 * this.rate) / 3) {
      this.injected.lostReply++;
      await this.inner.put(name, body, condition);
      throw new Indeterminate(ErrorCode.Timeout, 'injected: reply lost');
    }
    if (r < this.rate) {
      this.injected.conflict++;
      return 'conflict';
    }
    return this.inner.put(name, body, condition);
  }
  delete(name: string): Promise<void> {
    return this.inner.delete(name);
  }
  list(prefix: string): AsyncIterable<string> {
    return this.inner.list(prefix);
  }
}

const layout = (root: string): ConsensusLayout => ({
  headPrefix: `${root}h/`,
  head: (key) => `${root}h/${encodeURIComponent(key)}`,
  keyOfHead: (name) => (name.startsWith(`${root}h/`) ? decodeURIComponent(name.slice(root.length + 2)) : undefined),
  segmentPrefix: (key) => `${root}s/${encodeURIComponent(key)}/`,
  roots: [`${root}h/`, `${root}s/`],
});

function open(objects: ConditionalObjects, root = 'loc/', options: { inlineVersions?: number; indexFanout?: number; writeAttempts?: number } = {}): ObjectConsensus {
  return new ObjectConsensus({ objects, layout: layout(root), description: `ObjectConsensus(mem:${root})`, ...options });
}

/** A stress report, short enough for a failure message. */
const describe_ = (report: { violations: unknown[] }) =>
  JSON.stringify({ ...report, history: undefined, violations: report.violations.slice(0, 3) }, (_k, x: unknown) => (typeof x === 'bigint' ? String(x) : x));

const v = (seqno: number, text: string) => ({ seqno: new SeqNo(seqno), data: new TextEncoder().encode(text) });
const text = (d: Uint8Array) => new TextDecoder().decode(d);

describe('ObjectConsensus over exact conditional writes', () => {
  test('the shared Consensus suite', { timeout: 120_000 }, async () => {
    const store = new MemoryObjects();
    await consensusImplTest(async () => open(store, `suite-${randomUUID()}/`), { test });
  });

  test('the shared Consensus suite with two versions inline (segments written, cut and dropped)', { timeout: 120_000 }, async () => {
    const store = new MemoryObjects();
    await consensusImplTest(async () => open(store, `suite-${randomUUID()}/`, { inlineVersions: 2 }), { test });
  });

  test('the shared Consensus suite over a deep index tree (two versions inline, fanout 2)', { timeout: 120_000 }, async () => {
    const store = new MemoryObjects();
    await consensusImplTest(async () => open(store, `suite-${randomUUID()}/`, { inlineVersions: 2, indexFanout: 2 }), { test });
  });

  test('concurrent clients on four handles are linearizable', { timeout: 120_000 }, async () => {
    const store = new MemoryObjects();
    const root = `stress-${randomUUID()}/`;
    const report = await stressConsensus(async () => open(store, root, { inlineVersions: 3, indexFanout: 2 }), { ops: 3000, keys: 4, clients: 16, handles: 4 });
    assert.ok(report.ok, describe_(report));
    assert.ok(report.committed > 100, `only ${report.committed} commits`);
  });

  test('a head costs one GET, a compareAndSet from a current cache one PUT', async () => {
    const store = new MemoryObjects();
    const c = open(store);
    assert.equal(await c.compareAndSet('k', undefined, v(1, 'a')), CaSResult.Committed);
    store.requests = { get: 0, put: 0, delete: 0, list: 0 };
    for (let i = 2; i <= 10; i++) assert.equal(await c.compareAndSet('k', new SeqNo(i - 1), v(i, `v${i}`)), CaSResult.Committed);
    assert.deepEqual(store.requests, { get: 0, put: 9, delete: 0, list: 0 });
    store.requests = { get: 0, put: 0, delete: 0, list: 0 };
    assert.equal(text((await c.head('k'))!.data), 'v10');
    assert.deepEqual(store.requests, { get: 1, put: 0, delete: 0, list: 0 });
  });

  test('the head object (what a head GETs) and the PUTs and bytes per compareAndSet do not grow from 1k to 10k versions', async () => {
    const store = new MemoryObjects();
    const c = open(store, 'flat/');
    const sizes = new Map<string, number>();
    const put = store.put.bind(store);
    store.put = async (name, body, condition) => {
      sizes.set('put', (sizes.get('put') ?? 0) + body.length);
      return put(name, body, condition);
    };
    const data = new Uint8Array(128).fill(0x61);
    let seqno = 0;
    const cas = async () => {
      assert.equal(await c.compareAndSet('k', seqno === 0 ? undefined : new SeqNo(seqno), { seqno: new SeqNo(seqno + 1), data }), CaSResult.Committed);
      seqno++;
    };
    const at: Record<string, { head: number; putsPerCas: number; bytesPerCas: number }> = {};
    for (const retained of [1000, 10_000]) {
      while (seqno < retained) await cas();
      store.requests = { get: 0, put: 0, delete: 0, list: 0 };
      sizes.clear();
      // 512 commits: 32 segments, 2 index objects of level 1, whatever rises above them.
      for (let i = 0; i < 512; i++) await cas();
      at[retained] = { head: store.objects.get(layout('flat/').head('k'))!.bytes.length, putsPerCas: store.requests.put / 512, bytesPerCas: sizes.get('put')! / 512 };
      assert.equal(store.requests.get, 0);
    }
    const [small, large] = [at[1000]!, at[10_000]!];
    // 16 versions of 128 B inline, at most 16 references per level: about 2.5 KiB + 100 B per reference.
    assert.ok(large.head < 8 * 1024, `head object of ${large.head} B at 10k versions`);
    assert.ok(large.head < small.head * 2, `head object ${small.head} B at 1k versions, ${large.head} B at 10k`);
    assert.ok(large.putsPerCas <= 1 + 1 / 16 + 1 / 128, `${large.putsPerCas} PUTs per compareAndSet at 10k versions`);
    assert.ok(large.bytesPerCas < small.bytesPerCas * 1.5, `${small.bytesPerCas} B per compareAndSet at 1k versions, ${large.bytesPerCas} B at 10k`);
    assert.equal((await c.scan('k', new SeqNo(0), 1e6)).length, seqno, 'every version is still there');
  });

  test('scan and truncate across a deep index tree agree with the versions written', async () => {
    const store = new MemoryObjects();
    const c = open(store, 'deep/', { inlineVersions: 2, indexFanout: 2 });
    // Seqnos with gaps, so a truncate or scan point falls between versions as well as on them.
    const written: number[] = [];
    for (let i = 1; i <= 300; i++) {
      const s = i * 3;
      assert.equal(await c.compareAndSet('k', written.length === 0 ? undefined : new SeqNo(written.at(-1)!), v(s, `v${s}`)), CaSResult.Committed);
      written.push(s);
    }
    const levels = [...store.objects.values()].filter((o) => new DataView(o.bytes.buffer, o.bytes.byteOffset).getUint32(0) === 0x504c4349);
    assert.ok(levels.length > 20, `${levels.length} index objects`);
    const live = () => written.filter((s) => s >= first);
    let first = 0;
    for (const cutAt of [1, 2, 50, 100, 101, 400, 401, 777, 895, 900]) {
      const removed = await c.truncate('k', new SeqNo(cutAt));
      const before = live().length;
      first = Math.max(first, cutAt);
      assert.equal(removed, before - live().length, `truncate at ${cutAt}`);
      for (const start of [0, cutAt, cutAt + 1, cutAt + 100]) {
        const got = (await c.scan('k', new SeqNo(start), 7)).map((x) => Number(x.seqno.value));
        assert.deepEqual(got, live().filter((s) => s >= start).slice(0, 7), `scan from ${start} after truncate at ${cutAt}`);
      }
      assert.deepEqual((await c.scan('k', new SeqNo(0), 1000)).map((x) => text(x.data)), live().map((s) => `v${s}`));
    }
    assert.deepEqual([...store.objects.keys()].filter((n) => n.startsWith('deep/s/')), [], 'no segment or index left once only the head remains');
  });

  test('a handle whose cached head is stale reads again before it answers', async () => {
    const store = new MemoryObjects();
    const a = open(store);
    const b = open(store);
    await a.compareAndSet('k', undefined, v(1, 'one'));
    assert.equal(await b.compareAndSet('k', new SeqNo(1), v(2, 'two')), CaSResult.Committed);
    // a still caches v1: expecting v2 (the real head) commits, expecting v1 mismatches.
    assert.equal(await a.compareAndSet('k', new SeqNo(2), v(3, 'three')), CaSResult.Committed);
    assert.equal(await b.compareAndSet('k', new SeqNo(2), v(4, 'four')), CaSResult.ExpectationMismatch);
    assert.equal(text((await b.head('k'))!.data), 'three');
  });

  test('older versions go out to segments and scan reads them back in order', async () => {
    const store = new MemoryObjects();
    const c = open(store, 'seg/', { inlineVersions: 4 });
    let expected: SeqNo | undefined;
    for (let i = 0; i < 40; i += 2) {
      assert.equal(await c.compareAndSet('k', expected, v(i, `v${i}`)), CaSResult.Committed);
      expected = new SeqNo(i);
    }
    const segments = [...store.objects.keys()].filter((n) => n.startsWith('seg/s/'));
    assert.ok(segments.length >= 4, `segments: ${segments.length}`);
    const all = await c.scan('k', new SeqNo(0), 1000);
    assert.deepEqual(all.map((x) => Number(x.seqno.value)), Array.from({ length: 20 }, (_, i) => i * 2));
    assert.deepEqual((await c.scan('k', new SeqNo(13), 3)).map((x) => text(x.data)), ['v14', 'v16', 'v18']);
  });

  test('truncate counts what it removes, cuts through a segment, and deletes what it dropped', async () => {
    const store = new MemoryObjects();
    const c = open(store, 'tr/', { inlineVersions: 4 });
    let expected: SeqNo | undefined;
    for (let i = 0; i < 30; i++) {
      await c.compareAndSet('k', expected, v(i, `v${i}`));
      expected = new SeqNo(i);
    }
    assert.equal(await c.truncate('k', new SeqNo(7)), 7);
    assert.equal(await c.truncate('k', new SeqNo(7)), 0);
    assert.deepEqual((await c.scan('k', new SeqNo(0), 3)).map((x) => Number(x.seqno.value)), [7, 8, 9]);
    assert.equal(await c.truncate('k', new SeqNo(29)), 22);
    assert.deepEqual((await c.scan('k', new SeqNo(0), 100)).map((x) => Number(x.seqno.value)), [29]);
    assert.deepEqual([...store.objects.keys()].filter((n) => n.startsWith('tr/s/')), [], 'no segment left once only the head remains');
    await assert.rejects(c.truncate('k', new SeqNo(30)), (e: unknown) => e instanceof Determinate && e.code === ErrorCode.FailedPrecondition);
  });

  test('a writer stalled across a truncate cannot bring back what was removed', async () => {
    const store = new MemoryObjects();
    const stalled = open(store, 'st/', { inlineVersions: 2 });
    const other = open(store, 'st/', { inlineVersions: 2 });
    await stalled.compareAndSet('k', undefined, v(1, 'one'));
    // `stalled` holds the head of v1 in its cache; its next write is held before it reaches the store.
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const put = store.put.bind(store);
    let held = 0;
    store.put = async (name, body, condition) => {
      if (held++ === 0) await gate;
      return put(name, body, condition);
    };
    const pending = stalled.compareAndSet('k', new SeqNo(1), v(2, 'stale'));
    await new Promise((r) => setImmediate(r));
    store.put = put;
    for (let i = 2; i <= 6; i++) assert.equal(await other.compareAndSet('k', new SeqNo(i - 1), v(i, `new${i}`)), CaSResult.Committed);
    assert.equal(await other.truncate('k', new SeqNo(6)), 5);
    release();
    assert.equal(await pending, CaSResult.ExpectationMismatch);
    const all = await other.scan('k', new SeqNo(0), 100);
    assert.deepEqual(all.map((x) => [Number(x.seqno.value), text(x.data)]), [[6, 'new6']]);
  });

  test('a lost reply is resolved Committed, a request lost on the way is sent again', async () => {
    const store = new MemoryObjects();
    const c = open(store);
    const put = store.put.bind(store);
    store.put = async (name, body, condition) => {
      store.put = put;
      await put(name, body, condition);
      throw new Indeterminate(ErrorCode.Timeout, 'reply lost');
    };
    assert.equal(await c.compareAndSet('k', undefined, v(1, 'a')), CaSResult.Committed);
    store.put = async () => {
      store.put = put;
      throw new Indeterminate(ErrorCode.Timeout, 'request lost');
    };
    assert.equal(await c.compareAndSet('k', new SeqNo(1), v(2, 'b')), CaSResult.Committed);
    assert.deepEqual((await c.scan('k', new SeqNo(0), 10)).map((x) => text(x.data)), ['a', 'b']);
  });

  test('a lost reply met by another writer is resolved by the version it left, either way', async () => {
    const store = new MemoryObjects();
    const a = open(store);
    const b = open(store);
    await a.compareAndSet('k', undefined, v(1, 'one'));
    await b.head('k');
    const put = store.put.bind(store);
    // a's write applies, then b's; a's reply is lost: a finds its version under b's.
    store.put = async (name, body, condition) => {
      store.put = put;
      await put(name, body, condition);
      await b.compareAndSet('k', new SeqNo(2), v(3, 'three'));
      throw new Indeterminate(ErrorCode.Timeout, 'reply lost');
    };
    assert.equal(await a.compareAndSet('k', new SeqNo(1), v(2, 'two')), CaSResult.Committed);
    // a's write does not apply (b got there first); a's request is lost: a must not claim it.
    store.put = async () => {
      store.put = put;
      await b.compareAndSet('k', new SeqNo(3), v(4, 'four'));
      throw new Indeterminate(ErrorCode.Timeout, 'request lost');
    };
    assert.equal(await a.compareAndSet('k', new SeqNo(3), v(4, 'mine')), CaSResult.ExpectationMismatch);
    assert.deepEqual((await a.scan('k', new SeqNo(0), 10)).map((x) => text(x.data)), ['one', 'two', 'three', 'four']);
  });

  test('an outcome truncated away stays Indeterminate, never a guess', async () => {
    const store = new MemoryObjects();
    const a = open(store);
    const b = open(store);
    await a.compareAndSet('k', undefined, v(1, 'one'));
    const put = store.put.bind(store);
    store.put = async (name, body, condition) => {
      store.put = put;
      await put(name, body, condition);
      await b.compareAndSet('k', new SeqNo(2), v(3, 'three'));
      await b.truncate('k', new SeqNo(3));
      throw new Indeterminate(ErrorCode.Timeout, 'reply lost');
    };
    await assert.rejects(a.compareAndSet('k', new SeqNo(1), v(2, 'two')), (e: unknown) => e instanceof Indeterminate);
  });

  test('a retried truncate reports its own count', async () => {
    const store = new MemoryObjects();
    const c = open(store);
    let expected: SeqNo | undefined;
    for (let i = 1; i <= 5; i++) {
      await c.compareAndSet('k', expected, v(i, `v${i}`));
      expected = new SeqNo(i);
    }
    const put = store.put.bind(store);
    store.put = async (name, body, condition) => {
      store.put = put;
      await put(name, body, condition);
      throw new Indeterminate(ErrorCode.Timeout, 'reply lost');
    };
    assert.equal(await c.truncate('k', new SeqNo(4)), 3);
  });

  test('a head in format 1 (references without levels, before index objects) is still read, and written on in format 2', async () => {
    const store = new MemoryObjects();
    const c = open(store, 'f1/', { inlineVersions: 2 });
    // Versions 1-2 in a segment (written as format 1 wrote them: segments did not change), 3 inline.
    const u32 = (n: number) => Buffer.from(new Uint32Array([n]).buffer).reverse();
    const u64 = (n: number) => Buffer.from(new BigUint64Array([BigInt(n)]).buffer).reverse();
    const version = (n: number) => Buffer.concat([u64(n), Buffer.alloc(16, n), u32(2), Buffer.from(`v${n}`)]);
    const sealed = (b: Buffer) => Buffer.concat([b, u32(crc32(b))]);
    const id = `${'1'.padStart(20, '0')}-${'2'.padStart(20, '0')}-${'ab'.repeat(16)}`;
    store.apply(`f1/s/k/${id}`, sealed(Buffer.concat([u32(0x504c4353), Buffer.of(1), u32(2), version(1), version(2)])), {});
    const ref = Buffer.concat([u32(id.length), Buffer.from(id), u64(1), u64(2), u32(2)]);
    store.apply(layout('f1/').head('k'), sealed(Buffer.concat([u32(0x504c4348), Buffer.of(1), Buffer.alloc(16, 9), u32(1), ref, u32(1), version(3)])), {});
    assert.deepEqual((await c.scan('k', new SeqNo(0), 10)).map((x) => text(x.data)), ['v1', 'v2', 'v3']);
    for (let i = 4; i <= 12; i++) assert.equal(await c.compareAndSet('k', new SeqNo(i - 1), v(i, `v${i}`)), CaSResult.Committed);
    assert.equal(store.objects.get(layout('f1/').head('k'))!.bytes[4], 2);
    assert.deepEqual((await c.scan('k', new SeqNo(0), 20)).map((x) => text(x.data)), Array.from({ length: 12 }, (_, i) => `v${i + 1}`));
  });

  test('a foreign object where a head should be is DataLoss, not a state', async () => {
    const store = new MemoryObjects();
    const c = open(store, 'x/');
    store.apply(layout('x/').head('k'), new TextEncoder().encode('not ours'), {});
    await assert.rejects(c.head('k'), (e: unknown) => e instanceof Determinate && e.code === ErrorCode.DataLoss);
  });

  test('two locations in one store do not see each other', async () => {
    const store = new MemoryObjects();
    const a = open(store, 'a/');
    const b = open(store, 'a-b/');
    await a.compareAndSet('k', undefined, v(1, 'in a'));
    assert.equal(await b.head('k'), undefined);
    const keys: string[] = [];
    for await (const k of b.listKeys()) keys.push(k);
    assert.deepEqual(keys, []);
  });
});

describe('ObjectConsensus under injected faults', () => {
  for (const seed of [1, 2, 3]) {
    test(`stress with 20% of writes failing (lost replies, lost requests, conflicts), seed ${seed}`, { timeout: 120_000 }, async () => {
      const inner = new MemoryObjects();
      const faulty = new FaultyObjects(inner, 0.2, seed);
      const root = `faults-${randomUUID()}/`;
      const handles: Consensus[] = [];
      const report = await stressConsensus(
        async () => {
          const c = open(faulty, root, { inlineVersions: 3, indexFanout: 2 });
          handles.push(c);
          return c;
        },
        { ops: 2000, keys: 4, clients: 12, handles: 3 },
      );
      assert.ok(report.ok, describe_(report));
      assert.ok(faulty.injected.lostReply > 10 && faulty.injected.notSent > 10 && faulty.injected.conflict > 10, JSON.stringify(faulty.injected));
      assert.ok(report.committed > 100, `only ${report.committed} commits`);
    });
  }
});
