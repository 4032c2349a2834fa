/**
 * Location URIs: parsing that keeps relative paths relative (`file:rel/dir`,
 * which WHATWG URL would make absolute), query parameters checked against the
 * ones a backend accepts, and redaction so credentials are never printed back.
 */
import { homedir } from 'node:os';
import { isAbsolute, join, resolve } from 'node:path';
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
  /**
   * True when the password may run past the authority: it holds a raw '/', '?' or '#'
   * (or the path or query holds an '@'). The path and parameters may then be pieces of
   * the password, so messages must print none of them, only {@link display}. Absent
   * (a LocationUri built by hand) reads as false.
   */
  partsMayHoldPassword?: boolean;
}

/** Splits a location URI. Rejects with Determinate InvalidArgument when malformed. */
export function parseLocationUri(uri: string): LocationUri {
  if (typeof uri !== 'string') throw invalidArgument(`location URI must be a string, got ${typeof uri}`);
  const display = redactUri(uri);
  const span = passwordSpan(uri);
  const partsMayHoldPassword = span !== undefined && /[/?#]/.test(uri.slice(span.start, span.end));
  const hint = partsMayHoldPassword ? ` (${ENCODE_HINT})` : '';
  const m = /^([a-zA-Z][a-zA-Z0-9+.-]*):(.*)$/s.exec(uri);
  if (m === null) throw invalidArgument(`not a location URI (no scheme): ${display}`);
  const scheme = m[1]!.toLowerCase();
  let rest = m[2]!;
  const hash = rest.indexOf('#');
  if (hash >= 0) throw invalidArgument(`location URI must not have a fragment: ${display}${hint}`);
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
    throw invalidArgument(`location URI has a malformed percent-encoding: ${display}${hint}`);
  }
  return { scheme, authority, path, params: new URLSearchParams(query), display, partsMayHoldPassword };
}

/**
 * The absolute path a local location (`file:`, `sqlite:`) names: a relative path is
 * taken from `cwd`. A path starting with `~` rejects Determinate InvalidArgument: a
 * URI is not a shell, so `sqlite:~/x.db` would be a directory named `~` inside the
 * working directory; the message gives the absolute path the user probably meant.
 */
export function localPathOf(loc: LocationUri, cwd: string = process.cwd()): string {
  const tilde = /^~[^/]*/.exec(loc.path);
  if (tilde !== null) {
    const meant = tilde[0] === '~' ? join(homedir(), loc.path.slice(1)) : `/ABSOLUTE/PATH${loc.path.slice(tilde[0].length)}`;
    throw invalidArgument(
      `${loc.display}: '~' is not expanded in a location URI (it would name a directory '${tilde[0]}' in the working directory); write an absolute path, e.g. ${loc.scheme}://${meant}`,
    );
  }
  return isAbsolute(loc.path) ? loc.path : resolve(cwd, loc.path);
}

/** Said in messages about a URI whose password may hold a character that ends the authority. */
const ENCODE_HINT = "percent-encode '/', '?', '#', '@' and '%' in a password: %2F, %3F, %23, %40, %25";

/**
 * Rejects parameters other than `allowed`, naming what is accepted, and returns
 * the parameters as a plain record (last value wins).
 */
export function checkParams(loc: LocationUri, allowed: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of loc.params) {
    if (!allowed.includes(name)) {
      const accepted = allowed.length === 0 ? 'none' : allowed.join(', ');
      const which = loc.partsMayHoldPassword
        ? `an unknown parameter in ${loc.display} (its name is not shown, it may be part of the password; ${ENCODE_HINT})`
        : `unknown parameter '${name}' in ${loc.display}`;
      throw invalidArgument(`${which}; ${loc.scheme}: accepts: ${accepted}`);
    }
    out[name] = value;
  }
  return out;
}

/** A parameter's value as messages may show it. */
function shown(loc: LocationUri, value: string): string {
  return loc.partsMayHoldPassword ? '(not shown: it may be part of the password)' : `'${value}'`;
}

/** Reads a boolean parameter (`true`/`false`/`1`/`0`). */
export function boolParam(loc: LocationUri, value: string | undefined, name: string): boolean | undefined {
  if (value === undefined) return undefined;
  if (value === 'true' || value === '1') return true;
  if (value === 'false' || value === '0') return false;
  throw invalidArgument(`parameter ${name} of ${loc.display} must be true or false, got ${shown(loc, value)}`);
}

/** Reads a positive integer parameter. */
export function intParam(loc: LocationUri, value: string | undefined, name: string): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!/^[0-9]+$/.test(value) || !Number.isSafeInteger(n) || n < 1) {
    throw invalidArgument(`parameter ${name} of ${loc.display} must be a positive integer, got ${shown(loc, value)}`);
  }
  return n;
}

/**
 * Query parameters whose values are never printed: passwords (`password`,
 * `sslpassword`), keys and key files (`sslkey`, `AccountKey`, `secretAccessKey`),
 * tokens, signatures (Azure SAS `sig`), credentials and connection strings.
 */
const SECRET_PARAM = /pass|secret|token|key|sig|credential|auth|connection/i;

const SCHEME_AND_SLASHES = /^[a-zA-Z][a-zA-Z0-9+.-]*:\/\//;

/**
 * Where the password of `uri` lies, found by position so that no character in it
 * can hide it: from the first ':' after `scheme://` (when the user name before that
 * ':' holds no '/', '?' or '#', else there is no user name) to the LAST '@' of the
 * URI. A password may hold a raw '@', ':', '/', '?' or '#'; an '@' further on in the
 * path or query makes the span longer than the password, which only hides more.
 */
