// Installing persist-location as a dependency, as the README says: the packed tarball
// in a scratch project, installed offline from the npm cache (the registry is never
// needed), then the README's first example run as a script and its quickstart
// command through the installed bin.
//
// Kept cheap: only the one dependency (better-sqlite3 and what it needs, no optional
// drivers), pinned by a lockfile made from this checkout's (so `npm ci --offline`
// finds every tarball in the cache), and its install script skipped: the native build
// of this checkout is reused instead of compiled again.
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const scratch = mkdtempSync(join(tmpdir(), 'persist-install-'));
after(() => rmSync(scratch, { recursive: true, force: true }));

interface LockEntry {
  version: string;
  resolved?: string;
  integrity?: string;
  dependencies?: Record<string, string>;
  [field: string]: unknown;
}

/** The checkout's lockfile entries of `name` and everything it depends on. */
function lockedTree(name: string): Record<string, LockEntry> {
  const lock = JSON.parse(readFileSync(join(ROOT, 'package-lock.json'), 'utf8')) as { packages: Record<string, LockEntry> };
  const out: Record<string, LockEntry> = {};
  const walk = (dep: string) => {
    const path = `node_modules/${dep}`;
    const entry = lock.packages[path];
    assert.ok(entry !== undefined, `${dep} is not in package-lock.json`);
    if (path in out) return;
    const { dev: _d, devOptional: _o, peer: _p, ...kept } = entry;
    out[path] = kept;
    for (const next of Object.keys(entry.dependencies ?? {})) walk(next);
  };
  walk(name);
  return out;
}

function run(what: string, cmd: string, args: string[], cwd: string): string {
  const r = spawnSync(cmd, args, { cwd, encoding: 'utf8', timeout: 120_000, env: { ...process.env, NO_COLOR: '1', npm_config_update_notifier: 'false' } });
  assert.equal(r.status, 0, `${what} exited ${r.status}${r.error ? ` (${r.error.message})` : ''}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  return r.stdout;
}

/** The README's first code example (`## Using it`), which is JavaScript as well as TypeScript. */
function readmeExample(): string {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const m = /## Using it\n+```ts\n([\s\S]*?)\n```/.exec(readme);
  assert.ok(m !== null, 'README has no example under "## Using it"');
  return m[1]!;
}

test('the packed tarball installs offline into a new project; the README example and quickstart run there', () => {
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { name: string; version: string; dependencies: Record<string, string>; bin: Record<string, string> };
  // dist/ is built already (the tests run from it): packing need not build again.
  run('npm pack', 'npm', ['pack', '--ignore-scripts', '--silent', '--pack-destination', scratch], ROOT);
  const tarball = `${pkg.name}-${pkg.version}.tgz`;
  assert.ok(readdirSync(scratch).includes(tarball), `npm pack made no ${tarball}`);

  const app = join(scratch, 'app');
  mkdirSync(app);
  const spec = `file:../${tarball}`;
  const integrity = `sha512-${createHash('sha512').update(readFileSync(join(scratch, tarball))).digest('base64')}`;
  writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'app', version: '1.0.0', private: true, type: 'module', dependencies: { [pkg.name]: spec } }, null, 2));
  const packages = {
    '': { name: 'app', version: '1.0.0', dependencies: { [pkg.name]: spec } },
    [`node_modules/${pkg.name}`]: { version: pkg.version, resolved: spec, integrity, dependencies: pkg.dependencies, bin: pkg.bin },
    ...lockedTree('better-sqlite3'),
  };
  writeFileSync(join(app, 'package-lock.json'), JSON.stringify({ name: 'app', version: '1.0.0', lockfileVersion: 3, requires: true, packages }, null, 2));
  run('npm ci --offline', 'npm', ['ci', '--offline', '--ignore-scripts', '--no-audit', '--no-fund'], app);
  // What better-sqlite3's install script would have built: this checkout's build, same Node.
  cpSync(join(ROOT, 'node_modules/better-sqlite3/build/Release/better_sqlite3.node'), join(app, 'node_modules/better-sqlite3/build/Release/better_sqlite3.node'));
  // An installed copy, not a link to the checkout, whose node_modules would hide missing drivers.
  assert.ok(!execFileSync('ls', ['-la', join(app, 'node_modules')], { encoding: 'utf8' }).includes(`${pkg.name} ->`));

  writeFileSync(join(app, 'example.mjs'), `${readmeExample()}\nconsole.log(JSON.stringify({ text, versions: versions.length }));\n`);
  assert.deepEqual(JSON.parse(run('the README example', process.execPath, ['example.mjs'], app)), { text: 'lots of bytes', versions: 1 });

  const report = run('npx persist-location check', 'npx', ['--offline', 'persist-location', 'check', '-q'], app);
  assert.match(report, /^All 5 checks passed/m);
});
