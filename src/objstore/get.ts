/**
 * A parallel ranged get that never mixes two versions of an object.
 *
 * The first request reads the start of the object and learns its size and ETag;
 * a value that fits is that one response. A larger one is read as ranges, a few
 * in flight ({@link bounded}), each under If-Match of that ETag and accepted only
 * if it answers with that same ETag, size and offset (stores that ignore If-Match
 * are caught by the check). When the object changes mid-read, the read starts
 * over; after `reads` such reads it either reads the object in one unranged
 * request (one response is one version, so it always progresses) or refuses
 * with Determinate Aborted. A body that breaks off is fetched again, a few times.
 */
import { Determinate, ErrorCode } from '../errors.js';
import { retry, type BackoffPolicy } from '../kit/backoff.js';
import { bounded } from '../kit/bounded.js';
import { SegmentedBytes } from '../segmented-bytes.js';
import type { ByteRange, CallContext, ObjectReader, ObjectResponse } from './client.js';

/** How {@link rangedGet} reads. */
export interface RangedGetOptions {
  /** Bytes asked for by the first request. */
  firstBytes: number;
  /** Bytes of every later range. */
  rangeBytes: number;
  /** Ranges in flight after the first. */
  concurrency: number;
  /**
   * Whether the first response's body may be combined with ranges read under its
   * ETag. False for a store whose ETag header may name another version than the
   * body it comes with: then range 0 is read again under If-Match.
   */
  trustFirst: boolean;
  /** Reads that may find the object changed before `whenChanging` applies. */
  reads: number;
  /** After `reads` changed reads: one unranged read, or Determinate Aborted. */
  whenChanging: 'read-whole' | 'refuse';
  /** Attempts at a response whose body breaks off (default 3). */
  bodyAttempts?: number;
}

/** The object changed (or proved to be another version) during a read. */
class ObjectChanged extends Error {}

/** Failures of a body being read, as opposed to failures of the request. */
const brokenBodies = new WeakSet<object>();

const NO_PAUSE: BackoffPolicy = { attempts: Infinity, minDelayMs: 0, maxDelayMs: 0, multiplier: 1, jitter: 0 };

/** The value of `name`, or undefined when it does not exist (see the module comment). */
export async function rangedGet(reader: ObjectReader, name: string, options: RangedGetOptions, ctx: CallContext): Promise<SegmentedBytes | undefined> {
  let changes = 0;
  let bodyFailures = 0;
  const bodyAttempts = options.bodyAttempts ?? 3;
  try {
    return await retry(() => readOnce(reader, name, options, ctx), {
      policy: NO_PAUSE,
      signal: ctx.signal,
      retryable: (err) => {
        if (err instanceof ObjectChanged) return ++changes < options.reads;
        return brokenBodies.has(err as object) && ++bodyFailures < bodyAttempts;
      },
    });
  } catch (err) {
    if (!(err instanceof ObjectChanged)) throw err;
    if (options.whenChanging === 'read-whole') return readWhole(reader, name, bodyAttempts, ctx);
    throw new Determinate(ErrorCode.Aborted, `${ctx.what}: the object changed during each of ${changes} reads`, { cause: err });
  }
}

async function readOnce(reader: ObjectReader, name: string, options: RangedGetOptions, ctx: CallContext): Promise<SegmentedBytes | undefined> {
  const first = await reader.get(name, { start: 0, length: options.firstBytes }, {}, ctx);
  if (first === 'missing') return undefined;
  // Only an empty object has no byte 0.
  if (first === 'unsatisfiable') return new SegmentedBytes(new Uint8Array(0));
  if (first === 'changed') throw new ObjectChanged('an unconditional read failed its conditions');
  if (first.start !== 0) {
    first.discard();
    throw new ObjectChanged(`the first response starts at ${first.start}`);
  }
  if (first.size <= first.length) return new SegmentedBytes(await readBody(first, ctx.signal));
  if (first.etag === undefined) {
    // Without an ETag ranges cannot be pinned to one version.
    first.discard();
    return readWhole(reader, name, options.bodyAttempts ?? 3, ctx);
  }
  const pin = { etag: first.etag, size: first.size };
  const from = options.trustFirst ? first.length : 0;
  const ranges: ByteRange[] = [];
  for (let start = from; start < pin.size; start += options.rangeBytes) ranges.push({ start, length: Math.min(options.rangeBytes, pin.size - start) });
  if (!options.trustFirst) first.discard();

  const stop = new AbortController();
  const signal = ctx.signal === undefined ? stop.signal : AbortSignal.any([ctx.signal, stop.signal]);
  const rest = bounded(ranges, options.concurrency, (range, _i, partSignal) => readRange(reader, name, range, pin, options.bodyAttempts ?? 3, { what: ctx.what, signal: partSignal }), { signal });
  if (!options.trustFirst) return new SegmentedBytes(await rest);
  // The first body streams while the other ranges are fetched.
  let restFailure: { err: unknown } | undefined;
  rest.catch((err: unknown) => {
    restFailure = { err };
    first.discard();
  });
  let head: Uint8Array;
  try {
    head = await readBody(first, ctx.signal);
  } catch (err) {
    // The first body failed on its own, or a failed range discarded it: report
    // the failure that came first.
    stop.abort(new Error('the first range failed'));
    await rest.catch(() => undefined);
    throw restFailure !== undefined ? restFailure.err : err;
  }
  return new SegmentedBytes([head, ...(await rest)]);
}

/** One range under If-Match of the pinned version; its body fetched again if it breaks off. */
function readRange(reader: ObjectReader, name: string, range: ByteRange, pin: { etag: string; size: number }, attempts: number, ctx: CallContext): Promise<Uint8Array> {
  return retry(
    async (_n, signal) => {
      const part = await reader.get(name, range, { ifMatch: pin.etag }, { what: ctx.what, signal });
      if (part === 'missing' || part === 'changed' || part === 'unsatisfiable') throw new ObjectChanged(`the range at ${range.start} answered ${part}`);
      if (part.etag !== pin.etag || part.size !== pin.size || part.start !== range.start || part.length !== range.length) {
        part.discard();
        throw new ObjectChanged(`the range at ${range.start} of a ${pin.size}-byte value under ETag ${pin.etag} answered ${part.length} bytes at ${part.start} of a ${part.size}-byte value under ETag ${String(part.etag)}`);
      }
      return readBody(part, signal);
    },
    { policy: NO_PAUSE, signal: ctx.signal, retryable: (err, n) => n < attempts && brokenBodies.has(err as object) },
  );
}

/** One unranged request: one version, whatever its ETag says. */
function readWhole(reader: ObjectReader, name: string, attempts: number, ctx: CallContext): Promise<SegmentedBytes | undefined> {
  return retry(
    async (_n, signal) => {
      const whole = await reader.get(name, undefined, {}, { what: ctx.what, signal });
      if (whole === 'missing') return undefined;
      if (whole === 'changed' || whole === 'unsatisfiable') {
        throw new Determinate(ErrorCode.Unknown, `${ctx.what}: an unconditional, unranged read answered ${whole}`);
      }
      return new SegmentedBytes(await readBody(whole, signal));
    },
    { policy: NO_PAUSE, signal: ctx.signal, retryable: (err, n) => n < attempts && brokenBodies.has(err as object) },
  );
}

async function readBody(response: ObjectResponse, signal: AbortSignal | undefined): Promise<Uint8Array> {
  try {
    return await response.read(signal);
  } catch (err) {
    if (!signal?.aborted && typeof err === 'object' && err !== null) brokenBodies.add(err);
    throw err;
  }
}
