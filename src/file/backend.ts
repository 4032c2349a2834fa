/** The file backend's descriptor: `file:` locations, Blob (see backend.ts). */
import { rm } from 'node:fs/promises';
import { resolve } from 'node:path';
import type { BackendDescriptor } from '../backend.js';
import { lastSegment, splitRawUri } from '../scratch.js';
import { boolParam, localPathOf, parseLocationUri, type LocationUri } from '../uri.js';

function keepsDeleted(loc: LocationUri): boolean {
  return boolParam(loc, loc.params.getAll('keepDeleted').at(-1), 'keepDeleted') ?? false;
}

export const fileBackend: BackendDescriptor = {
  name: 'file',
  schemes: ['file'],
  entryPoint: 'persist-location/file',
  forms: [
    { uri: 'file:///abs/dir', description: '`FileBlob`: a directory, created if missing' },
    { uri: 'file:rel/dir', description: '`FileBlob` at a directory relative to the working directory' },
  ],
  localPath: localPathOf,
  blob: {
    open: async (loc, { create }) => (await import('./index.js')).blobFromUri(loc, create),
    retriedByDefault: false,
    capabilities: (loc) => ({ keepsDeleted: keepsDeleted(loc), sharedAcrossProcesses: true, notifications: false }),
  },
  scratch: {
    derive(uri, id, cwd) {
      const raw = splitRawUri(uri);
      const { dir, base } = lastSegment(raw.path, parseLocationUri(uri).display);
      const root = `${raw.head}${dir}${base}.check-${id}`;
      return { root: `${root}${raw.query}`, child: (name) => `${root}/${name}${raw.query}`, localPath: resolve(cwd, parseLocationUri(root).path) };
    },
    async destroy(area) {
      // Retries: after an interrupt, writers may still be adding files as it goes.
      await rm(area.localPath!, { recursive: true, force: true, maxRetries: 5 });
      return { removed: true };
    },
    summary: { location: 'file:DIR/NAME', scratch: 'sibling directory DIR/NAME.check-ID' },
  },
};
