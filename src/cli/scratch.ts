/**
 * Scratch locations: where `check` and `bench` work, so that the user's own keys are
 * never touched and `consensus list` / `blob ls` show nothing of theirs afterwards.
 *
 * A scratch location lives in the same storage as the user's location, but in a
 * namespace beside it, never inside it (every key is a valid key, so anything
 * inside the user's location would show up as one of their keys):
 *
 * | scheme            | user location                | scratch                              | children (`child(n)`)               | removed after by           |
 * |-------------------|------------------------------|--------------------------------------|-------------------------------------|----------------------------|
 * | sqlite:           | `.persist/consensus.db`      | `.persist/consensus.check-ID.db`     | `.persist/consensus.check-ID-n.db`  | deleting the files (+ -wal, -shm, -journal) |
 * | file:             | `.persist/blob`              | `.persist/blob.check-ID`             | `.persist/blob.check-ID/n`          | deleting the directory     |
 * | postgres(ql):     | `?schema=S` (default `consensus`) | `?schema=S_check_ID`            | `?schema=S_check_ID_n`              | `DROP SCHEMA ... CASCADE` (best effort) |
 * | etcd:             | prefix `/P`                  | prefix `/P.check-ID/`                | `/P.check-ID/n/`                    | deleting the key range (best effort) |
 * | s3:, azure:       | prefix `P`                   | prefix `P.check-ID`                  | `P.check-ID/n`                      | deleting every key of each |
 * | mem:              | `mem://NAME`                 | `mem://NAME.check-ID`                | `mem://NAME.check-ID/n`             | (gone with the process)    |
 *
 * A location without a prefix (`etcd://host:port`, `s3://bucket`) gets the scratch
 * prefix `persist-location-check-ID`: inside the user's keyspace in principle, but
 * outside the backends' layouts (etcd keeps keys under `P h/` and `P v/`), and
 * removed after. etcd's range is deleted through its JSON gateway over plain HTTP;
 * with TLS or auth the keys stay and the report says how to delete them.
 * A cleanup that fails never fails the run: the report names what is left.
 */
import { randomBytes } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { invalidArgument } from '../errors.js';
import { openBlob } from '../location.js';
import { parseLocationUri, redactUri, type LocationUri } from '../uri.js';
import { writeErr } from './output.js';

/** Which interface a location is opened as. */
export type LocationKind = 'consensus' | 'blob';

/** A scratch namespace derived from a user's location URI. */
export interface ScratchLocation {
  /** The scheme, lower-case, e.g. `sqlite`. */
  scheme: string;
  /** The scratch location itself (a real URI: may hold credentials, never print it). */
  uri: string;
  /** {@link uri} with credentials redacted, safe to print. */
  display: string;
  /** How to print {@link uri} or one of {@link children}: redacted like {@link display}. */
  show(uri: string): string;
  /**
   * A distinct location inside the scratch namespace, for suites that need a fresh
   * empty location per open. `name` is made of `[a-z0-9-]`.
   */
  child(name: string): string;
  /** The local file or directory to delete after, for sqlite: and file:. */
  localPath: string | undefined;
  /** Every URI {@link child} has returned, so cleanup knows what was made. */
  readonly children: string[];
}

const ID_ALPHABET = /^[a-z0-9-]+$/;
/**
 * Child names: path segments of `[A-Za-z0-9._-]` joined by `/`, never `.` or `..`, so
 * the blob suite can open a location nested in another (`nest0/data`).
 */
const CHILD_NAME = /^(?!\.\.?(?:\/|$))(?!.*\/\.\.?(?:\/|$))[A-Za-z0-9._-]+(?:\/[A-Za-z0-9._-]+)*$/;

/** A short random id for scratch names. */
export function scratchId(): string {
  return randomBytes(4).toString('hex');
}

/**
 * Derives the scratch location of the user's location `uri` (see the table at the
 * top of this file). Works on the raw URI text so credentials and parameters carry
 * over unchanged. `cwd` resolves relative local paths (default `process.cwd()`).
 */
