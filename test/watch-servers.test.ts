// watch() on the backends with notifications from their server (etcd's watch,
// PostgreSQL's LISTEN/NOTIFY): a watcher sees compareAndSets made by other
// processes, and still sees the final head across a server restart. The watchers
// poll at most once a minute, far beyond each test's wait, so every head they
// report after the first came from a notification.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { CHANGES, SeqNo, type ChangesMethod, openConsensus, watch, type Consensus } from 'persist-location';
import { adopt, exited } from './servers/child.js';
import { startEtcd, type EtcdCluster } from './servers/etcd.js';
import { startPostgres, type PostgresServer } from './servers/postgres.js';

/** PostgreSQL's native watch is asked for (notify=true); without it, watch polls. */
const NOTIFY = { notify: 'true' };

const CHILD_MS = 60_000;
/** How long a watcher may take to report the final head once it is written. */
const SEE_MS = 10_000;
/** Longer than any test waits: a watcher that reads again did so on a notification. */
const NEVER_POLL = { minPollMs: 60_000, maxPollMs: 60_000 };
const counterChild = new URL('./fixtures/counter-child.js', import.meta.url).pathname;

let etcd: EtcdCluster;
let pg: PostgresServer;

before(async () => {
  [etcd, pg] = await Promise.all([startEtcd(1), startPostgres()]);
});
after(async () => {
  await Promise.allSettled([etcd?.stop(), pg?.stop()]);
});

/** `processes` counter children (2 callers each, no faults) advancing `key` by `updates` each. */
async function countFrom(uri: string, key: string, processes: number, updates: number): Promise<void> {
  await Promise.all(
    Array.from({ length: processes }, (_, i) => {
      const child = adopt(spawn(process.execPath, [counterChild, uri, key, String(i + 1), '2', String(updates), '0'], { stdio: ['ignore', 'ignore', 'pipe'] }));
      let stderr = '';
      child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
      return exited(child, `counter child ${i + 1}`, CHILD_MS, () => stderr).then(() => assert.equal(child.exitCode, 0, `counter child ${i + 1} failed:\n${stderr}`));
    }),
  );
}

/** A watcher on `key` of `c`, recording every head it reports. */
function watching(c: Consensus, key: string) {
  const stop = new AbortController();
  const seen: bigint[] = [];
  const done = (async () => {
    for await (const head of watch(c, key, { signal: stop.signal, ...NEVER_POLL })) seen.push(head.seqno.value);
  })();
  return {
    seen,
    /** Waits (bounded) until the watcher reported `final`, then stops it and checks its heads only grew. */
    async finish(final: bigint) {
      const until = Date.now() + SEE_MS;
      while (seen.at(-1) !== final && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
      stop.abort();
      await done;
      assert.equal(seen.at(-1), final, `the watcher did not see the final head v${final} within ${SEE_MS} ms (last seen ${seen.at(-1)})`);
      for (let i = 1; i < seen.length; i++) assert.ok(seen[i]! > seen[i - 1]!, `went from v${seen[i - 1]} to v${seen[i]}`);
    },
  };
}

/** Waits (bounded) until `seen` has an entry, so the watcher has read once and subscribed. */
async function started(seen: readonly unknown[], what: string): Promise<void> {
  const until = Date.now() + SEE_MS;
  while (seen.length === 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 5));
  assert.ok(seen.length > 0, `${what}: the watcher reported no head within ${SEE_MS} ms`);
}

/** Writes `count` versions of `key` on `c` after its current head; resolves to the new head. */
async function advance(c: Consensus, key: string, count: number): Promise<bigint> {
  let head = (await c.head(key))?.seqno;
  for (let i = 0; i < count; i++) {
    const next = head === undefined ? new SeqNo(1) : head.next();
    assert.equal(await c.compareAndSet(key, head, { seqno: next, data: Buffer.from(`w${next.value}`) }), 'Committed');
    head = next;
  }
  return head!.value;
}

/** Watchers on `uri()` see the compareAndSets of 2 counter processes, up to the final head. */
async function acrossProcesses(uri: string): Promise<void> {
  const c = await openConsensus(uri);
  try {
    const w = watching(c, 'k');
    await countFrom(uri, 'k', 2, 6);
    // 2 processes x 2 callers x 6 updates, the first at seqno 0.
    assert.equal((await c.head('k'))?.seqno.value, 23n);
    await w.finish(23n);
  } finally {
    await c.close();
  }
}

