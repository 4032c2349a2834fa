import { randomUUID } from 'node:crypto';
import { CaSResult, SCAN_ALL, type Consensus, type VersionedData } from '../consensus.js';
import { ErrorCode } from '../errors.js';
import { SeqNo } from '../seqno.js';
import { MAX_CONSENSUS_SEQNO } from '../validate.js';
import {
  BROKEN_LISTINGS,
  MANY_KEYS,
  inParallel,
  resolveCapabilities,
  resolveWaitMs,
  runCases,
  type ResolvedCapabilities,
  type SuiteCase,
  type SuiteOptions,
} from './cases.js';
import { collect, expect, expectEqual, expectRejects, expectResolves, within, type Rejection } from './expect.js';
import { hostileKeys, keyOfBytes } from './keys.js';

/** What a Consensus case gets: a handle on a fresh, empty location of its own. */
export interface ConsensusCaseContext {
  /** Closed by the suite after the case (close is idempotent, so a case may close it first). */
  readonly consensus: Consensus;
  readonly capabilities: ResolvedCapabilities;
  /** See {@link SuiteOptions.waitMs}. */
  readonly waitMs: number;
}

export type ConsensusCase = SuiteCase<ConsensusCaseContext>;

/** Options of {@link consensusImplTest}. */
export interface ConsensusImplTestOptions extends SuiteOptions {
  /** The cases to run (default {@link consensusCases}); a subset or extra cases of one's own. */
  cases?: readonly ConsensusCase[];
}

/**
 * The Consensus conformance suite: SPEC "What the conformance suites check", plus
 * listing, limits, aborts, hostile keys, invalid arguments and isolation of the bytes and
 * seqnos that cross the interface. `open` must yield a handle on a fresh, empty location
 * each time it is called; every case gets one. Without `options.test`, throws a
 * ConformanceError naming the first case and expectation that fail.
 */
export async function consensusImplTest(open: () => Promise<Consensus>, options: ConsensusImplTestOptions = {}): Promise<void> {
  const capabilities = resolveCapabilities(options);
  const waitMs = resolveWaitMs(options);
  await runCases(options.cases ?? consensusCases, capabilities, options.test, async (kase) => {
    const consensus = await open();
    let failed = true;
    try {
      await kase.run({ consensus, capabilities, waitMs });
      failed = false;
    } finally {
      // A close failing after the case failed would hide why it failed.
      await consensus.close().catch((err: unknown) => {
        if (!failed) throw err;
      });
    }
  });
}

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

const freshKey = (name = 'k') => `${name}-${randomUUID()}`;

/** A value as a test name shows it: `3n`, `"3"`, `NaN`. */
const label = (x: unknown): string => (typeof x === 'bigint' ? `${x}n` : typeof x === 'string' ? JSON.stringify(x) : String(x));

const invalid: Rejection = { determinate: true, code: ErrorCode.InvalidArgument };
const cancelled: Rejection = { determinate: true, code: ErrorCode.Cancelled };

/**
 * Writes `versions` to a fresh key in order (each CaS expecting the one before) and
 * truncates below `truncateTo`: the state a SPEC item starts from, reached the way the
 * items before it reach it.
 */
async function keyWith(c: Consensus, versions: [number, string][], truncateTo?: number): Promise<string> {
  const k = freshKey();
  let expected: SeqNo | undefined;
  for (const [seqno, data] of versions) {
    expectEqual(await c.compareAndSet(k, expected, v(seqno, data)), CaSResult.Committed, `setup: CaS of v${seqno} commits`);
    expected = new SeqNo(seqno);
  }
  if (truncateTo !== undefined) await c.truncate(k, new SeqNo(truncateTo));
  return k;
}

/** Keys written by CaS with `expected` undefined, `width` at a time. */
async function writeKeys(c: Consensus, keys: readonly string[]): Promise<void> {
  await inParallel(keys, 32, async (k) => {
    expectEqual(await c.compareAndSet(k, undefined, v(1, k)), CaSResult.Committed, `setup: CaS of ${JSON.stringify(k)} commits`);
  });
}

