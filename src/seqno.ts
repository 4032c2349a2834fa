/**
 * A version number: an unsigned 64-bit integer held exactly as a `bigint`.
 *
 * SeqNos order the versions of one Consensus key. Two SeqNos with the same value
 * are interchangeable (and `assert.deepStrictEqual`), so the class holds nothing
 * but its value.
 *
 * A SeqNo is immutable at run time, not only to TypeScript: stores hand out the
 * SeqNos of their versions and may keep the ones passed to them, so a write to
 * `value` must not be able to rewrite a stored head. `value` is a read-only,
 * non-configurable property, and a plain SeqNo is frozen. (An instance of a
 * subclass is left extensible, so the subclass can add its own fields.)
 */
export class SeqNo {
  /** The largest value a SeqNo can hold, 2^64 - 1. */
  static readonly MAX_VALUE = (1n << 64n) - 1n;

  /** The exact value, in [0, 2^64 - 1]. */
  declare readonly value: bigint;

  /** @throws RangeError outside [0, 2^64 - 1] or for a non-integer. */
  constructor(v: bigint | number) {
    let value: bigint;
    if (typeof v === 'bigint') {
      value = v;
    } else if (typeof v === 'number' && Number.isSafeInteger(v)) {
      value = BigInt(v);
    } else {
      throw new RangeError(`invalid SeqNo ${String(v)}: not a safe integer (use a bigint above 2^53)`);
    }
    if (value < 0n || value > SeqNo.MAX_VALUE) {
      throw new RangeError(`invalid SeqNo ${value}: outside [0, 2^64-1]`);
    }
    // An assignment then a freeze gives the same read-only, non-configurable property as
    // Object.defineProperty at a fraction of the cost (every compareAndSet builds SeqNos).
    // A subclass's fields are defined after this constructor returns: freezing one here
    // would make its constructor throw, so only `value` is locked.
    (this as { value: bigint }).value = value;
    if (new.target === SeqNo) Object.freeze(this);
    else Object.defineProperty(this, 'value', { writable: false, configurable: false });
  }

  /** The smallest SeqNo, 0. */
  static minimum(): SeqNo {
    return new SeqNo(0n);
  }

  /** Reads the `v<N>` form written by {@link SeqNo.toString}. */
  static parse(text: string): SeqNo {
    if (!text.startsWith('v')) {
      throw new RangeError(`invalid SeqNo ${text}: incorrect prefix`);
    }
    const digits = text.slice(1);
    if (!/^[0-9]+$/.test(digits)) {
      throw new RangeError(`invalid SeqNo ${text}: not an unsigned integer`);
    }
    try {
      return new SeqNo(BigInt(digits));
    } catch (err) {
      throw new RangeError(`invalid SeqNo ${text}: outside [0, 2^64-1]`, { cause: err });
    }
  }

  /** Negative, zero or positive as `a` is below, equal to or above `b`. */
  static compare(a: SeqNo, b: SeqNo): number {
    return a.value < b.value ? -1 : a.value > b.value ? 1 : 0;
  }

  /** The following SeqNo. @throws RangeError at 2^64 - 1. */
  next(): SeqNo {
    return new SeqNo(this.value + 1n);
  }

  equals(other: SeqNo): boolean {
    return this.value === other.value;
  }

  /** `v<N>`, e.g. `v5`. */
  toString(): string {
    return `v${this.value}`;
  }

  toJSON(): string {
    return this.toString();
  }

  [Symbol.for('nodejs.util.inspect.custom')](): string {
    return `SeqNo(${this.value})`;
  }
}
