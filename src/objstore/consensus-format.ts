/**
 * The bytes of the objects Consensus keeps in an object store: a key's head
 * object (its state: recent versions inline, older ones by reference to segment
 * objects) and its segment objects (immutable runs of older versions).
 *
 * Both start with a four-byte magic, a format byte and end with a CRC-32 of
 * everything before it, so a foreign or damaged object is reported as DataLoss,
 * never read as a state.
 */
import { crc32 } from 'node:zlib';
import { Determinate, ErrorCode } from '../errors.js';

/** Bytes of a write token. */
export const TOKEN_BYTES = 16;

/** One stored version, with the token of the write that made it. */
export interface StoredVersion {
  readonly seqno: bigint;
  readonly token: Uint8Array;
  readonly data: Uint8Array;
}

/** A segment object a head refers to: which versions it holds. */
export interface SegmentRef {
  /** The part of the segment's object name after the key's segment prefix. */
  readonly id: string;
  /** Seqno of its first and last version. */
  readonly from: bigint;
  readonly to: bigint;
  /** How many versions it holds. */
  readonly count: number;
}

/**
 * A key's state, as its head object holds it. Every version in it is live:
 * truncate rewrites or drops what it removes. Segments are ascending and all
 * below the first inline version; `inline` is ascending and never empty (its last
 * entry is the head).
 */
export interface KeyState {
  /** Token of the write that produced this state (a compareAndSet or a truncate). */
  readonly writeToken: Uint8Array;
  readonly segments: readonly SegmentRef[];
  readonly inline: readonly StoredVersion[];
}

const HEAD_MAGIC = 0x504c4348; // "PLCH"
const SEGMENT_MAGIC = 0x504c4353; // "PLCS"
const FORMAT = 1;

class Writer {
  #chunks: Uint8Array[] = [];
  #size = 0;
  u8(v: number): void {
    this.#push(Uint8Array.of(v));
  }
  u32(v: number): void {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setUint32(0, v);
    this.#push(b);
  }
  u64(v: bigint): void {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setBigUint64(0, v);
    this.#push(b);
  }
  bytes(b: Uint8Array): void {
    this.u32(b.length);
    this.#push(b);
  }
  raw(b: Uint8Array): void {
    this.#push(b);
  }
  #push(b: Uint8Array): void {
    this.#chunks.push(b);
    this.#size += b.length;
  }
  /** Everything written, followed by its CRC-32. */
  finish(): Uint8Array {
    const out = new Uint8Array(this.#size + 4);
    let at = 0;
    for (const c of this.#chunks) {
      out.set(c, at);
      at += c.length;
    }
    new DataView(out.buffer).setUint32(at, crc32(out.subarray(0, at)));
    return out;
  }
}

class Reader {
  #at = 0;
  readonly #view: DataView;
  constructor(
    readonly bytes: Uint8Array,
    readonly what: string,
  ) {
    this.#view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }
  #need(n: number): void {
    if (this.#at + n > this.bytes.length - 4) throw corrupt(this.what, 'it ends early');
  }
  u8(): number {
    this.#need(1);
    return this.#view.getUint8(this.#at++);
  }
  u32(): number {
    this.#need(4);
    const v = this.#view.getUint32(this.#at);
    this.#at += 4;
    return v;
  }
  u64(): bigint {
    this.#need(8);
    const v = this.#view.getBigUint64(this.#at);
    this.#at += 8;
    return v;
  }
  raw(n: number): Uint8Array {
    this.#need(n);
    // A copy: the caller keeps it, and the response buffer may be pooled.
    const b = Uint8Array.prototype.slice.call(this.bytes, this.#at, this.#at + n);
    this.#at += n;
    return b;
  }
  bytesField(): Uint8Array {
    return this.raw(this.u32());
  }
  end(): void {
    if (this.#at !== this.bytes.length - 4) throw corrupt(this.what, 'it has bytes after its end');
  }
}

function corrupt(what: string, why: string): Determinate {
  return new Determinate(ErrorCode.DataLoss, `${what} is not a persist-location Consensus object: ${why}`);
}

function open(bytes: Uint8Array, magic: number, what: string): Reader {
  if (bytes.length < 9) throw corrupt(what, `it has only ${bytes.length} bytes`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (view.getUint32(bytes.length - 4) !== crc32(bytes.subarray(0, bytes.length - 4))) throw corrupt(what, 'its checksum does not match');
  const r = new Reader(bytes, what);
  if (r.u32() !== magic) throw corrupt(what, 'wrong magic');
  const format = r.u8();
  if (format !== FORMAT) throw corrupt(what, `format ${format} is not ${FORMAT} (written by a newer version?)`);
  return r;
}

function writeVersions(w: Writer, versions: readonly StoredVersion[]): void {
  w.u32(versions.length);
  for (const v of versions) {
    w.u64(v.seqno);
    w.raw(v.token);
    w.bytes(v.data);
  }
}

function readVersions(r: Reader): StoredVersion[] {
  const n = r.u32();
  const out: StoredVersion[] = [];
  for (let i = 0; i < n; i++) out.push({ seqno: r.u64(), token: r.raw(TOKEN_BYTES), data: r.bytesField() });
  for (let i = 1; i < out.length; i++) if (out[i]!.seqno <= out[i - 1]!.seqno) throw corrupt(r.what, 'its versions are not ascending');
  return out;
}

export function encodeState(state: KeyState): Uint8Array {
  const w = new Writer();
  w.u32(HEAD_MAGIC);
  w.u8(FORMAT);
  w.raw(state.writeToken);
  w.u32(state.segments.length);
  for (const s of state.segments) {
    w.bytes(new TextEncoder().encode(s.id));
    w.u64(s.from);
    w.u64(s.to);
    w.u32(s.count);
  }
  writeVersions(w, state.inline);
  return w.finish();
}

export function decodeState(bytes: Uint8Array, what: string): KeyState {
  const r = open(bytes, HEAD_MAGIC, what);
  const writeToken = r.raw(TOKEN_BYTES);
  const segments: SegmentRef[] = [];
  const n = r.u32();
  for (let i = 0; i < n; i++) {
    segments.push({ id: new TextDecoder('utf-8', { fatal: true }).decode(r.bytesField()), from: r.u64(), to: r.u64(), count: r.u32() });
  }
  const inline = readVersions(r);
  r.end();
  if (inline.length === 0) throw corrupt(what, 'it holds no head version');
  return { writeToken, segments, inline };
}

export function encodeSegment(versions: readonly StoredVersion[]): Uint8Array {
  const w = new Writer();
  w.u32(SEGMENT_MAGIC);
  w.u8(FORMAT);
  writeVersions(w, versions);
  return w.finish();
}

export function decodeSegment(bytes: Uint8Array, what: string): StoredVersion[] {
  const r = open(bytes, SEGMENT_MAGIC, what);
  const versions = readVersions(r);
  r.end();
  return versions;
}
