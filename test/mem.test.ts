import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { test } from 'node:test';
import { MemBlob, MemConsensus, openBlob, openConsensus } from 'persist-location';
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
    await blobImplTest(async (path) => new MemBlob({ name: `${run}/${path}`, keepDeleted }));
  }
});

test('mem:// blob with keepDeleted restores a deleted value', async () => {
  const name = `restore-${randomUUID()}`;
  const blob = await openBlob(`mem://${name}?keepDeleted=true`);
  await blob.set('k', Buffer.from('data'));
  assert.equal(await blob.delete('k'), 4);
  await blob.restore('k');
  assert.equal(Buffer.from((await blob.get('k'))!.toContiguous()).toString(), 'data');
  const plain = await openBlob(`mem://${name}`);
  assert.equal(await plain.delete('k'), 4);
  await assert.rejects(plain.restore('k'), { name: 'Determinate' });
});

test('MemConsensus is linearizable under concurrent clients sharing a name', async () => {
  const name = `stress-${randomUUID()}`;
  const report = await stressConsensus(async () => new MemConsensus({ name }), { ops: 3000, keys: 4, clients: 16 });
  assert.equal(report.verdict, 'ok', JSON.stringify(report.violations.slice(0, 1)));
  assert.ok(report.ok);
  assert.ok(report.committed > 100, `only ${report.committed} commits`);
  assert.ok(report.mismatches > 0, 'the run had no contention');
});
