/**
 * A byte value made of one or more segments, so that a large object fetched in
 * parallel parts needs no copy to be returned. The segments are never empty
 * unless the value itself is empty (then there is one empty segment or none).
 */
export class SegmentedBytes {
  /** The parts of the value, in order. */
  readonly segments: readonly Uint8Array[];
  /** Total length in bytes. */
  readonly length: number;

  constructor(segments: Uint8Array | readonly Uint8Array[]) {
    this.segments = segments instanceof Uint8Array ? [segments] : [...segments];
    let length = 0;
    for (const s of this.segments) length += s.byteLength;
    this.length = length;
  }

  /**
   * The value as one array. With a single segment this is that segment, not a
   * copy; otherwise the segments are copied once into a new array.
   */
  toContiguous(): Uint8Array {
    if (this.segments.length === 1) return this.segments[0]!;
    const out = new Uint8Array(this.length);
    let offset = 0;
    for (const s of this.segments) {
      out.set(s, offset);
      offset += s.byteLength;
    }
    return out;
  }

  /** Iterates the segments. */
  [Symbol.iterator](): Iterator<Uint8Array> {
    return this.segments[Symbol.iterator]();
  }
}
