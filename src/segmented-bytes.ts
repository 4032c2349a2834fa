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

  /** The same as {@link length}, under the name a `Uint8Array` gives it, for code that takes either. */
  get byteLength(): number {
    return this.length;
  }

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

  /**
   * The value decoded as UTF-8 (a byte sequence that is not UTF-8 becomes U+FFFD),
   * segment by segment: no contiguous copy of the bytes is made.
   */
  text(): string {
    const decoder = new TextDecoder('utf-8', { ignoreBOM: true });
    let text = '';
    for (const s of this.segments) text += decoder.decode(s, { stream: true });
    return text + decoder.decode();
  }

  /**
   * The value as a string, like `Buffer#toString`: UTF-8 text by default (see
   * {@link text}), or `hex`, `base64`, `latin1`, ... of the whole value. So
   * `String(value)` and `${value}` give its text, as they do for a Buffer.
   */
  toString(encoding: BufferEncoding = 'utf8'): string {
    if (encoding === 'utf8' || encoding === 'utf-8') return this.text();
    const bytes = this.toContiguous();
    return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString(encoding);
  }

  /** Iterates the segments. */
  [Symbol.iterator](): Iterator<Uint8Array> {
    return this.segments[Symbol.iterator]();
  }
}
