import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import Database from 'better-sqlite3';
import { Determinate, ErrorCode, ExternalError, Indeterminate, SCAN_ALL, SeqNo, openConsensus } from 'persist-location';
import { mapSqliteError, SqliteConsensus } from 'persist-location/sqlite';
import { checkLinearizable, consensusImplTest, stressConsensus, type HistoryOp } from 'persist-location/testing';
import { crashValue } from './fixtures/sqlite-crash-value.js';
import { finalReads, parseStressHistory } from './fixtures/stress-history.js';
import { splitNodeOptions, workerFlags, workerStartOptions } from '../src/sqlite/worker-options.js';

let dir: string;
let n = 0;
const fresh = (name = 'db') => join(dir, `${name}-${n++}.db`);
const bytes = (s: string) => Buffer.from(s, 'latin1');
const text = (b: Uint8Array | undefined) => (b === undefined ? undefined : Buffer.from(b).toString('latin1'));

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'persist-sqlite-'));
});
after(() => {
  rmSync(dir, { recursive: true, force: true });
});

/** Rows of the consensus table, read through a separate plain connection. */
function rows(path: string): { key: string; seqno: bigint; data: Buffer }[] {
  const db = new Database(path, { readonly: true });
  try {
    db.defaultSafeIntegers(true);
    return db.prepare('SELECT key, seqno, data FROM consensus ORDER BY key, seqno').all() as { key: string; seqno: bigint; data: Buffer }[];
  } finally {
    db.close();
  }
}

describe('conformance', () => {
  for (const worker of [false, true]) {
    test(`SqliteConsensus (worker: ${worker}) passes the conformance suite`, async () => {
      await consensusImplTest(() => SqliteConsensus.open(fresh(), { worker }));
    });
  }

  test('sqlite: URIs pass the conformance suite, with parameters', async () => {
    await consensusImplTest(() => openConsensus(`sqlite://${fresh()}?synchronous=normal&busyTimeoutMs=2000`));
    await consensusImplTest(() => openConsensus(`sqlite:${fresh()}?worker=false`));
  });
});

describe('URIs and opening', () => {
  test('sqlite:///abs, sqlite:/abs and sqlite:rel open the same file, creating it and its directories', async () => {
    const abs = join(dir, 'uri', 'nested', 'deeper', 'file.db');
    assert.equal(existsSync(join(dir, 'uri')), false);
    const a = await openConsensus(`sqlite://${abs}`);
    assert.ok(existsSync(abs), 'the file and its parent directories are created');
    assert.equal(await a.compareAndSet('k', undefined, { seqno: new SeqNo(1), data: bytes('one') }), 'Committed');
    const b = await openConsensus(`sqlite:${abs}`);
    assert.equal(text((await b.head('k'))?.data), 'one');
    const cwd = process.cwd();
    process.chdir(join(dir, 'uri'));
    let c;
    try {
      c = await openConsensus('sqlite:nested/deeper/file.db');
    } finally {
      process.chdir(cwd);
    }
    assert.equal(text((await c.head('k'))?.data), 'one', 'a relative path resolves against the working directory');
    assert.equal((c as SqliteConsensus).path, abs);
    // Percent-encoded characters in the path are decoded.
    const spaced = await openConsensus(`sqlite://${join(dir, 'with%20space.db')}`);
    assert.ok(existsSync(join(dir, 'with space.db')));
    await Promise.all([a.close(), b.close(), c.close(), spaced.close()]);
  });

  test('unknown or bad parameters, a host, or no path reject with Determinate InvalidArgument', async () => {
    const path = fresh();
    const cases: [string, RegExp][] = [
      [`sqlite://${path}?cache=shared`, /unknown parameter 'cache'.*accepts: synchronous, busyTimeoutMs, worker/],
      [`sqlite://${path}?synchronous=off`, /synchronous.*full, normal, extra/],
      [`sqlite://${path}?busyTimeoutMs=-1`, /busyTimeoutMs.*positive integer/],
      [`sqlite://${path}?worker=maybe`, /worker.*true or false/],
      [`sqlite://somehost${path}`, /not a host/],
      ['sqlite:', /database file path/],
      [`sqlite://${dir}/`, /database file path/],
    ];
    for (const [uri, message] of cases) {
      await assert.rejects(openConsensus(uri), (err: unknown) => {
        assert.ok(err instanceof Determinate, uri);
        assert.equal(err.code, ErrorCode.InvalidArgument);
        assert.match(err.message, message);
        return true;
      });
    }
    assert.equal(existsSync(path), false, 'a rejected URI creates no file');
  });

  test('synchronous is applied to the connection and can be read back', async () => {
    for (const level of ['normal', 'full', 'extra'] as const) {
      const c = (await openConsensus(`sqlite:${fresh()}?synchronous=${level}`)) as SqliteConsensus;
      assert.equal(c.synchronous, level);
      await c.close();
    }
    const d = await SqliteConsensus.open(fresh());
    assert.equal(d.synchronous, 'full', 'durable against power loss by default');
    await d.close();
  });

  test('opening a file that is not a database, or a directory, rejects Determinate', async () => {
    const garbage = fresh('garbage');
    writeFileSync(garbage, Buffer.alloc(8192, 0x5a));
    await assert.rejects(SqliteConsensus.open(garbage), (err: unknown) => {
      assert.ok(err instanceof Determinate);
      assert.equal(err.code, ErrorCode.DataLoss);
      assert.match(err.message, /SQLITE_NOTADB/);
      return true;
    });
    const directory = join(dir, 'a-directory.db');
    mkdirSync(directory);
    await assert.rejects(SqliteConsensus.open(directory), (err: unknown) => {
      assert.ok(err instanceof Determinate, String(err));
      assert.equal(err.code, ErrorCode.Unavailable);
      return true;
    });
  });
});