const specCases: ConsensusCase[] = [
  {
    name: '1: a fresh key is empty: head is undefined, scan is [], truncate rejects',
    run: async ({ consensus: c }) => {
      const k = freshKey();
      expectEqual(show(await c.head(k)), undefined, 'head of a fresh key is undefined');
      expectEqual(showAll(await c.scan(k, SeqNo.minimum(), SCAN_ALL)), [], 'scan of a fresh key is []');
      await expectRejects(c.truncate(k, SeqNo.minimum()), { determinate: true, code: ErrorCode.FailedPrecondition }, 'truncate of a fresh key rejects Determinate FailedPrecondition');
      expectEqual(await collect(c.listKeys()), [], 'a fresh location lists no keys');
    },
  },
  {
    name: '2: CaS on an empty key: expecting v0 mismatches, expecting nothing commits; listKeys yields the key',
    run: async ({ consensus: c }) => {
      const k = freshKey();
      expectEqual(await c.compareAndSet(k, SeqNo.minimum(), v(5, 'abc')), CaSResult.ExpectationMismatch, 'CaS expecting v0 on an empty key is ExpectationMismatch');
      expectEqual(show(await c.head(k)), undefined, 'a mismatched CaS changes nothing');
      expectEqual(await c.compareAndSet(k, undefined, v(5, 'abc')), CaSResult.Committed, 'CaS expecting nothing on an empty key commits');
      expectEqual(await collect(c.listKeys()), [k], 'listKeys yields exactly the written key');
      expectEqual(show(await c.head(k)), s(5, 'abc'), 'head is the committed version');
      expectEqual(await c.compareAndSet(k, undefined, v(6, 'abc')), CaSResult.ExpectationMismatch, 'CaS expecting nothing on a written key is ExpectationMismatch');
      expectEqual(show(await c.head(k)), s(5, 'abc'), 'a mismatched CaS on a written key changes nothing');
    },
  },
  {
    name: '3: scan from v0 and from v5 gives [v5], from v6 []',
    run: async ({ consensus: c }) => {
      const k = await keyWith(c, [[5, 'abc']]);
      expectEqual(showAll(await c.scan(k, new SeqNo(0), SCAN_ALL)), [s(5, 'abc')], 'scan from v0');
      expectEqual(showAll(await c.scan(k, new SeqNo(5), SCAN_ALL)), [s(5, 'abc')], 'scan from v5');
      expectEqual(showAll(await c.scan(k, new SeqNo(6), SCAN_ALL)), [], 'scan from v6 is empty');
    },
  },
  {
    name: '4: truncate at or below the only version deletes nothing; past the head it rejects',
    run: async ({ consensus: c }) => {
      const k = await keyWith(c, [[5, 'abc']]);
      expectEqual(await c.truncate(k, new SeqNo(0)), 0, 'truncate(v0) deletes nothing');
      expectEqual(await c.truncate(k, new SeqNo(5)), 0, 'truncate(v5) deletes nothing');
      await expectRejects(c.truncate(k, new SeqNo(6)), { determinate: true, code: ErrorCode.FailedPrecondition }, 'truncate past the head rejects Determinate FailedPrecondition');
      expectEqual(show(await c.head(k)), s(5, 'abc'), 'a refused truncate leaves the head');
    },
  },
  {
    name: '5: CaS expecting a seqno above or below the head mismatches',
    run: async ({ consensus: c }) => {
      const k = await keyWith(c, [[5, 'abc']]);
      expectEqual(await c.compareAndSet(k, new SeqNo(7), v(10, 'def')), CaSResult.ExpectationMismatch, 'CaS expecting a seqno above the head is ExpectationMismatch');
      expectEqual(await c.compareAndSet(k, new SeqNo(3), v(10, 'def')), CaSResult.ExpectationMismatch, 'CaS expecting a seqno below the head is ExpectationMismatch');
      expectEqual(show(await c.head(k)), s(5, 'abc'), 'mismatched CaS change nothing');
    },
  },
  {
    name: '6: CaS whose new seqno is not above the expected one rejects InvalidArgument',
    run: async ({ consensus: c }) => {
      const k = await keyWith(c, [[5, 'abc']]);
      await expectRejects(c.compareAndSet(k, new SeqNo(5), v(5, 'def')), { ...invalid, message: 'new seqno must be strictly greater than expected. Got new: SeqNo(5) expected: SeqNo(5)' }, 'CaS with new == expected rejects');
      await expectRejects(c.compareAndSet(k, new SeqNo(5), v(3, 'def')), { ...invalid, message: 'new seqno must be strictly greater than expected. Got new: SeqNo(3) expected: SeqNo(5)' }, 'CaS with new < expected rejects');
      expectEqual(show(await c.head(k)), s(5, 'abc'), 'rejected CaS change nothing');
    },
  },
  {
    name: '7: CaS expecting the head commits; scan by start and limit',
    run: async ({ consensus: c }) => {
      const k = await keyWith(c, [[5, 'abc']]);
      expectEqual(await c.compareAndSet(k, new SeqNo(5), v(10, 'def')), CaSResult.Committed, 'CaS expecting the head commits');
      expectEqual(show(await c.head(k)), s(10, 'def'), 'head is v10');
      const both = [s(5, 'abc'), s(10, 'def')];
      expectEqual(showAll(await c.scan(k, new SeqNo(5), SCAN_ALL)), both, 'scan from v5');
      expectEqual(showAll(await c.scan(k, new SeqNo(6), SCAN_ALL)), [s(10, 'def')], 'scan from v6');
      expectEqual(showAll(await c.scan(k, new SeqNo(10), SCAN_ALL)), [s(10, 'def')], 'scan from v10');
      expectEqual(showAll(await c.scan(k, new SeqNo(11), SCAN_ALL)), [], 'scan from v11');
      expectEqual(showAll(await c.scan(k, new SeqNo(0), 1)), [s(5, 'abc')], 'scan from v0 limit 1');
      expectEqual(showAll(await c.scan(k, new SeqNo(5), 1)), [s(5, 'abc')], 'scan from v5 limit 1');
      expectEqual(showAll(await c.scan(k, new SeqNo(0), 2)), both, 'scan from v0 limit 2');
      expectEqual(showAll(await c.scan(k, new SeqNo(4), 100)), both, 'scan from v4 limit 100');
    },
  },
  {
    name: '8: truncate deletes the versions below it, never the head, and repeats harmlessly',
    run: async ({ consensus: c }) => {
      const k = await keyWith(c, [[5, 'abc'], [10, 'def']]);
      expectEqual(await c.truncate(k, new SeqNo(6)), 1, 'truncate(v6) deletes one version');
      expectEqual(showAll(await c.scan(k, new SeqNo(0), SCAN_ALL)), [s(10, 'def')], 'after truncate only v10 remains');
      expectEqual(await c.truncate(k, new SeqNo(6)), 0, 'repeating truncate(v6) deletes nothing');
      expectEqual(show(await c.head(k)), s(10, 'def'), 'truncate keeps the head');
      expectEqual(await c.truncate(k, new SeqNo(10)), 0, 'truncate at the head deletes nothing');
      expectEqual(show(await c.head(k)), s(10, 'def'), 'truncate at the head keeps the head');
    },
  },
  {
    name: '9: keys are independent',
    run: async ({ consensus: c }) => {
      const k = await keyWith(c, [[5, 'abc'], [10, 'def']], 6);
      const k2 = freshKey('k2');
      expectEqual(show(await c.head(k2)), undefined, 'a second key starts empty');
      expectEqual(await c.compareAndSet(k2, undefined, v(1, 'einszweidrei')), CaSResult.Committed, 'second key commits v1');
      expectEqual(show(await c.head(k2)), s(1, 'einszweidrei'), 'second key head is v1');
      expectEqual(show(await c.head(k)), s(10, 'def'), 'first key head is still v10');
      expectEqual(await c.compareAndSet(k, new SeqNo(1), v(11, 'x')), CaSResult.ExpectationMismatch, "the second key's seqno does not satisfy the first key");
      expectEqual(await c.truncate(k2, new SeqNo(1)), 0, "truncating the second key at its head deletes nothing");
      expectEqual(showAll(await c.scan(k, SeqNo.minimum(), SCAN_ALL)), [s(10, 'def')], 'the first key still holds exactly v10');
      expectEqual((await collect(c.listKeys())).sort(), [k, k2].sort(), 'listKeys yields both keys');
    },
  },
  {
    name: '10: a 10 KiB value and an empty value commit; truncate counts both versions below',
    run: async ({ consensus: c }) => {
      const k = await keyWith(c, [[5, 'abc'], [10, 'def']], 6);
      const big = Buffer.alloc(10 * 1024);
      for (let i = 0; i < big.length; i++) big[i] = (i * 7 + 3) & 0xff;
      expectEqual(await c.compareAndSet(k, new SeqNo(10), v(11, big)), CaSResult.Committed, 'a 10 KiB value commits at v11');
      expectEqual(show(await c.head(k)), s(11, big.toString('latin1')), 'the 10 KiB value reads back exactly');
      expectEqual(await c.compareAndSet(k, new SeqNo(11), v(12, '')), CaSResult.Committed, 'an empty value commits at v12');
      expectEqual(show(await c.head(k)), s(12, ''), 'the empty value reads back empty');
      expectEqual(await c.truncate(k, new SeqNo(12)), 2, 'truncate(v12) deletes v10 and v11');
      expectEqual(showAll(await c.scan(k, SeqNo.minimum(), SCAN_ALL)), [s(12, '')], 'only v12 remains');
    },
  },
  {
    name: '11: seqnos 0 and 2^63-1 commit; 2^63 and 2^64-1 reject InvalidArgument',
    run: async ({ consensus: c }) => {
      const k3 = freshKey('k3');
      const k4 = freshKey('k4');
      expectEqual(await c.compareAndSet(k3, undefined, v(0, 'zero')), CaSResult.Committed, 'seqno v0 commits');
      expectEqual(show(await c.head(k3)), s(0, 'zero'), 'v0 reads back');
      expectEqual(await c.compareAndSet(k4, undefined, v(MAX_CONSENSUS_SEQNO, 'max')), CaSResult.Committed, 'seqno 2^63-1 commits');
      expectEqual(show(await c.head(k4)), s(MAX_CONSENSUS_SEQNO, 'max'), '2^63-1 reads back exactly');
      expectEqual(showAll(await c.scan(k4, new SeqNo(MAX_CONSENSUS_SEQNO), SCAN_ALL)), [s(MAX_CONSENSUS_SEQNO, 'max')], 'scan from 2^63-1');
      expectEqual(showAll(await c.scan(k4, new SeqNo(SeqNo.MAX_VALUE), SCAN_ALL)), [], 'scan from 2^64-1 is empty');
      expectEqual(await c.truncate(k4, new SeqNo(MAX_CONSENSUS_SEQNO)), 0, 'truncate at 2^63-1 deletes nothing');
      await expectRejects(c.truncate(k4, new SeqNo(SeqNo.MAX_VALUE)), { determinate: true, code: ErrorCode.FailedPrecondition }, 'truncate at 2^64-1 is past the head');
      const k5 = freshKey('k5');
      await expectRejects(c.compareAndSet(k5, undefined, v(1n << 63n, 'x')), invalid, 'seqno 2^63 rejects InvalidArgument');
      await expectRejects(c.compareAndSet(k5, undefined, v(SeqNo.MAX_VALUE, 'x')), invalid, 'seqno 2^64-1 rejects InvalidArgument');
      await expectRejects(c.compareAndSet(k4, new SeqNo(MAX_CONSENSUS_SEQNO), v(1n << 63n, 'x')), invalid, 'no seqno above 2^63-1 can follow it');
      expectEqual(show(await c.head(k5)), undefined, 'rejected seqnos wrote nothing');
      expectEqual((await collect(c.listKeys())).sort(), [k3, k4].sort(), 'listKeys yields every written key once');
    },
  },
];

