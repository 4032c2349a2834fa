/**
 * `persist-location consensus ...`: inspect and operate on a Consensus location.
 */
import { CaSResult, SCAN_ALL, type Consensus, type VersionedData } from '../consensus.js';
import { update } from '../envelope/update.js';
import { redactUri } from '../uri.js';
import { CONSENSUS_DEFAULT, expectArgs, locationOptionHelp, openLocation, parseCount, parseSeqNo, usageIf, withHandle, type Command, type Context } from './args.js';
import { EXIT, formatBytes, jsonData, plural, printJson, printLines, printSummary, readInput, readStdin, showData, showKey, table } from './output.js';

const WHERE = `The location is --consensus URI (${CONSENSUS_DEFAULT}).`;

const withConsensus = <T>(ctx: Context, work: (c: Consensus) => Promise<T>): Promise<T> => withHandle(() => openLocation(ctx, 'consensus'), work);
/** For the commands that only look: opens with `create: false`, so a missing location is an error, not an empty one. */
const inspectConsensus = <T>(ctx: Context, work: (c: Consensus) => Promise<T>): Promise<T> => withHandle(() => openLocation(ctx, 'consensus', { create: false }), work);

function versionJson(v: VersionedData): object {
  return { seqno: v.seqno.toString(), ...jsonData(v.data) };
}

/**
 * DATA given as an argument, as UTF-8. Node has already decoded the command line,
 * putting U+FFFD in place of bytes that are not UTF-8: writing that would silently
 * store other bytes than the ones given, so it is refused with a pointer to --data-file.
 */
function argumentBytes(text: string, what: string): Uint8Array {
  usageIf(
    text.includes('\uFFFD'),
    `${what} is not valid UTF-8 text (or holds U+FFFD, which stands for bytes that are not): give binary data with --data-file FILE, or --data-file - to read standard input`,
  );
  return Buffer.from(text, 'utf8');
}

export const consensusList: Command = {
  name: 'consensus list',
  summary: 'list every key that has data',
  options: ['json'],
  help: `Usage: persist-location consensus list [--json]

Lists every key of the Consensus location, one per line, sorted; the count follows
on standard error (so a pipe gets only the keys; --quiet leaves it out). Keys that
are not plain printable text are shown JSON-quoted. ${WHERE}

Options:
  --json           print a JSON array of keys

Examples:
  persist-location consensus list
  persist-location consensus list --consensus postgres://app@db:5432/app --json`,
  async run(ctx) {
    expectArgs(ctx, []);
    const keys = await inspectConsensus(ctx, async (c) => {
      const out: string[] = [];
      for await (const key of c.listKeys()) out.push(key);
      return out.sort();
    });
    if (ctx.values.json) {
      await printJson(keys);
      return EXIT.ok;
    }
    await printLines(keys.map(showKey));
    printSummary(`${keys.length === 0 ? 'no keys' : plural(keys.length, 'key')} in ${redactUri(ctx.consensusUri)}`, ctx.values.quiet);
    return EXIT.ok;
  },
};

export const consensusHead: Command = {
  name: 'consensus head',
  summary: 'show the latest version of a key',
  options: ['json'],
  help: `Usage: persist-location consensus head KEY [--json]

Shows the version of KEY with the greatest seqno: its seqno, size and data. Data is
shown as text when it is printable UTF-8, otherwise as hex (up to 64 bytes) or base64,
with a note saying which. A key without data prints "no data". ${WHERE}

Options:
  --json           print {"key", "seqno", "size", "encoding", "data"} (data is utf8
                   text or base64, as "encoding" says), or null without data

Examples:
  persist-location consensus head shard-0
  persist-location consensus head shard-0 --json`,
  async run(ctx) {
    expectArgs(ctx, ['KEY']);
    const key = ctx.args[0]!;
    const head = await inspectConsensus(ctx, (c) => c.head(key));
    if (ctx.values.json) {
      await printJson(head === undefined ? null : { key, ...versionJson(head) });
    } else if (head === undefined) {
      await printLines([`${showKey(key)}: no data`]);
    } else {
      const { text, note } = showData(head.data);
      await printLines([`key:    ${showKey(key)}`, `seqno:  ${head.seqno}`, `size:   ${formatBytes(head.data.byteLength)}`, `data:   ${text}${note === '' ? '' : `  ${note}`}`]);
    }
    return EXIT.ok;
  },
};

export const consensusScan: Command = {
  name: 'consensus scan',
  summary: 'show the versions of a key',
  options: ['from', 'limit', 'json'],
  help: `Usage: persist-location consensus scan KEY [--from SEQNO] [--limit N] [--json]

Shows the versions of KEY with seqno >= SEQNO (default v0), oldest first, at most N
of them (default all): one line per version with its seqno, size and data (long
values are cut short; use --json or "head" for a whole value); the count follows on
standard error (--quiet leaves it out). ${WHERE}

Options:
  --from SEQNO     first seqno to show, written v5 or 5 (default v0)
  --limit N        at most N versions (default: all)
  --json           print a JSON array of {"seqno", "size", "encoding", "data"}

Examples:
  persist-location consensus scan shard-0
  persist-location consensus scan shard-0 --from v10 --limit 5 --json`,
  async run(ctx) {
    expectArgs(ctx, ['KEY']);
    const key = ctx.args[0]!;
    const from = ctx.values.from === undefined ? parseSeqNo('v0', '--from') : parseSeqNo(ctx.values.from, '--from');
    const limit = parseCount(ctx.values.limit, 'limit', SCAN_ALL);
    const versions = await inspectConsensus(ctx, (c) => c.scan(key, from, limit));
    if (ctx.values.json) {
      await printJson(versions.map(versionJson));
      return EXIT.ok;
    }
    const rows = versions.map((v) => {
      const { text, note } = showData(v.data, 60);
      return [v.seqno.toString(), formatBytes(v.data.byteLength), `${text}${note === '' ? '' : `  ${note}`}`];
    });
    await printLines(table(rows, ['l', 'r', 'l']));
    printSummary(`${versions.length === 0 ? 'no versions' : plural(versions.length, 'version')} of ${showKey(key)} from ${from}`, ctx.values.quiet);
    return EXIT.ok;
  },
};

