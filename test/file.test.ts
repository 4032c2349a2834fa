import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import fs from 'node:fs';
import fsPromises from 'node:fs/promises';
import { syncBuiltinESMExports } from 'node:module';
import { hostname, tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Determinate, ErrorCode, ExternalError, Indeterminate, openBlob, type Blob } from 'persist-location';
import { FileBlob } from 'persist-location/file';
import { fsError } from '../src/file/errors.js';
import { blobImplTest, hostileKeys } from 'persist-location/testing';
import { checkValue, churnKeys, crashKeys, makeValue, raceKeys } from './fixtures/file-value.js';

const WRITER = new URL('./fixtures/file-writer.js', import.meta.url).pathname;
const text = (s: string): Buffer => Buffer.from(s, 'utf8');
const str = async (b: Blob, key: string): Promise<string | undefined> => {
  const got = await b.get(key);
  return got === undefined ? undefined : Buffer.from(got.toContiguous()).toString('utf8');
};
const keysOf = async (b: Blob, prefix?: string): Promise<string[]> => {
  const out: string[] = [];
  for await (const m of b.list(prefix)) out.push(m.key);
  return out.sort();
};

const MARKER = '.pl-root';

const listAll = async (b: Blob, prefix?: string): Promise<{ key: string; sizeInBytes: number }[]> => {
  const out: { key: string; sizeInBytes: number }[] = [];
  for await (const m of b.list(prefix)) out.push(m);
  return out;
};

/** Every path under `dir` (relative), directories with a trailing `/`; not `dir`'s own root marker. */
function walk(dir: string, rel = ''): string[] {
  const out: string[] = [];
  for (const e of readdirSync(join(dir, rel), { withFileTypes: true })) {
    if (rel === '' && e.name === MARKER) continue;
    const p = rel === '' ? e.name : `${rel}/${e.name}`;
    if (e.isDirectory()) out.push(`${p}/`, ...walk(dir, p));
    else out.push(p);
  }
  return out.sort();
}

let tmp: string;
let n = 0;
const fresh = (): string => join(tmp, `loc-${++n}`);

before(() => {
  tmp = mkdtempSync(join(tmpdir(), 'file-blob-test-'));
});
after(() => {
  rmSync(tmp, { recursive: true, force: true });
});

describe('conformance', () => {
  test('FileBlob passes blobImplTest, with and without keepDeleted', async () => {
    for (const keepDeleted of [false, true]) {
      const root = fresh();
      await blobImplTest(async (path) => new FileBlob(join(root, path), { keepDeleted }), { capabilities: { keepsDeleted: keepDeleted } });
    }
  });

  test('file: URIs pass blobImplTest, with ?keepDeleted=true, =false and without', async () => {
    for (const [query, keepsDeleted] of [['', false], ['?keepDeleted=false', false], ['?keepDeleted=true', true]] as const) {
      const root = fresh();
      await blobImplTest(async (path) => openBlob(`file://${join(root, path)}${query}`), { capabilities: { keepsDeleted } });
    }
  });
});

describe('file: URIs', () => {
  test('file:///abs, file:/abs, file:rel and file://localhost name the same directory, created if missing', async () => {
    const root = join(fresh(), 'not', 'yet');
    const rel = relative(process.cwd(), root);
    assert.ok(!rel.startsWith('/'), 'the relative form is relative');
    const forms = [`file://${root}`, `file:${root}`, `file:${rel}`, `file://localhost${root}`];
    const handles = [];
    for (const uri of forms) handles.push(await openBlob(uri));
    assert.ok(lstatSync(root).isDirectory(), 'the directory was created');
    await handles[0]!.set('k', text('shared'));
    for (const [i, h] of handles.entries()) assert.equal(await str(h, 'k'), 'shared', forms[i]);
    for (const h of handles) await h.close();
  });

  test('percent-escapes in the path are decoded', async () => {
    const root = join(fresh(), 'with space');
    const b = await openBlob(`file://${root.replaceAll(' ', '%20')}`);
    await b.set('k', text('v'));
    assert.ok(existsSync(join(root, 'vk')));
    await b.close();
  });

  test('bad file: URIs reject Determinate InvalidArgument with a clear message', async () => {
    const root = fresh();
    const cases: [string, RegExp][] = [
      [`file://${root}?keepDeleted=maybe`, /keepDeleted.*true or false/],
      [`file://${root}?bogus=1`, /unknown parameter 'bogus'.*accepts: keepDeleted/],
      [`file://otherhost${root}`, /names the host 'otherhost'/],
      ['file:', /names no directory/],
    ];
    for (const [uri, message] of cases) {
      await assert.rejects(openBlob(uri), (err: unknown) => {
        assert.ok(err instanceof Determinate, `${uri}: ${String(err)}`);
        assert.equal(err.code, ErrorCode.InvalidArgument);
        assert.match(err.message, message);
        return true;
      });
    }
    assert.ok(!existsSync(root), 'a rejected URI creates nothing');
  });
});

describe('layout', () => {
  test('every hostile key maps to short, case-exact, escaped names inside the root, and back', async () => {
    const root = fresh();
    const b = new FileBlob(root, { sweepOnOpen: false });
    const keys = [...hostileKeys(), 'Dir/Sub', 'dir/sub', 'DIR/SUB', `${'A'.repeat(1024)}`, `${'/'.repeat(1024)}`];
    for (const [i, key] of keys.entries()) await b.set(key, text(`v${i}`));
    const paths = walk(root);
    for (const p of paths) {
      for (const name of p.split('/').filter((x) => x !== '')) {
        assert.ok(Buffer.byteLength(name) <= 255, `name of ${Buffer.byteLength(name)} bytes: ${name.slice(0, 40)}...`);
        assert.match(name, /^[vdcx](?:[a-z0-9._-]|%[0-9a-f]{2})*$/, `name ${name.slice(0, 60)} is escaped, lower-case and marked`);
      }
    }
    // Case-exact on case-insensitive file systems: no two names in one directory differ only in case.
    const byDir = new Map<string, string[]>();
    for (const p of paths) {
      const trimmed = p.endsWith('/') ? p.slice(0, -1) : p;
      const cut = trimmed.lastIndexOf('/');
      const dir = cut < 0 ? '' : trimmed.slice(0, cut);
      byDir.set(dir, [...(byDir.get(dir) ?? []), trimmed.slice(cut + 1).toLowerCase()]);
    }
    for (const [dir, names] of byDir) assert.equal(new Set(names).size, names.length, `names in ${dir || 'the root'} are distinct ignoring case`);
    assert.deepEqual(await keysOf(b), [...keys].sort(), 'every key is listed back exactly');
    for (const [i, key] of keys.entries()) assert.equal(await str(b, key), `v${i}`);
    assert.ok(existsSync(join(root, 'vdir')) && existsSync(join(root, 'ddir', 'vchild')), 'dir and dir/child live side by side');
    await b.close();
  });

  test('list(prefix) matches at every cut of a long multi-chunk key', async () => {
    const root = fresh();
    const b = new FileBlob(root, { sweepOnOpen: false });
    const long = `seg/${'Ab€'.repeat(150)}/tail`; // the middle segment spans several file names
    const other = `seg/${'Ab€'.repeat(149)}AbX`;
    await b.set(long, text('1'));
    await b.set(other, text('2'));
    const chars = [...long];
    for (let cut = 0; cut <= chars.length; cut += 7) {
      const prefix = chars.slice(0, cut).join('');
      const want = [long, other].filter((k) => k.startsWith(prefix)).sort();
      assert.deepEqual(await keysOf(b, prefix), want, `list of a prefix of ${cut} characters`);
    }
    assert.deepEqual(await keysOf(b, long), [long]);
    assert.deepEqual(await keysOf(b, `${long}x`), []);
    await b.close();
  });

  test('list(prefix) reads only the directory of the prefix and the subtrees that match', async () => {
    const root = fresh();
    const b = new FileBlob(root, { sweepOnOpen: false });
    const wanted = ['logs/2024/a', 'logs/2024/b/c', 'logs/2024x', 'logs/20245/d'];
    const others = Array.from({ length: 60 }, (_, i) => `logs/${1900 + i}/k/${i}`).concat(Array.from({ length: 30 }, (_, i) => `data/${i}/v`));
    for (const key of [...wanted, ...others]) await b.set(key, text(key));
    const read: string[] = [];
    const original = fsPromises.readdir;
    fsPromises.readdir = ((path: string, ...rest: unknown[]) => {
      read.push(relative(b.root, String(path)));
      return (original as (...args: unknown[]) => unknown)(path, ...rest);
    }) as typeof original;
    syncBuiltinESMExports();
    let listed: string[];
    try {
      listed = await keysOf(b, 'logs/2024');
    } finally {
      fsPromises.readdir = original;
      syncBuiltinESMExports();
    }
    assert.deepEqual(listed, [...wanted].sort());
    // dlogs (holds the partial "2024"), then d2024, d2024/db and d20245: never the 60 other years nor ddata.
    assert.deepEqual(read.sort(), ['dlogs', 'dlogs/d2024', 'dlogs/d2024/db', 'dlogs/d20245'].sort());
    await b.close();
  });

  test('a delete removes the directories it left empty; a kept deleted value keeps its directory', async () => {
    const root = fresh();
    const plain = new FileBlob(root, { sweepOnOpen: false });
    await plain.set('a/b/c', text('1'));
    await plain.set('a/x', text('2'));
    assert.equal(await plain.delete('a/b/c'), 1);
    assert.deepEqual(walk(root), ['da/', 'da/vx']);
    assert.equal(await plain.delete('a/x'), 1);
    assert.deepEqual(walk(root), []);
    await plain.set('a/b/c', text('again'), {});
    assert.equal(await str(plain, 'a/b/c'), 'again', 'a pruned directory is re-created by a later set on the same handle');
    const keep = new FileBlob(root, { keepDeleted: true, sweepOnOpen: false });
    assert.equal(await keep.delete('a/b/c'), 5);
    assert.deepEqual(walk(root), ['da/', 'da/db/', 'da/db/xc']);
    await keep.restore('a/b/c');
    assert.equal(await str(plain, 'a/b/c'), 'again');
    await plain.close();
    await keep.close();
  });
});

