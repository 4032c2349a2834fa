/**
 * Keys that break naive backends: path syntax, encodings, case, size. Every
 * backend must store and list each of these back exactly (SPEC "Keys and values").
 */

/** Builds a key of exactly `bytes` UTF-8 bytes from multi-byte characters plus ASCII padding. */
export function keyOfBytes(bytes: number, prefix = ''): string {
  let key = prefix;
  const used = Buffer.byteLength(prefix);
  const euros = Math.floor((bytes - used) / 3);
  key += '€'.repeat(euros);
  key += 'x'.repeat(bytes - used - euros * 3);
  return key;
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
