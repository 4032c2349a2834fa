import type { Blob, BlobMetadata } from '../blob.js';
import { ErrorCode, ExternalError } from '../errors.js';
import { SegmentedBytes } from '../segmented-bytes.js';
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

/**
 * What a Blob case gets: locations of its own, which no other case touches. Every
 * handle it opens is closed by the suite after the case.
 */
export interface BlobCaseContext {
  /**
   * Opens a handle on this case's location number `n` (default 0). Two handles with the
   * same `n` share data. The path is five characters long, like `path0`.
   */
  open(n?: number): Promise<Blob>;
  /** The path of location `n`, to build paths nested in it. */
  path(n?: number): string;
  /** Opens a handle on any path (the nesting cases use paths inside their own). */
  openPath(path: string): Promise<Blob>;
  readonly capabilities: ResolvedCapabilities;
  /** See {@link BlobImplTestOptions.largeValueBytes}. */
  readonly largeValueBytes: number;
  /** See {@link SuiteOptions.waitMs}. */
  readonly waitMs: number;
}

export type BlobCase = SuiteCase<BlobCaseContext>;

/** Options of {@link blobImplTest}. */
export interface BlobImplTestOptions extends SuiteOptions {
  /** Size of the large-value round trip, in bytes (default 3 MiB). */
  largeValueBytes?: number;
  /** The cases to run (default {@link blobCases}); a subset or extra cases of one's own. */
  cases?: readonly BlobCase[];
}

/**
 * The Blob conformance suite: SPEC "What the conformance suites check", plus paths,
 * nesting, listing, aborts, hostile keys, invalid arguments, large and empty values and
 * byte isolation. `open(path)` must return a handle on the location named `path`:
 * handles with the same path share data, other paths are independent and start empty.
 * Each case opens paths of its own. Without `options.test`, throws a ConformanceError
 * naming the first case and expectation that fail.
 */
export async function blobImplTest(open: (path: string) => Promise<Blob>, options: BlobImplTestOptions = {}): Promise<void> {
  const capabilities = resolveCapabilities(options);
  const waitMs = resolveWaitMs(options);
  const largeValueBytes = options.largeValueBytes ?? 3 * 1024 * 1024;
  if (!Number.isSafeInteger(largeValueBytes) || largeValueBytes < 1) {
    throw new RangeError(`largeValueBytes must be a positive integer, got ${String(largeValueBytes)}`);
  }
  await runCases(options.cases ?? blobCases, capabilities, options.test, async (kase, index) => {
    const handles: Blob[] = [];
    const openPath = async (path: string) => {
      const handle = await open(path);
      handles.push(handle);
      return handle;
    };
    const path = (n = 0) => casePath(index, n);
    let failed = true;
    try {
      await kase.run({ open: (n) => openPath(path(n)), path, openPath, capabilities, largeValueBytes, waitMs });
      failed = false;
    } finally {
      const closed = await Promise.allSettled(handles.map((h) => h.close()));
      const refused = closed.find((r) => r.status === 'rejected');
      // A close failing after the case failed would hide why it failed.
      if (!failed && refused !== undefined) throw refused.reason;
    }
  });
}

/**
 * `t<case><n>`, five characters for the first 36 locations of the first 1296 cases: no
 * path is a prefix of another, and an object store's key cap (less for a longer
 * prefix) is the same on all of them.
 */
function casePath(index: number, n: number): string {
  if (!Number.isInteger(n) || n < 0 || n >= 36 || index >= 36 * 36) throw new RangeError(`no suite path for case ${index}, location ${n}`);
  return `t${index.toString(36).padStart(2, '0')}p${n.toString(36)}`;
}

const text = (s: string): Uint8Array => Buffer.from(s, 'utf8');

async function read(b: Blob, key: string): Promise<string | undefined> {
  const got = await b.get(key);
  if (got === undefined) return undefined;
  expect(got instanceof SegmentedBytes, `get(${JSON.stringify(key)}) returns SegmentedBytes`);
  const whole = got.toContiguous();
  expectEqual(whole.byteLength, got.length, `SegmentedBytes length of ${JSON.stringify(key)} matches its contents`);
  return Buffer.from(whole.buffer, whole.byteOffset, whole.byteLength).toString('utf8');
}

