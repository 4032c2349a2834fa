import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, test } from 'node:test';
import { FORMS, HOSTILE_PASSWORDS, assertNoPassword } from './fixtures/cli-passwords.js';
import { parseLocationUri, redactUrisIn, uriSecrets } from '../src/uri.js';
import {
  Determinate,
  ExternalError,
  Indeterminate,
  MemBlob,
  MemConsensus,
  SeqNo,
  SegmentedBytes,
  SCAN_ALL,
  openBlob,
  openConsensus,
  redactUri,
} from 'persist-location';

describe('SeqNo', () => {
  test('holds 64-bit values exactly', () => {
    assert.equal(new SeqNo(5).value, 5n);
    assert.equal(new SeqNo((1n << 64n) - 1n).value, 18446744073709551615n);
    assert.equal(SeqNo.minimum().value, 0n);
    assert.equal(new SeqNo(5).next().value, 6n);
    assert.throws(() => new SeqNo((1n << 64n) - 1n).next(), RangeError);
  });

  test('rejects values outside [0, 2^64-1] and non-integers', () => {
    for (const bad of [-1, -1n, 1n << 64n, 1.5, Number.NaN, Infinity, 2 ** 53]) {
      assert.throws(() => new SeqNo(bad), RangeError, String(bad));
    }
  });

  test('prints and parses v<N>', () => {
    assert.equal(new SeqNo(5).toString(), 'v5');
    assert.equal(`${new SeqNo(12345678901234567890n)}`, 'v12345678901234567890');
    assert.deepStrictEqual(SeqNo.parse('v5'), new SeqNo(5));
    assert.deepStrictEqual(SeqNo.parse('v18446744073709551615'), new SeqNo((1n << 64n) - 1n));
    assert.throws(() => SeqNo.parse('5'), /invalid SeqNo 5: incorrect prefix/);
    for (const bad of ['vx', 'v-1', 'v1.5', 'v', '', 'v 1', 'v18446744073709551616', 'v0x10']) {
      assert.throws(() => SeqNo.parse(bad), /invalid SeqNo/, bad);
    }
  });

  test('orders and compares by value', () => {
    assert.ok(new SeqNo(3).equals(new SeqNo(3)));
    assert.ok(!new SeqNo(3).equals(new SeqNo(4)));
    assert.equal(SeqNo.compare(new SeqNo(3), new SeqNo(4)), -1);
    assert.equal(SeqNo.compare(new SeqNo(4), new SeqNo(4)), 0);
    assert.equal(SeqNo.compare(new SeqNo(1n << 63n), new SeqNo(4)), 1);
    const sorted = [new SeqNo(10), new SeqNo(2), new SeqNo(1n << 60n)].sort(SeqNo.compare).map(String);
    assert.deepEqual(sorted, ['v2', 'v10', `v${1n << 60n}`]);
    assert.deepStrictEqual(new SeqNo(7), new SeqNo(7n));
  });

  test('is immutable at run time, not only to TypeScript', () => {
    const s = new SeqNo(5);
    const writable = s as { value: bigint };
    assert.throws(() => (writable.value = 6n), TypeError);
    assert.throws(() => Object.defineProperty(s, 'value', { value: 6n }), TypeError);
    assert.throws(() => Object.assign(s, { extra: 1 }), TypeError);
    assert.equal(s.value, 5n);
    assert.deepStrictEqual(s, new SeqNo(5n), 'frozen or not, equal seqnos are deepStrictEqual');
    assert.notDeepStrictEqual(s, new SeqNo(6));
    assert.deepStrictEqual(SeqNo.parse('v5'), s);
    assert.deepStrictEqual(s.next(), new SeqNo(6));
  });

  test('subclasses can add fields, but not change the value', () => {
    class Tagged extends SeqNo {
      readonly tag = 'mine';
    }
    const t = new Tagged(7);
    assert.equal(t.tag, 'mine');
    assert.equal(t.value, 7n);
    assert.ok(t.equals(new SeqNo(7)));
    assert.equal(String(t.next()), 'v8');
    assert.throws(() => ((t as { value: bigint }).value = 8n), TypeError);
    class Shadowing extends SeqNo {
      constructor(v: bigint) {
        super(v);
        Object.defineProperty(this, 'value', { value: 0n });
      }
    }
    assert.throws(() => new Shadowing(3n), TypeError);
  });
});

