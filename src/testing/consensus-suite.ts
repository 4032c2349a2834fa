import { randomUUID } from 'node:crypto';
import { CaSResult, SCAN_ALL, type Consensus, type VersionedData } from '../consensus.js';
import { ErrorCode, ExternalError } from '../errors.js';
import { SeqNo } from '../seqno.js';
import { MAX_CONSENSUS_SEQNO } from '../validate.js';
import { collect, expect, expectEqual, expectRejects } from './expect.js';
import { hostileKeys, keyOfBytes } from './keys.js';

/** A version in comparable form: seqno and data as a byte-exact latin1 string. */
interface Shown {
  seqno: string;
  data: string;
}

function v(seqno: number | bigint, data: string | Uint8Array): VersionedData {
  return { seqno: new SeqNo(seqno), data: typeof data === 'string' ? Buffer.from(data, 'latin1') : data };
}

function show(vd: VersionedData | undefined): Shown | undefined {
  if (vd === undefined) return undefined;
  expect(vd.seqno instanceof SeqNo, 'a returned seqno is a SeqNo');
  expect(vd.data instanceof Uint8Array, 'returned data is a Uint8Array');
  return { seqno: vd.seqno.toString(), data: Buffer.from(vd.data.buffer, vd.data.byteOffset, vd.data.byteLength).toString('latin1') };
}

function showAll(list: VersionedData[]): (Shown | undefined)[] {
  expect(Array.isArray(list), 'scan returns an array');
  return list.map(show);
}

const s = (seqno: number | bigint, data: string): Shown => ({ seqno: `v${seqno}`, data });

/**
 * The Consensus conformance suite (SPEC "What the conformance suites check"), plus
 * hostile keys, invalid arguments and byte isolation. `open` must yield a handle on a
 * fresh, empty location each time it is called. Throws on the first failed expectation.
 */
export async function consensusImplTest(open: () => Promise<Consensus>): Promise<void> {
  const consensus = await open();
  try {
    await specItems(consensus);
  } finally {
    await consensus.close();
  }
  const fresh = await open();
  try {
    await invalidArguments(fresh);
    await byteIsolation(fresh);
    await hostile(fresh);
  } finally {
    await fresh.close();
    await fresh.close(); // idempotent
  }
}

