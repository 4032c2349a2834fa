// S3 and Azure over https with a private CA, against s3rver and Azurite serving
// throwaway certificates: a working round trip with `ca=`, each refused handshake as
// Determinate PermissionDenied naming the problem (never a key), the AWS provider
// chain picking a profile file and web-identity variables, and an Azure AD token
// from a local managed-identity endpoint that Azurite (`--oauth basic`) accepts.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { S3Client } from '@aws-sdk/client-s3';
import { CaSResult, Determinate, ErrorCode, openBlob, openConsensus, SeqNo, type Blob } from 'persist-location';
import { defaultClientConfig } from 'persist-location/s3';
import { httpVerdict, transportFailure } from '../src/kit/http-errors.js';
import { AZURITE_KEY, startAzurite, type AzuriteServer } from './servers/azurite.js';
import { S3RVER_CREDENTIALS, S3rverProcess } from './servers/s3rver.js';
import { makeTestPki, type TestPki } from './servers/tls.js';

let pki: TestPki;
before(async () => {
  pki = await makeTestPki();
});
after(() => pki?.remove());

/** Sets environment variables (undefined deletes) and returns a function restoring them. */
function setEnv(vars: Record<string, string | undefined>): () => void {
  const saved = Object.fromEntries(Object.keys(vars).map((name) => [name, process.env[name]]));
  const apply = (values: Record<string, string | undefined>) => {
    for (const [name, value] of Object.entries(values)) {
      if (value === undefined) delete process.env[name];
      else process.env[name] = value;
    }
  };
  apply(vars);
  return () => apply(saved);
}

/** Lines of a PEM file's body: none may ever appear in a message. */
function pemLines(path: string): string[] {
  return readFileSync(path, 'utf8').split('\n').filter((l) => l.length >= 16 && !l.startsWith('-----'));
}

/** A set and a get through `blob`. */
async function roundTrip(blob: Blob): Promise<void> {
  const key = `k-${randomUUID()}`;
  await blob.set(key, Buffer.from('hello'));
  assert.equal(Buffer.from((await blob.get(key))!.toContiguous()).toString(), 'hello');
}

/**
 * A set through `uri` (opened as Blob) rejects Determinate PermissionDenied matching
 * `problem`, holding neither a line of a key file nor any of `secrets`.
 */
async function refused(uri: string, problem: RegExp, secrets: readonly string[] = []): Promise<void> {
  const outcome = await openBlob(uri).then(
    async (blob) => {
      try {
        await blob.set(`k-${randomUUID()}`, Buffer.from('v'));
        return undefined;
      } catch (err) {
        return err;
      } finally {
        await blob.close();
      }
    },
    (err: unknown) => err,
  );
  assert.ok(outcome instanceof Determinate, `expected Determinate PermissionDenied, got ${outcome === undefined ? 'success' : String(outcome)}`);
  assert.equal(outcome.code, ErrorCode.PermissionDenied, outcome.message);
  assert.match(outcome.message, problem);
  for (const secret of [...secrets, ...pemLines(pki.server.key), ...pemLines(pki.wrongHost.key), ...pemLines(pki.client.key)]) {
    assert.ok(!outcome.message.includes(secret), `the message shows a secret: ${outcome.message}`);
  }
}

const q = encodeURIComponent;
const BIN = fileURLToPath(new URL('../../bin/persist-location.js', import.meta.url));

/** `persist-location check` of Consensus at `uri` passes (a child process with `env` added, bounded by 150 s). */
async function checkPasses(uri: string, env: Record<string, string> = {}): Promise<void> {
  const cwd = mkdtempSync(join(tmpdir(), 'persist-cloud-cli-'));
  const args = ['check', '--only', 'consensus', '--consensus', uri, '--ops', '200', '--json', '--quiet'];
  const { status, out, err } = await new Promise<{ status: number | null; out: string; err: string }>((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { cwd, env: { ...process.env, ...env, NO_COLOR: '1' }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`persist-location check still running after 150 s:\n${out}\n${err}`));
    }, 150_000);
    child.on('error', reject);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ status: code, out, err });
    });
  }).finally(() => rmSync(cwd, { recursive: true, force: true }));
  assert.equal(status, 0, `${out}\n${err}`);
  assert.equal((JSON.parse(out) as { ok: boolean }).ok, true, out);
}