describe('errors', () => {
  test('Determinate and Indeterminate are ExternalErrors with a code and a cause', () => {
    const cause = new Error('driver');
    const d = new Determinate('InvalidArgument', 'bad', { cause });
    const i = new Indeterminate('Unknown', 'lost');
    for (const e of [d, i]) {
      assert.ok(e instanceof ExternalError);
      assert.ok(e instanceof Error);
    }
    assert.equal(d.determinate, true);
    assert.equal(i.determinate, false);
    assert.equal(d.code, 'InvalidArgument');
    assert.equal(d.cause, cause);
    assert.equal(d.name, 'Determinate');
    assert.equal(i.name, 'Indeterminate');
  });

  test('isTimeout is decided by the code, never the message', () => {
    const t = ExternalError.timeout(250);
    assert.ok(t instanceof Indeterminate);
    assert.equal(t.isTimeout(), true);
    assert.equal(t.code, 'Timeout');
    assert.match(t.message, /250 ms/);
    assert.equal(ExternalError.timeout(new Date(0)).isTimeout(), true);
    assert.equal(new Indeterminate('Unknown', 'connection timeout while reading').isTimeout(), false);
    assert.equal(new Determinate('Unavailable', 'timeout').isTimeout(), false);
  });
});

describe('SegmentedBytes', () => {
  test('joins segments only when asked, and not for one segment', () => {
    const one = new Uint8Array([1, 2, 3]);
    assert.equal(new SegmentedBytes(one).toContiguous(), one);
    const many = new SegmentedBytes([new Uint8Array([1]), new Uint8Array([2, 3]), new Uint8Array(0)]);
    assert.equal(many.length, 3);
    assert.equal(many.segments.length, 3);
    assert.deepEqual([...many.toContiguous()], [1, 2, 3]);
    assert.equal(new SegmentedBytes([]).length, 0);
  });
});

describe('validation runs before storage is touched', () => {
  test('a closed handle throws a plain Error, but bad arguments are still InvalidArgument', async () => {
    const c = new MemConsensus();
    await c.close();
    await c.close();
    await assert.rejects(c.head('k'), (e: Error) => !(e instanceof ExternalError) && /closed/.test(e.message));
    await assert.rejects(c.head(''), { code: 'InvalidArgument' });
  });

  test('a signal that is not an AbortSignal is InvalidArgument, before anything is written', async () => {
    const fake = { signal: { aborted: false } } as unknown as { signal: AbortSignal };
    const c = new MemConsensus();
    await assert.rejects(c.compareAndSet('k', undefined, { seqno: new SeqNo(1), data: new Uint8Array() }, fake), { code: 'InvalidArgument', message: /AbortSignal/ });
    assert.equal(await c.head('k'), undefined);
    const b = new MemBlob();
    await assert.rejects(b.set('k', new Uint8Array(), fake), { code: 'InvalidArgument' });
    await assert.rejects(async () => {
      for await (const _ of b.list('', fake));
    }, { code: 'InvalidArgument' });
    assert.equal(await b.get('k'), undefined);
  });

  test('scan accepts SCAN_ALL', async () => {
    assert.equal(SCAN_ALL, Number.MAX_SAFE_INTEGER);
    assert.deepEqual(await new MemConsensus().scan('k', SeqNo.minimum(), SCAN_ALL), []);
  });
});

