// A newcomer's first hour with the CLI (issue 15): the locations named once in the
// environment, listings and summaries that behave the same everywhere, bytes that
// are refused rather than rewritten. The real binary, spawned in temporary folders.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { openBlob, openConsensus } from 'persist-location';
import { startPostgres, type PostgresServer } from './servers/postgres.js';

const BIN = fileURLToPath(new URL('../../bin/persist-location.js', import.meta.url));

interface Ran {
  status: number | null;
  out: string;
  err: string;
}

/** Runs the CLI in `cwd` with the environment variables of this process minus the location ones, plus `env`. */
function cli(cwd: string, args: readonly string[], env: Record<string, string> = {}, input: string | Buffer = ''): Ran {
  const base: NodeJS.ProcessEnv = { ...process.env, NO_COLOR: '1' };
  delete base.PERSIST_CONSENSUS;
  delete base.PERSIST_BLOB;
  const r = spawnSync(process.execPath, [BIN, ...args], { cwd, input, timeout: 60_000, env: { ...base, ...env } });
  if (r.error) throw r.error;
  return { status: r.status, out: r.stdout.toString('utf8'), err: r.stderr.toString('utf8') };
}

/** Standard error without the line saying where a relative location resolved to (first-hour-open's). */
function countLine(err: string): string {
  return err.replace(/^(consensus|blob): (sqlite|file):\/.*\n/m, '');
}

function ok(r: Ran, what: string): Ran {
  assert.equal(r.status, 0, `${what} exited ${r.status}\nstdout: ${r.out}\nstderr: ${r.err}`);
  return r;
}