describe('the writer worker starts whatever Node options the program was run with', () => {
  const root = fileURLToPath(new URL('../../', import.meta.url));
  const loaderHook = fileURLToPath(new URL('../../test/fixtures/sqlite-loader-hook.mjs', import.meta.url));
  const requireHook = fileURLToPath(new URL('../../test/fixtures/sqlite-require-hook.cjs', import.meta.url));
  // Valid as an ES module and as CommonJS, so every -e form runs the same program.
  const script = `
    (async () => {
      const { openConsensus, SeqNo } = await import('persist-location');
      const c = await openConsensus(process.env.SQLITE_URI);
      const committed = await c.compareAndSet('k', undefined, { seqno: new SeqNo(1), data: Buffer.from('written') });
      const head = await c.head('k');
      await c.close();
      console.log(JSON.stringify({ committed, seqno: String(head.seqno), data: Buffer.from(head.data).toString() }));
    })().catch((e) => {
      console.log(JSON.stringify({ error: e.name + ' ' + e.code + ': ' + e.message }));
      process.exitCode = 1;
    });`;
  const CHILD_TIMEOUT_MS = 30_000;

  /** Runs `node ...args` in the project root (so it can import persist-location) and checks it wrote through the worker. */
  function runChild(args: string[], nodeOptions?: string): void {
    const path = fresh('flags');
    const env: NodeJS.ProcessEnv = { ...process.env, SQLITE_URI: `sqlite://${path}?worker=true` };
    delete env.NODE_OPTIONS;
    if (nodeOptions !== undefined) env.NODE_OPTIONS = nodeOptions;
    const shown = `${nodeOptions === undefined ? '' : `NODE_OPTIONS='${nodeOptions}' `}node ${args.map((a) => (a === script ? "'<script>'" : a)).join(' ')}`;
    const r = spawnSync(process.execPath, args, { cwd: root, env, encoding: 'utf8', timeout: CHILD_TIMEOUT_MS, killSignal: 'SIGKILL' });
    assert.equal(r.error, undefined, `${shown} did not exit within ${CHILD_TIMEOUT_MS} ms: opening sqlite: or its first write hung (${String(r.error)})`);
    assert.equal(r.status, 0, `${shown} exited ${r.status}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
    assert.deepEqual(JSON.parse(r.stdout), { committed: 'Committed', seqno: 'v1', data: 'written' }, shown);
    assert.deepEqual(rows(path).map((row) => [row.key, row.seqno, row.data.toString()]), [['k', 1n, 'written']], shown);
  }

  test('node --input-type=module -e, and commonjs -e', () => {
    runChild(['--input-type=module', '-e', script]);
    runChild(['--input-type=commonjs', '-e', script]);
    runChild(['-e', script]);
  });

  test('under --import and --require hooks, and with V8 options', () => {
    runChild(['--import', loaderHook, '-e', script]);
    runChild([`--import=${loaderHook}`, '--input-type=module', '-e', script]);
    runChild(['--require', requireHook, '--input-type=module', '-e', script]);
    runChild(['--max-old-space-size=256', '--stack-size=2000', '--input-type=module', '-e', script]);
  });

  test('with hooks and --input-type in NODE_OPTIONS, which a worker reads again', () => {
    runChild(['-e', script], `--require "${requireHook}"`);
    runChild(['-e', script], '--input-type=module --no-deprecation');
  });

  test('only the options that decide resolution and warnings are passed on', () => {
    assert.deepEqual(
      workerFlags(['--input-type=module', '-e', 'code', '--import', 'tsx', '--require=./a.cjs', '--loader', 'x', '--max-old-space-size=100', '--no-warnings', '--conditions', 'dev', '-C', 'x', '--disable-warning=ExperimentalWarning']),
      ['--no-warnings', '--conditions', 'dev', '-C', 'x', '--disable-warning=ExperimentalWarning'],
    );
    assert.deepEqual(workerFlags(['--preserve-symlinks']), ['--preserve-symlinks', '--preserve-symlinks-main']);
    assert.deepEqual(splitNodeOptions('--require "/a b/c\\"d.cjs"  --no-warnings'), ['--require', '/a b/c"d.cjs', '--no-warnings']);
    assert.deepEqual(workerStartOptions(['--import', 'tsx'], { PATH: '/bin' }), { execArgv: [], env: undefined });
    assert.deepEqual(workerStartOptions([], { PATH: '/bin', NODE_OPTIONS: '--no-warnings' }), { execArgv: [], env: undefined });
    assert.deepEqual(workerStartOptions([], { PATH: '/bin', NODE_OPTIONS: '--import tsx' }), { execArgv: [], env: { PATH: '/bin' } });
    assert.deepEqual(workerStartOptions([], { NODE_OPTIONS: '--require ./x.cjs --conditions "a b"' }), { execArgv: [], env: { NODE_OPTIONS: '--conditions "a b"' } });
  });
});

describe('behaviour', () => {
  test('seqnos above 2^53 are exact, up to 2^63-1', async () => {
    const c = await SqliteConsensus.open(fresh(), { worker: true });
    const big = (1n << 53n) + 1n;
    assert.equal(await c.compareAndSet('k', undefined, { seqno: new SeqNo(big), data: bytes('a') }), 'Committed');
    assert.equal(await c.compareAndSet('k', new SeqNo(big - 1n), { seqno: new SeqNo(big + 1n), data: bytes('b') }), 'ExpectationMismatch');
    const max = (1n << 63n) - 1n;
    assert.equal(await c.compareAndSet('k', new SeqNo(big), { seqno: new SeqNo(max), data: bytes('c') }), 'Committed');
    assert.equal((await c.head('k'))?.seqno.value, max);
    assert.deepEqual((await c.scan('k', new SeqNo(big), SCAN_ALL)).map((x) => x.seqno.value), [big, max]);
    assert.deepEqual(await c.scan('k', new SeqNo((1n << 64n) - 1n), 1), []);
    await assert.rejects(c.truncate('k', new SeqNo((1n << 64n) - 1n)), { code: ErrorCode.FailedPrecondition });
    assert.equal(await c.compareAndSet('k', new SeqNo((1n << 64n) - 2n), { seqno: new SeqNo((1n << 64n) - 1n), data: bytes('d') }).catch((e: Error) => e.name), 'Determinate');
    assert.equal(await c.truncate('k', new SeqNo(max)), 1);
    await c.close();
  });

  for (const worker of [false, true]) {
    test(`16 MiB values round-trip whole (worker: ${worker})`, async () => {
      const path = fresh();
      const c = await SqliteConsensus.open(path, { worker });
      const big = Buffer.alloc(16 * 1024 * 1024 + 7);
      for (let i = 0; i < big.length; i += 4093) big[i] = i % 251;
      assert.equal(await c.compareAndSet('big', undefined, { seqno: new SeqNo(1), data: big }), 'Committed');
      big.fill(1); // the stored value was copied, the caller may reuse its buffer
      const head = await c.head('big');
      assert.equal(head?.data.byteLength, 16 * 1024 * 1024 + 7);
      assert.equal(head?.data[4093], 4093 % 251);
      assert.equal(head?.data[4094], 0);
      await c.close();
      const d = await SqliteConsensus.open(path);
      const [again] = await d.scan('big', new SeqNo(0), 1);
      assert.equal(again?.data.byteLength, 16 * 1024 * 1024 + 7);
      assert.equal(again?.data[4093 * 100], (4093 * 100) % 251);
      await d.close();
    });
  }

  for (const worker of [false, true]) {
    test(`writes of one tick form one batch, each checked against the heads left by earlier members (worker: ${worker})`, async () => {
      const c = await SqliteConsensus.open(fresh(), { worker });
      const v = (s: number, d: string) => ({ seqno: new SeqNo(s), data: bytes(d) });
      const results = await Promise.all([
        c.compareAndSet('k', undefined, v(1, 'first')),
        c.compareAndSet('k', undefined, v(2, 'second')), // same expectation: mismatches
        c.compareAndSet('k', new SeqNo(1), v(3, 'third')), // sees the first member's head
        c.truncate('k', new SeqNo(3)),
        c.truncate('k', new SeqNo(4)).catch((e: ExternalError) => e.code),
        c.truncate('other', new SeqNo(0)).catch((e: ExternalError) => e.code),
        c.compareAndSet('other', undefined, v(7, 'x')),
      ]);
      assert.deepEqual(results, ['Committed', 'ExpectationMismatch', 'Committed', 1, 'FailedPrecondition', 'FailedPrecondition', 'Committed']);
      assert.deepEqual((await c.scan('k', new SeqNo(0), SCAN_ALL)).map((x) => [x.seqno.value, text(x.data)]), [[3n, 'third']]);
      await c.close();
    });
  }

  test('listKeys honours an abort mid-listing, and a listing that outlives close() says the handle is closed', async () => {
    const c = await SqliteConsensus.open(fresh());
    await Promise.all(Array.from({ length: 600 }, (_, i) => c.compareAndSet(`k${i}`, undefined, { seqno: new SeqNo(1), data: bytes('') })));
    const ac = new AbortController();
    let seen = 0;
    await assert.rejects(
      (async () => {
        for await (const _ of c.listKeys({ signal: ac.signal })) if (++seen === 10) ac.abort();
      })(),
      (err: unknown) => err instanceof Determinate && err.code === ErrorCode.Cancelled,
    );
    assert.equal(seen, 10, 'no key is yielded after the abort');
    seen = 0;
    await assert.rejects(
      (async () => {
        for await (const _ of c.listKeys()) if (++seen === 10) await c.close();
      })(),
      (err: unknown) => !(err instanceof ExternalError) && /is closed/.test(String(err)),
    );
  });

  test('an abort before the batch runs is Determinate and writes nothing; close waits for pending writes', async () => {
    const path = fresh();
    const c = await SqliteConsensus.open(path);
    const ac = new AbortController();
    const pending = c.compareAndSet('k', undefined, { seqno: new SeqNo(1), data: bytes('no') }, { signal: ac.signal });
    ac.abort();
    await assert.rejects(pending, (err: unknown) => err instanceof Determinate && err.code === ErrorCode.Cancelled);
    const last = c.compareAndSet('k', undefined, { seqno: new SeqNo(2), data: bytes('yes') });
    await c.close();
    await c.close();
    assert.equal(await last, 'Committed');
    assert.deepEqual(rows(path).map((r) => [r.key, r.seqno, text(r.data)]), [['k', 2n, 'yes']]);
    await assert.rejects(c.head('k'), /closed/);
  });

  test('a write blocked by another connection\'s lock retries, then fails Determinate Aborted; an abort while it waits is Indeterminate', async () => {
    const path = fresh();
    const impatient = await SqliteConsensus.open(path, { busyTimeoutMs: 300, worker: false });
    const patient = await SqliteConsensus.open(path, { busyTimeoutMs: 20_000, worker: true });
    const blocker = new Database(path);
    blocker.exec('BEGIN IMMEDIATE');
    try {
      // Readers are not blocked by a writer in WAL mode.
      assert.equal(await impatient.head('k'), undefined);
      await assert.rejects(impatient.compareAndSet('k', undefined, { seqno: new SeqNo(1), data: bytes('a') }), (err: unknown) => {
        assert.ok(err instanceof Determinate, String(err));
        assert.equal(err.code, ErrorCode.Aborted);
        assert.match(err.message, /SQLITE_BUSY/);
        return true;
      });
      const ac = new AbortController();
      const waiting = patient.compareAndSet('k', undefined, { seqno: new SeqNo(2), data: bytes('b') }, { signal: ac.signal });
      setTimeout(() => ac.abort(), 50);
      await assert.rejects(waiting, (err: unknown) => err instanceof Indeterminate && err.code === ErrorCode.Cancelled);
      // Why Indeterminate: the aborted write was already in a batch, which commits
      // once the lock is released; the next write, queued behind it, sees it.
      const later = patient.compareAndSet('k', new SeqNo(2), { seqno: new SeqNo(3), data: bytes('c') });
      setTimeout(() => blocker.exec('COMMIT'), 100);
      assert.equal(await later, 'Committed');
    } finally {
      if (blocker.inTransaction) blocker.exec('ROLLBACK');
      blocker.close();
    }
    assert.deepEqual((await impatient.scan('k', new SeqNo(0), SCAN_ALL)).map((x) => text(x.data)), ['b', 'c']);
    await Promise.all([impatient.close(), patient.close()]);
  });
});

describe('batch failures', () => {
  for (const worker of [false, true]) {
    test(`a batch that fails before COMMIT applies none of its members, and each is Determinate (worker: ${worker})`, async () => {
      const path = fresh();
      const c = await SqliteConsensus.open(path, { worker });
      // A real SQLite error in the middle of a batch: a trigger refusing one key.
      const raw = new Database(path);
      raw.exec("CREATE TRIGGER poison BEFORE INSERT ON consensus WHEN NEW.key = 'poison' BEGIN SELECT RAISE(ABORT, 'poisoned'); END");
      raw.close();
      const v = { seqno: new SeqNo(1), data: bytes('x') };
      const results = await Promise.allSettled([c.compareAndSet('innocent', undefined, v), c.compareAndSet('poison', undefined, v)]);
      for (const r of results) {
        assert.equal(r.status, 'rejected');
        assert.ok(r.reason instanceof Determinate, String(r.reason));
        assert.match(String(r.reason.message), /before COMMIT.*SQLITE_CONSTRAINT.*poisoned/);
      }
      assert.deepEqual(rows(path), []);
      // The next batch without the poisoned key commits.
      assert.equal(await c.compareAndSet('innocent', undefined, v), 'Committed');
      await c.close();
    });
  }

  test('a real writer worker that exits with a batch in flight: that batch is Indeterminate, later writes Determinate', async () => {
    const { WorkerWriter } = await import('../src/sqlite/writer.js');
    const { GroupCommit } = await import('../src/sqlite/group-commit.js');
    const path = fresh();
    await (await SqliteConsensus.open(path, { worker: false })).close(); // the schema
    const writer = await WorkerWriter.start(path, { synchronous: 'full' }, 60_000);
    const gc = new GroupCommit((members) => writer.run(members), 'test');
    const op = { type: 'cas' as const, key: 'k', expected: undefined, seqno: 1n, data: bytes('x') };
    // Hold the write lock so that the batch waits inside the worker...
    const blocker = new Database(path);
    blocker.exec('BEGIN IMMEDIATE');
    try {
      const inFlight = gc.submit(op, undefined);
      // ...until the batch has been posted (one tick to flush, one to post),
      await new Promise((r) => setImmediate(r));
      await new Promise((r) => setImmediate(r));
      // then make the worker exit under it (close() without draining first).
      await writer.close();
      await assert.rejects(inFlight, (err: unknown) => err instanceof Indeterminate && /may have been applied/.test(err.message));
      await assert.rejects(gc.submit({ ...op, data: bytes('y') }, undefined), (err: unknown) => err instanceof Determinate && /WORKER_EXITED/.test(err.message));
    } finally {
      blocker.exec('ROLLBACK');
      blocker.close();
    }
    assert.deepEqual(rows(path), []);
  });

  test('a batch runner that fails (the worker died) leaves every member Indeterminate', async () => {
    const { GroupCommit } = await import('../src/sqlite/group-commit.js');
    const runs: number[] = [];
    let fail: 'throw' | 'before-commit' = 'throw';
    const gc = new GroupCommit(
      async (members) => {
        runs.push(members.length);
        if (fail === 'throw') throw new Error('worker exited');
        return { type: 'error', exposure: 'not-sent', error: { code: 'WORKER_EXITED', message: 'worker exited' } };
      },
      'test',
    );
    const op = { type: 'cas' as const, key: 'k', expected: undefined, seqno: 1n, data: bytes('x') };
    const first = await Promise.allSettled([gc.submit(op, undefined), gc.submit(op, undefined)]);
    assert.deepEqual(runs, [2], 'two writes of one tick run as one batch');
    for (const r of first) assert.ok(r.status === 'rejected' && r.reason instanceof Indeterminate);
    fail = 'before-commit';
    await assert.rejects(gc.submit(op, undefined), (err: unknown) => err instanceof Determinate);
    await gc.drain();
  });
});

describe('COMMIT and ROLLBACK failures (synthetic errors injected into those statements)', () => {
  /**
   * Wraps every COMMIT and ROLLBACK statement prepared from now on in this process
   * (the inline writer's connection): each queued fault is consumed by one COMMIT,
   * which first runs for real when `applied` (the commit frame reached the WAL), then
   * throws; a ROLLBACK fault throws without rolling back.
   */
  const faults: { code: string; applied: boolean }[] = [];
  /** How many ROLLBACK statements to come fail (without rolling back). */
  let rollbackFaults = 0;
  const prepare = Database.prototype.prepare;
  before(() => {
    Database.prototype.prepare = function (this: Database.Database, sql: string) {
      const statement = prepare.call(this, sql);
      if (sql === 'COMMIT') {
        const run = statement.run.bind(statement) as (...args: unknown[]) => Database.RunResult;
        statement.run = ((...args: unknown[]) => {
          const fault = faults.shift();
          if (fault === undefined) return run(...args);
          if (fault.applied) run(...args);
          throw Object.assign(new Error(`synthetic ${fault.code} at COMMIT`), { code: fault.code });
        }) as typeof statement.run;
      }
      if (sql === 'ROLLBACK') {
        const run = statement.run.bind(statement) as (...args: unknown[]) => Database.RunResult;
        statement.run = ((...args: unknown[]) => {
          if (rollbackFaults > 0) {
            rollbackFaults--;
            throw Object.assign(new Error('synthetic SQLITE_IOERR at ROLLBACK'), { code: 'SQLITE_IOERR' });
          }
          return run(...args);
        }) as typeof statement.run;
      }
      return statement;
    } as typeof prepare;
  });
  after(() => {
    Database.prototype.prepare = prepare;
  });
  const v = (s: number, d: string) => ({ seqno: new SeqNo(s), data: bytes(d) });
  const settle = (c: SqliteConsensus) =>
    Promise.allSettled([c.compareAndSet('a', undefined, v(1, 'a1')), c.compareAndSet('b', undefined, v(1, 'b1')), c.truncate('b', new SeqNo(0))]);

  test('SQLITE_BUSY at COMMIT (transaction left open) is rolled back and retried: each write applied once, reported Committed', async () => {
    const path = fresh();
    const c = await SqliteConsensus.open(path, { worker: false });
    faults.push({ code: 'SQLITE_BUSY', applied: false }, { code: 'SQLITE_BUSY', applied: false });
    const results = await settle(c);
    assert.equal(faults.length, 0, 'both faults struck');
    assert.deepEqual(results.map((r) => (r.status === 'fulfilled' ? r.value : String(r.reason))), ['Committed', 'Committed', 0]);
    assert.deepEqual(rows(path).map((r) => [r.key, r.seqno, text(r.data)]), [['a', 1n, 'a1'], ['b', 1n, 'b1']]);
    await c.close();
  });

  test('an error after the commit frame was written leaves every member Indeterminate (the writes are there)', async () => {
    const path = fresh();
    const c = await SqliteConsensus.open(path, { worker: false });
    faults.push({ code: 'SQLITE_IOERR_FSYNC', applied: true });
    const results = await settle(c);
    for (const r of results) {
      assert.ok(r.status === 'rejected' && r.reason instanceof Indeterminate, String(r.status === 'rejected' ? r.reason : r.value));
      assert.equal(r.reason.code, ErrorCode.Unavailable);
      assert.match(r.reason.message, /at COMMIT, so the write may have been applied: SQLITE_IOERR_FSYNC/);
    }
    assert.deepEqual(rows(path).map((r) => [r.key, r.seqno]), [['a', 1n], ['b', 1n]]);
    // The connection carries on.
    assert.equal(await c.compareAndSet('a', new SeqNo(1), v(2, 'a2')), 'Committed');
    await c.close();
  });

  test('reads never see the writes of a failed batch whose ROLLBACK failed too', async () => {
    const path = fresh();
    const c = await SqliteConsensus.open(path, { worker: false });
    const raw = new Database(path);
    raw.exec("CREATE TRIGGER poison BEFORE INSERT ON consensus WHEN NEW.key = 'poison' BEGIN SELECT RAISE(ABORT, 'poisoned'); END");
    raw.close();
    rollbackFaults = 1;
    const results = await Promise.allSettled([c.compareAndSet('innocent', undefined, v(1, 'x')), c.compareAndSet('poison', undefined, v(1, 'x'))]);
    assert.equal(rollbackFaults, 0, 'the ROLLBACK fault struck');
    for (const r of results) assert.ok(r.status === 'rejected' && r.reason instanceof Determinate, String(r.status === 'rejected' ? r.reason : r.value));
    // The batch was reported as not applied: no read may show it.
    assert.equal(await c.head('innocent'), undefined);
    assert.deepEqual(await c.scan('innocent', new SeqNo(0), SCAN_ALL), []);
    assert.deepEqual(await collectKeys(c), []);
    assert.equal(await c.compareAndSet('innocent', undefined, v(2, 'y')), 'Committed');
    assert.equal(text((await c.head('innocent'))?.data), 'y');
    await c.close();
  });

  test('any other COMMIT error is Indeterminate even when it applied nothing, and the connection is left usable', async () => {
    const path = fresh();
    const c = await SqliteConsensus.open(path, { worker: false });
    faults.push({ code: 'SQLITE_FULL', applied: false });
    const results = await settle(c);
    for (const r of results) {
      assert.ok(r.status === 'rejected' && r.reason instanceof Indeterminate, String(r.status === 'rejected' ? r.reason : r.value));
      assert.equal(r.reason.code, ErrorCode.ResourceExhausted);
    }
    // The open transaction was rolled back, not left to join the next batch.
    assert.deepEqual(rows(path), []);
    assert.equal(await c.compareAndSet('a', undefined, v(5, 'a5')), 'Committed');
    assert.deepEqual(rows(path).map((r) => [r.key, r.seqno]), [['a', 5n]]);
    await c.close();
  });
});

describe('mapSqliteError maps driver errors', () => {
  // How SqliteConsensus maps them where they strike.
  const exposureAt = { open: 'sent', read: 'sent', 'before-commit': 'sent', commit: 'committed' } as const;
  const cases: [string, 'open' | 'read' | 'before-commit' | 'commit', boolean, string][] = [
    ['SQLITE_BUSY', 'before-commit', true, ErrorCode.Aborted],
    ['SQLITE_BUSY_RECOVERY', 'read', true, ErrorCode.Aborted],
    ['SQLITE_LOCKED_SHAREDCACHE', 'before-commit', true, ErrorCode.Aborted],
    ['SQLITE_BUSY', 'commit', false, ErrorCode.Aborted],
    ['SQLITE_FULL', 'before-commit', true, ErrorCode.ResourceExhausted],
    ['SQLITE_FULL', 'commit', false, ErrorCode.ResourceExhausted],
    ['SQLITE_TOOBIG', 'before-commit', true, ErrorCode.ResourceExhausted],
    ['SQLITE_READONLY', 'before-commit', true, ErrorCode.PermissionDenied],
    ['SQLITE_READONLY_DBMOVED', 'before-commit', true, ErrorCode.PermissionDenied],
    ['SQLITE_CANTOPEN', 'open', true, ErrorCode.Unavailable],
    ['EACCES', 'open', true, ErrorCode.PermissionDenied],
    ['SQLITE_IOERR_READ', 'read', true, ErrorCode.Unavailable],
    ['SQLITE_IOERR_WRITE', 'before-commit', true, ErrorCode.Unavailable],
    ['SQLITE_IOERR_FSYNC', 'commit', false, ErrorCode.Unavailable],
    ['SQLITE_CORRUPT', 'read', false, ErrorCode.DataLoss],
    ['SQLITE_CORRUPT_INDEX', 'before-commit', false, ErrorCode.DataLoss],
    ['SQLITE_NOTADB', 'open', true, ErrorCode.DataLoss],
    ['SQLITE_INTERRUPT', 'before-commit', true, ErrorCode.Cancelled],
    ['SQLITE_CONSTRAINT_PRIMARYKEY', 'before-commit', true, ErrorCode.Unknown],
    ['SQLITE_ERROR', 'commit', false, ErrorCode.Unknown],
  ];
  for (const [code, phase, determinate, expected] of cases) {
    test(`${code} ${phase} → ${determinate ? 'Determinate' : 'Indeterminate'} ${expected}`, () => {
      const cause = Object.assign(new Error(`synthetic ${code}`), { code });
      const err = mapSqliteError(cause, { what: 'SqliteConsensus(test)', exposure: exposureAt[phase] });
      assert.ok(err instanceof ExternalError);
      assert.equal(err.determinate, determinate);
      assert.equal(err instanceof Determinate, determinate);
      assert.equal(err.code, expected);
      assert.equal(err.cause, cause);
      assert.match(err.message, /^SqliteConsensus\(test\): /);
      assert.match(err.message, new RegExp(code));
    });
  }
  test('an error that is not from SQLite is Unknown, and Indeterminate at COMMIT', () => {
    assert.equal(mapSqliteError(new TypeError('boom'), { what: 'x', exposure: 'sent' }).determinate, true);
    const atCommit = mapSqliteError('worker died', { what: 'x', exposure: 'committed' });
    assert.equal(atCommit.determinate, false);
    assert.equal(atCommit.code, ErrorCode.Unknown);
  });
});

describe('concurrency', () => {
  test('stress: several handles (inline and worker) in one process are linearizable', async () => {
    const path = fresh();
    let i = 0;
    const report = await stressConsensus(() => SqliteConsensus.open(path, { worker: i++ % 2 === 1 }), { ops: 3000, keys: 4, clients: 16, handles: 4 });
    assert.equal(report.verdict, 'ok', JSON.stringify(report.violations.slice(0, 1), (_k, v: unknown) => (typeof v === 'bigint' ? String(v) : v)));
    assert.ok(report.ok, report.errors.join('; '));
    assert.ok(report.committed > 100, `only ${report.committed} commits`);
    assert.ok(report.mismatches > 0, 'the run had no contention');
  });

  test('stress: clients in several processes (worker and inline) on one file, some SIGKILLed and respawned, are linearizable', async (t) => {
    const path = fresh();
    const prefix = `mp-${n}-`;
    const nKeys = 4;
    const child = new URL('./fixtures/stress-child.js', import.meta.url).pathname;
    // Only output is gathered while children run: every check runs after all of
    // them are gone, so a failing check leaves no child behind.
    const runs: { base: number; stdout: string; stderr: string; code: number | null; signal: NodeJS.Signals | null }[] = [];
    let spawned = 0;
    // Four slots, each running one child at a time (odd slots with the writer
    // worker) until the deadline; most children are SIGKILLed at a random moment
    // of their life (while opening, committing, reading, ...), the others finish.
    const deadline = performance.now() + 12_000;
    const slot = async (s: number): Promise<void> => {
      for (let i = 0; i < 3 || performance.now() < deadline; i++) {
        const id = ++spawned;
        const base = id * 100;
        // Four children in five are killed; they are given endless work, so none finishes first.
        const kill = id % 5 !== 0;
        // Two handles: the first with the writer worker in odd slots, the second inline.
        const args = ['--uri', `sqlite://${path}?worker=${s % 2 === 1}`, '--uri', `sqlite://${path}?worker=false`];
        args.push('--client-base', String(base), '--clients', '6', '--ops', kill ? '1000000000' : '600', '--prefix', prefix, '--keys', String(nKeys));
        const child_ = spawnChild(child, args);
        if (kill) {
          // Mostly while it runs; sometimes while it opens (creating the file or
          // recovering the WAL of a child killed before it).
          const whileOpening = id % 7 === 0;
          if (!whileOpening) await Promise.race([child_.ready, child_.exited]);
          await Promise.race([child_.exited, sleep(Math.random() * (whileOpening ? 400 : 600))]);
          child_.proc.kill('SIGKILL');
        }
        const { code, signal } = await child_.exited;
        runs.push({ base, stdout: child_.stdout(), stderr: child_.stderr(), code, signal });
      }
    };
    await Promise.all([0, 1, 2, 3].map(slot));
    const history: HistoryOp[] = [];
    let killed = 0;
    let finished = 0;
    for (const r of runs) {
      if (r.signal === 'SIGKILL') killed++;
      else {
        assert.equal(r.code, 0, `child ${r.base} failed (${r.signal ?? r.code}): ${r.stderr}`);
        finished++;
      }
      history.push(...parseStressHistory(r.stdout, r.signal === 'SIGKILL', `child ${r.base}`));
    }
    // Final reads from this process, after every child exited.
    const reader = await SqliteConsensus.open(path);
    history.push(...(await finalReads(reader, Array.from({ length: nKeys }, (_, k) => `${prefix}${k}`))));
    await reader.close();
    const db = new Database(path);
    assert.equal(db.pragma('integrity_check', { simple: true }), 'ok');
    db.close();
    const check = checkLinearizable(history);
    // The first violation, with only the tail of what could be ordered before it.
    const shown = check.violations.slice(0, 1).map((v) => ({ ...v, linearized: v.linearized.slice(-12) }));
    assert.equal(check.verdict, 'ok', JSON.stringify(shown, (_k, v: unknown) => (typeof v === 'bigint' ? String(v) : v)));
    const commits = history.filter((h) => h.op === 'compareAndSet' && h.result.type === 'ok' && h.result.value === 'Committed');
    const unknown = history.filter((h) => h.op !== 'head' && h.op !== 'scan' && h.result.type === 'unknown').length;
    const processes = new Set(commits.map((h) => Math.floor((h.client ?? 0) / 100)));
    assert.ok(killed >= 8, `only ${killed} of ${spawned} children were killed`);
    assert.ok(commits.length > 100, `only ${commits.length} commits`);
    assert.ok(processes.size >= 2, `only ${processes.size} processes committed writes`);
    assert.ok(unknown > 0, 'no write was in flight at a kill');
    t.diagnostic(`${spawned} children, ${killed} killed, ${finished} finished; ${history.length} ops, ${commits.length} commits, ${unknown} unknown writes`);
  });

  test('crash: writers SIGKILLed at random moments lose no acknowledged write, and the file stays sound', async () => {
    const path = fresh('crash');
    const child = new URL('./fixtures/sqlite-crash-child.js', import.meta.url).pathname;
    const acked = new Map<string, bigint>();
    let kills = 0;
    for (let round = 0; round < 16; round++) {
      // Two writers at once (one with the worker thread), on keys of their own.
      const writers = [0, 1].map((w) => {
        const proc = spawn(process.execPath, [child, path, `w${w}`, '3', String((round + w) % 2)], { stdio: ['ignore', 'pipe', 'pipe'] });
        let out = '';
        let err = '';
        const readyAt = new Promise<void>((resolve) => {
          proc.stdout.on('data', (d: Buffer) => {
            out += d.toString();
            if (out.startsWith('ready\n')) resolve();
          });
        });
        proc.stderr.on('data', (d: Buffer) => (err += d.toString()));
        // 'close', not 'exit': only then has all of the child's stderr been read.
        const exited = new Promise<NodeJS.Signals | null>((resolve) => proc.on('close', (_code, signal) => resolve(signal)));
        return { proc, readyAt, exited, out: () => out, err: () => err };
      });
      await Promise.all(writers.map((w) => Promise.race([w.readyAt, w.exited])));
      await Promise.all(
        writers.map(async (w) => {
          await new Promise((r) => setTimeout(r, Math.random() * 250));
          w.proc.kill('SIGKILL');
          const signal = await w.exited;
          assert.equal(signal, 'SIGKILL', `the writer died on its own: ${w.err()}`);
          kills++;
          for (const line of w.out().split('\n')) {
            const m = /^ack (\S+) (\d+)$/.exec(line);
            if (m !== null && BigInt(m[2]!) > (acked.get(m[1]!) ?? 0n)) acked.set(m[1]!, BigInt(m[2]!));
          }
        }),
      );
      if (round % 5 === 4) checkAcked(path, acked);
    }
    assert.ok(kills >= 30, `${kills} kills`);
    assert.ok(acked.size === 6, 'every writer acknowledged writes');
    checkAcked(path, acked);
    const db = new Database(path);
    assert.equal(db.pragma('integrity_check', { simple: true }), 'ok');
    db.close();
    // And the backend opens it and carries on.
    const c = await SqliteConsensus.open(path);
    const head = await c.head('w0-0');
    assert.equal(await c.compareAndSet('w0-0', head?.seqno, { seqno: new SeqNo((head?.seqno.value ?? 0n) + 1n), data: bytes('after') }), 'Committed');
    await c.close();
  });
});

