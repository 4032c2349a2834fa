/**
 * Command-line options shared by every command, what a command receives, and the
 * parsers of option values (seqnos, counts, durations).
 */
import { isAbsolute } from 'node:path';
import { findBackend } from '../backend.js';
import type { Blob } from '../blob.js';
import type { Consensus } from '../consensus.js';
import { openBlob, openConsensus } from '../location.js';
import { SeqNo } from '../seqno.js';
import { parseLocationUri } from '../uri.js';
import { BLOB_ENV, CONSENSUS_ENV, UsageError, writeErr, type Progress } from './output.js';

/** The default locations: the embedded ones under `./.persist/`. */
export const DEFAULT_CONSENSUS = 'sqlite:.persist/consensus.db';
export const DEFAULT_BLOB = 'file:.persist/blob';

/** How help texts say where a location comes from without its option (two lines). */
export const CONSENSUS_DEFAULT = `default $${CONSENSUS_ENV},\nelse ${DEFAULT_CONSENSUS}`;
export const BLOB_DEFAULT = `default $${BLOB_ENV},\nelse ${DEFAULT_BLOB}`;

/** A help line for a location option: `lead` then the description, its second line indented under the first. */
export function locationOptionHelp(lead: string, what: string, source: string): string {
  const [first, second] = source.split('\n');
  return `${lead}${what} (${first}\n${' '.repeat(lead.length)}${second})`;
}

/**
 * The locations a command works on: `--consensus` / `--blob`, else the environment
 * variables (an empty one counts as unset), else the embedded defaults.
 */
export function chosenLocations(values: OptionValues, env: NodeJS.ProcessEnv): { consensusUri: string; blobUri: string } {
  const fromEnv = (name: string) => (env[name] === '' ? undefined : env[name]);
  return {
    consensusUri: values.consensus ?? fromEnv(CONSENSUS_ENV) ?? DEFAULT_CONSENSUS,
    blobUri: values.blob ?? fromEnv(BLOB_ENV) ?? DEFAULT_BLOB,
  };
}

/** Every option any command accepts, for `node:util` parseArgs. */
export const OPTIONS = {
  // global
  consensus: { type: 'string' },
  blob: { type: 'string' },
  json: { type: 'boolean' },
  verbose: { type: 'boolean', short: 'v' },
  quiet: { type: 'boolean', short: 'q' },
  help: { type: 'boolean', short: 'h' },
  version: { type: 'boolean' },
  backend: { type: 'string', multiple: true },
  // check and bench
  ops: { type: 'string' },
  clients: { type: 'string' },
  keys: { type: 'string' },
  only: { type: 'string' },
  target: { type: 'string' },
  'value-size': { type: 'string' },
  duration: { type: 'string' },
  mix: { type: 'string' },
  processes: { type: 'string' },
  report: { type: 'string' },
  // consensus
  from: { type: 'string' },
  limit: { type: 'string' },
  'data-file': { type: 'string' },
  next: { type: 'string' },
  // check
  faults: { type: 'string' },
  // watch
  timeout: { type: 'string' },
} as const;

export type OptionName = keyof typeof OPTIONS;
export type OptionValues = {
  [K in OptionName]?: (typeof OPTIONS)[K] extends { multiple: true } ? string[] : (typeof OPTIONS)[K]['type'] extends 'string' ? string : boolean;
};

/** Options every command accepts. (`--json` is not one: a command without JSON output refuses it.) */
export const GLOBAL_OPTIONS: readonly OptionName[] = ['consensus', 'blob', 'backend', 'verbose', 'quiet', 'help'];

/** What a command's `run` receives. */
export interface Context {
  /** Positional arguments after the command words. */
  args: string[];
  values: OptionValues;
  /** The Consensus location URI (raw: may hold credentials, print `redactUri` of it). */
  consensusUri: string;
  /** The Blob location URI (raw). */
  blobUri: string;
  progress: Progress;
}

/** A command or subcommand. */
export interface Command {
  /** The words that select it, e.g. `consensus scan`. */
  name: string;
  /** One line for the command list. */
  summary: string;
  /** The full `--help` text. */
  help: string;
  /** Options beyond the global ones. */
  options: readonly OptionName[];
  run(ctx: Context): Promise<number>;
}

/**
 * The absolute form of a local location URI whose path is relative
 * (`sqlite:.persist/consensus.db` -> `sqlite:/home/me/app/.persist/consensus.db`,
 * parameters left out), by its backend's `localPath`; undefined for any other URI,
 * and for one that does not parse (opening it says why).
 */
