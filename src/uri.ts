/**
 * Location URIs: parsing that keeps relative paths relative (`file:rel/dir`,
 * which WHATWG URL would make absolute), query parameters checked against the
 * ones a backend accepts, and redaction so credentials are never printed back.
 */
import { invalidArgument } from './errors.js';

/** A location URI taken apart. */
export interface LocationUri {
  /** Lower-case scheme without the colon, e.g. `sqlite`. */
  scheme: string;
  /** What follows `//` up to the path (`user:pw@host:port`), or undefined without `//`. */
  authority: string | undefined;
  /** The percent-decoded path: absolute (`/a/b`) or relative (`a/b`). */
  path: string;
  /** Query parameters. */
  params: URLSearchParams;
  /** The URI as given, credentials redacted: safe to print. */
  display: string;
}

/** Splits a location URI. Rejects with Determinate InvalidArgument when malformed. */
export function parseLocationUri(uri: string): LocationUri {
  if (typeof uri !== 'string') throw invalidArgument(`location URI must be a string, got ${typeof uri}`);
  const display = redactUri(uri);
  const m = /^([a-zA-Z][a-zA-Z0-9+.-]*):(.*)$/s.exec(uri);
  if (m === null) throw invalidArgument(`not a location URI (no scheme): ${display}`);
  const scheme = m[1]!.toLowerCase();
  let rest = m[2]!;
  const hash = rest.indexOf('#');
  if (hash >= 0) throw invalidArgument(`location URI must not have a fragment: ${display}`);
  let query = '';
  const q = rest.indexOf('?');
  if (q >= 0) {
    query = rest.slice(q + 1);
    rest = rest.slice(0, q);
  }
  let authority: string | undefined;
  if (rest.startsWith('//')) {
    const slash = rest.indexOf('/', 2);
    authority = slash < 0 ? rest.slice(2) : rest.slice(2, slash);
    rest = slash < 0 ? '' : rest.slice(slash);
  }
  let path: string;
  try {
    path = decodeURIComponent(rest);
  } catch {
    throw invalidArgument(`location URI has a malformed percent-encoding: ${display}`);
  }
  return { scheme, authority, path, params: new URLSearchParams(query), display };
}

/**
 * Rejects parameters other than `allowed`, naming what is accepted, and returns
 * the parameters as a plain record (last value wins).
 */
export function checkParams(loc: LocationUri, allowed: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of loc.params) {
    if (!allowed.includes(name)) {
      const accepted = allowed.length === 0 ? 'none' : allowed.join(', ');
      throw invalidArgument(`unknown parameter '${name}' in ${loc.display}; ${loc.scheme}: accepts: ${accepted}`);
    }
    out[name] = value;
  }
  return out;
}

/** Reads a boolean parameter (`true`/`false`/`1`/`0`). */
export function boolParam(loc: LocationUri, value: string | undefined, name: string): boolean | undefined {
  if (value === undefined) return undefined;
  if (value === 'true' || value === '1') return true;
  if (value === 'false' || value === '0') return false;
  throw invalidArgument(`parameter ${name} of ${loc.display} must be true or false, got '${value}'`);
}

/** Reads a positive integer parameter. */
export function intParam(loc: LocationUri, value: string | undefined, name: string): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!/^[0-9]+$/.test(value) || !Number.isSafeInteger(n) || n < 1) {
    throw invalidArgument(`parameter ${name} of ${loc.display} must be a positive integer, got '${value}'`);
  }
  return n;
}

const SECRET_PARAM = /pass|secret|token|key|sig|credential/i;

/**
 * The URI with its password (and any secret-looking query parameter) replaced by
 * `***`, for messages and logs.
 */
export function redactUri(uri: string): string {
  return String(uri)
    // Like WHATWG URL (and so pg), the userinfo ends at the LAST '@' of the authority:
    // a password with a raw '@' must be hidden whole, not up to its first '@'.
    .replace(/^([a-zA-Z][a-zA-Z0-9+.-]*:\/\/)([^/?#]*)@/, (_all, scheme: string, userinfo: string) => {
      const colon = userinfo.indexOf(':');
      return colon < 0 ? `${scheme}${userinfo}@` : `${scheme}${userinfo.slice(0, colon)}:***@`;
    })
    .replace(/([?&])([^=&#]+)=([^&#]*)/g, (all, sep: string, name: string) =>
      SECRET_PARAM.test(decodeSafe(name)) ? `${sep}${name}=***` : all,
    );
}

function decodeSafe(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}