async function listed(b: Blob, prefix?: string): Promise<BlobMetadata[]> {
  const all = await collect(b.list(prefix));
  const keys = all.map((m) => m.key);
  expectEqual(new Set(keys).size, keys.length, `list(${JSON.stringify(prefix ?? '')}) yields each key once`);
  return all.sort((a, b2) => (a.key < b2.key ? -1 : a.key > b2.key ? 1 : 0));
}

async function listedKeys(b: Blob, prefix?: string): Promise<string[]> {
  return (await listed(b, prefix)).map((m) => m.key);
}

/** Both handles, named for messages. */
const both = (a: Blob, b: Blob) => [[a, 'first'], [b, 'second']] as const;

const invalid: Rejection = { determinate: true, code: ErrorCode.InvalidArgument };
const cancelled: Rejection = { determinate: true, code: ErrorCode.Cancelled };

/** `count` keys `name/0000`..., each holding its own name, `width` written at a time. */
async function writeMany(b: Blob, name: string, count: number): Promise<string[]> {
  const keys = Array.from({ length: count }, (_, i) => `${name}/${String(i).padStart(4, '0')}`);
  await inParallel(keys, 32, (k) => b.set(k, text(k)));
  return keys;
}

const specCases: BlobCase[] = [
  {
    name: '1: a missing key reads undefined through every handle; a fresh location lists nothing',
    run: async (ctx) => {
      const [a, b] = [await ctx.open(), await ctx.open()];
      expectEqual(await a.get('k0'), undefined, 'get of a missing key is undefined (first handle)');
      expectEqual(await b.get('k0'), undefined, 'get of a missing key is undefined (second handle)');
      expectEqual(await listedKeys(a), [], 'a fresh location lists nothing');
      expectEqual(await listedKeys(b, 'k'), [], 'a fresh location lists nothing under a prefix');
    },
  },
  {
    name: '2: a set is visible through every handle on its path; list gives the keys and their sizes',
    run: async (ctx) => {
      const [a, b] = [await ctx.open(), await ctx.open()];
      await a.set('foo/bar/k0', text('v0'));
      await a.set('k0a', text('v0'));
      for (const [h, name] of both(a, b)) {
        expectEqual(await read(h, 'foo/bar/k0'), 'v0', `foo/bar/k0 is visible through the ${name} handle`);
        expectEqual(await read(h, 'k0a'), 'v0', `k0a is visible through the ${name} handle`);
        expectEqual(await listed(h), [{ key: 'foo/bar/k0', sizeInBytes: 2 }, { key: 'k0a', sizeInBytes: 2 }], `list through the ${name} handle gives both keys with their sizes`);
      }
    },
  },
  {
    name: '3: an overwrite is visible through every handle',
    run: async (ctx) => {
      const [a, b] = [await ctx.open(), await ctx.open()];
      await a.set('foo/bar/k0', text('v0'));
      await a.set('k0a', text('v0'));
      await b.set('foo/bar/k0', text('v1'));
      await b.set('k0a', text('longer v1'));
      for (const [h, name] of both(a, b)) {
        expectEqual(await read(h, 'foo/bar/k0'), 'v1', `the overwrite of foo/bar/k0 is visible through the ${name} handle`);
        expectEqual(await read(h, 'k0a'), 'longer v1', `the overwrite of k0a is visible through the ${name} handle`);
      }
      expectEqual(await listed(a), [{ key: 'foo/bar/k0', sizeInBytes: 2 }, { key: 'k0a', sizeInBytes: 9 }], 'list gives the sizes of the new values');
    },
  },
  {
    name: '4: delete returns the size; deleting twice or a missing key returns undefined',
    run: async (ctx) => {
      const [a, b] = [await ctx.open(), await ctx.open()];
      await a.set('foo/bar/k0', text('v1'));
      expectEqual(await a.delete('foo/bar/k0'), 2, 'delete returns the size');
      expectEqual(await a.get('foo/bar/k0'), undefined, 'a deleted key is gone (first handle)');
      expectEqual(await b.get('foo/bar/k0'), undefined, 'a deleted key is gone (second handle)');
      expectEqual(await b.delete('foo/bar/k0'), undefined, 'deleting twice returns undefined');
      expectEqual(await a.delete('nope'), undefined, 'deleting a missing key returns undefined');
      await a.set('empty', new Uint8Array(0));
      expectEqual(await read(b, 'empty'), '', 'an empty value reads back empty, not missing');
      expectEqual(await a.delete('empty'), 0, 'deleting an empty value returns 0');
      expectEqual(await listedKeys(b), [], 'deleted keys are not listed');
    },
  },
  {
    name: '5: restore keeps an existing key and refuses a key that never existed',
    run: async (ctx) => {
      const [a, b] = [await ctx.open(), await ctx.open()];
      await a.set('undelete', text('data'));
      await a.restore('undelete');
      expectEqual(await read(b, 'undelete'), 'data', 'restoring an existing key keeps it');
      await expectRejects(a.restore('never-existed'), { determinate: true }, 'restoring a key that never existed rejects Determinate');
      expectEqual(await b.get('never-existed'), undefined, 'a failed restore creates nothing');
      expectEqual(await listedKeys(b), ['undelete'], 'a failed restore lists nothing new');
    },
  },
  {
    name: '5: restore brings a deleted value back (keepsDeleted)',
    applies: (caps) => caps.keepsDeleted === true,
    run: async (ctx) => {
      const [a, b] = [await ctx.open(), await ctx.open()];
      await a.set('undelete', text('data'));
      expectEqual(await a.delete('undelete'), 4, 'delete returns 4');
      await expectResolves(a.restore('undelete'), 'restoring a deleted key succeeds');
      expectEqual(await read(b, 'undelete'), 'data', 'the restored value reads back through another handle');
      expectEqual(await listed(b), [{ key: 'undelete', sizeInBytes: 4 }], 'the restored key is listed with its size');
    },
  },
  {
    name: '5: restore of a deleted value rejects Determinate (keepsDeleted: false)',
    applies: (caps) => caps.keepsDeleted === false,
    run: async (ctx) => {
      const [a, b] = [await ctx.open(), await ctx.open()];
      await a.set('undelete', text('data'));
      expectEqual(await a.delete('undelete'), 4, 'delete returns 4');
      await expectRejects(a.restore('undelete'), { determinate: true }, 'restoring a deleted key rejects Determinate');
      expectEqual(await b.get('undelete'), undefined, 'a refused restore leaves the key missing');
    },
  },
  {
    name: '5: restore of a deleted value brings it back or rejects Determinate',
    applies: (caps) => caps.keepsDeleted === undefined,
    run: async (ctx) => {
      const [a, b] = [await ctx.open(), await ctx.open()];
      await a.set('undelete', text('data'));
      expectEqual(await a.delete('undelete'), 4, 'delete returns 4');
      let restored: boolean;
      try {
        await a.restore('undelete');
        restored = true;
      } catch (err) {
        expect(err instanceof ExternalError && err.determinate, `a failed restore rejects Determinate (got ${String(err)})`);
        restored = false;
      }
      expectEqual(await read(b, 'undelete'), restored ? 'data' : undefined, "get after restore agrees with restore's outcome");
    },
  },
  {
    name: '6: after deleting everything every handle lists nothing; a deleted key can be set again',
    run: async (ctx) => {
      const [a, b] = [await ctx.open(), await ctx.open()];
      for (const k of ['foo/bar/k0', 'k0a', 'k1', 'empty']) await a.set(k, text(k === 'empty' ? '' : 'v'));
      for (const { key } of await listed(a)) await a.delete(key);
      expectEqual(await listedKeys(a), [], 'after deleting everything the first handle lists nothing');
      expectEqual(await listedKeys(b), [], 'after deleting everything the second handle lists nothing');
      await a.set('k0a', text('again'));
      expectEqual(await read(b, 'k0a'), 'again', 'a deleted key can be set again');
      expectEqual(await listedKeys(b), ['k0a'], 'the key set again is listed');
    },
  },
  {
    name: '7: list(prefix) gives exactly the keys starting with the prefix',
    run: async (ctx) => {
      const [a, b] = [await ctx.open(), await ctx.open()];
      for (let i = 1; i <= 5; i++) await a.set(`k${i}`, text(`v${i}`));
      expectEqual(await listedKeys(b), ['k1', 'k2', 'k3', 'k4', 'k5'], 'list gives k1..k5');
      for (let i = 1; i <= 3; i++) await b.set(`k-prefix-${i}`, text(`p${i}`));
      await a.set('foo/bar/k0', text('v0'));
      expectEqual(await listedKeys(a, 'k-prefix'), ['k-prefix-1', 'k-prefix-2', 'k-prefix-3'], 'list("k-prefix") gives exactly those keys');
      expectEqual(
        await listedKeys(a, 'k'),
        ['k-prefix-1', 'k-prefix-2', 'k-prefix-3', 'k1', 'k2', 'k3', 'k4', 'k5'],
        'list("k") gives every key starting with k, not foo/bar/k0',
      );
      expectEqual(await listedKeys(a, 'foo/'), ['foo/bar/k0'], 'list("foo/") gives the nested key');
      expectEqual(await listedKeys(a, 'foo/ba'), ['foo/bar/k0'], 'a prefix may end inside a path segment');
      expectEqual(await listedKeys(a, 'k1'), ['k1'], 'a prefix equal to a key gives that key');
      expectEqual(await listedKeys(a, 'zzz'), [], 'a prefix that matches nothing lists nothing');
      expectEqual((await listed(a, 'k-prefix-2')).map((m) => m.sizeInBytes), [2], 'list under a prefix gives sizes too');
    },
  },
  {
    name: '8: a handle opened later, after the others closed, sees what they wrote',
    run: async (ctx) => {
      const [a, b] = [await ctx.open(), await ctx.open()];
      await a.set('k1', text('later'));
      await b.set('gone', text('x'));
      await a.delete('gone');
      await Promise.all([a.close(), b.close()]);
      const later = await ctx.open();
      expectEqual(await read(later, 'k1'), 'later', 'a handle opened later sees the value');
      expectEqual(await later.get('gone'), undefined, 'a handle opened later sees the delete');
      expectEqual(await listedKeys(later), ['k1'], 'a handle opened later lists what is there');
    },
  },
];

