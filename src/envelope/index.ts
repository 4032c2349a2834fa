/**
 * The production envelope: wrappers and loops around any Consensus or Blob.
 * See each module for its contract.
 */
export { withRetry, isTransient, DEFAULT_RETRY, type RetryPolicy } from './retry.js';
export { update, type UpdateOptions } from './update.js';
export { watch, type WatchOptions } from './watch.js';
export { withMetrics, type MetricsOptions } from './metrics.js';
export { withTracing, type TracingOptions } from './tracing.js';
export { CHANGES, Notifier, type ChangesMethod } from './changes.js';
