// A deliberately broken in-memory Consensus, to prove the checker and the stress
// harness catch each kind of bug. Each flag breaks one rule of SPEC.
import { CaSResult, Determinate, ErrorCode, type Consensus, type SeqNo, type VersionedData } from 'persist-location';

export interface Bugs {
  /** head sometimes answers from a per-handle cache instead of the store. */
  staleHead?: boolean;
  /** compareAndSet sometimes commits although the expectation did not hold. */
  lostUpdate?: boolean;
  /** compareAndSet sometimes answers Committed without storing anything. */
  ackedButLost?: boolean;
  /** truncate(s) deletes versions <= s instead of < s, so truncating at the head drops it. */
  truncateDropsHead?: boolean;
}

/** Returns an `open()` whose handles share one broken location. */
export function brokenLocation(bugs: Bugs, rate = 0.2): () => Promise<Consensus> {
  const state = new Map<string, VersionedData[]>();
  return async () => new BrokenConsensus(state, bugs, rate);
}

class BrokenConsensus implements Consensus {
  readonly #cache = new Map<string, VersionedData | undefined>();
  constructor(
    readonly state: Map<string, VersionedData[]>,
    readonly bugs: Bugs,
    readonly rate: number,
  ) {}

  async *listKeys(): AsyncIterable<string> {
    yield* [...this.state.keys()];
  }

  async head(key: string): Promise<VersionedData | undefined> {
    if (this.bugs.staleHead && this.#cache.has(key) && Math.random() < this.rate) return this.#cache.get(key);
    const versions = this.state.get(key);
    const head = versions?.[versions.length - 1];
    this.#cache.set(key, head);
    return head;
  }

  async compareAndSet(key: string, expected: SeqNo | undefined, next: VersionedData): Promise<CaSResult> {
    await Promise.resolve();
    const versions = this.state.get(key) ?? [];
    const head = versions[versions.length - 1];
    let matches = head === undefined ? expected === undefined : expected?.value === head.seqno.value;
    if (!matches && this.bugs.lostUpdate && Math.random() < this.rate && (head === undefined || next.seqno.value > head.seqno.value)) {
      matches = true;
    }
    if (!matches) return CaSResult.ExpectationMismatch;
    if (this.bugs.ackedButLost && Math.random() < this.rate) return CaSResult.Committed;
    versions.push({ seqno: next.seqno, data: new Uint8Array(next.data) });
    this.state.set(key, versions);
    return CaSResult.Committed;
  }

  async scan(key: string, from: SeqNo, limit: number): Promise<VersionedData[]> {
    return (this.state.get(key) ?? []).filter((v) => v.seqno.value >= from.value).slice(0, limit);
  }

  async truncate(key: string, seqno: SeqNo): Promise<number> {
    const versions = this.state.get(key) ?? [];
    const head = versions[versions.length - 1];
    if (head === undefined || seqno.value > head.seqno.value) {
      throw new Determinate(ErrorCode.FailedPrecondition, 'truncate past the head');
    }
    const keep = versions.filter((v) => (this.bugs.truncateDropsHead ? v.seqno.value > seqno.value : v.seqno.value >= seqno.value));
    this.state.set(key, keep);
    return versions.length - keep.length;
  }

  async close(): Promise<void> {}
  async [Symbol.asyncDispose](): Promise<void> {}
}
