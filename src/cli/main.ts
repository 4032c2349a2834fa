/**
 * The `persist-location` command line: finds the command, parses its options with
 * `node:util` parseArgs, runs it, and turns any failure into one line on stderr
 * (the stack and causes with --verbose) and an exit code. Credentials in location
 * URIs are scrubbed from everything printed on failure.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { isAbsolute, join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { allBackends, registerBackend, type BackendDescriptor } from '../backend.js';
import { BLOB_DEFAULT, CONSENSUS_DEFAULT, GLOBAL_OPTIONS, OPTIONS, chosenLocations, locationOptionHelp, wrapText, type Command, type OptionValues } from './args.js';
import { bench } from './bench.js';
import { blobCommands, blobGroupHelp } from './blob.js';
import { check } from './check.js';
import { watchCommand } from './watch.js';
import { consensusCommands, consensusGroupHelp } from './consensus.js';
import { BLOB_ENV, CONSENSUS_ENV, EXIT, OutputClosed, errorKind, Progress, UsageError, envSecrets, neverPrint, secretsOf, tolerateClosedOutput, writeErr, writeOut } from './output.js';

const COMMANDS: readonly Command[] = [check, ...consensusCommands, ...blobCommands, bench, watchCommand];
const GROUPS: Record<string, string> = { consensus: consensusGroupHelp, blob: blobGroupHelp };

/** The top-level help; its location list is made from the registered backends. */
export function mainHelp(): string {
  return `Usage: persist-location COMMAND [options]

Verify, inspect and load the storage locations of persist-location: Consensus (per
key, a linearizable versioned log advanced by compare-and-set) and Blob (durable
atomic key -> bytes).

Commands:
  check                 verify a location: conformance suites and a linearizability run
  consensus list        list every key that has data
  consensus head KEY    show the latest version of a key
  consensus scan KEY    show the versions of a key [--from SEQNO] [--limit N]
  consensus cas KEY EXPECTED|none SEQNO DATA
                        compare-and-set: write a new version if the head is as expected
  consensus cas KEY --next DATA
                        append DATA at the seqno after the head (read-modify-write)
  consensus truncate KEY SEQNO
                        delete the versions of a key below a seqno
  watch KEY             print a key's heads as they change [--timeout DURATION]
  blob ls [PREFIX]      list keys and sizes
  blob get KEY          write a value to standard output
  blob put KEY [FILE|-] store a file or standard input as a value
  blob rm KEY           delete a key
  blob restore KEY      bring back a deleted key, where the location keeps them
  bench                 measure throughput and latency under a workload

Options for every command:
${locationOptionHelp('  --consensus URI   ', 'Consensus location', CONSENSUS_DEFAULT)}
${locationOptionHelp('  --blob URI        ', 'Blob location', BLOB_DEFAULT)}
  --json            JSON on stdout (only check, bench, list, head, scan, ls)
  -q, --quiet       no progress on stderr
  -v, --verbose     on failure, show the stack trace and causes
  -h, --help        help for any command, e.g. persist-location consensus cas --help
  --version         print the version
  --backend MODULE  import MODULE first (a path or package name; repeatable): it
                    adds a backend with registerBackend or exports its descriptor
                    as default; PERSIST_LOCATION_BACKENDS=MODULE,... does the same

Locations (what --consensus and --blob accept):
${locationHelp()}

A location comes from its option, else from the environment variable
${CONSENSUS_ENV} or ${BLOB_ENV} (so a shell or a service names it once), else
the embedded default under ./.persist/. Passwords in URIs are never printed,
wherever they were given. SeqNos are written v5 or 5.

Exit codes:
  0   success
  1   failure: a check did not pass, a storage error, a missing blob key or file
      (a consensus key without data is not one: head prints "no data")
  2   consensus cas: ExpectationMismatch (the head was not EXPECTED; nothing written)
  64  usage error: unknown command or option, bad argument
  130 interrupted (Ctrl-C); check and bench remove their scratch location first
  141 standard output was closed before all of it was written (e.g. | head -1)

Examples:
  persist-location check
  persist-location consensus cas shard-0 none v1 'hello'
  persist-location consensus scan shard-0 --from v1 --json
  persist-location blob put batch/0001 ./batch.bin
  persist-location blob get batch/0001 > copy.bin
  persist-location bench --duration 30s --mix cas=50,head=40,scan=10
  persist-location check --consensus postgres://app:pw@db:5432/app?schema=app --only consensus`;
}

