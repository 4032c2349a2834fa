// The envelope against real stores: stressConsensus through
// withRetry(UnreliableConsensus(x, 20%)) on SQLite, PostgreSQL and etcd; a counter
// incremented by update() from 3 processes x 4 callers under 20% faults; a
// PostgreSQL restart under load with the default retry; watch across processes
// on SQLite.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { CaSResult, ExternalError, SCAN_ALL, SeqNo, openConsensus, watch, withRetry, type Consensus } from 'persist-location';
import { UnreliableConsensus, stressConsensus, type StressReport } from 'persist-location/testing';
import { adopt, exited } from './servers/child.js';
import { startEtcd, type EtcdCluster } from './servers/etcd.js';
import { startPostgres, type PostgresServer } from './servers/postgres.js';

const CHILD_MS = 120_000;
const counterChild = new URL('./fixtures/counter-child.js', import.meta.url).pathname;

let pg: PostgresServer;
let etcd: EtcdCluster;
const dir = mkdtempSync(join(tmpdir(), 'persist-envelope-'));

before(async () => {
  [pg, etcd] = await Promise.all([startPostgres(), startEtcd(1)]);
});
after(async () => {
  await Promise.allSettled([pg?.stop(), etcd?.stop()]);
  rmSync(dir, { recursive: true, force: true });
});

/** Each backend: a fresh location's URI. */
const locations: [string, () => string][] = [
  ['SQLite', () => `sqlite:${join(dir, `${randomUUID()}.db`)}`],
  ['PostgreSQL', () => pg.url()],
  ['etcd', () => etcd.uri()],
];

const summary = (r: StressReport) => `${r.ops} ops: ${r.committed} committed, ${r.mismatches} mismatches, ${r.failed} failed, ${r.unknown} unknown`;

describe('stressConsensus through withRetry(UnreliableConsensus(x, { failRate: 0.2 }))', () => {
  for (const [name, uri] of locations) {
    test(name, async (t) => {
      const location = uri();
      let seed = 1;
      const report = await stressConsensus(
        async () => withRetry(new UnreliableConsensus(await openConsensus(location, { retry: false }), { seed: seed++, failRate: 0.2 }), { minDelayMs: 2, maxDelayMs: 200 }),
        { ops: 1500, clients: 16 },
      );
      t.diagnostic(summary(report));
      assert.equal(report.verdict, 'ok', JSON.stringify(report.violations[0]));
      assert.ok(report.ok, report.unproven.join('; '));
      assert.deepEqual(report.errors, []);
      const failed = report.failed + report.unknown;
      assert.ok(failed <= 0.05 * report.ops, `${failed} of ${report.ops} did not succeed: ${summary(report)}`);
    });
  }
});

/** Runs one counter child to its end; resolves to its output lines. */
function runCounter(uri: string, key: string, id: number, updates: number): Promise<Record<string, string>[]> {
  const child = adopt(spawn(process.execPath, [counterChild, uri, key, String(id), '4', String(updates), '0.2'], { stdio: ['ignore', 'pipe', 'pipe'] }));
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  return exited(child, `counter child ${id}`, CHILD_MS, () => stderr).then(() => {
    assert.equal(child.exitCode, 0, `counter child ${id} failed:\n${stderr}`);
    return stdout.trim().split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as Record<string, string>);
  });
}

describe('a counter incremented by update() from 3 processes x 4 callers under 20% faults', () => {
  for (const [name, uri] of locations) {
    test(name, async (t) => {
      const location = uri();
      const key = `counter-${randomUUID()}`;
      const updates = 12;
      const lines = (await Promise.all([1, 2, 3].map((id) => runCounter(location, key, id, updates)))).flat();
      const c = await openConsensus(location);
      try {
        const history = await c.scan(key, SeqNo.minimum(), SCAN_ALL);
        const parsed = history.map((h) => JSON.parse(Buffer.from(h.data).toString()) as { count: number; writer: string; n: number });
        // A chain: each version counts one more than the one before.
        parsed.forEach((p, i) => assert.equal(p.count, i + 1, `version ${history[i]!.seqno} counts ${p.count}`));
        const ids = parsed.map((p) => `${p.writer}/${p.n}`);
        assert.equal(new Set(ids).size, ids.length, 'an update was applied twice');
        const resolved = lines.filter((l) => l.indeterminate === undefined);
        t.diagnostic(`${history.length} versions, ${resolved.length} resolved, ${lines.length - resolved.length} indeterminate`);
        assert.equal(lines.length, 3 * 4 * updates);
        for (const r of resolved) {
          // Every resolved update sits at the version it reported, exactly once.
          const at = history.find((h) => String(h.seqno.value) === r.seqno);
          assert.equal(at === undefined ? undefined : Buffer.from(at.data).toString(), r.data, `${r.writer}/${r.n} reported ${r.seqno}`);
        }
        for (const l of lines.filter((x) => x.indeterminate !== undefined)) assert.ok(ids.filter((i) => i === `${l.writer}/${l.n}`).length <= 1);
        assert.ok(resolved.length >= 0.95 * lines.length, `only ${resolved.length} of ${lines.length} resolved`);
        assert.equal(history.length, new Set([...resolved.map((r) => `${r.writer}/${r.n}`), ...ids]).size);
      } finally {
        await c.close();
      }
    });
  }
});