test('the shared HTTP table: a failed handshake is PermissionDenied, refused, and only without a response', () => {
  const altname = Object.assign(new Error("Hostname/IP does not match certificate's altnames"), { code: 'ERR_TLS_CERT_ALTNAME_INVALID' });
  const untrusted = Object.assign(new Error('unable to verify the first certificate'), { code: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE' });
  for (const err of [altname, untrusted, new Error('request failed', { cause: untrusted })]) {
    const failure = transportFailure(err);
    assert.ok(failure.tls !== undefined, String(err));
    assert.deepEqual({ ...httpVerdict(failure), reason: undefined }, { code: ErrorCode.PermissionDenied, refused: true, reason: undefined });
    assert.equal(httpVerdict({ ...failure, status: 503 }).code, ErrorCode.Unavailable, 'a response is not a handshake failure');
  }
  assert.equal(transportFailure(Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' })).tls, undefined);
});

describe('S3 over https with a private CA (s3rver)', () => {
  let good: S3rverProcess;
  let wrongHost: S3rverProcess;
  let restore: () => void;
  const s3 = (server: S3rverProcess, extra = '', prefix: string = randomUUID()) => `s3://tls/${prefix}?endpoint=${q(server.endpoint)}&forcePathStyle=true${extra}`;

  before(async () => {
    restore = setEnv({ AWS_ACCESS_KEY_ID: S3RVER_CREDENTIALS.accessKeyId, AWS_SECRET_ACCESS_KEY: S3RVER_CREDENTIALS.secretAccessKey, AWS_PROFILE: undefined });
    [good, wrongHost] = await Promise.all([
      S3rverProcess.start(['tls'], { atomic: true, tls: pki.server }),
      S3rverProcess.start(['tls'], { tls: pki.wrongHost }),
    ]);
  });
  after(async () => {
    await Promise.all([good?.stop(), wrongHost?.stop()]);
    restore?.();
  });

  test('Blob and Consensus work with ca= naming the private CA', async () => {
    assert.match(good.endpoint, /^https:/);
    const blob = await openBlob(s3(good, `&ca=${q(pki.ca)}`));
    try {
      await roundTrip(blob);
    } finally {
      await blob.close();
    }
    const consensus = await openConsensus(s3(good, `&ca=${q(pki.ca)}`));
    try {
      assert.equal(await consensus.compareAndSet('k', undefined, { seqno: new SeqNo(1), data: Buffer.from('v') }), CaSResult.Committed);
    } finally {
      await consensus.close();
    }
  });

  test('an untrusted certificate and a wrong host name are Determinate PermissionDenied', async () => {
    await refused(s3(good), /TLS handshake failed: the server certificate is not signed by a trusted CA/, [S3RVER_CREDENTIALS.secretAccessKey]);
    await refused(s3(good, `&ca=${q(pki.otherCa)}`), /TLS handshake failed: the server certificate is not signed by a trusted CA/);
    await refused(s3(wrongHost, `&ca=${q(pki.ca)}`), /TLS handshake failed: the server certificate does not name the host connected to/);
  });

  test('persist-location check passes, trusting the CA through NODE_EXTRA_CA_CERTS', { timeout: 180_000 }, async () => {
    // A short prefix: under a 36-character one the suite's over-long-key case fails,
    // whatever the transport (S3Consensus's message names the encoded-name limit, not
    // the key limit the suite looks for).
    await checkPasses(s3(good, '', 'check'), { NODE_EXTRA_CA_CERTS: pki.ca });
  });

  test('an unreadable ca= file is Determinate InvalidArgument naming the path', async () => {
    const missing = join(pki.dir, 'missing.crt');
    await assert.rejects(openBlob(s3(good, `&ca=${q(missing)}`)), (err: unknown) =>
      err instanceof Determinate && err.code === ErrorCode.InvalidArgument && err.message.includes(missing) && /ENOENT/.test(err.message));
  });
});

describe('the AWS provider chain (s3rver)', () => {
  let server: S3rverProcess;
  let sts: Server;
  const stsRequests: { body: string }[] = [];
  let restore: () => void;
  const s3 = () => `s3://creds/${randomUUID()}?endpoint=${q(server.endpoint)}&forcePathStyle=true`;
  const chain = (): Record<string, string | undefined> => ({
    AWS_ACCESS_KEY_ID: undefined,
    AWS_SECRET_ACCESS_KEY: undefined,
    AWS_SESSION_TOKEN: undefined,
    AWS_PROFILE: undefined,
    AWS_SHARED_CREDENTIALS_FILE: join(pki.dir, 'no-credentials'),
    AWS_CONFIG_FILE: join(pki.dir, 'no-config'),
    AWS_WEB_IDENTITY_TOKEN_FILE: undefined,
    AWS_ROLE_ARN: undefined,
    AWS_ROLE_SESSION_NAME: undefined,
    AWS_EC2_METADATA_DISABLED: 'true',
  });

  before(async () => {
    restore = setEnv(chain());
    server = await S3rverProcess.start(['creds']);
    // A stand-in for STS's AssumeRoleWithWebIdentity: hands out s3rver's keys.
    sts = createServer((req, res) => {
      void body(req).then((text) => {
        stsRequests.push({ body: text });
        res.writeHead(200, { 'content-type': 'text/xml' });
        res.end(
          `<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><AssumeRoleWithWebIdentityResult>` +
            `<Credentials><AccessKeyId>${S3RVER_CREDENTIALS.accessKeyId}</AccessKeyId><SecretAccessKey>${S3RVER_CREDENTIALS.secretAccessKey}</SecretAccessKey>` +
            `<SessionToken>session-token</SessionToken><Expiration>${new Date(Date.now() + 3_600_000).toISOString()}</Expiration></Credentials>` +
            `<AssumedRoleUser><Arn>arn:aws:sts::123456789012:assumed-role/persist/test</Arn><AssumedRoleId>AROA:test</AssumedRoleId></AssumedRoleUser>` +
            `</AssumeRoleWithWebIdentityResult><ResponseMetadata><RequestId>1</RequestId></ResponseMetadata></AssumeRoleWithWebIdentityResponse>`,
        );
      });
    });
    await new Promise<void>((resolve) => sts.listen(0, '127.0.0.1', resolve));
  });
  after(async () => {
    await server?.stop();
    await new Promise((resolve) => sts?.close(resolve));
    restore?.();
  });

  test('a profile of a shared credentials file (AWS_SHARED_CREDENTIALS_FILE + AWS_PROFILE)', async () => {
    const file = join(pki.dir, 'aws-credentials');
    writeFileSync(
      file,
      `[default]\naws_access_key_id = WRONG\naws_secret_access_key = WRONG\n\n[persist]\naws_access_key_id = ${S3RVER_CREDENTIALS.accessKeyId}\naws_secret_access_key = ${S3RVER_CREDENTIALS.secretAccessKey}\n`,
    );
    const undo = setEnv({ AWS_SHARED_CREDENTIALS_FILE: file, AWS_PROFILE: 'persist' });
    try {
      const sdk = new S3Client(defaultClientConfig({ region: 'us-east-1' }));
      assert.equal((await sdk.config.credentials()).accessKeyId, S3RVER_CREDENTIALS.accessKeyId);
      sdk.destroy();
      const blob = await openBlob(s3());
      try {
        await roundTrip(blob);
      } finally {
        await blob.close();
      }
      // The default profile's keys are the wrong ones: s3rver refuses them.
      process.env.AWS_PROFILE = 'default';
      await refused(s3(), /permission denied/i, ['WRONG']);
    } finally {
      undo();
    }
  });

  test('web identity (AWS_WEB_IDENTITY_TOKEN_FILE + AWS_ROLE_ARN) through a stand-in STS', async () => {
    const tokenFile = join(pki.dir, 'web-identity-token');
    const token = `web-identity-${randomUUID()}`;
    writeFileSync(tokenFile, token);
    const undo = setEnv({
      AWS_WEB_IDENTITY_TOKEN_FILE: tokenFile,
      AWS_ROLE_ARN: 'arn:aws:iam::123456789012:role/persist',
      AWS_ROLE_SESSION_NAME: 'persist-test',
      AWS_ENDPOINT_URL_STS: `http://127.0.0.1:${(sts.address() as AddressInfo).port}`,
      AWS_REGION: 'us-east-1',
    });
    try {
      const sdk = new S3Client(defaultClientConfig({ region: 'us-east-1' }));
      const credentials = await sdk.config.credentials();
      sdk.destroy();
      assert.equal(credentials.accessKeyId, S3RVER_CREDENTIALS.accessKeyId);
      assert.equal(credentials.sessionToken, 'session-token');
      const asked = stsRequests.at(-1)?.body ?? '';
      assert.match(asked, /Action=AssumeRoleWithWebIdentity/);
      assert.ok(asked.includes(`WebIdentityToken=${token}`), 'STS got the token file');
      assert.ok(asked.includes(q('arn:aws:iam::123456789012:role/persist')), 'STS got the role');
      const blob = await openBlob(s3());
      try {
        await roundTrip(blob);
      } finally {
        await blob.close();
      }
    } finally {
      undo();
    }
  });
});

function body(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString()));
    req.on('error', reject);
  });
}

