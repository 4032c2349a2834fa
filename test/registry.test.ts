// The backend registry: the built-in descriptors, registerBackend and its checks, a
// third-party backend (test/fixtures/kv-backend.ts) opened by URI, run through the
// suites and through the CLI's check, and the README's location table against the
// descriptors.
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Determinate, ErrorCode, openBlob, openConsensus, registerBackend, type BackendDescriptor } from 'persist-location';
import { blobImplTest, consensusImplTest, stressConsensus } from 'persist-location/testing';
import { allBackends, findBackend } from '../src/backend.js';
import { deriveScratch, removeScratch } from '../src/cli/scratch.js';
import { destroyed, kvBackend } from './fixtures/kv-backend.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const BIN = join(ROOT, 'bin/persist-location.js');
const FIXTURE = join(ROOT, 'dist/test/fixtures/kv-backend.js');
const INDEX = join(ROOT, 'dist/src/index.js');

const dirs: string[] = [];
after(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

describe('built-in backends', () => {
  test('every built-in scheme is registered once, by the backend of its folder', () => {
    assert.deepEqual(
      allBackends().map((b) => [b.name, b.schemes]),
      [['mem', ['mem']], ['file', ['file']], ['sqlite', ['sqlite']], ['postgres', ['postgres', 'postgresql']], ['etcd', ['etcd']], ['s3', ['s3']], ['azure', ['azure']]],
    );
    for (const b of allBackends()) {
      assert.ok(b.forms.length > 0, `${b.name} lists its URI forms`);
      assert.ok(b.scratch !== undefined, `${b.name} says how to make a scratch location`);
      for (const scheme of b.schemes) assert.equal(findBackend(scheme), b);
    }
  });

  test('importing the library or the CLI loads no driver; opening mem:// needs none', () => {
    // A resolve hook that fails the import of any driver: the script then cannot pass.
    const drivers = ['pg', 'etcd3', 'better-sqlite3', '@aws-sdk/client-s3', '@azure/storage-blob'];
    const hook = `export async function resolve(specifier, context, next) {
      if (${JSON.stringify(drivers)}.includes(specifier)) throw new Error('driver loaded: ' + specifier);
      return next(specifier, context);
    }`;
    const script = `
      import { register } from 'node:module';
      register('data:text/javascript,' + encodeURIComponent(${JSON.stringify(hook)}));
      const lib = await import(${JSON.stringify(INDEX)});
      await import(${JSON.stringify(join(ROOT, 'dist/src/cli/main.js'))});
      const c = await lib.openConsensus('mem://driver-free');
      await c.close();
      try { await lib.openConsensus('etcd://127.0.0.1:1'); console.log('etcd opened'); } catch (e) { console.log('etcd: ' + e.message); }`;
    const out = execFileSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 30_000 });
    // The hook works: the one import that needs a driver trips it.
    assert.match(out, /^etcd: driver loaded: etcd3/m);
  });

  test('the capabilities of a location come from its descriptor, key cap by prefix', async () => {
    const { parseLocationUri } = await import('persist-location');
    const caps = (uri: string, kind: 'consensus' | 'blob') => findBackend(parseLocationUri(uri).scheme)![kind]!.capabilities(parseLocationUri(uri));
    assert.equal(caps('s3://b', 'blob').maxKeyBytes, 338);
    assert.ok(caps('s3://b/a-longer-prefix', 'blob').maxKeyBytes! < 338);
    assert.equal(caps('azure://c', 'blob').maxKeyBytes, 341);
    assert.equal(caps('file:x?keepDeleted=true', 'blob').keepsDeleted, true);
    assert.equal(caps('mem://x', 'blob').keepsDeleted, false);
    assert.equal(caps('sqlite:x.db', 'consensus').sharedAcrossProcesses, true);
    assert.equal(caps('mem://x', 'consensus').sharedAcrossProcesses, false);
  });
});

