/**
 * Keys ↔ Azure blob names.
 *
 * Azure (and the SDK's URL handling) does not store every string as given: it
 * resolves `.` and `..` path segments, turns `\` into `/` in some paths, refuses
 * names ending in `.` or `/`, and may strip or reject control characters. So a key
 * is never used as a blob name directly: every UTF-8 byte outside the characters
 * URLs never escape but `~` (`A-Z a-z 0-9 - . _`) is written `%XX` (upper-case hex),
 * byte by byte, and a name that would end in `.` gets a `~` after it. The result
 * is plain ASCII with no `/`, `\`, space or control character, never ending in `.`
 * (so never `.` or `..` either), and Azure keeps it exactly:
 *
 * - it is injective (decode(encode(k)) === k), and names that are not in this
 *   canonical form decode to nothing, so a foreign blob can never alias a key;
 * - it has no `/`, so the names of a location `P` (`P/` + one segment) are never
 *   names of a nested location `P/Q` (`P/Q/` + one segment), nor the other way;
 * - without the final `~` it is a homomorphism over concatenation, hence
 *   prefix-preserving: a key starts with `p` iff its name starts with
 *   {@link encodePrefix}(p) (`~` never occurs inside a name), so `list(prefix)` is
 *   one server-side prefix listing;
 * - letters, digits and `-._` take one character, every other byte three: a key is
 *   accepted when its name fits Azure's 1024 characters after the location prefix,
 *   and every key of {@link maxKeyBytesFor} bytes does.
 *
 * Earlier (unreleased) versions escaped `.` and kept `~`: blobs they wrote for keys
 * with either character are not listed or read (a clean break, accepted before 1.0).
 */
import { percentEscaper, percentUnescape } from '../escape.js';

/** Longest blob name Azure accepts, in characters. */
export const AZURE_MAX_NAME_CHARS = 1024;

/** Worst-case growth of a key's UTF-8 length under {@link encodeKey}. */
export const ENCODING_EXPANSION = 3;

/** Follows a name that would end in `.`, which Azure refuses. */
const AFTER_FINAL_DOT = '~';

/** The name form of a list prefix ('' encodes to ''): the start of the names of the keys it begins. */
export const encodePrefix = percentEscaper('ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._', '0123456789ABCDEF');

/** The blob-name form of a key. */
export function encodeKey(key: string): string {
  const name = encodePrefix(key);
  return name.endsWith('.') ? name + AFTER_FINAL_DOT : name;
}

/**
 * The key a blob name encodes, or `undefined` when the name is not exactly what
 * {@link encodeKey} produces for some key (a blob this backend did not write).
 */
export function decodeKey(name: string): string | undefined {
  if (name.length === 0) return undefined;
  const key = percentUnescape(name.endsWith(AFTER_FINAL_DOT) ? name.slice(0, -1) : name);
  if (key === undefined || key === '') return undefined;
  // Canonical form only: `%41` for `A`, lower-case hex or a stray `~` would otherwise
  // give a second name for the same key.
  return encodeKey(key) === name ? key : undefined;
}

/**
 * Characters Azure counts for the location prefix plus its `/` (or ''). Counted
 * as UTF-8 bytes, an over-estimate for non-ASCII prefixes: safe.
 */
export function namePrefixChars(namePrefix: string): number {
  return Buffer.byteLength(namePrefix, 'utf8');
}

/**
 * The key cap, in UTF-8 bytes, of a location whose blob names start with
 * `namePrefix` (the location prefix and its `/`, or ''): every key of that many
 * bytes fits Azure's 1024-character name limit even if all its bytes are escaped.
 * Longer keys fit when their names do.
 */
export function maxKeyBytesFor(namePrefix: string): number {
  return Math.max(0, Math.floor((AZURE_MAX_NAME_CHARS - namePrefixChars(namePrefix)) / ENCODING_EXPANSION));
}

/** What AzureConsensus adds to a key's encoding in its longest blob name: `s/`, `/` and a segment id. */
export const CONSENSUS_NAME_OVERHEAD = 2 + 1 + 74;

/** The key cap of an AzureConsensus location whose blob names start with `namePrefix`. */
export function consensusMaxKeyBytes(namePrefix: string): number {
  return maxKeyBytesFor(`${namePrefix}${'s'.repeat(CONSENSUS_NAME_OVERHEAD)}`);
}