/** A watcher on `uri` through a restart of its server (`restart`), with writes before and after. */
async function throughRestart(uri: string, restart: () => Promise<void>): Promise<void> {
  const [c, writer] = [await openConsensus(uri), await openConsensus(uri)];
  try {
    await advance(writer, 'k', 1);
    const w = watching(c, 'k');
    await started(w.seen, uri);
    await advance(writer, 'k', 2);
    await restart();
    const final = await advance(writer, 'k', 3);
    await w.finish(final);
  } finally {
    await Promise.all([c.close(), writer.close()]);
  }
}

describe('watch on etcd', () => {
  test('sees the compareAndSets of other processes, up to the final head, never going back', () => acrossProcesses(etcd.uri()));
  test('an etcd restart while watching: the watcher still sees the final head', () =>
    throughRestart(etcd.uri(), async () => {
      await etcd.kill(0);
      await etcd.restart(0);
    }));
});

describe('watch on PostgreSQL', () => {
  test('without notify=true: no triggers are made, the handle has no changes method, watch polls and sees a write', async () => {
    const schema = pg.schema('quiet');
    const c = await openConsensus(pg.url({ schema }));
    const stop = new AbortController();
    try {
      assert.equal(typeof (c as unknown as { [CHANGES]?: unknown })[CHANGES], 'undefined');
      const triggers = await pg.sql(
        `SELECT count(*)::int AS n FROM pg_trigger t JOIN pg_class r ON r.oid = t.tgrelid JOIN pg_namespace n ON n.oid = r.relnamespace WHERE n.nspname = $1`,
        [schema],
      );
      assert.equal(triggers.rows[0].n, 0);
      const seen = (async () => {
        for await (const h of watch(c, 'k', { signal: stop.signal })) if (h.seqno.value === 1n) return h;
        return undefined;
      })();
      await c.compareAndSet('k', undefined, { seqno: new SeqNo(1), data: Buffer.from('x') });
      assert.equal((await within(seen, 'the polled head v1'))?.seqno.value, 1n);
    } finally {
      stop.abort();
      await c.close();
    }
  });
  test('sees the compareAndSets of other processes, up to the final head, never going back', () => acrossProcesses(pg.url(NOTIFY)));
  test('a PostgreSQL restart while watching: the watcher still sees the final head', () =>
    throughRestart(pg.url(NOTIFY), async () => {
      await pg.halt();
      await pg.resume();
    }));

  test('two schemas in one database do not wake each other', async () => {
    const [schemaA, schemaB] = [pg.url(NOTIFY), pg.url(NOTIFY)];
    const [a, a2, b] = await Promise.all([openConsensus(schemaA), openConsensus(schemaA), openConsensus(schemaB)]);
    const stop = new AbortController();
    try {
      const method = (a as unknown as { [CHANGES]: ChangesMethod })[CHANGES].bind(a);
      const changes = (key: string) => method(key, stop.signal)[Symbol.asyncIterator]();
      const [k, marker] = [changes('k'), changes('marker')];
      // The tick of the listener connecting (nothing is known about changes before it).
      await Promise.all([within(k.next(), 'the first tick of k'), within(marker.next(), 'the first tick of marker')]);
      await advance(b, 'k', 5);
      // One connection delivers notifications in commit order: once a's listener has
      // the marker's, it has had any that b's writes sent it.
      await advance(a2, 'marker', 1);
      await within(marker.next(), 'the tick of marker written on schema A');
      let ticked = false;
      const next = k.next().then(() => (ticked = true));
      await new Promise((r) => setImmediate(r));
      assert.equal(ticked, false, 'writes to k on schema B ticked a watcher of k on schema A');
      await advance(a2, 'k', 1);
      await within(next, 'the tick of k written on schema A');
    } finally {
      stop.abort();
      await Promise.all([a, a2, b].map((c) => c.close()));
    }
  });
});

/** `p`, or a rejection naming `what` after {@link SEE_MS}. */
async function within<T>(p: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what} did not come within ${SEE_MS} ms`)), SEE_MS)));
  try {
    return await Promise.race([p, late]);
  } finally {
    clearTimeout(timer);
  }
}
