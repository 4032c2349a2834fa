// etcd and PostgreSQL over TLS, against real servers with throwaway certificates:
// the shared suite with client certificates, each refusal with its documented error
// (Determinate PermissionDenied naming the problem, never a secret), libpq's sslmode
// table, bytes on the wire, and `persist-location check` on each TLS location.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import * as etcd3 from 'etcd3';
import { CaSResult, type Consensus, Determinate, ErrorCode, openConsensus, SeqNo } from 'persist-location';
import { EtcdConsensus, etcdOptionsFromUri } from 'persist-location/etcd';
import { consensusImplTest } from 'persist-location/testing';
import { startEtcd, type EtcdCluster } from './servers/etcd.js';
import { startPostgres, type PostgresServer } from './servers/postgres.js';
import { tripwireProxy, type Direction, type TripwireProxy } from './servers/proxy.js';
import { makeTestPki, type TestPki } from './servers/tls.js';

const BIN = fileURLToPath(new URL('../../bin/persist-location.js', import.meta.url));
const v = (seqno: number, data: string) => ({ seqno: new SeqNo(seqno), data: Buffer.from(data) });

let pki: TestPki;
before(async () => {
  pki = await makeTestPki();
});
after(() => pki?.remove());

/** Lines of a PEM file's body: none may ever appear in a message. */
function pemLines(path: string): string[] {
  return readFileSync(path, 'utf8').split('\n').filter((l) => l.length >= 16 && !l.startsWith('-----'));
}

/**
 * Opening `uri` rejects Determinate PermissionDenied with a message matching
 * `problem` and holding none of `secrets` nor a line of any key file.
 */
async function refused(uri: string, problem: RegExp, secrets: readonly string[] = []): Promise<Determinate> {
  const outcome = await openConsensus(uri).then(
    async (c) => {
      await c.close();
      return undefined;
    },
    (err: unknown) => err,
  );
  assert.ok(outcome instanceof Determinate, `expected Determinate PermissionDenied, got ${outcome === undefined ? 'an open handle' : String(outcome)}`);
  assert.equal(outcome.code, ErrorCode.PermissionDenied, outcome.message);
  assert.match(outcome.message, problem);
  for (const secret of [...secrets, ...pemLines(pki.client.key), ...pemLines(pki.otherServer.key)]) {
    assert.ok(!outcome.message.includes(secret), `the message shows a secret: ${outcome.message}`);
  }
  return outcome;
}

/** A write and a read back, to show a handle works. */
async function roundTrip(c: Consensus): Promise<void> {
  const key = `k-${randomUUID()}`;
  assert.equal(await c.compareAndSet(key, undefined, v(1, 'hello')), CaSResult.Committed);
  assert.equal(Buffer.from((await c.head(key))!.data).toString(), 'hello');
}

/**
 * Writes a key and a value through `uri` (which goes through `proxy`) and reads them
 * back, while the proxy records every byte of the request and then the response
 * direction; returns what it saw and the plaintexts written.
 */
async function wireBytes(proxy: TripwireProxy, uri: string): Promise<{ seen: Buffer; key: string; value: string }> {
  const key = `wire-key-${randomUUID()}`;
  const value = `wire-value-${randomUUID()}`;
  const chunks: Buffer[] = [];
  const record = (direction: Direction) =>
    proxy.arm(direction, (chunk) => {
      chunks.push(Buffer.from(chunk));
      return false;
    }, () => {});
  const c = await openConsensus(uri);
  try {
    record('request');
    assert.equal(await c.compareAndSet(key, undefined, v(1, value)), CaSResult.Committed);
    record('response');
    assert.equal(Buffer.from((await c.head(key))!.data).toString(), value);
    // The key again, in the response: listKeys answers with it.
    const keys: string[] = [];
    for await (const k of c.listKeys()) keys.push(k);
    assert.ok(keys.includes(key));
  } finally {
    await c.close();
  }
  return { seen: Buffer.concat(chunks), key, value };
}

/** etcd keeps keys hex-encoded (etcd/layout.ts): the plaintext forms a key may take on the wire. */
const keyForms = (key: string) => [key, Buffer.from(key).toString('hex')];

