// Issue 15, items 1, 3 and 4: opening without surprises. `create: false` creates
// nothing anywhere and names what is missing; `~` and relative local paths are
// said plainly; open fails at once on an unreachable server; an idle handle never
// keeps the process alive. Each item is shown both through the library and through
// the spawned CLI, against real servers.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { createServer, type Socket } from 'node:net';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { BlobServiceClient } from '@azure/storage-blob';
import Database from 'better-sqlite3';
import { CaSResult, Determinate, ErrorCode, openBlob, openConsensus, registerBackend, SeqNo } from 'persist-location';
import { kvBackend } from './fixtures/kv-backend.js';
import { startAzurite, type AzuriteServer } from './servers/azurite.js';
import { startEtcd, type EtcdCluster } from './servers/etcd.js';
import { freePort } from './servers/ports.js';
import { startPostgres, type PostgresServer } from './servers/postgres.js';
import { S3RVER_CREDENTIALS, S3rverProcess } from './servers/s3rver.js';

const CLI = new URL('../../bin/persist-location.js', import.meta.url).pathname;
const FORGET_CLOSE = new URL('./fixtures/forget-close.js', import.meta.url).pathname;
/** How long a spawned process may take before it counts as hung (not a speed target). */
const CHILD_MS = 30_000;

let pg: PostgresServer;
let etcd: EtcdCluster;
let s3: S3rverProcess;
let azurite: AzuriteServer;
let azure: BlobServiceClient;
let s3Client: S3Client;
const dirs: string[] = [];

before(async () => {
  process.env.AWS_ACCESS_KEY_ID = S3RVER_CREDENTIALS.accessKeyId;
  process.env.AWS_SECRET_ACCESS_KEY = S3RVER_CREDENTIALS.secretAccessKey;
  process.env.AWS_REGION = 'us-east-1';
  const started = await Promise.allSettled([startPostgres(), startEtcd(1), S3rverProcess.start(['open'], { atomic: true }), startAzurite()]);
  if (started[0].status === 'fulfilled') pg = started[0].value;
  if (started[1].status === 'fulfilled') etcd = started[1].value;
  if (started[2].status === 'fulfilled') s3 = started[2].value;
  if (started[3].status === 'fulfilled') azurite = started[3].value;
  for (const r of started) if (r.status === 'rejected') throw r.reason;
  process.env.AZURE_STORAGE_CONNECTION_STRING = azurite.connectionString;
  azure = BlobServiceClient.fromConnectionString(azurite.connectionString);
  await azure.getContainerClient('open').create();
  s3Client = new S3Client({ endpoint: s3.endpoint, forcePathStyle: true, region: 'us-east-1', credentials: S3RVER_CREDENTIALS });
});