export function deriveScratch(uri: string, id: string = scratchId(), cwd: string = process.cwd()): ScratchLocation {
  if (!ID_ALPHABET.test(id)) throw new Error(`scratch id must match ${ID_ALPHABET}, got ${id}`);
  const loc = parseLocationUri(uri);
  const real = plan(uri, loc, id, cwd);
  // What is printed is derived from the redacted URI, not redacted afterwards: the
  // derivation re-encodes parameters, so with a raw '?' or '/' in a password the
  // derived text would hold the password in a spelling redaction cannot place.
  const shown = plan(loc.display, parseLocationUri(loc.display), id, cwd);
  const checkName = (name: string) => {
    if (!CHILD_NAME.test(name)) throw new Error(`scratch child name must match ${CHILD_NAME}, got ${name}`);
    return name;
  };
  const children: string[] = [];
  const displays = new Map<string, string>([[real.root, shown.root]]);
  return {
    scheme: loc.scheme,
    uri: real.root,
    display: shown.root,
    child: (name) => {
      const made = real.child(checkName(name));
      if (!children.includes(made)) children.push(made);
      displays.set(made, shown.child(name));
      return made;
    },
    show: (u) => displays.get(u) ?? redactUri(u),
    localPath: real.localPath,
    children,
  };
}

/** The scratch root and children of `uri`: the table at the top of this file, on the URI's text. */
function plan(uri: string, loc: LocationUri, id: string, cwd: string): { root: string; child(name: string): string; localPath?: string } {
  const raw = splitRaw(uri);
  switch (loc.scheme) {
    case 'sqlite': {
      const { dir, base } = lastSegment(raw.path, loc.display);
      const dot = base.lastIndexOf('.');
      const [stem, ext] = dot > 0 ? [base.slice(0, dot), base.slice(dot)] : [base, ''];
      const file = (suffix: string) => `${raw.head}${dir}${stem}.check-${id}${suffix}${ext}${raw.query}`;
      return { root: file(''), child: (name) => file(`-${name}`), localPath: resolve(cwd, parseLocationUri(file('')).path) };
    }
    case 'file': {
      const { dir, base } = lastSegment(raw.path, loc.display);
      const root = `${raw.head}${dir}${base}.check-${id}`;
      return { root: `${root}${raw.query}`, child: (name) => `${root}/${name}${raw.query}`, localPath: resolve(cwd, parseLocationUri(root).path) };
    }
    case 'postgres':
    case 'postgresql': {
      const params = new URLSearchParams(raw.query.slice(1));
      const schema = params.get('schema') ?? 'consensus';
      // Postgres folds unquoted names to lower case and caps them at 63 bytes.
      const base = `${schema}`.toLowerCase().replace(/[^a-z0-9_]/g, '_').slice(0, 30);
      // Edited as text, not re-serialized: every other parameter keeps its spelling (a
      // raw '@' of a password stays one, so the scratch URI is redacted like the user's).
      const parts = raw.query.slice(1).split('&').filter((part) => part !== '');
      const at = parts.findIndex((part) => paramName(part) === 'schema');
      const withSchema = (s: string) => {
        const edited = [...parts];
        edited.splice(at < 0 ? edited.length : at, at < 0 ? 0 : 1, `schema=${s}`);
        return `${raw.head}${raw.path}?${edited.join('&')}`;
      };
      return { root: withSchema(`${base}_check_${id}`), child: (name) => withSchema(`${base}_check_${id}_${name.replace(/-/g, '_')}`) };
    }
    case 'etcd': {
      const prefix = raw.path.replace(/\/+$/, '');
      const root = prefix === '' ? `/persist-location-check-${id}` : `${prefix}.check-${id}`;
      return { root: `${raw.head}${root}/${raw.query}`, child: (name) => `${raw.head}${root}/${name}/${raw.query}` };
    }
    case 's3':
    case 'azure': {
      const prefix = raw.path.replace(/\/+$/, '');
      const root = prefix === '' ? `/persist-location-check-${id}` : `${prefix}.check-${id}`;
      return { root: `${raw.head}${root}${raw.query}`, child: (name) => `${raw.head}${root}/${name}${raw.query}` };
    }
    case 'mem': {
      const root = `${raw.head}${raw.path.replace(/\/+$/, '')}.check-${id}`;
      return { root: `${root}${raw.query}`, child: (name) => `${root}/${name}${raw.query}` };
    }
    default:
      throw invalidArgument(
        `cannot derive a scratch location for ${loc.display}: unknown scheme '${loc.scheme}:'; accepted: sqlite:, file:, postgres:, postgresql:, etcd:, s3:, azure:, mem:`,
      );
  }
}

