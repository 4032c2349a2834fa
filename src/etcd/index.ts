/**
 * `persist-location/etcd`: {@link EtcdConsensus}, Consensus on an etcd v3 cluster
 * through the `etcd3` client.
 *
 * URI: `etcd://[user:password@]host:port[,host:port...][/prefix][?timeoutMs=N&maxRequestBytes=N&tls=true&ca=PATH&cert=PATH&key=PATH]`
 * - every endpoint of the cluster may be listed; the client spreads requests over
 *   them and skips one that keeps failing (a per-endpoint breaker, etcd/policies.ts);
 * - `/prefix` (percent-decoded, default `/`): all data lives under this etcd key
 *   prefix, always ending with `/`, so `/app` and `/app2` never overlap (nor do
 *   `/app` and `/app/sub`: see etcd/layout.ts);
 * - `timeoutMs` (default 10000): the deadline of one operation (of each page, for
 *   listKeys), retries and fetching an auth token included;
 * - `maxRequestBytes` (default 1572864, etcd's default `--max-request-bytes`): set it
 *   to the cluster's value. A compareAndSet whose request would exceed it rejects
 *   with Determinate `ResourceExhausted` naming the limit, before anything is sent
 *   (values are not chunked: one version is one etcd key);
 * - `tls=true`: speak TLS to every endpoint, verifying its certificate and host name
 *   against Node's trusted CAs; `ca=PATH` trusts the PEM bundle at PATH instead;
 *   `cert=PATH&key=PATH` present a client certificate (for `--client-cert-auth`).
 *   Any of `ca`, `cert`, `key` implies `tls=true`; `cert` needs `key`. A user name
 *   and password work over TLS as without it.
 *
 * Opening (`openConsensus`, {@link EtcdConsensus.open}) reads one page of the
 * location within `timeoutMs`, so an unreachable cluster, a refused login or a
 * failed TLS handshake fails the open, not the first operation; with no member
 * listening it fails after a few attempts per endpoint (Determinate Unavailable
 * naming the endpoints), not after `timeoutMs`. A key prefix always exists: opening with `create: false` is
 * the same open. A failed handshake
 * (a server certificate the client does not trust or that names another host, a
 * client certificate missing or refused) is Determinate PermissionDenied naming the
 * problem and the files (kit/tls.ts); so is a refused password. Neither message
 * holds a password or a key's contents.
 *
 * Layout (see etcd/layout.ts): `P\0h/<hex key>` holds the head's seqno (16 hex
 * digits); `P\0v/<hex key>/<16 hex digits>` holds each version's data.
 *
 * - compareAndSet: one Txn. It compares the head record (its value equals the
 *   expected seqno's text, or its create_revision is 0 when nothing is expected) and
 *   puts the version record and the new head record together.
 * - head: the head record, then that version's record. A version's bytes never
 *   change while it exists, so the pair is the head as of the first read. A handle
 *   remembers the last head it saw per key and first reads the versions from that
 *   one on (limit 1): when it is the only one it is the head, in one round trip.
 * - scan: ranges over the version records with a limit, pages pinned to the first
 *   page's revision so a long scan is still one snapshot.
 * - truncate: one Txn that compares the head record's value is >= the truncation
 *   point and range-deletes the versions below it; the deleted count is etcd's. The
 *   head only grows, so this guard is exactly "the head is not deleted".
 * - listKeys: pages of keys-only ranges over the head records, 10,000 keys each:
 *   etcd counts what is left of the range for every page, so a listing costs the
 *   square of the keys over the page size (100k keys: 0.85 s in pages of 1,000, 0.35 s
 *   in pages of 10,000), and a page of the longest keys is still only 10 MiB.
 * - watch (the envelope's changes method): one etcd watch per watched key, on its
 *   head record, shared by that key's iterations (see etcd/changes.ts).
 * Every read is linearizable (etcd's default); never serializable.
 *
 * Retries. etcd3 by default retries a failed call up to three times on another host.
 * That would be wrong for compareAndSet: the retried Txn could not apply twice (its
 * comparison fails once the head moved past `expected`), but a retry of a Txn that
 * did commit would report ExpectationMismatch, a false "nothing changed". So this
 * backend turns etcd3's retries off (etcd/policies.ts) and retries itself with the
 * kit's `retry` (kit/backoff.ts): reads on any Unavailable error, writes only when
 * the error proves nothing was sent (Determinate Unavailable: no connection,
 * endpoint skipped, refused stream), each retry on an endpoint picked afresh. Everything stays within `timeoutMs`. The one
 * re-send etcd3 still makes on its own is after etcd refused a call's expired auth
 * token ("invalid auth token"), which etcd checks before applying anything.
 *
 * Errors: see etcd/errors.ts for the table (gRPC status -> Determinate/Indeterminate).
 * Aborting through `opts.signal` after a request was sent is Indeterminate; the
 * request is left to finish or hit its deadline in the background.
 */
