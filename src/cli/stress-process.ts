/**
 * One child process of `check --processes N`: runs its share of the linearizability
 * run's clients (stressConsensus) on the location, then prints its history for the
 * parent to merge with the other processes' (see processes.ts). Not a command: the
 * parent spawns it with a {@link StressShare} (see Child).
 *
 * Standard output carries JSON lines (see childMain): `{"done": n}` now and then
 * while it runs, then one `{"result": ...}` with the counts and the history, its
 * times on the machine's monotonic clock (which every process reads alike) and its
 * clients numbered from the share's `clientBase`, so that histories of several
 * processes merge as they are.
 */
import { openConsensus } from '../location.js';
import { stressConsensus } from '../testing/index.js';
import { loadBackends } from './main.js';
import { childMain, monotonicOffset, type StressShare } from './processes.js';

await childMain<StressShare, unknown>(async (share, tell) => {
  await loadBackends([]);
  let lastShown = 0;
  const report = await stressConsensus(() => openConsensus(share.uri), {
    ops: share.ops,
    clients: share.clients,
    keys: share.keys,
    keyPrefix: share.keyPrefix,
    // This process's history alone cannot be checked (it reads what others wrote): the
    // parent checks the merged one, so the check here is cut as short as it goes.
    maxStepsPerKey: 1,
    onProgress: (done) => {
      if (done - lastShown < 25) return;
      lastShown = done;
      tell({ done });
    },
  });
  const offset = monotonicOffset();
  const history = report.history.map((op) => ({
    ...op,
    start: op.start + offset,
    end: op.end + offset,
    // Its final reads were made by client -1: the parent's are.
    client: share.clientBase + (op.client === -1 ? share.clients : op.client!),
  }));
  const { committed, mismatches, failed, unknown, errors } = report;
  return { committed, mismatches, failed, unknown, errors, history };
});
