// The suites as lists of named cases (registration through an injected test function,
// capabilities, case selection) and stressBlob: sound on correct stores, failing on
// broken ones.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFile } from 'node:child_process';
import { after, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { Determinate, ErrorCode, Indeterminate, MemBlob, MemConsensus, SegmentedBytes, SeqNo, type Blob } from 'persist-location';
import { FileBlob } from 'persist-location/file';
import {
  ConformanceError,
  blobCases,
  blobImplTest,
  checkBlobHistory,
  consensusCases,
  consensusImplTest,
  stressBlob,
  type BlobCase,
  type BlobHistoryOp,
  type BlobStressReport,
  type ConsensusCase,
  type TestFunction,
} from 'persist-location/testing';

const execFileAsync = promisify(execFile);

const tmp = mkdtempSync(join(tmpdir(), 'suites-test-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

/** A test function that only notes what was registered. */
function recorder(): { test: TestFunction; names: string[] } {
  const names: string[] = [];
  return { names, test: (name) => void names.push(name) };
}

const memBlobs = (keepDeleted = false) => {
  const location = randomUUID();
  return async (path: string) => new MemBlob({ name: `${location}/${path}`, keepDeleted });
};

/** Names of the blob cases that fail when each runs alone on a store `open` makes. */
async function failingAlone(cases: readonly BlobCase[], open: () => (path: string) => Promise<Blob>): Promise<string[]> {
  const failing: string[] = [];
  for (const kase of cases) await blobImplTest(open(), { cases: [kase], largeValueBytes: 1 << 20 }).catch(() => failing.push(kase.name));
  return failing;
}

/**
 * The pass and fail events of running `file` with node:test, in order. node:test's
 * run() refuses to run inside a test file, so a node process of its own runs it.
 */
async function nodeTestEvents(file: string): Promise<{ name: string; nesting: number; passed: boolean; message: string }[]> {
  const script = `
    import { run } from 'node:test';
    for await (const e of run({ files: [process.argv[2]] })) {
      if (e.type !== 'test:pass' && e.type !== 'test:fail') continue;
      const error = e.data.details?.error;
      const message = [error?.message, error?.cause?.message].filter(Boolean).join(' / ');
      console.log(JSON.stringify({ name: e.data.name, nesting: e.data.nesting, passed: e.type === 'test:pass', message }));
    }`;
  // A file, not `node -e`: run() hands its own process's arguments on to the children it spawns.
  const runner = join(tmp, `run-${randomUUID()}.mjs`);
  writeFileSync(runner, script);
  const env = { ...process.env };
  delete env.NODE_TEST_CONTEXT;
  const { stdout } = await execFileAsync(process.execPath, [runner, file], { env, timeout: 120_000, maxBuffer: 64 << 20 });
  return stdout.split('\n').filter((line) => line.startsWith('{')).map((line) => JSON.parse(line));
}

describe('suites under node:test', () => {
  test('every case is a sub-test; a failing case names itself and the later cases still run', async () => {
    const file = new URL('./fixtures/suites-under-node-test.js', import.meta.url).pathname;
    type Seen = { name: string; passed: boolean; message: string };
    const parents = new Map<string, Seen[]>();
    let pending: Seen[] = [];
    for (const event of await nodeTestEvents(file)) {
      if (event.name === file) continue; // the file itself, as a test
      if (event.nesting === 1) pending.push({ name: event.name, passed: event.passed, message: event.message });
      if (event.nesting === 0) {
        parents.set(event.name, pending);
        pending = [];
      }
    }
    assert.deepEqual([...parents.keys()].sort(), ['blob through the top-level test', 'blob under describe', 'consensus through t.test']);

    const consensus = parents.get('consensus through t.test')!;
    assert.deepEqual(consensus.map((s) => s.name), consensusCases.map((c) => c.name), 'every consensus case ran as a sub-test, in order');
    const scanAll = consensusCases.findIndex((c) => c.name.startsWith('limits: SCAN_ALL'));
    assert.deepEqual(consensus.filter((s) => !s.passed).map((s) => s.name), [consensusCases[scanAll]!.name], 'only the SCAN_ALL case fails');
    assert.match(consensus[scanAll]!.message, /scan with SCAN_ALL returns every version/);
    assert.ok(consensus.slice(scanAll + 1).length > 5 && consensus.slice(scanAll + 1).every((s) => s.passed), 'the cases after the failing one ran and passed');

    // What fails under node:test is exactly what fails when each case runs alone.
    const applying = blobCases.filter((c) => c.applies?.({ maxKeyBytes: 1024 }) ?? true);
    const expected = await failingAlone(applying, emptyIsMissing);
    assert.ok(expected.length >= 2, `an empty value read as missing fails at least two blob cases: ${expected.join(' | ')}`);
    for (const parent of ['blob through the top-level test', 'blob under describe']) {
      const blob = parents.get(parent)!;
      assert.deepEqual(blob.map((s) => s.name), applying.map((c) => c.name), `${parent}: every applicable blob case ran as a sub-test`);
      assert.deepEqual(blob.filter((s) => !s.passed).map((s) => s.name), expected, `${parent}: the failing sub-tests are the cases that fail alone`);
      for (const failed of blob.filter((s) => !s.passed)) assert.match(failed.message, /expected: .*empty/, `${parent}: ${failed.name} says what it expected`);
    }
  });

  test('with node:test the cases run as sub-tests of the calling test', async (t) => {
    const ran: string[] = [];
    await consensusImplTest(async () => new MemConsensus(), {
      test: (name, fn) => t.test(name, async () => (ran.push(name), fn())),
    });
    assert.deepEqual(ran, consensusCases.map((c) => c.name));
  });
});

/** The broken store of the fixture: MemBlob locations whose get reads an empty value as missing. */
function emptyIsMissing(): (path: string) => Promise<Blob> {
  const open = memBlobs();
  return async (path) => {
    const inner = await open(path);
    return {
      get: async (k, o) => {
        const value = await inner.get(k, o);
        return value?.length === 0 ? undefined : value;
      },
      list: (p, o) => inner.list(p, o),
      set: (k, v, o) => inner.set(k, v, o),
      delete: (k, o) => inner.delete(k, o),
      restore: (k, o) => inner.restore(k, o),
      close: () => inner.close(),
      [Symbol.asyncDispose]: () => inner.close(),
    };
  };
}

describe('suites as lists of cases', () => {
  test('the default runner stops at the first failing case and names it', async () => {
    const ran: string[] = [];
    const cases: ConsensusCase[] = [
      { name: 'first', run: async () => void ran.push('first') },
      { name: 'second', run: async () => (ran.push('second'), assert.fail('second broke')) },
      { name: 'third', run: async () => void ran.push('third') },
    ];
    await assert.rejects(consensusImplTest(async () => new MemConsensus(), { cases }), (err: unknown) => {
      assert.ok(err instanceof ConformanceError);
      assert.equal(err.caseName, 'second');
      assert.match(err.message, /^case "second": unexpected AssertionError: second broke/);
      return true;
    });
    assert.deepEqual(ran, ['first', 'second']);
  });

  test('an injected runner gets every case, and each case its own fresh location', async () => {
    const seen = new Set<unknown>();
    const failures: string[] = [];
    const cases: ConsensusCase[] = ['a', 'b', 'c'].map((name) => ({
      name,
      run: async ({ consensus }) => {
        assert.ok(!seen.has(consensus), 'a handle of its own');
        seen.add(consensus);
        assert.equal((await consensus.head('shared')) ?? 'empty', 'empty', 'a fresh location');
        await consensus.compareAndSet('shared', undefined, { seqno: SeqNo.minimum(), data: new Uint8Array() });
        if (name === 'b') throw new Error('b broke');
      },
    }));
    const test: TestFunction = (name, fn) => fn().catch((err: ConformanceError) => void failures.push(`${name}: ${err.caseName}`));
    await consensusImplTest(async () => new MemConsensus(), { cases, test });
    assert.equal(seen.size, 3);
    assert.deepEqual(failures, ['b: b']);
  });

  test('the cases pass in any order: none depends on another', async () => {
    await consensusImplTest(async () => new MemConsensus(), { cases: [...consensusCases].reverse() });
    await blobImplTest(memBlobs(), { cases: [...blobCases].reverse(), largeValueBytes: 1 << 20 });
  });

  test('capabilities choose the restore case; keepsDeleted true or false is then required', async () => {
    const restoreCases = (names: string[]) => names.filter((n) => n.startsWith('5: restore') && !n.startsWith('5: restore keeps'));
    for (const [keepsDeleted, expected] of [
      [true, '5: restore brings a deleted value back (keepsDeleted)'],
      [false, '5: restore of a deleted value rejects Determinate (keepsDeleted: false)'],
      [undefined, '5: restore of a deleted value brings it back or rejects Determinate'],
    ] as const) {
      const { test, names } = recorder();
      await blobImplTest(memBlobs(), { test, capabilities: { keepsDeleted } });
      assert.deepEqual(restoreCases(names), [expected], `keepsDeleted ${String(keepsDeleted)}`);
      assert.equal(names.length, blobCases.length - 2, 'every other case is registered');
    }
  });

  test('maxKeyBytes works as an option and as a capability; contradictions and impossible caps are refused', async () => {
    const kase = blobCases.find((c) => c.name.startsWith('invalid arguments: bad keys'))!;
    // MemBlob accepts 1024 bytes: told 1000, the suite finds a 1001-byte key accepted either way.
    for (const options of [{ maxKeyBytes: 1000 }, { capabilities: { maxKeyBytes: 1000 } }]) {
      await assert.rejects(blobImplTest(memBlobs(), { ...options, cases: [kase] }), /get rejects a key of 1001 bytes/);
    }
    await blobImplTest(memBlobs(), { maxKeyBytes: 1024, capabilities: { maxKeyBytes: 1024 }, cases: [kase] });
    await assert.rejects(blobImplTest(memBlobs(), { maxKeyBytes: 1000, capabilities: { maxKeyBytes: 900 } }), RangeError);
    for (const maxKeyBytes of [0, 1025, 10.5]) {
      await assert.rejects(consensusImplTest(async () => new MemConsensus(), { maxKeyBytes }), RangeError, String(maxKeyBytes));
    }
    await assert.rejects(blobImplTest(memBlobs(), { largeValueBytes: 0 }), RangeError);
    await assert.rejects(consensusImplTest(async () => new MemConsensus(), { waitMs: -1 }), RangeError);
  });

  test('two cases of one name are refused before anything runs', async () => {
    const kase = consensusCases[0]!;
    let opened = 0;
    await assert.rejects(consensusImplTest(async () => (opened++, new MemConsensus()), { cases: [kase, kase] }), TypeError);
    assert.equal(opened, 0);
  });

  test('blob cases open locations of their own, on paths as long as path0', async () => {
    const paths = new Set<string>();
    const location = randomUUID();
    await blobImplTest(
      async (path) => {
        paths.add(path);
        return new MemBlob({ name: `${location}/${path}` });
      },
      { largeValueBytes: 1 << 20 },
    );
    const flat = [...paths].filter((p) => !p.includes('/'));
    assert.ok(flat.length > blobCases.length, `${flat.length} locations`);
    assert.ok(flat.every((p) => p.length === 'path0'.length), flat.filter((p) => p.length !== 5).join(' '));
    for (const p of flat) assert.ok(!flat.some((q) => q !== p && q.startsWith(p)), `no path is a prefix of another: ${p}`);
  });
});

/** Wraps one MemBlob location: `patch` replaces methods of each handle, which gets its own state. */
function brokenLocation(patch: (inner: Blob, own: Map<string, unknown>) => Partial<Blob>): () => Promise<Blob> {
  const name = `stress-${randomUUID()}`;
  return async () => {
    const inner = new MemBlob({ name });
    const base: Blob = {
      get: (k, o) => inner.get(k, o),
      list: (p, o) => inner.list(p, o),
      set: (k, v, o) => inner.set(k, v, o),
      delete: (k, o) => inner.delete(k, o),
      restore: (k, o) => inner.restore(k, o),
      close: () => inner.close(),
      [Symbol.asyncDispose]: () => inner.close(),
    };
    return { ...base, ...patch(inner, new Map()) };
  };
}

const tick = () => new Promise((resolve) => setImmediate(resolve));

function explain(report: BlobStressReport): string {
  return JSON.stringify({ seed: report.seed, errors: report.errors, unproven: report.unproven, violation: report.violations[0] }, null, 1).slice(0, 2000);
}

function assertSound(report: BlobStressReport): void {
  assert.deepEqual(report.violations.slice(0, 1), [], explain(report));
  assert.ok(report.ok, explain(report));
  assert.ok(report.sets > 50 && report.gets > 50 && report.deletes > 10 && report.lists > 10, JSON.stringify(report, (k, v) => (k === 'history' ? undefined : v)));
}

describe('stressBlob explains the histories of correct stores', () => {
  test('MemBlob handles sharing a location', async () => {
    const name = `stress-${randomUUID()}`;
    const report = await stressBlob(async () => new MemBlob({ name }), { ops: 3000 });
    assertSound(report);
    assert.ok(report.history.some((op) => op.op === 'get' && op.result.type === 'ok' && op.result.value !== undefined), 'some get read a value');
  });

  test('FileBlob handles on one directory, values of up to 64 KiB', async () => {
    const root = join(tmp, randomUUID());
    const report = await stressBlob(async () => new FileBlob(root), { ops: 1200, clients: 8, valueBytes: 64 * 1024 });
    assertSound(report);
  });

  test('writes that fail Indeterminate, applied now, later or never, and reads that fail', async () => {
    let calls = 0;
    let gets = 0;
    const late: Promise<unknown>[] = [];
    const report = await stressBlob(
      brokenLocation((inner) => ({
        set: async (k, v, o) => {
          const n = ++calls;
          if (n % 7 === 0) throw new Indeterminate(ErrorCode.Unavailable, 'lost before sending');
          if (n % 7 === 1) {
            // Applied after the caller was told it failed.
            const copy = Uint8Array.from(v);
            // A handle closed by then never applies it: also an outcome the check allows.
            late.push(tick().then(() => inner.set(k, copy)).catch(() => {}));
            throw new Indeterminate(ErrorCode.Timeout, 'timed out');
          }
          await inner.set(k, v, o);
          if (n % 7 === 2) throw new Indeterminate(ErrorCode.Unavailable, 'connection lost after applying');
        },
        delete: async (k, o) => {
          const n = ++calls;
          if (n % 5 === 0) {
            await inner.delete(k, o);
            throw new Indeterminate(ErrorCode.Unavailable, 'connection lost after deleting');
          }
          if (n % 5 === 1) throw new Determinate(ErrorCode.Unavailable, 'refused');
          return inner.delete(k, o);
        },
        get: async (k, o) => {
          // Not the last gets: the final reads must succeed for the run to prove anything.
          if (++gets < 900 && gets % 9 === 0) throw new Indeterminate(ErrorCode.Timeout, 'slow read');
          return inner.get(k, o);
        },
      })),
      { ops: 3000, seed: 7 },
    );
    await Promise.all(late);
    assertSound(report);
    assert.ok(report.unknown > 100 && report.failed > 10, `${report.unknown} unknown, ${report.failed} failed`);
  });

  test('the same seed makes the same choices', async () => {
    const shape = async () => {
      const name = `seed-${randomUUID()}`;
      const report = await stressBlob(async () => new MemBlob({ name }), { ops: 300, seed: 42, keyPrefix: 'p-' });
      assert.equal(report.seed, 42);
      return report.history.map((op) => `${op.op} ${op.op === 'list' ? op.prefix : op.key} ${op.op === 'set' ? op.size : ''}`);
    };
    assert.deepEqual(await shape(), await shape());
  });

  test('bad options are refused', async () => {
    for (const opts of [{ keys: 0 }, { clients: 0 }, { ops: -1 }, { handles: 0 }, { valueBytes: 1.5 }, { seed: Number.NaN }]) {
      await assert.rejects(stressBlob(async () => new MemBlob(), opts), RangeError, JSON.stringify(opts));
    }
  });
});

describe('stressBlob catches broken stores', () => {
  const problems = (report: BlobStressReport) => [...new Set(report.violations.map((v) => v.problem.replace(/[\d/]+|k\S+|".*"/g, '#')))];
  const broken: [string, Parameters<typeof brokenLocation>[0], RegExp][] = [
    [
      'a torn write: the first half of a value is visible while set runs',
      (inner) => ({
        set: async (k, v, o) => {
          await inner.set(k, v.subarray(0, v.byteLength >> 1), o);
          await tick();
          await inner.set(k, v, o);
        },
      }),
      /get returned a value no set of this key wrote: unreadable value .*cut or padded|checksum/,
    ],
    [
      'a mixed write: the new value over the tail of the old one',
      (inner) => ({
        set: async (k, v, o) => {
          const old = (await inner.get(k))?.toContiguous();
          if (old !== undefined && old.byteLength > v.byteLength) {
            const mixed = Uint8Array.from(old);
            mixed.set(v);
            await inner.set(k, mixed, o);
          } else {
            await inner.set(k, v, o);
          }
        },
      }),
      /get returned a value no set of this key wrote: unreadable value/,
    ],
    [
      'a stale get: each handle serves what it last saw',
      (inner, own) => ({
        get: async (k, o) => {
          if (!own.has(k)) own.set(k, await inner.get(k, o));
          return own.get(k) as SegmentedBytes | undefined;
        },
        set: async (k, v, o) => {
          await inner.set(k, v, o);
          own.set(k, new SegmentedBytes(Uint8Array.from(v)));
        },
      }),
      /overwritten before the get began \(stale\)|get returned nothing, though the key held a value throughout/,
    ],
    [
      'a delete that returns one byte too many',
      (inner) => ({ delete: async (k, o) => ((n) => (n === undefined ? n : n + 1))(await inner.delete(k, o)) }),
      /delete returned \d+, the size of no value that could have been current/,
    ],
    [
      'a lost write: every fifth set is acknowledged and dropped',
      (inner, own) => ({
        set: async (k, v, o) => {
          const n = ((own.get('#') as number | undefined) ?? 0) + 1;
          own.set('#', n);
          if (n % 5 !== 0) await inner.set(k, v, o);
        },
      }),
      /stale|held a value throughout/,
    ],
    [
      'a stale listing: keys this handle deleted are still listed',
      (inner, own) => ({
        delete: async (k, o) => {
          const n = await inner.delete(k, o);
          if (n !== undefined) own.set(k, n);
          return n;
        },
        set: async (k, v, o) => (own.delete(k), inner.set(k, v, o)),
        list: async function* (p = '', o) {
          const live = new Set<string>();
          for await (const m of inner.list(p, o)) {
            live.add(m.key);
            yield m;
          }
          for (const [key, size] of own) if (!live.has(key) && key.startsWith(p)) yield { key, sizeInBytes: size as number };
        },
      }),
      /list yielded the key with size \d+, which no value that could have been current has/,
    ],
  ];
  for (const [name, patch, problem] of broken) {
    test(name, async () => {
      const report = await stressBlob(brokenLocation(patch), { ops: 2000, seed: 1 });
      assert.equal(report.ok, false, 'the run fails');
      assert.ok(report.violations.length > 0, 'with violations');
      assert.ok(
        report.violations.some((v) => problem.test(v.problem)),
        `a violation says ${problem}: ${problems(report).join(' | ')}`,
      );
      assert.deepEqual(report.errors, []);
    });
  }
});

describe('checkBlobHistory on written histories', () => {
  const set = (value: string, start: number, end: number, result: 'ok' | 'unknown' | 'failed' = 'ok'): BlobHistoryOp => ({
    op: 'set',
    key: 'k',
    value,
    size: value.length,
    start,
    end,
    result: result === 'ok' ? { type: 'ok', value: undefined } : { type: result },
  });
  const get = (value: string | undefined, start: number, end: number): BlobHistoryOp => ({ op: 'get', key: 'k', start, end, result: { type: 'ok', value } });
  const del = (size: number | undefined, start: number, end: number): BlobHistoryOp => ({ op: 'delete', key: 'k', start, end, result: { type: 'ok', value: size } });
  const list = (sizes: number[], start: number, end: number): BlobHistoryOp => ({
    op: 'list',
    prefix: '',
    start,
    end,
    result: { type: 'ok', value: sizes.map((sizeInBytes) => ({ key: 'k', sizeInBytes })) },
  });
  const verdict = (...history: BlobHistoryOp[]) => checkBlobHistory(history).violations.map((v) => v.problem);

  test('a get may see the initial absence, an overlapping set or the latest completed one', () => {
    assert.deepEqual(verdict(get(undefined, 0, 1), set('a', 2, 3), get('a', 4, 5)), []);
    assert.deepEqual(verdict(set('a', 0, 1), set('bb', 2, 6), get('a', 3, 4), get('bb', 3, 4), get('bb', 7, 8)), []);
    assert.deepEqual(verdict(set('a', 0, 10), get(undefined, 1, 2), get('a', 1, 2)), []);
  });

  test('a get may not see a value overwritten before it began, or written after it returned', () => {
    assert.match(verdict(set('a', 0, 1), set('bb', 2, 3), get('a', 4, 5))[0]!, /stale/);
    assert.match(verdict(get('a', 0, 1), set('a', 2, 3))[0]!, /whose set began after the get returned/);
    assert.match(verdict(set('a', 0, 1), get(undefined, 2, 3))[0]!, /held a value throughout/);
    assert.match(verdict(set('a', 0, 1), get('zz', 2, 3))[0]!, /no set of this key wrote/);
  });

  test('an Indeterminate set may apply at any time after its call; a Determinate failure never', () => {
    assert.deepEqual(verdict(set('a', 0, 1), set('bb', 2, 3, 'unknown'), set('ccc', 4, 5), get('bb', 6, 7)), []);
    assert.deepEqual(verdict(set('a', 0, 1), set('bb', 2, 3, 'unknown'), get('a', 6, 7)), [], 'an unknown set overwrites nothing for sure');
    assert.match(verdict(set('a', 0, 1), set('bb', 2, 3, 'failed'), get('bb', 6, 7))[0]!, /no set of this key wrote|began after/);
  });

  test('a delete returns the size of a value that could be current just before it', () => {
    assert.deepEqual(verdict(set('abc', 0, 1), del(3, 2, 3), del(undefined, 4, 5), get(undefined, 6, 7)), []);
    assert.deepEqual(verdict(set('abc', 0, 1), set('de', 2, 5), del(3, 3, 4)), []);
    assert.match(verdict(set('abc', 0, 1), del(2, 2, 3))[0]!, /delete returned 2/);
    assert.match(verdict(set('abc', 0, 1), del(undefined, 2, 3))[0]!, /delete returned undefined/);
    assert.match(verdict(set('abc', 0, 1), del(3, 2, 3), get('abc', 4, 5))[0]!, /stale/);
  });

  test('a listing yields a key iff it could hold a value of that size during the listing', () => {
    assert.deepEqual(verdict(list([], 0, 1), set('abc', 2, 3), list([3], 4, 5), del(3, 6, 9), list([], 7, 8), list([3], 7, 8)), []);
    assert.match(verdict(set('abc', 0, 1), list([], 2, 3))[0]!, /left out the key/);
    assert.match(verdict(set('abc', 0, 1), list([4], 2, 3))[0]!, /size 4/);
    assert.match(verdict(set('abc', 0, 1), del(3, 2, 3), list([3], 4, 5))[0]!, /size 3/);
    assert.match(verdict(set('abc', 0, 1), list([3, 3], 2, 3))[0]!, /twice/);
    const foreign: BlobHistoryOp = { op: 'list', prefix: 'x', start: 0, end: 1, result: { type: 'ok', value: [{ key: 'y', sizeInBytes: 1 }] } };
    assert.match(verdict(foreign)[0]!, /outside its prefix/);
  });
});
