/**
 * A linearizability checker for Consensus histories.
 *
 * The search is Wing & Gong's: walk the history's call/return events in time order,
 * tentatively linearize any pending call whose effect the model accepts, and
 * backtrack when a return is reached whose operation has not been linearized.
 * Lowe's memoization prunes it: a (set of linearized operations, model state) pair
 * already explored is never explored again. Keys are independent in Consensus, so
 * the history is split per key and each part searched on its own, which keeps the
 * search small.
 *
 * The memo is keyed by 64-bit Zobrist hashes of the set and the state, which keeps
 * each step O(1). A hash collision could only prune a branch that was still open,
 * i.e. turn an `ok` into a `violation`, never the reverse; so every `violation` is
 * confirmed by searching again with exact memo keys before it is reported.
 *
 * Outcomes: an operation that failed Determinate did not happen and is ignored. An
 * Indeterminate write may or may not have taken effect, at any time after its call
 * (even after it returned an error), so it is never required and may be linearized
 * anywhere after its call. An Indeterminate read says nothing and is ignored.
 *
 * The model includes SPEC's argument rules: a compareAndSet whose new seqno is above
 * 2^63-1 or not above `expected`, or a scan whose limit is not a positive integer,
 * is refused before anything happens: an `ok` outcome of it is a violation, and an
 * unknown one never took effect.
 */
import type { CaSResult } from '../consensus.js';
import { MAX_CONSENSUS_SEQNO } from '../validate.js';

/** A version as recorded in a history: data as a string the recorder chose (e.g. hex). */
export interface HistoryVersion {
  seqno: bigint;
  data: string;
}

/** What came of an operation. */
export type Outcome<T> =
  | { type: 'ok'; value: T }
  /** Indeterminate: it might have taken effect. */
  | { type: 'unknown' }
  /** Determinate failure: it did not take effect. */
  | { type: 'failed' };

interface OpBase {
  key: string;
  /** Which client issued it (for reports only). */
  client?: number;
  /** When it was called; any monotonic clock, the same for the whole history. */
  start: number;
  /** When it returned (ignored for unknown outcomes). */
  end: number;
}

/** One recorded Consensus operation. */
export type HistoryOp =
  | (OpBase & { op: 'head'; result: Outcome<HistoryVersion | undefined> })
  | (OpBase & {
      op: 'compareAndSet';
      expected: bigint | undefined;
      seqno: bigint;
      data: string;
      result: Outcome<CaSResult>;
    })
  | (OpBase & { op: 'scan'; from: bigint; limit: number; result: Outcome<HistoryVersion[]> })
  /** A truncate that was refused with FailedPrecondition has the value 'FailedPrecondition'. */
  | (OpBase & { op: 'truncate'; seqno: bigint; result: Outcome<number | 'FailedPrecondition'> });

/** A key whose operations could not be ordered. */
export interface Violation {
  key: string;
  /** The longest prefix of operations the search could linearize. */
  linearized: HistoryOp[];
  /**
   * Operations that were pending where that search got stuck: at least one of them
   * cannot be placed in any order consistent with the model and real time.
   */
  unordered: HistoryOp[];
}

export interface CheckOptions {
  /** Search steps allowed per key before giving up with `unknown` (default 10 million). */
  maxStepsPerKey?: number;
}

export interface CheckResult {
  /** `ok` only when every key was proven linearizable. */
  verdict: 'ok' | 'violation' | 'unknown';
  ok: boolean;
  /** Operations considered (failed and unknown reads excluded). */
  ops: number;
  keys: number;
  /** Search steps taken in all. */
  steps: number;
  violations: Violation[];
  /** Keys whose search ran out of steps. */
  undecidedKeys: string[];
}

