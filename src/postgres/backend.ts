/** The PostgreSQL backend's descriptor: `postgres:`/`postgresql:` locations, Consensus (see backend.ts). */
import type { BackendDescriptor } from '../backend.js';
import { messageOf, rawParamName, splitRawUri } from '../scratch.js';
import { parseLocationUri } from '../uri.js';

export const postgresBackend: BackendDescriptor = {
  name: 'postgres',
  schemes: ['postgres', 'postgresql'],
  driver: 'pg',
  entryPoint: 'persist-location/postgres',
  forms: [
    {
      uri: 'postgres://user:pw@host:port/db?schema=NAME',
      description: '`PostgresConsensus` (`postgresql://` too); libpq-style URI; `schema` (default `consensus`, created if missing) isolates one location from another in the same database',
    },
    {
      uri: 'postgres://user:pw@host/db?sslmode=verify-full&sslrootcert=PATH&sslcert=PATH&sslkey=PATH',
      description: '`PostgresConsensus` over TLS, `sslmode` as libpq means it (`require`, `verify-ca`, `verify-full`)',
    },
  ],
  consensus: {
    open: async (loc, { create }) => (await import('./index.js')).consensusFromUri(loc, create),
    capabilities: () => ({ sharedAcrossProcesses: true, notifications: false }),
  },
  scratch: {
    derive(uri, id) {
      const raw = splitRawUri(uri);
      const params = new URLSearchParams(raw.query.slice(1));
      const schema = params.get('schema') ?? 'consensus';
      // Postgres folds unquoted names to lower case and caps them at 63 bytes.
      const base = schema.toLowerCase().replace(/[^a-z0-9_]/g, '_').slice(0, 30);
      // Edited as text, not re-serialized: every other parameter keeps its spelling (a
      // raw '@' of a password stays one, so the scratch URI is redacted like the user's).
      const parts = raw.query.slice(1).split('&').filter((part) => part !== '');
      const at = parts.findIndex((part) => rawParamName(part) === 'schema');
      const withSchema = (s: string) => {
        const edited = [...parts];
        edited.splice(at < 0 ? edited.length : at, at < 0 ? 0 : 1, `schema=${s}`);
        return `${raw.head}${raw.path}?${edited.join('&')}`;
      };
      return { root: withSchema(`${base}_check_${id}`), child: (name) => withSchema(`${base}_check_${id}_${name.replace(/-/g, '_')}`) };
    },
    async destroy(area) {
      const schemas = [area.uri, ...area.children].map((u) => parseLocationUri(u).params.get('schema')!);
      const manual = `remove it with: DROP SCHEMA ${schemas.join(', ')} CASCADE;`;
      let pg: typeof import('pg');
      try {
        pg = (await import('pg')).default as unknown as typeof import('pg');
      } catch {
        return { removed: false, note: `scratch schemas were left in place (the pg package is not installed): ${manual}` };
      }
      // The location's connection string, without its own parameters (schema, pool, batching).
      // Its TLS settings too, read as libpq means them (connection.ts), not as pg would.
      const { connectionString } = (await import('./index.js')).postgresOptionsFromUri(parseLocationUri(area.uri));
      const { connectionConfig } = await import('./connection.js');
      const { withDeadline } = await import('../kit/deadline.js');
      const client = new pg.Client({ ...connectionConfig(connectionString, area.display), connectionTimeoutMillis: 10_000, query_timeout: 60_000 });
      client.on('error', () => {});
      try {
        await client.connect();
        await client.query(`DROP SCHEMA IF EXISTS ${schemas.map((s) => `"${s}"`).join(', ')} CASCADE`);
        return { removed: true };
      } catch (err) {
        return { removed: false, note: `could not drop the scratch schemas (${messageOf(err)}); ${manual}` };
      } finally {
        // pg's end() can wait forever after a connection that failed.
        await withDeadline(undefined, 5_000, () => client.end()).catch(() => {});
      }
    },
    summary: { location: 'postgres://...?schema=S', scratch: 'schema S_check_ID (dropped after)' },
  },
};
