/**
 * "Might it have applied?", decided in one place.
 *
 * Every backend knows two things when an operation fails: how far the operation
 * got towards the store (its {@link Exposure}) and what the driver said (an error
 * code, and sometimes a proof that the store refused). {@link externalError} turns
 * those into Determinate or Indeterminate by one rule:
 *
 * | exposure    | result                                                                  |
 * |-------------|-------------------------------------------------------------------------|
 * | `not-sent`  | Determinate, whatever the code (a Timeout becomes Unavailable)          |
 * | `sent`      | Determinate iff the store's answer proves it refused (see below)        |
 * | `committed` | Indeterminate, whatever the code                                        |
 *
 * Once sent, the proof is the table's `refused` flag when it gives one, else the
 * code's default in {@link REFUSED_WHEN_SENT}. A Timeout is never proof: the store
 * may still be working on the request, so a Timeout after sending is Indeterminate
 * even when a table claims otherwise.
 *
 * A backend writes its driver knowledge as an {@link ErrorTable} (a plain function
 * from a driver error to a code and whether the store definitely refused) and gets
 * its ExternalErrors from {@link mapError}.
 */
import { aborted, Determinate, ErrorCode, ExternalError, Indeterminate } from '../errors.js';

/**
 * How far an operation got towards the store, as far as the caller can prove:
 *
 * - `not-sent`: nothing the store could apply left this process, or (for an
 *   embedded store) nothing was made durable: the connection never opened, the
 *   request waited in a queue, the transaction never reached COMMIT.
 * - `sent`: the request reached the store, or may have; only the store's answer
 *   can tell whether it was applied.
 * - `committed`: the store may have applied it whatever the answer says: COMMIT
 *   was issued, the change was made visible, or an earlier attempt of the same
 *   operation may have been applied. Nothing short of a later read can tell.
 */
export type Exposure = 'not-sent' | 'sent' | 'committed';

const RANK: Record<Exposure, number> = { 'not-sent': 0, sent: 1, committed: 2 };

/** The further of two exposures: what an operation made of several steps has reached. */
export function furthest(a: Exposure, b: Exposure): Exposure {
  return RANK[a] >= RANK[b] ? a : b;
}

/**
 * Per code, whether an answer with that code, once the request was sent, proves
 * the store refused it without applying anything. Used when a table gives no
 * `refused` flag of its own.
 *
 * - InvalidArgument: a store checks a request's form before acting on it.
 * - PermissionDenied: authorization is decided before any effect.
 * - NotFound: what the operation acts on (bucket, table, key) is missing.
 * - FailedPrecondition: the condition (If-Match, expected version) was checked
 *   and failed, which is what a conditional write is for.
 * - ResourceExhausted: the request was refused as too large or over a quota.
 * - Aborted: the store rolled the work back (serialization failure, deadlock
 *   victim, throttling). A table whose store can abort after applying (etcd's
 *   gRPC ABORTED) says `refused: false`.
 * - Cancelled: the request was cancelled after it was sent; the store may have
 *   finished it anyway.
 * - Timeout: no answer in time; the store may still apply it.
 * - Unavailable: the connection failed during the request. A failure that proves
 *   nothing was sent (connection refused) is `refused: true` in the table.
 * - DataLoss: the store's data is damaged; it proves nothing.
 * - Unknown: nothing is known.
 */
export const REFUSED_WHEN_SENT: Readonly<Record<ErrorCode, boolean>> = {
  InvalidArgument: true,
  PermissionDenied: true,
  NotFound: true,
  FailedPrecondition: true,
  ResourceExhausted: true,
  Aborted: true,
  Cancelled: false,
  Timeout: false,
  Unavailable: false,
  DataLoss: false,
  Unknown: false,
};

/**
 * The rule of this module: whether an operation that failed with `code` at
 * `exposure` might have taken effect. `refused` is the driver table's proof,
 * when it has one (see {@link ErrorVerdict}).
 */
export function mightHaveApplied(code: ErrorCode, exposure: Exposure, refused?: boolean): boolean {
  if (exposure === 'not-sent') return false;
  if (exposure === 'committed' || code === ErrorCode.Timeout) return true;
  return !(refused ?? REFUSED_WHEN_SENT[code]);
}