async function specItems(c: Consensus): Promise<void> {
  const k = `k-${randomUUID()}`;

  // 1
  expectEqual(show(await c.head(k)), undefined, '1: head of a fresh key is undefined');
  expectEqual(showAll(await c.scan(k, SeqNo.minimum(), SCAN_ALL)), [], '1: scan of a fresh key is []');
  await expectRejects(c.truncate(k, SeqNo.minimum()), { determinate: true, code: ErrorCode.FailedPrecondition }, '1: truncate of a fresh key rejects Determinate FailedPrecondition');

  // 2
  expectEqual(await c.compareAndSet(k, SeqNo.minimum(), v(5, 'abc')), CaSResult.ExpectationMismatch, '2: CaS expecting v0 on an empty key is ExpectationMismatch');
  expectEqual(show(await c.head(k)), undefined, '2: a mismatched CaS changes nothing');
  expectEqual(await c.compareAndSet(k, undefined, v(5, 'abc')), CaSResult.Committed, '2: CaS expecting nothing on an empty key commits');
  expectEqual(await collect(c.listKeys()), [k], '2: listKeys yields exactly the written key');
  expectEqual(show(await c.head(k)), s(5, 'abc'), '2: head is the committed version');
  expectEqual(await c.compareAndSet(k, undefined, v(6, 'abc')), CaSResult.ExpectationMismatch, '2: CaS expecting nothing on a written key is ExpectationMismatch');

  // 3
  expectEqual(showAll(await c.scan(k, new SeqNo(0), SCAN_ALL)), [s(5, 'abc')], '3: scan from v0');
  expectEqual(showAll(await c.scan(k, new SeqNo(5), SCAN_ALL)), [s(5, 'abc')], '3: scan from v5');
  expectEqual(showAll(await c.scan(k, new SeqNo(6), SCAN_ALL)), [], '3: scan from v6 is empty');

  // 4
  expectEqual(await c.truncate(k, new SeqNo(0)), 0, '4: truncate(v0) deletes nothing');
  expectEqual(await c.truncate(k, new SeqNo(5)), 0, '4: truncate(v5) deletes nothing');
  await expectRejects(c.truncate(k, new SeqNo(6)), { determinate: true, code: ErrorCode.FailedPrecondition }, '4: truncate past the head rejects Determinate FailedPrecondition');
  expectEqual(show(await c.head(k)), s(5, 'abc'), '4: a refused truncate leaves the head');

  // 5
  expectEqual(await c.compareAndSet(k, new SeqNo(7), v(10, 'def')), CaSResult.ExpectationMismatch, '5: CaS expecting a seqno above the head is ExpectationMismatch');
  expectEqual(await c.compareAndSet(k, new SeqNo(3), v(10, 'def')), CaSResult.ExpectationMismatch, '5: CaS expecting a seqno below the head is ExpectationMismatch');

  // 6
  await expectRejects(c.compareAndSet(k, new SeqNo(5), v(5, 'def')), { determinate: true, code: ErrorCode.InvalidArgument, message: 'new seqno must be strictly greater than expected. Got new: SeqNo(5) expected: SeqNo(5)' }, '6: CaS with new == expected rejects');
  await expectRejects(c.compareAndSet(k, new SeqNo(5), v(3, 'def')), { determinate: true, code: ErrorCode.InvalidArgument, message: 'new seqno must be strictly greater than expected. Got new: SeqNo(3) expected: SeqNo(5)' }, '6: CaS with new < expected rejects');

  // 7
  expectEqual(await c.compareAndSet(k, new SeqNo(5), v(10, 'def')), CaSResult.Committed, '7: CaS expecting the head commits');
  expectEqual(show(await c.head(k)), s(10, 'def'), '7: head is v10');
  const both = [s(5, 'abc'), s(10, 'def')];
  expectEqual(showAll(await c.scan(k, new SeqNo(5), SCAN_ALL)), both, '7: scan from v5');
  expectEqual(showAll(await c.scan(k, new SeqNo(6), SCAN_ALL)), [s(10, 'def')], '7: scan from v6');
  expectEqual(showAll(await c.scan(k, new SeqNo(10), SCAN_ALL)), [s(10, 'def')], '7: scan from v10');
  expectEqual(showAll(await c.scan(k, new SeqNo(11), SCAN_ALL)), [], '7: scan from v11');
  expectEqual(showAll(await c.scan(k, new SeqNo(0), 1)), [s(5, 'abc')], '7: scan from v0 limit 1');
  expectEqual(showAll(await c.scan(k, new SeqNo(5), 1)), [s(5, 'abc')], '7: scan from v5 limit 1');
  expectEqual(showAll(await c.scan(k, new SeqNo(0), 2)), both, '7: scan from v0 limit 2');
  expectEqual(showAll(await c.scan(k, new SeqNo(4), 100)), both, '7: scan from v4 limit 100');

  // 8
  expectEqual(await c.truncate(k, new SeqNo(6)), 1, '8: truncate(v6) deletes one version');
  expectEqual(showAll(await c.scan(k, new SeqNo(0), SCAN_ALL)), [s(10, 'def')], '8: after truncate only v10 remains');
  expectEqual(await c.truncate(k, new SeqNo(6)), 0, '8: repeating truncate(v6) deletes nothing');
  expectEqual(show(await c.head(k)), s(10, 'def'), '8: truncate keeps the head');

  // 9
  const k2 = `k2-${randomUUID()}`;
  expectEqual(show(await c.head(k2)), undefined, '9: a second key starts empty');
  expectEqual(await c.compareAndSet(k2, undefined, v(1, 'einszweidrei')), CaSResult.Committed, '9: second key commits v1');
  expectEqual(show(await c.head(k2)), s(1, 'einszweidrei'), '9: second key head is v1');
  expectEqual(show(await c.head(k)), s(10, 'def'), '9: first key head is still v10');
  expectEqual(await c.compareAndSet(k, new SeqNo(1), v(11, 'x')), CaSResult.ExpectationMismatch, "9: the second key's seqno does not satisfy the first key");
  expectEqual((await collect(c.listKeys())).sort(), [k, k2].sort(), '9: listKeys yields both keys');

  // 10
  const big = Buffer.alloc(10 * 1024);
  for (let i = 0; i < big.length; i++) big[i] = (i * 7 + 3) & 0xff;
  expectEqual(await c.compareAndSet(k, new SeqNo(10), v(11, big)), CaSResult.Committed, '10: a 10 KiB value commits at v11');
  expectEqual(show(await c.head(k)), s(11, big.toString('latin1')), '10: the 10 KiB value reads back exactly');
  expectEqual(await c.compareAndSet(k, new SeqNo(11), v(12, '')), CaSResult.Committed, '10: an empty value commits at v12');
  expectEqual(show(await c.head(k)), s(12, ''), '10: the empty value reads back empty');
  expectEqual(await c.truncate(k, new SeqNo(12)), 2, '10: truncate(v12) deletes v10 and v11');
  expectEqual(showAll(await c.scan(k, SeqNo.minimum(), SCAN_ALL)), [s(12, '')], '10: only v12 remains');

  // 11
  const k3 = `k3-${randomUUID()}`;
  const k4 = `k4-${randomUUID()}`;
  expectEqual(await c.compareAndSet(k3, undefined, v(0, 'zero')), CaSResult.Committed, '11: seqno v0 commits');
  expectEqual(show(await c.head(k3)), s(0, 'zero'), '11: v0 reads back');
  expectEqual(await c.compareAndSet(k4, undefined, v(MAX_CONSENSUS_SEQNO, 'max')), CaSResult.Committed, '11: seqno 2^63-1 commits');
  expectEqual(show(await c.head(k4)), s(MAX_CONSENSUS_SEQNO, 'max'), '11: 2^63-1 reads back exactly');
  expectEqual(showAll(await c.scan(k4, new SeqNo(MAX_CONSENSUS_SEQNO), SCAN_ALL)), [s(MAX_CONSENSUS_SEQNO, 'max')], '11: scan from 2^63-1');
  expectEqual(showAll(await c.scan(k4, new SeqNo(SeqNo.MAX_VALUE), SCAN_ALL)), [], '11: scan from 2^64-1 is empty');
  expectEqual(await c.truncate(k4, new SeqNo(MAX_CONSENSUS_SEQNO)), 0, '11: truncate at 2^63-1 deletes nothing');
  await expectRejects(c.truncate(k4, new SeqNo(SeqNo.MAX_VALUE)), { determinate: true, code: ErrorCode.FailedPrecondition }, '11: truncate at 2^64-1 is past the head');
  const k5 = `k5-${randomUUID()}`;
  await expectRejects(c.compareAndSet(k5, undefined, v(1n << 63n, 'x')), { determinate: true, code: ErrorCode.InvalidArgument }, '11: seqno 2^63 rejects InvalidArgument');
  await expectRejects(c.compareAndSet(k5, undefined, v(SeqNo.MAX_VALUE, 'x')), { determinate: true, code: ErrorCode.InvalidArgument }, '11: seqno 2^64-1 rejects InvalidArgument');
  await expectRejects(c.compareAndSet(k4, new SeqNo(MAX_CONSENSUS_SEQNO), v(1n << 63n, 'x')), { determinate: true, code: ErrorCode.InvalidArgument }, '11: no seqno above 2^63-1 can follow it');
  expectEqual(show(await c.head(k5)), undefined, '11: rejected seqnos wrote nothing');
  expectEqual((await collect(c.listKeys())).sort(), [k, k2, k3, k4].sort(), '11: listKeys yields every written key once');
}

