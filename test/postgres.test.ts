import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { createServer, type Socket } from 'node:net';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import {
  CaSResult,
  Determinate,
  ErrorCode,
  ExternalError,
  firstOf,
  Indeterminate,
  mapError,
  openConsensus,
  SCAN_ALL,
  SeqNo,
  type Consensus,
  type ErrorTable,
  type Exposure,
} from 'persist-location';
import { encodeErrors, mapPostgresError, PostgresConsensus, postgresErrors, postgresOptionsFromUri, statementTimedOut } from 'persist-location/postgres';
import { checkLinearizable, consensusImplTest, hostileKeys, stressConsensus, type HistoryOp } from 'persist-location/testing';
import { finalReads, parseStressHistory } from './fixtures/stress-history.js';
import { freePort } from './servers/ports.js';
import { tripwireProxy } from './servers/proxy.js';
import { startPostgres, type PostgresServer } from './servers/postgres.js';

let server: PostgresServer;
const opened: Consensus[] = [];

before(async () => {
  server = await startPostgres();
});

after(async () => {
  await Promise.all(opened.splice(0).map((c) => c.close().catch(() => {})));
  await server?.stop();
});

async function open(options: Partial<Parameters<typeof PostgresConsensus.open>[0]> = {}): Promise<PostgresConsensus> {
  const c = await PostgresConsensus.open({ connectionString: server.baseUrl, schema: server.schema(), ...options });
  opened.push(c);
  return c;
}

const bytes = (s: string) => Buffer.from(s);
const text = (b: Uint8Array) => Buffer.from(b).toString();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** `promise`, or a failure naming what did not happen if it is still pending after `ms`. */
async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const hung = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not happen within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, hung]);
  } finally {
    clearTimeout(timer);
  }
}

/** A server error as pg reports it. */
function dbError(code: string, severity = 'ERROR'): Error {
  const err = new pg.DatabaseError(`synthetic ${code}`, 0, 'error');
  err.code = code;
  err.severity = severity;
  return err;
}

function sysError(code: string, message = code): Error {
  return Object.assign(new Error(message), { code });
}

test('mapPostgresError: the documented table, on synthetic driver errors', () => {
  // Where the failure struck, as PostgresConsensus maps it there.
  type Where = 'connect' | 'encode' | 'query' | 'past the statement timeout';
  const mapAt: Record<Where, [ErrorTable, Exposure]> = {
    connect: [postgresErrors, 'not-sent'],
    encode: [encodeErrors, 'not-sent'],
    query: [postgresErrors, 'sent'],
    'past the statement timeout': [firstOf(statementTimedOut, postgresErrors), 'sent'],
  };
  const cases: [unknown, Where, boolean, string][] = [
    // Nothing was sent while connecting: always Determinate.
    [sysError('ECONNREFUSED'), 'connect', true, ErrorCode.Unavailable],
    [dbError('57P03', 'FATAL'), 'connect', true, ErrorCode.Unavailable],
    [new Error('timeout exceeded when trying to connect'), 'connect', true, ErrorCode.Unavailable],
    [new Error('Connection terminated due to connection timeout'), 'connect', true, ErrorCode.Unavailable],
    [dbError('53300', 'FATAL'), 'connect', true, ErrorCode.Unavailable],
    [dbError('28P01', 'FATAL'), 'connect', true, ErrorCode.PermissionDenied],
    [dbError('28000', 'FATAL'), 'connect', true, ErrorCode.PermissionDenied],
    [dbError('3D000', 'FATAL'), 'connect', true, ErrorCode.NotFound],
    // Failing to build the statement in the client: nothing was sent.
    [new RangeError('Invalid string length'), 'encode', true, ErrorCode.ResourceExhausted],
    [new TypeError('circular reference'), 'encode', true, ErrorCode.InvalidArgument],
    // After sending: Determinate only when the SQLSTATE proves a rollback.
    [dbError('40001'), 'query', true, ErrorCode.Aborted],
    [dbError('40P01'), 'query', true, ErrorCode.Aborted],
    [dbError('28P01'), 'query', true, ErrorCode.PermissionDenied],
    [dbError('42501'), 'query', true, ErrorCode.PermissionDenied],
    [dbError('42P01'), 'query', true, ErrorCode.NotFound],
    [dbError('3F000'), 'query', true, ErrorCode.NotFound],
    [dbError('22021'), 'query', true, ErrorCode.InvalidArgument],
    [dbError('23505'), 'query', true, ErrorCode.InvalidArgument],
    [dbError('42601'), 'query', true, ErrorCode.InvalidArgument],
    [dbError('57014'), 'past the statement timeout', false, ErrorCode.Timeout],
    [dbError('57014'), 'query', false, ErrorCode.Cancelled],
    [dbError('57P01', 'FATAL'), 'query', false, ErrorCode.Unavailable],
    [dbError('08006', 'FATAL'), 'query', false, ErrorCode.Unavailable],
    [dbError('40003'), 'query', false, ErrorCode.Unknown],
    [dbError('XX000'), 'query', false, ErrorCode.Unknown],
    [dbError('53100'), 'query', false, ErrorCode.Unknown],
    [new Error('Connection terminated unexpectedly'), 'query', false, ErrorCode.Unavailable],
    [sysError('ECONNRESET'), 'query', false, ErrorCode.Unavailable],
    // EPIPE is five capitals like a SQLSTATE, but it is an errno.
    [sysError('EPIPE'), 'query', false, ErrorCode.Unavailable],
    ['a string', 'query', false, ErrorCode.Unavailable],
  ];
  for (const [err, where, determinate, code] of cases) {
    const [table, exposure] = mapAt[where];
    const mapped = mapError(err, table, { what: 'PostgresConsensus(test): op', exposure });
    const label = `${String((err as { code?: unknown }).code ?? err)} in ${where}`;
    assert.ok(mapped instanceof (determinate ? Determinate : Indeterminate), `${label}: ${mapped.name}`);
    assert.equal(mapped.code, code, label);
    assert.equal(mapped.cause, err, label);
    assert.equal(mapped.isTimeout(), code === ErrorCode.Timeout, label);
    assert.match(mapped.message, /^PostgresConsensus\(test\): op: /);
  }
  const passthrough = new Indeterminate(ErrorCode.Timeout, 'x');
  assert.equal(mapPostgresError(passthrough, { what: 'x', exposure: 'sent' }), passthrough);
  const viaShorthand = mapPostgresError(dbError('40001'), { what: 'PostgresConsensus(test): op', exposure: 'sent' });
  assert.ok(viaShorthand instanceof Determinate && viaShorthand.code === ErrorCode.Aborted, 'mapPostgresError is mapError with postgresErrors');
});

