/**
 * `persist-location/testing`: the conformance suites every backend passes, the
 * linearizability checker and the stress harness. Usable under any test runner:
 * the suites throw on the first failed expectation.
 */
export { consensusImplTest } from './consensus-suite.js';
export { blobImplTest, type BlobImplTestOptions } from './blob-suite.js';
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
export { ConformanceError } from './expect.js';
export { hostileKeys } from './keys.js';
export { FlakyConsensus, type FlakyOptions } from './flaky.js';
