/** The memory backend: {@link MemConsensus} and {@link MemBlob}, exported by `persist-location` itself. */
export { MemConsensus, type MemConsensusOptions } from './consensus.js';
export { MemBlob, type MemBlobOptions } from './blob.js';
export { memBackend } from './backend.js';