const dirs: string[] = [];
function freshDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'persist-first-hour-'));
  dirs.push(dir);
  return dir;
}
after(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

describe('locations from PERSIST_CONSENSUS and PERSIST_BLOB', () => {
  test('every command uses them when no option is given; an option wins; none falls back to ./.persist/', () => {
    const cwd = freshDir();
    const elsewhere = freshDir();
    const env = { PERSIST_CONSENSUS: `sqlite:${elsewhere}/c.db`, PERSIST_BLOB: `file:${elsewhere}/b` };

    ok(cli(cwd, ['consensus', 'cas', 'k', 'none', '1', 'one'], env), 'cas');
    assert.match(ok(cli(cwd, ['consensus', 'list'], env), 'list').out, /^k$/m);
    assert.match(ok(cli(cwd, ['consensus', 'head', 'k'], env), 'head').out, /one/);
    assert.match(ok(cli(cwd, ['watch', 'k', '--timeout', '300ms'], env), 'watch').out, /v1\s+one/);
    ok(cli(cwd, ['blob', 'put', 'x', '-'], env, 'hello'), 'put');
    assert.equal(ok(cli(cwd, ['blob', 'get', 'x'], env), 'get').out, 'hello');
    assert.ok(existsSync(join(elsewhere, 'c.db')) && existsSync(join(elsewhere, 'b')));
    assert.ok(!existsSync(join(cwd, '.persist')), 'nothing was written to the embedded default');

    const checked = JSON.parse(ok(cli(cwd, ['check', '--only', 'consensus', '--ops', '100', '--clients', '4', '--json', '-q'], env), 'check').out);
    assert.equal(checked.locations.consensus.location, env.PERSIST_CONSENSUS);
    const benched = JSON.parse(ok(cli(cwd, ['bench', '--target', 'blob', '--duration', '200ms', '--clients', '2', '--json', '-q'], env), 'bench').out);
    assert.equal(benched.location, env.PERSIST_BLOB);

    // An option beats the environment; an empty variable counts as unset.
    ok(cli(cwd, ['consensus', 'cas', 'k', 'none', '1', 'two', '--consensus', `sqlite:${cwd}/flag.db`], env), 'cas --consensus');
    assert.ok(existsSync(join(cwd, 'flag.db')));
    ok(cli(cwd, ['consensus', 'cas', 'k', 'none', '1', 'three'], { PERSIST_CONSENSUS: '' }), 'cas with an empty PERSIST_CONSENSUS');
    assert.ok(existsSync(join(cwd, '.persist', 'consensus.db')));
  });

  test('a password in them is never printed', () => {
    const password = 'envS3cretPw';
    const r = cli(freshDir(), ['consensus', 'list', '-v'], { PERSIST_CONSENSUS: `postgres://app:${password}@127.0.0.1:1/db` });
    assert.equal(r.status, 1, r.err);
    assert.match(r.err, /127\.0\.0\.1:1/);
    assert.ok(!(r.out + r.err).includes(password), r.err);
  });

  test('--help says where a location comes from', () => {
    for (const args of [['--help'], ['consensus', '--help'], ['blob', '--help'], ['check', '--help'], ['bench', '--help'], ['watch', '--help']]) {
      const help = ok(cli(freshDir(), args), args.join(' ')).out;
      assert.match(help, args[0] === 'blob' ? /\$PERSIST_BLOB/ : /\$PERSIST_CONSENSUS/, args.join(' '));
    }
  });
});

describe('one convention for every command', () => {
  test('listings: data on stdout, one count line on stderr, empty or not; -q drops it', async () => {
    const cwd = freshDir();
    // Listing never creates (create: false): make the empty locations first.
    await (await openConsensus(`sqlite:${join(cwd, '.persist/consensus.db')}`)).close();
    await (await openBlob(`file:${join(cwd, '.persist/blob')}`)).close();
    for (const args of [['consensus', 'list'], ['consensus', 'scan', 'k'], ['blob', 'ls']]) {
      const empty = ok(cli(cwd, args), args.join(' '));
      assert.equal(empty.out, '', `${args.join(' ')} on an empty location prints no data`);
      assert.match(countLine(empty.err), /^no (keys|versions) .+\n$/, args.join(' '));
    }
    ok(cli(cwd, ['consensus', 'cas', 'k', 'none', '1', 'one']), 'cas');
    ok(cli(cwd, ['blob', 'put', 'x', '-'], {}, 'hello'), 'put');
    const expected: [string[], RegExp, RegExp][] = [
      [['consensus', 'list'], /^k\n$/, /^1 key in sqlite:\.persist\/consensus\.db\n$/],
      [['consensus', 'scan', 'k'], /^v1 +3 B +one\n$/, /^1 version of k from v0\n$/],
      [['blob', 'ls'], /^5 B +x\n$/, /^1 key, 5 B in file:\.persist\/blob\n$/],
    ];
    for (const [args, out, err] of expected) {
      const r = ok(cli(cwd, args), args.join(' '));
      assert.match(r.out, out, args.join(' '));
      assert.match(countLine(r.err), err, args.join(' '));
      assert.equal(ok(cli(cwd, [...args, '-q']), `${args.join(' ')} -q`).err, '');
    }
    ok(cli(cwd, ['consensus', 'cas', 'k', 'v1', '2', 'two']), 'cas');
    assert.match(ok(cli(cwd, ['consensus', 'truncate', 'k', '2']), 'truncate').out, /^deleted 1 version of k below v2\n$/);
  });

  test('a check FAIL line names the kind and code of the error, as every other command does', () => {
    const r = cli(freshDir(), ['check', '--only', 'consensus', '--consensus', 'postgres://app:pw@127.0.0.1:1/db', '-q']);
    assert.equal(r.status, 1, r.out + r.err);
    assert.match(r.out, /FAIL +consensus: open location[^\n]*\n +[^\n]*ECONNREFUSED[^\n]*\[Determinate Unavailable\]\n/);
    assert.match(r.out, /^3 of 3 checks did not pass/m);
    const direct = cli(freshDir(), ['consensus', 'list', '--consensus', 'postgres://app:pw@127.0.0.1:1/db']);
    assert.match(direct.err, /\[Determinate Unavailable\]\n$/);
  });

  test('cas DATA that is not valid UTF-8 is refused with a pointer to --data-file, nothing written', () => {
    const cwd = freshDir();
    const invalid = Buffer.from([0x61, 0xff, 0x62]);
    const r = spawnSync(process.execPath, [BIN, 'consensus', 'cas', 'k', 'none', '1', invalid as unknown as string], { cwd, timeout: 60_000 });
    assert.equal(r.status, 64, r.stderr.toString());
    assert.match(r.stderr.toString(), /DATA is not valid UTF-8 text.*--data-file FILE/);
    // Nothing written: the location was not even created.
    assert.match(cli(cwd, ['consensus', 'list']).err, /does not exist.*\[Determinate NotFound\]/);
    // The same bytes through --data-file - are stored exactly.
    ok(cli(cwd, ['consensus', 'cas', 'k', 'none', '1', '--data-file', '-'], {}, invalid), 'cas --data-file -');
    const head = JSON.parse(ok(cli(cwd, ['consensus', 'head', 'k', '--json']), 'head').out) as { encoding: string; data: string };
    assert.deepEqual(Buffer.from(head.data, head.encoding as BufferEncoding), invalid);
  });
});

describe('check --processes', () => {
  test('the linearizability run is spread over child processes and checked as one history', () => {
    const r = ok(cli(freshDir(), ['check', '--only', 'consensus', '--processes', '3', '--clients', '6', '--ops', '300', '--keys', '4', '--json', '-q']), 'check --processes 3');
    const report = JSON.parse(r.out) as { ok: boolean; checks: { name: string; stats?: { ops: number }; stress?: { verdict: string; committed: number } }[] };
    assert.equal(report.ok, true);
    const run = report.checks.find((c) => c.name === 'consensus linearizability')!;
    assert.equal(run.stress?.verdict, 'ok');
    assert.ok(run.stress!.committed > 0);
    // 300 operations, then final reads (head and scan of 4 keys) by each of the 3 children and by the parent.
    assert.equal(run.stats?.ops, 300 + (3 + 1) * 4 * 2);
    const refused = cli(freshDir(), ['check', '--processes', '2', '--faults', '0.1']);
    assert.equal(refused.status, 64, refused.err);
    assert.match(refused.err, /--faults and --processes cannot be used together/);
    // Children would each get their own memory location, and the merged history would look broken.
    const alone = cli(freshDir(), ['check', '--only', 'consensus', '--consensus', 'mem://check', '--processes', '2']);
    assert.equal(alone.status, 64, alone.err);
    assert.match(alone.err, /--processes needs a location other processes see/);
  });
});

describe('bench --processes', () => {
  let pg: PostgresServer;
  before(async () => {
    pg = await startPostgres();
  });
  after(async () => {
    await pg?.stop();
  });

  test('the clients spread over 2 processes against a SQLite file, PostgreSQL and the PERSIST_BLOB default: one merged report, exit 0', () => {
    const cwd = freshDir();
    const runs: [string, string[], Record<string, string>][] = [
      ['sqlite', ['--consensus', `sqlite:${cwd}/c.db`], {}],
      ['postgres', ['--consensus', pg.url()], {}],
      ['PERSIST_BLOB', ['--target', 'blob'], { PERSIST_BLOB: `file:${cwd}/b` }],
    ];
    for (const [name, args, env] of runs) {
      const common = ['bench', ...args, '--processes', '2', '--clients', '4', '--keys', '4', '--duration', '300ms', '-q'];
      const text = ok(cli(cwd, common, env), `bench --processes 2 on ${name}`).out;
      assert.match(text, /^workload +4 clients over 2 processes, 4 keys, /m, name);
      assert.match(text, /^ {2}all +[1-9][0-9]* +[0-9.]+ ops\/s /m, name);
      const report = JSON.parse(ok(cli(cwd, [...common, '--json'], env), `bench --processes 2 --json on ${name}`).out) as {
        processes: number;
        errors: number;
        total: { ops: number; opsPerSec: number };
        byOp: Record<string, { ops: number }>;
        cleanup: { removed: boolean };
      };
      assert.equal(report.processes, 2, name);
      assert.equal(report.errors, 0, name);
      assert.ok(report.total.ops > 0 && report.total.opsPerSec > 0, name);
      // The total is every process's samples of every operation.
      assert.equal(Object.values(report.byOp).reduce((a, s) => a + s.ops, 0), report.total.ops, name);
      assert.equal(report.cleanup.removed, true, name);
    }
    // One process is the plain run.
    assert.match(ok(cli(cwd, ['bench', '--consensus', `sqlite:${cwd}/c.db`, '--processes', '1', '--clients', '2', '--duration', '200ms', '-q']), '--processes 1').out, /^workload +2 clients, /m);
  });

  test('a bad N is a usage error and mem: is refused, before any location is touched', () => {
    const cwd = freshDir();
    for (const n of ['0', 'two', '1.5']) {
      const r = cli(cwd, ['bench', '--consensus', `sqlite:${cwd}/never/c.db`, '--processes', n]);
      assert.equal(r.status, 64, r.err);
      assert.match(r.err, /--processes must be an integer >= 1/);
    }
    assert.ok(!existsSync(join(cwd, 'never')), 'a refused bench touched its location');
    for (const args of [['--consensus', 'mem:bench'], ['--target', 'blob', '--blob', 'mem:bench']]) {
      const r = cli(cwd, ['bench', ...args, '--processes', '2']);
      assert.equal(r.status, 64, r.err);
      assert.match(r.err, /--processes needs a location other processes see; mem locations \(mem:\) live inside one process/);
    }
  });
});