async function invalidArguments(c: Consensus): Promise<void> {
  const bad = { determinate: true, code: ErrorCode.InvalidArgument };
  const badKeys: [unknown, string][] = [
    ['', 'the empty key'],
    ['a\u0000b', 'a key with U+0000'],
    [keyOfBytes(1025), 'a 1025-byte key'],
    ['\ud800', 'a key with a lone surrogate'],
    [42, 'a number as key'],
    [undefined, 'an undefined key'],
  ];
  for (const [key, what] of badKeys) {
    const k = key as string;
    await expectRejects(() => c.head(k), bad, `head rejects ${what}`);
    await expectRejects(() => c.compareAndSet(k, undefined, v(1, 'x')), bad, `compareAndSet rejects ${what}`);
    await expectRejects(() => c.scan(k, SeqNo.minimum(), 1), bad, `scan rejects ${what}`);
    await expectRejects(() => c.truncate(k, SeqNo.minimum()), bad, `truncate rejects ${what}`);
  }
  const k = `args-${randomUUID()}`;
  for (const limit of [0, -1, 1.5, Number.NaN, Infinity, '3']) {
    await expectRejects(() => c.scan(k, SeqNo.minimum(), limit as number), bad, `scan rejects limit ${String(limit)}`);
  }
  await expectRejects(() => c.scan(k, 0 as unknown as SeqNo, 1), bad, 'scan rejects a number as seqno');
  await expectRejects(() => c.truncate(k, 5n as unknown as SeqNo), bad, 'truncate rejects a bigint as seqno');
  await expectRejects(() => c.compareAndSet(k, 3 as unknown as SeqNo, v(5, 'x')), bad, 'compareAndSet rejects a number as expected');
  await expectRejects(() => c.compareAndSet(k, undefined, { seqno: 5n, data: new Uint8Array() } as unknown as VersionedData), bad, 'compareAndSet rejects a bigint as new seqno');
  await expectRejects(() => c.compareAndSet(k, undefined, { seqno: new SeqNo(5), data: 'text' } as unknown as VersionedData), bad, 'compareAndSet rejects a string as data');
  await expectRejects(() => c.compareAndSet(k, undefined, null as unknown as VersionedData), bad, 'compareAndSet rejects a null version');
  expectEqual(await collect(c.listKeys()), [], 'rejected arguments wrote nothing');

  const signal = AbortSignal.abort(new Error('stop'));
  const err = await expectRejects(() => c.compareAndSet(k, undefined, v(1, 'x'), { signal }), { determinate: true }, 'CaS with an already aborted signal rejects Determinate');
  expect(err instanceof ExternalError, 'an abort is an ExternalError');
  expectEqual(show(await c.head(k)), undefined, 'an aborted CaS wrote nothing');
  // Every operation honours its signal, reads included (SPEC OpOptions).
  await expectRejects(() => c.head(k, { signal }), {}, 'head with an already aborted signal rejects with an ExternalError');
  await expectRejects(() => c.scan(k, SeqNo.minimum(), 1, { signal }), {}, 'scan with an already aborted signal rejects with an ExternalError');
  await expectRejects(() => c.truncate(k, SeqNo.minimum(), { signal }), {}, 'truncate with an already aborted signal rejects with an ExternalError');
  await expectRejects(() => collect(c.listKeys({ signal })), {}, 'listKeys with an already aborted signal rejects with an ExternalError');
}

