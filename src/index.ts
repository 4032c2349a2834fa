/**
 * persist-location: durable storage primitives for distributed programs.
 *
 * - {@link Consensus}: per key, a linearizable, versioned log of byte states,
 *   advanced by compare-and-set.
 * - {@link Blob}: a durable, atomic key → bytes store.
 */
export { SeqNo } from './seqno.js';
export {
  ExternalError,
  Determinate,
  Indeterminate,
  ErrorCode,
  type ExternalErrorOptions,
} from './errors.js';
export {
  externalError,
  mapError,
  firstOf,
  type Exposure,
  type ErrorTable,
  type ErrorVerdict,
  type ExternalErrorInit,
  type MapErrorContext,
} from './kit/exposure.js';
export {
  wrapConsensus,
  wrapBlob,
  WrappedConsensus,
  WrappedBlob,
  stepwise,
  type ConsensusInterceptor,
  type BlobInterceptor,
  type ConsensusOp,
  type BlobOp,
  type Around,
} from './wrap.js';
export {
  CaSResult,
  SCAN_ALL,
  CONSENSUS_HEAD_LIVENESS_KEY,
  type Consensus,
  type VersionedData,
  type OpOptions,
} from './consensus.js';
export { BLOB_GET_LIVENESS_KEY, type Blob, type BlobMetadata } from './blob.js';
export { SegmentedBytes } from './segmented-bytes.js';
export { MemConsensus, type MemConsensusOptions, MemBlob, type MemBlobOptions } from './mem/index.js';
export { openBlob, openConsensus, type OpenOptions } from './location.js';
export {
  withRetry,
  isTransient,
  DEFAULT_RETRY,
  update,
  watch,
  withMetrics,
  withTracing,
  CHANGES,
  Notifier,
  type RetryPolicy,
  type UpdateOptions,
  type WatchOptions,
  type MetricsOptions,
  type TracingOptions,
  type ChangesMethod,
} from './envelope/index.js';
export {
  registerBackend,
  type BackendDescriptor,
  type BackendCapabilities,
  type BackendPart,
  type PartOpenOptions,
  type LocationForm,
  type ScratchSupport,
} from './backend.js';
export {
  besidePrefix,
  emptyBlobs,
  lastSegment,
  splitRawUri,
  type LocationKind,
  type ScratchArea,
  type ScratchCleanup,
  type ScratchPlan,
} from './scratch.js';
export { boolParam, checkParams, intParam, parseLocationUri, redactUri, type LocationUri } from './uri.js';
export { ConsensusBase, BlobBase, type ListedKeys } from './base.js';
export { MAX_KEY_BYTES, MAX_CONSENSUS_SEQNO } from './validate.js';
