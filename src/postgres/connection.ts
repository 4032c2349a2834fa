/**
 * The connection string, checked before any pool exists.
 *
 * `pg` parses a connection string only when its pool makes a connection, and reports
 * what it cannot use by throwing from inside `Pool#connect`: a malformed host or port
 * as a bare `TypeError: Invalid URL`, an unreadable `sslrootcert` as a plain fs
 * error, and a port it cannot use (`?port=abc`) from a socket it has already counted
 * as a client, so that `Pool#end` then waits for it forever. So the string is parsed
 * here, by the parser `pg` itself uses, every field `pg` would trip over is checked,
 * and the pool is given the parsed fields rather than the string: what was checked is
 * what is used.
 *
 * TLS follows libpq's `sslmode` (https://www.postgresql.org/docs/current/libpq-ssl.html),
 * not `pg`'s (which verifies everything fully whatever the mode says):
 *
 * | sslmode     | TLS  | chain checked                       | host name checked |
 * |-------------|------|-------------------------------------|-------------------|
 * | disable     | no   |                                     |                   |
 * | require     | yes  | only with `sslrootcert` (verify-ca) | no                |
 * | verify-ca   | yes  | against `sslrootcert` (required)    | no                |
 * | verify-full | yes  | against `sslrootcert`, else Node's  | yes               |
 * |             |      | trusted CAs                         |                   |
 * | no-verify   | yes  | no (`pg`'s own mode)                | no                |
 *
 * `sslrootcert=system` trusts Node's CAs and needs verify-full (as in libpq). With
 * no `sslmode`, a named `sslrootcert`/`sslcert`/`sslkey` means verify-full (`pg`'s
 * choice, stricter than libpq's `prefer`), and nothing named means no TLS (unless
 * `PGSSLMODE` says otherwise, read by `pg`). `prefer` and `allow` are refused:
 * they fall back between TLS and plain TCP, which `pg` cannot do. `sslcert` needs
 * `sslkey` and the reverse.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import type { ConnectionOptions } from 'node:tls';
import type pg from 'pg';
import { Determinate, ErrorCode } from '../errors.js';
import type { TlsPaths } from '../kit/tls.js';

/** `pg`'s own parser, loaded the way `pg` loads it (it is `pg`'s dependency, not ours). */
type ParseConnectionString = (connectionString: string, options?: { useLibpqCompat?: boolean }) => Record<string, unknown>;
const requireFromPg = createRequire(createRequire(import.meta.url).resolve('pg'));
const parse = (requireFromPg('pg-connection-string') as { parse: ParseConnectionString }).parse;

/** The sslmode values accepted (see the module comment). */
const SSL_MODES = ['disable', 'require', 'verify-ca', 'verify-full', 'no-verify'];

