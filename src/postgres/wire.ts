/**
 * One run of a named statement, handed to a pg client as its own kind of query (pg's
 * `Submittable`, the interface pg-cursor and pg-query-stream plug in through), for
 * the compareAndSet statements: the hot path, where pg's general `Query` costs more
 * client CPU than the round trip itself.
 *
 * What it saves, against `client.query(config)`: the messages are encoded once,
 * before the client is asked (Bind, Execute and Sync leave in one write, with Parse
 * in front the first time a connection runs the statement), there is no Describe
 * (the server then sends no RowDescription either), and the answer is read as the
 * row count and the first column's text, without pg's Result, type parsers and
 * events. Measured (bench/postgres.bench.ts, single client): see bench/RESULTS.md.
 *
 * It keeps pg's own bookkeeping of named statements (`parsedStatements`,
 * `submittedNamedStatements`, which pg updates from `name` and `text` on ParseComplete
 * and on an error), so pg's queries and these share a connection's statements.
 *
 * Parameters are text (a string), binary (a Buffer, e.g. a bytea or a binary array),
 * or null. Encoding happens in the constructor: a failure to encode is before
 * anything was sent.
 */
import { createRequire } from 'node:module';
import type pg from 'pg';

// pg's own encoder, the copy pg itself loads (a package manager that keeps each
// package's dependencies private, such as pnpm, lets only pg see it).
const pgRequire = createRequire(createRequire(import.meta.url).resolve('pg'));
const { serialize } = pgRequire('pg-protocol') as typeof import('pg-protocol');

export type WireValue = string | Buffer | null;

/** What a run answers: the command's row count, and the first column of any rows it returned. */
export interface WireResult {
  rowCount: number;
  firstColumn: (string | null)[];
}

const EXECUTE_SYNC = Buffer.concat([serialize.execute({}), serialize.sync()]);

/** The parts of pg's Connection this uses (it has no public type for them). */
interface WireConnection {
  stream: { writable: boolean; write(chunk: Buffer): boolean };
  parsedStatements: Record<string, string | undefined>;
  submittedNamedStatements: Record<string, string | undefined>;
}

export class WireStatement implements pg.Submittable {
  /** Read by pg: the statement's name and text, for its bookkeeping of what each connection has parsed. */
  readonly name: string;
  readonly text: string;
  readonly #bind: Buffer;
  readonly #callback: (err: Error | undefined, result: WireResult) => void;
  #rowCount = 0;
  readonly #rows: (string | null)[] = [];
  #sent = false;
  #settled = false;

  constructor(
    statement: { name: string; text: string },
    values: readonly WireValue[],
    callback: (err: Error | undefined, result: WireResult) => void,
  ) {
    this.name = statement.name;
    this.text = statement.text;
    this.#bind = serialize.bind({ statement: statement.name, values: values as WireValue[] });
    this.#callback = callback;
  }

  /** Whether its messages were handed to the socket (after that, it may have run). */
  get sent(): boolean {
    return this.#sent;
  }

  /** Called by pg when the connection is free for it. An error returned is reported through handleError. */
  submit(connection: pg.Connection): Error | undefined {
    const c = connection as unknown as WireConnection;
    if (!c.stream.writable) return new Error('the connection can no longer be written to');
    const known = c.parsedStatements[this.name] ?? c.submittedNamedStatements[this.name];
    if (known !== undefined && known !== this.text) {
      return new Error(`prepared statement ${this.name} is already a different statement on this connection`);
    }
    let message: Buffer;
    if (known === undefined) {
      c.submittedNamedStatements[this.name] = this.text;
      message = Buffer.concat([serialize.parse({ name: this.name, text: this.text }), this.#bind, EXECUTE_SYNC]);
    } else {
      message = Buffer.concat([this.#bind, EXECUTE_SYNC]);
    }
    this.#sent = true;
    c.stream.write(message);
    return undefined;
  }

  handleDataRow(msg: { fields: (string | null)[] }): void {
    this.#rows.push(msg.fields[0] ?? null);
  }

  handleCommandComplete(msg: { text: string }): void {
    // "INSERT 0 3", "UPDATE 1", "SELECT 2": the count is the last word.
    const count = Number(msg.text.slice(msg.text.lastIndexOf(' ') + 1));
    this.#rowCount = Number.isSafeInteger(count) ? count : 0;
  }

  handleReadyForQuery(): void {
    this.#settle(undefined);
  }

  /** A server error (pg then sends the next query after ReadyForQuery itself) or a lost connection. */
  handleError(err: Error): void {
    this.#settle(err);
  }

  handleRowDescription(): void {}
  handleEmptyQuery(): void {}
  handlePortalSuspended(): void {}

  /** No statement of ours copies; pg would otherwise wait for the copy forever. */
  handleCopyInResponse(connection: { sendCopyFail(msg: string): void }): void {
    connection.sendCopyFail('not expected');
  }

  handleCopyData(): void {}

  #settle(err: Error | undefined): void {
    if (this.#settled) return;
    this.#settled = true;
    this.#callback(err, { rowCount: this.#rowCount, firstColumn: this.#rows });
  }
}
