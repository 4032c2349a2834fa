/** The Azure Blob Storage backend's descriptor: `azure:` locations, Consensus and Blob (see backend.ts). */
import type { Blob } from '../blob.js';
import type { Consensus } from '../consensus.js';
import type { BackendDescriptor, PartOpenOptions } from '../backend.js';
import { openWithin } from '../objstore/open.js';
import { besidePrefix, emptyObjectStore } from '../scratch.js';
import { parseLocationUri, type LocationUri } from '../uri.js';
import { consensusMaxKeyBytes, maxKeyBytesFor } from './keys.js';

/** Opening checks (or creates) the container, then for Consensus runs the conditional-write probe, within a bound (see openWithin). */
async function open(loc: LocationUri, options?: PartOpenOptions): Promise<Blob> {
  const { blobFromUri } = await import('./index.js');
  return openWithin(loc, (signal) => blobFromUri(loc, options?.create, { signal }));
}

async function openConsensus(loc: LocationUri, { create }: PartOpenOptions): Promise<Consensus> {
  const { consensusFromUri } = await import('./consensus.js');
  return openWithin(loc, (signal) => consensusFromUri(loc, create, { signal }));
}

/** The blob-name prefix of a location, as AzureBlob writes it: no outer `/`, then one `/`. */
function namePrefix(loc: LocationUri): string {
  const prefix = loc.path.replace(/^\/+|\/+$/g, '');
  return prefix === '' ? '' : `${prefix}/`;
}

export const azureBackend: BackendDescriptor = {
  name: 'azure',
  schemes: ['azure'],
  driver: '@azure/storage-blob',
  entryPoint: 'persist-location/azure',
  forms: [
    {
      uri: 'azure://container[/prefix]?endpoint=URL&createContainer=true',
      description: '`AzureBlob` and `AzureConsensus`; credentials from `AZURE_STORAGE_CONNECTION_STRING` (or account name and key variables)',
    },
    {
      uri: 'azure://container[/prefix]?endpoint=https://HOST/ACCOUNT&ca=PATH',
      description: 'the same over https, trusting the CA in PATH; with no key or connection string set, an Azure AD identity through `@azure/identity`',
    },
  ],
  consensus: {
    open: openConsensus,
    capabilities: (loc) => ({ maxKeyBytes: consensusMaxKeyBytes(namePrefix(loc)), sharedAcrossProcesses: true, notifications: false }),
  },
  blob: {
    open,
    // `restore` works where the account has soft delete, which a URI does not tell.
    capabilities: (loc) => ({ maxKeyBytes: maxKeyBytesFor(namePrefix(loc)), sharedAcrossProcesses: true, notifications: false }),
  },
  scratch: {
    derive: (uri, id) => besidePrefix(uri, id),
    destroy: (area, kind) =>
      emptyObjectStore(area, kind, (uri) => open(parseLocationUri(uri)), async (uri) => (await import('./consensus.js')).consensusForRemoval(parseLocationUri(uri))),
    summary: { location: 'azure://C/P', scratch: 'prefix P.check-ID (every key deleted after)' },
  },
};
