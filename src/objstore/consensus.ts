/**
 * Consensus kept in an object store alone, with nothing but conditional writes
 * (`If-None-Match: *` to create, `If-Match: ETAG` to replace). S3Consensus and
 * AzureConsensus are this class over their store's client.
 *
 * ## Design
 * Each key has one **head object** holding its whole state (see
 * consensus-format.ts): the most recent versions inline, and references to
 * **segment objects**, immutable runs of older versions. So that the head stays
 * the same size however many versions the key keeps, it holds at most
 * {@link ObjectConsensusOptions.indexFanout} references of each level: when a
 * level has more, they go out into one immutable **index object** of the next
 * level up, which the head refers to instead (a tree of fanout 16 over the
 * segments, kept whole only for its right edge). Every change of a key
 * (compareAndSet, truncate) is one conditional PUT of its head object, created
 * with `If-None-Match: *` or replaced with `If-Match` of the ETag it was read
 * with. That PUT is the change's one linearization point; a read (head, scan,
 * the check behind an ExpectationMismatch) is linearized at its GET of the head
 * object. Segment and index objects are written, under names no other write
 * uses, before the head that refers to them, and deleted only after a head that
 * no longer refers to them (directly or through an index) has been written, so
 * every object a head reaches exists while that head is current.
 *
 * Invariants: the inline versions are ascending and end with the head; segment
 * versions are ascending and below the inline ones; every version a head holds
 * or reaches is live (truncate rewrites what it keeps of a segment, and of each
 * index above it, it cuts through); each state carries the random token of the
 * write that produced it, and each version the token of the compareAndSet that
 * wrote it.
 *
 * Why it is linearizable: a conditional PUT succeeds only against the state it
 * was computed from, so the states of a key form one chain, each derived from
 * its predecessor by exactly one operation, in the order the store accepted the
 * PUTs. A compareAndSet commits iff its PUT is accepted, and it computed its
 * state only from a head whose seqno equals `expected`. It answers
 * ExpectationMismatch only after a fresh GET shows another head. A cached state
 * is used only to make the conditional PUT; a stale one fails the condition and
 * is read again, never answered from.
 *
 * A stalled writer cannot resurrect what truncate removed: truncate is itself a
 * conditional PUT of the head, so it changes the ETag every pending writer holds
 * and their PUTs fail. A segment a stalled writer uploads late is never
 * referenced (its name is unique to its write), and truncate sweeps such strays.
 *
 * Unknown outcomes: when a PUT's outcome is unknown (a timeout, a cut
 * connection), the head is read again. The same ETag as before means the PUT did
 * not apply, and it is sent again unchanged; a state carrying the write's token,
 * or a version at `next.seqno` carrying it, means it applied; a history that
 * still reaches `next.seqno` without it means it did not. Otherwise (truncated
 * away since) the outcome stays Indeterminate.
 *
 * ## Requests per operation (steady state)
 * The head object, which every operation reads or writes whole, is at most
 * `inlineVersions` versions and `indexFanout` references per level of the tree,
 * one level more for every `indexFanout` times more versions kept.
 * - head: 1 GET.
 * - compareAndSet: 1 conditional PUT when this handle's cached head is current;
 *   1 GET more when it is not (another writer, first use). Every
 *   {@link ObjectConsensusOptions.inlineVersions} commits, 1 PUT more writes the
 *   older versions out as a segment; every `indexFanout` segments 1 PUT more
 *   writes an index object, every `indexFanout` of those 1 more, and so on up.
 * - scan: 1 GET, plus 1 GET per segment the range reaches into and per index
 *   above those (one per level for where the range starts).
 * - truncate: 1 GET + 1 PUT (+ 1 GET and 1 PUT per level of the tree when it
 *   cuts through a segment), then 1 LIST of the key's segments and 1 DELETE per
 *   object dropped or stray.
 * - listKeys: 1 LIST per page of head objects.
 */
import { randomBytes } from 'node:crypto';
import { ConsensusBase } from '../base.js';
import { copyBytes } from '../bytes.js';
import { CaSResult, type OpOptions, type VersionedData } from '../consensus.js';
import { Determinate, ErrorCode, ExternalError, Indeterminate, throwIfAborted } from '../errors.js';
import { backoffDelay, DEFAULT_BACKOFF, sleep } from '../kit/backoff.js';
import { bounded } from '../kit/bounded.js';
import { SeqNo } from '../seqno.js';
import {
  decodeIndex,
  decodeSegment,
  decodeState,
  encodeIndex,
  encodeSegment,
  encodeState,
  TOKEN_BYTES,
  type KeyState,
  type SegmentRef,
  type StoredVersion,
} from './consensus-format.js';

