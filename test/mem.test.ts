import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { test } from 'node:test';
import { MemBlob, MemConsensus, SeqNo, openBlob, openConsensus } from 'persist-location';
import { blobImplTest, consensusImplTest, stressConsensus } from 'persist-location/testing';

test('MemConsensus passes the conformance suite', async () => {
  await consensusImplTest(async () => new MemConsensus());
});

test('mem:// consensus passes the conformance suite', async () => {
  await consensusImplTest(async () => openConsensus(`mem://suite-${randomUUID()}`));
});

test('MemBlob passes the conformance suite, with and without kept deleted values', async () => {
  for (const keepDeleted of [false, true]) {
    const run = randomUUID();
    await blobImplTest(async (path) => new MemBlob({ name: `${run}/${path}`, keepDeleted }), { capabilities: { keepsDeleted: keepDeleted } });
  }
});

test('mem:// blob passes the conformance suite, with and without ?keepDeleted=true', async () => {
  for (const keepDeleted of [false, true]) {
    const run = randomUUID();
    const query = keepDeleted ? '?keepDeleted=true' : '';
    await blobImplTest(async (path) => openBlob(`mem://${run}/${path}${query}`), { capabilities: { keepsDeleted: keepDeleted } });
  }
});

test('MemConsensus is linearizable under concurrent clients sharing a name', async () => {
  const name = `stress-${randomUUID()}`;
  const report = await stressConsensus(async () => new MemConsensus({ name }), { ops: 3000, keys: 4, clients: 16 });
  assert.equal(report.verdict, 'ok', JSON.stringify(report.violations.slice(0, 1)));
  assert.ok(report.ok);
  assert.ok(report.committed > 100, `only ${report.committed} commits`);
  assert.ok(report.mismatches > 0, 'the run had no contention');
});

test('MemConsensus stores none of the objects passed to it', async () => {
  const c = new MemConsensus();
  // instanceof SeqNo, but with a writable value: a store holding it could be rewritten.
  const lookalike = Object.setPrototypeOf({ value: 7n }, SeqNo.prototype) as SeqNo & { value: bigint };
  const data = Buffer.from('seven');
  assert.equal(await c.compareAndSet('k', undefined, { seqno: lookalike, data }), 'Committed');
  lookalike.value = 100n;
  data.fill(0);
  const head = (await c.head('k'))!;
  assert.equal(head.seqno.value, 7n, 'changing the passed seqno changed the stored head');
  assert.equal(Buffer.from(head.data).toString(), 'seven', 'changing the passed data changed the stored value');
  assert.ok(Object.getPrototypeOf(head.seqno) === SeqNo.prototype && head.seqno !== lookalike);

  class Tagged extends SeqNo {
    note = 'caller state';
  }
  const tagged = new Tagged(8);
  assert.equal(await c.compareAndSet('k', head.seqno, { seqno: tagged, data: Buffer.from('eight') }), 'Committed');
  const next = (await c.head('k'))!;
  assert.ok(!(next.seqno instanceof Tagged) && next.seqno.value === 8n, 'the caller\'s SeqNo object is handed out as the head');
  const writable = next.seqno as { value: bigint };
  assert.throws(() => (writable.value = 9n), TypeError);
});

test('MemConsensus hands out no stored state: changing a returned version changes nothing', async () => {
  const c = new MemConsensus();
  await c.compareAndSet('k', undefined, { seqno: new SeqNo(1), data: Buffer.from('one') });
  await c.compareAndSet('k', new SeqNo(1), { seqno: new SeqNo(2), data: Buffer.from('two') });
  (await c.head('k'))!.data.fill(0);
  for (const v of await c.scan('k', SeqNo.minimum(), 10)) v.data.fill(0);
  assert.deepEqual((await c.scan('k', SeqNo.minimum(), 10)).map((v) => [v.seqno.value, Buffer.from(v.data).toString()]), [[1n, 'one'], [2n, 'two']]);
});

test('MemBlob stores none of the bytes passed to it and hands out none of its own', async () => {
  const b = new MemBlob({ keepDeleted: true });
  const value = Buffer.from('value');
  await b.set('k', value);
  value.fill(0);
  for (const segment of (await b.get('k'))!.segments) segment.fill(0);
  assert.equal(Buffer.from((await b.get('k'))!.toContiguous()).toString(), 'value');
  assert.equal(await b.delete('k'), 5);
  await b.restore('k');
  (await b.get('k'))!.toContiguous().fill(0);
  assert.equal(Buffer.from((await b.get('k'))!.toContiguous()).toString(), 'value');
});
