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
 */
import { createRequire } from 'node:module';
import type pg from 'pg';
import { Determinate, ErrorCode } from '../errors.js';

/** `pg`'s own parser, loaded the way `pg` loads it (it is `pg`'s dependency, not ours). */
type ParseConnectionString = (connectionString: string) => Record<string, unknown>;
const requireFromPg = createRequire(createRequire(import.meta.url).resolve('pg'));
const parse = (requireFromPg('pg-connection-string') as { parse: ParseConnectionString }).parse;

/** The sslmode values `pg` implements (libpq's `allow` it would treat as `verify-full`). */
const SSL_MODES = ['disable', 'prefer', 'require', 'verify-ca', 'verify-full', 'no-verify'];

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
  let config: Record<string, unknown>;
  try {
    config = parse(connectionString);
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
  const sslmode = config.sslmode;
  if (sslmode !== undefined && (typeof sslmode !== 'string' || !SSL_MODES.includes(sslmode))) {
    throw fail(`sslmode must be one of ${SSL_MODES.join(', ')}, got '${String(sslmode)}'`);
  }
  return config as pg.ClientConfig;
}

function isPort(s: string): boolean {
  return /^[0-9]{1,5}$/.test(s) && Number(s) >= 1 && Number(s) <= 65535;
}

/** Why `pg`'s parser refused the string, in words that name the part at fault. */
function whyUnparsable(connectionString: string, err: unknown): string {
  const fsError = err as { code?: unknown; syscall?: unknown; path?: unknown };
  if (typeof fsError.code === 'string' && typeof fsError.syscall === 'string') {
    // The parser reads the certificate and key files named in the string, in this
    // order; a read error (EISDIR) may not say which path it was.
    const params = new URLSearchParams(connectionString.split('?')[1] ?? '');
    const named = SSL_FILES.filter((name) => params.get(name) !== null);
    const param = named.find((name) => params.get(name) === fsError.path) ?? (named.length === 1 ? named[0] : undefined);
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