after(async () => {
  s3Client?.destroy();
  await Promise.allSettled([pg?.stop(), etcd?.stop(), s3?.stop(), azurite?.stop()]);
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

function freshDir(): string {
  const dir = realpathSync(mkdtempSync(join(tmpdir(), 'persist-open-')));
  dirs.push(dir);
  return dir;
}

const s3Uri = (bucket: string, prefix: string) => `s3://${bucket}/${prefix}?endpoint=${encodeURIComponent(s3.endpoint)}&forcePathStyle=true`;
const azureUri = (container: string, prefix: string, extra = '') => `azure://${container}/${prefix}?endpoint=${encodeURIComponent(azurite.endpoint)}${extra}`;

/** Asserts `err` is Determinate with `code` and a message matching `message`. */
function isDeterminate(err: unknown, code: string, message: RegExp): true {
  assert.ok(err instanceof Determinate, `expected Determinate, got ${String(err)}`);
  assert.equal(err.code, code, err.message);
  assert.match(err.message, message);
  return true;
}

async function schemaExists(schema: string): Promise<boolean> {
  const { rows } = await pg.sql('SELECT count(*)::int AS n FROM information_schema.schemata WHERE schema_name = $1', [schema]);
  return (rows[0] as { n: number }).n === 1;
}

async function s3Names(prefix: string): Promise<string[]> {
  const out = await s3Client.send(new ListObjectsV2Command({ Bucket: 'open', Prefix: prefix }));
  return (out.Contents ?? []).map((o) => o.Key!);
}

async function azureNames(prefix: string): Promise<string[]> {
  const names: string[] = [];
  for await (const b of azure.getContainerClient('open').listBlobsFlat({ prefix })) names.push(b.name);
  return names;
}

const v = (n: number, data: string) => ({ seqno: new SeqNo(n), data: Buffer.from(data) });

interface Ran {
  status: number | null;
  out: string;
  err: string;
}

function cli(cwd: string, args: string[], env: NodeJS.ProcessEnv = {}): Ran {
  const r = spawnSync(process.execPath, [CLI, ...args], { cwd, input: '', timeout: CHILD_MS, env: { ...process.env, NO_COLOR: '1', ...env }, encoding: 'utf8' });
  return { status: r.status, out: r.stdout, err: r.stderr };
}

/** Exit 1 and exactly one `persist-location: ...` line on stderr matching `message`. */
function failsInOneLine(r: Ran, message: RegExp): void {
  assert.equal(r.status, 1, `exit ${r.status}\nstdout: ${r.out}\nstderr: ${r.err}`);
  const lines = r.err.split('\n').filter((l) => l !== '');
  assert.equal(lines.length, 1, `expected one stderr line, got:\n${r.err}`);
  assert.match(lines[0]!, /^persist-location: /);
  assert.match(lines[0]!, message);
}

describe('item 1: create: false creates nothing and names what is missing', () => {
  test('the option is checked before anything is touched', async () => {
    const dir = freshDir();
    for (const create of ['no', 0, null]) {
      await assert.rejects(openConsensus(`sqlite:${dir}/bad/x.db`, { create: create as never }), (err) => isDeterminate(err, ErrorCode.InvalidArgument, /create must be true or false/));
      await assert.rejects(openBlob(`file:${dir}/bad`, { create: create as never }), (err) => isDeterminate(err, ErrorCode.InvalidArgument, /create must be true or false/));
    }
    assert.equal(existsSync(join(dir, 'bad')), false);
  });

  test('file: a missing directory is NotFound and stays missing; an existing one opens', async () => {
    const dir = freshDir();
    const uri = `file:${dir}/a/b`;
    await assert.rejects(openBlob(uri, { create: false }), (err) => isDeterminate(err, ErrorCode.NotFound, new RegExp(`${dir}/a/b does not exist`)));
    assert.equal(existsSync(join(dir, 'a')), false);
    const made = await openBlob(uri);
    await made.set('k', Buffer.from('v'));
    await made.close();
    const looked = await openBlob(uri, { create: false });
    assert.equal(Buffer.from((await looked.get('k'))!.toContiguous()).toString(), 'v');
    await looked.close();
  });

  test('sqlite: a missing file is NotFound; a file that is not our database is FailedPrecondition and is left as it was', async () => {
    const dir = freshDir();
    await assert.rejects(openConsensus(`sqlite:${dir}/typo/x.db`, { create: false }), (err) => isDeterminate(err, ErrorCode.NotFound, new RegExp(`${dir}/typo/x.db does not exist`)));
    assert.equal(existsSync(join(dir, 'typo')), false);

    writeFileSync(join(dir, 'notes.txt'), 'not a database at all, just some text\n');
    await assert.rejects(openConsensus(`sqlite:${dir}/notes.txt`, { create: false }), (err) => isDeterminate(err, ErrorCode.FailedPrecondition, /notes\.txt is not a SQLite database/));
    assert.equal(readFileSync(join(dir, 'notes.txt'), 'utf8'), 'not a database at all, just some text\n');

    const other = new Database(join(dir, 'other.db'));
    other.exec('CREATE TABLE mine (x)');
    other.close();
    await assert.rejects(openConsensus(`sqlite:${dir}/other.db`, { create: false }), (err) => isDeterminate(err, ErrorCode.FailedPrecondition, /other\.db is a SQLite database without the consensus table/));
    const check = new Database(join(dir, 'other.db'), { readonly: true });
    assert.deepEqual(check.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").pluck().all(), ['mine']);
    check.close();

    const made = await openConsensus(`sqlite:${dir}/ok.db`);
    assert.equal(await made.compareAndSet('k', undefined, v(1, 'one')), CaSResult.Committed);
    await made.close();
    const looked = await openConsensus(`sqlite:${dir}/ok.db`, { create: false });
    assert.equal((await looked.head('k'))?.seqno.value, 1n);
    await looked.close();
  });

  test('postgres: a missing schema is NotFound and is not created; an existing one opens', async () => {
    const schema = pg.schema('typo');
    const uri = `${pg.baseUrl}?schema=${schema}`;
    await assert.rejects(openConsensus(uri, { create: false }), (err) => isDeterminate(err, ErrorCode.NotFound, new RegExp(`schema ${schema} does not exist`)));
    assert.equal(await schemaExists(schema), false);
    // A schema that exists but lacks the tables is no location either, and gets none.
    await pg.sql(`CREATE SCHEMA "${schema}"`);
    await assert.rejects(openConsensus(uri, { create: false }), (err) => isDeterminate(err, ErrorCode.NotFound, /lacks its tables/));
    const { rows } = await pg.sql('SELECT count(*)::int AS n FROM information_schema.tables WHERE table_schema = $1', [schema]);
    assert.equal((rows[0] as { n: number }).n, 0);
    const made = await openConsensus(uri);
    await made.close();
    const looked = await openConsensus(uri, { create: false });
    assert.equal(await looked.head('k'), undefined);
    await looked.close();
  });

  test('etcd: a prefix always exists, so create: false opens a fresh one and writes nothing', async () => {
    const uri = etcd.uri();
    const looked = await openConsensus(uri, { create: false });
    const keys: string[] = [];
    for await (const key of looked.listKeys()) keys.push(key);
    assert.deepEqual(keys, []);
    await looked.close();
  });

  test('s3: a missing bucket is NotFound; on an existing bucket create: false writes nothing until the first write', async () => {
    for (const open of [openBlob, openConsensus] as const) {
      await assert.rejects(open(s3Uri('no-such-bucket', 'p'), { create: false }), (err) => isDeterminate(err, ErrorCode.NotFound, /bucket no-such-bucket does not exist/));
    }
    const prefix = `c-${randomUUID()}`;
    const looked = await openConsensus(s3Uri('open', prefix), { create: false });
    assert.equal(await looked.head('k'), undefined);
    assert.deepEqual(await s3Names(prefix), []);
    // The conditional-write probe runs before the first write, then the write itself.
    assert.equal(await looked.compareAndSet('k', undefined, v(1, 'one')), CaSResult.Committed);
    assert.ok((await s3Names(`${prefix}/h/`)).length === 1);
    await looked.close();
  });

  test('azure: a missing container is NotFound and is not created, even with createContainer=true', async () => {
    const container = `missing-${randomUUID().slice(0, 8)}`;
    for (const open of [openBlob, openConsensus] as const) {
      await assert.rejects(open(azureUri(container, 'p', '&createContainer=true'), { create: false }), (err) => isDeterminate(err, ErrorCode.NotFound, new RegExp(`container ${container} does not exist`)));
    }
    assert.equal(await azure.getContainerClient(container).exists(), false);
    // Without create: false, a missing container is still found out at open, not at the first operation.
    await assert.rejects(openBlob(azureUri(container, 'p')), (err) => isDeterminate(err, ErrorCode.NotFound, new RegExp(`container ${container} does not exist`)));
    const prefix = `c-${randomUUID()}`;
    const looked = await openConsensus(azureUri('open', prefix), { create: false });
    assert.equal(await looked.head('k'), undefined);
    assert.deepEqual(await azureNames(prefix), []);
    await looked.close();
  });

  test('a registered backend gets the option through its descriptor', async () => {
    registerBackend(kvBackend);
    const name = `kv-test://open-${randomUUID()}`;
    await assert.rejects(openConsensus(name, { create: false }), (err) => isDeterminate(err, ErrorCode.NotFound, /does not exist/));
    await assert.rejects(openBlob(name, { create: false }), (err) => isDeterminate(err, ErrorCode.NotFound, /does not exist/));
    await (await openConsensus(name)).close();
    await (await openConsensus(name, { create: false })).close();
  });

  test('CLI: inspection of a location that does not exist is one line, exit 1, and creates nothing', async () => {
    const cwd = freshDir();
    const schema = pg.schema('typo_schema');
    failsInOneLine(cli(cwd, ['consensus', 'head', 'foo', '--consensus', `${pg.baseUrl}?schema=${schema}`]), new RegExp(`schema ${schema} does not exist.*\\[Determinate NotFound\\]`));
    assert.equal(await schemaExists(schema), false);
    failsInOneLine(cli(cwd, ['consensus', 'list', '--consensus', 'sqlite:typo/x.db']), /typo\/x\.db does not exist.*\[Determinate NotFound\]/);
    failsInOneLine(cli(cwd, ['consensus', 'scan', 'k']), /\.persist\/consensus\.db does not exist/);
    failsInOneLine(cli(cwd, ['blob', 'ls', '--blob', 'file:typo/blob']), /typo\/blob does not exist.*\[Determinate NotFound\]/);
    failsInOneLine(cli(cwd, ['blob', 'get', 'k']), /\.persist\/blob does not exist/);
    failsInOneLine(cli(cwd, ['watch', 'k', '--timeout', '1s']), /\.persist\/consensus\.db does not exist/);
    failsInOneLine(cli(cwd, ['blob', 'ls', '--blob', azureUri(`missing-${randomUUID().slice(0, 8)}`, 'p', '&createContainer=true')]), /does not exist.*\[Determinate NotFound\]/);
    assert.equal(existsSync(join(cwd, 'typo')), false);
    assert.equal(existsSync(join(cwd, '.persist')), false);
    // A command that writes still creates the location, and inspection then finds it.
    assert.equal(cli(cwd, ['consensus', 'cas', 'k', 'none', 'v1', 'one']).status, 0);
    assert.match(cli(cwd, ['consensus', 'head', 'k']).out, /seqno: +v1/);
  });
});

describe('item 3: paths', () => {
  test("'~' is refused with the absolute path to write instead, and creates no '~' directory", async () => {
    const cwd = freshDir();
    for (const [open, uri] of [
      [openConsensus, 'sqlite:~/x.db'],
      [openBlob, 'file:~/blob'],
    ] as const) {
      await assert.rejects(open(uri), (err) => isDeterminate(err, ErrorCode.InvalidArgument, /'~' is not expanded.*write an absolute path, e\.g\. (sqlite|file):\/\/\//));
    }
    const r = cli(cwd, ['consensus', 'cas', 'k', 'none', 'v1', 'x', '--consensus', 'sqlite:~/x.db']);
    failsInOneLine(r, /'~' is not expanded/);
    failsInOneLine(cli(cwd, ['blob', 'put', 'k', '--blob', 'file:~/blob']), /'~' is not expanded/);
    assert.equal(existsSync(join(cwd, '~')), false);
  });

  test('CLI: a relative sqlite:/file: location is said resolved, on stderr; check shows it in its header', () => {
    const cwd = freshDir();
    const cas = cli(cwd, ['consensus', 'cas', 'k', 'none', 'v1', 'one']);
    assert.equal(cas.status, 0, cas.err);
    assert.equal(cas.err, `consensus: sqlite:${cwd}/.persist/consensus.db\n`);
    const head = cli(cwd, ['consensus', 'head', 'k', '--consensus', 'sqlite:.persist/consensus.db?worker=false']);
    assert.equal(head.err, `consensus: sqlite:${cwd}/.persist/consensus.db\n`);
    const put = cli(cwd, ['blob', 'put', 'b', '-'], {});
    assert.equal(put.status, 0, put.err);
    assert.equal(put.err, `blob: file:${cwd}/.persist/blob\n`);
    // Absolute URIs, and --quiet, say nothing more.
    assert.equal(cli(cwd, ['consensus', 'head', 'k', '--consensus', `sqlite:${cwd}/.persist/consensus.db`]).err, '');
    assert.equal(cli(cwd, ['consensus', 'head', 'k', '--quiet']).err, '');
    // Another directory is another location, and says so.
    const elsewhere = join(cwd, 'sub');
    mkdirSync(elsewhere);
    failsInOneLine(cli(elsewhere, ['consensus', 'head', 'k']), new RegExp(`${elsewhere}/\\.persist/consensus\\.db does not exist`));

    const check = cli(cwd, ['check', '--only', 'blob']);
    assert.equal(check.status, 0, check.out + check.err);
    assert.match(check.out, new RegExp(`^blob +file:\\.persist/blob\\n +resolved: file:${cwd}/\\.persist/blob\\n`, 'm'));
    const json = JSON.parse(cli(cwd, ['check', '--only', 'blob', '--json', '--quiet']).out) as { locations: { blob: { resolved?: string } } };
    assert.equal(json.locations.blob.resolved, `file:${cwd}/.persist/blob`);
  });
});

describe('item 4: open and close behave the same on every backend', () => {
  test('an unreachable server fails the open, Determinate Unavailable naming the endpoint, credentials redacted', async () => {
    const port = await freePort();
    for (const uri of [`etcd://app:s3cretpw@127.0.0.1:${port}/p`, `postgres://app:s3cretpw@127.0.0.1:${port}/db`]) {
      const err = await openConsensus(uri).then(
        () => assert.fail(`${uri} opened with nothing listening`),
        (e: unknown) => e,
      );
      isDeterminate(err, ErrorCode.Unavailable, new RegExp(`127\\.0\\.0\\.1:${port}`));
      assert.doesNotMatch(String((err as Error).message), /s3cretpw/);
    }
    const r = cli(freshDir(), ['consensus', 'head', 'k', '--consensus', `etcd://app:s3cretpw@127.0.0.1:${port}`]);
    failsInOneLine(r, /Unavailable/);
    assert.doesNotMatch(r.err, /s3cretpw/);
  });

  test('an object store that refuses connections, or accepts them and never answers, fails the open: Determinate Unavailable naming the endpoint', { timeout: 60_000 }, async () => {
    const refused = await freePort();
    // Accepts every connection and says nothing: only open's own bound ends the wait.
    const held: Socket[] = [];
    const silent = createServer((socket) => void held.push(socket));
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const mute = (silent.address() as { port: number }).port;
    const secrets = [S3RVER_CREDENTIALS.secretAccessKey, /AccountKey=([^;]+)/.exec(azurite.connectionString)![1]!];
    try {
      const cases = [refused, mute].flatMap((port) => {
        const endpoint = `http://127.0.0.1:${port}`;
        return [
          `s3://open/p?endpoint=${encodeURIComponent(endpoint)}&forcePathStyle=true`,
          `azure://open/p?endpoint=${encodeURIComponent(`${endpoint}/devstoreaccount1`)}`,
        ].flatMap((uri) => [openBlob, openConsensus].map((open) => ({ port, uri, open })));
      });
      await Promise.all(
        cases.map(async ({ port, uri, open }) => {
          const what = `${open.name}(${uri})`;
          const err = await open(uri).then(
            async (h) => {
              await h.close();
              return assert.fail(`${what} opened with ${port === refused ? 'nothing listening' : 'a server that never answers'}`);
            },
            (e: unknown) => e,
          );
          isDeterminate(err, ErrorCode.Unavailable, new RegExp(`127\\.0\\.0\\.1:${port}`));
          for (const secret of secrets) assert.ok(!String((err as Error).message).includes(secret), `${what}: ${(err as Error).message}`);
          if (port === mute) assert.match((err as Error).message, /did not answer within/, what);
        }),
      );
    } finally {
      for (const socket of held) socket.destroy();
      await new Promise((resolve) => silent.close(resolve));
    }
  });

  test('a missing driver is a configuration problem (FailedPrecondition), not Unavailable', async () => {
    const hook = new URL('../../test/fixtures/hide-driver.mjs', import.meta.url).pathname;
    const r = spawnSync(process.execPath, ['--import', hook, CLI, 'consensus', 'list', '--consensus', 'postgres://u@127.0.0.1:1/db'], {
      env: { ...process.env, HIDE_PACKAGE: 'pg' },
      encoding: 'utf8',
      timeout: CHILD_MS,
    });
    failsInOneLine({ status: r.status, out: r.stdout, err: r.stderr }, /needs the npm package pg.*npm install pg.*\[Determinate FailedPrecondition\]/);
  });

  test('a process that forgets close() exits once its work is done, on every server and embedded backend', async () => {
    const dir = freshDir();
    const uris = [`sqlite:${dir}/forgot.db`, etcd.uri(), pg.url(), s3Uri('open', `forgot-${randomUUID()}`), azureUri('open', `forgot-${randomUUID()}`)];
    await Promise.all(
      uris.map(async (uri) => {
        const child = spawn(process.execPath, [FORGET_CLOSE, uri], { stdio: ['ignore', 'pipe', 'pipe'] });
        let output = '';
        child.stdout.on('data', (d: Buffer) => (output += d.toString()));
        child.stderr.on('data', (d: Buffer) => (output += d.toString()));
        let timer: NodeJS.Timeout | undefined;
        const exited = await Promise.race([
          new Promise<boolean>((resolve) => child.on('exit', () => resolve(true))),
          new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), CHILD_MS))),
        ]);
        clearTimeout(timer);
        if (!exited) child.kill('SIGKILL');
        assert.ok(exited, `${uri}: the child was still running ${CHILD_MS} ms after it started, its handle idle: ${output}`);
        assert.equal(child.exitCode, 0, `${uri}: ${output}`);
        assert.match(output, /read done, not closing/);
        // Once the read is done nothing of the handle is ref'd (so the exit is not a server closing idle sockets).
        assert.match(output, /still holding the process: \[\]/, `${uri}: ${output}`);
      }),
    );
  });
});