export const consensusCas: Command = {
  name: 'consensus cas',
  summary: 'compare-and-set: write a new version if the head is as expected',
  options: ['data-file', 'next'],
  help: `Usage: persist-location consensus cas KEY EXPECTED SEQNO DATA
       persist-location consensus cas KEY EXPECTED SEQNO --data-file FILE|-
       persist-location consensus cas KEY --next DATA

Makes {SEQNO, DATA} the head of KEY if, and only if, the current head's seqno is
EXPECTED (write "none" for a key that has no data yet). SEQNO must be greater than
EXPECTED. DATA is taken as UTF-8 text (an argument that is not valid UTF-8 is
refused); --data-file reads the bytes of a file instead ("-" for standard input). ${WHERE}

Prints "Committed" and exits 0, or prints "ExpectationMismatch" with the actual head
and exits 2: nothing was written.

With --next, DATA is appended at the seqno after the current head (v0 on a key
without data) by a read-modify-write that re-reads and tries again when another
writer got there first (update() of the library); prints the seqno it wrote.

Options:
  --data-file FILE  read the data from FILE, or from standard input for "-"
  --next DATA       append DATA at the next seqno, whatever the head is

Examples:
  persist-location consensus cas shard-0 --next 'another state'
  persist-location consensus cas shard-0 none v1 'first state'
  persist-location consensus cas shard-0 v1 v2 'second state'
  persist-location consensus cas shard-0 2 3 --data-file state.bin`,
  async run(ctx) {
    const fromFile = ctx.values['data-file'];
    const appended = ctx.values.next;
    if (appended !== undefined) {
      usageIf(fromFile !== undefined, '--next and --data-file cannot be used together');
      expectArgs(ctx, ['KEY']);
      const key = ctx.args[0]!;
      const data = argumentBytes(appended, '--next DATA');
      return withConsensus(ctx, async (c) => {
        const head = await update(c, key, () => data);
        await printLines([`Committed: ${showKey(key)} is now at ${head!.seqno} (${formatBytes(data.byteLength)})`]);
        return EXIT.ok;
      });
    }
    if (fromFile === undefined) expectArgs(ctx, ['KEY', 'EXPECTED', 'SEQNO', 'DATA']);
    else expectArgs(ctx, ['KEY', 'EXPECTED', 'SEQNO']);
    const [key, expectedText, seqnoText, dataText] = ctx.args as [string, string, string, string | undefined];
    const expected = expectedText === 'none' ? undefined : parseSeqNo(expectedText, 'EXPECTED');
    const seqno = parseSeqNo(seqnoText, 'SEQNO');
    let data: Uint8Array;
    if (fromFile === undefined) data = argumentBytes(dataText!, 'DATA');
    else if (fromFile === '-') data = await readStdin();
    else data = await readInput(fromFile);
    return withConsensus(ctx, async (c) => {
      const result = await c.compareAndSet(key, expected, { seqno, data });
      if (result === CaSResult.Committed) {
        await printLines([`Committed: ${showKey(key)} is now at ${seqno} (${formatBytes(data.byteLength)})`]);
        return EXIT.ok;
      }
      const head = await c.head(key).catch(() => 'unknown' as const);
      const actual = head === 'unknown' ? 'could not be read' : head === undefined ? 'none (no data)' : head.seqno.toString();
      await printLines([`ExpectationMismatch: ${showKey(key)} head is ${actual}, expected ${expected?.toString() ?? 'none'}; nothing was written`]);
      return EXIT.mismatch;
    });
  },
};

export const consensusTruncate: Command = {
  name: 'consensus truncate',
  summary: 'delete the versions of a key below a seqno',
  options: [],
  help: `Usage: persist-location consensus truncate KEY SEQNO

Deletes every version of KEY with a seqno below SEQNO and prints how many were
deleted. The head is never deleted: SEQNO above the head's seqno (or a key without
data) is an error. ${WHERE}

Examples:
  persist-location consensus truncate shard-0 v10
  persist-location consensus truncate shard-0 10`,
  async run(ctx) {
    expectArgs(ctx, ['KEY', 'SEQNO']);
    const key = ctx.args[0]!;
    const seqno = parseSeqNo(ctx.args[1]!, 'SEQNO');
    const deleted = await withConsensus(ctx, (c) => c.truncate(key, seqno));
    await printLines([`deleted ${plural(deleted, 'version')} of ${showKey(key)} below ${seqno}`]);
    return EXIT.ok;
  },
};

export const consensusCommands: readonly Command[] = [consensusList, consensusHead, consensusScan, consensusCas, consensusTruncate];

export const consensusGroupHelp = `Usage: persist-location consensus COMMAND [options]

Inspect and operate on a Consensus location: per key, a versioned log advanced by
compare-and-set.

Commands:
${consensusCommands.map((c) => `  ${c.name.split(' ')[1]!.padEnd(10)} ${c.summary}`).join('\n')}

Options:
${locationOptionHelp('  --consensus URI  ', 'the location', CONSENSUS_DEFAULT)}
  --json           JSON output (list, head, scan)

SeqNos are written v5 or 5. Run "persist-location consensus COMMAND --help" for more.`;