interface Ran {
  status: number | null;
  out: string;
  err: string;
}

/** Runs the CLI, bounded by 120 s. */
function cli(args: string[]): Promise<Ran> {
  const cwd = mkdtempSync(join(tmpdir(), 'persist-tls-cli-'));
  return new Promise<Ran>((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { cwd, env: { ...process.env, NO_COLOR: '1' }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`persist-location ${args[0]} still running after 120 s:\n${out}\n${err}`));
    }, 120_000);
    child.on('error', reject);
    child.on('exit', (status) => {
      clearTimeout(timer);
      rmSync(cwd, { recursive: true, force: true });
      resolve({ status, out, err });
    });
  });
}

interface CheckReport {
  ok: boolean;
  checks: { name: string; status: string }[];
  cleanup: { removed: boolean; note?: string }[];
}

async function checkPasses(uri: string): Promise<CheckReport> {
  const r = await cli(['check', '--only', 'consensus', '--consensus', uri, '--ops', '300', '--json', '--quiet']);
  assert.equal(r.status, 0, `${r.out}\n${r.err}`);
  const report = JSON.parse(r.out) as CheckReport;
  assert.equal(report.ok, true, r.out);
  assert.deepEqual(
    report.checks.map((c) => [c.name, c.status]),
    ['consensus: open location', 'consensus conformance', 'consensus linearizability'].map((n) => [n, 'pass']),
  );
  return report;
}

describe('etcd:// TLS parameters', () => {
  test('tls=true, ca, cert and key are read; any of the files implies TLS', () => {
    assert.deepEqual(etcdOptionsFromUri('etcd://h:1/p?tls=true').tls, {});
    assert.equal(etcdOptionsFromUri('etcd://h:1/p?tls=false').tls, undefined);
    assert.equal(etcdOptionsFromUri('etcd://h:1/p').tls, undefined);
    assert.deepEqual(etcdOptionsFromUri('etcd://h:1/p?ca=%2Fx%2Fca.pem').tls, { ca: '/x/ca.pem' });
    assert.deepEqual(etcdOptionsFromUri('etcd://h:1/p?cert=/c.pem&key=/k.pem').tls, { cert: '/c.pem', key: '/k.pem' });
  });

  test('contradictions and half a client certificate are InvalidArgument', () => {
    for (const [uri, message] of [
      ['etcd://h:1/p?tls=false&ca=/x', /need TLS, but tls=false/],
      ['etcd://h:1/p?cert=/c.pem', /needs both cert= and key= \(got only cert=\)/],
      ['etcd://h:1/p?tls=true&key=/k.pem', /got only key=/],
      ['etcd://h:1/p?tls=yes', /must be true or false/],
      ['etcd://h:1/p?ca=', /ca= needs a file path/],
    ] as const) {
      assert.throws(() => etcdOptionsFromUri(uri), (err: Error) => err instanceof Determinate && err.code === ErrorCode.InvalidArgument && message.test(err.message), uri);
    }
  });

  test('a CA file that cannot be read is InvalidArgument naming the parameter and path', () => {
    const missing = join(pki.dir, 'no-such-ca.pem');
    assert.throws(
      () => new EtcdConsensus({ endpoints: ['127.0.0.1:1'], tls: { ca: missing } }),
      (err: Error) => err instanceof Determinate && err.code === ErrorCode.InvalidArgument && err.message.includes(`ca= file ${missing}`) && /ENOENT/.test(err.message),
    );
  });

  test('https:// endpoints imply TLS; http:// with TLS asked for is refused', () => {
    assert.throws(
      () => new EtcdConsensus({ endpoints: ['http://127.0.0.1:1'], tls: { ca: pki.ca } }),
      (err: Error) => err instanceof Determinate && err.code === ErrorCode.InvalidArgument && /endpoint says http:/.test(err.message),
    );
    assert.throws(
      () => new EtcdConsensus({ endpoints: ['http://127.0.0.1:1', 'https://127.0.0.1:2'] }),
      (err: Error) => err instanceof Determinate && err.code === ErrorCode.InvalidArgument,
    );
  });
});

