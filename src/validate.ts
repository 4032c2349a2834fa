/**
 * The argument rules of SPEC, written once. Every backend runs these (through
 * {@link ConsensusBase} / {@link BlobBase}) before it touches storage, so a rule
 * cannot drift between backends.
 */
import { invalidArgument } from './errors.js';
import { SeqNo } from './seqno.js';
import type { VersionedData } from './consensus.js';

/** Longest key, in UTF-8 bytes. */
export const MAX_KEY_BYTES = 1024;

/** Largest seqno Consensus stores: 2^63 - 1, so it fits signed 64-bit columns. */
export const MAX_CONSENSUS_SEQNO = (1n << 63n) - 1n;

/** UTF-8 length of a string without allocating. */
export function utf8Length(s: string): number {
  return Buffer.byteLength(s, 'utf8');
}

/**
 * A key is a non-empty, well-formed (no lone surrogates) string of at most
 * {@link MAX_KEY_BYTES} UTF-8 bytes without U+0000. Lone surrogates are refused
 * because they cannot be stored as UTF-8 and read back unchanged.
 */
export function validateKey(key: unknown, maxBytes = MAX_KEY_BYTES): asserts key is string {
  if (typeof key !== 'string') throw invalidArgument(`key must be a string, got ${describe(key)}`);
  if (key.length === 0) throw invalidArgument('key must not be empty');
  if (key.includes('\u0000')) throw invalidArgument('key must not contain U+0000');
  if (!key.isWellFormed()) throw invalidArgument('key must be well-formed unicode (it contains a lone surrogate)');
  // A UTF-16 code unit is at most 3 UTF-8 bytes: short keys need no counting.
  if (key.length * 3 <= maxBytes) return;
  const bytes = utf8Length(key);
  if (bytes > maxBytes) throw invalidArgument(`key is ${bytes} UTF-8 bytes, more than the limit of ${maxBytes}`);
}

/** A list prefix: like a key, but may be empty. */
export function validatePrefix(prefix: unknown): asserts prefix is string {
  if (typeof prefix !== 'string') throw invalidArgument(`prefix must be a string, got ${describe(prefix)}`);
  if (prefix.includes('\u0000')) throw invalidArgument('prefix must not contain U+0000');
  if (!prefix.isWellFormed()) throw invalidArgument('prefix must be well-formed unicode (it contains a lone surrogate)');
}

/** A byte value: any Uint8Array (a Buffer is one). */
export function validateValue(value: unknown, what = 'value'): asserts value is Uint8Array {
  if (!(value instanceof Uint8Array)) throw invalidArgument(`${what} must be a Uint8Array, got ${describe(value)}`);
}

/** A SeqNo instance (of any value a SeqNo can hold). */
export function validateSeqNo(seqno: unknown, what: string): asserts seqno is SeqNo {
  if (!(seqno instanceof SeqNo)) throw invalidArgument(`${what} must be a SeqNo, got ${describe(seqno)}`);
}

/** A seqno Consensus can store: in [0, 2^63-1]. */
export function validateStoredSeqNo(seqno: unknown, what: string): asserts seqno is SeqNo {
  validateSeqNo(seqno, what);
  if (seqno.value > MAX_CONSENSUS_SEQNO) {
    throw invalidArgument(`${what} ${seqno} is above the largest storable seqno v${MAX_CONSENSUS_SEQNO} (2^63-1)`);
  }
}

/** The arguments of compareAndSet. */
export function validateCompareAndSet(key: unknown, expected: unknown, next: unknown): void {
  validateKey(key);
  if (expected !== undefined) validateSeqNo(expected, 'expected seqno');
  if (typeof next !== 'object' || next === null) throw invalidArgument(`new version must be an object, got ${describe(next)}`);
  const { seqno, data } = next as Partial<VersionedData>;
  validateStoredSeqNo(seqno, 'new seqno');
  validateValue(data, 'new data');
  if (expected !== undefined && seqno.value <= expected.value) {
    throw invalidArgument(
      `new seqno must be strictly greater than expected. Got new: SeqNo(${seqno.value}) expected: SeqNo(${expected.value})`,
    );
  }
}

/** The arguments of scan: `limit` is a positive integer. */
export function validateScan(key: unknown, from: unknown, limit: unknown): void {
  validateKey(key);
  validateSeqNo(from, 'scan start');
  if (typeof limit !== 'number' || !Number.isInteger(limit) || limit < 1) {
    throw invalidArgument(`scan limit must be a positive integer, got ${describe(limit)}`);
  }
}

/** The arguments of truncate. */
export function validateTruncate(key: unknown, seqno: unknown): void {
  validateKey(key);
  validateSeqNo(seqno, 'truncate seqno');
}

/**
 * The signal of an operation's options, when there is one, is a real AbortSignal:
 * a look-alike would only fail inside a backend, possibly after the request was sent.
 */
export function validateSignal(opts: unknown): void {
  const signal: unknown = (opts as { signal?: unknown } | null | undefined)?.signal;
  if (signal !== undefined && !(signal instanceof AbortSignal)) {
    throw invalidArgument(`options.signal must be an AbortSignal, got ${describe(signal)}`);
  }
}

/** A short, safe description of a bad argument for error messages. */
function describe(v: unknown): string {
  if (v === null) return 'null';
  if (typeof v === 'string') return v.length > 40 ? `a string of length ${v.length}` : JSON.stringify(v);
  if (typeof v === 'number' || typeof v === 'bigint' || typeof v === 'boolean') return `${typeof v} ${String(v)}`;
  if (typeof v === 'object') return `an object (${v.constructor?.name ?? 'Object'})`;
  return typeof v;
}
