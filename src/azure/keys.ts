/**
 * Keys ↔ Azure blob names.
 *
 * Azure (and the SDK's URL handling) does not store every string as given: it
 * resolves `.` and `..` path segments, turns `\` into `/` in some paths, refuses
 * names ending in `.` or `/`, and may strip or reject control characters. So a key
 * is never used as a blob name directly: every UTF-8 byte outside `[A-Za-z0-9_~-]`
 * is written `%XX` (upper-case hex), byte by byte. The result is plain ASCII with
 * no `.`, `/`, `\`, space or control character, so Azure keeps it exactly, and:
 *
 * - it is injective (decode(encode(k)) === k), and names that are not in this
 *   canonical form decode to nothing, so a foreign blob can never alias a key;
 * - it is a homomorphism over concatenation, hence prefix-preserving: a key starts
 *   with `p` iff its name starts with encode(p), so `list(prefix)` is one
 *   server-side prefix listing;
 * - it grows a key by at most 3× (one byte becomes `%XX`), which fixes the key cap:
 *   see {@link maxKeyBytesFor}.
 */
import { percentEscaper, percentUnescape } from '../escape.js';

/** Longest blob name Azure accepts, in characters. */
export const AZURE_MAX_NAME_CHARS = 1024;

/** Worst-case growth of a key's UTF-8 length under {@link encodeKey}. */
export const ENCODING_EXPANSION = 3;

/** The blob-name form of a key (or of a list prefix: '' encodes to ''). */
export const encodeKey = percentEscaper('ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_~-', '0123456789ABCDEF');

/**
 * The key a blob name encodes, or `undefined` when the name is not exactly what
 * {@link encodeKey} produces for some key (a blob this backend did not write).
 */
export function decodeKey(name: string): string | undefined {
  if (name.length === 0) return undefined;
  const key = percentUnescape(name);
  if (key === undefined) return undefined;
  // Canonical form only: `%41` for `A`, lower-case hex or a raw `.` would otherwise
  // give a second name for the same key.
  return encodeKey(key) === name ? key : undefined;
}

/**
 * The key cap, in UTF-8 bytes, of a location whose blob names start with
 * `namePrefix` (the location prefix and its `/`, or ''): every key of that many
 * bytes fits Azure's 1024-character name limit even if all its bytes are escaped.
 * (Counting the prefix in UTF-8 bytes over-estimates its characters: safe.)
 */
export function maxKeyBytesFor(namePrefix: string): number {
  return Math.floor((AZURE_MAX_NAME_CHARS - Buffer.byteLength(namePrefix, 'utf8')) / ENCODING_EXPANSION);
}
