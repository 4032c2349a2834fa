/**
 * `persist-location/testing`: the conformance suites every backend passes, the
 * linearizability checker and the stress harnesses. Usable under any test runner:
 * a suite is a list of named cases that it either hands to the runner's `test`
 * function or runs itself, throwing on the first failed expectation.
 */
export {
  consensusImplTest,
  consensusCases,
  type ConsensusCase,
  type ConsensusCaseContext,
  type ConsensusImplTestOptions,
} from './consensus-suite.js';
export { blobImplTest, blobCases, type BlobCase, type BlobCaseContext, type BlobImplTestOptions } from './blob-suite.js';
export { type BackendCapabilities, type ResolvedCapabilities, type SuiteCase, type SuiteOptions, type TestFunction } from './cases.js';
export {
  checkLinearizable,
  type CheckOptions,
  type CheckResult,
  type HistoryOp,
  type HistoryVersion,
  type Outcome,
  type Violation,
} from './linearizability.js';
export { stressConsensus, type StressOptions, type StressReport } from './stress.js';
export {
  stressBlob,
  checkBlobHistory,
  type BlobHistoryOp,
  type BlobStressOptions,
  type BlobStressReport,
  type BlobViolation,
} from './stress-blob.js';
export { ConformanceError } from './expect.js';
export { hostileKeys } from './keys.js';
export { UnreliableConsensus, UnreliableBlob, type UnreliableOptions, type UnreliableStats } from './unreliable.js';