describe('registerBackend', () => {
  test('refuses a malformed descriptor or a scheme already taken, naming why', () => {
    const bad = (changes: Partial<Record<keyof BackendDescriptor, unknown>>) => ({ ...kvBackend, name: 'other', ...changes }) as BackendDescriptor;
    assert.throws(() => registerBackend(bad({ schemes: ['mem'] })), /scheme 'mem:' is taken by backend 'mem'/);
    assert.throws(() => registerBackend(bad({ schemes: ['Kv_Other'] })), (e: Error) => e instanceof TypeError && /"Kv_Other" is not a URI scheme/.test(e.message));
    assert.throws(() => registerBackend(bad({ schemes: ['kv-other:'] })), TypeError);
    assert.throws(() => registerBackend(bad({ schemes: [] })), /at least one URI scheme/);
    assert.throws(() => registerBackend(bad({ schemes: ['a', 'a'] })), /a scheme twice/);
    assert.throws(() => registerBackend(bad({ name: '' })), /name must be a non-empty string/);
    assert.throws(() => registerBackend(bad({ consensus: undefined, blob: undefined, schemes: ['kv-none'] })), /consensus, blob or both/);
    assert.throws(() => registerBackend(bad({ blob: { open: async () => undefined }, schemes: ['kv-half'] })), /blob part needs open\(loc\) and capabilities\(loc\)/);
    assert.throws(() => registerBackend(bad({ forms: [{ uri: 'x' }], schemes: ['kv-forms'] })), /forms must be a list/);
    assert.throws(() => registerBackend(bad({ scratch: { derive: () => ({}) }, schemes: ['kv-scratch'] })), /scratch part needs/);
    // Nothing of the refused descriptors was registered.
    for (const scheme of ['kv-other', 'kv-none', 'kv-half', 'kv-forms', 'kv-scratch', 'a']) assert.equal(findBackend(scheme), undefined);
  });

  test('a registered backend opens by URI; registering it again changes nothing', async () => {
    await assert.rejects(openConsensus('kv-test://before'), (e: Error) => e instanceof Determinate && /unknown Consensus URI scheme 'kv-test:'/.test(e.message));
    registerBackend(kvBackend);
    registerBackend(kvBackend);
    assert.equal(allBackends().filter((b) => b === kvBackend).length, 1);
    assert.throws(() => registerBackend({ ...kvBackend }), /scheme 'kv-test:' is taken by backend 'kv-test'/);

    const name = randomUUID();
    const blob = await openBlob(`kv-test://${name}?cap=300`);
    await blob.set('k', Buffer.from('v'));
    assert.equal(Buffer.from((await (await openBlob(`kv-test://${name}`)).get('k'))!.toContiguous()).toString(), 'v');
    await assert.rejects(blob.set('x'.repeat(301), Buffer.from('v')), (e: Error) => e instanceof Determinate && e.code === ErrorCode.InvalidArgument && /300/.test(e.message));
    await assert.rejects(openBlob('kv-test://x?bogus=1'), /unknown parameter 'bogus'/);
    await assert.rejects(openBlob('gs://bucket'), /accepted: mem:, file:, s3:, azure:, kv-test:/);
    await assert.rejects(openConsensus('redis://h'), /accepted: mem:, sqlite:, postgres:, postgresql:, etcd:, s3:, azure:, kv-test:/);
  });

  test('the registered backend passes the suites with the capabilities its descriptor states', async (t) => {
    registerBackend(kvBackend);
    const { parseLocationUri } = await import('persist-location');
    const run = randomUUID();
    let n = 0;
    await consensusImplTest(async () => openConsensus(`kv-test://${run}-c${++n}`), { test: (name, fn) => t.test(name, fn) });
    // A cap of 64 bytes is below the longest key the nesting case makes (202): the suite keeps to the cap.
    for (const uri of [`kv-test://${run}-b?cap=300&keepDeleted=true`, `kv-test://${run}-p?cap=300`, `kv-test://${run}-s?cap=64`]) {
      const capabilities = kvBackend.blob!.capabilities(parseLocationUri(uri));
      const [head, query] = uri.split('?');
      await blobImplTest(async (path) => openBlob(`${head}/${path}?${query}`), { capabilities, test: (name, fn) => t.test(name, fn) });
    }
    const report = await stressConsensus(() => openConsensus(`kv-test://${run}-stress`), { ops: 500, clients: 8 });
    assert.equal(report.ok, true, JSON.stringify(report.violations[0]));
  });

  test('its scratch locations are derived and destroyed by its descriptor', async () => {
    registerBackend(kvBackend);
    const scratch = deriveScratch('kv-test://app?cap=300', 'abc123');
    assert.equal(scratch.uri, 'kv-test://app.check-abc123?cap=300');
    const child = scratch.child('path0');
    assert.equal(child, 'kv-test://app.check-abc123/path0?cap=300');
    const blob = await openBlob(child);
    await blob.set('left', Buffer.from('x'));
    assert.deepEqual(await removeScratch(scratch, 'blob'), { removed: true });
    assert.equal(destroyed.at(-1), scratch);
    assert.equal(await blob.get('left'), undefined, 'destroy emptied the child location');
  });
});

