/**
 * One child process of `bench --processes N`: opens its share of the clients'
 * handles (a {@link BenchShare}, given by the parent, see Child), says `{"ready": true}`,
 * waits for the parent's `{"go": true}`, runs its clients (a `{"stop": true}` ends
 * them early) and returns what they measured, on the machine's monotonic clock so
 * that the parent can merge every process's measures (see bench.ts, processes.ts).
 * Standard output carries JSON lines (see childMain); `{"ops": n, "errors": e}`
 * now and then while it measures.
 */
import { openWorkload, runClients, type BenchShare, type Measured } from './bench.js';
import { loadBackends } from './main.js';
import { childMain, fromParent, monotonicOffset } from './processes.js';

// An interrupt at the terminal reaches the whole process group: the parent decides (it sends stop).
process.on('SIGINT', () => {});

await childMain<BenchShare, Measured>(async (share, tell) => {
  await loadBackends([]);
  const stop = new AbortController();
  let go!: () => void;
  const started = new Promise<void>((resolve) => (go = resolve));
  fromParent(
    (line) => {
      if (line.stop === true) stop.abort();
      go();
    },
    () => {
      stop.abort();
      go();
    },
  );
  const workload = await openWorkload(share);
  try {
    tell({ ready: true });
    await started;
    const measured = await runClients(workload, share, stop.signal, (ops, errors) => tell({ ops, errors }), monotonicOffset());
    // Microseconds are plenty, and keep the line of a long run from growing needlessly.
    const round = (ms: number) => Math.round(ms * 1000) / 1000;
    for (const list of Object.values(measured.byKind)) {
      list.ms = list.ms.map(round);
      list.at = list.at.map(round);
    }
    return measured;
  } finally {
    await workload.close();
  }
});
