/**
 * Opening an object-store location within a bounded time. Opening sends one cheap
 * request (S3 HeadBucket, Azure's container check, or the conditional-write probe)
 * so that an unreachable store fails at open, as every server backend does. A
 * refused connection fails at once, and the SDKs' connect timeout ends one that
 * never connects; but a server that accepts the connection and never answers would
 * hold the open for ever (the SDKs set no response timeout), so the open is aborted
 * after {@link OPEN_ANSWER_MS}.
 */
import { Determinate, ErrorCode } from '../errors.js';
import type { LocationUri } from '../uri.js';

/** How long opening waits for the store's answer: the S3 client's connect timeout. */
export const OPEN_ANSWER_MS = 10_000;

/**
 * Runs `open` with a signal aborted after {@link OPEN_ANSWER_MS}; if it fires, the
 * open fails Determinate Unavailable naming the endpoint (without credentials).
 * Determinate: the location's data was not touched (at most the probe object of a
 * Consensus open, which is no part of it).
 */
export async function openWithin<T>(loc: LocationUri, open: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const timer = new AbortController();
  const timeout = setTimeout(() => timer.abort(new Error(`no answer within ${OPEN_ANSWER_MS / 1000} s`)), OPEN_ANSWER_MS);
  try {
    return await open(timer.signal);
  } catch (err) {
    if (!timer.signal.aborted) throw err;
    const endpoint = endpointOf(loc);
    throw new Determinate(
      ErrorCode.Unavailable,
      `cannot open ${loc.display}: ${endpoint === undefined ? 'the store' : endpoint} did not answer within ${OPEN_ANSWER_MS / 1000} s (it accepts connections but does not respond)`,
      { cause: err },
    );
  } finally {
    clearTimeout(timeout);
  }
}

/** `host:port` of the location's `endpoint` parameter, or undefined when it has none or parts of it may be a password. */
function endpointOf(loc: LocationUri): string | undefined {
  const endpoint = loc.params.get('endpoint');
  if (endpoint === null || loc.partsMayHoldPassword === true) return undefined;
  try {
    return new URL(endpoint).host;
  } catch {
    return undefined;
  }
}
