// The ExternalError brand across copies of the package, the one classifier of
// "might it have applied?", and the object stores' shared HTTP table.
import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { after, describe, test } from 'node:test';
import { Determinate, ErrorCode, ExternalError, Indeterminate, externalError, firstOf, mapError, type ErrorTable } from 'persist-location';
import { aborted } from '../src/errors.js';
import { atExposure, mightHaveApplied, REFUSED_WHEN_SENT, type Exposure } from '../src/kit/exposure.js';
import { httpErrorTable, httpVerdict, neverConnected, transportFailure, type HttpOverrides } from '../src/kit/http-errors.js';

type ErrorsModule = typeof import('../src/errors.js');

const dir = mkdtempSync(join(tmpdir(), 'persist-location-copy-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** A second installed copy of the compiled errors module, loaded from elsewhere. */
async function secondCopy(): Promise<ErrorsModule> {
  const target = join(dir, 'errors.js');
  copyFileSync(new URL('../src/errors.js', import.meta.url), target);
  const copy = (await import(pathToFileURL(target).href)) as ErrorsModule;
  assert.notEqual(copy.ExternalError, ExternalError, 'the copy must be a separate module instance');
  return copy;
}

describe('ExternalError brand', () => {
  test('instanceof works both ways between two copies, by kind', async () => {
    const other = await secondCopy();
    const theirs = [new other.Determinate(ErrorCode.NotFound, 'x'), new other.Indeterminate(ErrorCode.Timeout, 'y')] as const;
    const ours = [new Determinate(ErrorCode.NotFound, 'x'), new Indeterminate(ErrorCode.Timeout, 'y')] as const;
    for (const [d, i, E, D, I] of [
      [theirs[0], theirs[1], ExternalError, Determinate, Indeterminate],
      [ours[0], ours[1], other.ExternalError, other.Determinate, other.Indeterminate],
    ] as const) {
      assert.ok(d instanceof E);
      assert.ok(i instanceof E);
      assert.ok(d instanceof D);
      assert.ok(!(d instanceof I));
      assert.ok(i instanceof I);
      assert.ok(!(i instanceof D));
      assert.ok(d instanceof Error && i instanceof Error);
    }
    assert.ok(theirs[1].isTimeout());
  });

  test('an error made by the copy classifies in this one (e.g. a driver built on another install)', async () => {
    const other = await secondCopy();
    const err: unknown = other.aborted(AbortSignal.abort(), false);
    assert.ok(err instanceof Determinate);
    assert.equal(atExposure(err as ExternalError, 'committed').determinate, false);
    const mapped = mapError(err, () => undefined, { what: 'x', exposure: 'sent' });
    assert.equal(mapped, err, 'an ExternalError of the other copy passes through, not wrapped as Unknown');
  });

  test('subclasses keep ordinary instanceof, and look-alikes without the brand are not ExternalErrors', async () => {
    class Mine extends Determinate {}
    class Other extends Indeterminate {}
    const other = await secondCopy();
    assert.ok(new Mine(ErrorCode.Unknown, 'm') instanceof Mine);
    assert.ok(new Mine(ErrorCode.Unknown, 'm') instanceof Determinate);
    assert.ok(new Mine(ErrorCode.Unknown, 'm') instanceof ExternalError);
    assert.ok(!(new Determinate(ErrorCode.Unknown, 'd') instanceof Mine), 'a subclass does not stand for its base');
    assert.ok(!(new other.Determinate(ErrorCode.Unknown, 'd') instanceof Mine), 'nor for the copy of its base');
    assert.ok(!(new Mine(ErrorCode.Unknown, 'm') instanceof Other));
    const lookalike = Object.assign(new Error('x'), { code: 'Unknown', determinate: true });
    assert.ok(!(lookalike instanceof ExternalError));
    for (const v of [null, undefined, 'x', 5, {}] as unknown[]) {
      assert.ok(!(v instanceof ExternalError) && !(v instanceof Determinate) && !(v instanceof Indeterminate), String(v));
    }
    assert.ok(!(new Error('plain') instanceof Determinate));
  });
});

describe('externalError: the one classifier', () => {
  const codes = Object.values(ErrorCode);
  test('not-sent is Determinate for every code, committed Indeterminate for every code', () => {
    for (const code of codes) {
      for (const refused of [undefined, true, false]) {
        assert.equal(externalError(code, 'm', { exposure: 'not-sent', refused }).determinate, true, code);
        assert.equal(externalError(code, 'm', { exposure: 'committed', refused }).determinate, false, code);
      }
    }
  });

  test('sent: Determinate exactly for the refusal codes, unless the table says otherwise', () => {
    const refusals = codes.filter((c) => REFUSED_WHEN_SENT[c]).sort();
    assert.deepEqual(refusals, ['Aborted', 'FailedPrecondition', 'InvalidArgument', 'NotFound', 'PermissionDenied', 'ResourceExhausted']);
    for (const code of codes) {
      assert.equal(externalError(code, 'm', { exposure: 'sent' }).determinate, REFUSED_WHEN_SENT[code], code);
      assert.equal(externalError(code, 'm', { exposure: 'sent', refused: false }).determinate, false, code);
      assert.equal(externalError(code, 'm', { exposure: 'sent', refused: true }).determinate, code !== ErrorCode.Timeout, code);
    }
  });

  test('a timeout after sending is never Determinate; one before sending is Determinate Unavailable', () => {
    for (const exposure of ['sent', 'committed'] as Exposure[]) {
      const e = externalError(ErrorCode.Timeout, 'timed out', { exposure, refused: true });
      assert.ok(e instanceof Indeterminate && e.isTimeout());
    }
    const early = externalError(ErrorCode.Timeout, 'timed out waiting for a connection', { exposure: 'not-sent' });
    assert.ok(early instanceof Determinate);
    assert.equal(early.code, ErrorCode.Unavailable);
    assert.equal(early.isTimeout(), false);
    assert.match(early.message, /timed out waiting/);
    assert.equal(mightHaveApplied(ErrorCode.Timeout, 'sent', true), true);
  });

  test('keeps the cause', () => {
    const cause = new Error('driver');
    assert.equal(externalError(ErrorCode.Unknown, 'm', { exposure: 'sent', cause }).cause, cause);
  });

  test('atExposure: judges an existing error again', () => {
    const refusal = new Determinate(ErrorCode.FailedPrecondition, 'refused');
    const lost = new Indeterminate(ErrorCode.Timeout, 'lost');
    assert.equal(atExposure(refusal, 'sent'), refusal);
    assert.equal(atExposure(lost, 'sent'), lost);
    const later = atExposure(refusal, 'committed');
    assert.ok(later instanceof Indeterminate);
    assert.equal(later.code, ErrorCode.FailedPrecondition);
    assert.match(later.message, /earlier attempt may have been applied/);
    assert.equal(later.cause, refusal);
    const unsent = atExposure(lost, 'not-sent');
    assert.ok(unsent instanceof Determinate);
    assert.equal(unsent.code, ErrorCode.Unavailable);
  });

  test('aborted() takes an exposure as well as a boolean', () => {
    const signal = AbortSignal.abort(new Error('stop'));
    assert.ok(aborted(signal, 'not-sent') instanceof Determinate);
    assert.ok(aborted(signal, false) instanceof Determinate);
    assert.ok(aborted(signal, 'sent') instanceof Indeterminate);
    assert.ok(aborted(signal, 'committed') instanceof Indeterminate);
    const timedOut = AbortSignal.abort(new DOMException('late', 'TimeoutError'));
    assert.ok(aborted(timedOut, 'sent').isTimeout());
    assert.equal(aborted(timedOut, 'not-sent').code, ErrorCode.Cancelled);
  });
});

describe('mapError with an ErrorTable', () => {
  const table: ErrorTable = (err) => {
    const code = (err as { code?: unknown }).code;
    if (code === 'REFUSED') return { code: ErrorCode.InvalidArgument, reason: 'bad request' };
    if (code === 'ABORTED_AFTER') return { code: ErrorCode.Aborted, refused: false, reason: 'aborted' };
    return undefined;
  };
  const err = (code: string) => Object.assign(new Error(`driver says ${code}\nsecond line`), { code });

  test('the verdict and the exposure decide; the message names the operation and the driver error', () => {
    const refused = mapError(err('REFUSED'), table, { what: 'Store(x) set("k")', exposure: 'sent' });
    assert.ok(refused instanceof Determinate);
    assert.equal(refused.code, ErrorCode.InvalidArgument);
    assert.equal(refused.message, 'Store(x) set("k"): bad request (Error: driver says REFUSED)');
    assert.ok(mapError(err('REFUSED'), table, { what: 'w', exposure: 'committed' }) instanceof Indeterminate);
    assert.ok(mapError(err('ABORTED_AFTER'), table, { what: 'w', exposure: 'sent' }) instanceof Indeterminate);
    const unknown = mapError(err('WHAT'), table, { what: 'w', exposure: 'sent' });
    assert.ok(unknown instanceof Indeterminate);
    assert.equal(unknown.code, ErrorCode.Unknown);
    assert.ok(mapError(err('WHAT'), table, { what: 'w', exposure: 'not-sent' }) instanceof Determinate);
  });

  test("the caller's fired signal wins over the driver error", () => {
    const signal = AbortSignal.abort(new Error('caller gave up'));
    const e = mapError(err('REFUSED'), table, { what: 'w', exposure: 'sent', signal });
    assert.ok(e instanceof Indeterminate);
    assert.equal(e.code, ErrorCode.Cancelled);
  });

  test('firstOf asks tables in order', () => {
    const first: ErrorTable = (e) => ((e as { code?: unknown }).code === 'REFUSED' ? { code: ErrorCode.NotFound } : undefined);
    const both = firstOf(first, table);
    assert.equal(both(err('REFUSED'))?.code, ErrorCode.NotFound);
    assert.equal(both(err('ABORTED_AFTER'))?.code, ErrorCode.Aborted);
    assert.equal(both(err('WHAT')), undefined);
  });
});

describe('the object stores’ HTTP table', () => {
  const judge = (status: number | undefined, extra: Parameters<typeof httpVerdict>[0] = {}, overrides?: HttpOverrides) => {
    const v = httpVerdict({ status, ...extra }, overrides);
    return { code: v.code, determinate: externalError(v.code, 'm', { exposure: 'sent', refused: v.refused }).determinate };
  };

  test('statuses, once sent', () => {
    const cases: [number, ErrorCode, boolean][] = [
      [400, ErrorCode.InvalidArgument, true],
      [401, ErrorCode.PermissionDenied, true],
      [403, ErrorCode.PermissionDenied, true],
      [404, ErrorCode.NotFound, true],
      [405, ErrorCode.InvalidArgument, true],
      [408, ErrorCode.Timeout, false],
      [409, ErrorCode.FailedPrecondition, true],
      [411, ErrorCode.InvalidArgument, true],
      [412, ErrorCode.FailedPrecondition, true],
      [413, ErrorCode.ResourceExhausted, true],
      [416, ErrorCode.InvalidArgument, true],
      [429, ErrorCode.Aborted, true],
      [500, ErrorCode.Unknown, false],
      [501, ErrorCode.Unknown, true],
      [502, ErrorCode.Unavailable, false],
      [503, ErrorCode.Unavailable, false],
      [504, ErrorCode.Timeout, false],
      [507, ErrorCode.Unknown, false],
      [304, ErrorCode.Unknown, false],
    ];
    for (const [status, code, determinate] of cases) assert.deepEqual(judge(status), { code, determinate }, String(status));
  });

  test('a store overrides by its error code first, then by status', () => {
    const s3: HttpOverrides = {
      codes: {
        ConditionalRequestConflict: { code: ErrorCode.Aborted, refused: true },
        SlowDown: { code: ErrorCode.Aborted, refused: true },
      },
    };
    const azure: HttpOverrides = { codes: { OperationTimedOut: { code: ErrorCode.Timeout }, ServerBusy: { code: ErrorCode.Aborted, refused: true } } };
    assert.deepEqual(judge(409, { code: 'ConditionalRequestConflict' }, s3), { code: ErrorCode.Aborted, determinate: true });
    assert.deepEqual(judge(409, { code: 'BlobAlreadyExists' }, azure), { code: ErrorCode.FailedPrecondition, determinate: true });
    assert.deepEqual(judge(503, { code: 'SlowDown' }, s3), { code: ErrorCode.Aborted, determinate: true });
    assert.deepEqual(judge(503, { code: 'ServerBusy' }, azure), { code: ErrorCode.Aborted, determinate: true });
    assert.deepEqual(judge(503, { code: 'ServiceUnavailable' }, s3), { code: ErrorCode.Unavailable, determinate: false });
    assert.deepEqual(judge(500, { code: 'OperationTimedOut' }, azure), { code: ErrorCode.Timeout, determinate: false });
    assert.deepEqual(judge(418, {}, { statuses: { 418: { code: ErrorCode.Unknown, refused: false } } }), { code: ErrorCode.Unknown, determinate: false });
  });

  test('transport failures: only a failure to connect proves nothing was sent', () => {
    const net = (errno: string, syscall?: string) => judge(undefined, { errno, syscall });
    for (const errno of ['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'UND_ERR_CONNECT_TIMEOUT']) {
      assert.deepEqual(net(errno), { code: ErrorCode.Unavailable, determinate: true }, errno);
    }
    for (const errno of ['EHOSTUNREACH', 'ENETUNREACH']) {
      assert.deepEqual(net(errno, 'connect'), { code: ErrorCode.Unavailable, determinate: true }, errno);
      assert.deepEqual(net(errno), { code: ErrorCode.Unavailable, determinate: false }, `${errno} on an open connection`);
      assert.deepEqual(net(errno, 'write'), { code: ErrorCode.Unavailable, determinate: false }, errno);
    }
    assert.deepEqual(net('ETIMEDOUT', 'connect'), { code: ErrorCode.Unavailable, determinate: true });
    for (const errno of ['ETIMEDOUT', 'ESOCKETTIMEDOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT']) {
      assert.deepEqual(net(errno), { code: ErrorCode.Timeout, determinate: false }, errno);
    }
    for (const errno of ['ECONNRESET', 'EPIPE', 'ECONNABORTED', 'ERR_STREAM_PREMATURE_CLOSE', 'UND_ERR_SOCKET']) {
      assert.deepEqual(net(errno), { code: ErrorCode.Unavailable, determinate: false }, errno);
    }
    assert.deepEqual(judge(undefined, { name: 'TimeoutError' }), { code: ErrorCode.Timeout, determinate: false });
    assert.deepEqual(judge(undefined, { name: 'AbortError' }), { code: ErrorCode.Cancelled, determinate: false });
    assert.deepEqual(judge(undefined, {}), { code: ErrorCode.Unknown, determinate: false });
  });

  test('transportFailure reads Node errors and ignores store codes and usage errors', () => {
    const sys = Object.assign(new Error('connect EHOSTUNREACH 10.0.0.1:443'), { code: 'EHOSTUNREACH', syscall: 'connect' });
    assert.deepEqual(transportFailure(sys), { errno: 'EHOSTUNREACH', syscall: 'connect', name: 'Error' });
    assert.equal(transportFailure(Object.assign(new Error('x'), { code: 'EntityTooLarge' })).errno, undefined);
    assert.equal(transportFailure(Object.assign(new TypeError('x'), { code: 'ERR_INVALID_ARG_TYPE' })).errno, undefined);
    assert.equal(transportFailure(Object.assign(new Error('x'), { code: 'ERR_STREAM_PREMATURE_CLOSE' })).errno, 'ERR_STREAM_PREMATURE_CLOSE');
    assert.deepEqual(transportFailure(null), { errno: undefined, syscall: undefined, name: undefined });
  });

  test('a driver that rewraps a system error keeps its syscall in the message: connect-phase failures stay told apart', () => {
    const rewrapped = (message: string, code: string) => Object.assign(new Error(message), { name: 'RestError', code });
    assert.equal(transportFailure(rewrapped('connect EHOSTUNREACH 10.0.0.1:443', 'EHOSTUNREACH')).syscall, 'connect');
    assert.equal(transportFailure(rewrapped('read EHOSTUNREACH', 'EHOSTUNREACH')).syscall, 'read');
    assert.equal(transportFailure(rewrapped('socket hang up', 'ECONNRESET')).syscall, undefined);
    assert.equal(transportFailure(Object.assign(new Error('connect ECONNREFUSED 1.2.3.4:5'), { code: 'ECONNREFUSED', syscall: 'write' })).syscall, 'write', 'a syscall field wins');
    assert.equal(neverConnected(transportFailure(rewrapped('connect ENETUNREACH 10.0.0.1:443', 'ENETUNREACH'))), true);
    assert.equal(neverConnected(transportFailure(rewrapped('read ENETUNREACH', 'ENETUNREACH'))), false);
    assert.equal(neverConnected({ errno: 'ECONNREFUSED' }), true);
    assert.equal(neverConnected({ errno: 'ECONNRESET', syscall: 'connect' }), false, 'a reset is never proof');
    assert.equal(neverConnected({ status: 503, errno: 'ECONNREFUSED' }), false, 'an answer came back');
  });

  test('an errno decides over the error name: a reset the AWS SDK names TimeoutError is Unavailable', () => {
    assert.deepEqual(judge(undefined, { errno: 'ECONNRESET', name: 'TimeoutError' }), { code: ErrorCode.Unavailable, determinate: false });
    assert.deepEqual(judge(undefined, { errno: 'ETIMEDOUT', name: 'TimeoutError' }), { code: ErrorCode.Timeout, determinate: false });
    assert.deepEqual(judge(undefined, { errno: 'UND_ERR_ABORTED', name: 'AbortError' }), { code: ErrorCode.Cancelled, determinate: false });
  });

  test('httpErrorTable names the status and the code in the reason', () => {
    const table = httpErrorTable((err) => err as { status?: number; code?: string; errno?: string });
    assert.equal(table({ status: 404, code: 'NoSuchKey' })?.reason, 'not found (HTTP 404 NoSuchKey)');
    assert.equal(table({ errno: 'ECONNRESET' })?.reason, 'connection lost (ECONNRESET)');
    assert.equal(table({})?.reason, 'request failed');
  });

  test('httpErrorTable: a store reads its SDK error, and errors that are not about a request are not recognised', () => {
    const table = httpErrorTable(
      (err) => {
        const e = err as { statusCode?: number; errorCode?: string };
        if (e.statusCode === undefined && transportFailure(err).errno === undefined) return undefined;
        return { status: e.statusCode, code: e.errorCode, ...transportFailure(err) };
      },
      { codes: { ServerBusy: { code: ErrorCode.Aborted, refused: true } } },
    );
    assert.equal(table({ statusCode: 503, errorCode: 'ServerBusy' })?.code, ErrorCode.Aborted);
    assert.equal(table(Object.assign(new Error('reset'), { code: 'ECONNRESET' }))?.refused, false);
    assert.equal(table(new Error('something else')), undefined);
    const mapped = mapError({ statusCode: 412 }, table, { what: 'AzureBlob(c) delete("k")', exposure: 'sent' });
    assert.ok(mapped instanceof Determinate);
    assert.equal(mapped.code, ErrorCode.FailedPrecondition);
  });
});
