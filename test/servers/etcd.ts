/**
 * Real etcd for tests and benchmarks: Debian's `etcd-server` (`/usr/bin/etcd`, v3.4)
 * started as a cluster of one or more members on free loopback ports, each in its
 * own directory under one fresh `os.tmpdir()` directory. Elections are made fast
 * (50 ms heartbeat, 500 ms election timeout) so a killed leader is replaced quickly.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { createWriteStream, readdirSync, readFileSync, type WriteStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Etcd3 } from 'etcd3';
import { adopt, hasExited, stopChild } from './child.js';
import { freePort, StopWaiting, waitFor } from './ports.js';
import { ETCD_BIN } from './requirements.js';
import type { CertPair, TestPki } from './tls.js';

export interface EtcdMember {
  readonly name: string;
  /** `127.0.0.1:port` of its client URL. */
  readonly endpoint: string;
  /** The running process, or undefined while killed. */
  readonly process: ChildProcess | undefined;
}

export interface EtcdCluster {
  readonly members: readonly EtcdMember[];
  /** Every member's `127.0.0.1:port`. */
  readonly endpoints: string[];
  /** The certificates clients must use, when started with `tls`. */
  readonly tls: TestPki | undefined;
  /**
   * `etcd://` URI of every endpoint with a fresh unique prefix, and `query` (`a=1&b=2`)
   * if given; with TLS, the parameters that name the CA and the client pair come first.
   */
  uri(query?: string): string;
  /** Index of the current leader (asks each running member; waits for one). */
  leader(): Promise<number>;
  /** SIGKILLs member `i` and waits until it has exited. */
  kill(i: number, signal?: NodeJS.Signals): Promise<void>;
  /** SIGSTOPs member `i` (a hung server) and waits until the kernel reports it stopped. */
  pause(i: number): Promise<void>;
  /** SIGCONTs member `i`. */
  resume(i: number): void;
  /** Starts member `i` again on its data directory and waits until it serves. */
  restart(i: number): Promise<void>;
  /** Kills every member and removes the directory. */
  stop(): Promise<void>;
  /** The last lines of member `i`'s log. */
  log(i: number): string;
}

interface Member extends EtcdMember {
  process: ChildProcess | undefined;
  args: string[];
  logPath: string;
  logStream: WriteStream | undefined;
}

/**
 * Starts an n-member cluster and waits until it has a leader; fails loudly if it cannot.
 * With `tls`, clients must speak TLS and present a certificate signed by its CA
 * (`--client-cert-auth`); peers still talk plain HTTP on loopback. `server`
 * replaces the PKI's server pair (e.g. `wrongHost`), with the host name it is for.
 */
