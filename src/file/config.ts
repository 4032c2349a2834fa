/**
 * FileBlob's options and its `file:` URIs: `file:///abs/dir`, `file:/abs/dir`,
 * `file:rel/dir` (relative to the current directory), `file://localhost/abs/dir`.
 * Parameters: `keepDeleted=true|false`, `writeOnOpen=true|false`. The directory is
 * created if missing, unless `writeOnOpen=false` or the open says `create: false`
 * (which also means writeOnOpen false). A path starting with `~` is refused
 * (see `localPathOf` in src/uri.ts).
 */
import { invalidArgument } from '../errors.js';
import { boolParam, checkParams, localPathOf, type LocationUri } from '../uri.js';

/** Options of FileBlob. */
export interface FileBlobOptions {
  /**
   * Keep the last deleted value of each key so that `restore` can bring it back
   * (URI `?keepDeleted=true`). Off by default.
   */
  keepDeleted?: boolean;
  /** Temporary files unchanged (by their ctime) for longer than this are stale whoever wrote them (default 15 minutes). */
  staleTempMs?: number;
  /** Sweep stale temporary files in the background on open (default: the value of `writeOnOpen`). */
  sweepOnOpen?: boolean;
  /**
   * Whether opening may write (URI `?writeOnOpen=false`; default true): create a
   * missing root, write the root marker, sweep. With false a missing root rejects
   * Determinate NotFound, an unmarked root is marked only by this handle's first
   * set, delete or restore, and no sweep runs (`sweepOnOpen: true` with it rejects
   * InvalidArgument).
   */
  writeOnOpen?: boolean;
}

/**
 * The root directory and options a `file:` URI names. Rejects with Determinate
 * InvalidArgument for another host, a missing path or an unknown parameter.
 */
export function fileUriOptions(loc: LocationUri, create = true): { root: string; options: FileBlobOptions } {
  const params = checkParams(loc, ['keepDeleted', 'writeOnOpen']);
  if (loc.authority !== undefined && loc.authority !== '' && loc.authority.toLowerCase() !== 'localhost') {
    throw invalidArgument(
      `${loc.display} names the host '${loc.authority}': a file: location is local; write file:///abs/dir or file:rel/dir`,
    );
  }
  if (loc.path === '') throw invalidArgument(`${loc.display} names no directory; write file:///abs/dir or file:rel/dir`);
  const root = localPathOf(loc);
  const options: FileBlobOptions = {};
  const keepDeleted = boolParam(loc, params.keepDeleted, 'keepDeleted');
  const writeOnOpen = boolParam(loc, params.writeOnOpen, 'writeOnOpen');
  if (keepDeleted !== undefined) options.keepDeleted = keepDeleted;
  if (writeOnOpen !== undefined || !create) options.writeOnOpen = create && writeOnOpen !== false;
  return { root, options };
}