const listingCases: ConsensusCase[] = [
  {
    name: `listing: ${MANY_KEYS} keys, more than one page of most stores, are each listed once`,
    run: async ({ consensus: c }) => {
      const keys = Array.from({ length: MANY_KEYS }, (_, i) => `many/${String(i).padStart(4, '0')}`);
      await writeKeys(c, keys);
      const listed = await collect(c.listKeys());
      expectEqual(listed.length, keys.length, `listKeys yields ${keys.length} keys, each once`);
      expectEqual(listed.sort(), keys, `listKeys yields exactly the ${keys.length} written keys`);
    },
  },
  {
    name: 'listing: a loop that breaks early releases its listing',
    run: async ({ consensus: c, waitMs }) => {
      const keys = Array.from({ length: MANY_KEYS }, (_, i) => `brk/${String(i).padStart(4, '0')}`);
      await writeKeys(c, keys);
      const iterator = c.listKeys()[Symbol.asyncIterator]();
      expect((await iterator.next()).done === false, 'a listing of many keys yields a first key');
      expect((await iterator.next()).done === false, 'a listing of many keys yields a second key');
      await within(Promise.resolve(iterator.return?.()), waitMs, 'return() on a listing (what break calls) settles');
      expectEqual((await within(iterator.next(), waitMs, 'next() after return() settles')).done, true, 'after the loop breaks, the listing yields nothing more');
      await within(
        Promise.all(
          Array.from({ length: BROKEN_LISTINGS }, async (_, i) => {
            let seen = 0;
            for await (const _key of c.listKeys()) if (++seen > i % 3) break;
          }),
        ),
        waitMs,
        `${BROKEN_LISTINGS} listings broken off at once end`,
      );
      expectEqual(
        show(await within(c.head(keys[7]!), waitMs, `head after ${BROKEN_LISTINGS} broken-off listings answers`)),
        s(1, keys[7]!),
        'head still reads after broken-off listings',
      );
      expectEqual(
        await within(c.compareAndSet('after-break', undefined, v(1, 'x')), waitMs, 'CaS after broken-off listings answers'),
        CaSResult.Committed,
        'CaS still commits after broken-off listings',
      );
      const again = await within(collect(c.listKeys()), waitMs, 'a full listing after broken-off ones finishes');
      expectEqual(again.sort(), [...keys, 'after-break'].sort(), 'a full listing after broken-off ones yields every key once');
      await within(c.close(), waitMs, 'close after broken-off listings finishes');
    },
  },
];

