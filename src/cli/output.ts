/**
 * What the CLI prints and how: the usage error, stdout writes that finish before
 * exit, the live progress line on stderr, and the formatting of sizes, durations,
 * keys and byte values for people.
 */
import { readFile } from 'node:fs/promises';
import { performance } from 'node:perf_hooks';
import { ExternalError } from '../errors.js';
import { redactUrisIn, scrub, spellings, uriSecrets } from '../uri.js';

/** Exit codes, documented in `persist-location --help`. */
export const EXIT = {
  ok: 0,
  /** A failure: storage error, failed check, missing blob key, unreadable file. */
  failed: 1,
  /** `consensus cas` found a different head: nothing was written. */
  mismatch: 2,
  /** Bad command line (sysexits EX_USAGE). */
  usage: 64,
  /** Stopped by Ctrl-C (128 + SIGINT), as shells report it. */
  interrupted: 130,
  /** Standard output was closed early (`| head`): 128 + SIGPIPE, what a shell reports for `cat`. */
  outputClosed: 141,
} as const;

/** A mistake on the command line: printed with a pointer to `--help`, exit 64. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

let knownSecrets: readonly string[] = [];

/** Remembers the secrets of this run (see {@link secretsOf}, {@link envSecrets}) for {@link scrubSecrets}. */
export function neverPrint(secrets: readonly string[]): void {
  knownSecrets = [...new Set(secrets)].sort((a, b) => b.length - a.length);
}

/**
 * Text with every URI in it redacted and this run's secrets blanked out. Locations
 * are always printed redacted; this is the last guard, applied to everything the CLI
 * prints but the user's own keys and values: messages that echo what was typed, or
 * that drivers wrote (a connection string in an error, a stack under --verbose),
 * reports, progress.
 */
export function scrubSecrets(text: string): string {
  return scrub(redactUrisIn(text), knownSecrets);
}

/** Writes a message or progress to stderr, scrubbed of this run's secrets. */
export function writeErr(text: string): void {
  process.stderr.write(scrubSecrets(text));
}

/** Standard output was closed by its reader (`| head -1`): the command stops quietly. */
export class OutputClosed extends Error {
  override readonly name = 'OutputClosed';
}

/**
 * Makes a closed stdout or stderr a condition the CLI handles rather than a crash:
 * without a listener, Node throws the stream's EPIPE as an uncaught exception, which
 * would kill `check` (leaving its scratch location) when its progress reader goes away.
 * A failed stdout write rejects {@link writeOut}; stderr (progress and messages only)
 * is written on a best-effort basis.
 */
export function tolerateClosedOutput(): void {
  process.stdout.on('error', () => {});
  process.stderr.on('error', () => {});
}

/** Writes to stdout and resolves once the bytes are handed to the OS, so exit never truncates a pipe. */
export function writeOut(data: string | Uint8Array): Promise<void> {
  return new Promise((resolve, reject) => {
    if (process.stdout.destroyed) return reject(new OutputClosed('standard output is closed'));
    process.stdout.write(data, (err) => {
      if (!err) resolve();
      else reject((err as NodeJS.ErrnoException).code === 'EPIPE' || process.stdout.destroyed ? new OutputClosed('standard output is closed', { cause: err }) : err);
    });
  });
}

/**
 * The closing line of a listing (`3 keys, 97.7 KiB`, `no keys in ...`), empty or not:
 * on stderr, so that stdout holds only the listed data, on a terminal or in a pipe.
 * `--quiet` leaves it out.
 */
export function printSummary(line: string, quiet: boolean | undefined): void {
  if (quiet !== true) writeErr(`${line}\n`);
}

/** A count and its noun, singular or plural: `1 key`, `16 clients`, `0 versions`. */
export function plural(count: number, noun: string): string {
  return `${count} ${noun}${count === 1 ? '' : 's'}`;
}

/** How a failure names an {@link ExternalError}'s kind and code, ` [Determinate InvalidArgument]`; empty for other errors. */
export function errorKind(err: unknown): string {
  return err instanceof ExternalError ? ` [${err.determinate ? 'Determinate' : 'Indeterminate'} ${err.code}]` : '';
}

/** Prints lines to stdout. */
export function printLines(lines: readonly string[]): Promise<void> {
  return lines.length === 0 ? Promise.resolve() : writeOut(`${lines.join('\n')}\n`);
}

/** Prints a value as indented JSON to stdout (bigints as decimal strings). */
export function printJson(value: unknown): Promise<void> {
  return writeOut(jsonText(value));
}

function jsonText(value: unknown): string {
  return `${JSON.stringify(value, (_key, v: unknown) => (typeof v === 'bigint' ? v.toString() : v), 2)}\n`;
}

/**
 * Prints a report (check, bench) to stdout, scrubbed of this run's secrets. The
 * commands that print the user's keys and values use {@link printLines} and
 * {@link printJson}, which print them as stored.
 */