/** Checks a history; see the module comment for how outcomes are read. */
export function checkLinearizable(history: Iterable<HistoryOp>, options: CheckOptions = {}): CheckResult {
  const maxSteps = options.maxStepsPerKey ?? 10_000_000;
  const byKey = new Map<string, HistoryOp[]>();
  let ops = 0;
  for (const op of history) {
    if (op.result.type === 'failed') continue;
    if (op.result.type === 'unknown' && (op.op === 'head' || op.op === 'scan')) continue;
    let list = byKey.get(op.key);
    if (list === undefined) byKey.set(op.key, (list = []));
    list.push(op);
    ops++;
  }
  const result: CheckResult = { verdict: 'ok', ok: true, ops, keys: byKey.size, steps: 0, violations: [], undecidedKeys: [] };
  for (const [key, list] of byKey) {
    const r = checkKey(list, maxSteps);
    result.steps += r.steps;
    if (r.verdict === 'violation') result.violations.push({ key, linearized: r.linearized, unordered: r.unordered });
    else if (r.verdict === 'unknown') result.undecidedKeys.push(key);
  }
  result.verdict = result.violations.length > 0 ? 'violation' : result.undecidedKeys.length > 0 ? 'unknown' : 'ok';
  result.ok = result.verdict === 'ok';
  return result;
}

/** The model state of one key: the versions present, ascending, each with the op that wrote it. */
interface State {
  versions: readonly { seqno: bigint; data: string; id: number }[];
  /**
   * Zobrist hash of the set of writer ids present (the set fixes the versions: a
   * writer id fixes seqno and data, and commits are in seqno order).
   */
  h1: number;
  h2: number;
}

const EMPTY: State = { versions: [], h1: 0, h2: 0 };

/** Random 32-bit words per op id, for Zobrist hashing of sets of ops. */
class Zobrist {
  readonly a: Int32Array;
  readonly b: Int32Array;
  constructor(n: number) {
    // A fixed-seed xorshift generator keeps runs reproducible.
    let x = 0x9e3779b9 | 0;
    const next = () => {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      return x | 0;
    };
    this.a = Int32Array.from({ length: n }, next);
    this.b = Int32Array.from({ length: n }, next);
  }
}

/** Applies `op` to `state`: the new state, or undefined if the op's observed result is impossible there. */
function step(state: State, op: HistoryOp, id: number, z: Zobrist): State | undefined {
  const head = state.versions[state.versions.length - 1];
  switch (op.op) {
    case 'head': {
      if (op.result.type !== 'ok') return undefined;
      const seen = op.result.value;
      if (seen === undefined) return head === undefined ? state : undefined;
      return head !== undefined && head.seqno === seen.seqno && head.data === seen.data ? state : undefined;
    }
    case 'compareAndSet': {
      // Arguments are checked before anything else (SPEC): a seqno out of range or not
      // above `expected` is refused, so neither outcome is possible. This also keeps
      // heads strictly growing along a branch, which isDead relies on.
      if (op.seqno < 0n || op.seqno > MAX_CONSENSUS_SEQNO || (op.expected !== undefined && op.seqno <= op.expected)) return undefined;
      const matches = head === undefined ? op.expected === undefined : op.expected === head.seqno;
      const outcome = op.result.type === 'ok' ? op.result.value : 'Committed'; // unknown: try the effect only
      if (outcome === 'ExpectationMismatch') return matches ? undefined : state;
      if (!matches) return undefined;
      return {
        versions: [...state.versions, { seqno: op.seqno, data: op.data, id }],
        h1: state.h1 ^ z.a[id]!,
        h2: state.h2 ^ z.b[id]!,
      };
    }
    case 'scan': {
      if (op.result.type !== 'ok' || !(Number.isInteger(op.limit) && op.limit > 0)) return undefined;
      const seen = op.result.value;
      let i = 0;
      while (i < state.versions.length && state.versions[i]!.seqno < op.from) i++;
      const expected = state.versions.slice(i, i + Math.min(op.limit, state.versions.length));
      if (expected.length !== seen.length) return undefined;
      for (let j = 0; j < seen.length; j++) {
        if (expected[j]!.seqno !== seen[j]!.seqno || expected[j]!.data !== seen[j]!.data) return undefined;
      }
      return state;
    }
    case 'truncate': {
      const allowed = head !== undefined && op.seqno <= head.seqno;
      const outcome = op.result.type === 'ok' ? op.result.value : undefined;
      if (outcome === 'FailedPrecondition') return allowed ? undefined : state;
      if (!allowed) return undefined;
      let n = 0;
      while (n < state.versions.length && state.versions[n]!.seqno < op.seqno) n++;
      if (outcome !== undefined && outcome !== n) return undefined;
      if (n === 0) return state;
      let { h1, h2 } = state;
      for (let i = 0; i < n; i++) {
        h1 ^= z.a[state.versions[i]!.id]!;
        h2 ^= z.b[state.versions[i]!.id]!;
      }
      return { versions: state.versions.slice(n), h1, h2 };
    }
  }
}

