/**
 * Keys that break naive backends: path syntax, encodings, case, size. Every
 * backend must store and list each of these back exactly (SPEC "Keys and values").
 */

/**
 * Builds a key of exactly `bytes` UTF-8 bytes: `prefix`, then multi-byte characters
 * only (3-byte `€`, 2-byte `é` for the remainder; ASCII only when 1 byte is left).
 * An encoding of keys into names must escape every byte of those, so such a key is
 * the worst case for a store whose limit is on the encoded name.
 */
export function keyOfBytes(bytes: number, prefix = ''): string {
  const rest = bytes - Buffer.byteLength(prefix);
  if (rest <= 1) return prefix + 'x'.repeat(Math.max(0, rest));
  const twos = [0, 2, 1][rest % 3]!;
  return prefix + '€'.repeat((rest - 2 * twos) / 3) + 'é'.repeat(twos);
}

/**
 * Valid keys that a careless backend would mangle, collide or escape with: those that
 * fit in `maxKeyBytes`, plus keys of exactly `maxKeyBytes` and one byte less.
 */
export function hostileKeys(maxKeyBytes = 1024): string[] {
  const keys = [
    '..',
    '.',
    '../escape',
    '../../../../../../../../tmp/escape',
    'a/../../b',
    '/leading/slash',
    'trailing/slash/',
    'double//slash',
    '/',
    '//',
    'dir',
    'dir/child',
    'dir/child/grandchild',
    'back\\slash',
    '..\\..\\escape',
    'C:\\windows',
    'percent%2F%2e%2E%00',
    '100%',
    'space key ',
    ' leading space',
    '.hidden',
    '.tmp-looks-like-a-temp-file',
    'Case',
    'case',
    'CASE',
    'unicode-ключ-鍵-🦀',
    'e\u0301', // decomposed é
    '\u00e9', // composed é, a different key
    'line\nbreak\ttab\r',
    "quote'\"`;-- DROP TABLE consensus;",
    '$(echo injected)',
    '*?[]{}<>|&!~#',
    'LIVENESS',
    'con',
    'NUL.txt',
    'x'.repeat(255),
    'x'.repeat(256),
    'y/'.repeat(100),
  ];
  const fitting = keys.filter((k) => Buffer.byteLength(k) <= maxKeyBytes);
  fitting.push(keyOfBytes(maxKeyBytes, 'max-'));
  fitting.push(keyOfBytes(maxKeyBytes - 1, 'max-1-'));
  return fitting;
}
