/**
 * The writer worker of SqliteConsensus (option `worker: true`): it owns the write
 * connection, so the fsync of each group commit blocks this thread instead of the
 * application's event loop. Protocol: workerData is {@link WorkerInit}; the worker
 * posts `{ type: 'ready' }` or `{ type: 'failed', error }`, then answers each
 * `{ id, members }` with `{ id, result }`.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { openEngine, rawError, runBatch, type Engine, type EngineOptions, type WriteOp } from './engine.js';

export interface WorkerInit extends EngineOptions {
  path: string;
  busyTimeoutMs: number;
}

const init = workerData as WorkerInit;
const port = parentPort!;
let engine: Engine;
try {
  engine = await openEngine(init.path, init, init.busyTimeoutMs);
  port.postMessage({ type: 'ready' });
} catch (err) {
  port.postMessage({ type: 'failed', error: rawError(err) });
  process.exit(0);
}
// Batches arrive one at a time (the main thread waits for each answer), so no
// two transactions of this connection overlap.
port.on('message', (msg: { id: number; members: WriteOp[] } | { type: 'close' }) => {
  if ('type' in msg) {
    engine.close();
    port.close();
    return;
  }
  void runBatch(engine, msg.members, init.busyTimeoutMs).then(
    (result) => port.postMessage({ id: msg.id, result }),
    (err: unknown) => port.postMessage({ id: msg.id, result: { type: 'error', exposure: 'committed', error: rawError(err) } }),
  );
});
