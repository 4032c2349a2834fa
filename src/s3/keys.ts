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
 * 1. Each UTF-8 byte of the key outside `0-9 A-Z a-z ! - _ . * ' ( )` (the
 *    characters AWS calls "safe") becomes `%XX` (upper-case hex), `/` and `%`
 *    included, so a key never adds a path component of its own. A `.` that would
 *    begin a component is written `%2E`, so no component is `.` or `..`.
 * 2. The result is cut into components of at most {@link COMPONENT_CHARS}
 *    characters (an escape is never split), joined by `/`. Every component after
 *    the first begins with a `.` that only marks it as a continuation.
 *
 * So the name of a key in location `P` is `P/` + a name whose first component
 * never begins with `.`, and whose every later component does. The name of a key
 * in a nested location `P/Q` is `P/Q/` + such a name; read from `P`, that is
 * `Q/...` followed by a component that does not begin with `.`, which no key of
 * `P` encodes to. So no object of `P/Q` is an object of `P`, whatever `Q` is (a
 * 200-character `Q` included): nested locations never share objects.
 *
 * Both steps go byte by byte from the start of the key, deciding each byte's
 * spelling from the bytes before it, so a key `k` starts with a prefix `p` exactly
 * when `encode(k)` starts with `encode(p)`: `list(prefix)` is one ListObjectsV2
 * with the encoded prefix.
 *
 * Length: a key is accepted when its name fits S3's 1024-byte limit after the
 * location prefix. Safe characters take one byte and every other byte three, plus
 * two bytes per extra component, so a 900-byte path of letters, digits, `-_.` and
 * a few dozen `/` fits beside a short prefix, while a key made only of escaped
 * bytes fits only up to {@link maxKeyBytesFor} bytes (338 at the bucket root).
 *
 * Earlier (unreleased) versions escaped every `.` and cut names without the
 * continuation mark. Objects they wrote for a key containing `.`, or encoding to
 * more than 200 characters, have names this encoding does not produce: they are
 * not listed or read (a clean break, accepted before 1.0).
 */
import { percentSpellings, percentUnescape } from '../escape.js';

/** Longest component of a name, in characters: well within a filesystem's 255 bytes. */
export const COMPONENT_CHARS = 200;

/** S3's limit on an object name, in UTF-8 bytes. */
export const S3_MAX_OBJECT_NAME_BYTES = 1024;

/** The characters kept as they are. */
export const SAFE_CHARACTERS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz!-_.*'()";

const SPELLING = percentSpellings(SAFE_CHARACTERS, '0123456789ABCDEF');
const DOT = 0x2e;
const ESCAPED_DOT = '%2E';
/** Between two components: the separator and the continuation mark. */
const BREAK = '/.';

/** The object name of `key` (or of a list prefix), without the location prefix. */
export function encodeKey(key: string): string {
  if (key.length <= COMPONENT_CHARS && isPlain(key)) return key;
  let name = '';
  let used = 0;
  let componentStart = true;
  for (const b of Buffer.from(key, 'utf8')) {
    let spelled = componentStart && b === DOT ? ESCAPED_DOT : SPELLING[b]!;
    if (used + spelled.length > COMPONENT_CHARS) {
      name += BREAK;
      used = BREAK.length - 1;
      if (b === DOT) spelled = ESCAPED_DOT;
    }
    name += spelled;
    used += spelled.length;
    componentStart = false;
  }
  return name;
}

/** Whether `key` is its own name: safe characters only, not beginning with `.`. */
function isPlain(key: string): boolean {
  if (key.charCodeAt(0) === DOT) return false;
  for (let i = 0; i < key.length; i++) {
    const c = key.charCodeAt(i);
    if (c >= 128 || SPELLING[c]!.length !== 1) return false;
  }
  return true;
}

/**
 * The key of an object name made by {@link encodeKey}, or `undefined` if the name
 * is not one (an object some other program put under the location prefix, or one
 * of a nested location).
 */
export function decodeKey(name: string): string | undefined {
  const components = name.split('/');
  let escaped = components[0]!;
  for (let i = 1; i < components.length; i++) {
    const component = components[i]!;
    if (component.charCodeAt(0) !== DOT) return undefined;
    escaped += component.slice(1);
  }
  const key = percentUnescape(escaped);
  if (key === undefined || key === '') return undefined;
  // Only the canonical encoding is ours (no `%41` for `A`, breaks where they belong).
  return encodeKey(key) === name ? key : undefined;
}

/**
 * The longest key, in UTF-8 bytes, whose object name fits in S3's 1024 bytes
 * after a location prefix of `prefixBytes` bytes whatever its characters are.
 * The worst case is a key of escaped bytes only: no byte takes more than three
 * characters, and a component holds at least as many bytes as it does then.
 */
export function maxKeyBytesFor(prefixBytes: number): number {
  const room = S3_MAX_OBJECT_NAME_BYTES - prefixBytes;
  let bytes = Math.max(0, Math.floor(room / 3));
  while (bytes > 0 && encodeKey('%'.repeat(bytes)).length > room) bytes--;
  return bytes;
}

/** What S3Consensus adds to a key's encoding in its longest object name: `s/`, `/~` and a segment id. */
export const CONSENSUS_NAME_OVERHEAD = 2 + 2 + 74;

/** The key cap of an S3Consensus location whose prefix (with its `/`) is `prefixBytes` long. */
export function consensusMaxKeyBytes(prefixBytes: number): number {
  return maxKeyBytesFor(prefixBytes + CONSENSUS_NAME_OVERHEAD);
}
