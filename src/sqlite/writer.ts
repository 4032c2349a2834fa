import { Worker } from 'node:worker_threads';
import { runBatch, type BatchResult, type Engine, type EngineOptions, type RawError, type WriteOp } from './engine.js';
import type { WorkerInit } from './worker.js';
import { workerStartOptions } from './worker-options.js';

/** Runs group-commit batches, one at a time. */
export interface Writer {
  run(members: readonly WriteOp[]): Promise<BatchResult>;
  close(): Promise<void>;
}

/** Batches on the calling thread, through the handle's only connection. */
export class InlineWriter implements Writer {
  constructor(
    readonly engine: Engine,
    readonly busyTimeoutMs: number,
  ) {}

  run(members: readonly WriteOp[]): Promise<BatchResult> {
    return runBatch(this.engine, members, this.busyTimeoutMs);
  }

  async close(): Promise<void> {}
}

/**
 * Batches in a worker thread that owns a second connection, so the COMMIT fsync
 * never blocks the caller's event loop. The worker is unref'd while idle: an open
 * handle alone does not keep the process alive, an unanswered write does.
 */
export class WorkerWriter implements Writer {
  readonly #worker: Worker;
  readonly #waiting = new Map<number, { resolve(r: BatchResult): void; reject(e: unknown): void }>();
  #nextId = 0;
  #dead: Error | undefined;

  private constructor(worker: Worker) {
    this.#worker = worker;
    worker.on('message', (msg: { id: number; result: BatchResult }) => {
      const w = this.#waiting.get(msg.id);
      this.#waiting.delete(msg.id);
      if (this.#waiting.size === 0) worker.unref();
      w?.resolve(msg.result);
    });
    const die = (err: Error) => {
      this.#dead ??= err;
      for (const w of this.#waiting.values()) w.reject(err);
      this.#waiting.clear();
    };
    worker.on('error', die);
    worker.on('exit', (code) => die(new Error(`the SQLite writer worker exited (code ${code})`)));
  }

  static async start(path: string, options: EngineOptions, busyTimeoutMs: number): Promise<WorkerWriter> {
    const init: WorkerInit = { path, busyTimeoutMs, ...options };
    // Started with only the Node options it needs, not the application's (see worker-options.ts).
    const { execArgv, env } = workerStartOptions();
    const worker = new Worker(new URL('./worker.js', import.meta.url), { workerData: init, execArgv, ...(env === undefined ? {} : { env }) });
    const first = await new Promise<{ type: 'ready' } | { type: 'failed'; error: RawError }>((resolve, reject) => {
      worker.once('message', resolve);
      worker.once('error', reject);
    });
    if (first.type === 'failed') {
      await worker.terminate();
      throw Object.assign(new Error(first.error.message), { code: first.error.code });
    }
    const writer = new WorkerWriter(worker);
    // After the constructor: adding a 'message' listener refs the worker's port again.
    worker.unref();
    return writer;
  }

  run(members: readonly WriteOp[]): Promise<BatchResult> {
    if (this.#dead !== undefined) {
      // Never handed to the worker: provably not applied.
      return Promise.resolve({ type: 'error', exposure: 'not-sent', error: { code: 'WORKER_EXITED', message: this.#dead.message } });
    }
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      this.#waiting.set(id, { resolve, reject });
      this.#worker.ref();
      // Values are copied into fresh buffers at submit, so transferring them is safe.
      const transfer = members.flatMap((m) => (m.type === 'cas' && m.data.byteLength > 0 ? [m.data.buffer as ArrayBuffer] : []));
      this.#worker.postMessage({ id, members }, transfer);
    });
  }

  async close(): Promise<void> {
    if (this.#dead !== undefined) return;
    const exited = new Promise<void>((resolve) => this.#worker.once('exit', () => resolve()));
    this.#worker.ref();
    this.#worker.postMessage({ type: 'close' });
    await exited;
  }
}
