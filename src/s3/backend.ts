/** The S3 backend's descriptor: `s3:` locations, Blob (see backend.ts). */
import type { Blob } from '../blob.js';
import type { BackendDescriptor } from '../backend.js';
import { besidePrefix, emptyBlobs } from '../scratch.js';
import { parseLocationUri, type LocationUri } from '../uri.js';
import { maxKeyBytesFor } from './keys.js';

async function open(loc: LocationUri): Promise<Blob> {
  return (await import('./index.js')).blobFromUri(loc);
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
      description: '`S3Blob`; credentials from the standard AWS environment variables / provider chain',
    },
  ],
  blob: {
    open,
    // `restore` works on versioned buckets only, which a URI does not tell.
    capabilities: (loc) => ({ maxKeyBytes: maxKeyBytesFor(Buffer.byteLength(namePrefix(loc))), sharedAcrossProcesses: true, notifications: false }),
  },
  scratch: {
    derive: (uri, id) => besidePrefix(uri, id),
    destroy: (area) => emptyBlobs(area, (uri) => open(parseLocationUri(uri))),
    summary: { location: 's3://B/P', scratch: 'prefix P.check-ID (every key deleted after)' },
  },
};
