/**
 * `persist-location watch KEY`: print a key's heads as they change.
 */
import { watch } from '../envelope/watch.js';
import { CONSENSUS_DEFAULT, expectArgs, openLocation, parseDuration, withHandle, type Command } from './args.js';
import { openConsensus } from '../location.js';
import { EXIT, jsonData, printLines, showData } from './output.js';

export const watchCommand: Command = {
  name: 'watch',
  summary: "print a key's heads as they change",
  options: ['json', 'timeout'],
  help: `Usage: persist-location watch KEY [--timeout DURATION] [--json]

Prints the current head of KEY, then each newer head as it is written, one line
each ("v5  <data>"; versions written in quick succession may be skipped, a head
is never older than the one before). Runs until interrupted (Ctrl-C) or, with
--timeout, until that much time has passed (then exits 0). Uses the backend's own
notifications where it has them, else reads the key with growing pauses.
The location is --consensus URI (${CONSENSUS_DEFAULT}).

Options:
  --timeout DURATION  stop after DURATION (500ms, 10s, 2m)
  --json              one JSON object per line: {"key", "seqno", "size", "encoding", "data"}

Examples:
  persist-location watch jobs
  persist-location watch shard-0 --timeout 30s --json`,
  async run(ctx) {
    expectArgs(ctx, ['KEY']);
    const key = ctx.args[0]!;
    const timeout = ctx.values.timeout === undefined ? undefined : parseDuration(ctx.values.timeout, 'timeout', 0);
    const stop = new AbortController();
    const timer = timeout === undefined ? undefined : setTimeout(() => stop.abort(), timeout);
    const interrupted = () => stop.abort();
    process.once('SIGINT', interrupted);
    try {
      await withHandle(() => openLocation(ctx, 'consensus', { create: false }), async (c) => {
        for await (const head of watch(c, key, { signal: stop.signal })) {
          if (ctx.values.json) await printLines([JSON.stringify({ key, seqno: head.seqno.toString(), ...jsonData(head.data) })]);
          else await printLines([`${head.seqno}  ${showData(head.data).text}`]);
        }
      });
    } finally {
      clearTimeout(timer);
      process.off('SIGINT', interrupted);
    }
    return EXIT.ok;
  },
};
