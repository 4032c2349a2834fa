/**
 * Where EtcdConsensus keeps things, below the location's prefix P (which always
 * ends with `/`, so the location `/app` is `/app/` and never overlaps `/app2/`):
 *
 *     P \0h/<hex(key)>                  head record: the head's seqno as 16 hex digits
 *     P \0v/<hex(key)>/<16 hex digits>  one record per version: its data, verbatim
 *
 * The NUL byte after P cannot occur in a prefix (refused when opening), so no
 * other location's records fall under P's: not a sibling (`/app2/`) and not a
 * nested one (`/app/h`, whose records start `/app/h/\0`, not `/app/\0`).
 *
 * `hex(key)` is the lowercase hex of the key's UTF-8 bytes: it contains neither `/`
 * nor anything a user could choose, so every SPEC-valid key (any unicode, `/`, up
 * to 1024 bytes) round-trips exactly, one key's records never fall inside another
 * key's range, and the head and version namespaces cannot meet. Seqnos (at most
 * 2^63-1) are written as 16 lowercase hex digits, so byte order is numeric order:
 * a key's versions are one contiguous, ascending key range, and the head record's
 * value compares bytewise like the seqno it holds.
 */
import { Determinate, ErrorCode, invalidArgument } from '../errors.js';

const SEQNO_HEX = /^[0-9a-f]{16}$/;

/** `seqno` as 16 lowercase hex digits. */
export function seqnoText(seqno: bigint): string {
  return seqno.toString(16).padStart(16, '0');
}

/** Reads {@link seqnoText}; a malformed record is Determinate DataLoss. */
export function parseSeqno(text: string, where: string): bigint {
  if (!SEQNO_HEX.test(text)) {
    throw new Determinate(ErrorCode.DataLoss, `${where}: malformed seqno '${text.slice(0, 40)}' in etcd, expected 16 hex digits`);
  }
  return BigInt(`0x${text}`);
}

/** The etcd keys of one location. */
export class Layout {
  /** The location's prefix, ending with `/`. */
  readonly prefix: string;
  readonly #heads: Buffer;
  readonly #versions: Buffer;

  /** @throws Determinate InvalidArgument for a prefix with a NUL character or a lone surrogate. */
  constructor(prefix: string) {
    if (typeof prefix !== 'string') throw invalidArgument('an etcd location prefix must be a string');
    if (prefix.includes('\u0000')) throw invalidArgument('an etcd location prefix must not contain U+0000');
    // UTF-8 would write a lone surrogate as U+FFFD: two different prefixes, one location.
    if (!prefix.isWellFormed()) throw invalidArgument('an etcd location prefix must be well-formed unicode (it contains a lone surrogate)');
    this.prefix = prefix.endsWith('/') ? prefix : `${prefix}/`;
    this.#heads = Buffer.from(`${this.prefix}\u0000h/`, 'utf8');
    this.#versions = Buffer.from(`${this.prefix}\u0000v/`, 'utf8');
  }

  /** The head record of `key`. */
  headKey(key: string): Buffer {
    return Buffer.concat([this.#heads, hex(key)]);
  }

  /** Every head record: [start, end). */
  headRange(): [Buffer, Buffer] {
    return [this.#heads, successorOfSlash(this.#heads)];
  }

  /** The user key of a head record's etcd key. */
  keyOfHead(etcdKey: Buffer): string {
    return Buffer.from(etcdKey.toString('latin1', this.#heads.length), 'hex').toString('utf8');
  }

  /** The record of version `seqno` of `key`. */
  versionKey(key: string, seqno: bigint): Buffer {
    return Buffer.concat([this.#versions, hex(key), Buffer.from(`/${seqnoText(seqno)}`, 'latin1')]);
  }

  /** The versions of `key` with seqno >= `from`: [start, end). */
  versionsFrom(key: string, from: bigint): [Buffer, Buffer] {
    return [this.versionKey(key, from), this.#versionsEnd(key)];
  }

  /** The versions of `key` with seqno < `below`: [start, end). */
  versionsBelow(key: string, below: bigint): [Buffer, Buffer] {
    return [this.versionKey(key, 0n), this.versionKey(key, below)];
  }

  /** The seqno of a version record's etcd key. */
  seqnoOfVersion(etcdKey: Buffer, where: string): bigint {
    return parseSeqno(etcdKey.subarray(etcdKey.length - 16).toString('latin1'), where);
  }

  #versionsEnd(key: string): Buffer {
    return Buffer.concat([this.#versions, hex(key), Buffer.from('0', 'latin1')]);
  }
}

function hex(key: string): Buffer {
  return Buffer.from(Buffer.from(key, 'utf8').toString('hex'), 'latin1');
}

/** `…/` becomes `…0`: the first key after everything that starts with the prefix. */
function successorOfSlash(prefix: Buffer): Buffer {
  const end = Buffer.from(prefix);
  end[end.length - 1] = 0x30; // '/' + 1
  return end;
}
