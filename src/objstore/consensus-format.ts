/**
 * The bytes of the objects Consensus keeps in an object store: a key's head
 * object (its state: recent versions inline, older ones by reference to segment
 * objects), its segment objects (immutable runs of older versions) and its index
 * objects (immutable runs of references to segments, or to lower index objects).
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

/**
 * A segment or index object a head (or an index object) refers to: which
 * versions it holds, directly (level 0, a segment) or through the references it
 * holds, all of level `level - 1` (an index object).
 */
export interface SegmentRef {
  /** The part of the object's name after the key's segment prefix. */
  readonly id: string;
  /** 0: a segment of versions; n > 0: an index of references of level n - 1. */
  readonly level: number;
  /** Seqno of its first and last version. */
  readonly from: bigint;
  readonly to: bigint;
  /** How many versions it holds, directly or below it. */
  readonly count: number;
}

/**
 * A key's state, as its head object holds it. Every version in it is live:
 * truncate rewrites or drops what it removes. Segments are ascending, all below
 * the first inline version, and their levels never rise along the list (older
 * versions sit under higher levels); `inline` is ascending and never empty (its
 * last entry is the head).
 */
export interface KeyState {
  /** Token of the write that produced this state (a compareAndSet or a truncate). */
  readonly writeToken: Uint8Array;
  readonly segments: readonly SegmentRef[];
  readonly inline: readonly StoredVersion[];
}

const HEAD_MAGIC = 0x504c4348; // "PLCH"
const SEGMENT_MAGIC = 0x504c4353; // "PLCS"
const INDEX_MAGIC = 0x504c4349; // "PLCI"
/** Segments and index objects are in format 1; heads in format 2 (1 had no levels: every reference was a segment). */
const FORMAT = 1;
const HEAD_FORMAT = 2;

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

/** A reader past the magic and format byte, and the format it read (at most `newest`). */
function open(bytes: Uint8Array, magic: number, what: string, newest = FORMAT): { r: Reader; format: number } {
  if (bytes.length < 9) throw corrupt(what, `it has only ${bytes.length} bytes`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (view.getUint32(bytes.length - 4) !== crc32(bytes.subarray(0, bytes.length - 4))) throw corrupt(what, 'its checksum does not match');
  const r = new Reader(bytes, what);
  if (r.u32() !== magic) throw corrupt(what, 'wrong magic');
  const format = r.u8();
  if (format < 1 || format > newest) throw corrupt(what, `format ${format} is not one of 1-${newest} (written by a newer version?)`);
  return { r, format };
}

function writeRefs(w: Writer, refs: readonly SegmentRef[]): void {
  w.u32(refs.length);
  for (const s of refs) {
    w.bytes(new TextEncoder().encode(s.id));
    w.u8(s.level);
    w.u64(s.from);
    w.u64(s.to);
    w.u32(s.count);
  }
}

/** References as written by {@link writeRefs}; `levels` false for a format-1 head, whose references carry none (all 0). */
function readRefs(r: Reader, levels: boolean): SegmentRef[] {
  const n = r.u32();
  const out: SegmentRef[] = [];
  for (let i = 0; i < n; i++) {
    const id = new TextDecoder('utf-8', { fatal: true }).decode(r.bytesField());
    out.push({ id, level: levels ? r.u8() : 0, from: r.u64(), to: r.u64(), count: r.u32() });
  }
  for (let i = 1; i < out.length; i++) {
    if (out[i]!.from <= out[i - 1]!.to || out[i]!.level > out[i - 1]!.level) throw corrupt(r.what, 'its references are out of order');
  }
  return out;
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
  w.u8(HEAD_FORMAT);
  w.raw(state.writeToken);
  writeRefs(w, state.segments);
  writeVersions(w, state.inline);
  return w.finish();
}

export function decodeState(bytes: Uint8Array, what: string): KeyState {
  const { r, format } = open(bytes, HEAD_MAGIC, what, HEAD_FORMAT);
  const writeToken = r.raw(TOKEN_BYTES);
  const segments = readRefs(r, format >= 2);
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
  const { r } = open(bytes, SEGMENT_MAGIC, what);
  const versions = readVersions(r);
  r.end();
  return versions;
}

export function encodeIndex(refs: readonly SegmentRef[]): Uint8Array {
  const w = new Writer();
  w.u32(INDEX_MAGIC);
  w.u8(FORMAT);
  writeRefs(w, refs);
  return w.finish();
}

export function decodeIndex(bytes: Uint8Array, what: string): SegmentRef[] {
  const { r } = open(bytes, INDEX_MAGIC, what);
  const refs = readRefs(r, true);
  r.end();
  return refs;
}
