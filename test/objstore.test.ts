import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Determinate, ErrorCode, ExternalError, Indeterminate } from 'persist-location';
import { listPages, rangedGet, stagedWrite, type GetOutcome, type ObjectReader, type RangedGetOptions, type StagedUpload } from '../src/objstore/index.js';

/** A store of one object whose value `version()` gives, answering ranges as S3 or Azure would. */
function store(version: () => { bytes: Buffer; etag: string }, log: string[] = []): ObjectReader {
  return {
    async get(_name, range, conditions): Promise<GetOutcome> {
      const { bytes, etag } = version();
      log.push(`${range === undefined ? 'whole' : `${range.start}+${range.length}`} ${conditions.ifMatch ?? '-'}`);
      if (conditions.ifMatch !== undefined && conditions.ifMatch !== etag) return 'changed';
      const start = range?.start ?? 0;
      if (range !== undefined && start >= bytes.length) return 'unsatisfiable';
      const body = bytes.subarray(start, range === undefined ? undefined : start + range.length);
      return { start, length: body.length, size: bytes.length, etag, discard() {}, read: async () => Uint8Array.from(body) };
    },
  };
}

const options = (extra: Partial<RangedGetOptions> = {}): RangedGetOptions => ({
  firstBytes: 4,
  rangeBytes: 4,
  concurrency: 2,
  trustFirst: true,
  reads: 3,
  whenChanging: 'refuse',
  ...extra,
});
const ctx = { what: 'T get("k")' };
const text = (b: { toContiguous(): Uint8Array } | undefined) => (b === undefined ? undefined : Buffer.from(b.toContiguous()).toString());

describe('rangedGet', () => {
  test('reads a value in ranges pinned to the first ETag; an empty object is an empty value', async () => {
    const log: string[] = [];
    const got = await rangedGet(store(() => ({ bytes: Buffer.from('0123456789'), etag: 'a' }), log), 'k', options(), ctx);
    assert.equal(text(got), '0123456789');
    assert.deepEqual(log.sort(), ['0+4 -', '4+4 a', '8+2 a']);
    assert.equal(text(await rangedGet(store(() => ({ bytes: Buffer.alloc(0), etag: 'e' })), 'k', options(), ctx)), '');
  });

  test('an object that keeps changing: refused Determinate Aborted after `reads` reads, or read whole', async () => {
    let n = 0;
    const changing = () => ({ bytes: Buffer.alloc(10, 48 + (n % 10)), etag: `v${n++}` });
    await assert.rejects(rangedGet(store(changing), 'k', options(), ctx), (err) => err instanceof Determinate && err.code === ErrorCode.Aborted && /3 reads/.test(err.message));
    const log: string[] = [];
    const whole = await rangedGet(store(changing, log), 'k', options({ reads: 1, whenChanging: 'read-whole', trustFirst: false }), ctx);
    assert.equal(whole?.length, 10);
    assert.equal(log.at(-1), 'whole -');
  });

  test('a body that breaks off is read again; one that keeps breaking fails', async () => {
    let breaks = 1;
    const reader: ObjectReader = {
      async get(name, range, conditions, c) {
        const out = await store(() => ({ bytes: Buffer.from('abcdefgh'), etag: 'a' })).get(name, range, conditions, c);
        if (typeof out === 'string' || range?.start !== 4) return out;
        return { ...out, read: async () => (breaks-- > 0 ? Promise.reject(new Indeterminate(ErrorCode.Unavailable, 'body broke off')) : out.read(undefined)) };
      },
    };
    assert.equal(text(await rangedGet(reader, 'k', options(), ctx)), 'abcdefgh');
    breaks = 100;
    await assert.rejects(rangedGet(reader, 'k', options(), ctx), { code: ErrorCode.Unavailable });
  });
});

describe('stagedWrite', () => {
  const upload = (log: string[], fail: { part?: number; commit?: Error } = {}): StagedUpload => ({
    id: 'u1',
    async stage(i) {
      log.push(`stage ${i}`);
      if (i === fail.part) throw new Indeterminate(ErrorCode.Unavailable, 'part lost');
    },
    async commit() {
      log.push('commit');
      if (fail.commit !== undefined) throw fail.commit;
    },
    async abort() {
      log.push('abort');
    },
  });
  const sizes = { partSize: 4, maxParts: 100, concurrency: 1 };

  test('a failed part: Determinate (nothing committed), the upload aborted', async () => {
    const log: string[] = [];
    await assert.rejects(stagedWrite(async () => upload(log, { part: 1 }), Buffer.alloc(10), sizes, ctx), (err) => err instanceof Determinate && /nothing was written/.test(err.message));
    assert.deepEqual(log, ['stage 0', 'stage 1', 'abort']);
  });

  test('the caller aborting after the parts, before the commit: Determinate Cancelled, no commit', async () => {
    const log: string[] = [];
    const control = new AbortController();
    const up = upload(log);
    const stage = up.stage.bind(up);
    up.stage = async (i, count, bytes, c) => {
      await stage(i, count, bytes, c);
      if (i === count - 1) control.abort(new Error('caller gave up'));
    };
    await assert.rejects(stagedWrite(async () => up, Buffer.alloc(10), sizes, { ...ctx, signal: control.signal }), { name: 'Determinate', code: ErrorCode.Cancelled });
    assert.deepEqual(log, ['stage 0', 'stage 1', 'stage 2', 'abort']);
  });

  test('a failed commit stands as reported, the abort after it is cleanup', async () => {
    const log: string[] = [];
    const lost = new Indeterminate(ErrorCode.Unavailable, 'commit lost');
    await assert.rejects(stagedWrite(async () => upload(log, { commit: lost }), Buffer.alloc(8), sizes, ctx), (err) => err === lost);
    assert.deepEqual(log, ['stage 0', 'stage 1', 'commit', 'abort']);
  });

  test('the part size grows to stay within maxParts', async () => {
    const log: string[] = [];
    await stagedWrite(async (parts) => (log.push(`parts ${parts}`), upload(log)), Buffer.alloc(100), { ...sizes, maxParts: 5 }, ctx);
    assert.equal(log[0], 'parts 5');
  });
});

describe('listPages', () => {
  test('requests a page only when the loop has consumed the one before; a loop that breaks requests no more', async () => {
    const asked: (string | undefined)[] = [];
    const pages = new Map<string | undefined, { items: { name: string; size: number }[]; next: string | undefined }>([
      [undefined, { items: [{ name: 'a', size: 1 }, { name: 'b', size: 1 }], next: 't1' }],
      ['t1', { items: [], next: 't2' }],
      ['t2', { items: [{ name: 'c', size: 1 }], next: undefined }],
    ]);
    const page = async (_prefix: string, token: string | undefined) => {
      asked.push(token);
      return pages.get(token)!;
    };
    for await (const item of listPages(page, '', ctx)) {
      assert.equal(item.name, 'a');
      break;
    }
    assert.deepEqual(asked, [undefined]);
    asked.length = 0;
    const all = [];
    for await (const item of listPages(page, '', ctx)) all.push(item.name);
    assert.deepEqual(all, ['a', 'b', 'c']);
    assert.deepEqual(asked, [undefined, 't1', 't2'], 'an empty page in the middle does not end the listing');
  });

  test('a failing page rejects the loop with its error', async () => {
    const failure = new Determinate(ErrorCode.PermissionDenied, 'denied');
    await assert.rejects(
      (async () => {
        for await (const _ of listPages(async () => Promise.reject(failure), '', ctx));
      })(),
      (err) => err === failure && err instanceof ExternalError,
    );
  });
});
