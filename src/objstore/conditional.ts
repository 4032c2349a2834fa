/**
 * An object store's client as the conditional store ObjectConsensus runs on, and
 * the check, made when a location is opened, that the store really applies
 * conditional writes: a store that ignores `If-None-Match` would let two writers
 * both commit, so it is refused rather than trusted.
 */
import { randomBytes } from 'node:crypto';
import { Determinate, ErrorCode, Indeterminate } from '../errors.js';
import type { CallContext, ObjectClient } from './client.js';
import type { ConditionalObjects, WriteCondition } from './consensus.js';
import { listPages } from './list.js';

/** `client`'s objects as ObjectConsensus uses them; `what` names the handle in messages. */
export function conditionalObjects(client: ObjectClient, what: string): ConditionalObjects {
  const ctx = (op: string, name: string, signal: AbortSignal | undefined): CallContext => ({ what: `${what} ${op} ${name}`, signal });
  return {
    async get(name, signal) {
      const c = ctx('GET', name, signal);
      const out = await client.get(name, undefined, {}, c);
      if (out === 'missing') return undefined;
      if (typeof out === 'string') throw new Determinate(ErrorCode.DataLoss, `${c.what}: an unconditional read of the whole object answered '${out}'`);
      if (out.etag === undefined) {
        out.discard();
        throw noEtag(c.what);
      }
      return { bytes: await out.read(signal), etag: out.etag };
    },
    async put(name, body, condition: WriteCondition, signal) {
      const c = ctx('PUT', name, signal);
      const conditions = 'ifMatch' in condition ? { ifMatch: condition.ifMatch } : 'ifNoneMatch' in condition ? { ifNoneMatch: '*' } : {};
      const out = await client.put(name, body, conditions, c);
      if (typeof out === 'string') return out;
      // Written, but without an ETag the next conditional write cannot name it.
      if (out.etag === undefined) throw new Indeterminate(ErrorCode.Unknown, `${noEtag(c.what).message}; the write may have applied`);
      return { etag: out.etag };
    },
    async delete(name, signal) {
      await client.delete(name, {}, ctx('DELETE', name, signal));
    },
    async *list(prefix, signal) {
      for await (const item of listPages((p, token, c) => client.listPage(p, token, c), prefix, ctx('LIST', prefix, signal))) yield item.name;
    },
  };
}

function noEtag(what: string): Determinate {
  return new Determinate(ErrorCode.FailedPrecondition, `${what}: the store sent no ETag; Consensus on object storage needs ETags and conditional writes`);
}

/**
 * Proves on a probe object under `probePrefix` that the store refuses a second
 * create-only write and a write under a stale ETag, then deletes the probe. Rejects
 * Determinate FailedPrecondition naming what the store failed to refuse.
 */
export async function checkConditionalWrites(objects: ConditionalObjects, probePrefix: string, what: string, signal?: AbortSignal): Promise<void> {
  const name = `${probePrefix}${randomBytes(16).toString('hex')}`;
  const refuse = (problem: string) =>
    new Determinate(ErrorCode.FailedPrecondition, `${what}: the store ${problem}, so it cannot hold Consensus (it needs S3's or Azure's conditional writes)`);
  try {
    const first = await objects.put(name, Uint8Array.of(1), { ifNoneMatch: '*' }, signal);
    if (typeof first === 'string') throw refuse(`refused to create a new probe object (${first})`);
    const again = await objects.put(name, Uint8Array.of(2), { ifNoneMatch: '*' }, signal);
    if (typeof again !== 'string') throw refuse('ignored If-None-Match: * (a second create-only write of one object succeeded)');
    const stale = await objects.put(name, Uint8Array.of(3), { ifMatch: `"${randomBytes(8).toString('hex')}"` }, signal);
    if (typeof stale !== 'string') throw refuse('ignored If-Match (a write under a wrong ETag succeeded)');
    const current = await objects.put(name, Uint8Array.of(4), { ifMatch: first.etag }, signal);
    if (typeof current === 'string') throw refuse('refused a write under the current ETag');
  } finally {
    // Under the caller's signal too: a store that stopped answering would hold the delete for ever.
    await objects.delete(name, signal).catch(() => {});
  }
}

/** {@link ConditionalObjects} that prove conditional writes once, before their first write. */
export interface CheckedObjects extends ConditionalObjects {
  /** Runs {@link checkConditionalWrites} now, unless it already passed (a failed run is tried again next time). */
  check(signal?: AbortSignal): Promise<void>;
}

/**
 * `objects` whose first `put` waits for {@link checkConditionalWrites}: a handle
 * opened without writing anything (`create: false`) checks the store only when it
 * is first asked to write, and a handle that checked at open (`check()`) never again.
 */
export function checkedBeforeFirstWrite(objects: ConditionalObjects, probePrefix: string, what: string): CheckedObjects {
  let passed: Promise<void> | undefined;
  const check = (signal?: AbortSignal): Promise<void> =>
    (passed ??= checkConditionalWrites(objects, probePrefix, what, signal).catch((err: unknown) => {
      passed = undefined;
      throw err;
    }));
  return {
    get: (name, signal) => objects.get(name, signal),
    delete: (name, signal) => objects.delete(name, signal),
    list: (prefix, signal) => objects.list(prefix, signal),
    async put(name, body, condition, signal) {
      await check(signal);
      return objects.put(name, body, condition, signal);
    },
    check,
  };
}