const locationCases: BlobCase[] = [
  {
    name: 'paths: locations on different paths share nothing',
    run: async (ctx) => {
      const [a, b, other] = [await ctx.open(0), await ctx.open(0), await ctx.open(1)];
      await a.set('shared-name', text('path 0'));
      await a.set('only-0', text('x'));
      expectEqual(await listedKeys(other), [], "a location on another path sees none of the first path's keys");
      expectEqual(await other.get('shared-name'), undefined, "a location on another path reads none of the first path's values");
      expectEqual(await other.delete('only-0'), undefined, "a location on another path cannot delete the first path's keys");
      await other.set('shared-name', text('path 1'));
      expectEqual(await read(b, 'shared-name'), 'path 0', 'a write on another path leaves the same key on the first path alone');
      expectEqual(await read(other, 'shared-name'), 'path 1', 'the other path holds its own value');
      expectEqual(await listedKeys(b), ['only-0', 'shared-name'], 'the first path lists exactly its own keys');
    },
  },
  ...[false, true].map(
    (innerFirst): BlobCase => ({
      name: `nesting: locations nested by path are independent or refused Determinate (${innerFirst ? 'inner' : 'outer'} opened first)`,
      run: (ctx) => nesting(ctx, innerFirst),
    }),
  ),
];