import * as etcd3 from 'etcd3';
import { ConsensusBase, type ListedKeys } from '../base.js';
import { copyBytes } from '../bytes.js';
import { CaSResult, type Consensus, type OpOptions, type VersionedData } from '../consensus.js';
import { Determinate, ErrorCode, ExternalError, invalidArgument } from '../errors.js';
import { retry, type BackoffPolicy } from '../kit/backoff.js';
import { withDeadline } from '../kit/deadline.js';
import { readTlsFiles, type TlsPaths } from '../kit/tls.js';
import { CHANGES } from '../envelope/changes.js';
import { EtcdChanges } from './changes.js';
import { GrpcCode, grpcCodeIn, mapEtcdError, type EtcdTlsContext } from './errors.js';
import { Layout, parseSeqno, seqnoText } from './layout.js';
import { EndpointBreakers, RUN_ONCE } from './policies.js';
import { SeqNo } from '../seqno.js';
import { boolParam, checkParams, intParam, parseLocationUri, type LocationUri } from '../uri.js';

export { etcdErrors, mapEtcdError, type EtcdTlsContext } from './errors.js';

/** etcd's default `--max-request-bytes`: 1.5 MiB. */
export const DEFAULT_MAX_REQUEST_BYTES = 1.5 * 1024 * 1024;
/** Default deadline of one operation. */
export const DEFAULT_TIMEOUT_MS = 10_000;
/**
 * Bytes a compareAndSet request takes besides the value, its keys and seqnos:
 * protobuf framing of the Txn and of etcd's internal raft request (well under 200
 * bytes). Generous on purpose: the check must never let through what the server
 * refuses (a test probes the boundary with the longest key).
 */
const REQUEST_OVERHEAD_BYTES = 512;
/** Versions per scan page (each version carries its value). */
const PAGE = 1000;
/** Keys per listKeys page (keys only, at most 1 KiB each). */
const LIST_PAGE = 10_000;
/** Last-seen heads remembered per handle. */
const HEAD_CACHE_ENTRIES = 10_000;
/** Time left for the last retry of a request, at least (a quarter of the operation's, if less; see #call). */
const LAST_ATTEMPT_MS = 100;
/** Retries of one request: 25 ms doubling to 1 s, until the operation's deadline. */
const RETRY: BackoffPolicy = { attempts: Infinity, minDelayMs: 25, maxDelayMs: 1000, multiplier: 2, jitter: 0.25 };

/** Options of {@link EtcdConsensus}. */
export interface EtcdConsensusOptions {
  /** `host:port` of one or more members of the cluster (`http://` or `https://` in front may say which). */
  endpoints: string[];
  /** etcd key prefix of the location (default `/`); a trailing `/` is added if missing. */
  prefix?: string;
  /** Deadline of one operation (each page of listKeys), retries included, in ms (default 10000). */
  timeoutMs?: number;
  /** The cluster's `--max-request-bytes` (default 1.5 MiB). */
  maxRequestBytes?: number;
  /** etcd user and password, when the cluster has auth enabled. */
  auth?: { username: string; password: string };
  /**
   * TLS to every endpoint (also implied by `https://` endpoints): `{}` verifies the
   * servers against Node's trusted CAs; `ca` names a PEM bundle to trust instead,
   * `cert` and `key` a client certificate and its key. The files are read when the
   * handle is created.
   */
  tls?: TlsPaths;
}