describe('roots and nesting', () => {
  /** Inner root names that the outer location's layout could take for its own names. */
  const innerNames = ['data', 'dfoo', 'vk', 'xk', 'x'.repeat(200), `c${'a'.repeat(254)}`, 'docs/dsub'];
  /** Keys of the outer location whose names would lead into (or be) the inner root `name`. */
  const aliasesOf = (name: string): string[] => {
    const first = name.split('/')[0]!;
    const bare = first.slice(1);
    return [`${bare}/k`, `${bare}/a/b`, bare, `${bare}k`, `${bare}/sub/k`].filter((k) => k !== '');
  };
  const refusedOrDone = async (op: () => Promise<unknown>, what: string): Promise<void> => {
    await op().catch((err: unknown) => {
      assert.ok(err instanceof Determinate, `${what}: succeeds or rejects Determinate (got ${String(err)})`);
    });
  };

  test('every root holds the marker, never listed; a root made before markers existed is marked when opened and keeps working', async () => {
    const root = fresh();
    // What an earlier version left: values, no marker.
    mkdirSync(join(root, 'da'), { recursive: true });
    writeFileSync(join(root, 'vk'), 'flat');
    writeFileSync(join(root, 'da', 'vb'), 'nested');
    const b = new FileBlob(root, { sweepOnOpen: false });
    assert.ok(lstatSync(join(root, MARKER)).isFile(), 'opening marked the root');
    assert.deepEqual(await keysOf(b), ['a/b', 'k']);
    assert.equal(await str(b, 'a/b'), 'nested');
    await b.set('k', text('again'));
    assert.equal(await str(b, 'k'), 'again');
    await b.close();
    assert.throws(() => new FileBlob(join(root, 'da')), { name: 'Determinate', code: ErrorCode.FailedPrecondition }, 'once marked, nothing can be opened inside it');
  });

  test('a location inside another one is refused at open, Determinate, naming both, and creates nothing', async () => {
    const outerRoot = fresh();
    const outer = new FileBlob(outerRoot, { sweepOnOpen: false });
    await outer.set('ata/k', text('outer value'));
    const before = walk(outerRoot);
    for (const name of [...innerNames, 'data/vk', 'da/db/dc', 'elsewhere']) {
      const inner = join(outerRoot, name);
      const refused = (err: unknown): boolean => {
        assert.ok(err instanceof Determinate, `${name}: ${String(err)}`);
        assert.equal(err.code, ErrorCode.FailedPrecondition, name);
        assert.ok(err.message.includes(inner) && err.message.includes(`location rooted at ${outer.root}:`), `${name}: the message names both: ${err.message}`);
        return true;
      };
      assert.throws(() => new FileBlob(inner), refused);
      assert.throws(() => new FileBlob(inner, { writeOnOpen: false }), (err: unknown) => err instanceof Determinate, `${name}, writeOnOpen: false`);
      await assert.rejects(openBlob(`file://${inner}?keepDeleted=true`), refused);
      assert.deepEqual(walk(outerRoot), before, `refusing ${name} created nothing`);
    }
    assert.equal(await str(outer, 'ata/k'), 'outer value');
    assert.deepEqual(await keysOf(outer), ['ata/k']);
    await outer.close();
  });

  test('an enclosing root marked while an inner one opens (another process, at that moment) makes the inner open fail and undo itself', async () => {
    const outerRoot = fresh();
    mkdirSync(outerRoot);
    const inner = join(outerRoot, 'data', 'deeper');
    // The other process's open lands between this open's first check and its marker.
    const original = fs.mkdirSync;
    fs.mkdirSync = ((...args: Parameters<typeof original>) => {
      const made = original(...args);
      writeFileSync(join(outerRoot, MARKER), '');
      return made;
    }) as typeof original;
    syncBuiltinESMExports();
    try {
      assert.throws(() => new FileBlob(inner), (err: unknown) => err instanceof Determinate && err.code === ErrorCode.FailedPrecondition && err.message.includes(outerRoot));
    } finally {
      fs.mkdirSync = original;
      syncBuiltinESMExports();
    }
    assert.deepEqual(walk(outerRoot), [], 'the refused open removed its marker and the directories it made');
    const outer = new FileBlob(outerRoot, { sweepOnOpen: false });
    await outer.set('ata/k', text('outer'));
    assert.equal(await str(outer, 'ata/k'), 'outer', 'the outer location uses the name the inner one had taken');
    await outer.close();
  });

  test('a location opened first inside a later one stays out of its reach: never listed, read, overwritten, removed or swept', async () => {
    const dead = spawnSync(process.execPath, ['-e', '0']).pid!;
    const hostTag = createHash('sha256').update(hostname()).digest('hex').slice(0, 8);
    for (const keepDeleted of [false, true]) {
      for (const name of innerNames) {
        const label = `${name.slice(0, 12)}${name.length > 12 ? '...' : ''}, keepDeleted ${keepDeleted}`;
        const outerRoot = fresh();
        const innerRoot = join(outerRoot, name);
        const inner = new FileBlob(innerRoot, { sweepOnOpen: false });
        const innerKeys = ['k', 'a/b', 'sub/k'];
        for (const key of innerKeys) await inner.set(key, text(`inner ${key}`));
        const temp = join(innerRoot, 'dsub', `.pl-tmp.${hostTag}.${dead}.abc`);
        writeFileSync(temp, 'the inner location sweeps this, not the outer one');
        const outer = new FileBlob(outerRoot, { keepDeleted, sweepOnOpen: false });
        await outer.set('own', text('outer'));
        assert.deepEqual(await keysOf(outer), ['own'], `${label}: the outer location lists only its own key`);
        for (const prefix of aliasesOf(name)) assert.deepEqual(await keysOf(outer, prefix), [], `${label}: list(${prefix.slice(0, 20)})`);
        for (const key of aliasesOf(name)) {
          const got = await outer.get(key).catch((err: unknown) => {
            assert.ok(err instanceof Determinate, `${label}: get ${key}: ${String(err)}`);
            return undefined;
          });
          assert.equal(got, undefined, `${label}: the outer location reads nothing at ${key.slice(0, 20)}`);
          await refusedOrDone(() => outer.set(key, text('overwritten')), `${label}: set ${key}`);
          await refusedOrDone(() => outer.restore(key), `${label}: restore ${key}`);
          await refusedOrDone(() => outer.delete(key), `${label}: delete ${key}`);
          await refusedOrDone(() => outer.delete(key), `${label}: delete ${key} again`);
        }
        for (const { key } of await listAll(outer)) await outer.delete(key);
        assert.deepEqual(await outer.sweep(), { tempFiles: 0, directories: 0 }, `${label}: the outer sweep leaves the inner root alone`);
        assert.ok(existsSync(temp), `${label}: the inner location's temporary file is still there`);
        assert.ok(lstatSync(join(innerRoot, MARKER)).isFile(), `${label}: the inner root and its marker are still there`);
        for (const key of innerKeys) assert.equal(await str(inner, key), `inner ${key}`, `${label}: inner key ${key} is intact`);
        assert.deepEqual(await keysOf(inner), [...innerKeys].sort(), `${label}: the inner location lists exactly its keys`);
        assert.equal(await inner.get('own'), undefined);
        await inner.close();
        await outer.close();
      }
    }
  });

  test('writeOnOpen: false writes nothing on open: a missing root is NotFound, an unmarked root stays unmarked until the first write, no sweep', async () => {
    const missing = join(fresh(), 'not-there');
    for (const open of [async () => new FileBlob(missing, { writeOnOpen: false }), () => openBlob(`file://${missing}?writeOnOpen=false`)]) {
      await assert.rejects(open(), (err: unknown) => err instanceof Determinate && err.code === ErrorCode.NotFound && err.message.includes(missing));
    }
    assert.ok(!existsSync(dirname(missing)), 'nothing was created');
    assert.throws(() => new FileBlob(missing, { writeOnOpen: false, sweepOnOpen: true }), { name: 'Determinate', code: ErrorCode.InvalidArgument });

    const root = fresh();
    const dead = spawnSync(process.execPath, ['-e', '0']).pid!;
    const hostTag = createHash('sha256').update(hostname()).digest('hex').slice(0, 8);
    mkdirSync(join(root, 'docs'), { recursive: true });
    writeFileSync(join(root, 'vk'), 'old');
    writeFileSync(join(root, `.pl-tmp.${hostTag}.${dead}.abc`), 'stale');
    const before = walk(root);
    const readers = [new FileBlob(root, { writeOnOpen: false }), (await openBlob(`file://${root}?writeOnOpen=false`)) as FileBlob];
    for (const r of readers) {
      assert.deepEqual(await keysOf(r), ['k']);
      assert.equal(await str(r, 'k'), 'old');
    }
    await new Promise((r) => setTimeout(r, 50)); // a background sweep, if one had started, would have run by now
    assert.deepEqual(walk(root), before, 'nothing was swept');
    assert.ok(!existsSync(join(root, MARKER)), 'no marker was written');
    await readers[0]!.set('k', text('new'));
    assert.ok(existsSync(join(root, MARKER)), 'the first write marked the root');
    assert.equal(await str(readers[1]!, 'k'), 'new');
    for (const r of readers) await r.close();
  });
});