export function resolvedLocation(uri: string): string | undefined {
  try {
    const loc = parseLocationUri(uri);
    const localPath = findBackend(loc.scheme)?.localPath;
    if (localPath === undefined || loc.path === '' || isAbsolute(loc.path)) return undefined;
    return `${loc.scheme}:${localPath(loc, process.cwd())}`;
  } catch {
    return undefined;
  }
}

/**
 * Opens the command's Consensus or Blob location (inspection commands pass
 * `create: false`), then, unless `--quiet`, says on stderr where a relative local
 * URI resolved to (`consensus: sqlite:/abs/file.db`): a command run from another
 * directory shows it is not looking at the location meant. Said after opening, so
 * a failed open stays one line.
 */
export function openLocation(ctx: Context, kind: 'consensus', options?: { create?: boolean }): Promise<Consensus>;
export function openLocation(ctx: Context, kind: 'blob', options?: { create?: boolean }): Promise<Blob>;
export async function openLocation(ctx: Context, kind: 'consensus' | 'blob', options: { create?: boolean } = {}): Promise<Consensus | Blob> {
  const uri = kind === 'consensus' ? ctx.consensusUri : ctx.blobUri;
  const handle = await (kind === 'consensus' ? openConsensus(uri, options) : openBlob(uri, options));
  tellResolved(ctx, kind, uri);
  return handle;
}

/** Says on stderr, unless `--quiet`, where `uri` resolved to when it is a relative local one (`blob: file:/abs/dir`). */
export function tellResolved(ctx: Context, kind: 'consensus' | 'blob', uri: string): void {
  const resolved = resolvedLocation(uri);
  if (resolved !== undefined && ctx.values.quiet !== true) writeErr(`${kind}: ${resolved}\n`);
}

/** Opens a handle, runs `work` with it, and closes it whatever happens. */
export async function withHandle<H extends { close(): Promise<void> }, T>(open: () => Promise<H>, work: (h: H) => Promise<T>): Promise<T> {
  const h = await open();
  try {
    return await work(h);
  } finally {
    await h.close();
  }
}

export function parseSeqNo(text: string, what: string): SeqNo {
  try {
    return SeqNo.parse(/^[0-9]/.test(text) ? `v${text}` : text);
  } catch (err) {
    throw new UsageError(`${what} must be a seqno like v5 or 5, got '${text}' (${(err as Error).message})`);
  }
}

/** Reads a positive integer option, with its default. */
export function parseCount(text: string | undefined, option: string, fallback: number, min = 1): number {
  if (text === undefined) return fallback;
  const n = Number(text.replace(/_/g, ''));
  if (!/^[0-9][0-9_]*$/.test(text) || !Number.isSafeInteger(n) || n < min) {
    throw new UsageError(`--${option} must be an integer >= ${min}, got '${text}'`);
  }
  return n;
}

/** Reads a duration: `500ms`, `10s`, `2m`, or a plain number of seconds. */
export function parseDuration(text: string | undefined, option: string, fallbackMs: number): number {
  if (text === undefined) return fallbackMs;
  const m = /^([0-9]+(?:\.[0-9]+)?)(ms|s|m)?$/.exec(text.trim());
  if (m === null) throw new UsageError(`--${option} must be a duration like 500ms, 10s or 2m, got '${text}'`);
  const n = Number(m[1]);
  const ms = m[2] === 'ms' ? n : m[2] === 'm' ? n * 60_000 : n * 1000;
  if (ms <= 0) throw new UsageError(`--${option} must be longer than zero, got '${text}'`);
  return ms;
}

/** Checks the number of positional arguments. */
export function expectArgs(ctx: Context, names: readonly string[], optional = 0): void {
  const min = names.length - optional;
  if (ctx.args.length < min) {
    throw new UsageError(`missing ${names.slice(ctx.args.length).filter((_, i) => ctx.args.length + i < min).join(' ')}`);
  }
  if (ctx.args.length > names.length) {
    throw new UsageError(`unexpected argument '${ctx.args[names.length]}' (expected ${names.join(' ') || 'no arguments'})`);
  }
}

/** Throws a {@link UsageError} when `condition` holds. */
export function usageIf(condition: boolean, message: string): void {
  if (condition) throw new UsageError(message);
}

/** `text` broken into lines of at most `width` characters, at spaces. */
export function wrapText(text: string, width: number): string[] {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(/\s+/).filter((w) => w !== '')) {
    if (line !== '' && line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else line = line === '' ? word : `${line} ${word}`;
  }
  if (line !== '') lines.push(line);
  return lines;
}
