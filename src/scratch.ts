/**
 * Scratch locations, the parts every backend shares: what a backend's descriptor
 * derives and destroys (see {@link ScratchSupport} in backend.ts), and helpers that
 * work on a location URI's raw text, so that credentials and parameters carry over
 * into the scratch URI spelled exactly as the user wrote them.
 *
 * A scratch location lives in the same storage as the user's location, in a
 * namespace beside it, never inside it: every key is a valid key, so anything inside
 * the user's location would show up as one of their keys.
 */
import type { Blob } from './blob.js';
import { invalidArgument } from './errors.js';

/** Which interface a location is opened as. */
export type LocationKind = 'consensus' | 'blob';

/** A scratch namespace as a backend derives it from the text of a user's location URI. */
export interface ScratchPlan {
  /** The scratch location itself. */
  root: string;
  /**
   * A distinct location inside the scratch namespace; `name` is path segments of
   * `[A-Za-z0-9._-]` joined by `/` (checked before this is called).
   */
  child(name: string): string;
  /** The local file or directory the scratch location is, for local backends. */
  localPath?: string;
}

/** A scratch namespace that was made, as its backend's `destroy` receives it. */
export interface ScratchArea {
  /** The scratch root (a real URI: may hold credentials, never print it). */
  readonly uri: string;
  /** Every child URI made in it. */
  readonly children: readonly string[];
  /** {@link uri} with credentials redacted, safe to print. */
  readonly display: string;
  /** `uri` or one of `children`, redacted like {@link display}. */
  show(uri: string): string;
  /** {@link ScratchPlan.localPath}. */
  readonly localPath: string | undefined;
}

/** What destroying a scratch namespace did. */
export interface ScratchCleanup {
  /** True when everything made in the scratch namespace is gone. */
  removed: boolean;
  /** What is left and how to remove it, when `removed` is false. */
  note?: string;
}

/** The raw text of a URI: `scheme:` plus `//authority`, the path, and `?query` (or ''). */
export function splitRawUri(uri: string): { head: string; path: string; query: string } {
  const colon = uri.indexOf(':');
  let rest = uri.slice(colon + 1);
  let query = '';
  const q = rest.indexOf('?');
  if (q >= 0) {
    query = rest.slice(q);
    rest = rest.slice(0, q);
  }
  let head = uri.slice(0, colon + 1);
  if (rest.startsWith('//')) {
    const slash = rest.indexOf('/', 2);
    head += slash < 0 ? rest : rest.slice(0, slash);
    rest = slash < 0 ? '' : rest.slice(slash);
  }
  return { head, path: rest, query };
}

/** The last segment of a raw path and what precedes it; refuses a path that names nothing. */
export function lastSegment(path: string, display: string): { dir: string; base: string } {
  const trimmed = path.replace(/\/+$/, '');
  const slash = trimmed.lastIndexOf('/');
  const base = trimmed.slice(slash + 1);
  if (base === '' || base === '.' || base === '..') {
    throw invalidArgument(`cannot derive a scratch location beside ${display}: it names no file or directory`);
  }
  return { dir: trimmed.slice(0, slash + 1), base };
}

/**
 * The scratch plan of a prefix-keyed location (`/P` becomes `/P.check-ID`, children
 * `/P.check-ID/NAME`). A location without a prefix gets `/persist-location-check-ID`:
 * inside the user's keyspace in principle, but outside every built-in layout, and
 * removed after. `trailingSlash` ends each path with `/` (etcd prefixes do).
 */
export function besidePrefix(uri: string, id: string, trailingSlash = false): ScratchPlan {
  const raw = splitRawUri(uri);
  const prefix = raw.path.replace(/\/+$/, '');
  const root = prefix === '' ? `/persist-location-check-${id}` : `${prefix}.check-${id}`;
  const end = trailingSlash ? '/' : '';
  return { root: `${raw.head}${root}${end}${raw.query}`, child: (name) => `${raw.head}${root}/${name}${end}${raw.query}` };
}

/** A query parameter's name, decoded as URLSearchParams would. */
export function rawParamName(part: string): string {
  const name = part.split('=')[0]!.replace(/\+/g, ' ');
  try {
    return decodeURIComponent(name);
  } catch {
    return name;
  }
}

/**
 * Deletes every key of the scratch root and of each child, each opened with `open`
 * and emptied on its own: a location need not list its children's keys (object
 * stores escape every `/` of a key), nor could it delete them.
 */
export async function emptyBlobs(area: ScratchArea, open: (uri: string) => Promise<Blob>): Promise<ScratchCleanup> {
  const problems: string[] = [];
  for (const uri of [area.uri, ...area.children]) {
    try {
      const blob = await open(uri);
      try {
        const keys: string[] = [];
        for await (const m of blob.list('')) keys.push(m.key);
        for (const key of keys) await blob.delete(key);
        // A key still listed (a write still landing, a delete that did not) is reported, not hidden.
        let left = 0;
        for await (const _ of blob.list('')) left++;
        if (left > 0) problems.push(`${left} key(s) left in ${area.show(uri)}`);
      } finally {
        await blob.close();
      }
    } catch (err) {
      problems.push(`${area.show(uri)}: ${messageOf(err)}`);
    }
  }
  if (problems.length === 0) return { removed: true };
  return { removed: false, note: `could not remove every key of scratch location ${area.display} (${problems.join('; ')}); delete the keys under its prefix` };
}

/**
 * Removes every object of the scratch root and of each child, for backends whose
 * Consensus lives in objects (`open` returns a handle without checking anything).
 */
export async function emptyObjectConsensus(area: ScratchArea, open: (uri: string) => Promise<{ destroyLocation(): Promise<number>; close(): Promise<void> }>): Promise<ScratchCleanup> {
  const problems: string[] = [];
  for (const uri of [area.uri, ...area.children]) {
    try {
      const consensus = await open(uri);
      try {
        const left = await consensus.destroyLocation();
        if (left > 0) problems.push(`${left} object(s) left in ${area.show(uri)}`);
      } finally {
        await consensus.close();
      }
    } catch (err) {
      problems.push(`${area.show(uri)}: ${messageOf(err)}`);
    }
  }
  if (problems.length === 0) return { removed: true };
  return { removed: false, note: `could not remove every object of scratch location ${area.display} (${problems.join('; ')}); delete the objects under its prefix` };
}

/**
 * Removes a scratch location of an object store: every key of a Blob location, every
 * object of a Consensus location (each opened by the backend's own functions).
 */
export function emptyObjectStore(
  area: ScratchArea,
  kind: LocationKind,
  openBlob: (uri: string) => Promise<Blob>,
  openConsensus: (uri: string) => Promise<{ destroyLocation(): Promise<number>; close(): Promise<void> }>,
): Promise<ScratchCleanup> {
  return kind === 'blob' ? emptyBlobs(area, openBlob) : emptyObjectConsensus(area, openConsensus);
}

/** An error's message, for cleanup notes. */
export function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
