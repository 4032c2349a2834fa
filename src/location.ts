/**
 * `openBlob` / `openConsensus`: a ready handle from a location URI, opened by the
 * backend registered for its scheme (backend.ts). A backend's entry point, and so its
 * driver, is imported only when a URI names it.
 */
import { acceptedSchemes, findBackend, type BackendDescriptor, type BackendPart, type PartOpenOptions } from './backend.js';
import type { Blob } from './blob.js';
import type { Consensus } from './consensus.js';
import { Determinate, ErrorCode, invalidArgument } from './errors.js';
import type { LocationKind } from './scratch.js';
import { parseLocationUri, type LocationUri } from './uri.js';
import { backoffOf, withRetry, type RetryPolicy } from './envelope/retry.js';

/**
 * Options of {@link openConsensus} and {@link openBlob}.
 *
 * `create` (default true): create what the location needs if it is missing (the
 * directory of `file:`, the file of `sqlite:`, the schema and tables of
 * `postgres:`, the container of `azure:` when its URI says `createContainer=true`).
 * With false nothing is created or written while opening, and a location that does
 * not exist rejects Determinate NotFound naming it: `file:` needs the directory,
 * `sqlite:` a database file holding this backend's table (any other file is
 * Determinate FailedPrecondition), `postgres:` the schema with both tables,
 * `azure:` the container, `s3:` the bucket. A key prefix (`s3:`, `azure:`, `etcd:`)
 * always exists; for `etcd:` the cluster must answer.
 *
 * `retry`: the returned handle is wrapped in `withRetry` with this policy, or not
 * at all with `false`. Left out, each backend's default applies: handles of the
 * backends reached over a network (PostgreSQL, etcd, S3, Azure, and third-party
 * backends unless they say otherwise) retry with the default policy, so a server
 * restart or a dropped connection does not reach the caller; the embedded ones
 * (memory, file, SQLite) do not, since their failures are not ones another
 * attempt cures (SQLite waits out another process's lock itself), and their
 * handles stay the backend's own class.
 */
export interface OpenOptions {
  create?: boolean;
  retry?: RetryPolicy | false;
}

/**
 * Opens Consensus at a URI of any registered backend (the README's location table
 * lists the built-in ones). Rejects with Determinate InvalidArgument for an unknown
 * scheme or parameter, naming what is accepted.
 */
export async function openConsensus(uri: string, options: OpenOptions = {}): Promise<Consensus> {
  const loc = parseLocationUri(uri);
  const { backend, part } = backendPart(loc, 'consensus');
  const retry = retryOf(options, part);
  const handle = await opening(backend, loc, part, partOptions(options));
  return retry === false ? handle : withRetry(handle, retry);
}

/** Opens Blob at a URI of any registered backend, as {@link openConsensus} opens Consensus. */
export async function openBlob(uri: string, options: OpenOptions = {}): Promise<Blob> {
  const loc = parseLocationUri(uri);
  const { backend, part } = backendPart(loc, 'blob');
  const retry = retryOf(options, part);
  const handle = await opening(backend, loc, part, partOptions(options));
  return retry === false ? handle : withRetry(handle, retry);
}

/** The retry policy `options` ask for, or the backend's default (see {@link OpenOptions}). */
function retryOf(options: OpenOptions, part: BackendPart<unknown>): RetryPolicy | false {
  if (typeof options !== 'object' || options === null) throw new TypeError('the options of openConsensus/openBlob must be an object');
  const { retry } = options;
  if (retry === undefined) return part.retriedByDefault === false ? false : {};
  if (retry !== false && (typeof retry !== 'object' || retry === null)) throw invalidArgument(`retry must be a retry policy or false, got ${String(retry)}`);
  if (retry !== false) backoffOf(retry);
  return retry;
}

/** What the backend's `open` gets of `options` (already known to be an object, see {@link retryOf}). */
function partOptions(options: OpenOptions): PartOpenOptions {
  const { create = true } = options;
  if (typeof create !== 'boolean') throw invalidArgument(`create must be true or false, got ${typeof create === 'string' ? JSON.stringify(create) : String(create)}`);
  return { create };
}

/**
 * The backend and its part that open `loc` as `kind`; Determinate InvalidArgument
 * naming the accepted schemes when none does.
 */
export function backendPart<K extends LocationKind>(
  loc: LocationUri,
  kind: K,
): { backend: BackendDescriptor; part: NonNullable<BackendDescriptor[K]> } {
  const backend = findBackend(loc.scheme);
  const part = backend?.[kind];
  if (backend === undefined || part === undefined) {
    const what = kind === 'consensus' ? 'Consensus' : 'Blob';
    throw invalidArgument(`unknown ${what} URI scheme '${loc.scheme}:' in ${loc.display}; accepted: ${acceptedSchemes(kind)}`);
  }
  return { backend, part: part as NonNullable<BackendDescriptor[K]> };
}

/**
 * Opens through the backend. A missing driver package is a fault of the install, not
 * of the storage: Determinate FailedPrecondition (never Unavailable, which callers
 * retry), with the command that fixes it.
 */
async function opening<T>(backend: BackendDescriptor, loc: LocationUri, part: BackendPart<T>, options: PartOpenOptions): Promise<T> {
  try {
    return await part.open(loc, options);
  } catch (err) {
    if (backend.driver !== undefined && isMissingModule(err, backend.driver)) {
      throw new Determinate(
        ErrorCode.FailedPrecondition,
        `the ${loc.scheme}: backend needs the npm package ${backend.driver}, which is not installed: npm install ${backend.driver}`,
        { cause: err },
      );
    }
    throw err;
  }
}

/** Whether `err` says the npm package `driver` could not be found (not some other module). */
function isMissingModule(err: unknown, driver: string): boolean {
  const { code, message } = (err ?? {}) as { code?: unknown; message?: unknown };
  return (
    (code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND') &&
    typeof message === 'string' &&
    message.includes(`'${driver}'`)
  );
}
