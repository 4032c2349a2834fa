/**
 * Tiny assertion helpers for the conformance suites: they throw a
 * {@link ConformanceError} naming the expectation, so the suites run under any
 * test runner (or none).
 */
import { isDeepStrictEqual, inspect } from 'node:util';
import { ExternalError } from '../errors.js';

/** A failed conformance expectation. */
export class ConformanceError extends Error {
  override readonly name = 'ConformanceError';
  /** The suite case that failed, when the error comes from a suite run. */
  readonly caseName: string | undefined;

  constructor(message: string, options?: ErrorOptions & { caseName?: string }) {
    super(message, options);
    this.caseName = options?.caseName;
  }
}

export function expect(condition: boolean, expectation: string): void {
  if (!condition) throw new ConformanceError(`expected: ${expectation}`);
}

export function expectEqual<T>(actual: T, expected: T, expectation: string): void {
  if (!isDeepStrictEqual(actual, expected)) {
    throw new ConformanceError(`expected: ${expectation}\n  wanted: ${show(expected)}\n  got:    ${show(actual)}`);
  }
}

/** Awaits `action` (or calls a function returning one); a rejection fails with `expectation`. */
export async function expectResolves<T>(action: Promise<T> | (() => Promise<T>), expectation: string): Promise<T> {
  try {
    return await (typeof action === 'function' ? action() : action);
  } catch (err) {
    throw new ConformanceError(`expected: ${expectation}\n  it rejected: ${show(err)}`, { cause: err });
  }
}

/** What a rejection must look like. */
export interface Rejection {
  /** `true`: Determinate; `false`: Indeterminate; omitted: either. */
  determinate?: boolean;
  code?: string;
  /** A substring the message must contain. */
  message?: string;
}

/** Awaits `promise` (or calls a function returning one) and checks it rejects as described. */
export async function expectRejects(
  action: Promise<unknown> | (() => Promise<unknown> | unknown),
  want: Rejection,
  expectation: string,
): Promise<ExternalError> {
  let value: unknown;
  try {
    value = await (typeof action === 'function' ? action() : action);
  } catch (err) {
    if (!(err instanceof ExternalError)) {
      throw new ConformanceError(`expected: ${expectation}\n  wanted an ExternalError, got: ${show(err)}`, { cause: err });
    }
    const kind = err.determinate ? 'Determinate' : 'Indeterminate';
    if (want.determinate !== undefined && want.determinate !== err.determinate) {
      throw new ConformanceError(`expected: ${expectation}\n  wanted ${want.determinate ? 'Determinate' : 'Indeterminate'}, got ${kind}: ${err.message}`, { cause: err });
    }
    if (want.code !== undefined && want.code !== err.code) {
      throw new ConformanceError(`expected: ${expectation}\n  wanted code ${want.code}, got ${err.code}: ${err.message}`, { cause: err });
    }
    if (want.message !== undefined && !err.message.includes(want.message)) {
      throw new ConformanceError(`expected: ${expectation}\n  wanted a message containing ${JSON.stringify(want.message)}, got: ${err.message}`, { cause: err });
    }
    return err;
  }
  throw new ConformanceError(`expected: ${expectation}\n  wanted a rejection, got: ${show(value)}`);
}

/**
 * Settles with `work`, or fails after `ms` milliseconds naming what did not happen:
 * a hung backend then fails the suite instead of stalling it.
 */
export async function within<T>(work: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new ConformanceError(`expected: ${what}\n  it had not happened after ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([work, late]);
  } finally {
    clearTimeout(timer);
  }
}

/** Collects an async iterable. */
export async function collect<T>(iterable: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of iterable) out.push(item);
  return out;
}

function show(v: unknown): string {
  return inspect(v, { depth: 4, maxArrayLength: 20, maxStringLength: 200, breakLength: Infinity });
}