export function printReport(lines: readonly string[]): Promise<void> {
  return lines.length === 0 ? Promise.resolve() : writeOut(scrubSecrets(`${lines.join('\n')}\n`));
}

/** {@link printJson} for a report: scrubbed like {@link printReport}. */
export function printReportJson(value: unknown): Promise<void> {
  return writeOut(scrubSecrets(jsonText(value)));
}

/**
 * Progress on stderr. On a terminal one line is redrawn in place (at most ten times
 * a second); otherwise, so logs stay readable, a plain line is printed when a task
 * starts, at every quarter of a task with a known total, and when it ends.
 */
export class Progress {
  readonly #stream: NodeJS.WriteStream;
  readonly #live: boolean;
  #enabled: boolean;
  #label = '';
  #started = 0;
  #lastDraw = 0;
  #quarter = 0;
  #drawn = false;
  #spin = 0;

  constructor(options: { enabled: boolean; stream?: NodeJS.WriteStream }) {
    this.#stream = options.stream ?? process.stderr;
    this.#enabled = options.enabled;
    // A dumb terminal cannot clear a line: it gets the plain lines a log would.
    this.#live = options.enabled && this.#stream.isTTY === true && process.env.TERM !== 'dumb';
  }

  /** Begins a task. */
  start(label: string): void {
    this.#label = label;
    this.#started = performance.now();
    this.#quarter = 0;
    this.#lastDraw = 0;
    if (!this.#enabled) return;
    if (this.#live) this.#draw(`${label} ...`);
    else this.#write(`${label} ...\n`);
  }

  /**
   * Reports how far the task is: `done` of `total` (undefined when unknown), plus a
   * detail; `counts` false leaves `done/total` out (when they are not operations).
   */
  tick(done: number, total: number | undefined, detail = '', counts = true): void {
    if (!this.#enabled) return;
    const now = performance.now();
    const fraction = total === undefined || total <= 0 ? undefined : Math.min(1, done / total);
    if (this.#live) {
      if (now - this.#lastDraw < 100) return;
      this.#lastDraw = now;
      const elapsed = formatDuration(now - this.#started);
      const body =
        fraction === undefined
          ? `${'|/-\\'[this.#spin++ % 4]} ${done} ops`
          : `${bar(fraction)} ${String(Math.floor(fraction * 100)).padStart(3)}%${counts ? `  ${done}/${total}` : ''}`;
      this.#draw(`${this.#label}  ${body}  ${elapsed}${detail === '' ? '' : `  ${detail}`}`);
    } else if (fraction !== undefined) {
      const quarter = Math.floor(fraction * 4);
      if (quarter > this.#quarter && quarter < 4) {
        this.#quarter = quarter;
        this.#write(`${this.#label}: ${quarter * 25}%${counts ? ` (${done}/${total})` : ''}${detail === '' ? '' : `  ${detail}`}\n`);
      }
    }
  }

  /**
   * Ends the task. On a terminal the line is cleared (the report follows on stdout);
   * otherwise `line`, if given, is printed.
   */
  finish(line?: string): void {
    if (!this.#enabled) return;
    if (this.#live) this.#clear();
    else if (line !== undefined) this.#write(`${line}\n`);
  }

  /** Clears the line and prints no more progress (the run was interrupted). */
  silence(): void {
    this.finish();
    this.#enabled = false;
  }

  #write(text: string): void {
    this.#stream.write(scrubSecrets(text));
  }

  #draw(raw: string): void {
    // Scrubbed before it is cut to fit, or a secret cut short would show in part.
    const text = scrubSecrets(raw);
    // A pseudo-terminal whose size was never set reports 0 columns.
    const width = this.#stream.columns || 80;
    const fitted = text.length >= width ? `${text.slice(0, Math.max(0, width - 2))}…` : text;
    this.#stream.write(`\r\x1b[2K${fitted}`);
    this.#drawn = true;
  }

  #clear(): void {
    if (this.#live && this.#drawn) this.#stream.write('\r\x1b[2K');
    this.#drawn = false;
  }
}

function bar(fraction: number, width = 24): string {
  const full = Math.round(fraction * width);
  return `[${'#'.repeat(full)}${'.'.repeat(width - full)}]`;
}

/** `3 B`, `10.0 KiB`, `3.0 MiB`. */
export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(1)} ${units[i]}`;
}

/** `4.2 µs`, `0.42 ms`, `12.3 ms`, `1.20 s`, `2m05s`. */
export function formatDuration(ms: number): string {
  if (ms < 0.01) return `${(ms * 1000).toFixed(1)} µs`;
  if (ms < 10) return `${ms.toFixed(2)} ms`;
  if (ms < 1000) return `${ms.toFixed(1)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(2)} s`;
  const s = Math.round(ms / 1000);
  return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
}

/** Operations per second, rounded for reading. */
export function formatRate(opsPerSec: number): string {
  return `${opsPerSec >= 100 ? Math.round(opsPerSec) : opsPerSec.toFixed(1)} ops/s`;
}

/** A key as typed: plain when it is printable and unambiguous, otherwise JSON-quoted. */
export function showKey(key: string): string {
  return /^[^\s"\\\p{C}]([^"\\\p{C}]*[^\s"\\\p{C}])?$/u.test(key) ? key : JSON.stringify(key);
}

/** Bytes as UTF-8 text when they are printable text, else undefined. */
export function asText(data: Uint8Array): string | undefined {
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(data);
  } catch {
    return undefined;
  }
  // Control characters other than tab and line breaks would corrupt a terminal.
  return /[\p{Cc}\p{Cs}\p{Co}\p{Cn}]/u.test(text.replace(/[\t\n\r]/g, '')) ? undefined : text;
}

/** A value for a person: text when printable (else hex up to 64 bytes, base64 beyond), with a note saying which. */
export function showData(data: Uint8Array, maxChars = Infinity): { text: string; note: string } {
  const text = asText(data);
  if (text !== undefined) {
    if (text.length <= maxChars) return { text, note: '' };
    return { text: `${text.slice(0, maxChars)}…`, note: '(text, cut short)' };
  }
  const buf = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  const [shown, note] = data.byteLength <= 64 ? [buf.toString('hex'), '(binary, shown as hex)'] : [buf.toString('base64'), '(binary, shown as base64)'];
  if (shown.length <= maxChars) return { text: shown, note };
  return { text: `${shown.slice(0, maxChars)}…`, note: `${note.slice(0, -1)}, cut short)` };
}

/** A value for `--json`: text as `utf8`, anything else as `base64`. */
export function jsonData(data: Uint8Array): { size: number; encoding: 'utf8' | 'base64'; data: string } {
  const text = asText(data);
  if (text !== undefined) return { size: data.byteLength, encoding: 'utf8', data: text };
  return { size: data.byteLength, encoding: 'base64', data: Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString('base64') };
}

/** Left-aligned columns. */
export function table(rows: readonly (readonly string[])[], align: readonly ('l' | 'r')[] = []): string[] {
  const widths: number[] = [];
  for (const row of rows) row.forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 0, cell.length)));
  return rows.map((row) =>
    row
      .map((cell, i) => (i === row.length - 1 && align[i] !== 'r' ? cell : align[i] === 'r' ? cell.padStart(widths[i]!) : cell.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd(),
  );
}

/** Secrets of location URIs (see `uriSecrets` in src/uri.ts), for {@link neverPrint}. */
export function secretsOf(uris: readonly (string | undefined)[]): string[] {
  return [...new Set(uris.flatMap((uri) => (uri === undefined ? [] : uriSecrets(uri))))];
}

/** Environment variables whose values are secrets: passwords, keys, tokens, connection strings. */
const SECRET_ENV = /pass|secret|token|(^|_)key($|_)|credential|connection_?string|sas|signature/i;

/** The environment variables naming the locations when `--consensus` / `--blob` is not given. */
export const CONSENSUS_ENV = 'PERSIST_CONSENSUS';
export const BLOB_ENV = 'PERSIST_BLOB';

/**
 * Secrets in the environment, for {@link neverPrint}: the values of secret-looking
 * variables (AWS_SECRET_ACCESS_KEY, AZURE_STORAGE_KEY, PGPASSWORD, ...), the secret
 * parts of connection strings (`AccountKey=...;SharedAccessSignature=...`), and the
 * secrets of location URIs in PERSIST_CONSENSUS and PERSIST_BLOB.
 */
export function envSecrets(env: NodeJS.ProcessEnv): string[] {
  const found: string[] = [];
  for (const [name, value] of Object.entries(env)) {
    if (value === undefined || value === '') continue;
    if (name === CONSENSUS_ENV || name === BLOB_ENV) found.push(...uriSecrets(value));
    if (!SECRET_ENV.test(name)) continue;
    found.push(value);
    for (const part of value.split(';')) {
      const eq = part.indexOf('=');
      if (eq > 0 && /key|sig|secret|pass|token/i.test(part.slice(0, eq))) found.push(part.slice(eq + 1));
    }
  }
  return spellings(found);
}

/** Reads all of standard input. */
export async function readStdin(): Promise<Uint8Array> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** Reads a file named on the command line, with a one-line message when it cannot. */
export async function readInput(path: string): Promise<Uint8Array> {
  try {
    return await readFile(path);
  } catch (err) {
    const code = (err as { code?: string }).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'it is a directory' : code === 'EACCES' ? 'permission denied' : (err as Error).message;
    throw new Error(`cannot read ${path}: ${why}`);
  }
}
