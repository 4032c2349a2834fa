import { createServer, connect, type Server, type Socket } from 'node:net';

/** Which way a chunk flows through the proxy. */
export type Direction = 'request' | 'response';

export interface TripwireProxy {
  port: number;
  /**
   * Arms the tripwire, once: when a chunk flowing `direction` satisfies `when`
   * (given the bytes that direction has carried since arming), `action` runs before
   * the chunk is forwarded. `cut` drops that connection, so the chunk never arrives.
   */
  arm(direction: Direction, when: (chunk: Buffer, carried: number) => boolean, action: (cut: () => void) => unknown): void;
  /**
   * Chaos: from now on each chunk, either way, cuts its connection with probability
   * `rate` before it is forwarded (0 turns it off). Requests are cut before or after
   * they reach the server, answers after: every kind of lost connection.
   */
  chaos(rate: number, random?: () => number): void;
  /** Connections cut by {@link chaos} so far. */
  readonly cuts: number;
  /** Resolves when the armed action has run (and settled, if it returned a promise). */
  fired(): Promise<void>;
  close(): Promise<void>;
}

/**
 * A TCP proxy in front of a test server that fires an action (kill the server, cut
 * the connection) at a chosen point of the byte stream: after so many request
 * bytes, at the first chunk of a given request, at the first byte of an answer.
 * Faults land mid-upload or mid-answer without guessing timings.
 */
export async function tripwireProxy(upstreamPort: number, upstreamHost = '127.0.0.1'): Promise<TripwireProxy> {
  let armed: { direction: Direction; when: (chunk: Buffer, carried: number) => boolean; action: (cut: () => void) => unknown } | undefined;
  let carried = 0;
  let chaosRate = 0;
  let chaosRandom: () => number = Math.random;
  let cuts = 0;
  let done: Promise<void> = Promise.resolve();
  const sockets = new Set<Socket>();
  const srv: Server = createServer((client) => {
    const upstream = connect(upstreamPort, upstreamHost);
    sockets.add(client).add(upstream);
    const cut = (): void => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('error', cut).on('close', cut);
    upstream.on('error', cut).on('close', cut);
    const watch = (direction: Direction) => (chunk: Buffer) => {
      if (chaosRate > 0 && chaosRandom() < chaosRate) {
        cuts++;
        cut();
        return;
      }
      if (armed?.direction !== direction) return;
      carried += chunk.byteLength;
      if (!armed.when(chunk, carried)) return;
      const { action } = armed;
      armed = undefined;
      done = Promise.resolve(action(cut)).then(() => undefined);
    };
    // Registered before the pipes, so the action runs before the chunk is forwarded.
    client.on('data', watch('request'));
    upstream.on('data', watch('response'));
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const address = srv.address();
  if (address === null || typeof address === 'string') throw new Error('proxy has no port');
  return {
    port: address.port,
    arm(direction, when, action) {
      carried = 0;
      armed = { direction, when, action };
    },
    chaos(rate, random = Math.random) {
      chaosRate = rate;
      chaosRandom = random;
    },
    get cuts() {
      return cuts;
    },
    fired: () => done,
    async close() {
      for (const socket of sockets) socket.destroy();
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        new Promise((resolve) => srv.close(resolve)),
        new Promise((_, reject) => {
          timer = setTimeout(() => reject(new Error(`the tripwire proxy in front of port ${upstreamPort} still had connections 10 s after closing them all`)), 10_000);
        }),
      ]).finally(() => clearTimeout(timer));
    },
  };
}
