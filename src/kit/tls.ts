/**
 * TLS for the server backends: the certificate files a location names, and what a
 * failed handshake means.
 *
 * A handshake that fails is a setup problem, not a passing one: the server's
 * certificate is not signed by a CA the client trusts, names another host, the
 * server wants a client certificate it did not get (or refuses the one it got).
 * Retrying cannot help, so each is reported as Determinate PermissionDenied (a
 * handshake fails before any request is sent), with a message naming the problem
 * and the files involved, never their contents.
 */
import { readFileSync } from 'node:fs';
import { Determinate, ErrorCode, invalidArgument } from '../errors.js';

/** Paths of the PEM files a location's TLS parameters name. */
export interface TlsPaths {
  /** CA bundle the server's certificate must chain to (default: Node's trusted roots). */
  readonly ca?: string | undefined;
  /** Client certificate chain, presented when the server asks for one. */
  readonly cert?: string | undefined;
  /** The client certificate's private key. */
  readonly key?: string | undefined;
}

/** The contents of {@link TlsPaths}' files. */
export interface TlsMaterial {
  readonly ca?: Buffer;
  readonly cert?: Buffer;
  readonly key?: Buffer;
}

/**
 * Reads the files of `paths` (synchronously: a few small files, once per handle). A
 * client certificate without its key (or the reverse), or a file that cannot be
 * read, throws Determinate InvalidArgument naming the parameter and the path.
 */
export function readTlsFiles(paths: TlsPaths, backend: string): TlsMaterial {
  if ((paths.cert === undefined) !== (paths.key === undefined)) {
    throw invalidArgument(`${backend}: a client certificate needs both cert= and key= (got only ${paths.cert === undefined ? 'key=' : 'cert='})`);
  }
  const read = (param: keyof TlsPaths): Buffer | undefined => {
    const path = paths[param];
    if (path === undefined) return undefined;
    try {
      return readFileSync(path);
    } catch (err) {
      const code = (err as { code?: string }).code ?? 'unreadable';
      throw new Determinate(ErrorCode.InvalidArgument, `${backend}: cannot read the ${param}= file ${path} (${code})`, { cause: err });
    }
  };
  const [ca, cert, key] = [read('ca'), read('cert'), read('key')];
  return { ...(ca && { ca }), ...(cert && { cert }), ...(key && { key }) };
}

/** Node's codes for a server certificate the client does not accept. */
const UNTRUSTED = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'CERT_SIGNATURE_FAILURE',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'INVALID_CA',
]);
const EXPIRED = new Set(['CERT_HAS_EXPIRED', 'CERT_NOT_YET_VALID']);

const REFUSED_CLIENT_CERT = 'the server refused the client certificate';
const CLIENT_CERT_REQUIRED = 'the server requires a client certificate';

/** Patterns for the same problems where only a message survives (gRPC folds errors into text). */
const MESSAGES: readonly (readonly [RegExp, string])[] = [
  [/ERR_TLS_CERT_ALTNAME_INVALID|does not match certificate's altnames|Hostname\/IP does not match/i, 'the server certificate does not name the host connected to'],
  [/self[- ]signed certificate|unable to verify the first certificate|unable to get (local )?issuer certificate|certificate signature failure/i, 'the server certificate is not signed by a trusted CA'],
  [/certificate has expired|certificate is not yet valid/i, 'the server certificate is expired or not yet valid'],
  [/CERTIFICATE_REQUIRED|certificate required|peer did not return a certificate/i, CLIENT_CERT_REQUIRED],
  [/ALERT_BAD_CERTIFICATE|ALERT_UNKNOWN_CA|alert bad certificate|alert unknown ca|ALERT_CERTIFICATE_UNKNOWN/i, REFUSED_CLIENT_CERT],
  [/wrong version number|ERR_SSL_WRONG_VERSION_NUMBER|packet length too long/i, 'the server does not speak TLS on this port'],
];

/**
 * What went wrong with a TLS handshake, in words, when `err` (or anything it wraps)
 * is a handshake failure; otherwise undefined.
 */
export function tlsProblem(err: unknown): string | undefined {
  for (const e of causes(err)) {
    const { code, message } = e as { code?: unknown; message?: unknown };
    if (typeof code === 'string') {
      if (UNTRUSTED.has(code)) return 'the server certificate is not signed by a trusted CA';
      if (EXPIRED.has(code)) return 'the server certificate is expired or not yet valid';
      if (code === 'ERR_TLS_CERT_ALTNAME_INVALID') return 'the server certificate does not name the host connected to';
    }
    const text = `${typeof code === 'string' ? code : ''} ${typeof message === 'string' ? message : ''} ${typeof (e as { details?: unknown }).details === 'string' ? (e as { details: string }).details : ''}`;
    for (const [pattern, problem] of MESSAGES) if (pattern.test(text)) return problem;
  }
  return undefined;
}

/**
 * The error for a failed handshake: Determinate PermissionDenied naming `problem`
 * (from {@link tlsProblem}) and where the client looked for its certificates. A
 * server that refuses "the client certificate" when none was given wants one
 * (TLS 1.2 servers answer a missing certificate with the same alert as a bad one).
 */
export function tlsError(
  backend: string,
  target: string,
  problem: string,
  paths: TlsPaths,
  cause: unknown,
  /** The parameters naming the files, as the location spells them. */
  names: Readonly<Record<keyof TlsPaths, string>> = { ca: 'ca', cert: 'cert', key: 'key' },
): Determinate {
  if (problem === REFUSED_CLIENT_CERT && paths.cert === undefined) problem = `${CLIENT_CERT_REQUIRED} and none was given`;
  const all = ['ca', 'cert', 'key'] as const;
  const named = all.filter((p) => paths[p] !== undefined).map((p) => `${names[p]}=${paths[p]}`);
  const using = named.length === 0 ? `no ${all.map((p) => `${names[p]}=`).join('/')} given` : `using ${named.join(', ')}`;
  return new Determinate(ErrorCode.PermissionDenied, `${backend}: TLS handshake with ${target} failed: ${problem} (${using})`, { cause });
}

/** `err`, its causes and the errors of any AggregateError, breadth first, bounded. */
function* causes(err: unknown): Generator<unknown> {
  const queue = [err];
  for (let seen = 0; queue.length > 0 && seen < 32; seen++) {
    const e = queue.shift();
    if (e === null || typeof e !== 'object') continue;
    yield e;
    const { cause, errors } = e as { cause?: unknown; errors?: unknown };
    if (cause !== undefined) queue.push(cause);
    if (Array.isArray(errors)) queue.push(...errors);
  }
}