/** `sslrootcert=system`, as a query parameter (libpq's keyword for the system's CAs). */
const SYSTEM_ROOTS = /([?&])sslrootcert=system(?=&|#|$)/;

const SSL_FILES = ['sslcert', 'sslkey', 'sslrootcert'] as const;

/**
 * The `pg` client settings of a connection string, or a Determinate InvalidArgument
 * naming what is wrong. `display` is the string as it may be printed (password
 * redacted); nothing else of the string is echoed except host, port and file names.
 */
export function connectionConfig(connectionString: string, display: string): pg.ClientConfig {
  const fail = (problem: string, cause?: unknown) =>
    new Determinate(ErrorCode.InvalidArgument, `invalid PostgreSQL connection string ${display}: ${problem}`, { cause });
  if (typeof connectionString !== 'string') throw fail(`expected a string, got ${typeof connectionString}`);
  // `pg` resolves anything else against a dummy `postgres://base` URL, so a libpq
  // keyword/value string would silently connect to a host named `base`.
  if (!/^(postgres|postgresql|socket):/i.test(connectionString) && !connectionString.startsWith('/')) {
    throw fail('expected a postgres:// or postgresql:// URI');
  }
  // The query as pg's parser (a WHATWG URL) sees it.
  const query = new URLSearchParams(connectionString.split('?').slice(1).join('?').split('#')[0]);
  const sslmode = query.get('sslmode') ?? undefined;
  if (sslmode === 'prefer' || sslmode === 'allow') {
    throw fail(`sslmode=${sslmode} falls back between TLS and plain TCP, which pg cannot do; use sslmode=require (TLS, no verification) or sslmode=disable`);
  }
  if (sslmode !== undefined && !SSL_MODES.includes(sslmode)) {
    throw fail(`sslmode must be one of ${SSL_MODES.join(', ')}, got '${sslmode}'`);
  }
  const systemRoots = query.get('sslrootcert') === 'system';
  if (systemRoots && sslmode !== undefined && sslmode !== 'verify-full') {
    throw fail(`sslrootcert=system needs sslmode=verify-full, got sslmode=${sslmode}`);
  }
  if (sslmode === 'verify-ca' && !query.has('sslrootcert')) throw fail('sslmode=verify-ca needs sslrootcert=PATH, the CA to check the chain against');
  if (query.has('sslcert') !== query.has('sslkey')) {
    throw fail(`a client certificate needs both sslcert= and sslkey= (got only ${query.has('sslcert') ? 'sslcert=' : 'sslkey='})`);
  }
  let config: Record<string, unknown>;
  try {
    // libpq's modes, so that pg neither warns about them nor reads them its own way;
    // the TLS settings are then made here from scratch.
    config = parse(systemRoots ? connectionString.replace(SYSTEM_ROOTS, '$1') : connectionString, { useLibpqCompat: true });
  } catch (err) {
    throw fail(whyUnparsable(connectionString, err), err);
  }
  const port = config.port;
  if (port !== undefined && port !== null && port !== '' && !isPort(String(port))) {
    throw fail(`port must be an integer in 1-65535, got '${String(port)}'`);
  }
  const host = config.host;
  if (typeof host === 'string' && host.includes(',')) {
    throw fail(`connect to one host at a time (pg does not fail over between several), got '${host}'`);
  }
  const ssl = tlsOptions(sslmode ?? (systemRoots ? 'verify-full' : undefined), config.ssl);
  if (ssl !== undefined) config.ssl = ssl;
  return config as pg.ClientConfig;
}

/**
 * The `ssl` setting for `pg` (see the module comment), from the mode and the PEM
 * contents pg's parser read (`ca`, `cert`, `key`); undefined leaves it to `pg` (its
 * own `ssl=true`, or `PGSSLMODE`).
 */
function tlsOptions(sslmode: string | undefined, parsed: unknown): false | ConnectionOptions | undefined {
  const { ca, cert, key } = (typeof parsed === 'object' && parsed !== null ? parsed : {}) as { ca?: string; cert?: string; key?: string };
  const files: ConnectionOptions = { ...(ca !== undefined && { ca }), ...(cert !== undefined && { cert }), ...(key !== undefined && { key }) };
  const anyHostName = (): undefined => undefined;
  switch (sslmode ?? (Object.keys(files).length > 0 ? 'verify-full' : undefined)) {
    case undefined:
      return undefined;
    case 'disable':
      return false;
    case 'require':
      // libpq: with a root certificate, require is verify-ca.
      return ca === undefined ? { ...files, rejectUnauthorized: false } : { ...files, checkServerIdentity: anyHostName };
    case 'verify-ca':
      return { ...files, checkServerIdentity: anyHostName };
    case 'no-verify':
      return { ...files, rejectUnauthorized: false };
    default:
      return files;
  }
}

/** The TLS files a {@link connectionConfig} names, by their libpq parameter. */
export function tlsPathsOf(config: pg.ClientConfig): TlsPaths {
  const c = config as Record<string, unknown>;
  const path = (name: string): string | undefined => (typeof c[name] === 'string' ? (c[name] as string) : undefined);
  const [ca, cert, key] = [path('sslrootcert'), path('sslcert'), path('sslkey')];
  return { ...(ca !== undefined && { ca }), ...(cert !== undefined && { cert }), ...(key !== undefined && { key }) };
}

function readable(path: string): boolean {
  try {
    readFileSync(path);
    return true;
  } catch {
    return false;
  }
}

function isPort(s: string): boolean {
  return /^[0-9]{1,5}$/.test(s) && Number(s) >= 1 && Number(s) <= 65535;
}

/** Why `pg`'s parser refused the string, in words that name the part at fault. */
function whyUnparsable(connectionString: string, err: unknown): string {
  const fsError = err as { code?: unknown; syscall?: unknown; path?: unknown };
  if (typeof fsError.code === 'string' && typeof fsError.syscall === 'string') {
    // The parser reads the certificate and key files named in the string, in this
    // order; a read error (EISDIR) may not say which path it was: the first one that
    // cannot be read is.
    const params = new URLSearchParams(connectionString.split('?')[1] ?? '');
    const named = SSL_FILES.filter((name) => params.get(name) !== null);
    const param = named.find((name) => params.get(name) === fsError.path) ?? named.find((name) => !readable(params.get(name)!));
    if (param === undefined) return `cannot read one of the files named by ${named.join(', ')} (${fsError.code})`;
    return `cannot read the ${param} file '${params.get(param)}' (${fsError.code})`;
  }
  if (err instanceof URIError) return 'malformed percent-encoding in the user name or password';
  if ((err as { code?: unknown }).code !== 'ERR_INVALID_URL') {
    // pg's own messages are about the sslmode or libpq compatibility, never the credentials.
    return err instanceof Error ? err.message : String(err);
  }
  // The host and port follow the last '@' of the authority (WHATWG URL, as pg parses it).
  const authority = /^[a-z]+:\/\/([^/?#]*)/i.exec(connectionString)?.[1] ?? '';
  const hostPort = authority.slice(authority.lastIndexOf('@') + 1);
  if (hostPort.startsWith('[') && !hostPort.includes(']')) return `unclosed '[' in the host (an IPv6 address is written [::1])`;
  const colon = hostPort.startsWith('[') ? hostPort.indexOf(':', hostPort.indexOf(']')) : hostPort.lastIndexOf(':');
  const port = colon < 0 ? '' : hostPort.slice(colon + 1);
  if (port !== '' && !isPort(port)) {
    // Only digits are echoed: an unencoded '/' in a password would end the authority early.
    return /^[0-9]+$/.test(port) ? `port must be an integer in 1-65535, got '${port}'` : 'port must be an integer in 1-65535';
  }
  const host = colon < 0 ? hostPort : hostPort.slice(0, colon);
  return host === '' ? 'no host before the port' : `malformed host '${host}'`;
}