type CallOptions = { deadline: number };
/** Consensus on etcd v3 (see the module comment for layout, errors and retries). */
export class EtcdConsensus extends ConsensusBase {
  readonly description: string;
  readonly #client: etcd3.Etcd3;
  readonly #layout: Layout;
  readonly #timeoutMs: number;
  readonly #maxRequestBytes: number;
  /** Last head seqno seen per key: a guess that lets head() read in one round trip. */
  readonly #seen = new Map<string, bigint>();
  /** Where and with which files TLS is spoken, when it is. */
  readonly #tls: EtcdTlsContext | undefined;
  /** This handle's etcd watches, for {@link CHANGES}. */
  readonly #changes: EtcdChanges;

  /**
   * Connects and reads one page of the location within `timeoutMs`, so that an
   * unreachable cluster, refused credentials or a failed TLS handshake reject here.
   * @param display as for the constructor
   */
  static async open(options: EtcdConsensusOptions, display?: string): Promise<EtcdConsensus> {
    const handle = new EtcdConsensus(options, display);
    try {
      await handle.#probe(options.endpoints.length);
    } catch (err) {
      await handle.close();
      throw err;
    }
    return handle;
  }

  /**
   * Creates the client; nothing is sent until the first operation, so a cluster that
   * is down shows as operations failing Determinate Unavailable, not as `new` throwing
   * ({@link open} checks first). TLS files are read here.
   * @param display how the location appears in messages (`openConsensus` passes the
   *   URI with its credentials redacted)
   */
  constructor(options: EtcdConsensusOptions, display?: string) {
    super();
    const { timeoutMs, maxRequestBytes } = options;
    if (!Array.isArray(options.endpoints) || options.endpoints.length === 0) throw invalidArgument('EtcdConsensus needs at least one endpoint');
    for (const [name, value] of Object.entries({ timeoutMs, maxRequestBytes })) {
      if (value !== undefined && !(Number.isSafeInteger(value) && value > 0)) {
        throw invalidArgument(`EtcdConsensus option ${name} must be a positive integer, got ${String(value)}`);
      }
    }
    this.#layout = new Layout(options.prefix ?? '/');
    this.#timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.#maxRequestBytes = options.maxRequestBytes ?? DEFAULT_MAX_REQUEST_BYTES;
    const { endpoints } = splitEndpoints(options.endpoints);
    this.description = `EtcdConsensus(${display ?? `etcd://${endpoints.join(',')}${this.#layout.prefix}`})`;
    const transport = etcdTransport(options, this.description);
    this.#tls = transport.tls === undefined ? undefined : { backend: this.description, target: endpoints.join(','), paths: transport.tls };
    const breakers = new EndpointBreakers();
    this.#client = new etcd3.Etcd3({
      hosts: transport.hosts,
      ...(transport.credentials && { credentials: transport.credentials }),
      // etcd3 fetches a token before the first call (and again when it expires) with no
      // deadline of its own; without one, a hung member would stall every operation.
      ...(options.auth === undefined
        ? {}
        : { auth: { ...options.auth, callOptions: () => ({ deadline: Date.now() + this.#timeoutMs }) } }),
      faultHandling: { global: RUN_ONCE, host: (host) => breakers.policy(host) },
      grpcOptions: {
        // A scan may return many large versions; the server sends up to 2 GiB.
        'grpc.max_receive_message_length': -1,
        // Notice a silently dead connection (partition) rather than wait for the deadline.
        'grpc.keepalive_time_ms': 30_000,
        'grpc.keepalive_timeout_ms': 10_000,
      },
    });
    this.#changes = new EtcdChanges(this.#client, this.#layout);
  }

  /** Ticks when `key` may have a new head, from any client: etcd's watch on its head record (etcd/changes.ts). */
  [CHANGES](key: string, signal: AbortSignal): AsyncIterable<void> {
    return this.#changes.changes(key, signal);
  }

  /**
   * One keys-only read of at most one head record: reachability, credentials and
   * TLS. Unlike an operation it does not retry until `timeoutMs` when no endpoint
   * answers: etcd3 picks an endpoint at random, and a breaker skips one after 3
   * failures (etcd/policies.ts), so 3 attempts per endpoint, and one more, reach a
   * live member if there is one. A cluster with nothing listening fails the open
   * after those few attempts (about half a second for one endpoint); a member
   * that accepts the connection but never answers still takes `timeoutMs`.
   */
  async #probe(endpoints: number): Promise<void> {
    const [start, end] = this.#layout.headRange();
    await this.#call(
      'open',
      'read',
      undefined,
      Date.now() + this.#timeoutMs,
      (o) => this.#client.kv.range({ key: start, range_end: end, limit: 1, keys_only: true }, o),
      3 * endpoints + 1,
    );
  }

  protected async *_listKeys(opts?: OpOptions): AsyncIterable<ListedKeys> {
    const [start, end] = this.#layout.headRange();
    let from = start;
    for (;;) {
      const deadline = Date.now() + this.#timeoutMs;
      const page = await this.#call('listKeys', 'read', opts, deadline, (o) =>
        this.#client.kv.range({ key: from, range_end: end, limit: LIST_PAGE, keys_only: true }, o),
      );
      // One page at a time: ConsensusBase hands it out key by key, and stops at an abort.
      yield page.kvs.map((kv) => this.#layout.keyOfHead(kv.key));
      const last = page.kvs[page.kvs.length - 1];
      if (!page.more || last === undefined) return;
      from = Buffer.concat([last.key, Buffer.alloc(1)]);
    }
  }

  protected async _head(key: string, opts?: OpOptions): Promise<VersionedData | undefined> {
    const deadline = Date.now() + this.#timeoutMs;
    const headKey = this.#layout.headKey(key);
    const guess = this.#seen.get(key);
    if (guess !== undefined) {
      // The versions from the remembered head on: if it is the only one, it is still the head.
      const [start, end] = this.#layout.versionsFrom(key, guess);
      const res = await this.#call('head', 'read', opts, deadline, (o) => this.#client.kv.range({ key: start, range_end: end, limit: 1 }, o));
      const version = res.kvs[0];
      if (version !== undefined && !res.more && version.key.equals(start)) return this.#version(key, guess, version.value);
    }
    for (;;) {
      const res = await this.#call('head', 'read', opts, deadline, (o) => this.#client.kv.range({ key: headKey }, o));
      const record = res.kvs[0];
      if (record === undefined) return undefined;
      const seqno = parseSeqno(record.value.toString('latin1'), this.description);
      const versionKey = this.#layout.versionKey(key, seqno);
      const found = await this.#call('head', 'read', opts, deadline, (o) => this.#client.kv.range({ key: versionKey }, o));
      const version = found.kvs[0];
      if (version !== undefined) return this.#version(key, seqno, version.value);
      // The head moved on and this version was truncated in between: read again.
    }
  }

  protected async _compareAndSet(key: string, expected: SeqNo | undefined, next: VersionedData, opts?: OpOptions): Promise<CaSResult> {
    const headKey = this.#layout.headKey(key);
    const versionKey = this.#layout.versionKey(key, next.seqno.value);
    const nextText = Buffer.from(seqnoText(next.seqno.value), 'latin1');
    // The head key appears three times: compared, put, and read on failure.
    const bytes = next.data.byteLength + versionKey.length + 3 * headKey.length + 2 * nextText.length + REQUEST_OVERHEAD_BYTES;
    if (bytes > this.#maxRequestBytes) {
      throw new Determinate(
        ErrorCode.ResourceExhausted,
        `${this.description}: cannot write ${next.data.byteLength} bytes to ${key}: the request would be about ${bytes} bytes, ` +
          `more than the etcd request limit of ${this.#maxRequestBytes} bytes (maxRequestBytes, etcd --max-request-bytes); nothing was sent`,
      );
    }
    const compare: etcd3.ICompare =
      expected === undefined
        ? { key: headKey, target: etcd3.CompareTarget.Create, result: etcd3.CompareResult.Equal, create_revision: 0 }
        : {
            key: headKey,
            target: etcd3.CompareTarget.Value,
            result: etcd3.CompareResult.Equal,
            value: Buffer.from(seqnoText(expected.value), 'latin1'),
          };
    // A copy: the request is serialized later, and the caller may reuse its array.
    const data = Buffer.from(next.data);
    const res = await this.#call('compareAndSet', 'write', opts, Date.now() + this.#timeoutMs, (o) =>
      this.#client.kv.txn(
        {
          compare: [compare],
          success: [{ request_put: { key: versionKey, value: data } }, { request_put: { key: headKey, value: nextText } }],
          failure: [{ request_range: { key: headKey } }],
        },
        o,
      ),
    );
    if (res.succeeded) {
      this.#remember(key, next.seqno.value);
      this.#changes.committed(key);
      return CaSResult.Committed;
    }
    const record = res.responses[0]?.response_range.kvs[0];
    if (record !== undefined) this.#remember(key, parseSeqno(record.value.toString('latin1'), this.description));
    return CaSResult.ExpectationMismatch;
  }

  protected async _scan(key: string, from: SeqNo, limit: number, opts?: OpOptions): Promise<VersionedData[]> {
    const deadline = Date.now() + this.#timeoutMs;
    const [, end] = this.#layout.versionsFrom(key, from.value);
    for (;;) {
      const out: VersionedData[] = [];
      let start = this.#layout.versionKey(key, from.value);
      let revision: string | undefined;
      try {
        for (;;) {
          const want = Math.min(PAGE, limit - out.length);
          const page = await this.#call('scan', 'read', opts, deadline, (o) =>
            this.#client.kv.range({ key: start, range_end: end, limit: want, ...(revision === undefined ? {} : { revision }) }, o),
          );
          revision ??= page.header.revision;
          for (const kv of page.kvs) out.push(this.#version(key, this.#layout.seqnoOfVersion(kv.key, this.description), kv.value));
          const last = page.kvs[page.kvs.length - 1];
          if (!page.more || last === undefined || out.length >= limit) return out;
          start = Buffer.concat([last.key, Buffer.alloc(1)]);
        }
      } catch (err) {
        // A later page's pinned revision was compacted away: start the snapshot over.
        if (revision === undefined || grpcCodeIn(err) !== GrpcCode.OUT_OF_RANGE) throw err;
      }
    }
  }

  protected async _truncate(key: string, seqno: SeqNo, opts?: OpOptions): Promise<number> {
    const headKey = this.#layout.headKey(key);
    // head >= seqno; for seqno 0 that is "the key has data", and nothing is below it.
    const guard: etcd3.ICompare =
      seqno.value === 0n
        ? { key: headKey, target: etcd3.CompareTarget.Create, result: etcd3.CompareResult.Greater, create_revision: 0 }
        : {
            key: headKey,
            target: etcd3.CompareTarget.Value,
            result: etcd3.CompareResult.Greater,
            value: Buffer.from(seqnoText(seqno.value - 1n), 'latin1'),
          };
    const [start, end] = this.#layout.versionsBelow(key, seqno.value);
    const res = await this.#call('truncate', 'write', opts, Date.now() + this.#timeoutMs, (o) =>
      this.#client.kv.txn(
        {
          compare: [guard],
          success: seqno.value === 0n ? [] : [{ request_delete_range: { key: start, range_end: end } }],
          failure: [{ request_range: { key: headKey } }],
        },
        o,
      ),
    );
    if (res.succeeded) return seqno.value === 0n ? 0 : Number(res.responses[0]?.response_delete_range.deleted ?? 0);
    const record = res.responses[0]?.response_range.kvs[0];
    if (record === undefined) {
      throw new Determinate(ErrorCode.FailedPrecondition, `${this.description}: cannot truncate ${key}: it has no data`);
    }
    const head = parseSeqno(record.value.toString('latin1'), this.description);
    throw new Determinate(
      ErrorCode.FailedPrecondition,
      `${this.description}: cannot truncate ${key} to ${seqno}: it is past the head v${head}`,
    );
  }

  protected async _close(): Promise<void> {
    this.#changes.close();
    this.#client.close();
  }

  /**
   * One etcd request with retries until `deadline`: reads retry on any Unavailable
   * error, writes only on one that proves nothing was sent. Errors go through
   * {@link mapEtcdError}; an abort rejects at once (Indeterminate once sent).
   */
  #call<T>(
    op: string,
    kind: 'read' | 'write',
    opts: OpOptions | undefined,
    deadline: number,
    request: (options: CallOptions) => Promise<T>,
    attempts = RETRY.attempts,
  ): Promise<T> {
    const signal = opts?.signal;
    const what = `${this.description} ${op}`;
    return retry(
      // gRPC enforces the deadline of the request itself; this one also bounds whatever
      // etcd3 does before sending it (fetching an auth token), so no operation outlives it.
      () =>
        withDeadline(signal, deadline - Date.now(), () => request({ deadline }).catch((err: unknown) => Promise.reject(mapEtcdError(err, { what, exposure: 'sent', signal }, this.#tls))), {
          what,
        }),
      {
        policy: { ...RETRY, attempts },
        signal,
        // The last retry starts early enough to get an answer: an attempt begun with
        // a few ms left would only report the deadline, not why the earlier ones failed.
        budgetMs: ((left) => left - Math.min(LAST_ATTEMPT_MS, left / 4))(deadline - Date.now()),
        // Once closed, every retry would only fail again with "client closed" until the deadline.
        retryable: (err) =>
          !this.closed && err instanceof ExternalError && err.code === ErrorCode.Unavailable && (kind === 'read' || err.determinate),
      },
    );
  }

  #version(key: string, seqno: bigint, value: Buffer): VersionedData {
    this.#remember(key, seqno, false);
    return { seqno: new SeqNo(seqno), data: copyBytes(value) };
  }

  /** Notes a head seen for `key` (`isHead` false: maybe older, keep a newer guess). */
  #remember(key: string, seqno: bigint, isHead = true): void {
    const known = this.#seen.get(key);
    if (!isHead && known !== undefined && known >= seqno) return;
    if (known === undefined && this.#seen.size >= HEAD_CACHE_ENTRIES) this.#seen.clear();
    this.#seen.set(key, seqno);
  }
}