/**
 * Inner path names that an encoding of keys into names could produce: a layout's own
 * prefixes (`d`, `v`, `c`, `x`), a name long enough to be a chunk boundary, a dot name.
 */
const NESTED_NAMES = ['data', 'dfoo', 'vk', 'x'.repeat(200), '.hidden', 'k'];

/**
 * Locations nested by path (`outer` and `outer/data`) are as independent as any two:
 * neither lists, reads, overwrites or deletes the other's values, whichever was opened
 * first. A backend may instead refuse, Determinate at open, a location that lies inside
 * or around another one, and refuse (Determinate) an operation that would reach into
 * another location; both keep the other's data untouched.
 */
async function nesting(ctx: BlobCaseContext, innerFirst: boolean): Promise<void> {
  for (const [i, name] of NESTED_NAMES.entries()) {
    const label = `${name.length > 20 ? `${name.slice(0, 8)}... (${name.length} characters)` : name}, ${innerFirst ? 'inner' : 'outer'} opened first`;
    const outerPath = ctx.path(i);
    const innerPath = `${outerPath}/${name}`;
    const first = await openNested(ctx, innerFirst ? innerPath : outerPath, label);
    const second = first && (await openNested(ctx, innerFirst ? outerPath : innerPath, label));
    if (first === undefined || second === undefined) continue;
    const [outer, inner] = innerFirst ? [second, first] : [first, second];
    await isolatedNesting(outer, inner, name, label, ctx.capabilities.maxKeyBytes);
  }
}

