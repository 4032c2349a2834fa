// The async kit: backoff and the retry loop, the deadline race, bounded parallelism.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { getEventListeners } from 'node:events';
import { describe, test } from 'node:test';
import { Determinate, ErrorCode, ExternalError, Indeterminate } from 'persist-location';
import { backoffDelay, DEFAULT_BACKOFF, retry, sleep, validateBackoff, type BackoffPolicy } from '../src/kit/backoff.js';
import { bounded } from '../src/kit/bounded.js';
import { withDeadline } from '../src/kit/deadline.js';

/** Rejects with `what` if `p` has not settled within `ms` (a bound, never a timing assertion). */
async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const bound = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not happen within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([p, bound]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * A promise that never settles, as from a driver that ignores its signal. It holds
 * no handle, and deadline timers do not keep the process alive, so every wait on
 * it goes through {@link within}.
 */
const hang = <T>(): Promise<T> => new Promise<T>(() => {});

const listeners = (signal: AbortSignal) => getEventListeners(signal, 'abort').length;

const fast: BackoffPolicy = { attempts: 5, minDelayMs: 1, maxDelayMs: 2, multiplier: 2, jitter: 0 };
const slow: BackoffPolicy = { attempts: 5, minDelayMs: 600_000, maxDelayMs: 600_000, multiplier: 2, jitter: 0 };
const lost = () => new Indeterminate(ErrorCode.Unavailable, 'connection lost after sending');
const refused = () => new Determinate(ErrorCode.Unavailable, 'connection refused');

describe('backoff', () => {
  test('a malformed policy is Determinate InvalidArgument naming the field', () => {
    const bad: [Partial<BackoffPolicy> | null, RegExp][] = [
      [null, /must be an object/],
      [{ ...fast, attempts: 0 }, /attempts/],
      [{ ...fast, attempts: 1.5 }, /attempts/],
      [{ ...fast, minDelayMs: -1 }, /minDelayMs/],
      [{ ...fast, maxDelayMs: 0.5 }, /maxDelayMs .*no less than minDelayMs/],
      [{ ...fast, multiplier: 0.5 }, /multiplier/],
      [{ ...fast, jitter: 1.5 }, /jitter/],
      [{ ...fast, jitter: Number.NaN }, /jitter/],
    ];
    for (const [policy, message] of bad) {
      assert.throws(
        () => validateBackoff(policy),
        (err: unknown) => err instanceof Determinate && err.code === ErrorCode.InvalidArgument && message.test(err.message),
        JSON.stringify(policy),
      );
    }
    validateBackoff(DEFAULT_BACKOFF);
    validateBackoff({ ...fast, attempts: Infinity });
  });

  test('the default grows from 4 ms, doubling, to 16 s, with ±10% jitter, and never above the cap', () => {
    const mid = () => 0.5;
    assert.deepEqual([1, 2, 3, 4].map((n) => backoffDelay(DEFAULT_BACKOFF, n, mid)), [4, 8, 16, 32]);
    assert.equal(backoffDelay(DEFAULT_BACKOFF, 13, mid), 16_000);
    assert.equal(backoffDelay(DEFAULT_BACKOFF, 1_000_000, mid), 16_000);
    assert.ok(Math.abs(backoffDelay(DEFAULT_BACKOFF, 1, () => 0) - 3.6) < 1e-9);
    assert.ok(Math.abs(backoffDelay(DEFAULT_BACKOFF, 1, () => 0.999999) - 4.4) < 1e-4);
    assert.equal(backoffDelay(DEFAULT_BACKOFF, 20, () => 0.999999), 16_000, 'jitter never goes above the cap');
    assert.equal(backoffDelay({ ...fast, minDelayMs: 0 }, 5000, mid), 0, 'no NaN from 0 * Infinity');
  });

  test('sleep rejects at once when its signal fires, as an ExternalError at the exposure', async () => {
    const stop = new AbortController();
    const sleeping = sleep(600_000, stop.signal);
    stop.abort(new Error('caller gave up'));
    const err = await within(sleeping.catch((e: unknown) => e), 10_000, 'sleep rejecting after abort');
    assert.ok(err instanceof Determinate && err.code === ErrorCode.Cancelled);
    assert.equal((err as ExternalError).cause, stop.signal.reason);
    await assert.rejects(sleep(1, AbortSignal.abort(), 'committed'), (e) => e instanceof Indeterminate);
  });
});

describe('retry', () => {
  test('retries retryable failures, numbering attempts, and resolves with the first success', async () => {
    const seen: number[] = [];
    const pauses: number[] = [];
    const result = await retry(
      async (n) => {
        seen.push(n);
        if (n < 3) throw refused();
        return 'done';
      },
      { policy: fast, retryable: () => true, onRetry: (_e, n, ms) => pauses.push(n, ms) },
    );
    assert.equal(result, 'done');
    assert.deepEqual(seen, [1, 2, 3]);
    assert.deepEqual(pauses, [1, 1, 2, 2]);
  });

  test('stops at the attempt limit, or at a failure that is not retryable, with that failure', async () => {
    let calls = 0;
    const last = refused();
    await assert.rejects(
      retry(
        async () => {
          calls++;
          throw calls === 5 ? last : refused();
        },
        { policy: fast, retryable: () => true },
      ),
      (err) => err === last,
    );
    assert.equal(calls, 5);
    calls = 0;
    const fatal = new Determinate(ErrorCode.PermissionDenied, 'no');
    await assert.rejects(
      retry(
        async () => {
          calls++;
          throw fatal;
        },
        { policy: fast, retryable: (err) => (err as ExternalError).code === ErrorCode.Unavailable },
      ),
      (err) => err === fatal,
    );
    assert.equal(calls, 1);
  });

  test('once an attempt may have applied, a later refusal is rejected Indeterminate', async () => {
    const failures = [lost(), new Determinate(ErrorCode.FailedPrecondition, 'the object changed')];
    const err = await retry(
      async (n) => {
        throw failures[n - 1];
      },
      { policy: fast, retryable: (e) => (e as ExternalError).code === ErrorCode.Unavailable },
    ).catch((e: unknown) => e);
    assert.ok(err instanceof Indeterminate, String(err));
    assert.equal(err.code, ErrorCode.FailedPrecondition);
    assert.match(err.message, /the object changed.*earlier attempt may have been applied/);

    const clean = await retry(
      async (n) => {
        throw [refused(), new Determinate(ErrorCode.FailedPrecondition, 'changed')][n - 1];
      },
      { policy: fast, retryable: (e) => (e as ExternalError).code === ErrorCode.Unavailable },
    ).catch((e: unknown) => e);
    assert.ok(clean instanceof Determinate, 'refusals only: still Determinate');

    const raw = await retry(
      async (n) => {
        throw [new Error('a driver error nobody mapped'), new Determinate(ErrorCode.NotFound, 'gone')][n - 1];
      },
      { policy: fast, retryable: (e) => !(e instanceof ExternalError) },
    ).catch((e: unknown) => e);
    assert.ok(raw instanceof Indeterminate && raw.code === ErrorCode.NotFound, 'an unmapped failure counts as maybe applied');
  });

  test('an abort during a pause rejects at once with the caller’s reason, Determinate only if nothing may have applied', async () => {
    for (const [failure, determinate] of [
      [refused, true],
      [lost, false],
    ] as const) {
      const stop = new AbortController();
      const reason = new Error('caller gave up');
      let calls = 0;
      const running = retry(
        async () => {
          calls++;
          throw failure();
        },
        { policy: slow, signal: stop.signal, retryable: () => true, onRetry: () => queueMicrotask(() => stop.abort(reason)) },
      ).catch((e: unknown) => e);
      const err = await within(running, 10_000, 'retry rejecting after an abort during its pause');
      assert.equal(calls, 1);
      assert.ok(err instanceof ExternalError, String(err));
      assert.equal(err.determinate, determinate);
      assert.equal(err.code, ErrorCode.Cancelled);
      assert.equal(err.cause, reason);
    }
  });

  test('an aborted signal runs no attempt; a policy error comes before any attempt', async () => {
    let calls = 0;
    const attempt = async () => {
      calls++;
      return 1;
    };
    await assert.rejects(retry(attempt, { policy: fast, signal: AbortSignal.abort(), retryable: () => true }), (e) => e instanceof Determinate);
    await assert.rejects(retry(attempt, { policy: { ...fast, attempts: 0 }, retryable: () => true }), { code: ErrorCode.InvalidArgument });
    assert.equal(calls, 0);
  });

  test('gives up rather than pause past its budget', async () => {
    let calls = 0;
    const first = refused();
    await assert.rejects(
      retry(
        async () => {
          calls++;
          throw first;
        },
        { policy: slow, budgetMs: 1000, retryable: () => true },
      ),
      (e) => e === first,
    );
    assert.equal(calls, 1);
  });

  test('attemptTimeoutMs cuts off an attempt that hangs: its signal fires and it fails Indeterminate Timeout', async () => {
    const signals: AbortSignal[] = [];
    const out = await within(
      retry(
        async (n, signal) => {
          signals.push(signal!);
          return n === 1 ? hang<string>() : 'second';
        },
        { policy: fast, attemptTimeoutMs: 20, retryable: (e) => (e as ExternalError).isTimeout() },
      ),
      10_000,
      'the retry of a hung attempt',
    );
    assert.equal(out, 'second');
    assert.equal(signals[0]!.aborted, true);
    assert.equal((signals[0]!.reason as Error).name, 'TimeoutError');
    const err = await within(
      retry(() => hang(), { policy: { ...fast, attempts: 1 }, attemptTimeoutMs: 10, retryable: () => false }).catch((e: unknown) => e),
      10_000,
      'the attempt deadline firing',
    );
    assert.ok(err instanceof Indeterminate && err.isTimeout(), String(err));
  });
});

describe('withDeadline', () => {
  test('settles like the work, and leaves no listener behind', async () => {
    const stop = new AbortController();
    assert.equal(await withDeadline(stop.signal, 600_000, async () => 7), 7);
    assert.equal(listeners(stop.signal), 0);
    const boom = new Error('driver failed');
    await assert.rejects(withDeadline(stop.signal, 600_000, async () => Promise.reject(boom)), (e) => e === boom);
    await assert.rejects(
      withDeadline(stop.signal, undefined, () => {
        throw boom;
      }),
      (e) => e === boom,
    );
    assert.equal(listeners(stop.signal), 0);
  });

  test("the caller's signal cuts the work off at once, Indeterminate by default, and the work's signal carries the reason", async () => {
    const stop = new AbortController();
    let inner: AbortSignal | undefined;
    let lateRejection: (e: Error) => void = () => {};
    const running = withDeadline(stop.signal, 600_000, (s) => {
      inner = s;
      return new Promise<number>((_, reject) => (lateRejection = reject));
    }).catch((e: unknown) => e);
    const reason = new Error('caller gave up');
    stop.abort(reason);
    const err = await within(running, 10_000, 'withDeadline rejecting on abort');
    assert.ok(err instanceof Indeterminate && err.code === ErrorCode.Cancelled, String(err));
    assert.equal(inner?.reason, reason);
    assert.equal(listeners(stop.signal), 0);
    lateRejection(new Error('the driver noticed later')); // dropped, never an unhandled rejection
  });

  test('the deadline cuts the work off as Indeterminate Timeout, or Determinate when the work had sent nothing', async () => {
    let inner: AbortSignal | undefined;
    const err = await within(
      withDeadline(undefined, 10, (s) => {
        inner = s;
        return hang();
      }).catch((e: unknown) => e),
      10_000,
      'the deadline firing',
    );
    assert.ok(err instanceof Indeterminate && err.isTimeout(), String(err));
    assert.equal((inner?.reason as Error).name, 'TimeoutError');
    const queued = await within(
      withDeadline(undefined, 10, () => hang(), { exposure: () => 'not-sent', what: 'Store(x) set' }).catch((e: unknown) => e),
      10_000,
      'the deadline firing',
    );
    assert.ok(queued instanceof Determinate && queued.code === ErrorCode.Unavailable, String(queued));
    assert.match((queued as Error).message, /^Store\(x\) set: operation timed out/);
  });

  test('tells a custom cutOff which fired and whether the work started, and hands late values to onLate', async () => {
    const seen: [string, boolean][] = [];
    const cutOff = (from: 'signal' | 'deadline', started: boolean) => {
      seen.push([from, started]);
      return new Error(`cut by ${from}`);
    };
    let release: (v: string) => void = () => {};
    const late: string[] = [];
    await assert.rejects(
      within(withDeadline(undefined, 10, () => new Promise<string>((r) => (release = r)), { cutOff, onLate: (v) => late.push(v) }), 10_000, 'the deadline firing'),
      /cut by deadline/,
    );
    release('connection');
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(late, ['connection']);
    const stop = new AbortController();
    const p = withDeadline(stop.signal, undefined, () => hang(), { cutOff });
    stop.abort();
    await assert.rejects(p, /cut by signal/);
    let called = false;
    const work = async () => {
      called = true;
    };
    await assert.rejects(withDeadline(AbortSignal.abort(), 1000, work, { cutOff }), /cut by signal/);
    await assert.rejects(withDeadline(undefined, 0, work, { cutOff }), /cut by deadline/);
    assert.equal(called, false);
    assert.deepEqual(seen, [
      ['deadline', true],
      ['signal', true],
      ['signal', false],
      ['deadline', false],
    ]);
  });

  test('work that never started is Determinate by default', async () => {
    await assert.rejects(withDeadline(AbortSignal.abort(), 1000, async () => 1), (e) => e instanceof Determinate && e.code === ErrorCode.Cancelled);
    await assert.rejects(withDeadline(undefined, 0, async () => 1), (e) => e instanceof Determinate && e.code === ErrorCode.Unavailable);
  });

  test('a pending deadline does not keep the process alive', () => {
    const module = new URL('../src/kit/deadline.js', import.meta.url).href;
    const script = `import { withDeadline } from ${JSON.stringify(module)};
      void withDeadline(undefined, 3_600_000, () => new Promise(() => {})).catch(() => {});
      await withDeadline(undefined, 3_600_000, async () => 1);`;
    const child = spawnSync(process.execPath, ['--input-type=module', '-e', script], { timeout: 20_000, encoding: 'utf8' });
    assert.equal(child.signal, null, `the process did not exit on its own within 20 s (killed by ${child.signal}): a deadline timer kept it alive`);
    assert.equal(child.status, 0, child.stderr);
  });
});

describe('bounded', () => {
  test('runs every item with at most `limit` in flight and keeps item order', async () => {
    let running = 0;
    let most = 0;
    const out = await bounded(['a', 'b', 'c', 'd', 'e', 'f', 'g'], 3, async (item, i) => {
      running++;
      most = Math.max(most, running);
      await new Promise((r) => setTimeout(r, (7 - i) % 3));
      running--;
      return `${item}${i}`;
    });
    assert.deepEqual(out, ['a0', 'b1', 'c2', 'd3', 'e4', 'f5', 'g6']);
    assert.equal(most, 3);
    assert.deepEqual(await bounded(4, 10, async (i) => i * i), [0, 1, 4, 9]);
    assert.deepEqual(await bounded([], 2, async () => 1), []);
    assert.deepEqual(await bounded(0, 2, async () => 1), []);
  });

  test('the first failure stops new work, aborts the running tasks, and rejects once they settled', async () => {
    const started: number[] = [];
    let siblingSettled = false;
    let siblingSignal: AbortSignal | undefined;
    const first = new Error('part 1 failed');
    function* items() {
      for (let i = 0; i < 100; i++) yield i;
    }
    const err = await bounded(items(), 2, async (i, _index, signal) => {
      started.push(i);
      if (i === 0) {
        siblingSignal = signal;
        await new Promise((resolve) => signal.addEventListener('abort', resolve, { once: true }));
        await new Promise((r) => setTimeout(r, 5));
        siblingSettled = true;
        throw new Error('sibling aborted');
      }
      if (i === 1) throw first;
      return i;
    }).catch((e: unknown) => e);
    assert.equal(err, first);
    assert.deepEqual(started, [0, 1], 'no task started after the failure');
    assert.ok(siblingSignal?.aborted, 'the running sibling saw its signal fire');
    assert.ok(siblingSettled, 'the rejection waited for the running sibling');
  });

  test("the caller's signal stops new work; Determinate only if nothing ran", async () => {
    const stop = new AbortController();
    const started: number[] = [];
    const err = await bounded(10, 1, async (i) => {
      started.push(i);
      if (i === 1) stop.abort(new Error('caller gave up'));
      return i;
    }, { signal: stop.signal }).catch((e: unknown) => e);
    assert.deepEqual(started, [0, 1]);
    assert.ok(err instanceof Indeterminate && err.code === ErrorCode.Cancelled, String(err));
    assert.equal(listeners(stop.signal), 0);
    let called = false;
    await assert.rejects(
      bounded(3, 1, async () => (called = true), { signal: AbortSignal.abort() }),
      (e) => e instanceof Determinate,
    );
    assert.equal(called, false);
    const done = new AbortController();
    assert.deepEqual(
      await bounded(2, 2, async (i) => {
        if (i === 1) done.abort();
        return i;
      }, { signal: done.signal }),
      [0, 1],
      'every task ran and succeeded: an abort after the last start changes nothing',
    );
  });

  test('a bad limit or count is a RangeError', async () => {
    for (const limit of [0, -1, 1.5, Infinity]) await assert.rejects(bounded(1, limit, async () => 1), RangeError, String(limit));
    await assert.rejects(bounded(-1, 1, async () => 1), RangeError);
  });
});
