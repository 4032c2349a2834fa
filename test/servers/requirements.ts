/**
 * What the test servers need from the machine beyond `npm install`: Debian's
 * `etcd-server` (for `/usr/bin/etcd`) and, when we are root, a `postgres` user for
 * the embedded PostgreSQL to run as. test/run.js calls {@link provide} before any
 * test file starts. As root on Debian it installs what is missing; elsewhere it
 * reports the exact command to run, so a run fails at once rather than midway.
 */
import { spawn } from 'node:child_process';
import { accessSync, constants, existsSync } from 'node:fs';
import { userInfo } from 'node:os';

/** The etcd server the tests start: `PERSIST_TEST_ETCD_BIN`, or Debian's. */
export const ETCD_BIN = process.env.PERSIST_TEST_ETCD_BIN ?? '/usr/bin/etcd';

/** What the selected test files use. */
export interface Needs {
  etcd: boolean;
  postgres: boolean;
}

/**
 * Provides what `needs` asks for where it can, printing what it does through
 * `say`; resolves to the problems left, each naming the command that fixes it.
 */
export async function provide(needs: Needs, say: (line: string) => void): Promise<string[]> {
  const problems: string[] = [];
  if (needs.etcd) {
    const problem = await provideEtcd(say);
    if (problem !== undefined) problems.push(problem);
  }
  if (needs.postgres) {
    const problem = await providePostgresUser(say);
    if (problem !== undefined) problems.push(problem);
  }
  return problems;
}

function executable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

const isRoot = (): boolean => process.platform !== 'win32' && userInfo().uid === 0;
const debianRoot = (): boolean => isRoot() && existsSync('/etc/debian_version') && executable('/usr/bin/apt-get');

async function provideEtcd(say: (line: string) => void): Promise<string | undefined> {
  if (executable(ETCD_BIN)) return undefined;
  if (process.env.PERSIST_TEST_ETCD_BIN !== undefined) {
    return `PERSIST_TEST_ETCD_BIN=${ETCD_BIN} is not an executable file; point it at an etcd (v3.4 or later) server binary`;
  }
  const howTo =
    `the etcd tests need ${ETCD_BIN}, from Debian's etcd-server package. Install it and stop the service it starts:\n` +
    '    sudo apt-get install -y etcd-server && sudo systemctl stop etcd\n' +
    'or set PERSIST_TEST_ETCD_BIN to an etcd (v3.4 or later) server binary.';
  if (!debianRoot()) return howTo;
  say(`${ETCD_BIN} is missing; installing Debian's etcd-server (apt-get update, apt-get install -y etcd-server)`);
  const env = { DEBIAN_FRONTEND: 'noninteractive' };
  const steps: [string, string[]][] = [
    ['apt-get', ['update', '-qq']],
    ['apt-get', ['install', '-y', '-qq', '--no-install-recommends', 'etcd-server']],
  ];
  for (const [command, args] of steps) {
    const result = await run(command, args, 10 * 60_000, env);
    if (result !== undefined) return `${command} ${args.join(' ')} ${result}\n${howTo}`;
  }
  // Debian starts the packaged service on etcd's default ports; the tests start their own.
  if (existsSync('/run/systemd/system')) {
    await run('systemctl', ['stop', 'etcd'], 60_000);
    say('stopped the etcd service the package started (systemctl stop etcd; it stays enabled)');
  } else if (existsSync('/etc/init.d/etcd')) {
    await run('/etc/init.d/etcd', ['stop'], 60_000);
  }
  return executable(ETCD_BIN) ? undefined : `etcd-server was installed but ${ETCD_BIN} is still missing\n${howTo}`;
}

/** PostgreSQL refuses to run as root, so as root the embedded server runs as `postgres`. */
async function providePostgresUser(say: (line: string) => void): Promise<string | undefined> {
  if (!isRoot()) return undefined;
  const exists = (await run('id', ['-u', 'postgres'], 10_000, {}, true)) === undefined;
  if (exists) return undefined;
  // Home and shell as Debian's postgresql package would leave them, minus a login shell.
  const args = ['--system', '--user-group', '--no-create-home', '--home-dir', '/var/lib/postgresql', '--shell', '/usr/sbin/nologin', 'postgres'];
  const howTo = `as root, the embedded PostgreSQL runs as the user postgres, which does not exist; create it:\n    useradd ${args.join(' ')}`;
  if (process.platform !== 'linux' || !executable('/usr/sbin/useradd')) return howTo;
  say(`creating the system user postgres for the embedded PostgreSQL (useradd ${args.join(' ')})`);
  const result = await run('/usr/sbin/useradd', args, 60_000);
  return result === undefined ? undefined : `useradd ${result}\n${howTo}`;
}

/**
 * Runs a command in its own process group, its output shown unless `quiet`;
 * resolves to undefined on success, else to why it failed. After `timeoutMs` the
 * whole group is killed (apt-get leaves dpkg and download helpers otherwise).
 */
function run(command: string, args: string[], timeoutMs: number, env: Record<string, string> = {}, quiet = false): Promise<string | undefined> {
  return new Promise((resolve) => {
    const child = spawn(command, args, { detached: true, env: { ...process.env, ...env }, stdio: quiet ? 'ignore' : ['ignore', 'inherit', 'inherit'] });
    const timer = setTimeout(() => {
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        // already gone
      }
      resolve(`did not finish within ${timeoutMs / 1000} s and was killed`);
    }, timeoutMs);
    child.once('error', (err) => {
      clearTimeout(timer);
      resolve(`could not be run: ${err.message}`);
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      resolve(code === 0 ? undefined : `failed (exit code ${code}, signal ${signal})`);
    });
  });
}