export async function startEtcd(n = 1, opts: { tls?: TestPki; server?: { pair: CertPair; name: string } } = {}): Promise<EtcdCluster> {
  const { tls } = opts;
  const serverPair = opts.server?.pair ?? tls?.server;
  const clientScheme = tls === undefined ? 'http' : 'https';
  const tlsArgs =
    tls === undefined
      ? []
      : [`--cert-file=${serverPair!.cert}`, `--key-file=${serverPair!.key}`, '--client-cert-auth', `--trusted-ca-file=${tls.ca}`];
  const dir = await mkdtemp(join(tmpdir(), 'persist-etcd-'));
  const token = `persist-${randomUUID()}`;
  const ports: { client: number; peer: number }[] = [];
  for (let i = 0; i < n; i++) ports.push({ client: await freePort(), peer: await freePort() });
  const initialCluster = ports.map((p, i) => `m${i}=http://127.0.0.1:${p.peer}`).join(',');
  const members: Member[] = ports.map((p, i) => ({
    name: `m${i}`,
    endpoint: `127.0.0.1:${p.client}`,
    process: undefined,
    logPath: join(dir, `m${i}.log`),
    logStream: undefined,
    args: [
      `--name=m${i}`,
      `--data-dir=${join(dir, `m${i}`)}`,
      `--listen-client-urls=${clientScheme}://127.0.0.1:${p.client}`,
      `--advertise-client-urls=${clientScheme}://127.0.0.1:${p.client}`,
      ...tlsArgs,
      `--listen-peer-urls=http://127.0.0.1:${p.peer}`,
      `--initial-advertise-peer-urls=http://127.0.0.1:${p.peer}`,
      `--initial-cluster=${initialCluster}`,
      `--initial-cluster-token=${token}`,
      '--initial-cluster-state=new',
      '--heartbeat-interval=50',
      '--election-timeout=500',
      '--logger=zap',
      '--log-level=warn',
    ],
  }));

  const log = (i: number) => {
    try {
      return readFileSync(members[i]!.logPath, 'utf8').split('\n').slice(-30).join('\n');
    } catch {
      return '(no log)';
    }
  };

  const launch = (m: Member) => {
    m.logStream = createWriteStream(m.logPath, { flags: 'a' });
    const child = adopt(spawn(ETCD_BIN, m.args, { stdio: ['ignore', 'pipe', 'pipe'] }));
    child.stdout!.pipe(m.logStream, { end: false });
    child.stderr!.pipe(m.logStream, { end: false });
    child.on('error', (err) => m.logStream?.write(`spawn error: ${err.message}\n`));
    m.process = child;
  };

  const credentials =
    tls === undefined
      ? undefined
      : { rootCertificate: readFileSync(tls.ca), certChain: readFileSync(tls.client.cert), privateKey: readFileSync(tls.client.key) };
  // A server certificate for another name is checked against that name.
  const grpcOptions = opts.server === undefined ? undefined : { 'grpc.ssl_target_name_override': opts.server.name };
  const connect = (m: Member, dialTimeout?: number) =>
    new Etcd3({
      hosts: `${clientScheme}://${m.endpoint}`,
      ...(credentials && { credentials }),
      ...(dialTimeout !== undefined && { dialTimeout }),
      ...(grpcOptions && { grpcOptions }),
    });

  const status = async (m: Member) => {
    const client = connect(m, 1000);
    try {
      return await client.maintenance.status({ deadline: Date.now() + 1000 });
    } finally {
      client.close();
    }
  };

  const serving = async (i: number) => {
    const m = members[i]!;
    await waitFor(`etcd member ${m.name} on ${m.endpoint}`, async () => {
      if (m.process === undefined || hasExited(m.process)) throw new StopWaiting(`etcd member ${m.name} exited`);
      const s = await status(m);
      if (s.leader === '0') throw new Error('no leader yet');
      // A linearizable read succeeds only once the member has caught up with a leader.
      const client = connect(m);
      try {
        await client.get('/persist-location-probe').options({ deadline: Date.now() + 1000 });
      } finally {
        client.close();
      }
    }, { timeoutMs: 30_000, log: () => log(i) });
  };

  const kill = async (i: number, signal: NodeJS.Signals = 'SIGKILL') => {
    const m = members[i]!;
    const child = m.process;
    if (child === undefined) return;
    m.process = undefined;
    try {
      await stopChild(child, `etcd member ${m.name}`, { signal, log: () => log(i) });
    } finally {
      m.logStream?.end();
    }
  };

  const cluster: EtcdCluster = {
    members,
    tls,
    endpoints: members.map((m) => m.endpoint),
    uri(query) {
      const params = [
        ...(tls === undefined ? [] : [`tls=true&ca=${encodeURIComponent(tls.ca)}&cert=${encodeURIComponent(tls.client.cert)}&key=${encodeURIComponent(tls.client.key)}`]),
        ...(query ? [query] : []),
      ];
      return `etcd://${members.map((m) => m.endpoint).join(',')}/test-${randomUUID()}${params.length > 0 ? `?${params.join('&')}` : ''}`;
    },
    async leader() {
      let found = -1;
      await waitFor('an etcd leader', async () => {
        for (const [i, m] of members.entries()) {
          if (m.process === undefined) continue;
          try {
            const s = await status(m);
            if (s.leader !== '0' && s.leader === s.header.member_id) {
              found = i;
              return;
            }
          } catch {
            // a member that is down or electing: ask the next one
          }
        }
        throw new Error('no member reports itself leader');
      }, { timeoutMs: 30_000, log: () => members.map((m, i) => `--- ${m.name} ---\n${log(i)}`).join('\n') });
      return found;
    },
    kill,
    async pause(i) {
      const child = members[i]!.process;
      if (child?.pid === undefined) throw new Error(`etcd member m${i} is not running`);
      child.kill('SIGSTOP');
      // Every thread must have stopped, or a request sent now may still be served.
      await waitFor(`etcd member m${i} to stop`, async () => {
        for (const task of readdirSync(`/proc/${child.pid}/task`)) {
          const state = readFileSync(`/proc/${child.pid}/task/${task}/stat`, 'utf8').replace(/^.*\) /s, '')[0];
          if (state !== 'T') throw new Error(`thread ${task} is in state ${state}`);
        }
      }, { timeoutMs: 10_000, intervalMs: 10, log: () => log(i) });
    },
    resume(i) {
      members[i]!.process?.kill('SIGCONT');
    },
    async restart(i) {
      const m = members[i]!;
      if (m.process !== undefined) throw new Error(`etcd member ${m.name} is running`);
      launch(m);
      await serving(i);
    },
    async stop() {
      const failures: unknown[] = [];
      for (const [i, m] of members.entries()) {
        m.process?.kill('SIGCONT');
        await kill(i).catch((err: unknown) => failures.push(err));
      }
      await rm(dir, { recursive: true, force: true });
      if (failures.length > 0) throw failures[0];
    },
    log,
  };

  try {
    for (const m of members) launch(m);
    for (let i = 0; i < n; i++) await serving(i);
  } catch (err) {
    await cluster.stop().catch(() => {});
    throw err;
  }
  return cluster;
}