describe('etcd over TLS with client certificates (--client-cert-auth)', () => {
  let etcd: EtcdCluster;
  let ep: string;
  const q = (params: Record<string, string>) => new URLSearchParams(params).toString();
  before(async () => {
    etcd = await startEtcd(1, { tls: pki });
    ep = etcd.endpoints[0]!;
  });
  after(() => etcd?.stop());

  test('passes the conformance suite', async () => {
    await consensusImplTest(async () => openConsensus(etcd.uri()));
  });

  test('a client that trusts another CA is refused at open', async () => {
    const err = await refused(
      `etcd://${ep}/x?${q({ ca: pki.otherCa, cert: pki.client.cert, key: pki.client.key, timeoutMs: '5000' })}`,
      /TLS handshake with 127\.0\.0\.1:\d+ failed: the server certificate is not signed by a trusted CA/,
    );
    assert.ok(err.message.includes(`ca=${pki.otherCa}`), err.message);
  });

  test('tls=true alone trusts only Node\'s CAs, which did not sign the test server', async () => {
    await refused(`etcd://${ep}/x?tls=true&timeoutMs=5000`, /not signed by a trusted CA \(no ca=\/cert=\/key= given\)/);
  });

  test('a client certificate without ca= is checked against Node\'s CAs', async () => {
    const err = await refused(`etcd://${ep}/x?${q({ cert: pki.client.cert, key: pki.client.key, timeoutMs: '5000' })}`, /not signed by a trusted CA/);
    assert.ok(err.message.includes(`cert=${pki.client.cert}`) && !err.message.includes('ca='), err.message);
  });

  test('no client certificate, where etcd requires one, is refused at open', async () => {
    await refused(`etcd://${ep}/x?${q({ ca: pki.ca, timeoutMs: '5000' })}`, /the server requires a client certificate and none was given/);
  });

  test('a client certificate of another CA is refused at open', async () => {
    await refused(`etcd://${ep}/x?${q({ ca: pki.ca, cert: pki.otherServer.cert, key: pki.otherServer.key, timeoutMs: '5000' })}`, /the server refused the client certificate/);
  });

  test('plain TCP to the TLS port fails the open within its timeout', async () => {
    const err = await openConsensus(`etcd://${ep}/x?timeoutMs=1500`).then(
      async (c) => {
        await c.close();
        return undefined;
      },
      (e: unknown) => e,
    );
    assert.ok(err instanceof Determinate, String(err));
    assert.equal(err.code, ErrorCode.Unavailable);
  });

  test('traffic is encrypted: the bytes on the wire hold no key or value written', async () => {
    const [, port] = ep.split(':') as [string, string];
    const proxy = await tripwireProxy(Number(port));
    try {
      const { seen, key, value } = await wireBytes(proxy, `etcd://127.0.0.1:${proxy.port}/wire?${q({ ca: pki.ca, cert: pki.client.cert, key: pki.client.key })}`);
      assert.ok(seen.length > value.length, `only ${seen.length} bytes seen`);
      for (const plain of [...keyForms(key), value]) assert.ok(!seen.includes(plain), `${plain} crossed the wire in plaintext`);
    } finally {
      await proxy.close();
    }
  });

  test('persist-location check passes on the TLS location, and deletes its scratch keys over TLS', { timeout: 180_000 }, async () => {
    const report = await checkPasses(etcd.uri());
    assert.deepEqual(report.cleanup.map((c) => [c.removed, c.note]), [[true, undefined]]);
  });
});

describe('the wire recorder sees plaintext where there is no TLS (control)', () => {
  let etcd: EtcdCluster;
  before(async () => {
    etcd = await startEtcd(1);
  });
  after(() => etcd?.stop());

  test('a plain etcd carries the key and value as written', async () => {
    const [, port] = etcd.endpoints[0]!.split(':') as [string, string];
    const proxy = await tripwireProxy(Number(port));
    try {
      const { seen, key, value } = await wireBytes(proxy, `etcd://127.0.0.1:${proxy.port}/wire`);
      assert.ok(keyForms(key).some((form) => seen.includes(form)), 'the key was not seen');
      assert.ok(seen.includes(value), 'the value was not seen');
    } finally {
      await proxy.close();
    }
  });
});