test('URI: own parameters are removed from the driver string, others rejected, schema validated', async () => {
  const loc = (uri: string) => {
    const [, rest] = uri.split('://') as [string, string];
    const [head, query = ''] = rest.split('?') as [string, string?];
    const slash = head.indexOf('/');
    return {
      scheme: 'postgres',
      authority: slash < 0 ? head : head.slice(0, slash),
      path: slash < 0 ? '' : decodeURIComponent(head.slice(slash)),
      params: new URLSearchParams(query),
      display: 'postgres://redacted',
    };
  };
  const o = postgresOptionsFromUri(
    loc('postgres://u:pw@h:5/db?schema=s1&poolSize=3&connectTimeoutMs=7&statementTimeoutMs=9&sslmode=disable&application_name=a'),
  );
  assert.equal(o.connectionString, 'postgres://u:pw@h:5/db?sslmode=disable&application_name=a');
  assert.deepEqual([o.schema, o.poolSize, o.connectTimeoutMs, o.statementTimeoutMs], ['s1', 3, 7, 9]);
  const d = postgresOptionsFromUri(loc('postgres://h/db?connect_timeout=2'));
  assert.equal(d.schema, undefined, 'no schema parameter: PostgresConsensus.open uses the default');
  assert.equal(d.connectTimeoutMs, 2000);

  const base = `postgres://u:secret@127.0.0.1:${await freePort()}/db`;
  for (const bad of ['x";DROP SCHEMA public;--', 'a b', '1abc', 'pg_catalog', 'x'.repeat(64), '']) {
    await assert.rejects(openConsensus(`${base}?schema=${encodeURIComponent(bad)}`), (err: unknown) => {
      assert.ok(err instanceof Determinate, String(err));
      assert.equal(err.code, ErrorCode.InvalidArgument);
      assert.doesNotMatch(err.message, /secret/);
      return true;
    });
  }
  await assert.rejects(openConsensus(`${base}?bogus=1`), (err: unknown) => {
    assert.ok(err instanceof Determinate && err.code === ErrorCode.InvalidArgument);
    assert.match(err.message, /bogus.*schema/s);
    assert.doesNotMatch(err.message, /secret/);
    return true;
  });
  await assert.rejects(openConsensus(`${base}?poolSize=0`), { name: 'Determinate', code: ErrorCode.InvalidArgument });
});

test('a bad connection URI rejects at once, Determinate InvalidArgument naming the problem, before connecting, never echoing the password', async () => {
  // Every URI with a usable host and port points at this listener: none may reach it.
  const sockets: Socket[] = [];
  const listener = createServer((socket) => void sockets.push(socket));
  await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve));
  const at = `u:secret@127.0.0.1:${(listener.address() as { port: number }).port}`;
  const cases: [string, RegExp][] = [
    ['postgres://u:secret@127.0.0.1/db?port=abc', /port must be an integer in 1-65535, got 'abc'/],
    ['postgres://u:secret@127.0.0.1/db?port=99999', /port must be an integer in 1-65535, got '99999'/],
    ['postgres://u:secret@127.0.0.1/db?port=0', /port must be an integer in 1-65535, got '0'/],
    ['postgres://u:secret@127.0.0.1:99999/db', /port must be an integer in 1-65535, got '99999'/],
    ['postgres://u:secret@127.0.0.1:5x/db', /port must be an integer in 1-65535/],
    ['postgres://u:secret@[::1/db', /unclosed '\['/],
    ['postgres://u:secret@[::1:5432/db', /unclosed '\['/],
    ['postgres://u:secret@[not-ipv6]:5432/db', /host/],
    [`postgres://u:%E0%A4@127.0.0.1:5432/db`, /percent-encoding/],
    [`postgres://${at}/db?sslrootcert=/nonexistent`, /sslrootcert file '\/nonexistent'.*ENOENT/],
    [`postgres://${at}/db?sslcert=/nonexistent/cert&sslkey=/nonexistent/key`, /sslcert file '\/nonexistent\/cert'.*ENOENT/],
    [`postgres://${at}/db?sslcert=/nonexistent/cert`, /needs both sslcert= and sslkey= \(got only sslcert=\)/],
    [`postgres://${at}/db?sslcert=${encodeURIComponent(fileURLToPath(import.meta.url))}&sslkey=/`, /sslkey file '\/'.*EISDIR/],
    [`postgres://${at}/db?sslmode=bogus`, /sslmode must be one of .*verify-full.*, got 'bogus'/],
    [`postgres://${at}/db?host=h1,h2`, /one host/],
  ];
  try {
    for (const [uri, problem] of cases) {
      const attempts: [string, () => Promise<Consensus>][] = [
        ['openConsensus', () => openConsensus(uri)],
        ['PostgresConsensus.open', () => PostgresConsensus.open({ connectionString: uri })],
      ];
      for (const [how, attempt] of attempts) {
        const label = `${how}(${uri.replace('secret', '***')})`;
        const err = await within(
          attempt().then(
            async (c) => {
              await c.close();
              return undefined;
            },
            (e: unknown) => e,
          ),
          5000,
          `${label} rejecting`,
        );
        assert.ok(err instanceof Determinate, `${label}: ${String(err)}`);
        assert.equal(err.code, ErrorCode.InvalidArgument, label);
        assert.match(err.message, problem, label);
        assert.doesNotMatch(err.message, /secret/, label);
      }
    }
    await within(
      assert.rejects(PostgresConsensus.open({ connectionString: 'host=127.0.0.1 port=5432' }), (err: unknown) => {
        assert.ok(err instanceof Determinate && err.code === ErrorCode.InvalidArgument, String(err));
        assert.match(err.message, /postgres:\/\//);
        return true;
      }),
      5000,
      'a keyword/value connection string rejecting',
    );
    assert.equal(sockets.length, 0, 'a bad URI reached the server');
  } finally {
    for (const s of sockets) s.destroy();
    await new Promise((resolve) => listener.close(resolve));
  }
});