describe('keepDeleted', () => {
  test('restore brings back the latest deleted value, never clobbers a newer one, and fails NotFound otherwise', async () => {
    const root = fresh();
    const keep = new FileBlob(root, { keepDeleted: true, sweepOnOpen: false });
    const plain = new FileBlob(root, { sweepOnOpen: false });
    await keep.set('k', text('one'));
    assert.equal(await keep.delete('k'), 3);
    await keep.set('k', text('two'));
    await keep.restore('k'); // exists: nothing to do
    assert.equal(await str(keep, 'k'), 'two', 'restore does not replace a value set after the delete');
    assert.equal(await keep.delete('k'), 3);
    await keep.restore('k');
    assert.equal(await str(keep, 'k'), 'two', 'restore brings back the latest deleted value');
    assert.deepEqual(await keysOf(keep), ['k'], 'kept deleted values are not listed');
    await keep.restore('k'); // repeated restore succeeds
    // A plain handle's delete drops the kept value, so nothing older can come back.
    await keep.delete('k');
    await keep.set('k', text('three'));
    assert.equal(await plain.delete('k'), 5);
    await assert.rejects(keep.restore('k'), { name: 'Determinate', code: ErrorCode.NotFound });
    assert.equal(await keep.get('k'), undefined);
    await assert.rejects(keep.restore('never/was'), { name: 'Determinate', code: ErrorCode.NotFound });
    assert.deepEqual(walk(root), [], 'a failed restore of a nested key creates no directory');
    await keep.close();
    await plain.close();
  });
});

