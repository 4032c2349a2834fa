/**
 * How S3Blob turns a Blob key into an S3 object name, and back.
 *
 * S3 itself stores any UTF-8 name verbatim, but S3-compatible stores built on a
 * filesystem (s3rver, MinIO in filesystem mode, ...) cannot: they map `/` to
 * directories, so `..`, `.`, `//`, a leading or trailing `/` and components longer
 * than the filesystem's 255-byte name limit break or collide, and some
 * characters (`\r`) do not survive the XML of ListObjects. So every key is
 * encoded, on every store, which also keeps a bucket readable by any S3 client:
 *
 * 1. Each UTF-8 byte of the key outside `0-9 A-Z a-z ! - _ * ' ( )` (the
 *    characters AWS calls "safe") becomes `%XX` (upper-case hex). `/` and `.`
 *    are escaped too, so no name has a `.`/`..` component or an empty one.
 * 2. The encoded string is cut into chunks of {@link CHUNK_CHARS} characters
 *    joined by `/`, so no path component is longer than a filesystem allows.
 *
 * Both steps work character by character from the start of the key, so a key
 * `k` starts with a prefix `p` exactly when `encode(k)` starts with `encode(p)`:
 * `list(prefix)` is one ListObjectsV2 with the encoded prefix.
 *
 * The cost is length: a byte may take 3 characters, so the longest key is
 * about a third of S3's 1024-byte object-name limit (339 bytes without a
 * location prefix), see {@link maxKeyBytesFor}.
 */
import { percentEscaper, percentUnescape } from '../escape.js';

/** Length of the `/`-separated chunks of an encoded name. */
export const CHUNK_CHARS = 200;

/** S3's limit on an object name, in UTF-8 bytes. */
export const S3_MAX_OBJECT_NAME_BYTES = 1024;

/** Step 1: the key's bytes, safe characters kept, every other byte `%XX`. */
export const escapeKey = percentEscaper("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz!-_*'()", '0123456789ABCDEF');

/** The object name of `key` (or of a list prefix), without the location prefix. */
export function encodeKey(key: string): string {
  const escaped = escapeKey(key);
  if (escaped.length <= CHUNK_CHARS) return escaped;
  const chunks: string[] = [];
  for (let i = 0; i < escaped.length; i += CHUNK_CHARS) chunks.push(escaped.slice(i, i + CHUNK_CHARS));
  return chunks.join('/');
}

/**
 * The key of an object name made by {@link encodeKey}, or `undefined` if the name
 * is not one (an object some other program put under the location prefix).
 */
export function decodeKey(name: string): string | undefined {
  const escaped = name.replaceAll('/', '');
  if (escaped === '') return undefined;
  const key = percentUnescape(escaped);
  if (key === undefined) return undefined;
  // Only the canonical encoding is ours (no `%41` for `A`, chunks where they belong).
  return encodeKey(key) === name ? key : undefined;
}

/** Length in characters (= bytes, all ASCII) of the name of an escaped string of `escaped` characters. */
function chunkedLength(escaped: number): number {
  return escaped + Math.max(0, Math.ceil(escaped / CHUNK_CHARS) - 1);
}

/**
 * The longest key, in UTF-8 bytes, whose object name fits in S3's 1024 bytes
 * after a location prefix of `prefixBytes` bytes, whatever its characters are
 * (every byte escaped: 3 characters, plus the chunk separators).
 */
export function maxKeyBytesFor(prefixBytes: number): number {
  const room = S3_MAX_OBJECT_NAME_BYTES - prefixBytes;
  let k = Math.floor(room / 3);
  while (k > 0 && chunkedLength(3 * k) > room) k--;
  return k;
}
