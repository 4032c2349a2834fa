/** The SQLite backend's descriptor: `sqlite:` locations, Consensus (see backend.ts). */
import { rm } from 'node:fs/promises';
import { resolve } from 'node:path';
import type { BackendDescriptor } from '../backend.js';
import { lastSegment, splitRawUri } from '../scratch.js';
import { localPathOf, parseLocationUri } from '../uri.js';

export const sqliteBackend: BackendDescriptor = {
  name: 'sqlite',
  schemes: ['sqlite'],
  driver: 'better-sqlite3',
  entryPoint: 'persist-location/sqlite',
  forms: [
    { uri: 'sqlite:///abs/file.db', description: '`SqliteConsensus`: a SQLite database file, created if missing' },
    { uri: 'sqlite:rel/file.db', description: '`SqliteConsensus` at a path relative to the working directory' },
  ],
  localPath: localPathOf,
  consensus: {
    open: async (loc, { create }) => (await import('./index.js')).consensusFromUri(loc, create),
    retriedByDefault: false,
    capabilities: () => ({ sharedAcrossProcesses: true, notifications: false }),
  },
  scratch: {
    derive(uri, id, cwd) {
      const raw = splitRawUri(uri);
      const { dir, base } = lastSegment(raw.path, parseLocationUri(uri).display);
      const dot = base.lastIndexOf('.');
      const [stem, ext] = dot > 0 ? [base.slice(0, dot), base.slice(dot)] : [base, ''];
      const file = (suffix: string) => `${raw.head}${dir}${stem}.check-${id}${suffix}${ext}${raw.query}`;
      return { root: file(''), child: (name) => file(`-${name}`), localPath: resolve(cwd, parseLocationUri(file('')).path) };
    },
    async destroy(area) {
      for (const uri of [area.uri, ...area.children]) {
        const file = resolve(parseLocationUri(uri).path);
        for (const suffix of ['', '-wal', '-shm', '-journal']) await rm(`${file}${suffix}`, { force: true });
      }
      return { removed: true };
    },
    summary: { location: 'sqlite:DIR/NAME.db', scratch: 'sibling file DIR/NAME.check-ID.db (and -wal/-shm)' },
  },
};
