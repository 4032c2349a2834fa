/**
 * Server processes the test helpers start: each is remembered until it exits, so
 * that none outlives the test process (a crashed or forgotten test file leaves no
 * server behind), and every wait for one to stop is bounded.
 */
import type { ChildProcess } from 'node:child_process';
import { lastLines } from './ports.js';

const running = new Set<ChildProcess>();
let hooked = false;

/** Remembers `child` until it exits; SIGKILLs it if this process exits first. */
export function adopt<T extends ChildProcess>(child: T): T {
  if (!hooked) {
    hooked = true;
    process.on('exit', killAll);
  }
  running.add(child);
  const forget = (): void => void running.delete(child);
  child.once('exit', forget).once('close', forget);
  return child;
}

function killAll(): void {
  for (const child of running) {
    try {
      child.kill('SIGKILL');
    } catch {
      // already gone
    }
  }
  running.clear();
}

/** True once `child` has exited (or never started). */
export function hasExited(child: ChildProcess): boolean {
  return child.pid === undefined || child.exitCode !== null || child.signalCode !== null;
}

/**
 * Resolves when `child` exits; rejects after `ms`, naming `what`. A child that
 * failed to spawn emits `close` but never `exit`, hence both.
 */
export function exited(child: ChildProcess, what: string, ms: number, log?: () => string): Promise<void> {
  if (hasExited(child)) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.off('exit', done).off('close', done);
      const tail = log === undefined ? '' : `\n--- last output ---\n${lastLines(log())}`;
      reject(new Error(`${what} (pid ${child.pid}) did not exit within ${ms} ms${tail}`));
    }, ms);
    const done = (): void => {
      clearTimeout(timer);
      child.off('exit', done).off('close', done);
      resolve();
    };
    child.once('exit', done).once('close', done);
  });
}

/**
 * Sends `signal` and waits up to `ms` for `child` to exit. One that ignores a
 * gentler signal is SIGKILLed, and the call then rejects naming `what`, since a
 * server that would not shut down is itself a finding.
 */
export async function stopChild(child: ChildProcess, what: string, options: { signal?: NodeJS.Signals; ms?: number; log?: () => string } = {}): Promise<void> {
  const { signal = 'SIGKILL', ms = 30_000, log } = options;
  if (hasExited(child)) return;
  child.kill(signal);
  try {
    await exited(child, what, ms, log);
    return;
  } catch (err) {
    if (signal === 'SIGKILL') throw err;
    child.kill('SIGKILL');
    await exited(child, what, 10_000, log);
    throw new Error(`${what} (pid ${child.pid}) ignored ${signal} for ${ms} ms and was SIGKILLed`, { cause: err });
  }
}