test('PostgresConsensus passes the conformance suite (a fresh schema per open)', async () => {
  await consensusImplTest(async () => openConsensus(server.url()));
});

test('postgresql:// opens the same location as postgres://, in the schema it names', async () => {
  const url = server.url();
  const a = await openConsensus(url);
  const b = await openConsensus(url.replace(/^postgres:/, 'postgresql:'));
  opened.push(a, b);
  assert.equal(await a.compareAndSet('k', undefined, { seqno: new SeqNo(1), data: bytes('one') }), CaSResult.Committed);
  assert.equal(text((await b.head('k'))!.data), 'one');
  const schema = new URL(url).searchParams.get('schema');
  const { rows } = await server.sql(`SELECT key, seqno FROM "${schema}".versions`);
  assert.deepEqual(rows, [{ key: 'k', seqno: '1' }]);
  const columns = await server.sql(
    `SELECT table_name, collation_name FROM information_schema.columns WHERE table_schema = $1 AND column_name = 'key' ORDER BY 1`,
    [schema],
  );
  assert.deepEqual(columns.rows, [
    { table_name: 'heads', collation_name: 'C' },
    { table_name: 'versions', collation_name: 'C' },
  ]);
});

test('many handles creating the same schema at once all succeed', async () => {
  const url = server.url();
  const handles = await Promise.all(Array.from({ length: 12 }, () => openConsensus(url)));
  opened.push(...handles);
  const results = await Promise.all(
    handles.map((h, i) => h.compareAndSet('race', undefined, { seqno: new SeqNo(i), data: bytes(`h${i}`) })),
  );
  assert.equal(results.filter((r) => r === CaSResult.Committed).length, 1);
});

test('concurrent writers expecting the same head: exactly one commits, whatever seqno each picks', async () => {
  const schema = server.schema();
  const handles = await Promise.all(Array.from({ length: 4 }, () => open({ schema, poolSize: 8 })));
  const first = handles[0]!;
  await first.compareAndSet('k', undefined, { seqno: new SeqNo(5), data: bytes('five') });
  for (let round = 0; round < 20; round++) {
    const head = (await first.head('k'))!.seqno;
    const results = await Promise.all(
      Array.from({ length: 16 }, (_, i) =>
        handles[i % 4]!.compareAndSet('k', head, { seqno: new SeqNo(head.value + 1n + BigInt(i)), data: bytes(`r${round}w${i}`) }),
      ),
    );
    assert.equal(results.filter((r) => r === CaSResult.Committed).length, 1, `round ${round}: ${results.join(' ')}`);
  }
  const versions = await first.scan('k', SeqNo.minimum(), SCAN_ALL);
  assert.equal(versions.length, 21);
});

test('compareAndSets grouped into one statement each keep their own outcome', async () => {
  // One CaS statement in flight: the first call goes alone, the other 59 queue and leave as one batch.
  const c = await open({ poolSize: 1 });
  for (let i = 0; i < 20; i++) await c.compareAndSet(`b${i}`, undefined, { seqno: new SeqNo(3), data: bytes('old') });
  const calls = Array.from({ length: 60 }, (_, i) => {
    const key = `b${i % 40}`;
    const exists = i % 40 < 20;
    // Existing keys: expect the head (even i) or a wrong seqno (odd i); new keys: expect nothing (i < 40) or something.
    const expected = exists ? (i % 2 === 0 ? new SeqNo(3) : new SeqNo(2)) : i < 40 ? undefined : new SeqNo(1);
    const want = exists ? (i % 2 === 0 && i < 40 ? CaSResult.Committed : CaSResult.ExpectationMismatch) : i < 40 ? CaSResult.Committed : CaSResult.ExpectationMismatch;
    return { key, expected, want, data: `d${i}`, promise: c.compareAndSet(key, expected, { seqno: new SeqNo(5 + i), data: bytes(`d${i}`) }) };
  });
  const results = await Promise.all(calls.map((x) => x.promise));
  const committed = new Map<string, string>();
  calls.forEach((x, i) => {
    // i >= 40 repeats a key of i - 40: it runs after that one, in a later batch.
    const want = i >= 40 && x.expected !== undefined && x.expected.value === 3n ? CaSResult.ExpectationMismatch : x.want;
    assert.equal(results[i], want, `call ${i} on ${x.key}`);
    if (results[i] === CaSResult.Committed) committed.set(x.key, x.data);
  });
  for (let k = 0; k < 40; k++) {
    const head = await c.head(`b${k}`);
    const want = committed.get(`b${k}`) ?? 'old';
    assert.equal(text(head!.data), want, `b${k}`);
  }
});

test('22 concurrent 16 MiB compareAndSets on empty keys all commit with the default settings', { timeout: 300_000 }, async () => {
  // Four are sent at once and the rest queue: grouped, they would outgrow what the
  // client can build, so each goes alone and the queue has to drain.
  const c = await open();
  const values = Array.from({ length: 22 }, () => Buffer.alloc(16 * 1024 * 1024, randomBytes(4099)));
  const results = await within(
    Promise.allSettled(values.map((data, i) => c.compareAndSet(`big${i}`, undefined, { seqno: new SeqNo(1), data }))),
    240_000,
    'the 22 compareAndSets settling',
  );
  assert.deepEqual(
    results.map((r) => (r.status === 'fulfilled' ? r.value : String(r.reason))),
    values.map(() => CaSResult.Committed),
  );
  for (const [i, data] of values.entries()) {
    const head = await c.head(`big${i}`);
    assert.equal(head?.seqno.value, 1n, `big${i}`);
    assert.ok(Buffer.from(head.data).equals(data), `big${i} holds other bytes than were written`);
  }
});

