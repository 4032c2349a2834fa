/**
 * `persist-location blob ...`: inspect and operate on a Blob location.
 */
import type { Blob } from '../blob.js';
import { redactUri } from '../uri.js';
import { BLOB_DEFAULT, expectArgs, locationOptionHelp, openLocation, withHandle, type Command, type Context } from './args.js';
import { EXIT, asText, formatBytes, plural, printJson, printLines, printSummary, readInput, readStdin, showKey, table, writeErr, writeOut } from './output.js';

const WHERE = `The location is --blob URI (${BLOB_DEFAULT}).`;

const withBlob = <T>(ctx: Context, work: (b: Blob) => Promise<T>): Promise<T> => withHandle(() => openLocation(ctx, 'blob'), work);
/** For the commands that only look: opens with `create: false`, so a missing location is an error, not an empty one. */
const inspectBlob = <T>(ctx: Context, work: (b: Blob) => Promise<T>): Promise<T> => withHandle(() => openLocation(ctx, 'blob', { create: false }), work);

export const blobLs: Command = {
  name: 'blob ls',
  summary: 'list keys and sizes',
  options: ['json'],
  help: `Usage: persist-location blob ls [PREFIX] [--json]

Lists the keys of the Blob location that start with PREFIX (default: all keys),
sorted, with their sizes; the count and total size follow on standard error (so a
pipe gets only the listing; --quiet leaves them out). Keys that are not plain printable text are
shown JSON-quoted. ${WHERE}

Options:
  --json           print a JSON array of {"key", "size"}

Examples:
  persist-location blob ls
  persist-location blob ls batch/ --json`,
  async run(ctx) {
    expectArgs(ctx, ['PREFIX'], 1);
    const prefix = ctx.args[0] ?? '';
    const entries = await inspectBlob(ctx, async (b) => {
      const out: { key: string; size: number }[] = [];
      for await (const m of b.list(prefix)) out.push({ key: m.key, size: m.sizeInBytes });
      return out.sort((x, y) => (x.key < y.key ? -1 : x.key > y.key ? 1 : 0));
    });
    if (ctx.values.json) {
      await printJson(entries);
      return EXIT.ok;
    }
    const total = entries.reduce((sum, e) => sum + e.size, 0);
    await printLines(table(entries.map((e) => [formatBytes(e.size), showKey(e.key)]), ['r', 'l']));
    const where = `${prefix === '' ? '' : ` starting with ${JSON.stringify(prefix)}`} in ${redactUri(ctx.blobUri)}`;
    printSummary(entries.length === 0 ? `no keys${where}` : `${plural(entries.length, 'key')}, ${formatBytes(total)}${where}`, ctx.values.quiet);
    return EXIT.ok;
  },
};

export const blobGet: Command = {
  name: 'blob get',
  summary: 'write a value to standard output',
  options: [],
  help: `Usage: persist-location blob get KEY

Writes the exact bytes of KEY's value to standard output (binary-safe, nothing
added). A missing key is an error (exit 1), so an empty output always means an empty
value. Binary data is not written to a terminal: redirect or pipe it. ${WHERE}

Examples:
  persist-location blob get batch/0001 > batch-0001.bin
  persist-location blob get config.json | jq .`,
  async run(ctx) {
    expectArgs(ctx, ['KEY']);
    const key = ctx.args[0]!;
    const value = await inspectBlob(ctx, (b) => b.get(key));
    if (value === undefined) throw new Error(`no such key: ${showKey(key)}`);
    if (process.stdout.isTTY && asText(value.toContiguous()) === undefined) {
      // Raw bytes would garble the terminal; a pipe or a file gets them unchanged.
      throw new Error(`${showKey(key)} holds ${formatBytes(value.length)} of binary data: redirect it to a file (> FILE) or pipe it (| xxd)`);
    }
    for (const segment of value.segments) await writeOut(segment);
    return EXIT.ok;
  },
};

export const blobPut: Command = {
  name: 'blob put',
  summary: 'store a file or standard input as a value',
  options: [],
  help: `Usage: persist-location blob put KEY [FILE|-]

Stores the bytes of FILE (or of standard input, for "-" or no FILE) as KEY's value,
atomically, replacing any earlier value. ${WHERE}

Examples:
  persist-location blob put batch/0001 batch-0001.bin
  echo '{"a":1}' | persist-location blob put config.json`,
  async run(ctx) {
    expectArgs(ctx, ['KEY', 'FILE'], 1);
    const [key, file] = ctx.args as [string, string | undefined];
    if ((file === undefined || file === '-') && process.stdin.isTTY && !ctx.values.quiet) {
      writeErr('reading the value from standard input (end it with Ctrl-D)\n');
    }
    const data = file === undefined || file === '-' ? await readStdin() : await readInput(file);
    await withBlob(ctx, (b) => b.set(key, data));
    await printLines([`stored ${showKey(key)} (${formatBytes(data.byteLength)})`]);
    return EXIT.ok;
  },
};

export const blobRm: Command = {
  name: 'blob rm',
  summary: 'delete a key',
  options: [],
  help: `Usage: persist-location blob rm KEY

Deletes KEY and prints the size of the deleted value. Deleting a missing key is not
an error. Some locations keep deleted values: see "blob restore". ${WHERE}

Examples:
  persist-location blob rm batch/0001`,
  async run(ctx) {
    expectArgs(ctx, ['KEY']);
    const key = ctx.args[0]!;
    const size = await withBlob(ctx, (b) => b.delete(key));
    await printLines([size === undefined ? `${showKey(key)} did not exist` : `deleted ${showKey(key)} (${formatBytes(size)})`]);
    return EXIT.ok;
  },
};

export const blobRestore: Command = {
  name: 'blob restore',
  summary: 'bring back a deleted key, where the location keeps them',
  options: [],
  help: `Usage: persist-location blob restore KEY

Makes sure KEY exists: succeeds if it exists already, or if the location kept its
deleted value and brought it back; otherwise fails (exit 1). Locations that keep no
deleted values can only confirm keys that exist. ${WHERE}

Examples:
  persist-location blob restore batch/0001`,
  async run(ctx) {
    expectArgs(ctx, ['KEY']);
    const key = ctx.args[0]!;
    await withBlob(ctx, (b) => b.restore(key));
    await printLines([`${showKey(key)} exists`]);
    return EXIT.ok;
  },
};

export const blobCommands: readonly Command[] = [blobLs, blobGet, blobPut, blobRm, blobRestore];

export const blobGroupHelp = `Usage: persist-location blob COMMAND [options]

Inspect and operate on a Blob location: a durable map from keys to bytes.

Commands:
${blobCommands.map((c) => `  ${c.name.split(' ')[1]!.padEnd(10)} ${c.summary}`).join('\n')}

Options:
${locationOptionHelp('  --blob URI       ', 'the location', BLOB_DEFAULT)}
  --json           JSON output (ls)

Run "persist-location blob COMMAND --help" for more.`;
