import { ConsensusBase, type ListedKeys } from '../base.js';
import { CaSResult, type VersionedData } from '../consensus.js';
import { Determinate, ErrorCode } from '../errors.js';
import { SeqNo } from '../seqno.js';
import { copyBytes } from '../bytes.js';
import { redactUri } from '../uri.js';
import { CHANGES, Notifier } from '../envelope/changes.js';

/** The versions of every key of one in-memory location, each list ascending. */
type State = Map<string, VersionedData[]>;

const named = new Map<string, State>();
/** Tells watchers of every handle on a location of its commits. */
const notifiers = new WeakMap<State, Notifier>();

/** Lets go of the named location `name` (a scratch namespace being destroyed): a handle opened afterwards with that name starts empty. */
export function forgetNamedConsensus(name: string): void {
  named.delete(name);
}

/** Options of {@link MemConsensus}. */
export interface MemConsensusOptions {
  /**
   * Handles opened with the same name in this process share one location (this is
   * what `mem://NAME` opens). Without a name the location is private to the handle.
   */
  name?: string;
}

/**
 * Consensus held in this process's memory: for tests, and as the reference model.
 *
 * Every operation runs to completion synchronously once called, so concurrent async
 * callers are linearizable by construction. Nothing a caller holds is stored state:
 * bytes are copied in and out, and a written seqno is stored as a SeqNo of its own
 * (SeqNos are immutable, so the stored ones are handed out as they are). Nothing
 * survives the process. Watchers (`watch`) are told of every commit through any
 * handle on the same location.
 */
export class MemConsensus extends ConsensusBase {
  readonly description: string;
  readonly #state: State;

  constructor(options: MemConsensusOptions = {}) {
    super();
    const { name } = options;
    if (name === undefined) {
      this.#state = new Map();
    } else {
      let state = named.get(name);
      if (state === undefined) named.set(name, (state = new Map()));
      this.#state = state;
    }
    // A name opened from a URI holds its authority, which may hold a password.
    this.description = `MemConsensus(${name === undefined ? '<private>' : redactUri(`mem://${name}`)})`;
    if (!notifiers.has(this.#state)) notifiers.set(this.#state, new Notifier());
  }

  /** Ticks after each commit to `key` through any handle on this location (see envelope/changes.ts). */
  [CHANGES](key: string, signal: AbortSignal): AsyncIterable<void> {
    return notifiers.get(this.#state)!.changes(key, signal);
  }

  protected async *_listKeys(): AsyncIterable<ListedKeys> {
    // A snapshot, so callers may write while they iterate; one batch, so the keys
    // cost no step of this generator each.
    yield [...this.#state.keys()];
  }

  protected async _head(key: string): Promise<VersionedData | undefined> {
    const versions = this.#state.get(key);
    const head = versions?.[versions.length - 1];
    return head === undefined ? undefined : copy(head);
  }

  protected async _compareAndSet(key: string, expected: SeqNo | undefined, next: VersionedData): Promise<CaSResult> {
    const versions = this.#state.get(key);
    const head = versions?.[versions.length - 1];
    if (head === undefined ? expected !== undefined : expected === undefined || head.seqno.value !== expected.value) {
      return CaSResult.ExpectationMismatch;
    }
    // Not the caller's object, which may be a subclass instance with state of its own.
    const stored = { seqno: new SeqNo(next.seqno.value), data: copyBytes(next.data) };
    if (versions === undefined) this.#state.set(key, [stored]);
    else versions.push(stored);
    notifiers.get(this.#state)!.notify(key);
    return CaSResult.Committed;
  }

  protected async _scan(key: string, from: SeqNo, limit: number): Promise<VersionedData[]> {
    const versions = this.#state.get(key) ?? [];
    const start = firstAtOrAbove(versions, from.value);
    return versions.slice(start, start + Math.min(limit, versions.length)).map(copy);
  }

  protected async _truncate(key: string, seqno: SeqNo): Promise<number> {
    const versions = this.#state.get(key);
    const head = versions?.[versions.length - 1];
    if (versions === undefined || head === undefined) {
      throw new Determinate(ErrorCode.FailedPrecondition, `${this.description}: cannot truncate ${key}: it has no data`);
    }
    if (seqno.value > head.seqno.value) {
      throw new Determinate(
        ErrorCode.FailedPrecondition,
        `${this.description}: cannot truncate ${key} to ${seqno}: it is past the head ${head.seqno}`,
      );
    }
    const deleted = firstAtOrAbove(versions, seqno.value);
    versions.splice(0, deleted);
    return deleted;
  }

  protected async _close(): Promise<void> {}
}

function copy(v: VersionedData): VersionedData {
  return { seqno: v.seqno, data: copyBytes(v.data) };
}

/** Index of the first version with seqno >= `from` (binary search). */
function firstAtOrAbove(versions: VersionedData[], from: bigint): number {
  let lo = 0;
  let hi = versions.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (versions[mid]!.seqno.value < from) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