test('compareAndSet commits the bytes it was given, not what the caller writes into its array afterwards (alone and grouped)', async () => {
  // One statement in flight: the first call is sent alone, the others queue and leave as one group.
  const c = await open({ poolSize: 1, casConcurrency: 1 });
  const calls = Array.from({ length: 6 }, (_, i) => {
    const data = i % 2 === 0 ? new Uint8Array(Buffer.from(`call-${i}`)) : Buffer.from(`call-${i}`);
    const next = { seqno: new SeqNo(7), data };
    return { next, result: c.compareAndSet(`mut${i}`, undefined, next) };
  });
  for (const { next } of calls) next.data.fill(0x21);
  const results = await within(Promise.all(calls.map((x) => x.result)), 30_000, 'the compareAndSets settling');
  assert.deepEqual(results, calls.map(() => CaSResult.Committed));
  for (const [i, { next }] of calls.entries()) {
    const head = (await c.head(`mut${i}`))!;
    assert.equal(text(head.data), `call-${i}`, `mut${i}`);
    assert.deepEqual(head.seqno, new SeqNo(7));
    assert.notEqual(head.seqno, next.seqno, 'the caller\'s SeqNo handed back');
  }
});

test('a grouped compareAndSet whose statement the driver cannot build fails Determinate, and nothing is written', async () => {
  // Fault injection where the engine refuses the buffer of the grouped statement's
  // values (the binary bytea[] parameter, encoded before anything is sent): as if it
  // outgrew the largest buffer.
  const marked = (s: string) => Buffer.alloc(4093, s);
  const groupedValuesBytes = 20 + 2 * (4 + 4093);
  const allocUnsafe = Buffer.allocUnsafe;
  Buffer.allocUnsafe = (size: number) => {
    if (size === groupedValuesBytes && new Error().stack?.includes('binaryArray')) throw new RangeError('Array buffer allocation failed');
    return allocUnsafe(size);
  };
  const c = await open({ poolSize: 1, casConcurrency: 1 });
  try {
    const lone = c.compareAndSet('lone', undefined, { seqno: new SeqNo(1), data: marked('sent alone') });
    // Calls made in one turn leave together; this one is on its way before the others come.
    await new Promise((resolve) => setImmediate(resolve));
    const grouped = ['g1', 'g2'].map((key) => c.compareAndSet(key, undefined, { seqno: new SeqNo(1), data: marked(key) }));
    assert.equal(await lone, CaSResult.Committed);
    for (const result of grouped) {
      await assert.rejects(result, (err: unknown) => {
        assert.ok(err instanceof Determinate, String(err));
        assert.equal(err.code, ErrorCode.ResourceExhausted);
        assert.match(err.message, /not sent/);
        return true;
      });
    }
  } finally {
    Buffer.allocUnsafe = allocUnsafe;
  }
  assert.equal(await c.head('g1'), undefined);
  assert.equal(await c.head('g2'), undefined);
  // The connection that failed to build the statement is not reused in a confused state.
  const again = await Promise.all(['g1', 'g2', 'g3'].map((key) => c.compareAndSet(key, undefined, { seqno: new SeqNo(2), data: bytes(key) })));
  assert.deepEqual(again, [CaSResult.Committed, CaSResult.Committed, CaSResult.Committed]);
  assert.equal(text((await c.head('g2'))!.data), 'g2');
});

test('linearizable under concurrent clients on several handles in one process (with group commit)', async () => {
  // One CaS statement in flight per handle, so the handle's four clients' calls are grouped.
  const url = server.url({ poolSize: '4', casConcurrency: '1' });
  const report = await stressConsensus(() => openConsensus(url), { ops: 3000, keys: 4, clients: 16, handles: 4 });
  assert.deepEqual(report.errors, []);
  assert.equal(report.verdict, 'ok', JSON.stringify(report.violations.slice(0, 1), bigintJson));
  assert.ok(report.ok);
  assert.ok(report.committed > 100, `only ${report.committed} commits`);
  assert.ok(report.mismatches > 0, 'the run had no contention');
});