/** What {@link externalError} needs besides the code and message. */
export interface ExternalErrorInit {
  exposure: Exposure;
  /** The store's answer proves it refused (or the request provably never left); see {@link ErrorVerdict}. */
  refused?: boolean | undefined;
  /** The driver or system error. */
  cause?: unknown;
}

/**
 * The ExternalError for a failure with `code` at `init.exposure`: Determinate or
 * Indeterminate by {@link mightHaveApplied}. A Timeout that provably applied
 * nothing keeps its message but gets the code Unavailable, because the Timeout
 * code means "might have applied" to every caller.
 */
export function externalError(code: ErrorCode, message: string, init: ExternalErrorInit): ExternalError {
  const options = init.cause === undefined ? undefined : { cause: init.cause };
  if (mightHaveApplied(code, init.exposure, init.refused)) return new Indeterminate(code, message, options);
  return new Determinate(code === ErrorCode.Timeout ? ErrorCode.Unavailable : code, message, options);
}

/**
 * `err` judged again at `exposure`, when the caller knows more than whoever built
 * it: at `not-sent` it becomes Determinate, at `committed` Indeterminate (same
 * code, except as in {@link externalError}), at `sent` it is returned unchanged.
 */
export function atExposure(err: ExternalError, exposure: Exposure): ExternalError {
  if (exposure === 'sent') return err;
  if (exposure === 'committed' && !err.determinate) return err;
  if (exposure === 'not-sent' && err.determinate) return err;
  const note = exposure === 'committed' ? 'an earlier attempt may have been applied' : 'nothing was sent';
  return externalError(err.code, `${err.message} (${note})`, { exposure, cause: err });
}

/**
 * What a backend's table says about one driver error: the code, and whether the
 * store definitely refused it.
 */
export interface ErrorVerdict {
  code: ErrorCode;
  /**
   * True: this failure proves the request was not applied (the store answered
   * with a refusal, or the request never left: connection refused, DNS failure).
   * False: it proves nothing, even if the code usually would. Omitted: the
   * code's default ({@link REFUSED_WHEN_SENT}).
   */
  refused?: boolean;
  /** A few words for the message, e.g. `permission denied`. */
  reason?: string;
}

/**
 * A backend's mapping from driver errors: a verdict for every error it
 * recognises, `undefined` for the rest (so tables can be chained with
 * {@link firstOf}; what no table recognises is Unknown).
 */
export type ErrorTable = (err: unknown) => ErrorVerdict | undefined;

/** A table that asks each of `tables` in turn and answers with the first verdict. */
export function firstOf(...tables: ErrorTable[]): ErrorTable {
  return (err) => {
    for (const table of tables) {
      const verdict = table(err);
      if (verdict !== undefined) return verdict;
    }
    return undefined;
  };
}

/** What {@link mapError} needs besides the error. */
export interface MapErrorContext {
  /** Names the handle and operation, e.g. `S3Blob(s3://b/p) set("k")`. */
  what: string;
  /** How far the failed operation got. */
  exposure: Exposure;
  /** The caller's signal: when it has fired, the failure is the abort. */
  signal?: AbortSignal | undefined;
}

/**
 * Any error thrown while talking to a store, as an ExternalError:
 *
 * - an ExternalError is judged again at the exposure ({@link atExposure});
 * - when the caller's signal fired, the abort ({@link aborted} at the exposure);
 * - otherwise `table`'s verdict (Unknown when it has none) through
 *   {@link externalError}, with the driver error as `cause`.
 */
export function mapError(err: unknown, table: ErrorTable, ctx: MapErrorContext): ExternalError {
  if (err instanceof ExternalError) return atExposure(err, ctx.exposure);
  if (ctx.signal?.aborted) return aborted(ctx.signal, ctx.exposure);
  const verdict = table(err) ?? { code: ErrorCode.Unknown };
  const message = `${ctx.what}: ${verdict.reason ?? 'failed'} (${firstLine(err)})`;
  return externalError(verdict.code, message, { exposure: ctx.exposure, refused: verdict.refused, cause: err });
}

function firstLine(err: unknown): string {
  const text = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
  const nl = text.indexOf('\n');
  return nl < 0 ? text : text.slice(0, nl);
}
