// The persist-location CLI, run as a new user would: the real binary, spawned with
// a fresh temporary folder as its working directory (default embedded location).
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { deriveScratch, removeScratch } from '../src/cli/scratch.js';
import { openBlob, openConsensus, SeqNo, type Consensus } from 'persist-location';
import { startEtcd } from './servers/etcd.js';
import { startPostgres, type PostgresServer } from './servers/postgres.js';
import { S3RVER_CREDENTIALS, S3rverProcess } from './servers/s3rver.js';
import { startAzurite, type AzuriteServer } from './servers/azurite.js';
import { ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { BlobServiceClient } from '@azure/storage-blob';
import { Progress, envSecrets, secretsOf, showData, showKey } from '../src/cli/output.js';
import { FORMS, HOSTILE_PASSWORDS, assertNoPassword } from './fixtures/cli-passwords.js';
import { scrub } from '../src/uri.js';
import { Gate } from '../src/cli/gate.js';
import { freePort } from './servers/ports.js';
import { parseSeqNo } from '../src/cli/args.js';
import { bench, parseMix, parseSize } from '../src/cli/bench.js';
import { blobCommands } from '../src/cli/blob.js';
import { check, formatReport, stressProblem } from '../src/cli/check.js';
import { consensusCommands } from '../src/cli/consensus.js';

const BIN = fileURLToPath(new URL('../../bin/persist-location.js', import.meta.url));

interface Ran {
  status: number | null;
  stdout: Buffer;
  out: string;
  err: string;
}

function cli(cwd: string, args: string[], input?: Buffer | string, env: Record<string, string> = {}): Ran {
  const r = spawnSync(process.execPath, [BIN, ...args], { cwd, input: input ?? '', timeout: 90_000, env: { ...process.env, NO_COLOR: '1', ...env } });
  if (r.error) throw r.error;
  return { status: r.status, stdout: r.stdout, out: r.stdout.toString('utf8'), err: r.stderr.toString('utf8') };
}

function ok(r: Ran, what: string): Ran {
  assert.equal(r.status, 0, `${what} exited ${r.status}\nstdout: ${r.out}\nstderr: ${r.err}`);
  return r;
}

/** One clear line on stderr: `persist-location: ...`, no stack trace. */
function assertOneErrorLine(r: Ran): void {
  // Where a relative location resolved to (`consensus: sqlite:/abs/...`) is said after a successful open.
  const lines = r.err.split('\n').filter((l) => l !== '' && !/^(consensus|blob): [a-z]+:\//.test(l));
  assert.equal(lines.length, 1, `expected one stderr line, got:\n${r.err}`);
  assert.match(lines[0]!, /^persist-location: \S/);
  assert.doesNotMatch(r.err, /^\s+at /m);
}

const dirs: string[] = [];
function freshDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'persist-cli-'));
  dirs.push(dir);
  return dir;
}
after(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

describe('scratch locations', () => {
  const id = 'abc123';
  test('sqlite: a sibling file, children beside it, parameters kept', () => {
    const s = deriveScratch('sqlite:.persist/consensus.db', id, '/home/u/app');
    assert.equal(s.uri, 'sqlite:.persist/consensus.check-abc123.db');
    assert.equal(s.localPath, '/home/u/app/.persist/consensus.check-abc123.db');
    assert.equal(s.child('suite1'), 'sqlite:.persist/consensus.check-abc123-suite1.db');
    assert.deepEqual(s.children, ['sqlite:.persist/consensus.check-abc123-suite1.db']);
    assert.equal(deriveScratch('sqlite:///var/lib/x/state?synchronous=full', id).uri, 'sqlite:///var/lib/x/state.check-abc123?synchronous=full');
    assert.equal(deriveScratch('sqlite:db.sqlite3', id).uri, 'sqlite:db.check-abc123.sqlite3');
  });

  test('file: a sibling directory (not a sub-folder, which would be a key), children inside it', () => {
    const s = deriveScratch('file:.persist/blob', id, '/w');
    assert.equal(s.uri, 'file:.persist/blob.check-abc123');
    assert.equal(s.localPath, '/w/.persist/blob.check-abc123');
    assert.equal(s.child('path0'), 'file:.persist/blob.check-abc123/path0');
    assert.equal(deriveScratch('file:///srv/blobs/', id).uri, 'file:///srv/blobs.check-abc123');
    assert.equal(deriveScratch('file:///srv/blobs?keepDeleted=true', id).child('p'), 'file:///srv/blobs.check-abc123/p?keepDeleted=true');
  });

  test('postgres: a separate schema; credentials carried over but never in the display', () => {
    const s = deriveScratch('postgres://u:secretpw@db:5432/app?schema=Orders&sslmode=disable', id);
    assert.equal(s.uri, 'postgres://u:secretpw@db:5432/app?schema=orders_check_abc123&sslmode=disable');
    assert.equal(s.child('suite-1'), 'postgres://u:secretpw@db:5432/app?schema=orders_check_abc123_suite_1&sslmode=disable');
    assert.doesNotMatch(s.display, /secretpw/);
    assert.equal(deriveScratch('postgresql://h/app', id).uri, 'postgresql://h/app?schema=consensus_check_abc123');
  });

  test('a scratch location is printed without the password, whatever the password holds', () => {
    for (const password of HOSTILE_PASSWORDS) {
      for (const [form, typed] of Object.entries(FORMS)) {
        if (form === 'raw' && password.includes('#')) continue; // a fragment: refused before any derivation
        const what = `${form} ${JSON.stringify(password)}`;
        for (const uri of [`postgres://u:${typed(password)}@db:5432/app?sslmode=disable`, `mem://u:${typed(password)}@h/x`, `etcd://u:${typed(password)}@h:2379/app`]) {
          const s = deriveScratch(uri, id);
          const child = s.child('suite1');
          for (const shown of [s.display, s.show(s.uri), s.show(child)]) {
            assertNoPassword(shown, password, `${what} ${uri}`);
            assert.match(shown, /^[a-z]+:\/\/u:\*\*\*@/, `${what}: ${shown}`);
          }
        }
      }
    }
    // The parameters are edited as text: a raw '@' of the password stays one, so the
    // scratch URI is redacted (and its messages kept short of the password) like the user's.
    assert.equal(deriveScratch('postgres://u:p?w@db/app?sslmode=disable', id).uri, 'postgres://u:p?w@db/app?sslmode=disable&schema=consensus_check_abc123');
  });

  test('etcd, s3, azure: a different prefix beside the user one; mem: a different name', () => {
    assert.equal(deriveScratch('etcd://h1:2379,h2:2379/app', id).uri, 'etcd://h1:2379,h2:2379/app.check-abc123/');
    assert.equal(deriveScratch('etcd://h1:2379', id).uri, 'etcd://h1:2379/persist-location-check-abc123/');
    assert.equal(deriveScratch('etcd://h1:2379/app/', id).child('suite1'), 'etcd://h1:2379/app.check-abc123/suite1/');
    assert.equal(deriveScratch('s3://bucket/data?endpoint=http://x:1&region=r', id).uri, 's3://bucket/data.check-abc123?endpoint=http://x:1&region=r');
    assert.equal(deriveScratch('s3://bucket', id).child('path0'), 's3://bucket/persist-location-check-abc123/path0');
    assert.equal(deriveScratch('azure://c/p', id).uri, 'azure://c/p.check-abc123');
    assert.equal(deriveScratch('mem://x', id).uri, 'mem://x.check-abc123');
    assert.equal(deriveScratch('mem://x?keepDeleted=true', id).child('path1'), 'mem://x.check-abc123/path1?keepDeleted=true');
  });

  test('mem: destroying a scratch namespace lets go of what was written in it, and of nothing else', async () => {
    const scratch = deriveScratch('mem://destroyed', 'abc123');
    const child = scratch.child('consensus');
    const user = await openConsensus('mem://destroyed');
    await user.compareAndSet('k', undefined, { seqno: new SeqNo(0n), data: Uint8Array.of(1) });
    for (const uri of [scratch.uri, child]) {
      await (await openConsensus(uri)).compareAndSet('k', undefined, { seqno: new SeqNo(0n), data: Uint8Array.of(2) });
      await (await openBlob(uri)).set('k', Uint8Array.of(2));
    }
    assert.deepEqual(await removeScratch(scratch, 'consensus'), { removed: true });
    for (const uri of [scratch.uri, child]) {
      assert.equal(await (await openConsensus(uri)).head('k'), undefined, `${uri} is empty after destroy`);
      assert.equal(await (await openBlob(uri)).get('k'), undefined, `${uri} holds no blob after destroy`);
    }
    // The user's location beside it is untouched.
    assert.deepEqual((await (await openConsensus('mem://destroyed')).head('k'))?.data, Uint8Array.of(1));
  });

  test('unknown schemes and locations that name nothing are refused', () => {
    assert.throws(() => deriveScratch('ftp://x/y', id), /unknown scheme 'ftp:'/);
    assert.throws(() => deriveScratch('file:/', id), /names no file or directory/);
    assert.throws(() => deriveScratch('mem://x', 'Bad Id'), /scratch id/);
  });
});

describe('helpers', () => {
  test('seqnos are read as v5 or 5', () => {
    assert.equal(parseSeqNo('v5', 'SEQNO').value, 5n);
    assert.equal(parseSeqNo('18446744073709551615', 'SEQNO').value, (1n << 64n) - 1n);
    assert.throws(() => parseSeqNo('five', 'SEQNO'), /SEQNO must be a seqno/);
    assert.throws(() => parseSeqNo('v-1', 'SEQNO'), /invalid SeqNo/);
  });

  test('data shows as text when printable, else hex or base64 with a note', () => {
    assert.deepEqual(showData(Buffer.from('héllo\n')), { text: 'héllo\n', note: '' });
    assert.deepEqual(showData(Buffer.from([0, 255])), { text: '00ff', note: '(binary, shown as hex)' });
    assert.equal(showData(Buffer.alloc(100)).note, '(binary, shown as base64)');
    assert.equal(showData(Buffer.from('\x1b[2J')).note, '(binary, shown as hex)');
    assert.equal(showKey('a/b c'), 'a/b c');
    assert.equal(showKey('line\nbreak'), '"line\\nbreak"');
    assert.equal(showKey(' lead'), '" lead"');
  });

  test('secrets are found in URIs and scrubbed from text', () => {
    const secrets = secretsOf(['postgres://u:p%40ss@h/db', 's3://b?endpoint=x&secretKey=abcdef', undefined]);
    assert.ok(secrets.includes('p%40ss') && secrets.includes('p@ss') && secrets.includes('abcdef'));
    assert.equal(scrub('password p@ss and abcdef', secrets), 'password *** and ***');
    // A raw '/', '?' or '#' does not end the password; a driver may print it re-encoded.
    const hostile = secretsOf(['postgres://u:a/b?c#d e@h/db']);
    assert.equal(scrub('a/b?c#d e, a%2Fb%3Fc%23d%20e, a%2Fb%3Fc%23d+e, "a/b?c#d e"', hostile), '***, ***, ***, "***"');
  });

  test('secrets are found in the environment: secret-looking variables, connection strings, location URIs', () => {
    const secrets = envSecrets({
      AZURE_STORAGE_CONNECTION_STRING: 'DefaultEndpointsProtocol=http;AccountName=dev;AccountKey=Azure+Key/1==;BlobEndpoint=http://h:1/dev',
      AWS_SECRET_ACCESS_KEY: 'aws-secret-1',
      PGPASSWORD: 'pg-pass-1',
      PERSIST_CONSENSUS: 'postgres://u:env-pass-1@h/db',
      HOME: '/home/u',
    });
    for (const s of ['Azure+Key/1==', 'aws-secret-1', 'pg-pass-1', 'env-pass-1']) assert.ok(secrets.includes(s), s);
    assert.ok(!secrets.includes('/home/u'));
  });

  test('the check report shows failures with their details and counts', () => {
    const lines = formatReport({
      ok: false,
      durationMs: 1234,
      locations: { consensus: { location: 'sqlite:x.db', scratch: 'sqlite:x.check-1.db' } },
      checks: [
        { name: 'consensus conformance', target: 'consensus', status: 'pass', durationMs: 10, stats: { ops: 5, opsPerSec: 500, latencyMs: { p50: 1, p90: 2, p99: 3, max: 4 } } },
        {
          name: 'consensus linearizability',
          target: 'consensus',
          status: 'fail',
          durationMs: 20,
          error: 'the history is NOT linearizable: 1 violation(s)\nsecond line',
          stress: { ok: false, verdict: 'violation', violations: 1, undecidedKeys: [], committed: 3, mismatches: 1, failed: 0, unknown: 2, errors: [], unproven: [] },
        },
      ],
      cleanup: [{ target: 'consensus', scratch: 'sqlite:x.check-1.db', removed: false, note: 'left in place' }],
    });
    const text = lines.join('\n');
    assert.match(text, /PASS {2}consensus conformance +5 ops +10\.0 ms +500 ops\/s +p50 1\.00 ms +p99 3\.00 ms/);
    assert.match(text, /FAIL {2}consensus linearizability/);
    assert.match(text, /3 committed, 1 mismatched, 2 indeterminate, 0 failed; verdict: violation/);
    assert.match(text, /^ +second line$/m);
    assert.match(text, /warning: left in place/);
    assert.match(text, /1 of 2 checks did not pass/);
  });

  test('a terminal that reports 0 columns (a pty never sized) still gets the progress text', () => {
    const written: string[] = [];
    const stream = { isTTY: true, columns: 0, write: (s: string) => written.push(s) } as unknown as NodeJS.WriteStream;
    const progress = new Progress({ enabled: true, stream });
    progress.start('consensus conformance');
    assert.match(written.join(''), /consensus conformance \.\.\./);
  });

  test('a shut gate parks new calls and opens, waits for running calls, then closes the handles', async () => {
    let release!: () => void;
    let closed = 0;
    const inner = {
      head: () => new Promise((resolve) => (release = () => resolve(undefined))),
      close: async () => void closed++,
    } as unknown as Consensus;
    const gate = new Gate();
    const c = await gate.consensus(async () => inner);
    const running = c.head('k');
    let shut = false;
    const shutting = gate.shut().then(() => (shut = true));
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(shut, false, 'shut() waits for the running call');
    let late = false;
    void c.head('k').then(() => (late = true));
    void gate.consensus(async () => inner).then(() => (late = true));
    release();
    assert.equal(await running, undefined);
    await shutting;
    assert.equal(closed, 1);
    await new Promise((resolve) => setTimeout(resolve, 20));
    assert.equal(late, false, 'calls and opens after shut() never settle');
  });

  test('a linearizability run passes only when it is linearizable and most operations succeeded', () => {
    const base = { ok: true, ops: 100, errors: [], verdict: 'ok' as const, violations: [], undecidedKeys: [], unproven: [] as string[], committed: 20, failed: 0, unknown: 0 };
    assert.equal(stressProblem(base), undefined);
    assert.equal(stressProblem({ ...base, ops: 2, committed: 0 }), undefined, 'a tiny run may hold no CaS at all');
    assert.equal(stressProblem({ ...base, failed: 30, unknown: 20 }), undefined);
    // Against a server that refuses writes or stops answering: trivially linearizable, verifies nothing.
    assert.match(stressProblem({ ...base, committed: 0, failed: 60, unknown: 0 })!, /60 of 100 operations failed with a storage error \(60 determinate, 0 indeterminate; 0 committed\)/);
    assert.match(stressProblem({ ...base, ok: false, verdict: 'violation', violations: [{}] as never[] })!, /NOT linearizable/);
    assert.match(stressProblem({ ...base, ok: false, verdict: 'unknown', undecidedKeys: ['k'] })!, /could not be checked/);
    assert.match(stressProblem({ ...base, ok: false, unproven: ['the final head of k failed'] })!, /proved too little: the final head of k failed/);
  });

  test('bench mixes and sizes', () => {
    assert.deepEqual(parseMix('cas=50,head=40,scan=10', 'consensus'), { cas: 50, head: 40, scan: 10 });
    assert.throws(() => parseMix('get=1', 'consensus'), /unknown consensus operation 'get'/);
    assert.throws(() => parseMix('cas=0', 'consensus'), /weight above 0/);
    assert.equal(parseSize('4k', 'value-size', 1), 4096);
    assert.equal(parseSize('1MiB', 'value-size', 1), 1 << 20);
    assert.throws(() => parseSize('5000m', 'value-size', 1), /--value-size must be at most 1024m/);
  });
});

describe('persist-location (spawned)', () => {
  let cwd: string;
  before(() => {
    cwd = freshDir();
  });

  test('no command prints help; --help works for every command and subcommand', () => {
    const root = ok(cli(cwd, []), 'persist-location');
    assert.match(root.out, /^Usage: persist-location COMMAND/);
    assert.match(root.out, /Exit codes:/);
    assert.equal(ok(cli(cwd, ['--help']), '--help').out, root.out);
    for (const words of [['check'], ['consensus'], ['consensus', 'cas'], ['blob', 'put']]) {
      const r = ok(cli(cwd, [...words, '--help']), `${words.join(' ')} --help`);
      assert.match(r.out, new RegExp(`^Usage: persist-location ${words.join(' ')}`), words.join(' '));
    }
    assert.match(ok(cli(cwd, ['consensus', 'cas', 'k', '-h']), 'cas -h').out, /exits 2/);
    // Every command's text (the spawned runs above show it is what --help prints).
    for (const command of [check, bench, ...consensusCommands, ...blobCommands]) {
      assert.match(command.help, new RegExp(`^Usage: persist-location ${command.name}`), command.name);
      assert.match(command.help, /\nExamples:\n {2}persist-location /, command.name);
    }
  });

  test('unknown commands and options are one clear line and exit 64', () => {
    for (const args of [['frobnicate'], ['consensus', 'frob'], ['--bogus'], ['consensus', 'list', '--ops', '5'], ['consensus', 'head'], ['consensus', 'truncate', 'k', 'vx'], ['check', '--only', 'both'], ['check', '--ops', '5']]) {
      const r = cli(cwd, args);
      assert.equal(r.status, 64, `${args.join(' ')}: ${r.err}`);
      assertOneErrorLine(r);
    }
    assert.match(cli(cwd, ['frobnicate']).err, /unknown command 'frobnicate'/);
    assert.match(cli(cwd, ['--bogus']).err, /unknown option '--bogus'/);
    // parseArgs' own multi-line wording would otherwise show through.
    const dashed = cli(cwd, ['consensus', 'scan', 'k', '--limit', '-1']);
    assert.equal(dashed.status, 64);
    assertOneErrorLine(dashed);
    assert.match(dashed.err, /option '--limit' needs a value; for a value starting with '-', write --limit=VALUE \(see persist-location consensus scan --help\)$/m);
    const data = cli(cwd, ['consensus', 'cas', 'k', 'none', 'v1', '-x']);
    assert.equal(data.status, 64);
    assert.match(data.err, /unknown option '-x'; an argument starting with '-' goes after '--'/);
    // --json is refused where there is no JSON output, rather than ignored.
    for (const args of [['consensus', 'cas', 'k', 'none', 'v1', 'x', '--json'], ['blob', 'get', 'k', '--json'], ['blob', 'rm', 'k', '--json']]) {
      const r = cli(cwd, args);
      assert.equal(r.status, 64, args.join(' '));
      assert.match(r.err, /option --json does not apply/);
    }
    assert.equal(cli(cwd, ['bench', '--value-size', '5000m']).status, 64);
  });

  test('check passes on the default embedded location, leaves no scratch behind and the user keys untouched', () => {
    const dir = freshDir();
    ok(cli(dir, ['consensus', 'cas', 'mine', 'none', 'v1', 'my state']), 'cas');
    ok(cli(dir, ['blob', 'put', 'my/blob'], 'my bytes'), 'blob put');

    const human = ok(cli(dir, ['check', '--ops', '200', '--clients', '8']), 'check');
    assert.match(human.out, /PASS {2}consensus conformance/);
    assert.match(human.out, /PASS {2}consensus linearizability +\d+ ops/);
    assert.match(human.out, /PASS {2}blob conformance/);
    assert.match(human.out, /p50 [0-9.]+ m?s +p99 [0-9.]+ m?s/);
    assert.match(human.out, /All \d+ checks passed/);
    // Not a terminal: plain progress lines on stderr.
    assert.match(human.err, /consensus linearizability: 50% \(\d+\/\d+\)/);

    // In an empty folder, check leaves the user's location empty.
    const empty = freshDir();
    const json = ok(cli(empty, ['check', '--ops', '200', '--json', '--quiet']), 'check --json');
    assert.equal(json.err, '');
    const report = JSON.parse(json.out) as { ok: boolean; checks: { name: string; status: string; stats?: { ops: number; opsPerSec: number; latencyMs: { p50: number; p99: number } } }[]; cleanup: { removed: boolean }[] };
    assert.equal(report.ok, true);
    assert.deepEqual(
      report.checks.map((c) => [c.name, c.status]),
      [['consensus: open location', 'pass'], ['consensus conformance', 'pass'], ['consensus linearizability', 'pass'], ['blob: open location', 'pass'], ['blob conformance', 'pass']],
    );
    const lin = report.checks[2]!.stats!;
    assert.ok(lin.ops >= 200 && lin.opsPerSec > 0 && lin.latencyMs.p99 >= lin.latencyMs.p50);
    assert.ok(report.cleanup.every((c) => c.removed));

    // It worked only beside the user's location, which still does not exist (inspecting never creates it).
    for (const args of [['consensus', 'list', '--json'], ['blob', 'ls', '--json']]) assert.match(cli(empty, args).err, /does not exist.*\[Determinate NotFound\]/);

    assert.deepEqual(JSON.parse(ok(cli(dir, ['consensus', 'list', '--json']), 'list').out), ['mine']);
    assert.deepEqual(JSON.parse(ok(cli(dir, ['blob', 'ls', '--json']), 'ls').out), [{ key: 'my/blob', size: 8 }]);
    assert.equal(ok(cli(dir, ['consensus', 'head', 'mine', '--json']), 'head').out.includes('"data": "my state"'), true);
    for (const d of [dir, empty]) assert.deepEqual(readdirSync(join(d, '.persist')).filter((f) => f.includes('check')), []);
  });

  test('check --only consensus against a mem location, and a failing location exits 1 with a readable report', () => {
    const r = ok(cli(cwd, ['check', '--only', 'consensus', '--consensus', 'mem://x', '--ops', '100', '--json']), 'check mem');
    assert.deepEqual(Object.keys((JSON.parse(r.out) as { locations: object }).locations), ['consensus']);
    const bad = cli(cwd, ['check', '--only', 'blob', '--blob', 'file:/dev/null/blob', '--quiet']);
    assert.equal(bad.status, 1, bad.out + bad.err);
    assert.match(bad.out, /FAIL {2}blob: open location/);
    assert.match(bad.out, /SKIP {2}blob conformance/);
  });

  test('consensus cas / head / scan / truncate round trip; a stale cas exits 2', () => {
    const dir = freshDir();
    assert.equal(cli(dir, ['consensus', 'head', 'k']).status, 1, 'head of a location that does not exist yet');
    assert.match(ok(cli(dir, ['consensus', 'cas', 'k', 'none', 'v1', 'one']), 'cas 1').out, /Committed: k is now at v1/);
    assert.match(ok(cli(dir, ['consensus', 'head', 'other']), 'head').out, /other: no data/);
    assert.equal(ok(cli(dir, ['consensus', 'head', 'other', '--json']), 'head').out.trim(), 'null');
    ok(cli(dir, ['consensus', 'cas', 'k', 'v1', '2', 'two']), 'cas 2');
    ok(cli(dir, ['consensus', 'cas', 'k', '2', 'v5', '--data-file', '-'], Buffer.from([0, 1, 2, 255])), 'cas 5 from stdin');

    const stale = cli(dir, ['consensus', 'cas', 'k', 'v1', 'v9', 'late']);
    assert.equal(stale.status, 2, stale.out + stale.err);
    assert.match(stale.out, /ExpectationMismatch: k head is v5, expected v1; nothing was written/);
    assert.equal(cli(dir, ['consensus', 'cas', 'k', 'none', 'v9', 'late']).status, 2);
    const invalid = cli(dir, ['consensus', 'cas', 'k', 'v5', 'v5', 'same']);
    assert.equal(invalid.status, 1);
    assertOneErrorLine(invalid);
    assert.match(invalid.err, /strictly greater/);

    const head = ok(cli(dir, ['consensus', 'head', 'k']), 'head').out;
    assert.match(head, /seqno: +v5/);
    assert.match(head, /size: +4 B/);
    assert.match(head, /data: +000102ff +\(binary, shown as hex\)/);

    const scan = JSON.parse(ok(cli(dir, ['consensus', 'scan', 'k', '--json']), 'scan').out) as { seqno: string; encoding: string; data: string }[];
    assert.deepEqual(scan.map((v) => v.seqno), ['v1', 'v2', 'v5']);
    assert.deepEqual(scan[2], { seqno: 'v5', size: 4, encoding: 'base64', data: Buffer.from([0, 1, 2, 255]).toString('base64') });
    assert.deepEqual(
      (JSON.parse(ok(cli(dir, ['consensus', 'scan', 'k', '--from', 'v2', '--limit', '1', '--json']), 'scan').out) as { data: string }[]).map((v) => v.data),
      ['two'],
    );
    assert.match(ok(cli(dir, ['consensus', 'scan', 'k', '--from', '2']), 'scan').out, /^v2 +3 B +two\nv5 +4 B +000102ff/);

    assert.match(ok(cli(dir, ['consensus', 'truncate', 'k', 'v5']), 'truncate').out, /deleted 2 versions of k below v5/);
    assert.match(ok(cli(dir, ['consensus', 'truncate', 'k', '5']), 'truncate').out, /deleted 0 versions/);
    const past = cli(dir, ['consensus', 'truncate', 'k', 'v6']);
    assert.equal(past.status, 1);
    assertOneErrorLine(past);
    assert.deepEqual(JSON.parse(ok(cli(dir, ['consensus', 'list', '--json']), 'list').out), ['k']);
    assert.equal(ok(cli(dir, ['consensus', 'list']), 'list').out, 'k\n');
  });

  test('blob put / get are byte-exact through stdin and stdout; ls, rm, restore', () => {
    const dir = freshDir();
    const bytes = Buffer.concat([randomBytes(100_000), Buffer.from([0, 10, 13, 255])]);
    assert.match(ok(cli(dir, ['blob', 'put', 'bin/data'], bytes), 'put').out, /stored bin\/data \(97\.7 KiB\)/);
    assert.ok(ok(cli(dir, ['blob', 'get', 'bin/data']), 'get').stdout.equals(bytes));
    ok(cli(dir, ['blob', 'put', 'empty', '-'], Buffer.alloc(0)), 'put empty');
    assert.equal(ok(cli(dir, ['blob', 'get', 'empty']), 'get empty').stdout.length, 0);
    const file = join(dir, 'in.txt');
    writeFileSync(file, 'from a file');
    ok(cli(dir, ['blob', 'put', 'text', file]), 'put file');
    assert.equal(ok(cli(dir, ['blob', 'get', 'text']), 'get').out, 'from a file');

    assert.deepEqual(JSON.parse(ok(cli(dir, ['blob', 'ls', '--json']), 'ls').out), [
      { key: 'bin/data', size: bytes.length },
      { key: 'empty', size: 0 },
      { key: 'text', size: 11 },
    ]);
    assert.deepEqual(JSON.parse(ok(cli(dir, ['blob', 'ls', 'bin/', '--json']), 'ls').out), [{ key: 'bin/data', size: bytes.length }]);
    const listed = ok(cli(dir, ['blob', 'ls']), 'ls');
    assert.match(listed.out, /^97\.7 KiB +bin\/data\n +0 B +empty\n +11 B +text\n$/);
    // The resolved location, then the count.
    assert.match(listed.err, /^blob: file:\/.+\/\.persist\/blob\n3 keys, 97\.7 KiB in file:\.persist\/blob\n$/);

    assert.match(ok(cli(dir, ['blob', 'rm', 'text']), 'rm').out, /deleted text \(11 B\)/);
    assert.match(ok(cli(dir, ['blob', 'rm', 'text']), 'rm again').out, /text did not exist/);
    const missing = cli(dir, ['blob', 'get', 'text']);
    assert.equal(missing.status, 1);
    assert.equal(missing.stdout.length, 0);
    assertOneErrorLine(missing);
    assert.match(missing.err, /no such key: text/);
    assert.match(ok(cli(dir, ['blob', 'restore', 'empty']), 'restore existing').out, /empty exists/);
    // The default file: location keeps no deleted values unless asked; with keepDeleted it brings them back.
    const keep = ['--blob', 'file:.persist/kept?keepDeleted=true'];
    ok(cli(dir, ['blob', 'put', 'k', ...keep], 'again'), 'put kept');
    ok(cli(dir, ['blob', 'rm', 'k', ...keep]), 'rm kept');
    ok(cli(dir, ['blob', 'restore', 'k', ...keep]), 'restore kept');
    assert.equal(ok(cli(dir, ['blob', 'get', 'k', ...keep]), 'get restored').out, 'again');
    const gone = cli(dir, ['blob', 'restore', 'text']);
    assert.equal(gone.status, 1);
    assertOneErrorLine(gone);
    const noFile = cli(dir, ['blob', 'put', 'x', join(dir, 'nope')]);
    assert.equal(noFile.status, 1);
    assert.match(noFile.err, /cannot read .*nope: no such file/);
  });

  test('failures are one line without a stack; --verbose shows the stack and causes', () => {
    const r = cli(cwd, ['blob', 'ls', '--blob', 'file:/dev/null/x']);
    assert.equal(r.status, 1);
    assertOneErrorLine(r);
    const v = cli(cwd, ['blob', 'ls', '--blob', 'file:/dev/null/x', '--verbose']);
    assert.equal(v.status, 1);
    assert.match(v.err, /^persist-location: /);
    assert.match(v.err, /^\s+at /m);
    const unknownScheme = cli(cwd, ['consensus', 'list', '--consensus', 'ftp://x']);
    assert.equal(unknownScheme.status, 1);
    assertOneErrorLine(unknownScheme);
    assert.match(unknownScheme.err, /unknown Consensus URI scheme 'ftp:'.*accepted: /);
  });

  test('a password in a URI never appears in any output, even on failure and with --verbose', () => {
    const uri = 'postgres://u:secretpw@127.0.0.1:1/db?connectTimeoutMs=2000';
    for (const args of [
      ['consensus', 'list', '--consensus', uri],
      ['consensus', 'list', '--verbose', '--consensus', uri],
      ['consensus', 'head', 'k', `--consensus=${uri}`],
      ['check', '--only', 'consensus', '--consensus', uri],
      ['check', '--only', 'consensus', '--consensus', uri, '--json', '--verbose'],
      ['consensus', 'list', '--consensus', uri.replace('?', '?bogus=1&')],
      ['consensus', 'list', uri], // --consensus forgotten: echoed as an unexpected argument
    ]) {
      const r = cli(cwd, args);
      assert.notEqual(r.status, 0, args.join(' '));
      assert.doesNotMatch(r.out + r.err, /secretpw/, args.join(' '));
      assert.match(r.out + r.err, /u:\*\*\*@127\.0\.0\.1:1|ECONNREFUSED|bogus/, `${args.join(' ')}\n${r.out}${r.err}`);
    }
  });

  test('check against etcd works beside the user prefix and deletes its scratch keys', async () => {
    const etcd = await startEtcd(1);
    try {
      const uri = `etcd://${etcd.endpoints[0]}/app`;
      ok(cli(cwd, ['consensus', 'cas', 'mine', 'none', 'v1', 'x', '--consensus', uri]), 'cas');
      const r = ok(cli(cwd, ['check', '--only', 'consensus', '--consensus', uri, '--ops', '150', '--json', '--quiet']), 'check etcd');
      const report = JSON.parse(r.out) as { ok: boolean; cleanup: { removed: boolean; note?: string }[] };
      assert.equal(report.ok, true);
      assert.deepEqual(report.cleanup.map((c) => [c.removed, c.note]), [[true, undefined]]);
      assert.deepEqual(JSON.parse(ok(cli(cwd, ['consensus', 'list', '--json', '--consensus', uri]), 'list').out), ['mine']);
      // Every key left in etcd is the user's.
      const all = Buffer.from([0]).toString('base64');
      const res = await fetch(`http://${etcd.endpoints[0]}/v3/kv/range`, { method: 'POST', body: JSON.stringify({ key: all, range_end: all, keys_only: true }) });
      const keys = (((await res.json()) as { kvs?: { key: string }[] }).kvs ?? []).map((kv) => Buffer.from(kv.key, 'base64').toString('latin1'));
      assert.ok(keys.length > 0 && keys.every((k) => k.startsWith('/app/')), JSON.stringify(keys));
    } finally {
      await etcd.stop();
    }
  });

  test('an interrupted check removes its scratch location and exits by SIGINT', async () => {
    const dir = freshDir();
    const child = spawn(process.execPath, [BIN, 'check', '--ops', '1000000', '--only', 'consensus'], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    const exited = new Promise<[number | null, NodeJS.Signals | null]>((resolve) => child.on('exit', (code, signal) => resolve([code, signal])));
    await new Promise<void>((resolve, reject) => {
      child.stderr.on('data', (chunk: Buffer) => {
        err += chunk.toString();
        if (err.includes('consensus linearizability ...')) resolve();
      });
      child.on('exit', () => reject(new Error(`check ended before the linearizability run:\n${err}`)));
    });
    assert.ok(readdirSync(join(dir, '.persist')).some((f) => f.includes('.check-')), 'the scratch file exists while check runs');
    child.kill('SIGINT');
    const [code, signal] = await exited;
    assert.ok(signal === 'SIGINT' || code === 130, `exit ${code} ${signal}\n${err}`);
    assert.match(err, /interrupted; removing the scratch location/);
    assert.deepEqual(readdirSync(join(dir, '.persist')).filter((f) => f.includes('.check-')), []);
  });

  test('a closed stdout (| head -1) ends a command quietly with status 141, without a stack trace', async () => {
    const dir = freshDir();
    ok(cli(dir, ['blob', 'put', 'big'], randomBytes(4 << 20)), 'put');
    ok(cli(dir, ['consensus', 'cas', 'k', 'none', 'v1', 'x']), 'cas');
    for (const args of [['blob', 'get', 'big'], ['consensus', 'list']]) {
      const child = spawn(process.execPath, [BIN, ...args], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
      child.stdout.destroy(); // the reader goes away before the first byte
      let err = '';
      child.stderr.on('data', (chunk: Buffer) => (err += chunk.toString()));
      const code = await new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
      assert.equal(code, 141, `${args.join(' ')}: ${err}`);
      // Only where the relative default location resolved to.
      assert.equal(err.replace(/^(consensus|blob): [a-z]+:\/.*\n/, ''), '', args.join(' '));
    }
  });

  test('check goes on and cleans up when its stderr (the progress) is closed', async () => {
    const dir = freshDir();
    const child = spawn(process.execPath, [BIN, 'check', '--ops', '200'], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
    child.stderr.destroy(); // as in: persist-location check 2>&1 | head -1
    let out = '';
    child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
    const code = await new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
    assert.equal(code, 0, out);
    assert.match(out, /All 5 checks passed/);
    assert.deepEqual(readdirSync(join(dir, '.persist')).filter((f) => f.includes('.check-')), []);
  });

  test('a location whose server does not answer fails at "open location" at once; the runs are skipped', async () => {
    // Opening checks the cluster, so the runs are never started against a server that is not there.
    const uri = `etcd://127.0.0.1:${await freePort()}/app?timeoutMs=1000`;
    const r = cli(cwd, ['check', '--only', 'consensus', '--consensus', uri, '--ops', '200', '--json', '--quiet']);
    assert.equal(r.status, 1, r.err);
    const report = JSON.parse(r.out) as { checks: { name: string; status: string; error?: string }[]; cleanup: { removed: boolean; note?: string }[] };
    assert.deepEqual(
      report.checks.map((c) => [c.name, c.status]),
      [['consensus: open location', 'fail'], ['consensus conformance', 'skip'], ['consensus linearizability', 'skip']],
    );
    assert.match(report.checks[0]!.error!, /Unavailable|unreachable/);
    // Nothing was written, so there is nothing to remove (and no warning that it could not be).
    assert.deepEqual(report.cleanup.map((c) => c.removed), [true]);
  });

  test('an interrupt during the blob suite stops the suite before removing its scratch directory', async () => {
    const dir = freshDir();
    const child = spawn(process.execPath, [BIN, 'check', '--only', 'blob'], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    const exited = new Promise<[number | null, NodeJS.Signals | null]>((resolve) => child.on('exit', (code, signal) => resolve([code, signal])));
    await new Promise<void>((resolve, reject) => {
      child.stderr.on('data', (chunk: Buffer) => {
        err += chunk.toString();
        if (err.includes('blob conformance ...')) resolve();
      });
      child.on('exit', () => reject(new Error(`check ended before the blob suite:\n${err}`)));
    });
    await new Promise((resolve) => setTimeout(resolve, 20));
    child.kill('SIGINT');
    const [code, signal] = await exited;
    assert.ok(signal === 'SIGINT' || code === 130, `exit ${code} ${signal}\n${err}`);
    const after = err.slice(err.indexOf('interrupted; removing'));
    // Removing the directory under a suite still running made it fail (and print so),
    // and its next writes could re-create what was removed.
    assert.doesNotMatch(after, /FAIL|pass/, err);
    assert.deepEqual(readdirSync(join(dir, '.persist')).filter((f) => f.includes('.check-')), []);
  });

  test('an interrupted bench stops its clients, reports what ran, removes its scratch location and exits 130', async () => {
    const dir = freshDir();
    const child = spawn(process.execPath, [BIN, 'bench', '--duration', '2m', '--clients', '4'], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    await new Promise<void>((resolve, reject) => {
      child.stderr.on('data', (chunk: Buffer) => {
        err += chunk.toString();
        if (err.includes('bench consensus ...')) resolve();
      });
      child.on('exit', () => reject(new Error(`bench ended before its run:\n${err}`)));
    });
    child.kill('SIGINT');
    assert.equal(await exited, 130, err);
    assert.match(out, /\(interrupted\)/);
    assert.match(out, /^ +all +\d+/m);
    assert.deepEqual(readdirSync(join(dir, '.persist')).filter((f) => f.includes('.check-')), []);
  });

  test('bench runs for its duration and reports throughput and latency, in scratch keys', () => {
    const dir = freshDir();
    const r = ok(cli(dir, ['bench', '--duration', '1s', '--clients', '4', '--keys', '4']), 'bench');
    assert.match(r.out, /persist-location bench consensus/);
    assert.match(r.out, /^ +all +\d+ +[0-9.]+ ops\/s +[0-9.]+ m?s/m);
    assert.match(r.out, /^ +cas +\d+/m);
    assert.match(r.err, /bench consensus: (25|50|75)%/);
    const json = JSON.parse(ok(cli(dir, ['bench', '--target', 'blob', '--duration', '500ms', '--clients', '2', '--mix', 'get=50,set=40,list=5,delete=5', '--value-size', '1k', '--json', '--quiet']), 'bench blob').out) as {
      total: { ops: number; opsPerSec: number; latencyMs: { p50: number; p90: number; p99: number; max: number } };
      byOp: Record<string, unknown>;
      errors: number;
      cleanup: { removed: boolean };
    };
    assert.ok(json.total.ops > 0 && json.total.opsPerSec > 0);
    assert.ok(json.total.latencyMs.max >= json.total.latencyMs.p99);
    assert.equal(json.errors, 0);
    assert.ok(json.cleanup.removed);
    assert.ok('get' in json.byOp && 'set' in json.byOp);
    // It worked only beside the user's location, which still does not exist (inspecting never creates it).
    for (const args of [['consensus', 'list', '--json'], ['blob', 'ls', '--json']]) assert.match(cli(dir, args).err, /does not exist.*\[Determinate NotFound\]/);
    assert.deepEqual(readdirSync(join(dir, '.persist')).filter((f) => f.includes('check')), []);
    assert.equal(cli(dir, ['bench', '--mix', 'get=1']).status, 64);
  });
});

describe('a password is never printed, whatever it holds (spawned)', () => {
  let cwd: string;
  let port: number;
  before(async () => {
    cwd = freshDir();
    port = await freePort(); // nothing listens: every connection is refused at once
  });

  const CHILD_TIMEOUT_MS = 60_000;
  /** Runs the CLI without blocking, so that a few runs share the time (each bounded). */
  function cliAsync(args: string[], env: Record<string, string> = {}): Promise<Ran> {
    return new Promise((resolve, reject) => {
      const child = spawn(process.execPath, [BIN, ...args], { cwd, env: { ...process.env, NO_COLOR: '1', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
      const out: Buffer[] = [];
      const err: Buffer[] = [];
      child.stdout.on('data', (chunk: Buffer) => out.push(chunk));
      child.stderr.on('data', (chunk: Buffer) => err.push(chunk));
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        reject(new Error(`persist-location ${args.join(' ')} did not exit within ${CHILD_TIMEOUT_MS} ms`));
      }, CHILD_TIMEOUT_MS);
      child.on('error', (e) => {
        clearTimeout(timer);
        reject(e);
      });
      child.on('close', (status) => {
        clearTimeout(timer);
        const stdout = Buffer.concat(out);
        resolve({ status, stdout, out: stdout.toString('utf8'), err: Buffer.concat(err).toString('utf8') });
      });
    });
  }

  interface Run {
    name: string;
    args(typed: string): string[];
    /** What a run that got as far as it should shows, when the password was typed percent-encoded. */
    reached: RegExp;
    /** Whether it fails even with an encoded password (an unreachable server, a bad argument). */
    fails: boolean;
  }
  const mem = (typed: string, what: string) => `mem://u:${typed}@h/${what}`;
  const pg = (typed: string) => `postgres://u:${typed}@127.0.0.1:${port}/db?connectTimeoutMs=2000`;
  const small = ['--clients', '2', '--keys', '2'];
  const runs: Run[] = [
    { name: 'check report', args: (t) => ['check', '--ops', '100', ...small, '--consensus', mem(t, 'c'), '--blob', mem(t, 'b')], reached: /All 5 checks passed/, fails: false },
    { name: 'check --json -v', args: (t) => ['check', '--ops', '100', ...small, '--json', '-v', '--consensus', mem(t, 'c'), '--blob', mem(t, 'b')], reached: /"scratch": "mem:\/\/u:\*\*\*@h\/b\.check-/, fails: false },
    { name: 'bench report', args: (t) => ['bench', '--duration', '100ms', ...small, '--consensus', mem(t, 'c')], reached: /scratch +mem:\/\/u:\*\*\*@h\/c\.check-/, fails: false },
    { name: 'bench --json', args: (t) => ['bench', '--target', 'blob', '--duration', '100ms', ...small, '--json', '--blob', mem(t, 'b')], reached: /"location": "mem:\/\/u:\*\*\*@h\/b"/, fails: false },
    { name: 'a driver error with its causes (-v)', args: (t) => ['consensus', 'list', '-v', '--consensus', pg(t)], reached: /ECONNREFUSED/, fails: true },
    { name: 'check against an unreachable server (--json -v)', args: (t) => ['check', '--only', 'consensus', '--json', '-v', '--consensus', pg(t)], reached: /FAIL|"status": "fail"/, fails: true },
    { name: 'a URI typed without --consensus', args: (t) => ['consensus', 'list', pg(t)], reached: /unexpected argument 'postgres:\/\/u:\*\*\*@127/, fails: true },
    { name: 'an unknown parameter', args: (t) => ['consensus', 'head', 'k', '-v', `--consensus=${pg(t)}&bogus=1`], reached: /unknown parameter 'bogus'/, fails: true },
    { name: 'a password parameter', args: (t) => ['consensus', 'list', '-v', '--consensus', `postgres://u@127.0.0.1:${port}/db?connectTimeoutMs=2000&password=${t}`], reached: /ECONNREFUSED/, fails: true },
  ];
  for (const run of runs) {
    test(run.name, async () => {
      const jobs = HOSTILE_PASSWORDS.flatMap((password) => Object.entries(FORMS).map(([form, typed]) => ({ password, form, typed: typed(password) })));
      const failures: string[] = [];
      // Two at a time: the machine is shared, and each run takes well under a second.
      for (let i = 0; i < jobs.length; i += 2) {
        await Promise.all(
          jobs.slice(i, i + 2).map(async ({ password, form, typed }) => {
            const args = run.args(typed);
            const r = await cliAsync(args);
            const what = `${form} ${JSON.stringify(password)}: persist-location ${args.join(' ')} (exit ${r.status})`;
            try {
              assertNoPassword(r.out + r.err, password, what);
              if (form === 'encoded') {
                assert.equal(r.status === 0, !run.fails, `${what}\n${r.out}${r.err}`);
                assert.match(r.out + r.err, run.reached, `${what}\n${r.out}${r.err}`);
              }
            } catch (err) {
              failures.push((err as Error).message);
            }
          }),
        );
      }
      assert.deepEqual(failures, []);
    });
  }

  test('secrets of the environment are scrubbed from what is printed', async () => {
    const key = 'Zq+AccountKey/k9==';
    const env = { AZURE_STORAGE_CONNECTION_STRING: `DefaultEndpointsProtocol=http;AccountName=dev;AccountKey=${key};BlobEndpoint=http://127.0.0.1:${port}/dev`, PGPASSWORD: 'Zq-pg-k9' };
    // Typed by mistake as an argument, and echoed back as unexpected.
    const r = await cliAsync(['consensus', 'list', key, 'Zq-pg-k9'], env);
    assert.equal(r.status, 64, r.err);
    assert.match(r.err, /unexpected argument '\*\*\*'/);
    assert.doesNotMatch(r.out + r.err, /Zq/);
  });
});

/** What `check --json` says about the runs and the cleanup, for the tests below. */
interface CheckJson {
  ok: boolean;
  checks: { name: string; status: string }[];
  cleanup: { removed: boolean; note?: string }[];
}

function passedCheck(r: Ran, names: string[]): void {
  const report = JSON.parse(r.out) as CheckJson;
  assert.equal(report.ok, true, r.out);
  assert.deepEqual(report.checks.map((c) => [c.name, c.status]), names.map((n) => [n, 'pass']));
  assert.deepEqual(report.cleanup.map((c) => [c.removed, c.note]), [[true, undefined]]);
}

// check works in a scratch namespace of the same storage, so that afterwards
// `consensus list` / `blob ls` show only the user's keys and nothing else is left there.
describe('check beside the user location on a real server (spawned)', () => {
  let cwd: string;
  let pg: PostgresServer | undefined;
  let s3: S3rverProcess | undefined;
  let azure: AzuriteServer | undefined;
  before(async () => {
    cwd = freshDir();
    // All three at once; a server that does not come up fails the hook loudly (after stops the others).
    const [p, s, a] = await Promise.allSettled([startPostgres(), S3rverProcess.start(['cli']), startAzurite()]);
    pg = p.status === 'fulfilled' ? p.value : undefined;
    s3 = s.status === 'fulfilled' ? s.value : undefined;
    azure = a.status === 'fulfilled' ? a.value : undefined;
    for (const r of [p, s, a]) if (r.status === 'rejected') throw r.reason;
  });
  after(async () => {
    await Promise.allSettled([pg?.stop(), s3?.stop(), azure?.stop()]);
  });

  test('postgres: the user schema keeps only its key and no scratch schema remains', async () => {
    const schema = pg!.schema('app');
    const uri = `${pg!.baseUrl}?schema=${schema}&casBatchSize=8&application_name=cli-test`;
    ok(cli(cwd, ['consensus', 'cas', 'mine', 'none', 'v1', 'x', '--consensus', uri]), 'cas');
    const r = ok(cli(cwd, ['check', '--only', 'consensus', '--consensus', uri, '--ops', '500', '--json', '--quiet']), 'check postgres');
    passedCheck(r, ['consensus: open location', 'consensus conformance', 'consensus linearizability']);
    assert.deepEqual(JSON.parse(ok(cli(cwd, ['consensus', 'list', '--json', '--consensus', uri]), 'list').out), ['mine']);
    // Scratch schemas are named after the user's (`${schema}_check_ID...`).
    const left = await pg!.sql(`SELECT nspname FROM pg_namespace WHERE starts_with(nspname, $1) ORDER BY nspname`, [schema]);
    assert.deepEqual(left.rows.map((row: { nspname: string }) => row.nspname), [schema]);
  });

  test('s3: blob ls shows only the user key and the bucket holds no other object', async () => {
    const env = { AWS_ACCESS_KEY_ID: S3RVER_CREDENTIALS.accessKeyId, AWS_SECRET_ACCESS_KEY: S3RVER_CREDENTIALS.secretAccessKey };
    const uri = `s3://cli/app?endpoint=${encodeURIComponent(s3!.endpoint)}&forcePathStyle=true`;
    ok(cli(cwd, ['blob', 'put', 'my/blob', '--blob', uri], 'my bytes', env), 'put');
    const r = ok(cli(cwd, ['check', '--only', 'blob', '--blob', uri, '--json', '--quiet'], undefined, env), 'check s3');
    passedCheck(r, ['blob: open location', 'blob conformance']);
    assert.deepEqual(JSON.parse(ok(cli(cwd, ['blob', 'ls', '--json', '--blob', uri], undefined, env), 'ls').out), [{ key: 'my/blob', size: 8 }]);
    const raw = new S3Client({ endpoint: s3!.endpoint, forcePathStyle: true, region: 'us-east-1', credentials: S3RVER_CREDENTIALS });
    try {
      const listed = await raw.send(new ListObjectsV2Command({ Bucket: 'cli' }));
      assert.equal(listed.IsTruncated, false);
      assert.deepEqual((listed.Contents ?? []).map((o) => o.Key), ['app/my%2Fblob']);
    } finally {
      raw.destroy();
    }
  });

  test('azure: blob ls shows only the user key and the container holds no other blob', async () => {
    const env = { AZURE_STORAGE_CONNECTION_STRING: azure!.connectionString };
    const service = BlobServiceClient.fromConnectionString(azure!.connectionString);
    await service.getContainerClient('cli').create();
    const uri = `azure://cli/app?endpoint=${encodeURIComponent(azure!.endpoint)}`;
    ok(cli(cwd, ['blob', 'put', 'my/blob', '--blob', uri], 'my bytes', env), 'put');
    const r = ok(cli(cwd, ['check', '--only', 'blob', '--blob', uri, '--json', '--quiet'], undefined, env), 'check azure');
    passedCheck(r, ['blob: open location', 'blob conformance']);
    assert.deepEqual(JSON.parse(ok(cli(cwd, ['blob', 'ls', '--json', '--blob', uri], undefined, env), 'ls').out), [{ key: 'my/blob', size: 8 }]);
    const names: string[] = [];
    for await (const b of service.getContainerClient('cli').listBlobsFlat()) names.push(b.name);
    assert.deepEqual(names, ['app/my%2Fblob']);
    const containers: string[] = [];
    for await (const c of service.listContainers()) containers.push(c.name);
    assert.deepEqual(containers, ['cli']);
  });
});