function passwordSpan(uri: string): { start: number; end: number } | undefined {
  const prefix = SCHEME_AND_SLASHES.exec(uri);
  if (prefix === null) return undefined;
  const colon = uri.indexOf(':', prefix[0].length);
  if (colon < 0 || /[/?#]/.test(uri.slice(prefix[0].length, colon))) return undefined;
  const at = uri.lastIndexOf('@');
  return at > colon ? { start: colon + 1, end: at } : undefined;
}

/**
 * Every `name=value` of the query, with where its raw value starts. Found as text
 * rather than parsed: a name is looked for after every '?' and '&', even inside an
 * earlier value (a raw '?' of a password, an endpoint URL), and a value runs to the
 * next '&'.
 */
function* rawParams(uri: string): Generator<{ name: string; value: string; at: number }> {
  for (const m of uri.matchAll(/[?&]([^=&?]+)=/g)) {
    const at = m.index + m[0].length;
    const amp = uri.indexOf('&', at);
    yield { name: m[1]!, value: uri.slice(at, amp < 0 ? uri.length : amp), at };
  }
}

/**
 * The URI with its password (and the values of secret-looking query parameters, and
 * the passwords of URLs inside parameter values) replaced by `***`, for messages and
 * logs. The password runs from the first ':' after `scheme://` to the last '@' of
 * the URI, whatever it holds; so in `postgres://h:5432/db?app=me@x`, which has no
 * password, `5432/db?app=me` is hidden too: with a raw '/' in a password the two
 * cannot be told apart, and hiding too much is the safe side.
 */
export function redactUri(uri: string): string {
  const text = String(uri);
  const edits: { start: number; end: number; text: string }[] = [];
  const span = passwordSpan(text);
  if (span !== undefined) edits.push({ ...span, text: '***' });
  for (const { name, value, at } of rawParams(text)) {
    const end = at + value.length;
    if (SECRET_PARAM.test(decodeSafe(name))) {
      edits.push({ start: at, end, text: '***' });
      continue;
    }
    const decoded = decodeSafe(value);
    if (!decoded.includes('://')) continue;
    const inner = redactUri(decoded);
    if (inner !== decoded) edits.push({ start: at, end, text: value === decoded ? inner : encodeURIComponent(inner) });
  }
  edits.sort((a, b) => a.start - b.start);
  let out = '';
  let done = 0;
  for (let i = 0; i < edits.length; i++) {
    const { start } = edits[i]!;
    let { end, text: replacement } = edits[i]!;
    // Overlapping edits (a parameter inside the password's span) are hidden as one.
    while (i + 1 < edits.length && edits[i + 1]!.start < end) {
      end = Math.max(end, edits[++i]!.end);
      replacement = '***';
    }
    out += text.slice(done, start) + replacement;
    done = end;
  }
  return out + text.slice(done);
}

/**
 * `text` with every URI in it (a word starting `scheme://`) passed through
 * {@link redactUri}: for messages that may quote a URI as typed, or as a driver
 * rebuilt it. A URI is taken to end at whitespace or a quote, so a password holding
 * one is cut; that is why the CLI also scrubs the passwords it knows of.
 */
export function redactUrisIn(text: string): string {
  return text.replace(/[a-zA-Z][a-zA-Z0-9+.-]*:\/\/[^\s'"`<>]+/g, (uri) => redactUri(uri));
}

/**
 * Every string of `uri` that must never be printed, in every spelling it may be
 * printed in: each reading of its password (ending at any '@' after its start, for
 * a raw '@' or '/' in it), the values of secret parameters (ending at any '&'), and
 * the secrets of URLs inside parameter values; each raw, percent-decoded and
 * re-encoded the ways drivers and serializers write it (percent-encoding, WHATWG
 * userinfo and form encoding, JSON escapes). Strings under 3 characters are left
 * out: scrubbing them would blank ordinary words (the URI itself is still redacted).
 */
export function uriSecrets(uri: string): string[] {
  const text = String(uri);
  const found = new Set<string>();
  const span = passwordSpan(text);
  if (span !== undefined) {
    for (let at = text.indexOf('@', span.start); at >= 0; at = text.indexOf('@', at + 1)) found.add(text.slice(span.start, at));
  }
  for (const { name, value, at } of rawParams(text)) {
    if (SECRET_PARAM.test(decodeSafe(name))) {
      found.add(value);
      for (let amp = text.indexOf('&', at); amp >= 0; amp = text.indexOf('&', amp + 1)) found.add(text.slice(at, amp));
      found.add(text.slice(at));
    } else {
      const decoded = decodeSafe(value);
      if (decoded.includes('://')) for (const s of uriSecrets(decoded)) found.add(s);
    }
  }
  return spellings(found);
}

/** `secrets` in each spelling they may be printed in (see {@link uriSecrets}), longest first. */
export function spellings(secrets: Iterable<string>): string[] {
  const out = new Set<string>();
  for (const secret of secrets) {
    for (const plain of new Set([secret, decodeSafe(secret), decodeSafe(secret.replace(/\+/g, ' '))])) {
      for (const form of [plain, encodeURIComponent(plain), userinfoEncoded(plain), new URLSearchParams({ v: plain }).toString().slice(2)]) {
        out.add(form);
        out.add(JSON.stringify(form).slice(1, -1));
      }
    }
  }
  return [...out].filter((s) => s.length >= 3).sort((a, b) => b.length - a.length);
}

/** `text` with every one of `secrets` replaced by `***` (longest first, so none is left in part). */
export function scrub(text: string, secrets: readonly string[]): string {
  let out = text;
  for (const s of [...secrets].sort((a, b) => b.length - a.length)) out = out.split(s).join('***');
  return out;
}

/** How WHATWG URL (and so most drivers) writes `password` back into a URL. */
function userinfoEncoded(password: string): string {
  const url = new URL('http://h');
  url.password = password;
  return url.password;
}

function decodeSafe(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}