async function collectKeys(c: SqliteConsensus): Promise<string[]> {
  const keys: string[] = [];
  for await (const k of c.listKeys()) keys.push(k);
  return keys;
}

/** Every acknowledged version, and every version below it, is present and whole. */
function checkAcked(path: string, acked: Map<string, bigint>): void {
  const db = new Database(path);
  try {
    db.defaultSafeIntegers(true);
    const get = db.prepare('SELECT data FROM consensus WHERE key = ? AND seqno = ?').pluck();
    for (const [key, last] of acked) {
      for (let s = 1n; s <= last; s++) {
        const data = get.get(key, s) as Buffer | undefined;
        assert.ok(data !== undefined, `acknowledged ${key} v${s} is missing`);
        assert.ok(Buffer.from(crashValue(key, s)).equals(data), `${key} v${s} is not whole`);
      }
    }
  } finally {
    db.close();
  }
}

function spawnChild(script: string, args: string[]) {
  const proc = spawn(process.execPath, [script, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  const ready = new Promise<void>((resolve) => {
    proc.stdout.on('data', (d: Buffer) => {
      // The child prints {"ready":true} first.
      if (stdout === '' && d.length > 0) resolve();
      stdout += d.toString();
    });
  });
  proc.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  // 'close', not 'exit': only then has all of the child's output been read.
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => proc.on('close', (code, signal) => resolve({ code, signal })));
  return { proc, ready, exited, stdout: () => stdout, stderr: () => stderr };
}
