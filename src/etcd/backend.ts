/** The etcd backend's descriptor: `etcd:` locations, Consensus (see backend.ts). */
import type { BackendDescriptor } from '../backend.js';
import { besidePrefix, messageOf } from '../scratch.js';
import { parseLocationUri } from '../uri.js';

/** How long removing a scratch prefix may take per request. */
const DESTROY_TIMEOUT_MS = 10_000;

export const etcdBackend: BackendDescriptor = {
  name: 'etcd',
  schemes: ['etcd'],
  driver: 'etcd3',
  entryPoint: 'persist-location/etcd',
  forms: [
    { uri: 'etcd://[user:pw@]host:port[,host:port...][/prefix]', description: '`EtcdConsensus`: all data under the key prefix (default `/`)' },
    { uri: 'etcd://host:port/prefix?tls=true&ca=PATH&cert=PATH&key=PATH', description: '`EtcdConsensus` over TLS: the CA to trust, the client certificate and its key' },
  ],
  consensus: {
    open: async (loc) => (await import('./index.js')).consensusFromUri(loc),
    capabilities: () => ({ sharedAcrossProcesses: true, notifications: false }),
  },
  scratch: {
    derive: (uri, id) => besidePrefix(uri, id, true),
    async destroy(area) {
      // The prefix as the redacted URI reads: with a raw '/' in a password, the real
      // URI's path would begin with a piece of it.
      const manual = `remove it with: etcdctl del --prefix '${parseLocationUri(area.display).path}'`;
      let etcd3: typeof import('etcd3');
      try {
        etcd3 = await import('etcd3');
      } catch {
        return { removed: false, note: `the scratch keys were left in place (the etcd3 package is not installed); ${manual}` };
      }
      const { etcdOptionsFromUri, etcdTransport } = await import('./index.js');
      const loc = parseLocationUri(area.uri);
      const options = etcdOptionsFromUri(loc);
      const { hosts, credentials } = etcdTransport(options);
      const { auth } = options;
      const callOptions = () => ({ deadline: Date.now() + DESTROY_TIMEOUT_MS });
      // The same endpoints, TLS and credentials as the location's own handles. Every
      // child's prefix lies under the root's, which ends in '/'.
      const client = new etcd3.Etcd3({ hosts, ...(credentials && { credentials }), ...(auth === undefined ? {} : { auth: { ...auth, callOptions } }) });
      try {
        await client.delete().prefix(loc.path).options(callOptions()).exec();
        return { removed: true };
      } catch (err) {
        return { removed: false, note: `could not delete the scratch keys (${messageOf(err)}); ${manual}` };
      } finally {
        client.close();
      }
    },
    summary: { location: 'etcd://.../P', scratch: 'key prefix P.check-ID/ (deleted after)' },
  },
};