describe('keepDeleted: deletes racing restores', () => {
  /** A restore's outcome: `ok`, or `nf` for a Determinate NotFound (anything else fails the test). */
  const restoreOutcome = (b: Blob, key: string): Promise<string> =>
    b.restore(key).then(
      () => 'ok',
      (err: unknown) => {
        assert.ok(err instanceof Determinate && err.code === ErrorCode.NotFound, `restore rejected with ${String(err)}`);
        return 'nf';
      },
    );
  /**
   * The outcomes of `delete` (of "v2", whose key earlier held "old", deleted and
   * kept) racing `restore`: delete then restore brings "v2" back, or the restore
   * rejects NotFound as a backend without restore may; restore then delete finds
   * "v2" and leaves the key deleted. "old" is never an outcome.
   */
  const EXPLAINED = ['ok v2', 'nf undefined', 'ok undefined'];

  test('in one process, every outcome of a delete racing a restore is that of the two in some order', async (t) => {
    const root = fresh();
    const a = new FileBlob(root, { keepDeleted: true, sweepOnOpen: false });
    const b = new FileBlob(root, { keepDeleted: true, sweepOnOpen: false });
    const seen = new Map<string, number>();
    for (let round = 1; round <= 200; round++) {
      await a.set('k', text('old'));
      assert.equal(await a.delete('k'), 3);
      await a.set('k', text('v2'));
      // Either call starts first, the other after a pause of up to a few milliseconds
      // (a delete takes about that long): so the restore lands before, during and after the delete.
      const ms = [0, 0.5, 1, 2, 4, 8][round % 6]!;
      const pause = (): Promise<void> => new Promise((r) => (ms === 0 ? setImmediate(r) : setTimeout(r, ms * Math.random())));
      const [deleted, restored] = await Promise.all(
        round % 12 < 6 ? [a.delete('k'), pause().then(() => restoreOutcome(b, 'k'))] : [pause().then(() => a.delete('k')), restoreOutcome(b, 'k')],
      );
      assert.equal(deleted, 2, `round ${round}: the delete removed "v2"`);
      const outcome = `${restored} ${await str(a, 'k')}`;
      assert.ok(EXPLAINED.includes(outcome), `round ${round}: restore ${restored} and the key holds ${outcome.split(' ')[1]}`);
      seen.set(outcome, (seen.get(outcome) ?? 0) + 1);
      // In every order the latest delete removed "v2", so that is what a restore brings back.
      await b.restore('k');
      assert.equal(await str(a, 'k'), 'v2', `round ${round}: a later restore brings back the latest deleted value`);
    }
    t.diagnostic(`outcomes: ${JSON.stringify(Object.fromEntries(seen))}`);
    await a.close();
    await b.close();
  });

  test('in several processes, every outcome of a delete racing a restore is that of the two in some order', async (t) => {
    const root = fresh();
    const keep = new FileBlob(root, { keepDeleted: true, sweepOnOpen: false });
    const child = spawn(process.execPath, [WRITER, root, 'restore', '0'], { stdio: ['pipe', 'pipe', 'pipe'] });
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const closed = new Promise<number | null>((r) => child.on('close', (code) => r(code)));
    const next = lineReader(child.stdout, () => err);
    const seen = new Map<string, number>();
    try {
      assert.equal(await next('the restoring child to start'), 'ready');
      for (let round = 1; round <= 150; round++) {
        await keep.set('k', text('old'));
        assert.equal(await keep.delete('k'), 3);
        await keep.set('k', text('v2'));
        // Either call starts first, the other after a pause of up to a few milliseconds.
        const pause = (): Promise<void> => new Promise((r) => setTimeout(r, Math.random() * 8));
        const restore = (): Promise<string> => {
          child.stdin.write('k\n');
          return next(`the child's restore of round ${round}`);
        };
        const [deleted, restored] = await Promise.all(
          round % 2 === 0 ? [pause().then(() => keep.delete('k')), restore()] : [keep.delete('k'), pause().then(restore)],
        );
        assert.equal(deleted, 2, `round ${round}: the delete removed "v2"`);
        const outcome = `${restored} ${await str(keep, 'k')}`;
        assert.ok(EXPLAINED.includes(outcome), `round ${round}: the child's restore ${restored} and the key holds ${outcome.split(' ')[1]}`);
        seen.set(outcome, (seen.get(outcome) ?? 0) + 1);
        await keep.restore('k');
        assert.equal(await str(keep, 'k'), 'v2', `round ${round}: a later restore brings back the latest deleted value`);
      }
    } finally {
      child.stdin.end();
      const code = await Promise.race([closed, new Promise((r) => setTimeout(() => r('timeout'), 10_000))]);
      if (code === 'timeout') child.kill('SIGKILL');
      assert.equal(code, 0, `the restoring child exited cleanly (${String(code)}): ${err}`);
    }
    t.diagnostic(`outcomes: ${JSON.stringify(Object.fromEntries(seen))}`);
    await keep.close();
  });

  test('a crash after any step of a keeping delete leaves a state that some order explains', async () => {
    // The process "dies" right after its n-th change to the directory: that change is
    // made, and no later one is.
    for (let crashAfter = 1; crashAfter <= 6; crashAfter++) {
      const root = fresh();
      const keep = new FileBlob(root, { keepDeleted: true, sweepOnOpen: false });
      await keep.set('k', text('old'));
      await keep.delete('k');
      await keep.set('k', text('v2'));
      const originals = { rename: fsPromises.rename, link: fsPromises.link, unlink: fsPromises.unlink };
      let changes = 0;
      const dying = <A extends unknown[]>(real: (...args: A) => Promise<void>) =>
        async (...args: A): Promise<void> => {
          if (changes >= crashAfter) throw new Error('simulated crash: the process is gone');
          await real(...args);
          if (++changes >= crashAfter) throw new Error('simulated crash: the process is gone');
        };
      fsPromises.rename = dying(originals.rename);
      fsPromises.link = dying(originals.link);
      fsPromises.unlink = dying(originals.unlink);
      syncBuiltinESMExports();
      let completed: number | undefined;
      try {
        completed = await keep.delete('k').catch(() => undefined);
      } finally {
        Object.assign(fsPromises, originals);
        syncBuiltinESMExports();
      }
      await keep.close();
      const after = new FileBlob(root, { keepDeleted: true, sweepOnOpen: false });
      const value = await str(after, 'k');
      const restored = await restoreOutcome(after, 'k');
      const outcome = `${restored} ${await str(after, 'k')}`;
      const label = `crash after change ${crashAfter}${completed === undefined ? '' : ' (the delete had finished)'}`;
      if (value === 'v2') assert.equal(outcome, 'ok v2', `${label}: the delete did not happen`);
      else assert.ok(outcome === 'ok v2' || outcome === 'nf undefined', `${label}: restore ${restored}, then the key holds ${outcome.split(' ')[1]} (only "v2" or nothing is explained)`);
      await after.close();
    }
  });
});

describe('safety', () => {
  test('list never yields a key that the layout would not put where it was found', async () => {
    const root = fresh();
    // A foreign `c` directory with a short chunk: `cfoo/vbar` looks like key
    // "foobar", which lives at `vfoobar`. Listing it would name a key get() cannot find.
    mkdirSync(join(root, 'cfoo'), { recursive: true });
    writeFileSync(join(root, 'cfoo', 'vbar'), 'planted');
    const b = new FileBlob(root, { sweepOnOpen: false });
    await b.set('real', text('x'));
    assert.deepEqual(await keysOf(b), ['real']);
    assert.deepEqual(await keysOf(b, 'foo'), []);
    assert.equal(await b.get('foobar'), undefined);
    await b.close();
  });


  test('bytes the caller changes after calling set, while it is in flight, are not what gets stored', async () => {
    const root = fresh();
    const b = new FileBlob(root, { sweepOnOpen: false });
    for (const size of [9, 300 * 1024]) {
      for (const key of ['flat', `fresh/dir/${size}`]) {
        const bytes = Buffer.alloc(size, 'a');
        const setting = b.set(key, bytes);
        bytes.fill('z');
        await setting;
        assert.ok(Buffer.from((await b.get(key))!.toContiguous()).equals(Buffer.alloc(size, 'a')), `${key}, ${size} bytes: the bytes as they were at the call`);
      }
    }
    await b.close();
  });

  test('invalid keys reject InvalidArgument before the root is touched', async () => {
    const root = fresh();
    const b = new FileBlob(root, { sweepOnOpen: false });
    const bad = ['', 'a\u0000b', 'x'.repeat(1025), '\udc00x'];
    for (const key of bad) {
      for (const op of [() => b.get(key), () => b.set(key, text('x')), () => b.delete(key), () => b.restore(key)]) {
        await assert.rejects(op(), { name: 'Determinate', code: ErrorCode.InvalidArgument });
      }
    }
    await assert.rejects(b.set('../a', 'str' as unknown as Uint8Array), { code: ErrorCode.InvalidArgument });
    assert.deepEqual(walk(root), [], 'no directory entry was created');
    await b.close();
  });

  test('symbolic links planted inside the root are never followed out of it', async () => {
    const root = fresh();
    const outside = fresh();
    mkdirSync(root, { recursive: true });
    mkdirSync(outside, { recursive: true });
    writeFileSync(join(outside, 'vsecret'), 'secret');
    writeFileSync(join(outside, 'target'), 'untouched');
    symlinkSync(outside, join(root, 'dfoo'));
    symlinkSync(join(outside, 'target'), join(root, 'vlink'));
    const b = new FileBlob(root, { sweepOnOpen: false });
    const dataLoss = { name: 'Determinate', code: ErrorCode.DataLoss };
    await assert.rejects(b.get('foo/secret'), dataLoss);
    await assert.rejects(b.set('foo/new', text('x')), dataLoss);
    await assert.rejects(b.delete('foo/secret'), dataLoss);
    await assert.rejects(b.restore('foo/secret'), dataLoss);
    await assert.rejects(b.get('link'), dataLoss);
    assert.deepEqual(await keysOf(b), [], 'links are not listed');
    await assert.rejects(keysOf(b, 'foo/'), dataLoss);
    await b.set('link', text('replaced'));
    assert.equal(await str(b, 'link'), 'replaced', 'set replaces the link itself');
    assert.deepEqual(readdirSync(outside).sort(), ['target', 'vsecret']);
    assert.equal(readFileSync(join(outside, 'target'), 'utf8'), 'untouched');
    assert.equal(readFileSync(join(outside, 'vsecret'), 'utf8'), 'secret');
    await b.close();
  });

  test('a file where the layout expects a directory rejects Determinate DataLoss and stores nothing', async () => {
    const root = fresh();
    mkdirSync(root);
    writeFileSync(join(root, 'dfoo'), 'not a directory');
    const b = new FileBlob(root, { sweepOnOpen: false });
    await assert.rejects(b.set('foo/bar', text('x')), { name: 'Determinate', code: ErrorCode.DataLoss });
    await assert.rejects(b.get('foo/bar'), { name: 'Determinate', code: ErrorCode.DataLoss });
    assert.deepEqual(await keysOf(b), []);
    await b.close();
  });

  test('a path too long for the system rejects Determinate InvalidArgument (real ENAMETOOLONG)', async () => {
    let root = fresh();
    while (root.length < 3600) root = join(root, 'r'.repeat(200));
    const b = new FileBlob(root, { sweepOnOpen: false });
    const key = `${'€'.repeat(300)}/k`; // 2700 escaped characters: over PATH_MAX with this root
    const err = await b.set(key, text('x')).then(
      () => undefined,
      (e: unknown) => e,
    );
    assert.ok(err instanceof Determinate, String(err));
    assert.equal(err.code, ErrorCode.InvalidArgument);
    assert.match(err.message, /ENAMETOOLONG.*shorter path/);
    await b.set('short', text('fine'));
    assert.equal(await str(b, 'short'), 'fine');
    await b.close();
  });
});