async function openNested(ctx: BlobCaseContext, path: string, label: string): Promise<Blob | undefined> {
  try {
    return await ctx.openPath(path);
  } catch (err) {
    expect(err instanceof ExternalError && err.determinate, `nesting (${label}): opening ${path} succeeds or rejects Determinate (got ${String(err)})`);
    return undefined;
  }
}

async function isolatedNesting(outer: Blob, inner: Blob, name: string, label: string, maxKeyBytes: number): Promise<void> {
  // Keys made of the inner name only where the backend's key cap allows them.
  const innerKeys = [...new Set(['k', 'a/b', name, `${name}/k`])].filter((key) => Buffer.byteLength(key) <= maxKeyBytes);
  await outer.set('own', text('outer'));
  for (const key of innerKeys) await inner.set(key, text(`inner ${key}`));
  expectEqual(await listedKeys(outer), ['own'], `nesting (${label}): the outer location lists only its own key`);
  expectEqual(await listedKeys(inner), [...innerKeys].sort(), `nesting (${label}): the inner location lists only its own keys`);
  // Names the outer location would give the inner one's values if the two shared objects.
  const aliases = new Set([...innerKeys, 'own'].flatMap((k) => [`${name}/${k}`, `${name.slice(1)}/${k}`, `${name}${k}`, `${name.slice(1)}${k}`]));
  aliases.delete('own');
  for (const key of aliases) {
    const got = await refusedOr(() => outer.get(key), undefined, label);
    expectEqual(got, undefined, `nesting (${label}): the outer location reads nothing at ${JSON.stringify(key.slice(0, 40))}`);
  }
  for (const key of aliases) await refusedOr(() => outer.set(key, text('overwritten')), undefined, label);
  for (const key of aliases) await refusedOr(() => outer.delete(key), undefined, label);
  for (const key of innerKeys) {
    expectEqual(await read(inner, key), `inner ${key}`, `nesting (${label}): the outer location's writes and deletes leave the inner key ${JSON.stringify(key)} intact`);
  }
  expectEqual(await read(inner, 'own'), undefined, `nesting (${label}): the inner location does not see the outer's key`);
  expectEqual(await listedKeys(inner), [...innerKeys].sort(), `nesting (${label}): the inner location still lists exactly its own keys`);
  await inner.set('later', text('after'));
  expectEqual(await read(inner, 'later'), 'after', `nesting (${label}): the inner location still takes writes`);
  for (const { key } of await listed(outer)) await outer.delete(key);
  expectEqual(await read(inner, 'k'), 'inner k', `nesting (${label}): emptying the outer location leaves the inner one intact`);
  for (const { key } of await listed(inner)) await inner.delete(key);
  expectEqual(await listedKeys(inner), [], `nesting (${label}): the inner location empties`);
}

/** Runs `op`; a Determinate rejection (the backend refusing to reach into another location) yields `fallback`. */
async function refusedOr<T>(op: () => Promise<T>, fallback: T, label: string): Promise<T> {
  try {
    return await op();
  } catch (err) {
    expect(err instanceof ExternalError && err.determinate, `nesting (${label}): an operation near another location succeeds or rejects Determinate (got ${String(err)})`);
    return fallback;
  }
}