/** Every URI form of every registered backend, with what it opens and its description. */
function locationHelp(): string {
  const lines: string[] = [];
  for (const backend of allBackends()) {
    const opens = [backend.consensus && 'Consensus', backend.blob && 'Blob'].filter(Boolean).join(', ');
    for (const form of backend.forms) {
      lines.push(`  ${form.uri}  [${opens}]`, ...wrapText(form.description.replace(/`/g, ''), 74).map((l) => `      ${l}`));
    }
  }
  return lines.join('\n');
}

/** The environment variable naming backend modules to import, comma-separated. */
const BACKENDS_ENV = 'PERSIST_LOCATION_BACKENDS';

/**
 * Imports each backend module named by PERSIST_LOCATION_BACKENDS, then by `--backend`
 * (each once). A module registers its backend when imported, or
 * exports its descriptor as default (registered here). A module that does neither is
 * a usage error, as is one that cannot be imported.
 */
export async function loadBackends(fromFlags: readonly string[]): Promise<void> {
  const fromEnv = (process.env[BACKENDS_ENV] ?? '').split(',').map((m) => m.trim());
  const specs = [...new Set([...fromEnv, ...fromFlags].filter((m) => m !== ''))];
  for (const spec of specs) {
    const before = allBackends().length;
    let mod: { default?: unknown };
    try {
      mod = (await import(moduleUrl(spec))) as { default?: unknown };
    } catch (err) {
      throw new UsageError(`cannot import backend module '${spec}': ${err instanceof Error ? err.message : String(err)}`);
    }
    const descriptor = mod.default;
    if (typeof descriptor === 'object' && descriptor !== null && 'schemes' in descriptor) registerBackend(descriptor as BackendDescriptor);
    else if (allBackends().length === before) {
      throw new UsageError(`backend module '${spec}' registered no backend: it must call registerBackend or export a descriptor as default`);
    }
  }
}

/**
 * What to import for a --backend value: a path (relative to the working directory),
 * a URL, or a package name, resolved from the working directory where it was
 * installed (or, failing that, from this package's own location).
 */
function moduleUrl(spec: string): string {
  if (spec.startsWith('.') || isAbsolute(spec)) return pathToFileURL(resolve(spec)).href;
  if (/^[a-z][a-z0-9+.-]+:/i.test(spec)) return spec;
  try {
    return pathToFileURL(createRequire(join(process.cwd(), 'index.js')).resolve(spec)).href;
  } catch {
    return spec;
  }
}

/**
 * Prints process warnings as one line each, except the AWS SDK's notice about future
 * Node versions, which says nothing about the command the user ran.
 */
function quietWarnings(): void {
  process.removeAllListeners('warning');
  process.on('warning', (w) => {
    const text = w.name === 'Warning' ? w.message : `${w.name}: ${w.message}`;
    if (text.startsWith('NodeVersionSupportWarning')) return;
    writeErr(`persist-location: warning: ${firstLine(text)}\n`);
  });
}

/** Runs the CLI on `argv` (without `node` and the script) and resolves to the exit code. */
export async function main(argv: readonly string[]): Promise<number> {
  quietWarnings();
  tolerateClosedOutput();
  // Every argument too: a URI typed without --consensus is echoed back as unexpected.
  neverPrint([...secretsOf([...rawUriOptions(argv), ...argv]), ...envSecrets(process.env)]);
  let verbose = argv.includes('--verbose') || argv.includes('-v');
  const progress = new Progress({ enabled: !argv.includes('--quiet') && !argv.includes('-q') });
  try {
    let parsed;
    try {
      parsed = parseArgs({ args: [...argv], options: OPTIONS, allowPositionals: true, strict: true, tokens: true });
    } catch (err) {
      throw new UsageError(cleanParseError(err), { cause: commandNamedIn(argv) });
    }
    const values = parsed.values as OptionValues;
    verbose = values.verbose === true;
    await loadBackends(values.backend ?? []);
    let positionals = parsed.positionals;
    if (positionals[0] === 'help' && positionals.length > 1) {
      // `persist-location help blob put` is `persist-location blob put --help`.
      positionals = positionals.slice(1);
      values.help = true;
    }

    if (values.version) {
      await writeOut(`${version()}\n`);
      return EXIT.ok;
    }
    const first = positionals[0];
    if (first === undefined || first === 'help') {
      await writeOut(`${mainHelp()}\n`);
      return EXIT.ok;
    }
    const group = Object.hasOwn(GROUPS, first) ? GROUPS[first] : undefined;
    let command: Command | undefined;
    let words = 1;
    if (group !== undefined) {
      const sub = positionals[1];
      if (sub === undefined) {
        await writeOut(`${group}\n`);
        return EXIT.ok;
      }
      command = COMMANDS.find((c) => c.name === `${first} ${sub}`);
      if (command === undefined) {
        const subs = COMMANDS.filter((c) => c.name.startsWith(`${first} `)).map((c) => c.name.split(' ')[1]);
        throw new UsageError(`unknown command '${first} ${sub}'; ${first} commands: ${subs.join(', ')}`);
      }
      words = 2;
    } else {
      command = COMMANDS.find((c) => c.name === first);
      if (command === undefined) throw new UsageError(`unknown command '${first}'; commands: check, consensus, blob, bench, watch`);
    }
    if (values.help) {
      await writeOut(`${command.help}\n`);
      return EXIT.ok;
    }
    const allowed = new Set<string>([...GLOBAL_OPTIONS, ...command.options]);
    for (const token of parsed.tokens) {
      if (token.kind === 'option' && !allowed.has(token.name)) {
        throw new UsageError(`option --${token.name} does not apply to '${command.name}'`, { cause: command });
      }
    }
    try {
      return await command.run({
        args: positionals.slice(words),
        values,
        ...chosenLocations(values, process.env),
        progress,
      });
    } catch (err) {
      // Point a usage mistake at the help of the command it was made in.
      if (err instanceof UsageError && err.cause === undefined) throw new UsageError(err.message, { cause: command });
      throw err;
    }
  } catch (err) {
    progress.finish();
    // The reader has what it wanted (`| head -1`): nothing to report.
    if (err instanceof OutputClosed) return EXIT.outputClosed;
    writeErr(failureText(err, verbose));
    return err instanceof UsageError ? EXIT.usage : EXIT.failed;
  }
}

/** What a failure prints: one line, or with --verbose the stack and every cause. */
function failureText(err: unknown, verbose: boolean): string {
  if (err instanceof UsageError) {
    const command = err.cause as Command | undefined;
    const helpFor = command === undefined ? 'persist-location --help' : `persist-location ${command.name} --help`;
    return `persist-location: ${err.message} (see ${helpFor})\n`;
  }
  const message = err instanceof Error ? err.message : String(err);
  let text = `persist-location: ${firstLine(message)}${errorKind(err)}\n`;
  if (verbose) {
    let e: unknown = err;
    for (let depth = 0; e !== undefined && e !== null && depth < 8; depth++) {
      text += depth === 0 ? '' : 'caused by: ';
      text += e instanceof Error ? `${e.stack ?? `${e.name}: ${e.message}`}\n` : `${String(e)}\n`;
      e = e instanceof Error ? e.cause : undefined;
    }
  }
  return text;
}

function firstLine(message: string): string {
  const line = message.split('\n').find((l) => l.trim() !== '') ?? message;
  return line.trim() === '' ? 'unknown error' : line.trim();
}

/** The command `argv` names, found leniently (for pointing a bad option at its help). */
function commandNamedIn(argv: readonly string[]): Command | undefined {
  const { positionals } = parseArgs({ args: [...argv], options: OPTIONS, allowPositionals: true, strict: false });
  const words = positionals[0] === 'help' ? positionals.slice(1) : positionals;
  return COMMANDS.find((c) => c.name === `${words[0]} ${words[1]}`) ?? COMMANDS.find((c) => c.name === words[0]);
}

function cleanParseError(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  const unknown = /^Unknown option '([^']+)'/.exec(message);
  if (unknown !== null) {
    // `-5` or `-x` is more likely a value (a negative number, data) than an option.
    const hint = /^-[^-]/.test(unknown[1]!) ? `; an argument starting with '-' goes after '--', as in: -- ${unknown[1]}` : '';
    return `unknown option '${unknown[1]}'${hint}`;
  }
  const missing = /^Option '([^']+?)(?: <value>)?' argument missing/.exec(message);
  if (missing !== null) return `option '${missing[1]}' needs a value`;
  const dashed = /^Option '([^']+?)(?: <value>)?' argument is ambiguous/.exec(message);
  if (dashed !== null) return `option '${dashed[1]}' needs a value; for a value starting with '-', write ${dashed[1]}=VALUE`;
  return firstLine(message);
}

/** The values of --consensus/--blob, found without parsing, so even a parse error is scrubbed. */
function rawUriOptions(argv: readonly string[]): string[] {
  const out: string[] = [];
  argv.forEach((arg, i) => {
    const m = /^--(?:consensus|blob)(?:=(.*))?$/s.exec(arg);
    if (m !== null) out.push(m[1] ?? argv[i + 1] ?? '');
  });
  return out;
}

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}
