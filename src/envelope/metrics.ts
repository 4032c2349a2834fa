/**
 * `withMetrics`: Prometheus metrics of every operation, through `prom-client`
 * (an optional peer dependency, loaded when `withMetrics` is first called).
 *
 * - `persist_location_ops_total{kind, op, outcome}`: counter; kind `consensus` or
 *   `blob`, op the method name, outcome `ok`, `mismatch` (compareAndSet answered
 *   ExpectationMismatch), `determinate` or `indeterminate` (a failure that is not
 *   an ExternalError counts as indeterminate).
 * - `persist_location_op_duration_seconds{kind, op}`: histogram of the time from
 *   call to answer (for a listing, from its start to its end).
 * - `persist_location_bytes_total{kind, op, direction}`: counter of value bytes
 *   read (head, scan, get) and written (compareAndSet, set) by operations that
 *   were answered.
 *
 * `labels` adds constant labels to every series (e.g. `{ location: 'orders' }`);
 * the stores sharing a registry must use the same label names.
 */
import type { Counter, Histogram, Registry } from 'prom-client';
import type { Blob } from '../blob.js';
import type { Consensus, VersionedData } from '../consensus.js';
import { ExternalError } from '../errors.js';
import type { SegmentedBytes } from '../segmented-bytes.js';
import { WrappedBlob, WrappedConsensus } from '../wrap.js';
import { optionalPeer } from './optional.js';

/** Options of {@link withMetrics}. */
export interface MetricsOptions {
  /** Where the metrics are registered (default prom-client's global `register`). */
  registry?: Registry;
  /** Constant labels added to every series. */
  labels?: Record<string, string>;
}

type Kind = 'consensus' | 'blob';
type Outcome = 'ok' | 'mismatch' | 'determinate' | 'indeterminate';

interface Metrics {
  labelNames: string;
  ops: Counter<string>;
  duration: Histogram<string>;
  bytes: Counter<string>;
}

const byRegistry = new WeakMap<Registry, Metrics>();

const OPS = 'persist_location_ops_total';
const DURATION = 'persist_location_op_duration_seconds';
const BYTES = 'persist_location_bytes_total';

function metricsOf(registry: Registry | undefined, extra: readonly string[]): { metrics: Metrics; registry: Registry } {
  const prom = optionalPeer<typeof import('prom-client')>('prom-client', 'withMetrics');
  const reg = registry ?? prom.register;
  const labelNames = [...extra].sort().join(',');
  let metrics = byRegistry.get(reg);
  if (metrics === undefined) {
    const existing = (name: string) => reg.getSingleMetric(name);
    metrics = {
      labelNames,
      ops: (existing(OPS) as Counter<string> | undefined) ??
        new prom.Counter({ name: OPS, help: 'Operations on persist-location stores, by outcome', labelNames: ['kind', 'op', 'outcome', ...extra], registers: [reg] }),
      duration: (existing(DURATION) as Histogram<string> | undefined) ??
        new prom.Histogram({
          name: DURATION,
          help: 'Time from call to answer of persist-location operations',
          labelNames: ['kind', 'op', ...extra],
          buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
          registers: [reg],
        }),
      bytes: (existing(BYTES) as Counter<string> | undefined) ??
        new prom.Counter({ name: BYTES, help: 'Value bytes read and written by persist-location operations', labelNames: ['kind', 'op', 'direction', ...extra], registers: [reg] }),
    };
    byRegistry.set(reg, metrics);
  }
  if (metrics.labelNames !== labelNames) {
    throw new TypeError(`withMetrics: this registry's persist-location metrics have the extra labels [${metrics.labelNames}], not [${labelNames}]`);
  }
  return { metrics, registry: reg };
}

/** Records one store's operations, with the label children cached (labels() per call costs a hash). */
class Recorder {
  readonly #metrics: Metrics;
  readonly #kind: Kind;
  readonly #labels: Record<string, string>;
  readonly #children = new Map<string, { inc(n?: number): void } | { observe(v: number): void }>();

  constructor(metrics: Metrics, kind: Kind, labels: Record<string, string>) {
    this.#metrics = metrics;
    this.#kind = kind;
    this.#labels = labels;
  }

