/** The memory backend's descriptor: `mem://NAME`, Consensus and Blob (see backend.ts). */
import type { BackendDescriptor } from '../backend.js';
import { invalidArgument } from '../errors.js';
import { splitRawUri } from '../scratch.js';
import { boolParam, checkParams, parseLocationUri, type LocationUri } from '../uri.js';
import { forgetNamedBlob, MemBlob } from './blob.js';
import { forgetNamedConsensus, MemConsensus } from './consensus.js';

/** `mem://NAME`: the name is the authority plus any path. */
function memName(loc: LocationUri, allowed: readonly string[]): string {
  checkParams(loc, allowed);
  const name = `${loc.authority ?? ''}${loc.path}`;
  if (loc.authority === undefined || name === '') throw invalidArgument(`expected mem://NAME, got ${loc.display}`);
  return name;
}

function keepDeleted(loc: LocationUri): boolean {
  return boolParam(loc, loc.params.getAll('keepDeleted').at(-1), 'keepDeleted') ?? false;
}

export const memBackend: BackendDescriptor = {
  name: 'mem',
  schemes: ['mem'],
  entryPoint: 'persist-location',
  forms: [
    {
      uri: 'mem://NAME',
      description: 'in memory, shared by every handle opened with the same NAME in this process; Blob takes `?keepDeleted=true` (`restore` brings back deleted values)',
    },
  ],
  consensus: {
    open: async (loc) => new MemConsensus({ name: memName(loc, []) }),
    retriedByDefault: false,
    capabilities: () => ({ sharedAcrossProcesses: false, notifications: false }),
  },
  blob: {
    open: async (loc) => new MemBlob({ name: memName(loc, ['keepDeleted']), keepDeleted: keepDeleted(loc) }),
    retriedByDefault: false,
    capabilities: (loc) => ({ keepsDeleted: keepDeleted(loc), sharedAcrossProcesses: false, notifications: false }),
  },
  scratch: {
    derive(uri, id) {
      const raw = splitRawUri(uri);
      const root = `${raw.head}${raw.path.replace(/\/+$/, '')}.check-${id}`;
      return { root: `${root}${raw.query}`, child: (name) => `${root}/${name}${raw.query}` };
    },
    // Nothing outside this process; the state of every location made is let go.
    async destroy(area) {
      for (const uri of [area.uri, ...area.children]) {
        const loc = parseLocationUri(uri);
        const name = `${loc.authority ?? ''}${loc.path}`;
        forgetNamedConsensus(name);
        forgetNamedBlob(name);
      }
      return { removed: true };
    },
    summary: { location: 'mem://NAME', scratch: 'mem://NAME.check-ID' },
  },
};