describe('a 5-second PostgreSQL restart under load, with the default retry', () => {
  test('reads do not fail; writes succeed or reject Indeterminate, none lost', { timeout: 120_000 }, async (t) => {
    const url = pg.url();
    const handles = await Promise.all(Array.from({ length: 4 }, () => openConsensus(url)));
    const committed = new Map<string, bigint[]>();
    const readFailures: string[] = [];
    const writeFailures: string[] = [];
    let stop = false;
    const clients = Array.from({ length: 8 }, async (_, client) => {
      const c = handles[client % handles.length]!;
      const key = `restart-${client}`;
      let expected: SeqNo | undefined;
      let i = 0;
      while (!stop) {
        i++;
        try {
          const head = await c.head(key);
          if (head?.seqno.value !== expected?.value) expected = head?.seqno;
        } catch (err) {
          readFailures.push(String(err));
          await new Promise((r) => setTimeout(r, 100));
          continue;
        }
        const next = { seqno: expected === undefined ? new SeqNo(1) : expected.next(), data: Buffer.from(`${client}:${i}`) };
        try {
          if ((await c.compareAndSet(key, expected, next)) === CaSResult.Committed) {
            committed.set(key, [...(committed.get(key) ?? []), next.seqno.value]);
            expected = next.seqno;
          }
        } catch (err) {
          if (!(err instanceof ExternalError) || err.determinate) writeFailures.push(String(err));
          expected = undefined;
        }
        await new Promise((r) => setTimeout(r, 5));
      }
    });
    await new Promise((r) => setTimeout(r, 1000));
    await pg.halt();
    await new Promise((r) => setTimeout(r, 5000));
    await pg.resume();
    await new Promise((r) => setTimeout(r, 2000));
    stop = true;
    await Promise.all(clients);
    assert.deepEqual(readFailures, []);
    assert.deepEqual(writeFailures, []);
    let total = 0;
    for (const [key, seqnos] of committed) {
      const versions = (await handles[0]!.scan(key, SeqNo.minimum(), SCAN_ALL)).map((v) => v.seqno.value);
      for (const s of seqnos) assert.ok(versions.includes(s), `${key}: committed ${s} is lost`);
      total += seqnos.length;
    }
    t.diagnostic(`${total} commits`);
    assert.ok(total > 50, `only ${total} commits`);
    await Promise.all(handles.map((h) => h.close()));
  });
});

describe('watch across processes on SQLite', () => {
  test('a watcher sees the final head written by another process, never going back', async () => {
    const location = `sqlite:${join(dir, `${randomUUID()}.db`)}`;
    const watcher: Consensus = await openConsensus(location);
    const stop = new AbortController();
    const seen: bigint[] = [];
    const writes = 3 * 4 * 5;
    const watching = (async () => {
      for await (const head of watch(watcher, 'k', { signal: stop.signal })) seen.push(head.seqno.value);
    })();
    await Promise.all([1, 2, 3].map((id) => runCounter(location, 'k', id, 5)));
    const final = (await watcher.head('k'))!.seqno.value;
    const until = Date.now() + 10_000;
    while (seen.at(-1) !== final && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
    stop.abort();
    await watching;
    await watcher.close();
    assert.equal(final, BigInt(writes - 1));
    assert.equal(seen.at(-1), final, `last seen ${seen.at(-1)}, final head ${final}`);
    for (let i = 1; i < seen.length; i++) assert.ok(seen[i]! > seen[i - 1]!);
  });
});