async function byteIsolation(c: Consensus): Promise<void> {
  const k = `bytes-${randomUUID()}`;
  const data = Buffer.from('original');
  expectEqual(await c.compareAndSet(k, undefined, { seqno: new SeqNo(1), data }), CaSResult.Committed, 'isolation: CaS commits');
  data.fill(0);
  const head = await c.head(k);
  expectEqual(show(head), s(1, 'original'), "isolation: mutating the caller's array after CaS does not change the stored value");
  head!.data.fill(1);
  expectEqual(show(await c.head(k)), s(1, 'original'), 'isolation: mutating a returned array does not change the stored value');
  const [scanned] = await c.scan(k, SeqNo.minimum(), 1);
  scanned!.data.fill(2);
  expectEqual(show(await c.head(k)), s(1, 'original'), 'isolation: mutating a scanned array does not change the stored value');
  const inFlight = Buffer.from('in flight');
  const next: { seqno: SeqNo; data: Uint8Array } = { seqno: new SeqNo(1), data: inFlight };
  const committing = c.compareAndSet(`${k}-in-flight`, undefined, next);
  inFlight.fill(0);
  next.seqno = new SeqNo(9);
  next.data = Buffer.from('replaced');
  expectEqual(await committing, CaSResult.Committed, 'isolation: a CaS whose argument the caller changes while it is in flight commits');
  expectEqual(show(await c.head(`${k}-in-flight`)), s(1, 'in flight'), "isolation: changing the caller's bytes or version object while CaS is in flight does not change what it stores");
  await seqnoIsolation(c, `${k}-seqno`);
  const sub = new Uint8Array(Buffer.from('xxsubarrayxx')).subarray(2, 10);
  expectEqual(await c.compareAndSet(k, new SeqNo(1), { seqno: new SeqNo(2), data: sub }), CaSResult.Committed, 'isolation: a subarray value commits');
  expectEqual(show(await c.head(k)), s(2, 'subarray'), 'isolation: only the bytes of the subarray are stored');
}

