/**
 * How FileBlob names things on disk. This file is the definition of the layout.
 *
 * A key is split at `/` into segments. Each segment is escaped byte by byte
 * (UTF-8): `a-z 0-9 . _ -` stay as they are, every other byte becomes `%hh`
 * (lower-case hex). The escaped form therefore contains no upper-case letter, no
 * non-ASCII character and no `/`: two different keys never map to names that a
 * case-insensitive or normalising file system (macOS, Windows) would confuse.
 * An escaped segment longer than {@link MAX_CHUNK} characters is cut into chunks of
 * at most that many characters, never inside a `%hh`, so every name fits the
 * common 255-byte limit.
 *
 * Every name in the tree starts with one marker character telling what it is:
 *
 * | name            | what                                                              |
 * |-----------------|-------------------------------------------------------------------|
 * | `v<chunk>`      | file: the value of the key that ends with this chunk              |
 * | `x<chunk>`      | file: the last deleted value of that key, kept for `restore`      |
 * | `d<chunk>`      | directory: keys that continue with this chunk followed by `/`     |
 * | `c<chunk>`      | directory: keys whose segment continues past this (full) chunk    |
 * | `.pl-tmp.*`     | file: a write or delete in progress (see {@link tempName})        |
 * | `.pl-root`      | file, only directly in a root: marks the directory as a location's root (see {@link ROOT_MARKER}) |
 *
 * So `foo/bar/k0` is `<root>/dfoo/dbar/vk0`, `Dir/` is `<root>/d%44ir/v`, and the
 * keys `dir` and `dir/child` live side by side as `vdir` and `ddir/vchild`. No name
 * is `.` or `..` (there is always a marker) and no key byte becomes a path
 * separator, so a key can never name anything outside the root. Anything else
 * found in the tree (foreign files, symbolic links, names that are not in this
 * canonical form) is never listed.
 *
 * Escaping is prefix-preserving and chunking is greedy, so the names of a key
 * prefix are a prefix of the key's names: `list(prefix)` reads one directory (the
 * one holding the prefix's last, partial chunk) and then only the subtrees whose
 * names start with that chunk. Its cost grows with the keys that match plus that
 * one directory, not with the whole store.
 */