/** The options an `etcd://` URI stands for (see the module comment). */
export function etcdOptionsFromUri(uri: string | LocationUri): EtcdConsensusOptions {
  const loc = typeof uri === 'string' ? parseLocationUri(uri) : uri;
  if (loc.scheme !== 'etcd') throw invalidArgument(`not an etcd: URI: ${loc.display}`);
  const params = checkParams(loc, ['timeoutMs', 'maxRequestBytes', 'tls', 'ca', 'cert', 'key']);
  if (loc.authority === undefined || loc.authority === '') {
    throw invalidArgument(`expected etcd://host:port[,host:port...][/prefix], got ${loc.display}`);
  }
  let hosts = loc.authority;
  let auth: EtcdConsensusOptions['auth'];
  const at = hosts.lastIndexOf('@');
  if (at >= 0) {
    const userinfo = hosts.slice(0, at);
    hosts = hosts.slice(at + 1);
    const colon = userinfo.indexOf(':');
    const decode = (s: string) => {
      try {
        return decodeURIComponent(s);
      } catch {
        throw invalidArgument(`malformed percent-encoding in the credentials of ${loc.display}`);
      }
    };
    auth = { username: decode(colon < 0 ? userinfo : userinfo.slice(0, colon)), password: decode(colon < 0 ? '' : userinfo.slice(colon + 1)) };
  }
  const endpoints = hosts.split(',').map((host) => {
    if (!/^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)(:[0-9]{1,5})?$/.test(host)) {
      throw invalidArgument(`bad etcd endpoint '${host}' in ${loc.display}: expected host:port`);
    }
    return /:[0-9]{1,5}$/.test(host) ? host : `${host}:2379`;
  });
  if (loc.path.includes('\u0000')) throw invalidArgument(`the prefix of ${loc.display} must not contain %00`);
  const options: EtcdConsensusOptions = { endpoints, prefix: loc.path === '' ? '/' : loc.path };
  const timeoutMs = intParam(loc, params.timeoutMs, 'timeoutMs');
  const maxRequestBytes = intParam(loc, params.maxRequestBytes, 'maxRequestBytes');
  if (timeoutMs !== undefined) options.timeoutMs = timeoutMs;
  if (maxRequestBytes !== undefined) options.maxRequestBytes = maxRequestBytes;
  if (auth !== undefined) options.auth = auth;
  const tls = boolParam(loc, params.tls, 'tls');
  const files: TlsPaths = { ...(params.ca !== undefined && { ca: params.ca }), ...(params.cert !== undefined && { cert: params.cert }), ...(params.key !== undefined && { key: params.key }) };
  const named = Object.keys(files);
  if (tls === false && named.length > 0) throw invalidArgument(`${loc.display}: ${named.map((n) => `${n}=`).join(', ')} need TLS, but tls=false`);
  for (const [name, value] of Object.entries(files)) if (value === '') throw invalidArgument(`${loc.display}: ${name}= needs a file path`);
  if ((files.cert === undefined) !== (files.key === undefined)) {
    throw invalidArgument(`${loc.display}: a client certificate needs both cert= and key= (got only ${files.cert === undefined ? 'key=' : 'cert='})`);
  }
  if (tls === true || named.length > 0) options.tls = files;
  return options;
}

