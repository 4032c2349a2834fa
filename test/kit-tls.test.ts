// Handshake failures as Node really reports them, against a local TLS server made
// from the test PKI, and what tlsProblem / tlsError make of each.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { connect, createServer, type Server } from 'node:tls';
import { after, before, describe, test } from 'node:test';
import { Determinate, ErrorCode } from 'persist-location';
import { readTlsFiles, tlsError, tlsProblem } from '../src/kit/tls.js';
import { makeTestPki, type CertPair, type TestPki } from './servers/tls.js';

let pki: TestPki;
before(async () => {
  pki = await makeTestPki();
});
after(() => pki?.remove());

/** A TLS server on a free loopback port with `pair`, optionally demanding client certificates. */
async function serve(pair: CertPair, requireClient: boolean): Promise<{ server: Server; port: number }> {
  const server = createServer({
    cert: readFileSync(pair.cert),
    key: readFileSync(pair.key),
    ca: readFileSync(pki.ca),
    requestCert: requireClient,
    rejectUnauthorized: requireClient,
  }, (socket) => socket.end('hello'));
  server.on('tlsClientError', () => {});
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, port: (server.address() as { port: number }).port };
}

/** The error a client gets, or undefined when it reads the greeting. */
async function attempt(port: number, opts: { ca?: string; cert?: CertPair; host?: string }): Promise<unknown> {
  return new Promise((resolve) => {
    const socket = connect({
      host: '127.0.0.1',
      port,
      servername: opts.host ?? 'localhost',
      ...(opts.ca && { ca: readFileSync(opts.ca) }),
      ...(opts.cert && { cert: readFileSync(opts.cert.cert), key: readFileSync(opts.cert.key) }),
      timeout: 10_000,
    });
    let data = '';
    socket.on('data', (d) => (data += d.toString()));
    socket.on('timeout', () => socket.destroy(new Error('no answer from the TLS test server within 10 s')));
    socket.on('error', (err) => resolve(err));
    socket.on('end', () => resolve(data === 'hello' ? undefined : new Error(`unexpected greeting ${JSON.stringify(data)}`)));
  });
}

describe('tlsProblem on real handshakes', () => {
  test('a trusted server with the right name and a client certificate connects', async () => {
    const { server, port } = await serve(pki.server, true);
    try {
      assert.equal(await attempt(port, { ca: pki.ca, cert: pki.client }), undefined);
    } finally {
      server.close();
    }
  });

  test('a server signed by another CA is untrusted', async () => {
    const { server, port } = await serve(pki.otherServer, false);
    try {
      const err = await attempt(port, { ca: pki.ca });
      assert.equal(tlsProblem(err), 'the server certificate is not signed by a trusted CA', String(err));
    } finally {
      server.close();
    }
  });

  test('a certificate for another host name is refused', async () => {
    const { server, port } = await serve(pki.wrongHost, false);
    try {
      const err = await attempt(port, { ca: pki.ca });
      assert.equal(tlsProblem(err), 'the server certificate does not name the host connected to', String(err));
    } finally {
      server.close();
    }
  });

  test('a server that requires a client certificate refuses a client without one', async () => {
    const { server, port } = await serve(pki.server, true);
    try {
      const err = await attempt(port, { ca: pki.ca });
      assert.match(tlsProblem(err) ?? String(err), /requires a client certificate|refused the client certificate/);
    } finally {
      server.close();
    }
  });

  test('a plain TCP error is no TLS problem', () => {
    assert.equal(tlsProblem(Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), { code: 'ECONNREFUSED' })), undefined);
    assert.equal(tlsProblem(undefined), undefined);
  });

  test('a problem wrapped as a cause or folded into a gRPC message is still found', () => {
    const inner = Object.assign(new Error('self-signed certificate in certificate chain'), { code: 'SELF_SIGNED_CERT_IN_CHAIN' });
    assert.equal(tlsProblem(new Error('outer', { cause: inner })), 'the server certificate is not signed by a trusted CA');
    const grpc = Object.assign(new Error('14 UNAVAILABLE: No connection established'), { details: 'No connection established. Last error: Error: self-signed certificate in certificate chain' });
    assert.equal(tlsProblem(grpc), 'the server certificate is not signed by a trusted CA');
  });
});

describe('tlsError and readTlsFiles', () => {
  test('tlsError is Determinate PermissionDenied naming the files, never their contents', () => {
    const err = tlsError('etcd', '127.0.0.1:2379', 'the server certificate is not signed by a trusted CA', { ca: pki.ca, cert: pki.client.cert, key: pki.client.key }, new Error('x'));
    assert.ok(err instanceof Determinate);
    assert.equal(err.code, ErrorCode.PermissionDenied);
    assert.match(err.message, /127\.0\.0\.1:2379.*not signed by a trusted CA/);
    assert.ok(err.message.includes(pki.client.key));
    assert.ok(!err.message.includes('PRIVATE KEY'));
  });

  test('a refused client certificate when none was given says the server wants one', () => {
    const problem = 'the server refused the client certificate';
    const without = tlsError('etcd', 'h:1', problem, { ca: pki.ca }, new Error('x'));
    assert.match(without.message, /requires a client certificate and none was given/);
    const withOne = tlsError('etcd', 'h:1', problem, { ca: pki.ca, cert: pki.client.cert, key: pki.client.key }, new Error('x'));
    assert.match(withOne.message, /refused the client certificate/);
  });

  test('readTlsFiles reads each named file', () => {
    const m = readTlsFiles({ ca: pki.ca, cert: pki.client.cert, key: pki.client.key }, 'etcd');
    assert.deepEqual(m.ca, readFileSync(pki.ca));
    assert.deepEqual(m.key, readFileSync(pki.client.key));
    assert.deepEqual(readTlsFiles({}, 'etcd'), {});
  });

  test('a certificate without its key, or an unreadable file, is InvalidArgument naming it', async () => {
    assert.throws(() => readTlsFiles({ cert: pki.client.cert }, 'etcd'), (e: unknown) => e instanceof Determinate && e.code === ErrorCode.InvalidArgument && /only cert=/.test(e.message));
    const missing = join(pki.dir, 'missing.pem');
    assert.throws(() => readTlsFiles({ ca: missing }, 'etcd'), (e: unknown) => e instanceof Determinate && e.code === ErrorCode.InvalidArgument && e.message.includes(missing) && /ENOENT/.test(e.message));
    const secret = join(pki.dir, 'secret.pem');
    await writeFile(secret, 'TOP-SECRET', { mode: 0o000 });
    // As root the mode does not stop reading; either way nothing of the content is printed.
    try {
      assert.equal(readTlsFiles({ ca: secret }, 'etcd').ca?.toString(), 'TOP-SECRET');
    } catch (e) {
      assert.ok(e instanceof Determinate && !String(e.message).includes('TOP-SECRET'), String(e));
    }
  });
});