describe('temporary files', () => {
  const hostTag = createHash('sha256').update(hostname()).digest('hex').slice(0, 8);

  test('a sweep removes stale temporary files and the directories that removing them emptied, nothing else', async () => {
    const root = fresh();
    const b = new FileBlob(root, { sweepOnOpen: false });
    await b.set('d/k', text('value'));
    const dead = spawnSync(process.execPath, ['-e', '0']).pid!;
    const deadTemp = join(root, 'dd', `.pl-tmp.${hostTag}.${dead}.abc1`);
    const liveTemp = join(root, `.pl-tmp.${hostTag}.${process.ppid}.abc2`);
    const oldTemp = join(root, 'dd', `.pl-tmp.${hostTag}.${process.ppid}.abc3`);
    const otherHost = join(root, `.pl-tmp.0badc0de.${dead}.abc4`);
    // What a writer killed in fresh directories leaves: its temporary file, alone, two levels down.
    mkdirSync(join(root, 'dgone', 'dsub'), { recursive: true });
    const orphan = join(root, 'dgone', 'dsub', `.pl-tmp.${hostTag}.${dead}.abc5`);
    for (const p of [deadTemp, liveTemp, oldTemp, otherHost, orphan]) writeFileSync(p, 'partial');
    writeFileSync(join(root, 'notes.txt'), 'foreign file');
    mkdirSync(join(root, 'dempty', 'dnested'), { recursive: true });
    assert.deepEqual(await keysOf(b), ['d/k'], 'temporary and foreign files are never listed');
    const report = await b.sweep();
    assert.deepEqual(report, { tempFiles: 2, directories: 2 }, "only the dead writer's files are stale yet; only dgone/dsub and dgone were emptied by the sweep");
    const temps = [`.pl-tmp.0badc0de.${dead}.abc4`, `.pl-tmp.${hostTag}.${process.ppid}.abc2`, `dd/.pl-tmp.${hostTag}.${process.ppid}.abc3`];
    const kept = ['dd/', 'dd/vk', 'dempty/', 'dempty/dnested/', 'notes.txt'];
    assert.deepEqual(walk(root).sort(), [...temps, ...kept].sort(), 'directories that were empty before the sweep stay');
    await b.close();
    // Past staleTempMs every temporary file is stale, whoever wrote it. (The file
    // times are coarse: wait until the clock has surely moved past them.)
    const changed = Math.max(...temps.map((t) => lstatSync(join(root, t)).ctimeMs));
    while (Date.now() <= changed + 20) await new Promise((r) => setTimeout(r, 10));
    const strict = new FileBlob(root, { sweepOnOpen: false, staleTempMs: 0 });
    assert.deepEqual(await strict.sweep(), { tempFiles: 3, directories: 0 });
    assert.deepEqual(walk(root).sort(), kept);
    assert.equal(await str(strict, 'd/k'), 'value');
    await strict.close();
  });

  test('opening, sweeping and listing never remove a directory they did not empty themselves (docs/, config/)', async () => {
    const root = fresh();
    const dirs = ['cache/', 'config/', 'data/', 'data/deep/', 'docs/', 'dx/', 'dx/dy/'];
    for (const d of dirs) mkdirSync(join(root, d), { recursive: true });
    const b = new FileBlob(root); // sweeps in the background
    assert.deepEqual(await b.sweep(), { tempFiles: 0, directories: 0 }, 'after the background sweep, another one');
    assert.deepEqual(await keysOf(b), []);
    await b.close();
    const viaUri = (await openBlob(`file://${root}`)) as FileBlob;
    assert.deepEqual(await keysOf(viaUri, 'ocs'), []);
    await viaUri.sweep();
    await viaUri.close();
    assert.deepEqual(walk(root), dirs, 'every directory is still there');
  });

  test('the sweep removes only files whose whole name is one that FileBlob generates', async () => {
    const root = fresh();
    mkdirSync(join(root, 'dd'), { recursive: true });
    const dead = spawnSync(process.execPath, ['-e', '0']).pid!;
    const foreign = ['.pl-tmp.notes', `.pl-tmp.${hostTag}.${dead}.abc.bak`, `.pl-tmp.${hostTag}.x.abc`, 'dd/.pl-tmp.', `dd/.pl-tmp.${hostTag}.${dead}.ABC`];
    for (const f of foreign) writeFileSync(join(root, f), 'not ours');
    const changed = Math.max(...foreign.map((f) => lstatSync(join(root, f)).ctimeMs));
    while (Date.now() <= changed + 20) await new Promise((r) => setTimeout(r, 10));
    const b = new FileBlob(root, { sweepOnOpen: false, staleTempMs: 0 });
    assert.deepEqual(await b.sweep(), { tempFiles: 0, directories: 0 });
    assert.deepEqual(walk(root).sort(), ['dd/', ...foreign].sort());
    await b.close();
  });

  test('a value being deleted (renamed to a temporary name, so with an old mtime) is not swept while its writer lives', async () => {
    const root = fresh();
    const b = new FileBlob(root, { sweepOnOpen: false });
    await b.set('k', text('value'));
    // What a delete in another live process leaves for a moment: the value renamed
    // to its temporary name. rename keeps the value's (old) mtime and bumps its ctime;
    // utimes stands in for the age of the value.
    const moving = join(root, `.pl-tmp.${hostTag}.${process.ppid}.del1`);
    writeFileSync(moving, 'an old value');
    const hourAgo = new Date(Date.now() - 3600_000);
    utimesSync(moving, hourAgo, hourAgo);
    assert.deepEqual(await b.sweep(), { tempFiles: 0, directories: 0 });
    assert.ok(existsSync(moving), 'the in-flight delete keeps its file');
    await b.close();
  });

  test('a new handle sweeps in the background when it opens', async () => {
    const root = fresh();
    mkdirSync(root);
    const dead = spawnSync(process.execPath, ['-e', '0']).pid!;
    writeFileSync(join(root, `.pl-tmp.${hostTag}.${dead}.z`), 'partial');
    const b = new FileBlob(root);
    for (let i = 0; i < 200 && walk(root).length > 0; i++) await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(walk(root), [], 'the background sweep removed the dead writer\'s temporary file');
    await b.close();
  });
});