  #child<T>(key: string, make: () => T): T {
    let c = this.#children.get(key) as T | undefined;
    if (c === undefined) this.#children.set(key, (c = make()) as never);
    return c;
  }

  done(op: string, outcome: Outcome, startedMs: number): void {
    const seconds = (performance.now() - startedMs) / 1000;
    this.#child(`o ${op} ${outcome}`, () => this.#metrics.ops.labels({ ...this.#labels, kind: this.#kind, op, outcome })).inc();
    this.#child(`d ${op}`, () => this.#metrics.duration.labels({ ...this.#labels, kind: this.#kind, op })).observe(seconds);
  }

  bytes(op: string, direction: 'read' | 'write', n: number): void {
    if (n > 0) this.#child(`b ${op} ${direction}`, () => this.#metrics.bytes.labels({ ...this.#labels, kind: this.#kind, op, direction })).inc(n);
  }

  async time<T>(op: string, run: () => Promise<T>, after?: (value: T) => Outcome | void): Promise<T> {
    const t0 = performance.now();
    let value: T;
    try {
      value = await run();
    } catch (err) {
      this.done(op, outcomeOf(err), t0);
      throw err;
    }
    this.done(op, after?.(value) ?? 'ok', t0);
    return value;
  }

  async *listing<T>(op: string, source: AsyncIterable<T>): AsyncGenerator<T> {
    const t0 = performance.now();
    let outcome: Outcome = 'ok';
    try {
      yield* source;
    } catch (err) {
      outcome = outcomeOf(err);
      throw err;
    } finally {
      this.done(op, outcome, t0);
    }
  }
}

function outcomeOf(err: unknown): Outcome {
  return err instanceof ExternalError && err.determinate ? 'determinate' : 'indeterminate';
}

/** A Consensus or Blob whose operations are counted and timed as the module comment says. */
export function withMetrics(store: Consensus, options?: MetricsOptions): Consensus;
export function withMetrics(store: Blob, options?: MetricsOptions): Blob;
export function withMetrics(store: Consensus | Blob, options: MetricsOptions = {}): Consensus | Blob {
  const labels = { ...options.labels };
  for (const name of Object.keys(labels)) {
    if (['kind', 'op', 'outcome', 'direction'].includes(name)) throw new TypeError(`withMetrics: the label ${name} is the library's own`);
  }
  const { metrics } = metricsOf(options.registry, Object.keys(labels));
  if ('compareAndSet' in store) {
    const rec = new Recorder(metrics, 'consensus', labels);
    return new WrappedConsensus(store, {
      head: (forward, key, opts) =>
        rec.time('head', () => forward(key, opts), (v) => void rec.bytes('head', 'read', v?.data.byteLength ?? 0)),
      scan: (forward, key, from, limit, opts) =>
        rec.time('scan', () => forward(key, from, limit, opts), (vs: VersionedData[]) => void rec.bytes('scan', 'read', vs.reduce((n, v) => n + v.data.byteLength, 0))),
      compareAndSet: (forward, key, expected, next, opts) =>
        rec.time('compareAndSet', () => forward(key, expected, next, opts), (r) => {
          rec.bytes('compareAndSet', 'write', next.data.byteLength);
          return r === 'Committed' ? 'ok' : 'mismatch';
        }),
      truncate: (forward, key, seqno, opts) => rec.time('truncate', () => forward(key, seqno, opts)),
      listKeys: (forward, opts) => rec.listing('listKeys', forward(opts)),
    });
  }
  const rec = new Recorder(metrics, 'blob', labels);
  return new WrappedBlob(store, {
    get: (forward, key, opts) => rec.time('get', () => forward(key, opts), (v: SegmentedBytes | undefined) => void rec.bytes('get', 'read', v?.length ?? 0)),
    set: (forward, key, value, opts) => rec.time('set', () => forward(key, value, opts), () => void rec.bytes('set', 'write', value.byteLength)),
    delete: (forward, key, opts) => rec.time('delete', () => forward(key, opts)),
    restore: (forward, key, opts) => rec.time('restore', () => forward(key, opts)),
    list: (forward, prefix, opts) => rec.listing('list', forward(prefix, opts)),
  });
}