const limitCases: ConsensusCase[] = [
  {
    name: 'limits: SCAN_ALL returns every version ascending, a limit that many',
    run: async ({ consensus: c }) => {
      const seqnos = Array.from({ length: 30 }, (_, i) => 3 * i + 1);
      const k = await keyWith(c, seqnos.map((n) => [n, `d${n}`]));
      const all = seqnos.map((n) => s(n, `d${n}`));
      expectEqual(showAll(await c.scan(k, SeqNo.minimum(), SCAN_ALL)), all, 'scan with SCAN_ALL returns every version, ascending');
      expectEqual(showAll(await c.scan(k, new SeqNo(2), 5)), all.slice(1, 6), 'scan from between two versions with limit 5 returns the next five');
      expectEqual(showAll(await c.scan(k, new SeqNo(4), 29)), all.slice(1), 'a limit equal to what is left returns the rest');
      expectEqual(showAll(await c.scan(k, new SeqNo(4), 1000)), all.slice(1), 'a limit above what is left returns the rest');
      expectEqual(showAll(await c.scan(k, new SeqNo(88), SCAN_ALL)), [s(88, 'd88')], 'scan from the head returns the head');
      expectEqual(await c.truncate(k, new SeqNo(88)), 29, 'truncate at the head deletes every other version');
      expectEqual(showAll(await c.scan(k, SeqNo.minimum(), SCAN_ALL)), [s(88, 'd88')], 'after that only the head remains');
    },
  },
  {
    name: 'limits: a scan limit that is not a positive integer rejects InvalidArgument',
    run: async ({ consensus: c }) => {
      const k = await keyWith(c, [[1, 'x']]);
      for (const limit of [0, -1, -SCAN_ALL, 1.5, 0.5, Number.NaN, Infinity, -Infinity, '3', 3n, null]) {
        await expectRejects(() => c.scan(k, SeqNo.minimum(), limit as number), invalid, `scan rejects limit ${label(limit)}`);
      }
      expectEqual(showAll(await c.scan(k, SeqNo.minimum(), 1)), [s(1, 'x')], 'limit 1 is accepted');
    },
  },
  {
    name: 'limits: any positive integer limit is accepted, however far above SCAN_ALL',
    run: async ({ consensus: c }) => {
      const k = await keyWith(c, [[1, 'x'], [2, 'y']]);
      // Drivers bind limits as 64-bit integers: a backend must not pass these on unclamped.
      for (const limit of [SCAN_ALL, 2 ** 53, 2 ** 63, 2 ** 64, 1e300, Number.MAX_VALUE]) {
        const got = await expectResolves(c.scan(k, SeqNo.minimum(), limit), `scan accepts limit ${label(limit)}`);
        expectEqual(showAll(got), [s(1, 'x'), s(2, 'y')], `scan with limit ${label(limit)} returns every version`);
      }
    },
  },
  {
    name: 'empty values: an empty value is a version, not a missing one',
    run: async ({ consensus: c }) => {
      const k = freshKey();
      expectEqual(await c.compareAndSet(k, undefined, v(1, '')), CaSResult.Committed, 'an empty first version commits');
      expectEqual(show(await c.head(k)), s(1, ''), 'head of a key holding an empty value is that version');
      expectEqual(showAll(await c.scan(k, SeqNo.minimum(), SCAN_ALL)), [s(1, '')], 'scan returns the empty version');
      expectEqual(await c.compareAndSet(k, undefined, v(2, 'x')), CaSResult.ExpectationMismatch, 'a key holding an empty value is not empty for CaS');
      expectEqual(await c.compareAndSet(k, new SeqNo(1), v(2, '')), CaSResult.Committed, 'an empty version can follow an empty one');
      expectEqual(showAll(await c.scan(k, SeqNo.minimum(), SCAN_ALL)), [s(1, ''), s(2, '')], 'both empty versions are kept');
      expectEqual(await collect(c.listKeys()), [k], 'a key holding only empty values is listed');
    },
  },
];