/** Tries to overwrite a seqno's value; a frozen SeqNo refuses, which is the point. */
function tamper(seqno: SeqNo, value: bigint): void {
  try {
    (seqno as { value: bigint }).value = value;
  } catch {
    // immutable: nothing changed
  }
}

/** Neither the caller's seqno objects nor the ones a backend hands out are the stored state. */
async function seqnoIsolation(c: Consensus, k: string): Promise<void> {
  const five = new SeqNo(5);
  expectEqual(await c.compareAndSet(k, undefined, { seqno: five, data: Buffer.from('x') }), CaSResult.Committed, 'seqno isolation: CaS commits v5');
  tamper(five, 77n);
  expectEqual(show(await c.head(k)), s(5, 'x'), "seqno isolation: changing the caller's seqno after CaS does not change the stored head");
  const head = await c.head(k);
  tamper(head!.seqno, 66n);
  expectEqual(show(await c.head(k)), s(5, 'x'), "seqno isolation: changing a returned head's seqno does not change the stored head");
  const [scanned] = await c.scan(k, SeqNo.minimum(), 1);
  tamper(scanned!.seqno, 55n);
  expectEqual(showAll(await c.scan(k, SeqNo.minimum(), SCAN_ALL)), [s(5, 'x')], "seqno isolation: changing a scanned seqno does not change the stored versions");
  const expected = new SeqNo(5);
  const committing = c.compareAndSet(k, expected, { seqno: new SeqNo(6), data: Buffer.from('y') });
  tamper(expected, 1n);
  expectEqual(await committing, CaSResult.Committed, 'seqno isolation: changing the expected seqno while CaS is in flight does not change what it compares');
}

async function hostile(c: Consensus): Promise<void> {
  const before = new Set(await collect(c.listKeys()));
  const keys = hostileKeys();
  for (const [i, key] of keys.entries()) {
    expectEqual(await c.compareAndSet(key, undefined, v(i + 1, `value-${i}`)), CaSResult.Committed, `hostile key ${JSON.stringify(key)} commits`);
  }
  for (const [i, key] of keys.entries()) {
    expectEqual(show(await c.head(key)), s(i + 1, `value-${i}`), `hostile key ${JSON.stringify(key)} reads back its own value`);
    expectEqual(showAll(await c.scan(key, SeqNo.minimum(), SCAN_ALL)), [s(i + 1, `value-${i}`)], `hostile key ${JSON.stringify(key)} scans back exactly one version`);
  }
  const listed = (await collect(c.listKeys())).filter((k) => !before.has(k));
  expectEqual(listed.sort(), [...keys].sort(), 'listKeys yields every hostile key exactly');
}