const listingCases: BlobCase[] = [
  {
    name: `listing: ${MANY_KEYS} keys, more than one page of most stores, are each listed once with their sizes`,
    run: async (ctx) => {
      const [a, b] = [await ctx.open(), await ctx.open()];
      const keys = await writeMany(a, 'many', MANY_KEYS);
      const all = await collect(b.list());
      expectEqual(all.length, keys.length, `list yields ${keys.length} keys, each once`);
      const sorted = all.sort((x, y) => (x.key < y.key ? -1 : x.key > y.key ? 1 : 0));
      expectEqual(sorted, keys.map((key) => ({ key, sizeInBytes: Buffer.byteLength(key) })), `list yields exactly the ${keys.length} written keys with their sizes`);
      expectEqual(await listedKeys(b, 'many/01'), keys.slice(100, 200), 'a prefix selects its hundred keys out of the many');
    },
  },
  {
    name: 'listing: a loop that breaks early releases its listing',
    run: async (ctx) => {
      const { waitMs } = ctx;
      const b = await ctx.open();
      const keys = await writeMany(b, 'brk', MANY_KEYS);
      const iterator = b.list()[Symbol.asyncIterator]();
      expect((await iterator.next()).done === false, 'a listing of many keys yields a first key');
      expect((await iterator.next()).done === false, 'a listing of many keys yields a second key');
      await within(Promise.resolve(iterator.return?.()), waitMs, 'return() on a listing (what break calls) settles');
      expectEqual((await within(iterator.next(), waitMs, 'next() after return() settles')).done, true, 'after the loop breaks, the listing yields nothing more');
      await within(
        Promise.all(
          Array.from({ length: BROKEN_LISTINGS }, async (_, i) => {
            let seen = 0;
            for await (const _meta of b.list(i % 2 === 0 ? '' : 'brk/')) if (++seen > i % 3) break;
          }),
        ),
        waitMs,
        `${BROKEN_LISTINGS} listings broken off at once end`,
      );
      expectEqual(await within(read(b, keys[7]!), waitMs, `get after ${BROKEN_LISTINGS} broken-off listings answers`), keys[7], 'get still reads after broken-off listings');
      await within(b.set('after-break', text('x')), waitMs, 'set after broken-off listings answers');
      const again = await within(listedKeys(b), waitMs, 'a full listing after broken-off ones finishes');
      expectEqual(again, [...keys, 'after-break'].sort(), 'a full listing after broken-off ones yields every key once');
      await within(b.close(), waitMs, 'close after broken-off listings finishes');
    },
  },
];

const valueCases: BlobCase[] = [
  {
    name: 'values: a large value round-trips, and lists and deletes with its size',
    run: async (ctx) => {
      const [a, b] = [await ctx.open(), await ctx.open()];
      const largeBytes = ctx.largeValueBytes;
      const large = Buffer.alloc(largeBytes);
      for (let i = 0; i + 4 <= large.length; i += 4) large.writeUInt32LE(i, i);
      await a.set('large', large);
      const got = await b.get('large');
      expect(got !== undefined, 'the large value exists');
      expectEqual(got!.length, largeBytes, 'the large value has its full length');
      expect(Buffer.from(got!.toContiguous()).equals(large), 'the large value reads back byte for byte');
      expectEqual((await listed(b, 'large')).map((m) => m.sizeInBytes), [largeBytes], "list reports the large value's size");
      expectEqual(await a.delete('large'), largeBytes, 'deleting the large value returns its size');
    },
  },
  {
    name: 'values: every byte value 0..255 round-trips',
    run: async (ctx) => {
      const [a, b] = [await ctx.open(), await ctx.open()];
      const all = Buffer.alloc(512);
      for (let i = 0; i < all.length; i++) all[i] = i & 0xff;
      await a.set('all-bytes', all);
      const back = await b.get('all-bytes');
      expect(back !== undefined && Buffer.from(back.toContiguous()).equals(all), 'every byte value 0..255 round-trips');
    },
  },
  {
    name: 'empty values: an empty value exists, lists with size 0 and deletes as 0',
    run: async (ctx) => {
      const [a, b] = [await ctx.open(), await ctx.open()];
      await a.set('empty', new Uint8Array(0));
      const got = await b.get('empty');
      expect(got !== undefined, 'an empty value reads back as a value, not as missing');
      expectEqual(got!.length, 0, 'an empty value reads back with length 0');
      expectEqual(got!.toContiguous().byteLength, 0, 'an empty value reads back as no bytes');
      expectEqual(await listed(b), [{ key: 'empty', sizeInBytes: 0 }], 'an empty value is listed with size 0');
      await a.restore('empty');
      expectEqual(await read(b, 'empty'), '', 'restoring an existing empty value keeps it');
      await a.set('was-full', text('full'));
      await a.set('was-full', new Uint8Array(0));
      expectEqual(await read(b, 'was-full'), '', 'overwriting a value with an empty one leaves it empty');
      expectEqual(await b.delete('empty'), 0, 'deleting an empty value returns 0');
      expectEqual(await b.delete('was-full'), 0, 'deleting a value overwritten empty returns 0');
      expectEqual(await listedKeys(a), [], 'deleted empty values are not listed');
    },
  },
  {
    name: "isolation: stored bytes are neither the caller's array nor the returned ones",
    run: async (ctx) => {
      const [a, b] = [await ctx.open(), await ctx.open()];
      const mine = Buffer.from('original');
      await a.set('isolated', mine);
      mine.fill(0);
      expectEqual(await read(b, 'isolated'), 'original', "mutating the caller's array after set does not change the stored value");
      const returned = (await a.get('isolated'))!.toContiguous();
      returned.fill(1);
      expectEqual(await read(b, 'isolated'), 'original', 'mutating a returned array does not change the stored value');
      const inFlight = Buffer.from('in flight');
      const setting = a.set('in-flight', inFlight);
      inFlight.fill(0);
      await setting;
      expectEqual(await read(b, 'in-flight'), 'in flight', "mutating the caller's array while set is in flight does not change the stored value");
      const sub = Buffer.from('xxsubarrayxx').subarray(2, 10);
      await a.set('sub', new Uint8Array(sub.buffer, sub.byteOffset, sub.byteLength));
      expectEqual(await read(b, 'sub'), 'subarray', 'only the bytes of a subarray are stored');
    },
  },
];

