import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import * as etcd3 from 'etcd3';
import { CaSResult, type Consensus, Determinate, ErrorCode, ExternalError, Indeterminate, openConsensus, SCAN_ALL, SeqNo } from 'persist-location';
import { EtcdConsensus, etcdOptionsFromUri, mapEtcdError } from 'persist-location/etcd';
import { EndpointBreakers } from '../src/etcd/policies.js';
import { consensusImplTest, hostileKeys, stressConsensus, type StressReport } from 'persist-location/testing';
import { freePort } from './servers/ports.js';
import { startEtcd, type EtcdCluster } from './servers/etcd.js';
import { tripwireProxy } from './servers/proxy.js';

/** These tests are of the backend's own failures: opened without the default retry. */
const RAW = { retry: false } as const;

const v = (seqno: number, data: string) => ({ seqno: new SeqNo(seqno), data: Buffer.from(data) });
const summary = (r: StressReport) =>
  `${r.ops} ops in ${Math.round(r.durationMs)} ms: ${r.committed} committed, ${r.mismatches} mismatches, ${r.failed} failed (Determinate), ${r.unknown} unknown (Indeterminate)`;
const text = (d: Uint8Array | undefined) => (d === undefined ? undefined : Buffer.from(d).toString());

/**
 * A seeded PRNG (mulberry32) for the chaos proxies' cut decisions; the seed is printed
 * with the result (which chunks the cuts fall on still depends on timing).
 */