describe('openBlob / openConsensus', () => {
  test('mem:// handles with one name share data', async () => {
    const a = await openConsensus('mem://shared-name');
    const b = await openConsensus('mem://shared-name');
    await a.compareAndSet('k', undefined, { seqno: new SeqNo(1), data: new Uint8Array([1]) });
    assert.equal((await b.head('k'))?.seqno.value, 1n);
    const other = await openConsensus('mem://other-name');
    assert.equal(await other.head('k'), undefined);
  });

  test('unknown schemes and parameters reject with the accepted ones listed', async () => {
    await assert.rejects(openConsensus('redis://localhost'), (e: Error) => e instanceof Determinate && /unknown Consensus URI scheme 'redis:'.*sqlite:.*postgres:.*etcd:/.test(e.message));
    await assert.rejects(openBlob('gs://bucket'), (e: Error) => e instanceof Determinate && /accepted: mem:, file:, s3:, azure:/.test(e.message));
    await assert.rejects(openBlob('mem://x?bogus=1'), /unknown parameter 'bogus'.*accepts: keepDeleted/);
    await assert.rejects(openBlob('mem://x?keepDeleted=maybe'), /must be true or false/);
    await assert.rejects(openConsensus('mem://'), /expected mem:\/\/NAME/);
    await assert.rejects(openConsensus('no scheme here'), /no scheme/);
  });

  test('credentials are redacted from messages', async () => {
    assert.equal(redactUri('postgres://alice:s3cret@db:5432/x?schema=a'), 'postgres://alice:***@db:5432/x?schema=a');
    assert.equal(redactUri('s3://b/p?endpoint=http://h&secretAccessKey=abc'), 's3://b/p?endpoint=http://h&secretAccessKey=***');
    assert.equal(redactUri('azure://c?sig=xyz&sv=1'), 'azure://c?sig=***&sv=1');
    await assert.rejects(openConsensus('redis://alice:s3cret@host'), (e: Error) => !e.message.includes('s3cret'));
  });

  test('a password containing a raw @ is redacted whole', async () => {
    // pg (WHATWG URL) reads the password up to the last '@' of the authority.
    assert.equal(redactUri('postgres://alice:p@ss@w0rd@db:5432/x'), 'postgres://alice:***@db:5432/x');
    // An '@' further on may end a password with a raw '/' or '?' in it: all of it is hidden.
    assert.equal(redactUri('postgresql://alice:p@ss@db/x?schema=a@b'), 'postgresql://alice:***@b');
    assert.equal(redactUri('file:///dir/a:b@c'), 'file:///dir/a:b@c', 'an @ in a path is not userinfo');
    assert.equal(redactUri('postgres://alice@db:5432/x'), 'postgres://alice@db:5432/x', 'a user name alone is no secret');
    assert.equal(redactUri('etcd://h1:2379,h2:2379/app'), 'etcd://h1:2379,h2:2379/app');
    await assert.rejects(openConsensus('mem://alice:p@ss@w0rd@db/x?nope=1'), (e: Error) => e instanceof Determinate && !e.message.includes('w0rd') && e.message.includes('mem://alice:***@db/x'));
  });

  test('a missing driver is named, with the command that installs it', () => {
    const hook = fileURLToPath(new URL('../../test/fixtures/hide-driver.mjs', import.meta.url));
    const script = `
      import { openConsensus } from 'persist-location';
      try { await openConsensus('etcd://127.0.0.1:1'); console.log('opened'); }
      catch (e) { console.log(e.name + ' ' + e.code + ': ' + e.message); }`;
    const out = execFileSync(process.execPath, ['--import', hook, '--input-type=module', '-e', script], {
      env: { ...process.env, HIDE_PACKAGE: 'etcd3' },
      encoding: 'utf8',
    });
    assert.match(out, /^Determinate FailedPrecondition: .*needs the npm package etcd3.*npm install etcd3/);
  });
});


/** Everything an error prints: message and stack, its own and its causes'. */
function printed(err: unknown): string {
  const parts: string[] = [];
  for (let e: unknown = err, depth = 0; e !== undefined && e !== null && depth < 8; depth++) {
    parts.push(e instanceof Error ? `${e.message}\n${e.stack ?? ''}` : String(e));
    e = e instanceof Error ? e.cause : undefined;
  }
  return parts.join('\n');
}

async function rejection(work: () => Promise<unknown>, what: string): Promise<unknown> {
  try {
    await work();
  } catch (err) {
    return err;
  }
  throw new Error(`${what} did not reject`);
}

