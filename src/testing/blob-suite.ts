import type { Blob, BlobMetadata } from '../blob.js';
import { ErrorCode, ExternalError } from '../errors.js';
import { SegmentedBytes } from '../segmented-bytes.js';
import { collect, expect, expectEqual, expectRejects } from './expect.js';
import { hostileKeys, keyOfBytes } from './keys.js';

/** Options of {@link blobImplTest}. */
export interface BlobImplTestOptions {
  /**
   * The longest key the backend accepts, in UTF-8 bytes (default SPEC's 1024). An
   * object store that documents a lower cap passes it here; the suite then checks
   * that keys up to the cap work and longer keys reject with InvalidArgument.
   */
  maxKeyBytes?: number;
  /** Size of the large-value round trip, in bytes (default 3 MiB). */
  largeValueBytes?: number;
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

/**
 * The Blob conformance suite (SPEC "What the conformance suites check"), plus hostile
 * keys, invalid arguments, large values and byte isolation. `open(path)` must return a
 * handle on the location named `path`; handles with the same path share data, other
 * paths are independent and start empty. Throws on the first failed expectation.
 */
export async function blobImplTest(open: (path: string) => Promise<Blob>, options: BlobImplTestOptions = {}): Promise<void> {
  const a = await open('path0');
  const b = await open('path0');
  const other = await open('path1');
  try {
    await specItems(a, b, other);
    await invalidArguments(a, options.maxKeyBytes ?? 1024);
    await values(a, b, options.largeValueBytes ?? 3 * 1024 * 1024);
    await hostile(a, b, options.maxKeyBytes ?? 1024);
    expectEqual(await listedKeys(other), [], 'a location on another path sees none of path0\'s keys');
  } finally {
    await Promise.all([a.close(), b.close(), other.close()]);
    await a.close(); // idempotent
  }
  await nesting(open);
  // 8
  const later = await open('path0');
  try {
    expectEqual(await read(later, 'k1'), 'later', '8: a handle opened later on path0 sees its data');
  } finally {
    await later.close();
  }
}

async function specItems(a: Blob, b: Blob, other: Blob): Promise<void> {
  // 1
  expectEqual(await a.get('k0'), undefined, '1: get of a missing key is undefined (first handle)');
  expectEqual(await b.get('k0'), undefined, '1: get of a missing key is undefined (second handle)');
  expectEqual(await listedKeys(a), [], '1: a fresh location lists nothing');

  // 2
  await a.set('foo/bar/k0', text('v0'));
  await a.set('k0a', text('v0'));
  for (const [h, name] of [[a, 'first'], [b, 'second']] as const) {
    expectEqual(await read(h, 'foo/bar/k0'), 'v0', `2: foo/bar/k0 is visible through the ${name} handle`);
    expectEqual(await read(h, 'k0a'), 'v0', `2: k0a is visible through the ${name} handle`);
  }
  expectEqual(await listed(a), [{ key: 'foo/bar/k0', sizeInBytes: 2 }, { key: 'k0a', sizeInBytes: 2 }], '2: list gives both keys with their sizes');
  expectEqual(await listedKeys(other), [], '2: another path does not see them');

  // 3
  await b.set('foo/bar/k0', text('v1'));
  await b.set('k0a', text('v1'));
  for (const [h, name] of [[a, 'first'], [b, 'second']] as const) {
    expectEqual(await read(h, 'foo/bar/k0'), 'v1', `3: the overwrite of foo/bar/k0 is visible through the ${name} handle`);
    expectEqual(await read(h, 'k0a'), 'v1', `3: the overwrite of k0a is visible through the ${name} handle`);
  }

  // 4
  expectEqual(await a.delete('foo/bar/k0'), 2, '4: delete returns the size');
  expectEqual(await a.get('foo/bar/k0'), undefined, '4: a deleted key is gone (first handle)');
  expectEqual(await b.get('foo/bar/k0'), undefined, '4: a deleted key is gone (second handle)');
  expectEqual(await b.delete('foo/bar/k0'), undefined, '4: deleting twice returns undefined');
  expectEqual(await a.delete('nope'), undefined, '4: deleting a missing key returns undefined');
  await a.set('empty', new Uint8Array(0));
  expectEqual(await read(b, 'empty'), '', '4: an empty value reads back empty, not missing');
  expectEqual(await a.delete('empty'), 0, '4: deleting an empty value returns 0');

  // 5
  await a.set('undelete', text('data'));
  await a.restore('undelete');
  expectEqual(await read(a, 'undelete'), 'data', '5: restoring an existing key keeps it');
  expectEqual(await a.delete('undelete'), 4, '5: delete returns 4');
  let restored: boolean;
  try {
    await a.restore('undelete');
    restored = true;
  } catch (err) {
    expect(err instanceof ExternalError && err.determinate, `5: a failed restore rejects Determinate (got ${String(err)})`);
    restored = false;
  }
  expectEqual(await read(b, 'undelete'), restored ? 'data' : undefined, '5: get after restore agrees with restore\'s outcome');
  await expectRejects(a.restore('never-existed'), { determinate: true }, '5: restoring a key that never existed rejects Determinate');
  expectEqual(await a.get('never-existed'), undefined, '5: a failed restore creates nothing');

  // 6
  for (const { key } of await listed(a)) await a.delete(key);
  expectEqual(await listedKeys(a), [], '6: after deleting everything the first handle lists nothing');
  expectEqual(await listedKeys(b), [], '6: after deleting everything the second handle lists nothing');
  await a.set('k0a', text('again'));
  expectEqual(await read(b, 'k0a'), 'again', '6: a deleted key can be set again');
  await a.delete('k0a');

  // 7
  for (let i = 1; i <= 5; i++) await a.set(`k${i}`, text(`v${i}`));
  expectEqual(await listedKeys(b), ['k1', 'k2', 'k3', 'k4', 'k5'], '7: list gives k1..k5');
  for (let i = 1; i <= 3; i++) await b.set(`k-prefix-${i}`, text(`p${i}`));
  await a.set('foo/bar/k0', text('v0'));
  expectEqual(await listedKeys(a, 'k-prefix'), ['k-prefix-1', 'k-prefix-2', 'k-prefix-3'], '7: list("k-prefix") gives exactly those keys');
  expectEqual(
    await listedKeys(a, 'k'),
    ['k-prefix-1', 'k-prefix-2', 'k-prefix-3', 'k1', 'k2', 'k3', 'k4', 'k5'],
    '7: list("k") gives every key starting with k, not foo/bar/k0',
  );
  expectEqual(await listedKeys(a, 'foo/'), ['foo/bar/k0'], '7: list("foo/") gives the nested key');
  expectEqual(await listedKeys(a, 'foo/ba'), ['foo/bar/k0'], '7: a prefix may end inside a path segment');
  expectEqual(await listedKeys(a, 'zzz'), [], '7: a prefix that matches nothing lists nothing');
  await a.set('k1', text('later'));
}

async function invalidArguments(b: Blob, maxKeyBytes: number): Promise<void> {
  const bad = { determinate: true, code: ErrorCode.InvalidArgument };
  const badKeys: [unknown, string][] = [
    ['', 'the empty key'],
    ['a\u0000b', 'a key with U+0000'],
    [keyOfBytes(maxKeyBytes + 1), `a key of ${maxKeyBytes + 1} bytes`],
    ['\udc00x', 'a key with a lone surrogate'],
    [7, 'a number as key'],
  ];
  for (const [key, what] of badKeys) {
    const k = key as string;
    await expectRejects(() => b.get(k), bad, `get rejects ${what}`);
    await expectRejects(() => b.set(k, text('x')), bad, `set rejects ${what}`);
    await expectRejects(() => b.delete(k), bad, `delete rejects ${what}`);
    await expectRejects(() => b.restore(k), bad, `restore rejects ${what}`);
  }
  const tooLong = await expectRejects(() => b.set(keyOfBytes(maxKeyBytes + 1), text('x')), bad, 'an over-long key rejects');
  expect(tooLong.message.includes(String(maxKeyBytes)), `the over-long key error names the limit ${maxKeyBytes}`);
  await expectRejects(() => b.set('k', 'a string' as unknown as Uint8Array), bad, 'set rejects a string value');
  await expectRejects(() => b.set('k', [1, 2] as unknown as Uint8Array), bad, 'set rejects an array value');
  await expectRejects(() => collect(b.list('a\u0000')), bad, 'list rejects a prefix with U+0000');
  const signal = AbortSignal.abort(new Error('stop'));
  await expectRejects(() => b.set('aborted', text('x'), { signal }), { determinate: true }, 'set with an already aborted signal rejects Determinate');
  expectEqual(await b.get('aborted'), undefined, 'an aborted set wrote nothing');
  // Every operation honours its signal, reads included (SPEC OpOptions).
  await expectRejects(() => b.get('aborted', { signal }), {}, 'get with an already aborted signal rejects with an ExternalError');
  await expectRejects(() => b.delete('aborted', { signal }), {}, 'delete with an already aborted signal rejects with an ExternalError');
  await expectRejects(() => b.restore('aborted', { signal }), {}, 'restore with an already aborted signal rejects with an ExternalError');
  await expectRejects(() => collect(b.list('', { signal })), {}, 'list with an already aborted signal rejects with an ExternalError');
}

async function values(a: Blob, b: Blob, largeBytes: number): Promise<void> {
  const large = Buffer.alloc(largeBytes);
  for (let i = 0; i < large.length; i += 4) large.writeUInt32LE(i, i);
  await a.set('large', large);
  const got = await b.get('large');
  expect(got !== undefined, 'the large value exists');
  expectEqual(got!.length, largeBytes, 'the large value has its full length');
  expect(Buffer.from(got!.toContiguous()).equals(large), 'the large value reads back byte for byte');
  expectEqual((await listed(b, 'large')).map((m) => m.sizeInBytes), [largeBytes], 'list reports the large value\'s size');
  expectEqual(await a.delete('large'), largeBytes, 'deleting the large value returns its size');

  const all = Buffer.alloc(256);
  for (let i = 0; i < 256; i++) all[i] = i;
  await a.set('all-bytes', all);
  const back = await a.get('all-bytes');
  expect(back !== undefined && Buffer.from(back.toContiguous()).equals(all), 'every byte value 0..255 round-trips');

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
  for (const k of ['all-bytes', 'isolated', 'in-flight', 'sub']) await a.delete(k);
}

async function hostile(a: Blob, b: Blob, maxKeyBytes: number): Promise<void> {
  const before = new Set(await listedKeys(a));
  const keys = hostileKeys(maxKeyBytes).filter((k) => !before.has(k));
  for (const [i, key] of keys.entries()) await a.set(key, text(`value-${i}`));
  for (const [i, key] of keys.entries()) {
    expectEqual(await read(b, key), `value-${i}`, `hostile key ${JSON.stringify(key)} reads back its own value`);
  }
  const now = (await listed(b)).filter((m) => !before.has(m.key));
  expectEqual(now.map((m) => m.key).sort(), [...keys].sort(), 'list yields every hostile key exactly');
  for (const m of now) expectEqual(m.sizeInBytes, Buffer.byteLength(`value-${keys.indexOf(m.key)}`), `list gives the size of ${JSON.stringify(m.key)}`);
  expectEqual((await listedKeys(b, 'dir')).sort(), ['dir', 'dir/child', 'dir/child/grandchild'], 'list("dir") gives a key and the keys nested under it');
  expectEqual(await listedKeys(b, 'dir/'), ['dir/child', 'dir/child/grandchild'], 'list("dir/") gives only nested keys');
  expectEqual(await listedKeys(b, '..'), ['..', '../../../../../../../../tmp/escape', '../escape', '..\\..\\escape'].sort(), 'list("..") gives exactly the keys starting with ..');
  for (const [i, key] of keys.entries()) {
    expectEqual(await b.delete(key), Buffer.byteLength(`value-${i}`), `hostile key ${JSON.stringify(key)} deletes with its size`);
  }
  expectEqual((await listedKeys(a)).filter((k) => !before.has(k)), [], 'every hostile key is gone after delete');
}

/**
 * Inner path names that an encoding of keys into names could produce: a layout's own
 * prefixes (`d`, `v`, `c`, `x`), a name long enough to be a chunk boundary, a dot name.
 */
const NESTED_NAMES = ['data', 'dfoo', 'vk', 'x'.repeat(200), '.hidden', 'k'];

/**
 * Locations nested by path (`nest` and `nest/data`) are as independent as any two:
 * neither lists, reads, overwrites or deletes the other's values, whichever was opened
 * first. A backend may instead refuse, Determinate at open, a location that lies inside
 * or around another one, and refuse (Determinate) an operation that would reach into
 * another location; both keep the other's data untouched.
 */
async function nesting(open: (path: string) => Promise<Blob>): Promise<void> {
  for (const [i, name] of NESTED_NAMES.entries()) {
    const label = name.length > 20 ? `${name.slice(0, 8)}... (${name.length} characters)` : name;
    for (const innerFirst of [false, true]) {
      const outerPath = `nest${i}${innerFirst ? 'b' : 'a'}`;
      const innerPath = `${outerPath}/${name}`;
      const first = await openNested(open, innerFirst ? innerPath : outerPath, label);
      const second = first && (await openNested(open, innerFirst ? outerPath : innerPath, label));
      try {
        if (first === undefined || second === undefined) continue;
        const [outer, inner] = innerFirst ? [second, first] : [first, second];
        await isolatedNesting(outer, inner, name, `${label}, ${innerFirst ? 'inner' : 'outer'} opened first`);
      } finally {
        await Promise.all([first?.close(), second?.close()]);
      }
    }
  }
}

async function openNested(open: (path: string) => Promise<Blob>, path: string, label: string): Promise<Blob | undefined> {
  try {
    return await open(path);
  } catch (err) {
    expect(err instanceof ExternalError && err.determinate, `nesting (${label}): opening ${path} succeeds or rejects Determinate (got ${String(err)})`);
    return undefined;
  }
}

async function isolatedNesting(outer: Blob, inner: Blob, name: string, label: string): Promise<void> {
  const innerKeys = [...new Set(['k', 'a/b', name, `${name}/k`])];
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