const argumentCases: ConsensusCase[] = [
  {
    name: 'invalid arguments: bad keys reject InvalidArgument on every operation, before storage is touched',
    run: async ({ consensus: c, capabilities }) => {
      const tooLong = capabilities.maxKeyBytes + 1;
      const badKeys: [unknown, string][] = [
        ['', 'the empty key'],
        ['a\u0000b', 'a key with U+0000'],
        [keyOfBytes(tooLong), `a ${tooLong}-byte key`],
        ...(tooLong === 1025 ? [] : [[keyOfBytes(1025), 'a 1025-byte key'] as [string, string]]),
        ['\ud800', 'a key with a lone surrogate'],
        [42, 'a number as key'],
        [undefined, 'an undefined key'],
        [null, 'a null key'],
      ];
      for (const [key, what] of badKeys) {
        const k = key as string;
        await expectRejects(() => c.head(k), invalid, `head rejects ${what}`);
        await expectRejects(() => c.compareAndSet(k, undefined, v(1, 'x')), invalid, `compareAndSet rejects ${what}`);
        await expectRejects(() => c.scan(k, SeqNo.minimum(), 1), invalid, `scan rejects ${what}`);
        await expectRejects(() => c.truncate(k, SeqNo.minimum()), invalid, `truncate rejects ${what}`);
      }
      const over = await expectRejects(() => c.compareAndSet(keyOfBytes(tooLong), undefined, v(1, 'x')), invalid, 'an over-long key rejects');
      expect(over.message.includes(String(capabilities.maxKeyBytes)), `the over-long key error names the limit ${capabilities.maxKeyBytes}: ${over.message}`);
      expectEqual(await collect(c.listKeys()), [], 'rejected keys wrote nothing');
    },
  },
  {
    name: 'invalid arguments: seqnos, versions, data and signals of the wrong type reject InvalidArgument',
    run: async ({ consensus: c }) => {
      const k = freshKey('args');
      await expectRejects(() => c.scan(k, 0 as unknown as SeqNo, 1), invalid, 'scan rejects a number as seqno');
      await expectRejects(() => c.truncate(k, 5n as unknown as SeqNo), invalid, 'truncate rejects a bigint as seqno');
      await expectRejects(() => c.compareAndSet(k, 3 as unknown as SeqNo, v(5, 'x')), invalid, 'compareAndSet rejects a number as expected');
      await expectRejects(() => c.compareAndSet(k, undefined, { seqno: 5n, data: new Uint8Array() } as unknown as VersionedData), invalid, 'compareAndSet rejects a bigint as new seqno');
      await expectRejects(() => c.compareAndSet(k, undefined, { seqno: new SeqNo(5), data: 'text' } as unknown as VersionedData), invalid, 'compareAndSet rejects a string as data');
      await expectRejects(() => c.compareAndSet(k, undefined, { seqno: new SeqNo(5) } as unknown as VersionedData), invalid, 'compareAndSet rejects a version without data');
      await expectRejects(() => c.compareAndSet(k, undefined, null as unknown as VersionedData), invalid, 'compareAndSet rejects a null version');
      const fake = { signal: { aborted: true } as unknown as AbortSignal };
      await expectRejects(() => c.compareAndSet(k, undefined, v(1, 'x'), fake), invalid, 'compareAndSet rejects a signal that is not an AbortSignal');
      await expectRejects(() => c.head(k, fake), invalid, 'head rejects a signal that is not an AbortSignal');
      expectEqual(await collect(c.listKeys()), [], 'rejected arguments wrote nothing');
    },
  },
  {
    name: 'abort: an already aborted signal rejects Determinate Cancelled on every operation, and changes nothing',
    run: async ({ consensus: c }) => {
      const k = await keyWith(c, [[1, 'one'], [2, 'two']]);
      for (const signal of [AbortSignal.abort(new Error('stop')), AbortSignal.abort()]) {
        const why = signal.reason instanceof Error && signal.reason.message === 'stop' ? 'an Error' : 'the default reason';
        const opts = { signal };
        await expectRejects(() => c.compareAndSet(k, new SeqNo(2), v(3, 'three'), opts), cancelled, `CaS aborted with ${why} rejects Determinate Cancelled`);
        await expectRejects(() => c.compareAndSet(freshKey('new'), undefined, v(1, 'x'), opts), cancelled, `CaS on a new key aborted with ${why} rejects Determinate Cancelled`);
        await expectRejects(() => c.truncate(k, new SeqNo(2), opts), cancelled, `truncate aborted with ${why} rejects Determinate Cancelled`);
        await expectRejects(() => c.head(k, opts), cancelled, `head aborted with ${why} rejects Determinate Cancelled`);
        await expectRejects(() => c.scan(k, SeqNo.minimum(), 1, opts), cancelled, `scan aborted with ${why} rejects Determinate Cancelled`);
        await expectRejects(() => collect(c.listKeys(opts)), cancelled, `listKeys aborted with ${why} rejects Determinate Cancelled`);
      }
      expectEqual(showAll(await c.scan(k, SeqNo.minimum(), SCAN_ALL)), [s(1, 'one'), s(2, 'two')], 'aborted CaS and truncate changed nothing');
      expectEqual(await collect(c.listKeys()), [k], 'aborted CaS on new keys wrote nothing');
    },
  },
];