describe('etcd over TLS with a user and password', () => {
  let etcd: EtcdCluster;
  let tlsQuery: string;
  const password = 'app pw:s3cr3t';
  before(async () => {
    etcd = await startEtcd(1, { tls: pki });
    const credentials = { rootCertificate: readFileSync(pki.ca), certChain: readFileSync(pki.client.cert), privateKey: readFileSync(pki.client.key) };
    const admin = new etcd3.Etcd3({ hosts: `https://${etcd.endpoints[0]}`, credentials });
    try {
      const options = { deadline: Date.now() + 20_000 };
      await admin.user('root').create('root-pw', options);
      await admin.role('root').create(options);
      await admin.user('root').addRole('root', options);
      await admin.role('app').create(options);
      await admin.role('app').grant({ permission: 'Readwrite', range: etcd3.Range.prefix('/tls-auth/') }, options);
      await admin.user('app').create(password, options);
      await admin.user('app').addRole('app', options);
      await admin.auth.authEnable(options);
    } finally {
      admin.close();
    }
    tlsQuery = new URLSearchParams({ ca: pki.ca, cert: pki.client.cert, key: pki.client.key, timeoutMs: '5000' }).toString();
  });
  after(() => etcd?.stop());

  const uri = (user: string, pw: string, prefix: string) => `etcd://${user}:${encodeURIComponent(pw)}@${etcd.endpoints[0]}${prefix}?${tlsQuery}`;

  test('the right password works over TLS', async () => {
    const c = await openConsensus(uri('app', password, '/tls-auth/a'));
    try {
      await roundTrip(c);
    } finally {
      await c.close();
    }
  });

  test('a wrong password is refused at open, and never printed', async () => {
    await refused(uri('app', 'not-the-password', '/tls-auth/a'), /etcd refused the credentials/, ['not-the-password', password]);
  });

  test('a prefix outside the user\'s role is refused at open', async () => {
    await refused(uri('app', password, '/elsewhere'), /PermissionDenied|permission denied/i, [password]);
  });
});

describe('etcd serving a certificate for another host name', () => {
  let etcd: EtcdCluster;
  before(async () => {
    etcd = await startEtcd(1, { tls: pki, server: { pair: pki.wrongHost, name: 'wrong.invalid' } });
  });
  after(() => etcd?.stop());

  test('is refused at open: the certificate does not name the host', async () => {
    await refused(etcd.uri('timeoutMs=5000'), /the server certificate does not name the host connected to/);
  });
});

/** `url` with its query parameters changed (null removes one). */
function withParams(url: string, changes: Record<string, string | null>): string {
  const u = new URL(url);
  for (const [name, value] of Object.entries(changes)) {
    if (value === null) u.searchParams.delete(name);
    else u.searchParams.set(name, value);
  }
  return u.toString();
}

describe('PostgreSQL sslmode as libpq means it (parsing)', () => {
  test('prefer and allow are refused: pg cannot fall back to plain TCP', async () => {
    for (const mode of ['prefer', 'allow']) {
      await assert.rejects(openConsensus(`postgres://u:pw@127.0.0.1:1/db?sslmode=${mode}`), (err: Error) => {
        assert.ok(err instanceof Determinate && err.code === ErrorCode.InvalidArgument, String(err));
        assert.match(err.message, new RegExp(`sslmode=${mode} falls back between TLS and plain TCP`));
        return true;
      });
    }
  });
  test('verify-ca needs a root certificate; sslrootcert=system needs verify-full; sslcert needs sslkey', async () => {
    for (const [query, message] of [
      ['sslmode=verify-ca', /verify-ca needs sslrootcert=PATH/],
      ['sslmode=require&sslrootcert=system', /sslrootcert=system needs sslmode=verify-full/],
      [`sslmode=verify-full&sslcert=${encodeURIComponent(pki.client.cert)}`, /needs both sslcert= and sslkey= \(got only sslcert=\)/],
    ] as const) {
      await assert.rejects(openConsensus(`postgres://u:pw@127.0.0.1:1/db?${query}`), (err: Error) => {
        assert.ok(err instanceof Determinate && err.code === ErrorCode.InvalidArgument, String(err));
        assert.match(err.message, message);
        return true;
      });
    }
  });
});