/** A whole object and the ETag it was read with. */
export interface StoredObject {
  readonly bytes: Uint8Array;
  readonly etag: string;
}

/** The condition of a write: create only, replace only this ETag, or none. */
export type WriteCondition = { readonly ifNoneMatch: '*' } | { readonly ifMatch: string } | Record<string, never>;

/**
 * A conditional write's outcome: accepted (with the new ETag), `changed` (the
 * condition failed: 412, or Azure's 409 BlobAlreadyExists), or `conflict` (the
 * store refused because of a concurrent conditional write, S3's 409
 * ConditionalRequestConflict: nothing was written, try again).
 */
export type PutOutcome = { readonly etag: string } | 'changed' | 'conflict';

/**
 * What a store supplies: whole-object reads and conditional writes. Every method
 * rejects with an ExternalError (Indeterminate when a write may have applied).
 */
export interface ConditionalObjects {
  get(name: string, signal: AbortSignal | undefined): Promise<StoredObject | undefined>;
  put(name: string, body: Uint8Array, condition: WriteCondition, signal: AbortSignal | undefined): Promise<PutOutcome>;
  /** Deletes the object; succeeds when there is none. */
  delete(name: string, signal: AbortSignal | undefined): Promise<void>;
  /** Every object name starting with `prefix`. */
  list(prefix: string, signal: AbortSignal | undefined): AsyncIterable<string>;
}

/**
 * Where a location's objects are, by name. Names of different keys must not be
 * prefixes of each other's (the store's key encoding is prefix-free).
 */
export interface ConsensusLayout {
  /** The prefix every head object name starts with. */
  readonly headPrefix: string;
  head(key: string): string;
  /** The key of a head object's name, or undefined for a name that is not one. */
  keyOfHead(name: string): string | undefined;
  /** The prefix every segment of `key` starts with (and no other object). */
  segmentPrefix(key: string): string;
  /** Prefixes that together hold every object of the location (heads, segments, probes). */
  readonly roots: readonly string[];
}

export interface ObjectConsensusOptions {
  /** The store's objects. */
  objects: ConditionalObjects;
  layout: ConsensusLayout;
  /** Names the handle in messages, e.g. `S3Consensus(s3://bucket/prefix)`. */
  description: string;
  /** Versions kept inline in a head object before older ones go to a segment (default 16). */
  inlineVersions?: number;
  /** Bytes of inline data before older versions go to a segment (default 256 KiB). */
  inlineBytes?: number;
  /** References of one level a head holds before they go out into an index object (default 16, at least 2). */
  indexFanout?: number;
  /** Attempts at a conditional write that meets a conflict or an unknown outcome (default 8). */
  writeAttempts?: number;
  /** Segments read at once by a scan (default 8). */
  readConcurrency?: number;
  /** Called by close(), after the handle stops taking operations. */
  onClose?: () => Promise<void>;
  /**
   * Refuses a key the store cannot name (throws Determinate InvalidArgument), after
   * SPEC's own key rules and before anything is sent.
   */
  checkKey?: (key: string) => void;
}

/** What a change writes: the new state, and the segment and index objects written for it first (deleted again when it fails). */
interface Change {
  readonly state: KeyState;
  readonly written: readonly string[];
}

/** A head object as last seen: its ETag and state (undefined: the key had none). */
interface Seen {
  readonly etag: string | undefined;
  readonly state: KeyState | undefined;
}

const MAX_CACHED_KEYS = 4096;

/** Consensus over {@link ConditionalObjects} (see the module comment). */
export class ObjectConsensus extends ConsensusBase {
  readonly description: string;
  readonly #objects: ConditionalObjects;
  readonly #layout: ConsensusLayout;
  readonly #inlineVersions: number;
  readonly #inlineBytes: number;
  readonly #indexFanout: number;
  readonly #writeAttempts: number;
  readonly #readConcurrency: number;
  readonly #onClose: (() => Promise<void>) | undefined;
  readonly #checkKey: (key: string) => void;
  /** The last head object this handle read or wrote, per key: where a write starts. */
  readonly #seen = new Map<string, Seen>();