function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = Math.imul(a ^ (a >>> 15), a | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

/** An error as etcd3 rethrows a grpc-js one: its typed class, the status only in the message. */
function grpcError(cls: new (message: string) => Error, code: number, name: string, details: string): Error {
  return new cls(`${code} ${name}: ${details}`);
}

const sent = { what: 'x', exposure: 'sent' } as const;

describe('mapEtcdError (synthetic driver errors)', () => {
  const cases: [string, unknown, boolean, ErrorCode][] = [
    ['no connection (picker)', grpcError(etcd3.GRPCUnavailableError, 14, 'UNAVAILABLE', 'No connection established. Last error: connect ECONNREFUSED 127.0.0.1:1'), true, ErrorCode.Unavailable],
    ['channel closed before start', grpcError(etcd3.GRPCUnavailableError, 14, 'UNAVAILABLE', 'Channel closed before call started'), true, ErrorCode.Unavailable],
    ['HTTP/2 REFUSED_STREAM', grpcError(etcd3.GRPCUnavailableError, 14, 'UNAVAILABLE', 'Stream refused by server'), true, ErrorCode.Unavailable],
    ['connection dropped after send', grpcError(etcd3.GRPCUnavailableError, 14, 'UNAVAILABLE', 'Connection dropped'), false, ErrorCode.Unavailable],
    ['etcd request timed out', grpcError(etcd3.GRPCUnavailableError, 14, 'UNAVAILABLE', 'etcdserver: request timed out'), false, ErrorCode.Unavailable],
    ['etcd leader changed', grpcError(etcd3.GRPCUnavailableError, 14, 'UNAVAILABLE', 'etcdserver: leader changed'), false, ErrorCode.Unavailable],
    ['deadline exceeded', grpcError(etcd3.GRPCDeadlineExceededError, 4, 'DEADLINE_EXCEEDED', 'Deadline exceeded after 1.001s'), false, ErrorCode.Timeout],
    ['cancelled', grpcError(etcd3.GRPCCancelledError, 1, 'CANCELLED', 'Call cancelled'), false, ErrorCode.Cancelled],
    ['bad password', grpcError(etcd3.EtcdAuthenticationFailedError, 3, 'INVALID_ARGUMENT', 'etcdserver: authentication failed, invalid user ID or password'), true, ErrorCode.PermissionDenied],
    ['no credentials on an auth cluster', grpcError(etcd3.GRPCInvalidArgumentError, 3, 'INVALID_ARGUMENT', 'etcdserver: user name is empty'), true, ErrorCode.PermissionDenied],
    ['request too large', grpcError(etcd3.GRPCInvalidArgumentError, 3, 'INVALID_ARGUMENT', 'etcdserver: request is too large'), true, ErrorCode.ResourceExhausted],
    ['duplicate key', grpcError(etcd3.GRPCInvalidArgumentError, 3, 'INVALID_ARGUMENT', 'etcdserver: duplicate key given in txn request'), true, ErrorCode.InvalidArgument],
    ['no space', grpcError(etcd3.GRPCResourceExhastedError, 8, 'RESOURCE_EXHAUSTED', 'etcdserver: mvcc: database space exceeded'), true, ErrorCode.ResourceExhausted],
    ['local message limit', grpcError(etcd3.GRPCResourceExhastedError, 8, 'RESOURCE_EXHAUSTED', 'Received message larger than max (5 vs 4)'), false, ErrorCode.ResourceExhausted],
    ["etcd's gRPC server message limit", grpcError(etcd3.GRPCResourceExhastedError, 8, 'RESOURCE_EXHAUSTED', 'grpc: received message larger than max (2150682 vs. 2097152)'), true, ErrorCode.ResourceExhausted],
    ['permission denied', grpcError(etcd3.EtcdPermissionDeniedError, 7, 'PERMISSION_DENIED', 'etcdserver: permission denied'), true, ErrorCode.PermissionDenied],
    ['unauthenticated', grpcError(etcd3.GRPCUnauthenticatedError, 16, 'UNAUTHENTICATED', 'etcdserver: invalid auth token'), true, ErrorCode.PermissionDenied],
    ['compacted', grpcError(etcd3.GRPCOutOfRangeError, 11, 'OUT_OF_RANGE', 'etcdserver: mvcc: required revision has been compacted'), true, ErrorCode.FailedPrecondition],
    ['unimplemented', grpcError(etcd3.GRPCNotImplementedError, 12, 'UNIMPLEMENTED', 'unknown method'), true, ErrorCode.Unknown],
    ['internal', grpcError(etcd3.GRPCInternalError, 13, 'INTERNAL', 'Received RST_STREAM with code 2'), false, ErrorCode.Unknown],
    ['unknown', grpcError(etcd3.GRPCUnknownError, 2, 'UNKNOWN', 'raft proposal dropped'), false, ErrorCode.Unknown],
    ['etcd gave up at the deadline (UNKNOWN)', grpcError(etcd3.GRPCUnknownError, 2, 'UNKNOWN', 'context deadline exceeded'), false, ErrorCode.Timeout],
    ['etcd saw the call cancelled (UNKNOWN)', grpcError(etcd3.GRPCUnknownError, 2, 'UNKNOWN', 'context canceled'), false, ErrorCode.Cancelled],
    ['aborted', grpcError(etcd3.GRPCAbortedError, 10, 'ABORTED', 'x'), false, ErrorCode.Aborted],
    ['data loss', grpcError(etcd3.GRPCDataLossError, 15, 'DATA_LOSS', 'etcdserver: corrupt cluster'), false, ErrorCode.DataLoss],
    ['class only, no status in message', new etcd3.GRPCDeadlineExceededError('deadline'), false, ErrorCode.Timeout],
    ['raw grpc-js error with numeric code', Object.assign(new Error('14 UNAVAILABLE: No connection established'), { code: 14, details: 'No connection established' }), true, ErrorCode.Unavailable],
    ['circuit breaker open', Object.assign(new Error('Execution prevented because the circuit breaker is open'), { isBrokenCircuitError: true }), true, ErrorCode.Unavailable],
    ['client closed', new etcd3.ClientClosedError('KV'), true, ErrorCode.Unavailable],
    ['a plain bug', new TypeError('x is not a function'), false, ErrorCode.Unknown],
    ['not even an Error', 'boom', false, ErrorCode.Unknown],
  ];
  for (const [name, err, determinate, code] of cases) {
    test(name, () => {
      const mapped = mapEtcdError(err, { what: 'EtcdConsensus(test) op', exposure: 'sent' });
      assert.ok(mapped instanceof ExternalError);
      assert.ok(mapped instanceof (determinate ? Determinate : Indeterminate), `${name}: expected ${determinate ? 'Determinate' : 'Indeterminate'}`);
      assert.equal(mapped.code, code);
      assert.equal(mapped.cause, err);
      assert.match(mapped.message, /EtcdConsensus\(test\) op/);
      assert.equal(mapped.isTimeout(), code === ErrorCode.Timeout);
    });
  }
  test('an ExternalError passes through unchanged', () => {
    const e = ExternalError.timeout(5);
    assert.equal(mapEtcdError(e, sent), e);
  });
});

describe('EndpointBreakers (synthetic failures)', () => {
  const down = () => Promise.reject(grpcError(etcd3.GRPCUnavailableError, 14, 'UNAVAILABLE', 'Connection dropped'));
  const slow = () => Promise.reject(grpcError(etcd3.GRPCDeadlineExceededError, 4, 'DEADLINE_EXCEEDED', 'Deadline exceeded'));
  const refused = () => Promise.reject(grpcError(etcd3.GRPCInvalidArgumentError, 3, 'INVALID_ARGUMENT', 'etcdserver: request is too large'));
  const ok = () => Promise.resolve('ok');
  const isBroken = (err: unknown) => (err as { isBrokenCircuitError?: boolean }).isBrokenCircuitError === true;

  test('skips an endpoint after 3 consecutive Unavailable/Timeout failures, never when all are down', async () => {
    const breakers = new EndpointBreakers();
    const a = breakers.policy('a:1');
    const b = breakers.policy('b:1');
    // Other errors neither count nor reset; a success resets.
    await assert.rejects(a.execute(down));
    await assert.rejects(a.execute(refused));
    await assert.rejects(a.execute(slow));
    assert.equal(await a.execute(ok), 'ok');
    for (const fail of [down, slow, down]) await assert.rejects(a.execute(fail));
    let called = false;
    await assert.rejects(a.execute(() => ((called = true), ok())), isBroken);
    assert.equal(called, false, 'a call to an endpoint marked down is not sent');
    assert.equal(await b.execute(ok), 'ok');
    for (let i = 0; i < 3; i++) await assert.rejects(b.execute(down));
    // Both down: calls go through rather than being refused.
    assert.equal(await a.execute(ok), 'ok');
    assert.equal(await a.execute(ok), 'ok');
    // a recovered, so b (still down) is skipped again; its refusal maps to Determinate Unavailable.
    const refusal = await b.execute(ok).then(() => undefined, (e: unknown) => e);
    assert.ok(isBroken(refusal));
    assert.ok(mapEtcdError(refusal, sent) instanceof Determinate);
    // ...also as etcd3 rethrows it when every endpoint refused (it recasts plain Errors).
    const rethrown = etcd3.castGrpcError(refusal as Error);
    assert.ok(mapEtcdError(rethrown, sent) instanceof Determinate, String(rethrown));
    assert.equal(mapEtcdError(rethrown, sent).code, ErrorCode.Unavailable);
  });
});

describe('etcd:// URIs', () => {
  const opts = (uri: string) => etcdOptionsFromUri(uri);
  test('several endpoints, a prefix and parameters', () => {
    assert.deepEqual(opts('etcd://10.0.0.1:2379,10.0.0.2:2380,[::1]:2381/app/x?timeoutMs=500&maxRequestBytes=4096'), {
      endpoints: ['10.0.0.1:2379', '10.0.0.2:2380', '[::1]:2381'],
      prefix: '/app/x',
      timeoutMs: 500,
      maxRequestBytes: 4096,
    });
  });
  test('default port and prefix', () => {
    assert.deepEqual(opts('etcd://localhost'), { endpoints: ['localhost:2379'], prefix: '/' });
  });
  test('credentials are read, and never printed back', async () => {
    assert.deepEqual(opts('etcd://root:s%40cret@h:1/p').auth, { username: 'root', password: 's@cret' });
    await assert.rejects(openConsensus('etcd://root:hunter2@h:1/p?bogus=1'), (err: Error) => {
      assert.ok(err instanceof Determinate);
      assert.equal(err.code, ErrorCode.InvalidArgument);
      assert.match(err.message, /timeoutMs, maxRequestBytes/);
      assert.doesNotMatch(err.message, /hunter2/);
      return true;
    });
  });
  test('a prefix that UTF-8 cannot hold exactly rejects with InvalidArgument', () => {
    for (const prefix of ['/a\u0000b', '/a\uD800', '/\uDC00b']) {
      assert.throws(
        () => new EtcdConsensus({ endpoints: ['127.0.0.1:1'], prefix }),
        (err: Error) => err instanceof Determinate && err.code === ErrorCode.InvalidArgument,
        JSON.stringify(prefix),
      );
    }
  });
  test('malformed URIs reject with InvalidArgument', () => {
    for (const bad of ['etcd:///p', 'etcd://h:1/a%00b', 'etcd://h:1,,h:2/p', 'etcd://h:x/p', 'etcd://h:1/p?timeoutMs=0', 'etcd://h:1/p?maxRequestBytes=abc']) {
      assert.throws(() => opts(bad), (err: Error) => err instanceof Determinate && err.code === ErrorCode.InvalidArgument, bad);
    }
  });
});

describe('EtcdConsensus on one etcd member', () => {
  let etcd: EtcdCluster;
  let raw: etcd3.Etcd3;
  before(async () => {
    etcd = await startEtcd(1);
    raw = new etcd3.Etcd3({ hosts: etcd.endpoints });
  });
  after(async () => {
    raw?.close();
    await etcd?.stop();
  });

  test('passes the conformance suite (a fresh prefix per open)', async () => {
    await consensusImplTest(async () => openConsensus(etcd.uri()));
  });

  test('keeps one record per version and a head record, all under the prefix', async () => {
    const prefix = `/layout-${randomUUID()}`;
    const c = new EtcdConsensus({ endpoints: etcd.endpoints, prefix });
    try {
      const key = 'a/b ü';
      assert.equal(await c.compareAndSet(key, undefined, v(5, 'five')), CaSResult.Committed);
      assert.equal(await c.compareAndSet(key, new SeqNo(5), v(300, 'three hundred')), CaSResult.Committed);
      const hex = Buffer.from(key).toString('hex');
      const all = await raw.getAll().prefix(`${prefix}/`).strings();
      assert.deepEqual(all, {
        [`${prefix}/\0h/${hex}`]: '000000000000012c',
        [`${prefix}/\0v/${hex}/0000000000000005`]: 'five',
        [`${prefix}/\0v/${hex}/000000000000012c`]: 'three hundred',
      });
      assert.equal(await c.truncate(key, new SeqNo(300)), 1);
      assert.deepEqual(Object.keys(await raw.getAll().prefix(`${prefix}/`).strings()).sort(), [
        `${prefix}/\0h/${hex}`,
        `${prefix}/\0v/${hex}/000000000000012c`,
      ]);
    } finally {
      await c.close();
    }
  });

  test('sibling prefixes and hostile keys do not overlap', async () => {
    const base = `/sib-${randomUUID()}`;
    const a = await openConsensus(`etcd://${etcd.endpoints[0]}${base}`);
    const b = await openConsensus(`etcd://${etcd.endpoints[0]}${base}2`);
    const nested = await openConsensus(`etcd://${etcd.endpoints[0]}${base}/h`);
    try {
      const keys = [...new Set([...hostileKeys(), 'k', 'k/', 'k0', 'h/6b', '\u0001h/6b', 'v/6b/0000000000000001', 'x'.repeat(1024)])];
      for (const [i, key] of keys.entries()) {
        assert.equal(await a.compareAndSet(key, undefined, v(i + 1, `a${i}`)), CaSResult.Committed, JSON.stringify(key));
      }
      assert.equal(await b.compareAndSet('k', undefined, v(1, 'b')), CaSResult.Committed);
      assert.equal(await nested.compareAndSet('k', undefined, v(7, 'n')), CaSResult.Committed);
      const listed: string[] = [];
      for await (const key of a.listKeys()) listed.push(key);
      assert.deepEqual(listed.sort(), [...keys].sort());
      for (const [i, key] of keys.entries()) {
        const head = await a.head(key);
        assert.equal(head?.seqno.value, BigInt(i + 1), JSON.stringify(key));
        assert.equal(text(head?.data), `a${i}`);
        assert.equal((await a.scan(key, SeqNo.minimum(), SCAN_ALL)).length, 1);
      }
      const inB: string[] = [];
      for await (const key of b.listKeys()) inB.push(key);
      assert.deepEqual(inB, ['k']);
      assert.equal(text((await nested.head('k'))?.data), 'n');
    } finally {
      await Promise.all([a.close(), b.close(), nested.close()]);
    }
  });

  test('scan pages through more versions than one page, with and without a limit', async () => {
    const c = await openConsensus(etcd.uri());
    try {
      let expected: SeqNo | undefined;
      for (let i = 0; i < 1105; i++) {
        assert.equal(await c.compareAndSet('log', expected, v(i * 2, `d${i}`)), CaSResult.Committed);
        expected = new SeqNo(i * 2);
      }
      const all = await c.scan('log', SeqNo.minimum(), SCAN_ALL);
      assert.equal(all.length, 1105);
      assert.deepEqual(all.map((x) => Number(x.seqno.value)), Array.from({ length: 1105 }, (_, i) => i * 2));
      assert.equal(text(all[1104]!.data), 'd1104');
      const some = await c.scan('log', new SeqNo(3), 1050);
      assert.equal(some.length, 1050);
      assert.equal(some[0]!.seqno.value, 4n);
      assert.equal(await c.truncate('log', new SeqNo(2000)), 1000);
      assert.equal((await c.scan('log', SeqNo.minimum(), SCAN_ALL)).length, 105);
    } finally {
      await c.close();
    }
  });

  test('listKeys pages through more keys than one page (10,000), each key once, in order', async () => {
    // The shared suites list 1,200 keys, within one of etcd's listing pages.
    const c = await openConsensus(etcd.uri());
    try {
      const keys = Array.from({ length: 10_050 }, (_, i) => `many/${String(i).padStart(5, '0')}`);
      let next = 0;
      await Promise.all(
        Array.from({ length: 64 }, async () => {
          while (next < keys.length) {
            const key = keys[next++]!;
            assert.equal(await c.compareAndSet(key, undefined, v(1, key)), CaSResult.Committed, key);
          }
        }),
      );
      const listed: string[] = [];
      for await (const key of c.listKeys()) listed.push(key);
      // Hex of UTF-8 keeps byte order, so the listing comes in the keys' order.
      assert.deepEqual(listed, keys);
    } finally {
      await c.close();
    }
  });

  test('head is right through other handles writing, truncating and a stale guess', async () => {
    const uri = etcd.uri();
    const reader = await openConsensus(uri);
    const writer = await openConsensus(uri);
    try {
      assert.equal(await writer.compareAndSet('k', undefined, v(1, 'one')), CaSResult.Committed);
      assert.equal(text((await reader.head('k'))?.data), 'one');
      assert.equal(await writer.compareAndSet('k', new SeqNo(1), v(2, 'two')), CaSResult.Committed);
      assert.equal(await writer.truncate('k', new SeqNo(2)), 1);
      // The reader's remembered head (v1) is gone: it must find v2.
      const head = await reader.head('k');
      assert.equal(head?.seqno.value, 2n);
      assert.equal(text(head?.data), 'two');
    } finally {
      await Promise.all([reader.close(), writer.close()]);
    }
  });

  test('values over the request limit reject Determinate before sending; values under it commit', async () => {
    const c = await openConsensus(etcd.uri());
    const small = await openConsensus(etcd.uri('maxRequestBytes=4096'));
    try {
      await assert.rejects(c.compareAndSet('big', undefined, { seqno: new SeqNo(1), data: new Uint8Array(1536 * 1024) }), (err: Error) => {
        assert.ok(err instanceof Determinate, String(err));
        assert.equal(err.code, ErrorCode.ResourceExhausted);
        assert.match(err.message, /1572864 bytes/);
        return true;
      });
      assert.equal(await c.head('big'), undefined);
      // Close to the limit: the size check leaves the server's own check no reason to refuse.
      const near = new Uint8Array(1536 * 1024 - 1200).fill(7);
      assert.equal(await c.compareAndSet('big', undefined, { seqno: new SeqNo(1), data: near }), CaSResult.Committed);
      assert.equal((await c.head('big'))?.data.byteLength, near.byteLength);
      await assert.rejects(small.compareAndSet('k', undefined, { seqno: new SeqNo(1), data: new Uint8Array(4096) }), (err: Error) => {
        assert.ok(err instanceof Determinate);
        assert.equal(err.code, ErrorCode.ResourceExhausted);
        assert.match(err.message, /4096 bytes/);
        return true;
      });
    } finally {
      await Promise.all([c.close(), small.close()]);
    }
  });

  test('the size check lets through what the server accepts, and little less, with the longest key', async () => {
    const prefix = `/${'p'.repeat(200)}-${randomUUID()}`;
    const checked = await openConsensus(`etcd://${etcd.endpoints[0]}${prefix}`);
    const unchecked = await openConsensus(`etcd://${etcd.endpoints[0]}${prefix}?maxRequestBytes=${4 * 1024 * 1024}`);
    try {
      const key = `${'€'.repeat(341)}x`; // 1024 UTF-8 bytes, the longest key
      // Expected v1 on an empty key: the server receives the whole request but writes nothing.
      const probe = (c: Consensus, size: number) => c.compareAndSet(key, new SeqNo(1), { seqno: new SeqNo(2), data: new Uint8Array(size) });
      /** The largest size `c` gets accepted by the server; `refused` tells its refusals apart. */
      const boundary = async (c: Consensus, refused: (err: unknown) => boolean) => {
        let lo = 0;
        let hi = 2 * 1024 * 1024;
        while (hi - lo > 1) {
          const mid = Math.floor((lo + hi) / 2);
          const outcome = await probe(c, mid).catch((err: unknown) => {
            if (refused(err)) return 'refused';
            throw err;
          });
          if (outcome === 'refused') hi = mid;
          else {
            assert.equal(outcome, CaSResult.ExpectationMismatch);
            lo = mid;
          }
        }
        return lo;
      };
      const byServer = await boundary(unchecked, (err) => err instanceof Determinate && err.code === ErrorCode.ResourceExhausted);
      // Any other error (the server's own refusal) escapes from this search and fails the test.
      const byCheck = await boundary(checked, (err) => err instanceof Determinate && /nothing was sent/.test(err.message));
      assert.ok(byCheck <= byServer, `the check lets through ${byCheck} bytes, the server takes only ${byServer}`);
      assert.ok(byServer - byCheck < 1024, `the check refuses from ${byCheck + 1} bytes, the server takes ${byServer}: too cautious`);
      assert.equal(await checked.compareAndSet(key, undefined, { seqno: new SeqNo(1), data: new Uint8Array(byCheck).fill(1) }), CaSResult.Committed);
      assert.equal((await checked.head(key))?.data.byteLength, byCheck);
    } finally {
      await Promise.all([checked.close(), unchecked.close()]);
    }
  });

  test('the server refusing a too-large request maps to Determinate ResourceExhausted', async () => {
    // Claim a larger limit than the server's, so the request is sent and refused there:
    // by etcd (over --max-request-bytes), or by its gRPC server (512 KiB more than that).
    const c = await openConsensus(etcd.uri(`maxRequestBytes=${4 * 1024 * 1024}`));
    try {
      for (const size of [1600 * 1024, 3 * 1024 * 1024]) {
        await assert.rejects(c.compareAndSet('big', undefined, { seqno: new SeqNo(1), data: new Uint8Array(size) }), (err: Error) => {
          assert.ok(err instanceof Determinate, `${size} bytes: ${String(err)}`);
          assert.equal(err.code, ErrorCode.ResourceExhausted);
          return true;
        });
      }
      assert.equal(await c.head('big'), undefined);
    } finally {
      await c.close();
    }
  });

  test('an abort after sending is Indeterminate', async () => {
    const c = await openConsensus(etcd.uri());
    try {
      const ctl = new AbortController();
      const pending = c.compareAndSet('k', undefined, v(1, 'x'), { signal: ctl.signal });
      ctl.abort();
      await assert.rejects(pending, (err: Error) => err instanceof Indeterminate && (err as Indeterminate).code === ErrorCode.Cancelled);
    } finally {
      await c.close();
    }
  });

  test('is linearizable under 16 concurrent clients (stressConsensus)', async (t) => {
    const uri = etcd.uri();
    const report = await stressConsensus(() => openConsensus(uri), { ops: 2500, keys: 6, clients: 16 });
    t.diagnostic(summary(report));
    assert.deepEqual(report.errors, []);
    assert.equal(report.verdict, 'ok', JSON.stringify(report.violations.slice(0, 1)));
    assert.ok(report.ok);
    assert.ok(report.committed > 100, `only ${report.committed} commits`);
    assert.ok(report.mismatches > 0, 'the run had no contention');
  });

  test('a hung server: the deadline gives Indeterminate Timeout, and service resumes', async () => {
    const c = await openConsensus(etcd.uri('timeoutMs=700'), RAW);
    try {
      assert.equal(await c.compareAndSet('k', undefined, v(1, 'x')), CaSResult.Committed);
      await etcd.pause(0);
      try {
        await assert.rejects(c.compareAndSet('k', new SeqNo(1), v(2, 'y')), (err: Error) => {
          assert.ok(err instanceof Indeterminate, String(err));
          assert.ok((err as Indeterminate).isTimeout(), String(err));
          return true;
        });
      } finally {
        etcd.resume(0);
      }
      // The write might have happened; a later read decides (here: it did, once resumed).
      let head: bigint | undefined;
      const until = Date.now() + 20_000;
      while (head === undefined && Date.now() < until) {
        head = await c.head('k').then((h) => h?.seqno.value, () => undefined);
      }
      assert.ok(head === 1n || head === 2n, `head ${head}`);
    } finally {
      await c.close();
    }
  });

  test('a connection lost after sending is Indeterminate; committed data survives SIGKILL of etcd', async () => {
    const c = await openConsensus(etcd.uri('timeoutMs=20000'), RAW);
    try {
      assert.equal(await c.compareAndSet('k', undefined, v(1, 'kept')), CaSResult.Committed);
      await etcd.pause(0);
      const pending = c.compareAndSet('k', new SeqNo(1), v(2, 'lost?'));
      const outcome = pending.then(
        () => 'resolved',
        (err: unknown) => err,
      );
      await new Promise((r) => setTimeout(r, 300));
      await etcd.kill(0);
      const err = await outcome;
      assert.ok(err instanceof Indeterminate, String(err));
      assert.equal(err.code, ErrorCode.Unavailable);
      await etcd.restart(0);
      const head = await c.head('k');
      // v2 was sent but the server was stopped before reading it: never applied.
      assert.equal(head?.seqno.value, 1n);
      assert.equal(text(head?.data), 'kept');
    } finally {
      await c.close();
    }
  });

  test('a write whose connection drops after it reached etcd is Indeterminate, never re-sent', async () => {
    // A TCP proxy in front of etcd that, once armed, cuts the connection at the first
    // bytes etcd sends back (the answer, or a flow-control ping sent on receipt): the
    // Txn has reached etcd and may have been applied. Re-sending it (etcd3's default
    // retry policy) reports Committed, or ExpectationMismatch when the first one was
    // applied: a write done, reported as not done. Both were seen without RUN_ONCE.
    const [host, port] = etcd.endpoints[0]!.split(':') as [string, string];
    let cuts = 0;
    const proxy = await tripwireProxy(Number(port), host);
    const c = await openConsensus(`etcd://127.0.0.1:${proxy.port}/cut-${randomUUID()}`, RAW);
    try {
      assert.equal(await c.compareAndSet('k', undefined, v(1, 'one')), CaSResult.Committed);
      proxy.arm('response', () => true, (cut) => {
        cuts++;
        cut();
      });
      const outcome = await c.compareAndSet('k', new SeqNo(1), v(2, 'two')).then(
        (r) => r,
        (err: unknown) => err,
      );
      assert.equal(cuts, 1);
      assert.ok(outcome instanceof Indeterminate, `expected Indeterminate, got ${String(outcome)}`);
      assert.equal(outcome.code, ErrorCode.Unavailable);
      // Whether it was applied is for a later read to say; either way nothing else changed.
      const head = await c.head('k');
      assert.ok(head?.seqno.value === 1n || head?.seqno.value === 2n, `head ${head?.seqno}`);
      assert.equal(text(head?.data), head?.seqno.value === 1n ? 'one' : 'two');
    } finally {
      await c.close();
      await proxy.close();
    }
  });

  test('a dead endpoint among live ones: writes that were never sent are retried elsewhere', async () => {
    const dead = `127.0.0.1:${await freePort()}`;
    const c = await openConsensus(`etcd://${dead},${etcd.endpoints[0]}/retry-${randomUUID()}?timeoutMs=5000`);
    try {
      let expected: SeqNo | undefined;
      for (let i = 1; i <= 30; i++) {
        assert.equal(await c.compareAndSet('k', expected, v(i, `d${i}`)), CaSResult.Committed);
        expected = new SeqNo(i);
        assert.equal((await c.head('k'))?.seqno.value, BigInt(i));
      }
      assert.equal(await c.truncate('k', new SeqNo(30)), 29);
    } finally {
      await c.close();
    }
  });

  test('close() stops an operation that is retrying an unreachable endpoint', { timeout: 30_000 }, async () => {
    // A deadline far beyond the test's timeout: only close() can end the retries in time.
    // (`new`, unlike openConsensus, does not wait for the cluster to answer.)
    const c = new EtcdConsensus(etcdOptionsFromUri(`etcd://127.0.0.1:${await freePort()}/x?timeoutMs=600000`));
    const pending = c.head('k').then(
      () => 'resolved',
      (err: unknown) => err,
    );
    await new Promise((r) => setTimeout(r, 200));
    await c.close();
    const err = await pending;
    assert.ok(err instanceof Determinate, String(err));
    assert.equal(err.code, ErrorCode.Unavailable);
  });

  test('an unreachable endpoint is Determinate Unavailable for the open, writes and reads', async () => {
    const uri = `etcd://127.0.0.1:${await freePort()}/x?timeoutMs=1500`;
    await assert.rejects(openConsensus(uri), (err: Error) => {
      assert.ok(err instanceof Determinate, String(err));
      assert.equal(err.code, ErrorCode.Unavailable);
      return true;
    });
    const c = new EtcdConsensus(etcdOptionsFromUri(uri));
    try {
      for (const op of [() => c.compareAndSet('k', undefined, v(1, 'x')), () => c.head('k'), () => c.truncate('k', new SeqNo(0))]) {
        await assert.rejects(op(), (err: Error) => {
          assert.ok(err instanceof Determinate, String(err));
          assert.equal((err as Determinate).code, ErrorCode.Unavailable);
          return true;
        });
      }
    } finally {
      await c.close();
    }
  });
});

describe('EtcdConsensus on an etcd with authentication', () => {
  let etcd: EtcdCluster;
  before(async () => {
    etcd = await startEtcd(1);
    const admin = new etcd3.Etcd3({ hosts: etcd.endpoints });
    try {
      await admin.user('root').create('r00t pw');
      await admin.role('root').create();
      await admin.user('root').addRole('root');
      await admin.auth.authEnable();
    } finally {
      admin.close();
    }
  });
  after(async () => {
    await etcd?.stop();
  });

  test('credentials from the URI are used; wrong or missing ones are Determinate PermissionDenied', async () => {
    const host = etcd.endpoints[0]!;
    const good = await openConsensus(`etcd://root:r00t%20pw@${host}/auth`, RAW);
    for (const uri of [`etcd://root:wrong@${host}/auth`, `etcd://${host}/auth`]) {
      await assert.rejects(openConsensus(uri), (err: Error) => {
        assert.ok(err instanceof Determinate, String(err));
        assert.equal(err.code, ErrorCode.PermissionDenied);
        assert.doesNotMatch(err.message, /wrong/);
        return true;
      });
    }
    // Handles that skip the open's check meet the same refusal at each operation.
    const bad = new EtcdConsensus(etcdOptionsFromUri(`etcd://root:wrong@${host}/auth`));
    const none = new EtcdConsensus(etcdOptionsFromUri(`etcd://${host}/auth`));
    try {
      assert.equal(await good.compareAndSet('k', undefined, v(1, 'x')), CaSResult.Committed);
      assert.equal(text((await good.head('k'))?.data), 'x');
      for (const [c, op] of [
        [bad, 'compareAndSet'],
        [bad, 'head'],
        [none, 'compareAndSet'],
      ] as const) {
        const call = op === 'head' ? c.head('k') : c.compareAndSet('k', new SeqNo(1), v(2, 'y'));
        await assert.rejects(call, (err: Error) => {
          assert.ok(err instanceof Determinate, String(err));
          assert.equal(err.code, ErrorCode.PermissionDenied);
          assert.doesNotMatch(err.message, /wrong/);
          return true;
        });
      }
      assert.equal((await good.head('k'))?.seqno.value, 1n);
    } finally {
      await Promise.all([good.close(), bad.close(), none.close()]);
    }
  });

  // The test's own timeout only turns a hang into a failure: the assertion is on the outcome.
  test('a hung member while the client fetches its token: operations still end at their deadline', { timeout: 60_000 }, async () => {
    // `new`: a handle that has not fetched its token yet (openConsensus would have).
    const c = new EtcdConsensus(etcdOptionsFromUri(`etcd://root:r00t%20pw@${etcd.endpoints[0]!}/auth?timeoutMs=700`));
    await etcd.pause(0);
    try {
      // A fresh handle has no token yet: etcd3 asks the (hung) member for one first.
      for (const op of [() => c.head('k'), () => c.compareAndSet('k', new SeqNo(1), v(2, 'y'))]) {
        await assert.rejects(op(), (err: Error) => {
          assert.ok(err instanceof Indeterminate, String(err));
          assert.ok(err.isTimeout(), String(err));
          return true;
        });
      }
    } finally {
      etcd.resume(0);
      await c.close();
    }
  });
});

describe('EtcdConsensus on a 3-member cluster', () => {
  let etcd: EtcdCluster;
  before(async () => {
    etcd = await startEtcd(3);
  });
  after(async () => {
    await etcd?.stop();
  });

  test('connections to every member cut at random: no write misreported, the history stays linearizable', async (t) => {
    // One tripwire proxy per member, all of them in the URI, each cutting connections
    // at random (requests before or after they reach etcd, answers on the way back).
    // A write reported Determinate that reached etcd, a Txn re-sent after it may have
    // applied (by etcd3's retry, or by our failover of "never sent" writes to another
    // endpoint), or a lost acknowledged write all show as a violation. Half the handles
    // have a 100 ms deadline, so gRPC DEADLINE_EXCEEDED and our own deadline also land
    // mid-request. Shown to fail when "Connection dropped" is read as never sent, and
    // when etcd3's default retry policy is left on.
    const proxies = await Promise.all(
      etcd.endpoints.map((endpoint) => {
        const [host, port] = endpoint.split(':') as [string, string];
        return tripwireProxy(Number(port), host);
      }),
    );
    try {
      const hosts = proxies.map((p) => `127.0.0.1:${p.port}`).join(',');
      const prefix = `/chaos-${randomUUID()}`;
      // The first handle (also the one stressConsensus does its final reads with) has the long deadline.
      const uris = [`etcd://${hosts}${prefix}?timeoutMs=4000`, `etcd://${hosts}${prefix}?timeoutMs=100`];
      let opened = 0;
      const ops = 2000;
      const seed = Math.floor(Math.random() * 2 ** 31);
      const random = seeded(seed);
      const handles = 4;
      // The handles are opened before the cuts start: open probes the cluster, and a
      // probe cut within a 100 ms deadline fails the open, which is not what this tests.
      const report = await stressConsensus(async () => {
        const handle = await openConsensus(uris[opened++ % uris.length]!, RAW);
        if (opened === handles) for (const p of proxies) p.chaos(0.03, random);
        return handle;
      }, {
        ops,
        keys: 4,
        clients: 16,
        handles,
        onProgress(done) {
          // The final reads run without faults: they must succeed to prove nothing was lost.
          if (done === ops) for (const p of proxies) p.chaos(0);
        },
      });
      const cuts = proxies.reduce((sum, p) => sum + p.cuts, 0);
      t.diagnostic(`${summary(report)}; ${cuts} connections cut (chaos seed ${seed})`);
      assert.deepEqual(report.errors, []);
      assert.deepEqual(report.unproven, []);
      assert.equal(report.verdict, 'ok', JSON.stringify(report.violations.slice(0, 1), (_, x: unknown) => (typeof x === 'bigint' ? `${x}` : x)));
      assert.ok(report.ok);
      // The run proves something only if faults landed on requests and writes still went through.
      assert.ok(cuts >= 10, `only ${cuts} connections cut`);
      assert.ok(report.unknown > 0, 'no operation was left in doubt by a cut');
      assert.ok(report.committed >= 20, `only ${report.committed} commits`);
    } finally {
      for (const p of proxies) p.chaos(0);
      await Promise.all(proxies.map((p) => p.close()));
    }
  });

  test('the leader killed during a stress run: the run goes on through re-election and stays linearizable; the killed member rejoins', async (t) => {
    const prefix = `/kill-${randomUUID()}`;
    const uri = `etcd://${etcd.endpoints.join(',')}${prefix}?timeoutMs=4000`;
    const ops = 3000;
    let killed = -1;
    let killedAt = Infinity;
    let killing: Promise<void> | undefined;
    const report = await stressConsensus(() => openConsensus(uri), {
      ops,
      keys: 6,
      clients: 16,
      onProgress(done) {
        if (done === Math.floor(ops / 3) && killing === undefined) {
          killing = (async () => {
            killed = await etcd.leader();
            await etcd.kill(killed);
            // Operations that start from here on can only commit through a new leader.
            killedAt = performance.now();
          })();
        }
      },
    });
    await killing;
    assert.ok(killed >= 0, 'the leader was killed during the run');
    assert.deepEqual(report.errors, []);
    assert.equal(report.verdict, 'ok', JSON.stringify(report.violations.slice(0, 1)));
    assert.ok(report.ok);
    const committedAfter = report.history.filter(
      (op) => op.op === 'compareAndSet' && op.start > killedAt && op.result.type === 'ok' && op.result.value === 'Committed',
    ).length;
    t.diagnostic(`${summary(report)}; killed leader m${killed}; ${committedAfter} commits after the kill`);
    assert.ok(committedAfter > 20, `only ${committedAfter} commits after the leader was killed`);
    // Re-elected among the two survivors (leader() only asks running members, and throws after 30 s without one).
    await etcd.leader();

    await etcd.restart(killed);
    // The restarted member alone serves the state the others agreed on.
    const all = await openConsensus(uri);
    const rejoined = await openConsensus(`etcd://${etcd.members[killed]!.endpoint}${prefix}`);
    try {
      let keys = 0;
      for await (const key of all.listKeys()) {
        keys++;
        const a = await all.head(key);
        const b = await rejoined.head(key);
        assert.equal(b?.seqno.value, a?.seqno.value, key);
        assert.equal(text(b?.data), text(a?.data), key);
      }
      assert.equal(keys, 6);
    } finally {
      await Promise.all([all.close(), rejoined.close()]);
    }
  });
});