describe('a third-party backend in the CLI', () => {
  const cli = (args: string[], env: Record<string, string> = {}) => {
    const cwd = mkdtempSync(join(tmpdir(), 'persist-registry-'));
    dirs.push(cwd);
    const r = spawnSync(process.execPath, [BIN, ...args], { cwd, encoding: 'utf8', timeout: 90_000, env: { ...process.env, NO_COLOR: '1', ...env } });
    if (r.error) throw r.error;
    return r;
  };
  const checkArgs = ['check', '--consensus', 'kv-test://c', '--blob', 'kv-test://b?cap=300&keepDeleted=true', '--ops', '200', '--json', '--quiet'];

  test('check passes on it when --backend imports it, taking its key cap and restore from the descriptor', () => {
    const r = cli(['--backend', FIXTURE, ...checkArgs]);
    assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
    const report = JSON.parse(r.stdout) as { ok: boolean; checks: { status: string }[]; cleanup: { removed: boolean }[]; locations: { blob: { scratch: string } } };
    assert.equal(report.ok, true);
    assert.equal(report.checks.length, 5);
    assert.ok(report.checks.every((c) => c.status === 'pass'));
    assert.ok(report.cleanup.every((c) => c.removed));
    assert.match(report.locations.blob.scratch, /^kv-test:\/\/b\.check-[0-9a-f]+\?cap=300&keepDeleted=true$/);
  });

  test('PERSIST_LOCATION_BACKENDS does the same; without either the scheme is unknown', () => {
    const viaEnv = cli(checkArgs, { PERSIST_LOCATION_BACKENDS: FIXTURE });
    assert.equal(viaEnv.status, 0, `${viaEnv.stdout}\n${viaEnv.stderr}`);
    const without = cli(checkArgs);
    assert.equal(without.status, 1);
    assert.match(without.stderr, /unknown scheme 'kv-test:'/);
  });

  test('its forms are in the help; a module that cannot be imported or registers nothing is a usage error', () => {
    const help = cli(['--backend', FIXTURE, '--help']);
    assert.equal(help.status, 0, help.stderr);
    assert.match(help.stdout, /kv-test:\/\/NAME\?cap=N&keepDeleted=true {2}\[Consensus, Blob\]\n {6}a test backend over the memory stores/);
    const checkHelp = cli(['--backend', FIXTURE, 'check', '--help']);
    assert.match(checkHelp.stdout, /kv-test:\/\/NAME +-> {2}kv-test:\/\/NAME\.check-ID/);
    const missing = cli(['--backend', './no-such-module.js', 'consensus', 'list']);
    assert.equal(missing.status, 64);
    assert.match(missing.stderr, /cannot import backend module '\.\/no-such-module\.js'/);
    const nothing = cli(['--backend', INDEX, 'consensus', 'list']);
    assert.equal(nothing.status, 64);
    assert.match(nothing.stderr, /registered no backend/);
  });
});

describe('README', () => {
  test('the location table is the one the built-in descriptors make', () => {
    const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
    const m = /<!-- locations: [^\n]*-->\n([\s\S]*?)<!-- \/locations -->/.exec(readme);
    const block = m?.[1];
    assert.ok(block !== undefined, 'README.md has a block between <!-- locations: ... --> and <!-- /locations -->');
    const rows = allBackends()
      .filter((b) => b !== kvBackend)
      .flatMap((b) => {
        const opens = [b.consensus && 'Consensus', b.blob && 'Blob'].filter(Boolean).join(', ');
        return b.forms.map((f) => `| \`${f.uri}\` | ${opens} | ${f.description} | \`${b.entryPoint}\` |`);
      });
    const expected = ['| URI | opens | what | entry point |', '|---|---|---|---|', ...rows].join('\n');
    assert.equal(block.trim(), expected, `the README's location table differs from the descriptors; it should read:\n${expected}`);
    for (const b of allBackends().filter((d) => d !== kvBackend)) {
      for (const scheme of b.schemes) assert.ok(block.includes(`${scheme}:`), `the table names ${scheme}:`);
    }
  });
});