test('linearizable across processes sharing one location (merged histories, common clock)', async () => {
  // A fresh schema: the children also race to create it.
  const url = server.url({ poolSize: '3' });
  const prefix = `xproc-${randomUUID()}-`;
  const child = new URL('./fixtures/stress-child.js', import.meta.url).pathname;
  const outputs = await Promise.all(
    [0, 1, 2].map(
      (i) =>
        new Promise<string>((resolve, reject) => {
          const args = ['--uri', url, '--handles', '2', '--clients', '6', '--ops', '800', '--keys', '4', '--prefix', prefix, '--client-base', String(i * 1000)];
          const proc = spawn(process.execPath, [child, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
          let out = '';
          let err = '';
          proc.stdout.on('data', (d: Buffer) => (out += d.toString()));
          proc.stderr.on('data', (d: Buffer) => (err += d.toString()));
          proc.on('error', reject);
          proc.on('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`child ${i} exited with ${code}: ${err}`))));
        }),
    ),
  );
  const history = outputs.flatMap((out, i) => parseStressHistory(out, false, `child ${i}`));
  const reader = await openConsensus(url);
  opened.push(reader);
  history.push(...(await finalReads(reader, [0, 1, 2, 3].map((k) => `${prefix}${k}`))));
  const commits = history.filter((op) => op.op === 'compareAndSet' && op.result.type === 'ok' && op.result.value === 'Committed');
  assert.ok(commits.length > 50, `only ${commits.length} commits`);
  assert.equal(new Set(commits.map((op) => Math.floor(op.client! / 1000))).size, 3, 'every process committed');
  const check = checkLinearizable(history);
  assert.equal(check.verdict, 'ok', JSON.stringify(check.violations.slice(0, 1), bigintJson));
});

test('server errors and timeouts map to the right kinds against the real server', async () => {
  const refused = `postgres://postgres:x@127.0.0.1:${await freePort()}/postgres`;
  await assert.rejects(PostgresConsensus.open({ connectionString: refused, connectTimeoutMs: 2000 }), {
    name: 'Determinate',
    code: ErrorCode.Unavailable,
  });
  const wrong = new URL(server.baseUrl);
  wrong.password = 'wrong-password';
  await assert.rejects(PostgresConsensus.open({ connectionString: wrong.toString(), schema: server.schema() }), (err: unknown) => {
    assert.ok(err instanceof Determinate, String(err));
    assert.equal(err.code, ErrorCode.PermissionDenied);
    assert.doesNotMatch(err.message, /wrong-password/);
    return true;
  });

  const c = await open({ poolSize: 1, statementTimeoutMs: 500 });
  await c.compareAndSet('locked', undefined, { seqno: new SeqNo(1), data: bytes('one') });
  const locker = new pg.Client({ connectionString: server.baseUrl });
  let patient: PostgresConsensus | undefined;
  await locker.connect();
  try {
    await locker.query('BEGIN');
    await locker.query(`SELECT * FROM "${c.schema}".heads WHERE key = 'locked' FOR UPDATE`);

    // The statement waits on the lock until the statement timeout.
    await assert.rejects(c.compareAndSet('locked', new SeqNo(1), { seqno: new SeqNo(2), data: bytes('two') }), (err: unknown) => {
      assert.ok(err instanceof Indeterminate, String(err));
      assert.ok(err.isTimeout());
      return true;
    });

    // Aborted after it was sent: Indeterminate. The next call queues for the
    // only connection, so aborting it is provably before sending. (A long statement
    // timeout here, so a slow machine cannot turn the aborts into timeouts.)
    patient = await open({ schema: c.schema, poolSize: 1, statementTimeoutMs: 60_000 });
    const sent = new AbortController();
    const waiting = new AbortController();
    const first = patient.compareAndSet('locked', new SeqNo(1), { seqno: new SeqNo(3), data: bytes('three') }, { signal: sent.signal });
    await sleep(100);
    const second = patient.head('locked', { signal: waiting.signal });
    await sleep(100);
    waiting.abort();
    await assert.rejects(second, { name: 'Determinate', code: ErrorCode.Cancelled });
    sent.abort();
    await assert.rejects(first, { name: 'Indeterminate', code: ErrorCode.Cancelled });
  } finally {
    await locker.query('ROLLBACK').catch(() => {});
    await locker.end();
  }
  // Closing waits for the abandoned statement to finish, so the reads below see its outcome.
  await patient?.close();
  // The server cancelled the timed-out statement itself; the aborted one was only
  // abandoned by its caller, so it may have committed once the lock was released.
  const head = (await c.head('locked'))!.seqno;
  assert.ok(head.value === 1n || head.value === 3n, `head ${head}`);
  // The pool is healthy again.
  assert.equal(await c.compareAndSet('locked', head, { seqno: new SeqNo(4), data: bytes('four') }), CaSResult.Committed);
});

/** Runs `body` while another connection holds the row lock of `key`'s head; `unlock` ends that transaction early. */
async function whileLocked<T>(schema: string, key: string, body: (unlock: () => Promise<void>) => Promise<T>): Promise<T> {
  const locker = new pg.Client({ connectionString: server.baseUrl });
  await locker.connect();
  try {
    await locker.query('BEGIN');
    await locker.query(`SELECT * FROM "${schema}".heads WHERE key = $1 FOR UPDATE`, [key]);
    return await body(async () => {
      await locker.query('ROLLBACK');
    });
  } finally {
    await locker.query('ROLLBACK').catch(() => {});
    await locker.end();
  }
}

/** Waits until `n` statements on `schema` wait on a lock (bounded: a hang fails the test). */
async function lockWaiters(schema: string, n: number): Promise<void> {
  for (let i = 0; i < 600; i++) {
    const { rows } = await server.sql(
      `SELECT count(*)::int AS n FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND position($1 IN query) > 0`,
      [schema],
    );
    if ((rows[0] as { n: number }).n >= n) return;
    await sleep(20);
  }
  throw new Error(`fewer than ${n} backends ever waited on a lock`);
}

test('a server that accepts connections but never answers fails the open Determinate Unavailable after the connect timeout', { timeout: 60_000 }, async () => {
  const sockets: Socket[] = [];
  const silent = createServer((socket) => void sockets.push(socket));
  await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
  const { port } = silent.address() as { port: number };
  try {
    await assert.rejects(
      PostgresConsensus.open({ connectionString: `postgres://u:p@127.0.0.1:${port}/db`, connectTimeoutMs: 300 }),
      (err: unknown) => {
        assert.ok(err instanceof Determinate, String(err));
        assert.equal(err.code, ErrorCode.Unavailable);
        return true;
      },
    );
    assert.ok(sockets.length > 0, 'the client never connected');
  } finally {
    for (const s of sockets) s.destroy();
    await new Promise((resolve) => silent.close(resolve));
  }
});

test('close returns within its budget even if the driver never finishes ending the pool', async () => {
  const c = await PostgresConsensus.open({ connectionString: server.baseUrl, schema: server.schema(), connectTimeoutMs: 200, statementTimeoutMs: 300 });
  await c.compareAndSet('k', undefined, { seqno: new SeqNo(1), data: bytes('one') });
  const end = pg.Pool.prototype.end;
  // The pool really ends (its connections close); only the promise never settles.
  pg.Pool.prototype.end = function (this: pg.Pool) {
    void (end as () => Promise<void>).call(this);
    return new Promise<void>(() => {});
  } as typeof end;
  try {
    await within(c.close(), 10_000, 'close of a handle whose pool never reports it ended');
  } finally {
    pg.Pool.prototype.end = end;
  }
});

test('truncate racing two commits on its key deletes every version below its seqno', async () => {
  // The truncate's snapshot predates v6 and v7, and it queues on the head row until
  // they commit. (One transaction stands for two compareAndSets 5→6→7 landing while
  // the truncate waits: the stored state is the same.)
  const c = await open({ poolSize: 4 });
  await c.compareAndSet('t', undefined, { seqno: new SeqNo(5), data: bytes('five') });
  const locker = new pg.Client({ connectionString: server.baseUrl });
  await locker.connect();
  try {
    await locker.query('BEGIN');
    await locker.query(`UPDATE "${c.schema}".heads SET seqno = 7 WHERE key = 't'`);
    await locker.query(`INSERT INTO "${c.schema}".versions (key, seqno, data) VALUES ('t', 6, 'six'), ('t', 7, 'seven')`);
    const truncated = c.truncate('t', new SeqNo(7));
    await lockWaiters(c.schema, 1);
    await locker.query('COMMIT');
    assert.equal(await truncated, 2, 'v5 and v6 deleted');
  } finally {
    await locker.query('ROLLBACK').catch(() => {});
    await locker.end();
  }
  assert.deepEqual((await c.scan('t', SeqNo.minimum(), SCAN_ALL)).map((v) => v.seqno.value), [7n]);
});

test('a compareAndSet queued behind a stuck one on its key fails Determinate within the connect budget', async () => {
  // The first call waits on a row lock for its whole statement timeout; the others
  // (same key, so not in its batch) must not wait for it, one statement timeout each.
  const c = await open({ poolSize: 4, connectTimeoutMs: 300, statementTimeoutMs: 20_000 });
  await c.compareAndSet('q', undefined, { seqno: new SeqNo(1), data: bytes('one') });
  await whileLocked(c.schema, 'q', async (unlock) => {
    const first = c.compareAndSet('q', new SeqNo(1), { seqno: new SeqNo(2), data: bytes('two') });
    first.catch(() => {}); // awaited below
    const queued = [3, 4, 5].map((n) => c.compareAndSet('q', new SeqNo(1), { seqno: new SeqNo(n), data: bytes(`v${n}`) }));
    for (const q of queued) await assert.rejects(q, { name: 'Determinate', code: ErrorCode.Unavailable });
    await unlock();
    assert.equal(await first, CaSResult.Committed);
  });
  assert.deepEqual((await c.scan('q', SeqNo.minimum(), SCAN_ALL)).map((v) => v.seqno.value), [1n, 2n]);
});

test('calls waiting for a pooled connection, with a signal and without, are bounded by the connect budget and never sent', async () => {
  // The only connection is held by a compareAndSet waiting on a row lock. A call
  // without a signal waits on the pool alone, one with a signal races it: both give
  // up Determinate after connectTimeoutMs, and an abort while waiting is Determinate.
  const c = await open({ poolSize: 1, connectTimeoutMs: 300, statementTimeoutMs: 20_000 });
  await c.compareAndSet('held', undefined, { seqno: new SeqNo(1), data: bytes('one') });
  await whileLocked(c.schema, 'held', async (unlock) => {
    const holding = c.compareAndSet('held', new SeqNo(1), { seqno: new SeqNo(2), data: bytes('two') });
    holding.catch(() => {}); // awaited below
    await lockWaiters(c.schema, 1);
    const quiet = new AbortController();
    const waits = [
      c.head('held'),
      c.head('held', { signal: quiet.signal }),
      c.scan('held', SeqNo.minimum(), SCAN_ALL),
      c.compareAndSet('other', undefined, { seqno: new SeqNo(1), data: bytes('x') }, { signal: quiet.signal }),
    ];
    for (const w of waits) await within(assert.rejects(w, { name: 'Determinate', code: ErrorCode.Unavailable }), 10_000, 'giving up on the pool');
    const leaving = new AbortController();
    const aborted = c.head('held', { signal: leaving.signal });
    leaving.abort();
    await assert.rejects(aborted, { name: 'Determinate', code: ErrorCode.Cancelled });
    await unlock();
    assert.equal(await within(holding, 10_000, 'the held compareAndSet'), CaSResult.Committed);
  });
  assert.equal(await c.head('other'), undefined);
  assert.equal((await c.head('held'))!.seqno.value, 2n);
});

test('connections kept between statements: waiting callers get them, and one the server ends while kept is never handed out', async () => {
  // One connection, kept by the handle after each statement: 40 calls at once all
  // need it in turn, and each must get it from the one before within the connect
  // budget (a connection kept while a caller waits in the pool would leave that
  // caller to time out).
  const app = `kept-${randomUUID().slice(0, 8)}`;
  const c = await open({ connectionString: `${server.baseUrl}?application_name=${app}`, poolSize: 1, connectTimeoutMs: 2000 });
  const calls = Array.from({ length: 40 }, (_, i) =>
    i % 2 === 0 ? c.compareAndSet(`kept${i}`, undefined, { seqno: new SeqNo(1), data: bytes(`v${i}`) }) : c.head(`kept${i - 1}`),
  );
  const results = await within(Promise.all(calls), 20_000, 'forty calls sharing one connection');
  for (let i = 0; i < 40; i += 2) assert.equal(results[i], CaSResult.Committed, `kept${i}`);
  // The server ends the kept connection; the handle notices (its socket closes) and
  // the next call gets a new connection rather than the dead one.
  const ended = await server.sql(`SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity WHERE application_name = $1`, [app]);
  assert.equal(ended.rows.length, 1, 'the one kept connection was found on the server');
  await within(
    (async () => {
      while ((await server.sql(`SELECT 1 FROM pg_stat_activity WHERE application_name = $1`, [app])).rows.length > 0) await sleep(10);
    })(),
    10_000,
    'the ended connection leaving pg_stat_activity',
  );
  await sleep(50); // its closed socket reaching the handle
  assert.equal(await c.compareAndSet('kept0', new SeqNo(1), { seqno: new SeqNo(2), data: bytes('after') }), CaSResult.Committed);
  assert.equal(text((await c.head('kept0'))!.data), 'after');
});

test('compareAndSets queued behind statements that keep finishing all wait their turn, however long the queue', async () => {
  // Each statement takes a while and goes alone (as large values do): the queue as a
  // whole outlasts the connect budget, but it never stands still for that long.
  const c = await open({ poolSize: 1, casConcurrency: 1, casBatchSize: 1, connectTimeoutMs: 2000 });
  await server.sql(`CREATE FUNCTION "${c.schema}".slow() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(0.05); RETURN NULL; END $$`);
  await server.sql(`CREATE TRIGGER slow AFTER INSERT ON "${c.schema}".versions FOR EACH ROW EXECUTE FUNCTION "${c.schema}".slow()`);
  const results = await within(
    Promise.allSettled(
      Array.from({ length: 60 }, (_, i) => c.compareAndSet(`slow${i}`, undefined, { seqno: new SeqNo(1), data: bytes(`v${i}`) })),
    ),
    60_000,
    'the 60 queued compareAndSets settling',
  );
  assert.deepEqual(
    results.map((r) => (r.status === 'fulfilled' ? r.value : String(r.reason))),
    results.map(() => CaSResult.Committed),
  );
});

test('scan accepts any positive integer limit, also above the range of bigint', async () => {
  const c = await open();
  await c.compareAndSet('s', undefined, { seqno: new SeqNo(1), data: bytes('one') });
  for (const limit of [2 ** 63, 1e21]) {
    assert.deepEqual((await c.scan('s', SeqNo.minimum(), limit)).map((v) => v.seqno.value), [1n], `limit ${limit}`);
  }
});

test('on CockroachDB (faked: its version() and its refusal of two modifications of one table) each compareAndSet goes alone', async () => {
  const fake = server.schema('fakecrdb');
  await server.sql(`CREATE SCHEMA "${fake}"`);
  await server.sql(`CREATE FUNCTION "${fake}".version() RETURNS text LANGUAGE sql AS $$ SELECT 'CockroachDB CCL v24.1.0 (fake)' $$`);
  await server.sql(`CREATE FUNCTION "${fake}".refuse() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF current_query() LIKE '%unnest%' THEN
        RAISE EXCEPTION 'multiple modification subqueries of the same table are not supported' USING ERRCODE = '0A000';
      END IF;
      RETURN NULL;
    END $$`);
  const url = new URL(server.baseUrl);
  url.searchParams.set('options', `-c search_path=${fake},pg_catalog`);
  const c = await open({ connectionString: url.toString(), poolSize: 1, casConcurrency: 1 });
  try {
    const columns = await server.sql(
      `SELECT collation_name FROM information_schema.columns WHERE table_schema = $1 AND column_name = 'key'`,
      [c.schema],
    );
    assert.deepEqual(columns.rows, [{ collation_name: null }, { collation_name: null }], 'created as on CockroachDB');
    await server.sql(
      `CREATE TRIGGER refuse AFTER INSERT OR UPDATE ON "${c.schema}".heads FOR EACH STATEMENT EXECUTE FUNCTION "${fake}".refuse()`,
    );
    const results = await Promise.all(
      Array.from({ length: 20 }, (_, i) => c.compareAndSet(`crdb${i}`, undefined, { seqno: new SeqNo(1), data: bytes(`v${i}`) })),
    );
    assert.deepEqual(results, Array.from({ length: 20 }, () => CaSResult.Committed));
  } finally {
    await c.close();
    await server.sql(`DROP SCHEMA "${fake}" CASCADE`);
  }
});

test('a server restart under load: typed errors promptly, the pool recovers, no acknowledged commit is lost', async () => {
  const faultServer = server.external ? await startPostgres({ embedded: true }) : server;
  const connectTimeoutMs = 1500;
  const statementTimeoutMs = 2000;
  const c = await PostgresConsensus.open({
    connectionString: faultServer.baseUrl,
    schema: faultServer.schema('fault'),
    poolSize: 8,
    connectTimeoutMs,
    statementTimeoutMs,
  });
  const acked: { key: string; seqno: bigint; data: string }[] = [];
  const refused: { key: string; seqno: bigint; data: string }[] = [];
  const errors: { err: unknown; ms: number }[] = [];
  const committedAfterRestart = new Set<number>();
  let restarted = false;
  let stop = false;
  const clients = Array.from({ length: 8 }, async (_, i) => {
    const key = `fault-${i}`;
    let known: bigint | undefined;
    let reread = false;
    while (!stop) {
      const began = performance.now();
      const seqno = (known ?? -1n) + 1n;
      const data = `${key}@${seqno}-${randomUUID()}`;
      try {
        if (reread) {
          known = (await c.head(key))?.seqno.value;
          reread = false;
          continue;
        }
        const r = await c.compareAndSet(key, known === undefined ? undefined : new SeqNo(known), { seqno: new SeqNo(seqno), data: bytes(data) });
        if (r === CaSResult.Committed) {
          acked.push({ key, seqno, data });
          known = seqno;
          if (restarted) committedAfterRestart.add(i);
        } else {
          reread = true;
        }
      } catch (err) {
        errors.push({ err, ms: performance.now() - began });
        if (err instanceof Determinate && !reread) refused.push({ key, seqno, data });
        reread = true;
        await sleep(25);
      }
    }
  });
  try {
    await sleep(1500);
    const before = acked.length;
    await faultServer.halt();
    await sleep(3000);
    const outageErrors = errors.length;
    await faultServer.resume();
    restarted = true;
    const deadline = Date.now() + 60_000;
    while (committedAfterRestart.size < 8 && Date.now() < deadline) await sleep(100);
    stop = true;
    await Promise.all(clients);

    assert.ok(before > 0, 'no commits before the outage');
    assert.ok(outageErrors > 0, 'no operation failed while the server was down');
    for (const { err, ms } of errors) {
      assert.ok(err instanceof ExternalError, `not an ExternalError: ${String(err)}`);
      // Not a speed assertion: a hung operation would take far longer than its budgets.
      assert.ok(ms < connectTimeoutMs + statementTimeoutMs + 10_000, `an operation failed only after ${ms} ms: ${String(err)}`);
    }
    assert.equal(committedAfterRestart.size, 8, 'the pool did not recover after the restart');

    const check = await PostgresConsensus.open({ connectionString: faultServer.baseUrl, schema: c.schema });
    try {
      for (let i = 0; i < 8; i++) {
        const key = `fault-${i}`;
        const stored = new Map((await check.scan(key, SeqNo.minimum(), SCAN_ALL)).map((v) => [v.seqno.value, text(v.data)]));
        for (const a of acked.filter((a) => a.key === key)) assert.equal(stored.get(a.seqno), a.data, `acknowledged ${key}@${a.seqno} lost`);
        for (const r of refused.filter((r) => r.key === key)) {
          assert.notEqual(stored.get(r.seqno), r.data, `${key}@${r.seqno} failed Determinate but was written`);
        }
      }
    } finally {
      await check.close();
    }
  } finally {
    stop = true;
    await Promise.all(clients);
    await c.close();
    if (faultServer !== server) await faultServer.stop();
  }
});

test('connections cut at random under load (pool of several, group commit): linearizable, errors typed, the pool recovers', { timeout: 120_000 }, async () => {
  const upstream = new URL(server.baseUrl);
  const proxy = await tripwireProxy(Number(upstream.port), upstream.hostname);
  const via = new URL(server.baseUrl);
  via.port = String(proxy.port);
  const connectTimeoutMs = 2000;
  const statementTimeoutMs = 2000;
  const options = {
    connectionString: via.toString(),
    schema: server.schema('chaos'),
    poolSize: 4,
    casConcurrency: 2,
    connectTimeoutMs,
    statementTimeoutMs,
  };
  const nHandles = 4;
  const ops = 2000;
  const handles: PostgresConsensus[] = [];
  try {
    for (let i = 0; i < nHandles; i++) handles.push(await PostgresConsensus.open(options));
    // The handles outlive the run (close is left to us) so that the pools that
    // saw the faults are the ones checked for recovery afterwards.
    let next = 0;
    const report = await stressConsensus(
      async () => {
        const h = handles[next++]!;
        if (next === nHandles) proxy.chaos(0.02);
        return keepOpen(h);
      },
      {
        ops,
        keys: 4,
        clients: 16,
        handles: nHandles,
        // The final reads (which prove no acknowledged write was lost) run without faults.
        onProgress: (done) => {
          if (done >= ops) proxy.chaos(0);
        },
      },
    );
    proxy.chaos(0);
    const summary = `cuts ${proxy.cuts}, committed ${report.committed}, failed ${report.failed}, unknown ${report.unknown}`;
    assert.deepEqual(report.errors, [], summary);
    // The ops that could not be placed, after the last few that could.
    const violation = report.violations[0] && { ...report.violations[0], linearized: report.violations[0].linearized.slice(-8) };
    assert.equal(report.verdict, 'ok', `${summary}: ${JSON.stringify(violation, bigintJson)}`);
    assert.deepEqual(report.unproven, [], summary);
    assert.ok(report.ok, summary);
    assert.ok(proxy.cuts >= 10, `too few faults to prove anything: ${summary}`);
    assert.ok(report.unknown > 0, `no operation saw a cut: ${summary}`);
    assert.ok(report.committed >= 20, `too few commits: ${summary}`);
    for (const op of report.history) {
      // Not a speed assertion: a hung operation would take far longer than its budgets
      // (a compareAndSet may queue for the connect budget first; a truncate racing
      // commits runs its statement up to 10 times).
      const budget = (op.op === 'truncate' ? 10 : 2) * (connectTimeoutMs + statementTimeoutMs) + 10_000;
      if (op.end - op.start >= budget) assert.fail(`${op.op} on ${op.key} took ${op.end - op.start} ms: ${JSON.stringify(op.result, bigintJson)}`);
    }

    // Faults off: every handle's pool serves every kind of operation again.
    await Promise.all(
      handles.flatMap((h, i) =>
        Array.from({ length: 8 }, async (_, j) => {
          const key = `after-chaos-${i}-${j}`;
          assert.equal(await h.compareAndSet(key, undefined, { seqno: new SeqNo(1n), data: bytes('a') }), CaSResult.Committed);
          assert.equal(await h.compareAndSet(key, new SeqNo(1n), { seqno: new SeqNo(2n), data: bytes('b') }), CaSResult.Committed);
          assert.equal(await h.truncate(key, new SeqNo(2n)), 1);
          assert.deepEqual((await h.scan(key, SeqNo.minimum(), SCAN_ALL)).map((v) => text(v.data)), ['b']);
          assert.equal(text((await h.head(key))!.data), 'b');
        }),
      ),
    );
  } finally {
    proxy.chaos(0);
    await Promise.all(handles.map((h) => h.close()));
    await proxy.close();
  }
});

/** `c` with a close() that does nothing, for a harness that closes what it opens. */
function keepOpen(c: Consensus): Consensus {
  return {
    listKeys: (opts) => c.listKeys(opts),
    head: (key, opts) => c.head(key, opts),
    compareAndSet: (key, expected, next, opts) => c.compareAndSet(key, expected, next, opts),
    scan: (key, from, limit, opts) => c.scan(key, from, limit, opts),
    truncate: (key, seqno, opts) => c.truncate(key, seqno, opts),
    close: async () => {},
    [Symbol.asyncDispose]: async () => {},
  };
}

function bigintJson(_k: string, v: unknown): unknown {
  return typeof v === 'bigint' ? v.toString() : v;
}

