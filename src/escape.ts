/**
 * Byte-wise percent-encoding of keys, shared by the backends that must turn keys
 * into names a file system or object store keeps exactly (file, s3, azure). Each
 * picks the bytes it keeps literally; every other UTF-8 byte becomes `%XX`.
 *
 * The encoding works byte by byte from the start, so it preserves prefixes: a key
 * starts with `p` iff its escaped form starts with the escaped form of `p`. That is
 * what lets `list(prefix)` stay one prefix query (or one subtree) in every backend.
 */

/**
 * The spelling of every byte value 0..255: the character itself for the ASCII
 * characters of `literal`, `%XX` for every other byte. For encoders that need to
 * work byte by byte (to break names into parts, say); {@link percentEscaper} is the
 * plain string form.
 */
export function percentSpellings(literal: string, hex: '0123456789ABCDEF' | '0123456789abcdef'): readonly string[] {
  const keep = new Uint8Array(128);
  for (const c of literal) {
    // A literal '%' would make `%41` and `A` collide; non-ASCII has no single byte.
    if (c === '%' || c.charCodeAt(0) >= 128) throw new Error(`${JSON.stringify(c)} cannot be kept literally in a percent-encoding`);
    keep[c.charCodeAt(0)] = 1;
  }
  return Array.from({ length: 256 }, (_, b) => (b < 128 && keep[b] === 1 ? String.fromCharCode(b) : `%${hex[b >> 4]}${hex[b & 15]}`));
}

/** Encodes strings, keeping the characters of `literal` and escaping every other byte. */
export function percentEscaper(literal: string, hex: '0123456789ABCDEF' | '0123456789abcdef'): (s: string) => string {
  const escaped = percentSpellings(literal, hex);
  return (s: string): string => {
    let plain = true;
    for (let i = 0; i < s.length && plain; i++) {
      const c = s.charCodeAt(i);
      plain = c < 128 && escaped[c]!.length === 1;
    }
    if (plain) return s;
    let out = '';
    for (const b of Buffer.from(s, 'utf8')) out += escaped[b]!;
    return out;
  };
}

const strictUtf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/**
 * The string whose bytes `text` spells (ASCII characters as themselves, `%XX` as
 * that byte), or undefined when `text` has a non-ASCII character, a malformed
 * escape, or spells bytes that are not well-formed UTF-8. It accepts more than one
 * spelling of a string; callers that need the canonical one compare
 * `escape(unescape(text)) === text`.
 */
export function percentUnescape(text: string): string | undefined {
  if (!text.includes('%')) {
    for (let i = 0; i < text.length; i++) if (text.charCodeAt(i) >= 128) return undefined;
    return text;
  }
  const bytes = new Uint8Array(text.length);
  let n = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x25) {
      const hi = hexValue(text.charCodeAt(i + 1));
      const lo = hexValue(text.charCodeAt(i + 2));
      if (hi < 0 || lo < 0) return undefined;
      bytes[n++] = (hi << 4) | lo;
      i += 2;
    } else if (c < 128) {
      bytes[n++] = c;
    } else {
      return undefined;
    }
  }
  try {
    return strictUtf8.decode(bytes.subarray(0, n));
  } catch {
    return undefined;
  }
}

function hexValue(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x41 && c <= 0x46) return c - 0x37;
  if (c >= 0x61 && c <= 0x66) return c - 0x57;
  return -1;
}