import { createHash, randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { percentEscaper, percentUnescape } from '../escape.js';

/** Longest chunk: a 255-byte file name minus the one-character marker. */
export const MAX_CHUNK = 254;

/**
 * The root marker: every root holds a file of this name, and no other directory the
 * layout makes ever does (no escaped name starts with `.`, and it is not a temporary
 * name). A directory met inside a root that holds one is therefore another
 * location's root, never one of this location's directories.
 */
export const ROOT_MARKER = '.pl-root';

export const VALUE = 'v';
export const DELETED = 'x';
export const SEGMENT_DIR = 'd';
export const CHUNK_DIR = 'c';

/** Bytes kept literally: a-z, 0-9, '-', '.', '_'. */
const LITERAL = 'abcdefghijklmnopqrstuvwxyz0123456789-._';
const LITERAL_BYTE = new Uint8Array(256);
for (const c of LITERAL) LITERAL_BYTE[c.charCodeAt(0)] = 1;

/** The escaped form of one segment (no `/` inside). */
export const escapeSegment = percentEscaper(LITERAL, '0123456789abcdef');

/**
 * Cuts an escaped segment into chunks of at most {@link MAX_CHUNK} characters,
 * never inside a `%hh`. Always at least one chunk (possibly empty).
 */
export function chunks(escaped: string): string[] {
  if (escaped.length <= MAX_CHUNK) return [escaped];
  const out: string[] = [];
  let start = 0;
  while (escaped.length - start > MAX_CHUNK) {
    let end = start + MAX_CHUNK;
    if (escaped[end - 1] === '%') end -= 1;
    else if (escaped[end - 2] === '%') end -= 2;
    out.push(escaped.slice(start, end));
    start = end;
  }
  out.push(escaped.slice(start));
  return out;
}

/** Where a key lives: its directory relative to the root ('' = the root) and its last chunk. */
export interface KeyPath {
  /** Directory names joined with `/`, '' for the root. */
  dir: string;
  /** The escaped last chunk; the value file is `v` + base, the kept deleted value `x` + base. */
  base: string;
}

/** The location of `key` (a valid key). */
export function keyPath(key: string): KeyPath {
  const { dirs, last } = split(key);
  return { dir: dirs.join('/'), base: last };
}

/** Where `list(prefix)` starts: the directory, and the chunk its entries' names must start with. */
export interface PrefixPlan {
  /** Directory names joined with `/`, '' for the root. */
  dir: string;
  /** The escaped key text that `dir` stands for (segments end in a literal `/`). */
  escapedKey: string;
  /** The start that matching entries have after their marker. */
  partial: string;
}

export function prefixPlan(prefix: string): PrefixPlan {
  const { dirs, last, escapedDirs } = split(prefix);
  return { dir: dirs.join('/'), escapedKey: escapedDirs, partial: last };
}

function split(key: string): { dirs: string[]; last: string; escapedDirs: string } {
  const segments = key.split('/');
  const dirs: string[] = [];
  let escapedDirs = '';
  let last = '';
  for (let s = 0; s < segments.length; s++) {
    const parts = chunks(escapeSegment(segments[s]!));
    const final = s === segments.length - 1;
    for (let c = 0; c < parts.length; c++) {
      const part = parts[c]!;
      if (c < parts.length - 1) {
        dirs.push(CHUNK_DIR + part);
        escapedDirs += part;
      } else if (!final) {
        dirs.push(SEGMENT_DIR + part);
        escapedDirs += `${part}/`;
      } else {
        last = part;
      }
    }
  }
  return { dirs, last, escapedDirs };
}

const CANONICAL = /^(?:[a-z0-9._-]|%[0-9a-f]{2})*$/;

/**
 * Whether `chunk` (a name without its marker) is in canonical escaped form: only
 * literal bytes and `%hh` escapes of bytes that are not literal and not `/`.
 */
export function isCanonicalChunk(chunk: string): boolean {
  if (chunk.length > MAX_CHUNK || !CANONICAL.test(chunk)) return false;
  for (let i = chunk.indexOf('%'); i >= 0; i = chunk.indexOf('%', i + 3)) {
    const byte = parseInt(chunk.slice(i + 1, i + 3), 16);
    if (LITERAL_BYTE[byte] === 1 || byte === 0x2f || byte === 0) return false;
  }
  return true;
}

/**
 * The key whose escaped form is `escaped` (chunks concatenated, segments joined by
 * literal `/`), or undefined when those bytes are not well-formed UTF-8 (a foreign
 * file that only looks like one of ours).
 */
export const unescapeKey: (escaped: string) => string | undefined = percentUnescape;

// ---- temporary files -------------------------------------------------------------

/**
 * Temporary files are named `.pl-tmp.<host>.<pid>.<unique>`: the leading dot is not
 * a marker, so they are never listed; `<host>` (a hash of the host name) and the
 * writer's pid let a later sweep tell whether their writer is certainly dead.
 */
export const TEMP_PREFIX = '.pl-tmp.';

const HOST_TAG = createHash('sha256').update(hostname()).digest('hex').slice(0, 8);
const PROCESS_TAG = randomBytes(4).toString('hex');
let counter = 0;

/** A fresh temporary file name, unique to this process. */
export function tempName(): string {
  counter = (counter + 1) % Number.MAX_SAFE_INTEGER;
  return `${TEMP_PREFIX}${HOST_TAG}.${process.pid}.${PROCESS_TAG}${counter.toString(36)}`;
}

/**
 * The writer of a temporary file, or undefined if the name is not exactly one that
 * {@link tempName} produces (whatever else starts with the prefix is not ours).
 */
export function tempOwner(name: string): { pid: number; thisHost: boolean } | undefined {
  if (!name.startsWith(TEMP_PREFIX)) return undefined;
  const m = /^([0-9a-f]{8})\.([0-9]+)\.[0-9a-z]+$/.exec(name.slice(TEMP_PREFIX.length));
  if (m === null) return undefined;
  return { pid: Number(m[2]), thisHost: m[1] === HOST_TAG };
}