describe('error mapping (fsError)', () => {
  const errno = (code: string): NodeJS.ErrnoException => Object.assign(new Error(`${code}: synthetic`), { code });
  const ctx = { description: 'FileBlob(/x)', action: 'set "k"' };

  test('before the commit point: known errno codes are Determinate, the rest Indeterminate', () => {
    const table: [string, boolean, ErrorCode][] = [
      ['EACCES', true, ErrorCode.PermissionDenied],
      ['EPERM', true, ErrorCode.PermissionDenied],
      ['EROFS', true, ErrorCode.PermissionDenied],
      ['ENOSPC', true, ErrorCode.ResourceExhausted],
      ['EDQUOT', true, ErrorCode.ResourceExhausted],
      ['EFBIG', true, ErrorCode.ResourceExhausted],
      ['ENAMETOOLONG', true, ErrorCode.InvalidArgument],
      ['EMFILE', true, ErrorCode.Unavailable],
      ['ENOENT', true, ErrorCode.NotFound],
      ['ELOOP', true, ErrorCode.DataLoss],
      ['ENOTDIR', true, ErrorCode.DataLoss],
      ['EIO', false, ErrorCode.Unknown],
      ['EBUSY', false, ErrorCode.Unknown],
      ['ETIMEDOUT', false, ErrorCode.Timeout],
      ['EWHATEVER', false, ErrorCode.Unknown],
    ];
    for (const [code, determinate, mapped] of table) {
      const cause = errno(code);
      const err = fsError(cause, { ...ctx, committed: false });
      assert.equal(err.determinate, determinate, code);
      assert.ok(err instanceof (determinate ? Determinate : Indeterminate), code);
      assert.equal(err.code, mapped, code);
      assert.equal(err.cause, cause, `${code} keeps its cause`);
      assert.match(err.message, new RegExp(`^FileBlob\\(/x\\): set "k" failed: ${code}`));
    }
    assert.equal(fsError(errno('ETIMEDOUT'), { ...ctx, committed: false }).isTimeout(), true);
  });

  test('after the commit point everything is Indeterminate; non-errno errors are Indeterminate Unknown', () => {
    for (const code of ['ENOSPC', 'EACCES', 'EIO', 'ENOENT']) {
      const err = fsError(errno(code), { ...ctx, committed: true });
      assert.ok(err instanceof Indeterminate, code);
      assert.match(err.message, /may have taken effect/);
    }
    const odd = fsError(new Error('odd'), { ...ctx, committed: false });
    assert.ok(odd instanceof Indeterminate);
    assert.equal(odd.code, ErrorCode.Unknown);
    const already = new Determinate(ErrorCode.DataLoss, 'x');
    assert.equal(fsError(already, { ...ctx, committed: true }), already, 'an ExternalError passes through');
  });
});

describe('concurrency', () => {
  test('concurrent sets and deletes in one process: every set lands whole, the last writer wins', async () => {
    const root = fresh();
    const a = new FileBlob(root, { sweepOnOpen: false });
    const b = new FileBlob(root, { sweepOnOpen: false });
    await Promise.all(Array.from({ length: 40 }, (_, i) => (i % 2 ? a : b).set(`dir/k${i % 8}`, makeValue(`dir/k${i % 8}`, BigInt(i), 1000 + i))));
    for (let k = 0; k < 8; k++) checkValue(`dir/k${k}`, (await a.get(`dir/k${k}`))!.toContiguous());
    const sizes = await Promise.all(Array.from({ length: 8 }, (_, k) => Promise.all([a.delete(`dir/k${k}`), b.delete(`dir/k${k}`)])));
    for (const pair of sizes) assert.equal(pair.filter((s) => s !== undefined).length, 1, 'exactly one of two racing deletes returns the size');
    assert.deepEqual(walk(root), []);
    await a.close();
    await b.close();
  });

  test('aborting a set mid-way: Determinate leaves the old value, success or Indeterminate leave one whole value', async () => {
    const root = fresh();
    const b = new FileBlob(root, { sweepOnOpen: false });
    await b.set('k', makeValue('k', 0n, 100));
    let determinate = 0;
    for (let i = 1; i <= 40; i++) {
      const before = checkValue('k', (await b.get('k'))!.toContiguous());
      const ctl = new AbortController();
      const ticks = i % 8;
      const abortSoon = (left: number): void => {
        if (left === 0) ctl.abort(new Error('stop'));
        else setImmediate(() => abortSoon(left - 1));
      };
      abortSoon(ticks);
      const outcome = await b.set('k', makeValue('k', BigInt(i), 5000), { signal: ctl.signal }).then(
        () => 'ok',
        (err: unknown) => {
          assert.ok(err instanceof ExternalError, String(err));
          return err.determinate ? 'determinate' : 'indeterminate';
        },
      );
      const now = checkValue('k', (await b.get('k'))!.toContiguous());
      if (outcome === 'ok') assert.equal(now, BigInt(i));
      if (outcome === 'determinate') {
        determinate++;
        assert.equal(now, before, 'a Determinate abort changed nothing');
      }
      if (outcome === 'indeterminate') assert.ok(now === before || now === BigInt(i));
    }
    assert.ok(determinate > 0, 'some aborts happened before the rename');
    assert.deepEqual(walk(root), ['vk'], 'aborted sets leave no temporary file behind');
    await b.close();
  });

  test('several processes setting, deleting and reading the same nested keys all succeed', async () => {
    const root = fresh();
    const children = Array.from({ length: 3 }, (_, i) => run(WRITER, [root, 'churn', String((i + 1) * 1_000_000), '400']));
    const results = await Promise.all(children);
    for (const r of results) assert.equal(r.code, 0, `a churn child failed: ${r.stderr}`);
    for (const r of results) assert.match(r.stdout, /done 400/);
    const b = new FileBlob(root, { sweepOnOpen: false });
    for (const key of churnKeys) {
      const got = await b.get(key);
      if (got !== undefined) checkValue(key, got.toContiguous());
    }
    for (const key of await keysOf(b)) assert.ok(churnKeys.includes(key), key);
    assert.ok(!walk(root).some((p) => p.includes('.pl-tmp.')), 'no temporary file is left behind');
    await b.close();
  });
});

