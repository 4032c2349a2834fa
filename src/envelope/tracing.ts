/**
 * `withTracing`: one OpenTelemetry span per operation, through
 * `@opentelemetry/api` (an optional peer dependency, loaded only when no tracer
 * is given).
 *
 * Spans are named `consensus.<op>` / `blob.<op>` (a listing's span lasts until the
 * listing ends), of kind CLIENT, made active while the operation runs (so a
 * driver's own spans nest under it), with the attribute `persist_location.key`
 * (`persist_location.prefix` for `blob.list`). A failure records the exception,
 * sets the error status and the attribute `persist_location.outcome` to
 * `determinate` or `indeterminate`; an ExpectationMismatch sets it to `mismatch`.
 */
import type { Attributes, Span, Tracer } from '@opentelemetry/api';
import type { Blob } from '../blob.js';
import type { Consensus } from '../consensus.js';
import { ExternalError } from '../errors.js';
import { WrappedBlob, WrappedConsensus } from '../wrap.js';
import { optionalPeer } from './optional.js';

/** Options of {@link withTracing}. */
export interface TracingOptions {
  /** The tracer (default `trace.getTracer('persist-location')` of `@opentelemetry/api`). */
  tracer?: Tracer;
}

/** The API's SpanKind.CLIENT and SpanStatusCode.ERROR, stable numbers of its 1.x contract. */
const CLIENT = 2;
const ERROR = 2;

function failed(span: Span, err: unknown): void {
  const outcome = err instanceof ExternalError && err.determinate ? 'determinate' : 'indeterminate';
  span.setAttribute('persist_location.outcome', outcome);
  if (err instanceof Error) span.recordException(err);
  span.setStatus({ code: ERROR, message: err instanceof Error ? err.message : String(err) });
}

class Spans {
  constructor(
    readonly tracer: Tracer,
    readonly kind: 'consensus' | 'blob',
  ) {}

  run<T>(op: string, attributes: Attributes, work: () => Promise<T>, after?: (span: Span, value: T) => void): Promise<T> {
    return this.tracer.startActiveSpan(`${this.kind}.${op}`, { kind: CLIENT, attributes }, async (span) => {
      try {
        const value = await work();
        after?.(span, value);
        return value;
      } catch (err) {
        failed(span, err);
        throw err;
      } finally {
        span.end();
      }
    });
  }

  async *listing<T>(op: string, attributes: Attributes, source: () => AsyncIterable<T>): AsyncGenerator<T> {
    const span = this.tracer.startSpan(`${this.kind}.${op}`, { kind: CLIENT, attributes });
    try {
      yield* source();
    } catch (err) {
      failed(span, err);
      throw err;
    } finally {
      span.end();
    }
  }
}

/** A Consensus or Blob with a span per operation, as the module comment says. */
export function withTracing(store: Consensus, options?: TracingOptions): Consensus;
export function withTracing(store: Blob, options?: TracingOptions): Blob;
export function withTracing(store: Consensus | Blob, options: TracingOptions = {}): Consensus | Blob {
  const tracer = options.tracer ?? optionalPeer<typeof import('@opentelemetry/api')>('@opentelemetry/api', 'withTracing').trace.getTracer('persist-location');
  const key = (k: string): Attributes => ({ 'persist_location.key': k });
  if ('compareAndSet' in store) {
    const spans = new Spans(tracer, 'consensus');
    return new WrappedConsensus(store, {
      head: (forward, k, opts) => spans.run('head', key(k), () => forward(k, opts)),
      scan: (forward, k, from, limit, opts) => spans.run('scan', key(k), () => forward(k, from, limit, opts)),
      truncate: (forward, k, seqno, opts) => spans.run('truncate', key(k), () => forward(k, seqno, opts)),
      compareAndSet: (forward, k, expected, next, opts) =>
        spans.run('compareAndSet', key(k), () => forward(k, expected, next, opts), (span, r) => {
          if (r !== 'Committed') span.setAttribute('persist_location.outcome', 'mismatch');
        }),
      listKeys: (forward, opts) => spans.listing('listKeys', {}, () => forward(opts)),
    });
  }
  const spans = new Spans(tracer, 'blob');
  return new WrappedBlob(store as Blob, {
    get: (forward, k, opts) => spans.run('get', key(k), () => forward(k, opts)),
    set: (forward, k, value, opts) => spans.run('set', key(k), () => forward(k, value, opts)),
    delete: (forward, k, opts) => spans.run('delete', key(k), () => forward(k, opts)),
    restore: (forward, k, opts) => spans.run('restore', key(k), () => forward(k, opts)),
    list: (forward, prefix, opts) => spans.listing('list', { 'persist_location.prefix': prefix ?? '' }, () => forward(prefix, opts)),
  });
}
