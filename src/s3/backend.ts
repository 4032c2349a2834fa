/** The S3 backend's descriptor: `s3:` locations, Consensus and Blob (see backend.ts). */
import type { Blob } from '../blob.js';
import type { Consensus } from '../consensus.js';
import type { BackendDescriptor, PartOpenOptions } from '../backend.js';
import { openWithin } from '../objstore/open.js';
import { besidePrefix, emptyObjectStore } from '../scratch.js';
import { parseLocationUri, type LocationUri } from '../uri.js';
import { consensusMaxKeyBytes, maxKeyBytesFor } from './keys.js';

/** Opening sends HeadBucket (Blob, or Consensus with `create: false`) or the conditional-write probe, within a bound (see openWithin). */
async function open(loc: LocationUri): Promise<Blob> {
  const { blobFromUri } = await import('./index.js');
  return openWithin(loc, (signal) => blobFromUri(loc, { signal }));
}

async function openConsensus(loc: LocationUri, { create }: PartOpenOptions): Promise<Consensus> {
  const { consensusFromUri } = await import('./consensus.js');
  return openWithin(loc, (signal) => consensusFromUri(loc, create, { signal }));
}

/** The object-name prefix of a location, as S3Blob writes it: no leading `/`, one trailing `/`. */
function namePrefix(loc: LocationUri): string {
  const prefix = loc.path.replace(/^\/+/, '');
  return prefix === '' || prefix.endsWith('/') ? prefix : `${prefix}/`;
}

export const s3Backend: BackendDescriptor = {
  name: 's3',
  schemes: ['s3'],
  driver: '@aws-sdk/client-s3',
  entryPoint: 'persist-location/s3',
  forms: [
    {
      uri: 's3://bucket[/prefix]?endpoint=URL&region=R&forcePathStyle=true',
      description: '`S3Blob` and `S3Consensus`; credentials from the standard AWS environment variables / provider chain',
    },
    { uri: 's3://bucket[/prefix]?endpoint=https://HOST&ca=PATH', description: 'the same over https, trusting the CA in PATH (or `NODE_EXTRA_CA_CERTS`)' },
  ],
  consensus: {
    open: openConsensus,
    capabilities: (loc) => ({ maxKeyBytes: consensusMaxKeyBytes(Buffer.byteLength(namePrefix(loc))), sharedAcrossProcesses: true, notifications: false }),
  },
  blob: {
    open,
    // `restore` works on versioned buckets only, which a URI does not tell.
    capabilities: (loc) => ({ maxKeyBytes: maxKeyBytesFor(Buffer.byteLength(namePrefix(loc))), sharedAcrossProcesses: true, notifications: false }),
  },
  scratch: {
    derive: (uri, id) => besidePrefix(uri, id),
    destroy: (area, kind) =>
      emptyObjectStore(area, kind, (uri) => open(parseLocationUri(uri)), async (uri) => (await import('./consensus.js')).consensusForRemoval(parseLocationUri(uri))),
    summary: { location: 's3://B/P', scratch: 'prefix P.check-ID (every key deleted after)' },
  },
};