/** A call or return event in a doubly linked list, in time order. */
interface Entry {
  id: number;
  isCall: boolean;
  /** For a call: its return entry, if the op has a known outcome. */
  match: Entry | undefined;
  prev: Entry | undefined;
  next: Entry | undefined;
}

interface KeyResult {
  verdict: 'ok' | 'violation' | 'unknown';
  steps: number;
  linearized: HistoryOp[];
  unordered: HistoryOp[];
}

function checkKey(ops: HistoryOp[], maxSteps: number): KeyResult {
  const fast = search(ops, maxSteps, false);
  if (fast.verdict !== 'violation') return fast;
  const exact = search(ops, maxSteps, true);
  return { ...exact, steps: fast.steps + exact.steps };
}

function search(ops: HistoryOp[], maxSteps: number, exact: boolean): KeyResult {
  // Events in time order; at equal times calls go first, so touching ops count as concurrent.
  const events: { time: number; isCall: boolean; id: number }[] = [];
  let required = 0;
  ops.forEach((op, id) => {
    events.push({ time: op.start, isCall: true, id });
    if (op.result.type === 'ok') {
      events.push({ time: op.end, isCall: false, id });
      required++;
    }
  });
  events.sort((a, b) => a.time - b.time || (a.isCall === b.isCall ? 0 : a.isCall ? -1 : 1));

  const head: Entry = { id: -1, isCall: false, match: undefined, prev: undefined, next: undefined };
  const calls: Entry[] = new Array<Entry>(ops.length);
  let tail = head;
  for (const e of events) {
    const entry: Entry = { id: e.id, isCall: e.isCall, match: undefined, prev: tail, next: undefined };
    tail.next = entry;
    tail = entry;
    if (e.isCall) calls[e.id] = entry;
    else calls[e.id]!.match = entry;
  }

  const lift = (call: Entry): void => {
    call.prev!.next = call.next;
    if (call.next) call.next.prev = call.prev;
    const ret = call.match;
    if (ret) {
      ret.prev!.next = ret.next;
      if (ret.next) ret.next.prev = ret.prev;
    }
  };
  const unlift = (call: Entry): void => {
    const ret = call.match;
    if (ret) {
      ret.prev!.next = ret;
      if (ret.next) ret.next.prev = ret;
    }
    call.prev!.next = call;
    if (call.next) call.next.prev = call;
  };

  const z = new Zobrist(ops.length);
  const words = new Uint16Array(Math.ceil(ops.length / 16));
  let lin1 = 0;
  let lin2 = 0;
  const memoKey = (next: State): string => {
    if (exact) {
      const present = next.versions.map((v) => String.fromCharCode(v.id & 0xffff, v.id >>> 16)).join('');
      // Not String.fromCharCode(...words): a spread of a huge key's bitset overflows the stack.
      return Buffer.from(words.buffer, words.byteOffset, words.byteLength).toString('latin1') + '|' + present;
    }
    return String.fromCharCode(
      lin1 & 0xffff,
      lin1 >>> 16,
      lin2 & 0xffff,
      lin2 >>> 16,
      next.h1 & 0xffff,
      next.h1 >>> 16,
      next.h2 & 0xffff,
      next.h2 >>> 16,
    );
  };
  const seen = new Set<string>();
  /** Each frame: the call linearized, the state before it, and the calls it found dead. */
  const stack: { call: Entry; state: State; dead: Entry[] }[] = [];
  const rootDead: Entry[] = [];
  let state = EMPTY;
  let done = 0;
  let steps = 0;
  let best: number[] = [];
  let bestStuck: number[] = [];
  let entry = head.next;

  while (done < required) {
    if (++steps > maxSteps) return { verdict: 'unknown', steps, linearized: [], unordered: [] };
    // Cannot happen while a return remains; if it ever did, the search proved nothing.
    if (entry === undefined) return { verdict: 'unknown', steps, linearized: [], unordered: [] };
    if (entry.isCall) {
      const id = entry.id;
      const op = ops[id]!;
      const unknownOutcome = op.result.type !== 'ok';
      if (unknownOutcome && isDead(op, state)) {
        // Heads only grow along a branch: this write can never apply below here.
        const following = entry.next;
        lift(entry);
        (stack[stack.length - 1]?.dead ?? rootDead).push(entry);
        entry = following;
        continue;
      }
      const next = step(state, op, id, z);
      // Applying an unknown write that changes nothing is the same as skipping it.
      if (next !== undefined && !(unknownOutcome && next === state)) {
        words[id >>> 4]! |= 1 << (id & 15);
        lin1 ^= z.a[id]!;
        lin2 ^= z.b[id]!;
        const k = memoKey(next);
        if (!seen.has(k)) {
          seen.add(k);
          stack.push({ call: entry, state, dead: [] });
          state = next;
          if (ops[id]!.result.type === 'ok') done++;
          lift(entry);
          entry = head.next;
          continue;
        }
        words[id >>> 4]! &= ~(1 << (id & 15));
        lin1 ^= z.a[id]!;
        lin2 ^= z.b[id]!;
      }
      entry = entry.next;
    } else {
      // A return whose op is not linearized: everything tried so far is stuck here.
      if (stack.length >= best.length) {
        best = stack.map((s) => s.call.id);
        bestStuck = pendingBefore(head, entry);
      }
      const top = stack.pop();
      if (top === undefined) {
        return {
          verdict: 'violation',
          steps,
          linearized: best.map((i) => ops[i]!),
          unordered: bestStuck.map((i) => ops[i]!),
        };
      }
      const id = top.call.id;
      if (ops[id]!.result.type === 'ok') done--;
      words[id >>> 4]! &= ~(1 << (id & 15));
      lin1 ^= z.a[id]!;
      lin2 ^= z.b[id]!;
      state = top.state;
      for (let i = top.dead.length - 1; i >= 0; i--) unlift(top.dead[i]!);
      unlift(top.call);
      entry = top.call.next;
    }
  }
  return { verdict: 'ok', steps, linearized: [], unordered: [] };
}

/** An unknown compareAndSet whose expectation can no longer hold in `state` or any later state. */
function isDead(op: HistoryOp, state: State): boolean {
  if (op.op !== 'compareAndSet') return false;
  const head = state.versions[state.versions.length - 1];
  return head !== undefined && (op.expected === undefined || op.expected < head.seqno);
}

/** Ids of the calls still in the list up to (and including the op of) return entry `stop`. */
function pendingBefore(head: Entry, stop: Entry): number[] {
  const ids: number[] = [];
  for (let e = head.next; e !== undefined; e = e.next) {
    if (e.isCall) ids.push(e.id);
    if (e === stop) break;
  }
  return ids;
}