describe('a password is never printed back, whatever it holds', () => {
  test('redactUri hides it by position, raw or percent-encoded', () => {
    for (const password of HOSTILE_PASSWORDS) {
      for (const [form, typed] of Object.entries(FORMS)) {
        const uri = `postgres://alice:${typed(password)}@db:5432/x?schema=s`;
        const what = `${form} ${JSON.stringify(password)}`;
        assert.equal(redactUri(uri), 'postgres://alice:***@db:5432/x?schema=s', what);
        if (!typed(password).includes('#')) assert.equal(parseLocationUri(uri).display, 'postgres://alice:***@db:5432/x?schema=s', what);
        // A URI in running text ends at a space or quote (the CLI also scrubs the known password).
        if (!/[\s'"]/.test(password)) assert.equal(redactUrisIn(`could not reach '${uri}'.`), "could not reach 'postgres://alice:***@db:5432/x?schema=s'.", what);
        assert.ok(uriSecrets(uri).includes(typed(password)) || password === '***', `${what}: ${JSON.stringify(uriSecrets(uri))}`);
      }
    }
  });

  const userinfoCases: [string, (typed: string) => Promise<unknown>][] = [
    ['an unknown scheme', (t) => openConsensus(`redis://u:${t}@127.0.0.1:1/db`)],
    ['a fragment', (t) => openConsensus(`mem://u:${t}@h/x#frag`)],
    ['an unknown parameter', (t) => openConsensus(`mem://u:${t}@h/x?bogus=1`)],
    ['a malformed percent-encoding', (t) => openConsensus(`mem://u:${t}@h/x%zz`)],
    ['a bad boolean parameter', (t) => openBlob(`mem://u:${t}@h/x?keepDeleted=maybe`)],
    ['a bad integer parameter', (t) => openConsensus(`postgres://u:${t}@127.0.0.1:1/db?poolSize=many`)],
    ['a host in a sqlite: URI', (t) => openConsensus(`sqlite://u:${t}@h/x.db`)],
    ['an unknown etcd parameter', (t) => openConsensus(`etcd://u:${t}@127.0.0.1:1/app?bogus=1`)],
  ];
  for (const [name, open] of userinfoCases) {
    test(`in the error for ${name}`, async () => {
      for (const password of HOSTILE_PASSWORDS) {
        for (const [form, typed] of Object.entries(FORMS)) {
          const what = `${name}, ${form} ${JSON.stringify(password)}`;
          const err = await rejection(() => open(typed(password)), what);
          assert.ok(err instanceof ExternalError, `${what}: ${String(err)}`);
          assertNoPassword(printed(err), password, what);
        }
      }
    });
  }

  test('in the errors for URIs with secret parameters, or a URL with a password inside a parameter', async () => {
    const cases: [string, (typed: string, password: string) => Promise<unknown>][] = [
      ['s3 secretAccessKey', (t) => openBlob(`s3://b/p?endpoint=http://127.0.0.1:1&secretAccessKey=${t}&bogus=1`)],
      ['azure sig', (t) => openBlob(`azure://c/p?sv=1&sig=${t}&bogus=1`)],
      ['postgres password and sslpassword', (t) => openConsensus(`postgres://h:1/db?password=${t}&sslpassword=${t}&bogus=1`)],
      ['an endpoint with a password', (t) => openBlob(`s3://b?endpoint=http://u:${t}@127.0.0.1:1&bogus=1`)],
      ['an encoded endpoint with a password', (_t, p) => openBlob(`s3://b?endpoint=${encodeURIComponent(`http://u:${p}@127.0.0.1:1`)}&bogus=1`)],
    ];
    for (const [name, open] of cases) {
      for (const password of HOSTILE_PASSWORDS) {
        for (const [form, typed] of Object.entries(FORMS)) {
          const what = `${name}, ${form} ${JSON.stringify(password)}`;
          const err = await rejection(() => open(typed(password), password), what);
          assert.ok(err instanceof ExternalError, `${what}: ${String(err)}`);
          assertNoPassword(printed(err), password, what);
        }
      }
    }
  });

  test('a query that may begin inside the password is not echoed in part', async () => {
    // The raw '?' starts the query inside the password: 'k9' would be a piece of it.
    const err = await rejection(() => openConsensus('mem://u:Zq?k9=w7@h/x'), 'mem:// with a raw ? in the password');
    assert.ok(err instanceof Determinate && err.code === 'InvalidArgument');
    assert.doesNotMatch(printed(err), /k9|w7/);
    assert.match(String((err as Error).message), /mem:\/\/u:\*\*\*@h\/x .*percent-encode/);
    const bad = await rejection(() => openBlob('mem://u:Zq/k9?keepDeleted=w7@h/x'), 'mem:// with a raw / and ? in the password');
    assert.doesNotMatch(printed(bad), /w7/);
  });
});