const isolationCases: ConsensusCase[] = [
  {
    name: "isolation: stored bytes are neither the caller's array nor the returned ones",
    run: async ({ consensus: c }) => {
      const k = freshKey('bytes');
      const data = Buffer.from('original');
      expectEqual(await c.compareAndSet(k, undefined, { seqno: new SeqNo(1), data }), CaSResult.Committed, 'CaS commits');
      data.fill(0);
      const head = await c.head(k);
      expectEqual(show(head), s(1, 'original'), "mutating the caller's array after CaS does not change the stored value");
      head!.data.fill(1);
      expectEqual(show(await c.head(k)), s(1, 'original'), 'mutating a returned array does not change the stored value');
      const [scanned] = await c.scan(k, SeqNo.minimum(), 1);
      scanned!.data.fill(2);
      expectEqual(show(await c.head(k)), s(1, 'original'), 'mutating a scanned array does not change the stored value');
      const sub = new Uint8Array(Buffer.from('xxsubarrayxx')).subarray(2, 10);
      expectEqual(await c.compareAndSet(k, new SeqNo(1), { seqno: new SeqNo(2), data: sub }), CaSResult.Committed, 'a subarray value commits');
      expectEqual(show(await c.head(k)), s(2, 'subarray'), 'only the bytes of the subarray are stored');
    },
  },
  {
    name: "isolation: changing a CaS's arguments while it is in flight changes nothing it stores",
    run: async ({ consensus: c }) => {
      const k = freshKey('in-flight');
      const inFlight = Buffer.from('in flight');
      const next: { seqno: SeqNo; data: Uint8Array } = { seqno: new SeqNo(1), data: inFlight };
      const committing = c.compareAndSet(k, undefined, next);
      inFlight.fill(0);
      next.seqno = new SeqNo(9);
      next.data = Buffer.from('replaced');
      expectEqual(await committing, CaSResult.Committed, 'a CaS whose argument the caller changes while it is in flight commits');
      expectEqual(show(await c.head(k)), s(1, 'in flight'), "changing the caller's bytes or version object while CaS is in flight does not change what it stores");
    },
  },
  {
    name: 'isolation: seqnos the caller passes or the backend returns are not stored state',
    run: async ({ consensus: c }) => {
      const k = freshKey('seqno');
      const five = new SeqNo(5);
      expectEqual(await c.compareAndSet(k, undefined, { seqno: five, data: Buffer.from('x') }), CaSResult.Committed, 'CaS commits v5');
      tamper(five, 77n);
      expectEqual(show(await c.head(k)), s(5, 'x'), "changing the caller's seqno after CaS does not change the stored head");
      const head = await c.head(k);
      tamper(head!.seqno, 66n);
      expectEqual(show(await c.head(k)), s(5, 'x'), "changing a returned head's seqno does not change the stored head");
      const [scanned] = await c.scan(k, SeqNo.minimum(), 1);
      tamper(scanned!.seqno, 55n);
      expectEqual(showAll(await c.scan(k, SeqNo.minimum(), SCAN_ALL)), [s(5, 'x')], 'changing a scanned seqno does not change the stored versions');
      const expected = new SeqNo(5);
      const committing = c.compareAndSet(k, expected, { seqno: new SeqNo(6), data: Buffer.from('y') });
      tamper(expected, 1n);
      expectEqual(await committing, CaSResult.Committed, 'changing the expected seqno while CaS is in flight does not change what it compares');
    },
  },
];

