import { createServer } from 'node:net';

/** A TCP port on 127.0.0.1 that was free a moment ago (the OS picks it). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => {
        if (address === null || typeof address === 'string') reject(new Error('no port'));
        else resolve(address.port);
      });
    });
  });
}

/** Thrown by a {@link waitFor} probe when waiting longer cannot help (the server exited). */
export class StopWaiting extends Error {}

export interface WaitOptions {
  /** Total time allowed, probes included (default 30 s). */
  timeoutMs?: number;
  /** Pause between failed probes (default 100 ms). */
  intervalMs?: number;
  /** The server's recent output, appended to the failure message. */
  log?: () => string;
}

/**
 * Resolves once `probe` succeeds, polling; rejects with a message naming `what`
 * (and the last probe error, and the server's log) once `timeoutMs` has passed or
 * a probe throws {@link StopWaiting}. A probe that hangs counts against the time.
 */
export async function waitFor(what: string, probe: () => Promise<unknown>, options: WaitOptions = {}): Promise<void> {
  const { timeoutMs = 30_000, intervalMs = 100, log } = options;
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  const fail = (why: string): Error => {
    const tail = log === undefined ? '' : `\n--- last output ---\n${lastLines(log())}`;
    return new Error(`${what} ${why}: ${String(last)}${tail}`, { cause: last });
  };
  const overdue = new Error(`a probe was still pending after ${timeoutMs} ms`);
  for (;;) {
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        probe(),
        new Promise((_, reject) => {
          timer = setTimeout(() => reject(overdue), Math.max(0, deadline - Date.now()));
        }),
      ]);
      return;
    } catch (err) {
      // A probe cut short by the deadline says less than the one before it.
      if (err !== overdue || last === undefined) last = err;
      if (err instanceof StopWaiting) throw fail('gave up');
    } finally {
      clearTimeout(timer);
    }
    const left = deadline - Date.now();
    if (left <= 0) throw fail(`did not become ready in ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, Math.min(intervalMs, left)));
  }
}

/** The last `n` lines of a log, for failure messages. */
export function lastLines(text: string, n = 30): string {
  return text.trim() === '' ? '(no output)' : text.trimEnd().split('\n').slice(-n).join('\n');
}
