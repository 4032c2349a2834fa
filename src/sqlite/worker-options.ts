/**
 * The Node.js options the SQLite writer worker starts with.
 *
 * By default a worker thread inherits the parent's `execArgv` and re-reads
 * `NODE_OPTIONS`. The writer worker runs this package's compiled JavaScript and
 * better-sqlite3, so it needs none of the options that load or interpret the
 * application's own code, and several of them break it: `--input-type` (from
 * `node --input-type=module -e ...`) makes a worker started from a file fail with
 * ERR_INPUT_TYPE_NOT_ALLOWED, and `--import` / `--require` / `--loader` hooks (tsx,
 * agents) would run a second time in a thread that has no use for them, and may not
 * expect to. V8 and process-wide options (`--max-old-space-size`, ...) are refused in
 * a worker's `execArgv` and hold for the whole process anyway.
 *
 * So the worker gets an allowlist: the options that decide which files its imports
 * resolve to, so that it loads the driver the calling thread loaded
 * (`--preserve-symlinks`, `--conditions`), and those about warnings, so that a
 * choice to silence or trace them holds in the worker too. Anything else is dropped.
 */

const KEPT_FLAGS = new Set([
  '--preserve-symlinks',
  '--preserve-symlinks-main',
  '--no-warnings',
  '--no-deprecation',
  '--trace-warnings',
  '--trace-deprecation',
  '--throw-deprecation',
  '--pending-deprecation',
]);

const KEPT_WITH_VALUE = new Set(['--conditions', '-C', '--disable-warning']);

/** The options of `argv` (an `execArgv` or a split `NODE_OPTIONS`) the worker keeps, in order. */
export function workerFlags(argv: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const eq = arg.startsWith('--') ? arg.indexOf('=') : -1;
    const name = eq > 0 ? arg.slice(0, eq) : arg;
    if (KEPT_FLAGS.has(arg)) {
      out.push(arg);
    } else if (KEPT_WITH_VALUE.has(name)) {
      if (eq > 0) out.push(arg);
      else if (i + 1 < argv.length) out.push(arg, argv[++i]!);
    }
    // Anything else is dropped, and so is a dropped option's separate value (`--require
    // ./hook.cjs`): it is no option of the allowlist.
  }
  // The worker's entry point is a file of this package, which the calling thread
  // reached through the preserved link: without this, Node would resolve the entry
  // (and so the driver it imports) from the link's target instead.
  if (out.includes('--preserve-symlinks') && !out.includes('--preserve-symlinks-main')) out.push('--preserve-symlinks-main');
  return out;
}

/**
 * Splits `NODE_OPTIONS` as Node does: on spaces, except inside double quotes, where
 * a backslash escapes the next character.
 */
export function splitNodeOptions(text: string): string[] {
  const out: string[] = [];
  let quoted = false;
  let startNew = true;
  for (let i = 0; i < text.length; i++) {
    let c = text[i]!;
    if (c === '\\' && quoted && i + 1 < text.length) {
      c = text[++i]!;
    } else if (c === ' ' && !quoted) {
      startNew = true;
      continue;
    } else if (c === '"') {
      quoted = !quoted;
      continue;
    }
    if (startNew) out.push(c);
    else out[out.length - 1] += c;
    startNew = false;
  }
  return out;
}

function quoteNodeOption(arg: string): string {
  return /[\s"\\]/.test(arg) ? `"${arg.replace(/["\\]/g, '\\$&')}"` : arg;
}

/**
 * The `execArgv` and `env` options for `new Worker(...)`: only the options of
 * {@link workerFlags}, from the command line and from `NODE_OPTIONS`. `env` is
 * undefined (the default, a copy of `process.env`) when `NODE_OPTIONS` needs no change.
 */
export function workerStartOptions(
  execArgv: readonly string[] = process.execArgv,
  env: NodeJS.ProcessEnv = process.env,
): { execArgv: string[]; env: NodeJS.ProcessEnv | undefined } {
  const flags = workerFlags(execArgv);
  const options = env.NODE_OPTIONS;
  const kept = options === undefined ? undefined : workerFlags(splitNodeOptions(options)).map(quoteNodeOption).join(' ');
  if (kept === options) return { execArgv: flags, env: undefined };
  const { NODE_OPTIONS: _dropped, ...rest } = env;
  return { execArgv: flags, env: kept === '' ? rest : { ...rest, NODE_OPTIONS: kept } };
}