describe('PostgreSQL over TLS with client certificates (verify-full, clientcert=verify-ca)', () => {
  let server: PostgresServer;
  let password: string;
  before(async () => {
    server = await startPostgres({ tls: { pki, clientCert: true } });
    password = decodeURIComponent(new URL(server.baseUrl).password);
  });
  after(() => server?.stop());

  test('passes the conformance suite', async () => {
    await consensusImplTest(async () => openConsensus(server.url()));
  });

  test('a client that trusts another CA is refused at open', async () => {
    const err = await refused(withParams(server.url(), { sslrootcert: pki.otherCa }), /TLS handshake with 127\.0\.0\.1:\d+ failed: the server certificate is not signed by a trusted CA/, [password]);
    assert.ok(err.message.includes(`sslrootcert=${pki.otherCa}`), err.message);
  });

  test('verify-full without sslrootcert, or with sslrootcert=system, trusts only Node\'s CAs, which did not sign the test server', async () => {
    await refused(withParams(server.url(), { sslrootcert: null }), /not signed by a trusted CA/, [password]);
    await refused(withParams(server.url(), { sslrootcert: 'system' }), /not signed by a trusted CA/, [password]);
  });

  test('no client certificate, where the server requires one, is refused at open', async () => {
    await refused(withParams(server.url(), { sslcert: null, sslkey: null }), /permission denied.*client certificate/, [password]);
  });

  test('a client certificate of another CA is refused at open', async () => {
    await refused(withParams(server.url(), { sslcert: pki.otherServer.cert, sslkey: pki.otherServer.key }), /the server refused the client certificate/, [password]);
  });

  test('a wrong password is refused at open, and never printed', async () => {
    const u = new URL(server.url());
    u.password = 'not-the-password';
    await refused(u.toString(), /permission denied: SQLSTATE 28P01/, ['not-the-password', password]);
  });

  test('sslmode=disable is refused by a server that allows only TLS', async () => {
    await refused(withParams(server.url(), { sslmode: 'disable', sslrootcert: null, sslcert: null, sslkey: null }), /no encryption/, [password]);
  });

  test('require without sslrootcert encrypts but verifies nothing; with one, it checks the chain', async () => {
    const c = await openConsensus(withParams(server.url(), { sslmode: 'require', sslrootcert: null }));
    try {
      await roundTrip(c);
    } finally {
      await c.close();
    }
    await refused(withParams(server.url(), { sslmode: 'require', sslrootcert: pki.otherCa }), /not signed by a trusted CA/, [password]);
  });

  test('traffic is encrypted: the bytes on the wire hold no key or value written', async () => {
    const proxy = await tripwireProxy(Number(new URL(server.baseUrl).port));
    try {
      const u = new URL(server.url());
      u.port = String(proxy.port);
      const { seen, key, value } = await wireBytes(proxy, u.toString());
      assert.ok(seen.length > value.length, `only ${seen.length} bytes seen`);
      for (const plain of [key, value, Buffer.from(value).toString('hex')]) assert.ok(!seen.includes(plain), `${plain} crossed the wire in plaintext`);
    } finally {
      await proxy.close();
    }
  });

  test('persist-location check passes on the TLS location, and drops its scratch schemas', { timeout: 180_000 }, async () => {
    const report = await checkPasses(server.url());
    assert.deepEqual(report.cleanup.map((c) => [c.removed, c.note]), [[true, undefined]]);
  });
});

describe('PostgreSQL serving a certificate for another host name', () => {
  let server: PostgresServer;
  before(async () => {
    server = await startPostgres({ tls: { pki, serverPair: pki.wrongHost } });
  });
  after(() => server?.stop());

  test('verify-full refuses it: the certificate does not name the host', async () => {
    await refused(server.url(), /the server certificate does not name the host connected to/);
  });

  test('verify-ca accepts it: the chain is checked, the name is not', async () => {
    const c = await openConsensus(withParams(server.url(), { sslmode: 'verify-ca' }));
    try {
      await roundTrip(c);
    } finally {
      await c.close();
    }
  });
});
