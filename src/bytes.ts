/**
 * A copy of the bytes as a plain Uint8Array. (`Buffer#slice` does not copy, so
 * `value.slice()` on a caller's Buffer would keep aliasing it.)
 */
export function copyBytes(bytes: Uint8Array): Uint8Array {
  const out = new Uint8Array(bytes.byteLength);
  out.set(bytes);
  return out;
}

/** A Buffer view of the same memory, without copying. */
export function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}