/** An unsigned JWT with `claims` (Azurite's `--oauth basic` does not check signatures). */
function jwt(claims: Record<string, unknown>): string {
  const part = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
  return `${part({ alg: 'none', typ: 'JWT' })}.${part(claims)}.`;
}

describe('Azure over https with a private CA, and Azure AD tokens (Azurite)', () => {
  let azurite: AzuriteServer;
  let wrongHost: S3rverProcess;
  let identity: Server;
  const IDENTITY_HEADER = `identity-header-${randomUUID()}`;
  let refuseTokens = false;
  const tokenRequests: { url: string; header: string | undefined }[] = [];
  let restore: () => void;
  const azure = (extra = '') => `azure://tls-${randomUUID().slice(0, 8)}?endpoint=${q(azurite.endpoint)}&createContainer=true${extra}`;

  before(async () => {
    restore = setEnv({ AZURE_STORAGE_CONNECTION_STRING: undefined, AZURE_STORAGE_ACCOUNT: undefined, AZURE_STORAGE_KEY: undefined, IDENTITY_ENDPOINT: undefined, IDENTITY_HEADER: undefined });
    [azurite, wrongHost] = await Promise.all([startAzurite({ tls: pki.server, oauth: true }), S3rverProcess.start(['unused'], { tls: pki.wrongHost })]);
    // App Service's managed-identity endpoint, as IDENTITY_ENDPOINT/IDENTITY_HEADER describe it.
    identity = createServer((req, res) => {
      tokenRequests.push({ url: req.url ?? '', header: req.headers['x-identity-header'] as string | undefined });
      if (refuseTokens || req.headers['x-identity-header'] !== IDENTITY_HEADER) {
        res.writeHead(400, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ error: 'invalid_request', error_description: 'no identity here' }));
        return;
      }
      const now = Math.floor(Date.now() / 1000);
      // A token for another service, to the user-assigned identity of that name.
      const wrongAudience = new URL(req.url ?? '/', 'http://x').searchParams.get('client_id') === 'wrong-audience';
      const access = jwt({
        aud: wrongAudience ? 'https://vault.azure.net' : 'https://storage.azure.com',
        iss: 'https://sts.windows.net/00000000-0000-0000-0000-000000000000/',
        iat: now - 60,
        nbf: now - 60,
        exp: now + 3600,
      });
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ access_token: access, expires_on: String(now + 3600), resource: 'https://storage.azure.com', token_type: 'Bearer' }));
    });
    await new Promise<void>((resolve) => identity.listen(0, '127.0.0.1', resolve));
  });
  after(async () => {
    await Promise.all([azurite?.stop(), wrongHost?.stop()]);
    await new Promise((resolve) => identity?.close(resolve));
    restore?.();
  });

  test('Blob and Consensus work over https with ca= and the account key', async () => {
    assert.match(azurite.endpoint, /^https:/);
    const undo = setEnv({ AZURE_STORAGE_CONNECTION_STRING: azurite.connectionString });
    try {
      const blob = await openBlob(azure(`&ca=${q(pki.ca)}`));
      try {
        await roundTrip(blob);
      } finally {
        await blob.close();
      }
      const consensus = await openConsensus(azure(`&ca=${q(pki.ca)}`));
      try {
        assert.equal(await consensus.compareAndSet('k', undefined, { seqno: new SeqNo(1), data: Buffer.from('v') }), CaSResult.Committed);
      } finally {
        await consensus.close();
      }
    } finally {
      undo();
    }
  });

  test('an untrusted certificate and a wrong host name are Determinate PermissionDenied', async () => {
    const undo = setEnv({ AZURE_STORAGE_CONNECTION_STRING: azurite.connectionString });
    try {
      await refused(azure(), /TLS handshake failed: the server certificate is not signed by a trusted CA/, [AZURITE_KEY]);
      await refused(azure(`&ca=${q(pki.otherCa)}`), /TLS handshake failed: the server certificate is not signed by a trusted CA/, [AZURITE_KEY]);
      const wrong = `azure://tls-wrong?endpoint=${q(`${wrongHost.endpoint}/devstoreaccount1`)}&ca=${q(pki.ca)}`;
      await refused(wrong, /TLS handshake failed: the server certificate does not name the host connected to/, [AZURITE_KEY]);
    } finally {
      undo();
    }
  });

  test('persist-location check passes with ca=', { timeout: 180_000 }, async () => {
    await checkPasses(azure(`&ca=${q(pki.ca)}`), { AZURE_STORAGE_CONNECTION_STRING: azurite.connectionString });
  });

  test('without a key or connection string, DefaultAzureCredential gets a token from the managed-identity endpoint', async () => {
    const undo = setEnv({ IDENTITY_ENDPOINT: `http://127.0.0.1:${(identity.address() as AddressInfo).port}/msi/token`, IDENTITY_HEADER, AZURE_CLIENT_ID: undefined });
    try {
      refuseTokens = true;
      await refused(azure(`&ca=${q(pki.ca)}`), /no Azure AD token/, [IDENTITY_HEADER]);
      refuseTokens = false;
      // (msal caches managed-identity tokens per process and identity: this one has its own.)
      process.env.AZURE_CLIENT_ID = 'wrong-audience';
      await refused(azure(`&ca=${q(pki.ca)}`), /permission denied \(HTTP 403 AuthenticationFailed\)/, [IDENTITY_HEADER]);
      delete process.env.AZURE_CLIENT_ID;
      const before = tokenRequests.length;
      const blob = await openBlob(azure(`&ca=${q(pki.ca)}`));
      try {
        await roundTrip(blob);
      } finally {
        await blob.close();
      }
      const asked = tokenRequests.slice(before);
      assert.ok(asked.length >= 1, 'the token endpoint was asked');
      assert.equal(asked[0]!.header, IDENTITY_HEADER);
      assert.match(decodeURIComponent(asked[0]!.url), /resource=https:\/\/storage\.azure\.com/);
    } finally {
      undo();
    }
  });
});
