// listKeys as ConsensusBase hands it out: every key once, in the backend's order, however
// the backend yields them (one at a time or in batches), with the steps of an async
// generator (in call order, released by a break, ended by a failure or an abort).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ConsensusBase, Determinate, MemConsensus, SeqNo, type ListedKeys, type VersionedData } from 'persist-location';

/** A Consensus whose listing yields `script` (keys and batches of keys), and records what happened to it. */
class Scripted extends ConsensusBase {
  readonly description = 'Scripted';
  readonly events: string[] = [];
  readonly #script: readonly (ListedKeys | Error)[];

  constructor(script: readonly (ListedKeys | Error)[]) {
    super();
    this.#script = script;
  }

  protected async *_listKeys(): AsyncIterable<ListedKeys> {
    this.events.push('started');
    try {
      for (const item of this.#script) {
        if (item instanceof Error) throw item;
        yield item;
      }
      this.events.push('ended');
    } finally {
      this.events.push('released');
    }
  }

  protected _head(): Promise<VersionedData | undefined> {
    throw new Error('not scripted');
  }
  protected _compareAndSet(): Promise<'Committed'> {
    throw new Error('not scripted');
  }
  protected _scan(): Promise<VersionedData[]> {
    throw new Error('not scripted');
  }
  protected _truncate(): Promise<number> {
    throw new Error('not scripted');
  }
  protected async _close(): Promise<void> {}
}

async function collect(keys: AsyncIterable<string>): Promise<string[]> {
  const out: string[] = [];
  for await (const key of keys) out.push(key);
  return out;
}

test('keys and batches come out one by one, in order, empty batches skipped', async () => {
  const c = new Scripted(['a', [], ['b', 'c'], 'd', ['e'], []]);
  assert.deepEqual(await collect(c.listKeys()), ['a', 'b', 'c', 'd', 'e']);
  assert.deepEqual(c.events, ['started', 'ended', 'released']);
});

test('nothing starts before the first step, and a listing never stepped needs no release', async () => {
  const c = new Scripted([['a']]);
  const listing = c.listKeys();
  assert.deepEqual(c.events, []);
  assert.deepEqual(await listing.return!(), { done: true, value: undefined });
  assert.deepEqual(await listing.next(), { done: true, value: undefined });
  assert.deepEqual(c.events, [], 'the backend listing was started after all');
});

test('a break in the middle of a batch releases the backend listing, and the listing stays ended', async () => {
  const c = new Scripted([['a', 'b', 'c'], 'd']);
  const listing = c.listKeys();
  const seen: string[] = [];
  for await (const key of listing) {
    seen.push(key);
    if (key === 'b') break;
  }
  assert.deepEqual(seen, ['a', 'b']);
  assert.deepEqual(c.events, ['started', 'released']);
  assert.deepEqual(await listing.next(), { done: true, value: undefined }, 'a key was handed out after the break');
});

test('steps called without waiting settle in call order, a return queued behind them', async () => {
  const c = new Scripted(['a', ['b', 'c'], 'd', ['e', 'f']]);
  const listing = c.listKeys();
  const steps = [listing.next(), listing.next(), listing.next(), listing.next(), listing.return!(), listing.next()];
  const results = await Promise.all(steps);
  assert.deepEqual(results, [
    { done: false, value: 'a' },
    { done: false, value: 'b' },
    { done: false, value: 'c' },
    { done: false, value: 'd' },
    { done: true, value: undefined },
    { done: true, value: undefined },
  ]);
  assert.deepEqual(c.events, ['started', 'released']);
});

test('a return called before a next wins, even with keys of a batch in hand', async () => {
  const c = new Scripted([['a', 'b', 'c']]);
  const listing = c.listKeys();
  assert.deepEqual(await listing.next(), { done: false, value: 'a' });
  const [returned, after] = await Promise.all([listing.return!(), listing.next()]);
  assert.deepEqual([returned, after], [{ done: true, value: undefined }, { done: true, value: undefined }]);
  assert.deepEqual(c.events, ['started', 'released']);
});

test('a failure of the backend listing rejects that step and ends the listing', async () => {
  const c = new Scripted([['a'], new Error('lost the page')]);
  const listing = c.listKeys();
  assert.deepEqual(await listing.next(), { done: false, value: 'a' });
  await assert.rejects(listing.next(), /lost the page/);
  assert.deepEqual(await listing.next(), { done: true, value: undefined });
  assert.deepEqual(c.events, ['started', 'released']);
});

test('an abort in the middle of a batch rejects the next step Determinate and releases the backend listing', async () => {
  const c = new Scripted([['a', 'b', 'c']]);
  const abort = new AbortController();
  const listing = c.listKeys({ signal: abort.signal });
  assert.deepEqual(await listing.next(), { done: false, value: 'a' });
  abort.abort(new Error('caller gave up'));
  await assert.rejects(listing.next(), (err) => err instanceof Determinate && err.code === 'Cancelled' && /caller gave up/.test(err.message));
  assert.deepEqual(c.events, ['started', 'released']);
  assert.deepEqual(await listing.next(), { done: true, value: undefined });
});

test('a closed handle or an aborted signal rejects the first step, before the backend is asked', async () => {
  const closed = new Scripted(['a']);
  await closed.close();
  await assert.rejects(closed.listKeys().next(), /Scripted is closed/);
  const aborted = new Scripted(['a']);
  await assert.rejects(aborted.listKeys({ signal: AbortSignal.abort() }).next(), (err) => err instanceof Determinate && err.code === 'Cancelled');
  assert.deepEqual([...closed.events, ...aborted.events], []);
});

test('MemConsensus lists each of 100k keys once, from a snapshot taken at the first step', async () => {
  const c = new MemConsensus();
  const n = 100_000;
  const value = new Uint8Array(8);
  for (let i = 0; i < n; i++) assert.equal(await c.compareAndSet(`k${i}`, undefined, { seqno: new SeqNo(1), data: value }), 'Committed');
  const listing = c.listKeys();
  const first = await listing.next();
  // Written while the listing runs: after its snapshot, so not listed.
  await c.compareAndSet('late', undefined, { seqno: new SeqNo(1), data: value });
  const seen = new Set<string>([first.value as string]);
  let count = 1;
  for await (const key of listing) {
    seen.add(key);
    count++;
    if (count === n / 2) await c.compareAndSet('later', undefined, { seqno: new SeqNo(1), data: value });
  }
  assert.equal(count, n, 'keys were listed more or fewer times than written');
  assert.equal(seen.size, n, 'a key was listed twice');
  for (let i = 0; i < n; i += 997) assert.ok(seen.has(`k${i}`), `k${i} was not listed`);
  assert.ok(!seen.has('late') && !seen.has('later'));
  assert.equal((await collect(c.listKeys())).length, n + 2, 'a listing started later misses the later keys');
});
