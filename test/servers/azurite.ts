/**
 * A real Azure Blob emulator for tests and benchmarks: `azurite-blob` (the npm
 * package) as a child process on a free loopback port, persisting to a fresh
 * directory under `os.tmpdir()`. It can be killed (SIGKILL, mid-request) and
 * restarted on the same port and directory.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { adopt, hasExited, stopChild } from './child.js';
import { freePort, StopWaiting, waitFor } from './ports.js';
import type { CertPair } from './tls.js';

/** Azurite's fixed development account (public, documented by Microsoft). */
export const AZURITE_ACCOUNT = 'devstoreaccount1';
export const AZURITE_KEY = 'Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==';

export interface AzuriteServer {
  readonly port: number;
  /** The blob service URL, `http://127.0.0.1:PORT/devstoreaccount1` (`https://` with `tls`). */
  readonly endpoint: string;
  /** The development account's connection string for this port. */
  readonly connectionString: string;
  /** Kills the process with SIGKILL (data stays); resolves once it has exited. */
  kill(): Promise<void>;
  /** Starts it again on the same port and directory after {@link kill}. */
  restart(): Promise<void>;
  /** Stops the process and removes its directory. Idempotent. */
  stop(): Promise<void>;
  /** The server's output so far, for failure messages. */
  log(): string;
}

const main = fileURLToPath(new URL('../../../node_modules/azurite/dist/src/blob/main.js', import.meta.url));

/** How to start Azurite. */
export interface AzuriteOptions {
  /** Serve https only, with this certificate and key (`--cert`/`--key`). */
  tls?: CertPair;
  /**
   * Accept Azure AD bearer tokens (`--oauth basic`, which needs `tls`): Azurite
   * checks their lifetime, issuer and audience, not their signature.
   */
  oauth?: boolean;
}

/** Starts Azurite Blob; rejects (loudly) if it does not come up. */
export async function startAzurite(options: AzuriteOptions = {}): Promise<AzuriteServer> {
  if (options.oauth === true && options.tls === undefined) throw new Error('Azurite accepts OAuth tokens over https only: give tls too');
  const extra = [
    ...(options.tls === undefined ? [] : ['--cert', options.tls.cert, '--key', options.tls.key]),
    ...(options.oauth === true ? ['--oauth', 'basic'] : []),
  ];
  const dir = await mkdtemp(join(tmpdir(), 'persist-azurite-'));
  const port = await freePort();
  let output = '';
  let child: ChildProcess | undefined;

  const launch = async (): Promise<void> => {
    const proc = adopt(
      spawn(
        process.execPath,
        [main, '--blobHost', '127.0.0.1', '--blobPort', String(port), '--location', dir, '--silent', '--disableTelemetry', '--skipApiVersionCheck', ...extra],
        { stdio: ['ignore', 'pipe', 'pipe'] },
      ),
    );
    child = proc;
    const keep = (chunk: Buffer) => {
      output = (output + chunk.toString()).slice(-20_000);
    };
    proc.stdout!.on('data', keep);
    proc.stderr!.on('data', keep);
    proc.on('error', (err) => keep(Buffer.from(`could not run azurite: ${err.message}\n`)));
    await waitFor(`azurite-blob on port ${port}`, async () => {
      if (hasExited(proc)) throw new StopWaiting(`azurite exited (code ${proc.exitCode}, signal ${proc.signalCode})`);
      await tcpProbe(port);
    }, { log: () => output });
  };

  const kill = async (): Promise<void> => {
    const proc = child;
    child = undefined;
    if (proc !== undefined) await stopChild(proc, 'azurite-blob', { log: () => output });
  };

  await launch().catch(async (err) => {
    await kill();
    await rm(dir, { recursive: true, force: true });
    throw err;
  });
  const protocol = options.tls === undefined ? 'http' : 'https';
  const endpoint = `${protocol}://127.0.0.1:${port}/${AZURITE_ACCOUNT}`;
  return {
    port,
    endpoint,
    connectionString: `DefaultEndpointsProtocol=${protocol};AccountName=${AZURITE_ACCOUNT};AccountKey=${AZURITE_KEY};BlobEndpoint=${endpoint};`,
    kill,
    restart: launch,
    async stop() {
      await kill();
      await rm(dir, { recursive: true, force: true });
    },
    log: () => output,
  };
}

function tcpProbe(port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = createConnection({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve();
    });
    socket.once('error', reject);
  });
}