function paramName(part: string): string {
  const name = part.split('=')[0]!.replace(/\+/g, ' ');
  try {
    return decodeURIComponent(name);
  } catch {
    return name;
  }
}

/** The parent directory that must exist before a local scratch location is created. */
export function localParent(scratch: ScratchLocation): string | undefined {
  return scratch.localPath === undefined ? undefined : dirname(scratch.localPath);
}

/** The raw text of a URI: `scheme:` plus `//authority`, the path, and `?query` (or ''). */
function splitRaw(uri: string): { head: string; path: string; query: string } {
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

function lastSegment(path: string, display: string): { dir: string; base: string } {
  const trimmed = path.replace(/\/+$/, '');
  const slash = trimmed.lastIndexOf('/');
  const base = trimmed.slice(slash + 1);
  if (base === '' || base === '.' || base === '..') {
    throw invalidArgument(`cannot derive a scratch location beside ${display}: it names no file or directory`);
  }
  return { dir: trimmed.slice(0, slash + 1), base };
}

/** What {@link removeScratch} did. */
export interface ScratchCleanup {
  /** True when everything made in the scratch namespace is gone. */
  removed: boolean;
  /** What is left and how to remove it, when `removed` is false. */
  note?: string;
}

/**
 * Removes a scratch namespace and everything in it, as far as the storage allows
 * (see the table at the top of this file). Never throws: what it could not remove
 * is described in the result.
 */
export async function removeScratch(scratch: ScratchLocation, kind: LocationKind): Promise<ScratchCleanup> {
  try {
    switch (scratch.scheme) {
      case 'sqlite': {
        const files = [scratch.uri, ...scratch.children].map((u) => resolve(parseLocationUri(u).path));
        for (const file of files) {
          for (const suffix of ['', '-wal', '-shm', '-journal']) await rm(`${file}${suffix}`, { force: true });
        }
        return { removed: true };
      }
      case 'file':
        // Retries: after an interrupt, writers may still be adding files as it goes.
        await rm(scratch.localPath!, { recursive: true, force: true, maxRetries: 5 });
        return { removed: true };
      case 'mem':
        return { removed: true };
      case 'postgres':
      case 'postgresql':
        return await dropSchemas(scratch);
      case 'etcd':
        return await deleteEtcdPrefix(scratch);
      default:
        if (kind === 'blob') return await deleteAllBlobs(scratch);
        return { removed: false, note: `scratch location ${scratch.display} was left in place` };
    }
  } catch (err) {
    return { removed: false, note: `could not remove scratch location ${scratch.display}: ${messageOf(err)}` };
  }
}

async function deleteAllBlobs(scratch: ScratchLocation): Promise<ScratchCleanup> {
  // Each location is opened and emptied on its own: a location keeps its keys under
  // `PREFIX/` with every `/` of a key escaped, so a listing of the scratch root does
  // not show its children's keys (nor could it delete them).
  const problems: string[] = [];
  for (const uri of [scratch.uri, ...scratch.children]) {
    try {
      const blob = await openBlob(uri);
      try {
        const keys: string[] = [];
        for await (const m of blob.list('')) keys.push(m.key);
        for (const key of keys) await blob.delete(key);
        // A key still listed (a write still landing, a delete that did not) is reported, not hidden.
        let left = 0;
        for await (const _ of blob.list('')) left++;
        if (left > 0) problems.push(`${left} key(s) left in ${scratch.show(uri)}`);
      } finally {
        await blob.close();
      }
    } catch (err) {
      problems.push(`${scratch.show(uri)}: ${messageOf(err)}`);
    }
  }
  if (problems.length === 0) return { removed: true };
  return { removed: false, note: `could not remove every key of scratch location ${scratch.display} (${problems.join('; ')}); delete the keys under its prefix` };
}

async function dropSchemas(scratch: ScratchLocation): Promise<ScratchCleanup> {
  const schemas = [scratch.uri, ...scratch.children].map((u) => parseLocationUri(u).params.get('schema')!);
  const manual = `remove it with: DROP SCHEMA ${schemas.join(', ')} CASCADE;`;
  let pg: typeof import('pg');
  try {
    pg = (await import('pg')).default as unknown as typeof import('pg');
  } catch {
    return { removed: false, note: `scratch schemas were left in place (the pg package is not installed): ${manual}` };
  }
  // The location's connection string, without its own parameters (schema, pool, batching).
  const { connectionString } = (await import('../postgres/index.js')).postgresOptionsFromUri(parseLocationUri(scratch.uri));
  const client = new pg.Client({ connectionString, connectionTimeoutMillis: 10_000 });
  try {
    await client.connect();
    await client.query(`DROP SCHEMA IF EXISTS ${schemas.map((s) => `"${s}"`).join(', ')} CASCADE`);
    return { removed: true };
  } catch (err) {
    return { removed: false, note: `could not drop the scratch schemas (${messageOf(err)}); ${manual}` };
  } finally {
    await client.end().catch(() => {});
  }
}

/** Deletes the scratch key range through etcd's JSON gateway (plain HTTP only). */
async function deleteEtcdPrefix(scratch: ScratchLocation): Promise<ScratchCleanup> {
  const loc = parseLocationUri(scratch.uri);
  const prefix = Buffer.from(loc.path, 'utf8');
  const end = Buffer.from(prefix);
  end[end.length - 1]! += 1; // the path ends in '/', so this never overflows
  // The prefix as the redacted URI reads: with a raw '/' in a password, the real
  // URI's path would begin with a piece of it.
  const manual = `remove it with: etcdctl del --prefix '${parseLocationUri(scratch.display).path}'`;
  const host = (loc.authority ?? '').split(',')[0]!.replace(/^.*@/, '');
  try {
    const res = await fetch(`http://${host}/v3/kv/deleterange`, {
      method: 'POST',
      body: JSON.stringify({ key: prefix.toString('base64'), range_end: end.toString('base64') }),
      signal: AbortSignal.timeout(10_000),
    });
    if (!res.ok) return { removed: false, note: `could not delete the scratch keys (HTTP ${res.status}); ${manual}` };
    return { removed: true };
  } catch (err) {
    return { removed: false, note: `could not delete the scratch keys (${messageOf(err)}); ${manual}` };
  }
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * Until the returned function is called, an interrupt (Ctrl-C, SIGTERM) removes the
 * scratch locations and ends the process by that signal (status 130 or 143), so an
 * interrupted run leaves nothing behind either. `stopWork` must resolve once nothing
 * more can be written to them (see gate.ts): removing them while work goes on would
 * race with it. A second interrupt ends the process at once.
 */
export function removeOnInterrupt(
  scratches: readonly (readonly [ScratchLocation, LocationKind])[],
  before: () => void,
  stopWork: () => Promise<void>,
): () => void {
  let interrupted = false;
  const stop = () => {
    process.off('SIGINT', handler);
    process.off('SIGTERM', handler);
  };
  // Dying by the signal itself (not process.exit) skips tearing down worker threads
  // that a driver may have mid-statement, and gives the shell the usual status.
  const die = (signal: NodeJS.Signals) => {
    stop();
    process.kill(process.pid, signal);
  };
  function handler(signal: NodeJS.Signals): void {
    if (interrupted) return die(signal);
    interrupted = true;
    before();
    writeErr('persist-location: interrupted; removing the scratch location (interrupt again to leave it)\n');
    void stopWork()
      .catch(() => {})
      .then(() => Promise.all(scratches.map(([s, kind]) => removeScratch(s, kind))))
      .then((results) => {
        for (const r of results) if (!r.removed) writeErr(`persist-location: warning: ${r.note}\n`);
        die(signal);
      });
  }
  process.on('SIGINT', handler);
  process.on('SIGTERM', handler);
  return stop;
}