const argumentCases: BlobCase[] = [
  {
    name: 'hostile keys: each is a key of its own, read, listed and deleted exactly',
    run: async (ctx) => {
      const [a, b] = [await ctx.open(), await ctx.open()];
      const keys = hostileKeys(ctx.capabilities.maxKeyBytes);
      for (const [i, key] of keys.entries()) await expectResolves(a.set(key, text(`value-${i}`)), `hostile key ${JSON.stringify(key)} is accepted by set`);
      for (const [i, key] of keys.entries()) {
        expectEqual(await read(b, key), `value-${i}`, `hostile key ${JSON.stringify(key)} reads back its own value`);
      }
      const now = await listed(b);
      expectEqual(now.map((m) => m.key).sort(), [...keys].sort(), 'list yields every hostile key exactly');
      for (const m of now) expectEqual(m.sizeInBytes, Buffer.byteLength(`value-${keys.indexOf(m.key)}`), `list gives the size of ${JSON.stringify(m.key)}`);
      expectEqual(await listedKeys(b, 'dir'), ['dir', 'dir/child', 'dir/child/grandchild'], 'list("dir") gives a key and the keys nested under it');
      expectEqual(await listedKeys(b, 'dir/'), ['dir/child', 'dir/child/grandchild'], 'list("dir/") gives only nested keys');
      expectEqual(await listedKeys(b, '..'), ['..', '../../../../../../../../tmp/escape', '../escape', '..\\..\\escape'].sort(), 'list("..") gives exactly the keys starting with ..');
      for (const [i, key] of keys.entries()) {
        expectEqual(await b.delete(key), Buffer.byteLength(`value-${i}`), `hostile key ${JSON.stringify(key)} deletes with its size`);
      }
      expectEqual(await listedKeys(a), [], 'every hostile key is gone after delete');
    },
  },
  {
    name: 'invalid arguments: bad keys reject InvalidArgument on every operation, an over-long one naming the cap',
    run: async (ctx) => {
      const b = await ctx.open();
      const { maxKeyBytes } = ctx.capabilities;
      const badKeys: [unknown, string][] = [
        ['', 'the empty key'],
        ['a\u0000b', 'a key with U+0000'],
        [keyOfBytes(maxKeyBytes + 1), `a key of ${maxKeyBytes + 1} bytes`],
        ['\udc00x', 'a key with a lone surrogate'],
        [7, 'a number as key'],
        [undefined, 'an undefined key'],
      ];
      for (const [key, what] of badKeys) {
        const k = key as string;
        await expectRejects(() => b.get(k), invalid, `get rejects ${what}`);
        await expectRejects(() => b.set(k, text('x')), invalid, `set rejects ${what}`);
        await expectRejects(() => b.delete(k), invalid, `delete rejects ${what}`);
        await expectRejects(() => b.restore(k), invalid, `restore rejects ${what}`);
      }
      const tooLong = await expectRejects(() => b.set(keyOfBytes(maxKeyBytes + 1), text('x')), invalid, 'an over-long key rejects');
      expect(tooLong.message.includes(String(maxKeyBytes)), `the over-long key error names the limit ${maxKeyBytes}: ${tooLong.message}`);
      expectEqual(await listedKeys(b), [], 'rejected keys wrote nothing');
    },
  },
  {
    name: 'invalid arguments: values, prefixes and signals of the wrong type reject InvalidArgument',
    run: async (ctx) => {
      const b = await ctx.open();
      for (const [value, what] of [['a string', 'a string'], [[1, 2], 'an array'], [undefined, 'undefined'], [null, 'null']] as const) {
        await expectRejects(() => b.set('k', value as unknown as Uint8Array), invalid, `set rejects ${what} as value`);
      }
      await expectRejects(() => collect(b.list('a\u0000')), invalid, 'list rejects a prefix with U+0000');
      await expectRejects(() => collect(b.list('\ud800')), invalid, 'list rejects a prefix with a lone surrogate');
      await expectRejects(() => collect(b.list(5 as unknown as string)), invalid, 'list rejects a number as prefix');
      const fake = { signal: { aborted: true } as unknown as AbortSignal };
      await expectRejects(() => b.set('k', text('x'), fake), invalid, 'set rejects a signal that is not an AbortSignal');
      await expectRejects(() => b.get('k', fake), invalid, 'get rejects a signal that is not an AbortSignal');
      expectEqual(await listedKeys(b), [], 'rejected arguments wrote nothing');
    },
  },
  {
    name: 'abort: an already aborted signal rejects Determinate Cancelled on every operation, and changes nothing',
    run: async (ctx) => {
      const [a, b] = [await ctx.open(), await ctx.open()];
      await a.set('kept', text('kept'));
      await a.set('deleted', text('deleted'));
      await a.delete('deleted');
      for (const signal of [AbortSignal.abort(new Error('stop')), AbortSignal.abort()]) {
        const why = signal.reason instanceof Error && signal.reason.message === 'stop' ? 'an Error' : 'the default reason';
        const opts = { signal };
        await expectRejects(() => a.set('aborted', text('x'), opts), cancelled, `set of a new key aborted with ${why} rejects Determinate Cancelled`);
        await expectRejects(() => a.set('kept', text('overwritten'), opts), cancelled, `overwrite aborted with ${why} rejects Determinate Cancelled`);
        await expectRejects(() => a.delete('kept', opts), cancelled, `delete aborted with ${why} rejects Determinate Cancelled`);
        await expectRejects(() => a.restore('deleted', opts), cancelled, `restore aborted with ${why} rejects Determinate Cancelled`);
        await expectRejects(() => a.get('kept', opts), cancelled, `get aborted with ${why} rejects Determinate Cancelled`);
        await expectRejects(() => collect(a.list('', opts)), cancelled, `list aborted with ${why} rejects Determinate Cancelled`);
      }
      expectEqual(await read(b, 'kept'), 'kept', 'aborted overwrites and deletes changed nothing');
      expectEqual(await b.get('deleted'), undefined, 'an aborted restore brought nothing back');
      expectEqual(await listedKeys(b), ['kept'], 'aborted sets wrote nothing');
    },
  },
  {
    name: 'close: is idempotent, also after Symbol.asyncDispose',
    run: async (ctx) => {
      const b = await ctx.open();
      await b.set('k', text('x'));
      expectEqual(await read(b, 'k'), 'x', 'the handle reads before it is closed');
      await b[Symbol.asyncDispose]();
      await b.close();
      await b.close();
    },
  },
];

/** Every case of the Blob suite, in the order the suite runs them. */
export const blobCases: readonly BlobCase[] = Object.freeze([
  ...specCases,
  ...locationCases,
  ...valueCases,
  ...listingCases,
  ...argumentCases,
]);