/** Tries to overwrite a seqno's value; a frozen SeqNo refuses, which is the point. */
function tamper(seqno: SeqNo, value: bigint): void {
  try {
    (seqno as { value: bigint }).value = value;
  } catch {
    // immutable: nothing changed
  }
}

const otherCases: ConsensusCase[] = [
  {
    name: 'hostile keys: each is a key of its own, read, scanned and listed back exactly',
    run: async ({ consensus: c, capabilities }) => {
      const keys = hostileKeys(capabilities.maxKeyBytes);
      for (const [i, key] of keys.entries()) {
        expectEqual(await c.compareAndSet(key, undefined, v(i + 1, `value-${i}`)), CaSResult.Committed, `hostile key ${JSON.stringify(key)} commits`);
      }
      for (const [i, key] of keys.entries()) {
        expectEqual(show(await c.head(key)), s(i + 1, `value-${i}`), `hostile key ${JSON.stringify(key)} reads back its own value`);
        expectEqual(showAll(await c.scan(key, SeqNo.minimum(), SCAN_ALL)), [s(i + 1, `value-${i}`)], `hostile key ${JSON.stringify(key)} scans back exactly one version`);
      }
      expectEqual((await collect(c.listKeys())).sort(), [...keys].sort(), 'listKeys yields every hostile key exactly');
    },
  },
  {
    name: 'close: is idempotent, also after Symbol.asyncDispose',
    run: async ({ consensus: c }) => {
      const k = await keyWith(c, [[1, 'x']]);
      expectEqual(show(await c.head(k)), s(1, 'x'), 'the handle reads before it is closed');
      await c[Symbol.asyncDispose]();
      await c.close();
      await c.close();
    },
  },
];

/** Every case of the Consensus suite, in the order the suite runs them. */
export const consensusCases: readonly ConsensusCase[] = Object.freeze([
  ...specCases,
  ...limitCases,
  ...listingCases,
  ...argumentCases,
  ...isolationCases,
  ...otherCases,
]);