describe('crash safety', () => {
  test('writers killed with SIGKILL at random moments never lose an acknowledged write nor leave a torn value', { timeout: 110_000 }, async (t) => {
    const root = fresh();
    type Op = { op: 's' | 'd'; seq: bigint };
    // Per key: the last acknowledged operation, and operations begun but never acknowledged after it.
    const acked = new Map<string, Op | undefined>(crashKeys.map((k) => [k, undefined]));
    const inFlight = new Map<string, Op[]>(crashKeys.map((k) => [k, []]));
    const started = Date.now();
    let kills = 0;
    let acks = 0;
    for (let round = 1; kills < 30 || (kills < 60 && Date.now() - started < 30_000); round++) {
      const child = spawn(process.execPath, [WRITER, root, 'crash', String(round * 1_000_000)], { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      let err = '';
      child.stderr.on('data', (d: Buffer) => (err += d.toString()));
      // 'close', not 'exit': only then has all of the child's output been read.
      const exited = new Promise<number | null>((r) => child.on('close', (code) => r(code)));
      await new Promise<void>((resolve, reject) => {
        child.stdout.on('data', (d: Buffer) => {
          out += d.toString();
          if (out.startsWith('ready\n')) resolve();
        });
        child.on('exit', () => reject(new Error(`writer exited before it was ready: ${err}`)));
      });
      await new Promise((r) => setTimeout(r, Math.random() * 150));
      child.kill('SIGKILL');
      await exited;
      kills++;
      assert.equal(err, '', 'the writer reported no error');
      for (const line of out.split('\n')) {
        const m = /^([AB]) ([sd]) (\d+) (\d+)$/.exec(line);
        if (m === null) continue;
        const key = crashKeys[Number(m[3])]!;
        const op: Op = { op: m[2] as 's' | 'd', seq: BigInt(m[4]!) };
        if (m[1] === 'B') inFlight.get(key)!.push(op);
        else {
          acks++;
          acked.set(key, op);
          inFlight.set(key, inFlight.get(key)!.filter((o) => o.seq > op.seq));
        }
      }
      // After every crash: each key holds its last acknowledged state or a later in-flight one, whole.
      const b = new FileBlob(root, { sweepOnOpen: false });
      for (const key of crashKeys) {
        const got = await b.get(key);
        const allowed = [acked.get(key), ...inFlight.get(key)!];
        if (got === undefined) {
          assert.ok(allowed.some((o) => o === undefined || o.op === 'd'), `${key} vanished: last acked ${acked.get(key)?.op}${acked.get(key)?.seq}`);
        } else {
          const seq = checkValue(key, got.toContiguous()); // throws on a torn value
          assert.ok(allowed.some((o) => o !== undefined && o.op === 's' && o.seq === seq), `${key} holds seq ${seq}, not an allowed one (acked ${acked.get(key)?.seq})`);
        }
      }
      const listed = await keysOf(b);
      for (const key of listed) assert.ok(crashKeys.includes(key), `unexpected key listed: ${key}`);
      await b.close();
    }
    t.diagnostic(`${kills} writers killed, ${acks} acknowledged operations checked`);
    assert.ok(kills >= 30, `${kills} kills`);
    assert.ok(acks > kills, `only ${acks} acknowledged writes`);
    // A later open sweeps the dead writers' temporary files.
    const b = new FileBlob(root, { sweepOnOpen: false });
    await b.sweep();
    assert.deepEqual(walk(root).filter((p) => p.includes('.pl-tmp.')), [], 'no temporary file is left after the sweep');
    await b.close();
  });
  test('processes overwriting and reading shared keys, some SIGKILLed mid-set, only ever read one whole written value', async (t) => {
    const root = fresh();
    // CLOCK_MONOTONIC, which every process of the machine reads alike (a per-process
    // timeOrigin is a wall-clock snapshot: processes started apart can disagree by more than the 1 ms slack).
    const now = (): number => Number(process.hrtime.bigint()) / 1e6;
    /** Per key and seq: when the set began and ended (for a set in flight at a kill: when its writer was seen dead). */
    type Write = { start: number; end: number; acked: boolean };
    const sets = raceKeys.map(() => new Map<bigint, Write>());
    const reads: { index: number; seq: bigint | undefined; start: number; end: number; child: number }[] = [];
    // Four slots, each running one child at a time until the deadline; most are
    // SIGKILLed at a random moment. Only output is gathered here: every check runs
    // after all children are gone, so a failing check leaves no child behind.
    const runs: { id: number; out: string; err: string; code: number | null; signal: NodeJS.Signals | null; dead: number }[] = [];
    let spawned = 0;
    const deadline = performance.now() + 12_000;
    const slot = async (): Promise<void> => {
      for (let i = 0; i < 3 || performance.now() < deadline; i++) {
        const id = ++spawned;
        // Three children in four are killed; they are given endless work, so none finishes first.
        const kill = id % 4 !== 0;
        const child = spawn(process.execPath, [WRITER, root, 'race', String(id * 1_000_000), kill ? '1000000000' : '300'], { stdio: ['ignore', 'pipe', 'pipe'] });
        let out = '';
        let err = '';
        child.stderr.on('data', (d: Buffer) => (err += d.toString()));
        const ready = new Promise<void>((resolve) => child.stdout.on('data', (d: Buffer) => ((out += d.toString()), resolve())));
        // 'close', not 'exit': only then has all of the child's output been read.
        const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => child.on('close', (code, signal) => r({ code, signal })));
        if (kill) {
          await Promise.race([ready, exited]);
          await Promise.race([exited, new Promise((r) => setTimeout(r, Math.random() * 500))]);
          child.kill('SIGKILL');
        }
        const { code, signal } = await exited;
        // Whatever a killed writer did, it did before it was seen dead.
        runs.push({ id, out, err, code, signal, dead: now() });
      }
    };
    await Promise.all([0, 1, 2, 3].map(slot));

    let killed = 0;
    let finished = 0;
    for (const { id, out, err, code, signal, dead } of runs) {
      if (signal === 'SIGKILL') killed++;
      else {
        assert.equal(code, 0, `race child ${id} failed (${signal ?? code}): ${err}`);
        assert.match(out, /done 300\n$/, `race child ${id} did not finish`);
        finished++;
      }
      // Only whole lines: the last one (after the last newline) may have been cut by the kill.
      for (const line of out.split('\n').slice(0, -1)) {
        // Times widened by a millisecond: each process reads the shared clock with sub-millisecond error.
        let m = /^([AB]) (\d+) (\d+) ([\d.]+)$/.exec(line);
        if (m !== null) {
          const byKey = sets[Number(m[2])]!;
          const seq = BigInt(m[3]!);
          if (m[1] === 'B') byKey.set(seq, { start: Number(m[4]) - 1, end: dead + 1, acked: false });
          else Object.assign(byKey.get(seq)!, { end: Number(m[4]) + 1, acked: true });
          continue;
        }
        m = /^G (\d+) (\d+|-) ([\d.]+) ([\d.]+)$/.exec(line);
        if (m !== null) reads.push({ index: Number(m[1]), seq: m[2] === '-' ? undefined : BigInt(m[2]!), start: Number(m[3]) - 1, end: Number(m[4]) + 1, child: id });
      }
    }

    // The value a read (or the final state) may hold: one whose set began before the
    // read ended and was not certainly overwritten before the read began, i.e. no
    // acknowledged set began after it ended and ended before the read began.
    const acked = (index: number): [bigint, Write][] => [...sets[index]!.entries()].filter(([, s]) => s.acked);
    const check = (index: number, seq: bigint | undefined, start: number, end: number, what: string): void => {
      const key = raceKeys[index]!;
      if (seq === undefined) {
        const before = acked(index).filter(([, s]) => s.end < start);
        assert.deepEqual(before.map(([q]) => q), [], `${what} of ${key} found nothing after a set was acknowledged`);
        return;
      }
      const set = sets[index]!.get(seq);
      assert.ok(set !== undefined, `${what} of ${key} returned seq ${seq}, which no writer set`);
      assert.ok(set.start < end, `${what} of ${key} returned seq ${seq} before its set began`);
      const newer = acked(index).filter(([q, s]) => q !== seq && s.start > set.end && s.end < start);
      assert.deepEqual(newer.map(([q]) => q), [], `${what} of ${key} returned seq ${seq}, already overwritten`);
    };
    for (const r of reads) check(r.index, r.seq, r.start, r.end, `a get by child ${r.child}`);

    // A new handle (before any sweep, so with the dead writers' temporary files still
    // there) sees one whole written value per key, and list shows only those keys.
    const b = new FileBlob(root, { sweepOnOpen: false });
    const start = now();
    const present: string[] = [];
    for (const [index, key] of raceKeys.entries()) {
      const got = await b.get(key);
      check(index, got === undefined ? undefined : checkValue(key, got.toContiguous()), start, now(), 'the final get');
      if (got !== undefined) present.push(key);
    }
    assert.deepEqual(await keysOf(b), present.sort());
    const stale = walk(root).filter((p) => p.includes('.pl-tmp.')).length;
    await b.sweep();
    assert.deepEqual(walk(root).filter((p) => p.includes('.pl-tmp.')), [], 'no temporary file is left after the sweep');
    await b.close();
    const setCount = sets.reduce((n, m) => n + m.size, 0);
    const unacked = sets.reduce((n, m) => n + [...m.values()].filter((s) => !s.acked).length, 0);
    t.diagnostic(`${spawned} children, ${killed} killed, ${finished} finished; ${setCount} sets (${unacked} in flight at a kill), ${reads.length} gets; ${stale} temporary files swept`);
    assert.ok(killed >= 8, `only ${killed} of ${spawned} children were killed`);
    assert.ok(reads.filter((r) => r.seq !== undefined).length > 100, 'too few gets found a value');
  });
});


/** Reads `stream` line by line: each call resolves with the next line, or rejects after 10 s naming what it waited for. */
function lineReader(stream: NodeJS.ReadableStream, stderr: () => string): (what: string) => Promise<string> {
  const lines: string[] = [];
  let buffered = '';
  let wake: (() => void) | undefined;
  stream.on('data', (d: Buffer) => {
    buffered += d.toString();
    const parts = buffered.split('\n');
    buffered = parts.pop()!;
    lines.push(...parts);
    wake?.();
  });
  return async (what) => {
    const deadline = Date.now() + 10_000;
    while (lines.length === 0) {
      if (Date.now() > deadline) throw new Error(`no line from the child within 10 s: waited for ${what}; its stderr: ${stderr()}`);
      await new Promise<void>((r) => {
        wake = r;
        setTimeout(r, 100);
      });
    }
    return lines.shift()!;
  };
}

function run(file: string, args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [file, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

describe('durability: what a power cut would keep', () => {
  // A power cut keeps a file's data once a flush of it returned (fdatasync, fsync, or
  // a write through an O_DSYNC descriptor), and a rename once an fsync of the
  // directory it landed in, started after the rename had finished, returned. The
  // fs calls are watched and every acknowledged set is checked against those rules.
  type Ident = string;
  const identOf = (st: { ino: bigint; birthtimeNs: bigint }): Ident => `${st.ino}:${st.birthtimeNs}`;
  const within = <T>(p: Promise<T>, ms: number, what: string): Promise<T> => {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`within ${ms} ms: ${what} did not happen`)), ms)));
    return Promise.race([p, late]).finally(() => clearTimeout(timer));
  };

  /** Watches the fs calls of everything in this process while `work` runs. */
  async function watched<T>(
    work: (w: {
      /** Resolves, once an fsync of the directory `dir` is called, with a function that lets it (and it alone) run. */
      holdNextDirSync(dir: string): Promise<() => void>;
      /** Resolves once a rename onto `target` has finished. */
      renamed(target: string): Promise<void>;
      /** Whether the set whose rename onto `target` was the last one is durable now; else why not. */
      durable(target: string): string | undefined;
    }) => Promise<T>,
  ): Promise<T> {
    let seq = 0;
    const handles = new WeakMap<object, { ident: Ident; dir: boolean; dsync: boolean }>();
    const flushedData = new Set<Ident>();
    const dirSyncs: { dir: Ident; start: number; end: number }[] = [];
    const renames = new Map<string, { dir: Ident; end: number; dataFlushed: boolean }>();
    const renameWaiters = new Map<string, () => void>();
    let hold: { dir: string; reached: (release: () => void) => void } | undefined;
    const probe = await fsPromises.open(tmp, 'r');
    const proto = Object.getPrototypeOf(probe) as Record<string, (...a: unknown[]) => Promise<unknown>>;
    await probe.close();
    const originals = { open: fsPromises.open, rename: fsPromises.rename, write: proto.write!, datasync: proto.datasync!, sync: proto.sync! };
    const paths = new WeakMap<object, string>();
    fsPromises.open = (async (path: string, flags?: number | string, mode?: number) => {
      const handle = await originals.open(path, flags, mode);
      const f = typeof flags === 'number' ? flags : 0;
      handles.set(handle, { ident: identOf(fs.fstatSync(handle.fd, { bigint: true })), dir: (f & fs.constants.O_DIRECTORY) !== 0, dsync: (f & fs.constants.O_DSYNC) !== 0 });
      paths.set(handle, path);
      return handle;
    }) as typeof fsPromises.open;
    fsPromises.rename = async (from, to) => {
      const file = identOf(lstatSync(from, { bigint: true }));
      const dataFlushed = flushedData.has(file);
      await originals.rename(from, to);
      renames.set(String(to), { dir: identOf(lstatSync(dirname(String(to)), { bigint: true })), end: ++seq, dataFlushed });
      renameWaiters.get(String(to))?.();
    };
    const flushing = (name: 'write' | 'datasync' | 'sync') =>
      async function (this: object, ...a: unknown[]): Promise<unknown> {
        const h = handles.get(this);
        if (name === 'sync' && h?.dir === true && hold !== undefined && paths.get(this) === hold.dir) {
          const { reached } = hold;
          hold = undefined;
          await new Promise<void>((release) => reached(release));
        }
        const start = ++seq;
        const out = await originals[name].apply(this, a);
        if (h === undefined) return out;
        if (h.dir && name === 'sync') dirSyncs.push({ dir: h.ident, start, end: ++seq });
        else if (!h.dir && (name !== 'write' || h.dsync)) flushedData.add(h.ident);
        return out;
      };
    proto.write = flushing('write');
    proto.datasync = flushing('datasync');
    proto.sync = flushing('sync');
    syncBuiltinESMExports();
    try {
      return await work({
        holdNextDirSync: (dir) => new Promise((reached) => (hold = { dir, reached })),
        renamed: (target) => new Promise((resolve) => renameWaiters.set(target, resolve)),
        durable(target) {
          const r = renames.get(target);
          if (r === undefined) return `no rename onto ${target} was seen`;
          if (!r.dataFlushed) return `${target}: renamed before its data was flushed`;
          const now = ++seq;
          if (!dirSyncs.some((s) => s.dir === r.dir && s.start > r.end && s.end < now)) return `${target}: no fsync of the directory it landed in started after the rename and finished before the acknowledgement`;
          return undefined;
        },
      });
    } finally {
      Object.assign(fsPromises, { open: originals.open, rename: originals.rename });
      Object.assign(proto, { write: originals.write, datasync: originals.datasync, sync: originals.sync });
      syncBuiltinESMExports();
    }
  }

  test('every acknowledged set is durable when acknowledged: 16 concurrent callers, and a directory removed and re-created while its fsync is held open', async () => {
    const root = fresh();
    const blob = new FileBlob(root, { sweepOnOpen: false });
    const other = new FileBlob(root, { sweepOnOpen: false });
    await blob.set('d/warm', text('w')); // the directories exist before watching starts
    await watched(async (w) => {
      const target = (key: string) => join(blob.root, 'dd', `v${key.slice(2)}`);
      const checkAcked = async (key: string, value: string) => {
        await blob.set(key, text(value));
        assert.equal(w.durable(target(key)), undefined);
      };
      for (let round = 0; round < 3; round++) {
        await Promise.all(Array.from({ length: 16 }, (_, i) => checkAcked(`d/k${i}`, `r${round}`)));
      }
      for (let i = 0; i < 16; i++) await blob.delete(`d/k${i}`);
      // Hold the directory's next fsync: the sets below queue behind it, and the
      // directory is replaced (emptied, pruned by another handle, made again) meanwhile.
      const held = w.holdNextDirSync(join(blob.root, 'dd'));
      const a = checkAcked('d/a', 'a');
      const release = await within(held, 10_000, 'the fsync of d/ after the set of d/a');
      const bRenamed = w.renamed(target('d/b'));
      const b = blob.set('d/b', text('b'));
      await within(bRenamed, 10_000, 'the rename of d/b');
      const before = identOf(lstatSync(join(blob.root, 'dd'), { bigint: true }));
      await other.delete('d/warm');
      await other.delete('d/a');
      await other.delete('d/b');
      assert.equal(existsSync(join(blob.root, 'dd')), false, 'the emptied directory d/ was pruned');
      const cRenamed = w.renamed(target('d/c'));
      const c = checkAcked('d/c', 'c');
      await within(cRenamed, 10_000, 'the rename of d/c');
      assert.notEqual(identOf(lstatSync(join(blob.root, 'dd'), { bigint: true })), before, 'd/ is a new directory');
      release();
      await within(Promise.all([a, b, c]), 10_000, 'the sets of d/a, d/b and d/c');
      assert.equal(await str(blob, 'd/c'), 'c');
    });
    await blob.close();
    await other.close();
  });
});