/** `openConsensus('etcd://...')`: {@link EtcdConsensus.open}. */
export async function consensusFromUri(loc: LocationUri): Promise<Consensus> {
  return EtcdConsensus.open(etcdOptionsFromUri(loc), loc.display);
}

/**
 * How an etcd3 client reaches the endpoints of `options`: its `hosts` (with
 * `https://` when TLS is spoken) and `credentials` (the CA and client certificate
 * read from their files), and the TLS files used, if any. Every client of a
 * location (a handle, or a tool removing its keys) should connect this way.
 * @param what names the location in errors (an unreadable file, a contradiction)
 */
export function etcdTransport(
  options: Pick<EtcdConsensusOptions, 'endpoints' | 'tls'>,
  what = 'EtcdConsensus',
): { hosts: string[]; credentials?: NonNullable<etcd3.IOptions['credentials']>; tls: TlsPaths | undefined } {
  const { endpoints, secure } = splitEndpoints(options.endpoints);
  const tls = options.tls ?? (secure ? {} : undefined);
  if (tls !== undefined && secure === false) throw invalidArgument(`${what}: TLS is asked for but an endpoint says http://`);
  const hosts = endpoints.map((host) => `${tls === undefined ? 'http' : 'https'}://${host}`);
  const material = tls === undefined ? undefined : readTlsFiles(tls, what);
  // Without a CA or a client certificate, etcd3 uses Node's trusted roots for https hosts.
  if (material?.ca === undefined && material?.cert === undefined) return { hosts, tls };
  // grpc-js takes a missing root certificate as "Node's trusted roots".
  const credentials = { rootCertificate: material.ca as Buffer, ...(material.cert && { certChain: material.cert, privateKey: material.key }) };
  return { hosts, credentials, tls };
}

/**
 * Endpoints without their `http://`/`https://`, and what those said: true for
 * https, false for http, undefined if none said either (saying both is refused).
 */
function splitEndpoints(given: readonly string[]): { endpoints: string[]; secure: boolean | undefined } {
  const schemes = new Set<string>();
  const endpoints = given.map((endpoint) => {
    const m = /^(https?):\/\//i.exec(String(endpoint));
    if (m === null) return String(endpoint);
    schemes.add(m[1]!.toLowerCase());
    return String(endpoint).slice(m[0].length);
  });
  if (schemes.size > 1) throw invalidArgument(`EtcdConsensus endpoints must all speak TLS or all not, got ${given.join(', ')}`);
  return { endpoints, secure: schemes.size === 0 ? undefined : schemes.has('https') };
}
export { etcdBackend } from './backend.js';
