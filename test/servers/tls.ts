/**
 * Throwaway certificates for the TLS tests, made with Debian's `openssl` in a fresh
 * directory under `os.tmpdir()`: a private CA, a server certificate for `localhost`
 * and `127.0.0.1` signed by it, a client certificate signed by it, and a second,
 * unrelated CA with a server certificate of its own (what a client that trusts the
 * first CA must refuse), plus a server certificate signed by the first CA for a
 * host name that is not ours (what host-name verification must refuse).
 *
 * Every file is readable by every user (the keys are throwaway): the test
 * PostgreSQL runs as the `postgres` user and etcd as us. PostgreSQL wants its own
 * key private to its owner; {@link privateCopy} makes such a copy.
 */
import { execFile } from 'node:child_process';
import { chmod, chown, copyFile, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** A certificate and its key, as paths. */
export interface CertPair {
  readonly cert: string;
  readonly key: string;
}

export interface TestPki {
  readonly dir: string;
  /** The CA every good certificate chains to. */
  readonly ca: string;
  /** Signed by {@link ca}, for `localhost` and `127.0.0.1`. */
  readonly server: CertPair;
  /** Signed by {@link ca}; its subject CN is `client` (etcd maps it to that user). */
  readonly client: CertPair;
  /** Signed by {@link ca}, but only for `wrong.invalid`: fails host-name checks on 127.0.0.1. */
  readonly wrongHost: CertPair;
  /** An unrelated CA, and a server certificate for `localhost`/`127.0.0.1` signed by it. */
  readonly otherCa: string;
  readonly otherServer: CertPair;
  /** A copy of `pair` whose key is owned by `owner` and private to it (mode 0600). */
  privateCopy(pair: CertPair, owner?: { uid: number; gid: number }): Promise<CertPair>;
  /** Removes the directory. */
  remove(): Promise<void>;
}

async function openssl(args: string[], cwd: string): Promise<void> {
  try {
    await run('openssl', args, { cwd, timeout: 30_000 });
  } catch (err) {
    const { stderr } = err as { stderr?: string };
    throw new Error(`openssl ${args[0]} failed: ${stderr?.trim() || String(err)}`, { cause: err });
  }
}

/** Makes a CA: `NAME.crt` and `NAME.key`. */
async function makeCa(dir: string, name: string): Promise<string> {
  await openssl(
    ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', `/CN=persist-location test ${name}`,
      '-keyout', `${name}.key`, '-out', `${name}.crt`,
      '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'],
    dir,
  );
  return join(dir, `${name}.crt`);
}

/** Makes `NAME.crt`/`NAME.key` signed by CA `ca`, with the given subject CN and SAN entries. */
async function makeLeaf(dir: string, ca: string, name: string, cn: string, san: string, usage: string): Promise<CertPair> {
  await openssl(['req', '-newkey', 'rsa:2048', '-nodes', '-subj', `/CN=${cn}`, '-keyout', `${name}.key`, '-out', `${name}.csr`], dir);
  const ext = join(dir, `${name}.ext`);
  await writeFile(ext, `subjectAltName=${san}\nextendedKeyUsage=${usage}\nbasicConstraints=CA:FALSE\n`);
  await openssl(
    ['x509', '-req', '-in', `${name}.csr`, '-CA', `${ca}.crt`, '-CAkey', `${ca}.key`, '-CAcreateserial',
      '-days', '2', '-extfile', ext, '-out', `${name}.crt`],
    dir,
  );
  await chmod(join(dir, `${name}.key`), 0o644);
  return { cert: join(dir, `${name}.crt`), key: join(dir, `${name}.key`) };
}

/** Makes a fresh set of test certificates; fails with openssl's own message if it cannot. */
export async function makeTestPki(): Promise<TestPki> {
  const dir = await mkdtemp(join(tmpdir(), 'persist-tls-'));
  await chmod(dir, 0o755);
  try {
    const ca = await makeCa(dir, 'ca');
    const otherCa = await makeCa(dir, 'other-ca');
    const local = 'DNS:localhost,IP:127.0.0.1';
    // etcd's gateway dials its own server with the server pair, so that pair is a client too.
    const server = await makeLeaf(dir, 'ca', 'server', 'localhost', local, 'serverAuth,clientAuth');
    const client = await makeLeaf(dir, 'ca', 'client', 'client', 'DNS:client', 'clientAuth');
    const wrongHost = await makeLeaf(dir, 'ca', 'wrong-host', 'wrong.invalid', 'DNS:wrong.invalid', 'serverAuth');
    const otherServer = await makeLeaf(dir, 'other-ca', 'other-server', 'localhost', local, 'serverAuth');
    let copies = 0;
    return {
      dir,
      ca,
      server,
      client,
      wrongHost,
      otherCa,
      otherServer,
      async privateCopy(pair, owner) {
        const n = copies++;
        const cert = join(dir, `copy-${n}.crt`);
        const key = join(dir, `copy-${n}.key`);
        await copyFile(pair.cert, cert);
        await copyFile(pair.key, key);
        await chmod(key, 0o600);
        if (owner !== undefined) {
          await chown(cert, owner.uid, owner.gid);
          await chown(key, owner.uid, owner.gid);
        }
        return { cert, key };
      },
      remove: () => rm(dir, { recursive: true, force: true }),
    };
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
}