  constructor(options: ObjectConsensusOptions) {
    super();
    this.description = options.description;
    this.#objects = options.objects;
    this.#layout = options.layout;
    this.#inlineVersions = positive(options.inlineVersions ?? 16, 'inlineVersions');
    this.#inlineBytes = positive(options.inlineBytes ?? 256 * 1024, 'inlineBytes');
    this.#indexFanout = positive(options.indexFanout ?? 16, 'indexFanout');
    if (this.#indexFanout < 2) throw new RangeError(`indexFanout must be at least 2, got ${this.#indexFanout}`);
    this.#writeAttempts = positive(options.writeAttempts ?? 8, 'writeAttempts');
    this.#readConcurrency = positive(options.readConcurrency ?? 8, 'readConcurrency');
    this.#onClose = options.onClose;
    this.#checkKey = options.checkKey ?? (() => {});
  }

  protected override async *_listKeys(opts?: OpOptions): AsyncIterable<string> {
    for await (const name of this.#objects.list(this.#layout.headPrefix, opts?.signal)) {
      const key = this.#layout.keyOfHead(name);
      if (key !== undefined) yield key;
    }
  }

  protected override async _head(key: string, opts?: OpOptions): Promise<VersionedData | undefined> {
    this.#checkKey(key);
    const { state } = await this.#read(key, opts?.signal);
    if (state === undefined) return undefined;
    return toVersioned(state.inline.at(-1)!);
  }

  protected override async _compareAndSet(key: string, expected: SeqNo | undefined, next: VersionedData, opts?: OpOptions): Promise<CaSResult> {
    this.#checkKey(key);
    const signal = opts?.signal;
    const token = randomBytes(TOKEN_BYTES);
    const version: StoredVersion = { seqno: next.seqno.value, token, data: copyBytes(next.data) };
    const want = expected?.value;
    let fresh = !this.#seen.has(key);
    let seen = this.#seen.get(key) ?? (await this.#read(key, signal));
    for (let attempt = 1; ; attempt++) {
      if (headSeqno(seen.state) !== want) {
        // Only a head read just now may answer a mismatch; a cached one may be stale.
        if (fresh) return CaSResult.ExpectationMismatch;
        seen = await this.#read(key, signal);
        fresh = true;
        continue;
      }
      const outcome = await this.#write(key, seen, (state) => this.#append(key, state, version, token, signal), signal, (after) => this.#holds(key, after, version, signal));
      if (outcome === 'committed') return CaSResult.Committed;
      if (attempt >= this.#writeAttempts) {
        throw new Determinate(ErrorCode.Aborted, `${this.description}: compareAndSet("${key}") met a changed head ${attempt} times without an answer`);
      }
      // The head object changed (another write, a truncate): decide on a fresh read.
      seen = await this.#read(key, signal);
      fresh = true;
    }
  }

  protected override async _scan(key: string, start: SeqNo, limit: number, opts?: OpOptions): Promise<VersionedData[]> {
    this.#checkKey(key);
    const signal = opts?.signal;
    const from = new SeqNo(start.value);
    for (let attempt = 1; ; attempt++) {
      const { state } = await this.#read(key, signal);
      if (state === undefined) return [];
      // What is still to read, in order: an index is replaced by its references, and segments are read a few at a
      // time, until `limit` versions are found.
      const wanted = state.segments.filter((s) => s.to >= from.value);
      const out: VersionedData[] = [];
      let missing = false;
      while (wanted.length > 0 && out.length < limit && !missing) {
        if (wanted[0]!.level > 0) {
          const refs = await this.#readIndex(key, wanted[0]!, signal);
          if (refs === undefined) missing = true;
          else wanted.splice(0, 1, ...refs.filter((s) => s.to >= from.value));
          continue;
        }
        let n = 1;
        while (n < wanted.length && n < this.#readConcurrency && wanted[n]!.level === 0) n++;
        const runs = await bounded(wanted.splice(0, n), this.#readConcurrency, (s) => this.#readSegment(key, s, signal), { signal });
        for (const run of runs) {
          if (run === undefined) missing = true;
          else for (const v of run) if (v.seqno >= from.value && out.length < limit) out.push(toVersioned(v));
        }
      }
      // A segment that is gone was dropped by a truncate after the head was read: read again.
      if (missing) {
        if (attempt >= this.#writeAttempts) throw new Determinate(ErrorCode.Aborted, `${this.description}: scan("${key}") kept finding segments truncated away`);
        continue;
      }
      for (const v of state.inline) if (v.seqno >= from.value && out.length < limit) out.push(toVersioned(v));
      return out;
    }
  }

  protected override async _truncate(key: string, at: SeqNo, opts?: OpOptions): Promise<number> {
    this.#checkKey(key);
    const signal = opts?.signal;
    const seqno = new SeqNo(at.value);
    const token = randomBytes(TOKEN_BYTES);
    let seen = await this.#read(key, signal);
    for (let attempt = 1; ; attempt++) {
      const head = headSeqno(seen.state);
      if (head === undefined || seqno.value > head) {
        const why = head === undefined ? 'the key has no data' : `it is past the head SeqNo(${head})`;
        throw new Determinate(ErrorCode.FailedPrecondition, `${this.description}: truncate("${key}", ${seqno}) refused: ${why}`);
      }
      const plan = await this.#planTruncate(key, seen.state!, seqno.value, token, signal);
      if (plan.removed === 0) return 0;
      // Applied: ours is the current state, or, when a later write replaced it, no version below `seqno` is left
      // (none can come back: writes only add above the head); not applied: some are still there.
      const applied = async (after: KeyState): Promise<boolean | 'unknown'> => {
        if (equalBytes(after.writeToken, token)) return true;
        const first = after.segments[0]?.from ?? after.inline[0]!.seqno;
        return first < seqno.value ? false : 'unknown';
      };
      const outcome = await this.#write(key, seen, () => ({ state: plan.after, written: plan.written }), signal, applied);
      if (outcome === 'committed') {
        const prefix = this.#layout.segmentPrefix(key);
        await bounded(plan.dropped, this.#readConcurrency, (s) => this.#objects.delete(`${prefix}${s.id}`, signal)).catch(() => {});
        await this.#sweep(key, plan.after, signal).catch(() => {});
        return plan.removed;
      }
      if (attempt >= this.#writeAttempts) {
        throw new Determinate(ErrorCode.Aborted, `${this.description}: truncate("${key}") met a changed head ${attempt} times`);
      }
      seen = await this.#read(key, signal);
    }
  }

  /**
   * Deletes every object of this location (under the layout's roots), for scratch
   * locations that `check` made and must leave nothing of. Returns how many objects
   * are still listed afterwards (a write still landing).
   */
  async destroyLocation(signal?: AbortSignal): Promise<number> {
    this.checkOpen({ signal });
    for (const root of this.#layout.roots) {
      const names: string[] = [];
      for await (const name of this.#objects.list(root, signal)) names.push(name);
      await bounded(names, this.#readConcurrency, (name) => this.#objects.delete(name, signal), { signal });
    }
    this.#seen.clear();
    let left = 0;
    for (const root of this.#layout.roots) for await (const _ of this.#objects.list(root, signal)) left++;
    return left;
  }

  protected override async _close(): Promise<void> {
    this.#seen.clear();
    await this.#onClose?.();
  }

  /** Reads `key`'s head object now, and remembers it. */
  async #read(key: string, signal: AbortSignal | undefined): Promise<Seen> {
    const name = this.#layout.head(key);
    const object = await this.#objects.get(name, signal);
    const seen: Seen = object === undefined ? { etag: undefined, state: undefined } : { etag: object.etag, state: decodeState(object.bytes, `${this.description}: head object of "${key}"`) };
    this.#remember(key, seen);
    return seen;
  }

  #remember(key: string, seen: Seen): void {
    this.#seen.delete(key);
    this.#seen.set(key, seen);
    if (this.#seen.size > MAX_CACHED_KEYS) this.#seen.delete(this.#seen.keys().next().value!);
  }

  /**
   * One conditional replacement of `key`'s head object, from `seen` to what
   * `change` makes of it, with its unknown outcomes resolved (module comment):
   * `committed`, or `changed` when the head object is not `seen` any more (the
   * caller reads it again). `applied(state)` tells whether a state read after an
   * unknown outcome holds this write.
   */
  async #write(
    key: string,
    seen: Seen,
    change: (state: KeyState | undefined) => Promise<Change> | Change,
    signal: AbortSignal | undefined,
    applied: (state: KeyState) => Promise<boolean | 'unknown'>,
  ): Promise<'committed' | 'changed'> {
    const name = this.#layout.head(key);
    const { state, written } = await change(seen.state);
    const body = encodeState(state);
    const condition: WriteCondition = seen.etag === undefined ? { ifNoneMatch: '*' } : { ifMatch: seen.etag };
    let uncertain: ExternalError | undefined;
    const dropSegment = () => bounded(written, this.#readConcurrency, (n) => this.#objects.delete(n, undefined)).then(() => {}, () => {});
    for (let attempt = 1; attempt <= this.#writeAttempts; attempt++) {
      let outcome: PutOutcome;
      try {
        outcome = await this.#objects.put(name, body, condition, signal);
      } catch (err) {
        if (!(err instanceof ExternalError) || err.determinate) {
          if (uncertain === undefined) await dropSegment();
          throw uncertain ?? err;
        }
        uncertain = err;
        const resolved = await this.#resolve(key, seen, applied, signal).catch(() => 'unknown' as const);
        if (resolved === 'applied') return 'committed';
        if (resolved === 'not-applied') continue; // the same PUT, sent again
        if (resolved === 'changed') {
          await dropSegment();
          return 'changed';
        }
        throw err;
      }
      if (outcome === 'conflict') {
        await sleep(backoffDelay(DEFAULT_BACKOFF, attempt), signal, uncertain === undefined ? 'not-sent' : 'sent');
        continue;
      }
      if (outcome === 'changed') {
        // After an unknown outcome, the PUT that failed its condition may be meeting our own earlier one.
        if (uncertain !== undefined) {
          const resolved = await this.#resolve(key, seen, applied, signal).catch(() => 'unknown' as const);
          if (resolved === 'applied') return 'committed';
          if (resolved === 'unknown') throw uncertain;
        }
        await dropSegment();
        return 'changed';
      }
      this.#remember(key, { etag: outcome.etag, state });
      return 'committed';
    }
    if (uncertain !== undefined) throw uncertain;
    await dropSegment();
    return 'changed';
  }

  /** After an unknown outcome: did the write from `seen` apply? (module comment) */
  async #resolve(key: string, seen: Seen, applied: (state: KeyState) => Promise<boolean | 'unknown'>, signal: AbortSignal | undefined): Promise<'applied' | 'not-applied' | 'changed' | 'unknown'> {
    const now = await this.#read(key, signal);
    if (now.etag === seen.etag) return 'not-applied';
    if (now.state === undefined) return 'unknown';
    const found = await applied(now.state);
    if (found === true) return 'applied';
    return found === false ? 'changed' : 'unknown';
  }

  /**
   * The state after appending `version` to `state`, writing older versions out as
   * a segment when inline is full, and a level's references out as an index when
   * the head holds more than `indexFanout` of them.
   */
  async #append(key: string, state: KeyState | undefined, version: StoredVersion, token: Uint8Array, signal: AbortSignal | undefined): Promise<Change> {
    const inline = [...(state?.inline ?? []), version];
    const segments = [...(state?.segments ?? [])];
    const written: string[] = [];
    const bytes = inline.reduce((n, v) => n + v.data.length, 0);
    if (inline.length > this.#inlineVersions || (bytes > this.#inlineBytes && inline.length > 1)) {
      const older = inline.splice(0, inline.length - 1);
      segments.push(await this.#putObject(key, { level: 0, from: older[0]!.seqno, to: older.at(-1)!.seqno, count: older.length }, encodeSegment(older), written, signal));
      // References of one level are side by side (levels fall along the list); only the level below one just
      // folded can have grown.
      for (let level = 0; ; level++) {
        const at = segments.findIndex((s) => s.level === level);
        let end = at;
        while (end < segments.length && segments[end]!.level === level) end++;
        if (at < 0 || end - at <= this.#indexFanout) break;
        const run = segments.slice(at, end);
        segments.splice(at, run.length, await this.#putObject(key, spanOf(run, level + 1), encodeIndex(run), written, signal));
      }
    }
    return { state: { writeToken: token, segments, inline }, written };
  }

  /** Writes a new segment or index object holding `span` (its name unique to this write), noting it in `written`. */
  async #putObject(key: string, span: Omit<SegmentRef, 'id'>, body: Uint8Array, written: string[], signal: AbortSignal | undefined): Promise<SegmentRef> {
    const id = segmentId(span.from, span.to);
    const name = `${this.#layout.segmentPrefix(key)}${id}`;
    const put = await this.#objects.put(name, body, {}, signal);
    if (typeof put === 'string') throw new Indeterminate(ErrorCode.Unknown, `${this.description}: an unconditional segment write was refused (${put})`);
    written.push(name);
    return { id, ...span };
  }

  /** What truncating `state` below `seqno` leaves, how many versions it removes, what it drops and what it had to write. */
  async #planTruncate(
    key: string,
    state: KeyState,
    seqno: bigint,
    token: Uint8Array,
    signal: AbortSignal | undefined,
  ): Promise<{ after: KeyState; removed: number; dropped: SegmentRef[]; written: string[] }> {
    const dropped: SegmentRef[] = [];
    const written: string[] = [];
    const cut = await this.#cut(key, state.segments, seqno, dropped, written, signal);
    const inline = state.inline.filter((v) => v.seqno >= seqno);
    const removed = cut.removed + state.inline.length - inline.length;
    return { after: { writeToken: token, segments: cut.kept, inline }, removed, dropped, written };
  }

  /**
   * The references of `refs` to versions from `seqno` on, and how many versions
   * the others held. The one reference cut through is replaced by a new object
   * holding what it keeps (for an index, its own references cut the same way).
   * What is no longer referred to goes in `dropped`, what was written in `written`.
   */
  async #cut(
    key: string,
    refs: readonly SegmentRef[],
    seqno: bigint,
    dropped: SegmentRef[],
    written: string[],
    signal: AbortSignal | undefined,
  ): Promise<{ kept: SegmentRef[]; removed: number }> {
    let removed = 0;
    const kept: SegmentRef[] = [];
    for (const s of refs) {
      if (s.from >= seqno) {
        kept.push(s);
        continue;
      }
      dropped.push(s);
      if (s.to < seqno) {
        removed += s.count;
        continue;
      }
      const gone = () => new Determinate(ErrorCode.Aborted, `${this.description}: truncate("${key}") found a segment gone mid-way; try again`);
      if (s.level === 0) {
        const run = await this.#readSegment(key, s, signal);
        if (run === undefined) throw gone();
        const rest = run.filter((v) => v.seqno >= seqno);
        removed += run.length - rest.length;
        kept.push(await this.#putObject(key, { level: 0, from: rest[0]!.seqno, to: rest.at(-1)!.seqno, count: rest.length }, encodeSegment(rest), written, signal));
      } else {
        const children = await this.#readIndex(key, s, signal);
        if (children === undefined) throw gone();
        const inner = await this.#cut(key, children, seqno, dropped, written, signal);
        removed += inner.removed;
        kept.push(await this.#putObject(key, spanOf(inner.kept, s.level), encodeIndex(inner.kept), written, signal));
      }
    }
    return { kept, removed };
  }

  /** The bytes of the object `s` names, or undefined when it is gone (truncated after its head was read). */
  async #readObject(key: string, s: SegmentRef, signal: AbortSignal | undefined): Promise<Uint8Array | undefined> {
    throwIfAborted(signal);
    return (await this.#objects.get(`${this.#layout.segmentPrefix(key)}${s.id}`, signal))?.bytes;
  }

  /** The versions of segment `s` (level 0), or undefined when it is gone. */
  async #readSegment(key: string, s: SegmentRef, signal: AbortSignal | undefined): Promise<StoredVersion[] | undefined> {
    const bytes = await this.#readObject(key, s, signal);
    if (bytes === undefined) return undefined;
    const run = decodeSegment(bytes, `${this.description}: segment ${s.id} of "${key}"`);
    if (run.length !== s.count || run[0]?.seqno !== s.from || run.at(-1)?.seqno !== s.to) throw this.#mismatch(key, s);
    return run;
  }

  /** The references of index `s` (level above 0), or undefined when it is gone. */
  async #readIndex(key: string, s: SegmentRef, signal: AbortSignal | undefined): Promise<SegmentRef[] | undefined> {
    const bytes = await this.#readObject(key, s, signal);
    if (bytes === undefined) return undefined;
    const refs = decodeIndex(bytes, `${this.description}: index ${s.id} of "${key}"`);
    if (refs.length === 0 || refs.some((r) => r.level !== s.level - 1)) throw this.#mismatch(key, s);
    const span = spanOf(refs, s.level);
    if (span.from !== s.from || span.to !== s.to || span.count !== s.count) throw this.#mismatch(key, s);
    return refs;
  }

  #mismatch(key: string, s: SegmentRef): Determinate {
    return new Determinate(ErrorCode.DataLoss, `${this.description}: ${s.level === 0 ? 'segment' : 'index'} ${s.id} of "${key}" does not hold the versions its head names`);
  }

  /** Whether `state` holds `version` (same seqno and token), reading down to the segment that would hold it. */
  async #holds(key: string, state: KeyState, version: StoredVersion, signal: AbortSignal | undefined): Promise<boolean | 'unknown'> {
    if (equalBytes(state.writeToken, version.token)) return true;
    const inline = state.inline.find((v) => v.seqno === version.seqno);
    if (inline !== undefined) return equalBytes(inline.token, version.token);
    let refs = state.segments;
    for (;;) {
      const s = refs.find((r) => r.from <= version.seqno && version.seqno <= r.to);
      if (s === undefined) break;
      if (s.level === 0) {
        const run = await this.#readSegment(key, s, signal);
        if (run === undefined) return 'unknown';
        const v = run.find((x) => x.seqno === version.seqno);
        return v !== undefined && equalBytes(v.token, version.token);
      }
      const below = await this.#readIndex(key, s, signal);
      if (below === undefined) return 'unknown';
      refs = below;
    }
    // Not held: decided only if the history still reaches back to where it would be.
    const first = state.segments[0]?.from ?? state.inline[0]!.seqno;
    return version.seqno >= first ? false : 'unknown';
  }

  /**
   * Deletes the segments of `key` that `state` (now current) does not refer to:
   * the ones truncate dropped, and strays of writes that never became current.
   * A stray at or above the first version kept may belong to a write still in
   * flight from the current state, so only those below it are deleted; those
   * above go with a later truncate.
   */
  async #sweep(key: string, state: KeyState, signal: AbortSignal | undefined): Promise<void> {
    const prefix = this.#layout.segmentPrefix(key);
    const referenced = new Set(state.segments.map((s) => `${prefix}${s.id}`));
    const first = state.segments[0]?.from ?? state.inline[0]!.seqno;
    const doomed: string[] = [];
    for await (const name of this.#objects.list(prefix, signal)) {
      if (referenced.has(name)) continue;
      const to = segmentEnd(name.slice(prefix.length));
      if (to !== undefined && to < first) doomed.push(name);
    }
    await bounded(doomed, this.#readConcurrency, (name) => this.#objects.delete(name, signal), { signal });
  }
}

/**
 * `FROM-TO-RANDOM`, seqnos zero-padded so names sort by seqno. Random per segment
 * written, so that a late delete of one segment can never hit another.
 */
function segmentId(from: bigint, to: bigint): string {
  const pad = (n: bigint) => n.toString().padStart(20, '0');
  return `${pad(from)}-${pad(to)}-${randomBytes(16).toString('hex')}`;
}

/** What an index of level `level` over `refs` (ascending, not empty) holds. */
function spanOf(refs: readonly SegmentRef[], level: number): Omit<SegmentRef, 'id'> {
  return { level, from: refs[0]!.from, to: refs.at(-1)!.to, count: refs.reduce((n, r) => n + r.count, 0) };
}

/** The last seqno of a segment id, or undefined for a name that is not one. */
function segmentEnd(id: string): bigint | undefined {
  const m = /^[0-9]{20}-([0-9]{20})-[0-9a-f]{32}$/.exec(id);
  return m === null ? undefined : BigInt(m[1]!);
}

function headSeqno(state: KeyState | undefined): bigint | undefined {
  return state?.inline.at(-1)!.seqno;
}

function toVersioned(v: StoredVersion): VersionedData {
  return { seqno: new SeqNo(v.seqno), data: copyBytes(v.data) };
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

function positive(n: number, what: string): number {
  if (!Number.isSafeInteger(n) || n < 1) throw new RangeError(`${what} must be a positive integer, got ${n}`);
  return n;
}
