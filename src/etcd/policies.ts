/**
 * The fault-handling policies EtcdConsensus gives the etcd3 client in place of its
 * defaults (etcd3 only ever calls `execute` on them).
 *
 * - Global: run each call once. etcd3's default retries a failed call up to three
 *   times, which could re-send a Txn that already committed (see index.ts).
 * - Per endpoint: a circuit breaker. After 3 consecutive Unavailable or Timeout
 *   failures an endpoint is skipped for 2 s, then tried again (one failure re-opens
 *   it). Unlike etcd3's default breaker (5 s, on any "recoverable" error), it never
 *   refuses a call when every endpoint is down: with nowhere else to go, a slow but
 *   live single member (a few timeouts) must not turn into seconds of refusals.
 */
import type * as etcd3 from 'etcd3';
import { ErrorCode } from '../errors.js';
import { etcdErrors } from './errors.js';

type Policy = NonNullable<NonNullable<etcd3.IOptions['faultHandling']>['global']>;
type Call<T> = (context: { signal: AbortSignal }) => PromiseLike<T> | T;

const NEVER_ABORTED = new AbortController().signal;

/** The global policy: one attempt, no retry. */
export const RUN_ONCE = {
  execute: async <T>(fn: Call<T>): Promise<T> => fn({ signal: NEVER_ABORTED }),
} as unknown as Policy;

/**
 * A call refused because its endpoint is marked down: never sent. A subclass, because
 * etcd3 rebuilds a plain `Error` from its message (castGrpcError), losing the flag.
 */
class EndpointDownError extends Error {
  readonly isBrokenCircuitError = true;
}

/** Consecutive failures that mark an endpoint down. */
const FAILURES_TO_OPEN = 3;
/** How long an endpoint marked down is skipped. */
const OPEN_MS = 2000;

interface Health {
  failures: number;
  openUntil: number;
}

/** The per-endpoint breakers of one client. */
export class EndpointBreakers {
  readonly #health = new Map<string, Health>();

  /** The policy for `host`, for etcd3's `faultHandling.host`. */
  policy(host: string): Policy {
    const health: Health = { failures: 0, openUntil: 0 };
    this.#health.set(host, health);
    const execute = async <T>(fn: Call<T>): Promise<T> => {
      if (this.#isOpen(health) && !this.#allOpen()) {
        // etcd3 then tries the next endpoint; this error surfaces only if none is left.
        throw new EndpointDownError(`etcd endpoint ${host} is marked down after ${health.failures} failures`);
      }
      try {
        const result = await fn({ signal: NEVER_ABORTED });
        health.failures = 0;
        return result;
      } catch (err) {
        const code = etcdErrors(err)?.code;
        if (code === ErrorCode.Unavailable || code === ErrorCode.Timeout) {
          if (++health.failures >= FAILURES_TO_OPEN) health.openUntil = Date.now() + OPEN_MS;
        }
        throw err;
      }
    };
    return { execute } as unknown as Policy;
  }

  #isOpen(health: Health): boolean {
    return health.failures >= FAILURES_TO_OPEN && Date.now() < health.openUntil;
  }

  #allOpen(): boolean {
    for (const health of this.#health.values()) if (!this.#isOpen(health)) return false;
    return true;
  }
}
