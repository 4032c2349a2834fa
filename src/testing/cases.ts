/**
 * What the conformance suites are made of: named cases, each standing alone on a
 * fresh location, chosen by what the backend can do, and handed to whatever test
 * runner the caller uses.
 */
import type { BackendCapabilities } from '../backend.js';
import { ConformanceError } from './expect.js';

export type { BackendCapabilities };

/** Capabilities with the defaults filled in. */
export type ResolvedCapabilities = BackendCapabilities & { maxKeyBytes: number };

/**
 * Registers one named case with a test runner: `node:test`'s `test` (or a test
 * context's `t.test`) fits, and so do the `it` of most runners. Whatever it returns is
 * awaited when it is a promise.
 */
export type TestFunction = (name: string, fn: () => Promise<void>) => unknown;

/** One check of a suite: a name saying what SPEC demands, and the code that checks it. */
export interface SuiteCase<Context> {
  /** Starts with the SPEC item it checks: `"4: ..."`, `"hostile keys: ..."`. */
  readonly name: string;
  /** Whether the case applies to a backend with these capabilities (default: always). */
  readonly applies?: (capabilities: ResolvedCapabilities) => boolean;
  readonly run: (context: Context) => Promise<void>;
}

/** Options every suite takes. */
export interface SuiteOptions {
  /**
   * Registers each case with a test runner, so that every case is a test of its own: a
   * failure names its case and the later cases still run. Default: the cases run one
   * after another and the suite throws a {@link ConformanceError} naming the first case
   * that fails. The cases are registered before the suite's promise first waits, so
   * under `describe` it can be called without `await`.
   */
  test?: TestFunction;
  /** What the backend can do. */
  capabilities?: BackendCapabilities;
  /** Same as `capabilities.maxKeyBytes`, kept for callers written before capabilities. */
  maxKeyBytes?: number;
  /**
   * How long a case waits for an operation it needs to finish after a listing was
   * broken off (a later read, close) before failing, in milliseconds (default 60 000).
   */
  waitMs?: number;
}

/** The longest key SPEC allows, in UTF-8 bytes. */
const SPEC_MAX_KEY_BYTES = 1024;

/** Room for the suites' own keys, such as the hostile key `max-1-...` one byte under the cap. */
const LEAST_MAX_KEY_BYTES = 16;

export function resolveCapabilities(options: SuiteOptions): ResolvedCapabilities {
  const stated = options.capabilities?.maxKeyBytes;
  if (stated !== undefined && options.maxKeyBytes !== undefined && stated !== options.maxKeyBytes) {
    throw new RangeError(`maxKeyBytes ${options.maxKeyBytes} contradicts capabilities.maxKeyBytes ${stated}: give one`);
  }
  const maxKeyBytes = stated ?? options.maxKeyBytes ?? SPEC_MAX_KEY_BYTES;
  if (!Number.isInteger(maxKeyBytes) || maxKeyBytes < LEAST_MAX_KEY_BYTES || maxKeyBytes > SPEC_MAX_KEY_BYTES) {
    throw new RangeError(`maxKeyBytes must be an integer in [${LEAST_MAX_KEY_BYTES}, ${SPEC_MAX_KEY_BYTES}], got ${String(maxKeyBytes)}`);
  }
  return { ...options.capabilities, maxKeyBytes };
}

export function resolveWaitMs(options: SuiteOptions): number {
  const ms = options.waitMs ?? 60_000;
  if (!Number.isSafeInteger(ms) || ms < 1) throw new RangeError(`waitMs must be a positive integer, got ${String(ms)}`);
  return ms;
}

/**
 * Runs the cases that apply, each through `runOne` (which gives it its fresh
 * location), either through `test` or one after another, stopping at the first
 * failure. Every failure becomes a ConformanceError carrying the case's name.
 */
export async function runCases<Context>(
  cases: readonly SuiteCase<Context>[],
  capabilities: ResolvedCapabilities,
  test: TestFunction | undefined,
  runOne: (kase: SuiteCase<Context>, index: number) => Promise<void>,
): Promise<void> {
  const names = new Set<string>();
  for (const kase of cases) {
    if (names.has(kase.name)) throw new TypeError(`two suite cases are named ${JSON.stringify(kase.name)}`);
    names.add(kase.name);
  }
  const chosen = cases.filter((kase) => kase.applies?.(capabilities) ?? true);
  const named = async (kase: SuiteCase<Context>, index: number) => {
    try {
      await runOne(kase, index);
    } catch (err) {
      throw caseFailure(kase.name, err);
    }
  };
  if (test === undefined) {
    for (const [index, kase] of chosen.entries()) await named(kase, index);
    return;
  }
  // Registered all at once, before any await: `describe` collects its tests synchronously.
  const registered = chosen.map((kase, index) => test(kase.name, () => named(kase, index)));
  await Promise.all(registered.map((r) => (isPromiseLike(r) ? r : undefined)));
}

function caseFailure(name: string, err: unknown): ConformanceError {
  const what = err instanceof ConformanceError ? err.message : `unexpected ${err instanceof Error ? `${err.name}: ${err.message}` : String(err)}`;
  return new ConformanceError(`case ${JSON.stringify(name)}: ${what}`, { cause: err, caseName: name });
}

function isPromiseLike(value: unknown): value is PromiseLike<unknown> {
  return typeof (value as { then?: unknown } | null)?.then === 'function';
}

/** More keys than one listing page of most backends here (SQLite 256; PostgreSQL, S3 1000), bar Azure's 5000 and etcd's 10,000. */
export const MANY_KEYS = 1200;

/** Listings broken off at once: more than the connection pool of a typical handle (PostgreSQL's default is 10). */
export const BROKEN_LISTINGS = 16;

/** Runs `fn` over `items`, at most `width` at a time. */
export async function inParallel<T>(items: readonly T[], width: number, fn: (item: T, index: number) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const index = next++;
      await fn(items[index]!, index);
    }
  };
  await Promise.all(Array.from({ length: Math.min(width, items.length) }, worker));
}
