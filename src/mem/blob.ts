import { BlobBase } from '../base.js';
import type { BlobMetadata } from '../blob.js';
import { Determinate, ErrorCode } from '../errors.js';
import { SegmentedBytes } from '../segmented-bytes.js';
import { copyBytes } from '../bytes.js';
import { redactUri } from '../uri.js';

interface State {
  values: Map<string, Uint8Array>;
  /** The last deleted value of each key, kept by handles with `keepDeleted`. */
  deleted: Map<string, Uint8Array>;
}

const named = new Map<string, State>();

/** Lets go of the named location `name` (a scratch namespace being destroyed): a handle opened afterwards with that name starts empty. */
export function forgetNamedBlob(name: string): void {
  named.delete(name);
}

/** Options of {@link MemBlob}. */
export interface MemBlobOptions {
  /** Handles with the same name in this process share one location (`mem://NAME`). */
  name?: string;
  /**
   * Keep the last value of each deleted key so that `restore` can bring it back
   * (`mem://NAME?keepDeleted=true`). Off by default.
   */
  keepDeleted?: boolean;
}

/**
 * Blob held in this process's memory. Operations are atomic and linearizable
 * across concurrent callers; bytes are copied in and out.
 */
export class MemBlob extends BlobBase {
  readonly description: string;
  readonly #state: State;
  readonly #keepDeleted: boolean;

  constructor(options: MemBlobOptions = {}) {
    super();
    const { name } = options;
    const fresh = (): State => ({ values: new Map(), deleted: new Map() });
    if (name === undefined) {
      this.#state = fresh();
    } else {
      let state = named.get(name);
      if (state === undefined) named.set(name, (state = fresh()));
      this.#state = state;
    }
    this.#keepDeleted = options.keepDeleted ?? false;
    // A name opened from a URI holds its authority, which may hold a password.
    this.description = `MemBlob(${name === undefined ? '<private>' : redactUri(`mem://${name}`)})`;
  }

  protected async _get(key: string): Promise<SegmentedBytes | undefined> {
    const value = this.#state.values.get(key);
    return value === undefined ? undefined : new SegmentedBytes(copyBytes(value));
  }

  protected async *_list(prefix: string): AsyncIterable<BlobMetadata> {
    const matches: BlobMetadata[] = [];
    for (const [key, value] of this.#state.values) {
      if (key.startsWith(prefix)) matches.push({ key, sizeInBytes: value.byteLength });
    }
    yield* matches;
  }

  protected async _set(key: string, value: Uint8Array): Promise<void> {
    this.#state.values.set(key, copyBytes(value));
    this.#state.deleted.delete(key);
  }

  protected async _delete(key: string): Promise<number | undefined> {
    const value = this.#state.values.get(key);
    if (value === undefined) return undefined;
    this.#state.values.delete(key);
    if (this.#keepDeleted) this.#state.deleted.set(key, value);
    return value.byteLength;
  }

  protected async _restore(key: string): Promise<void> {
    const { values, deleted } = this.#state;
    if (values.has(key)) return;
    const old = this.#keepDeleted ? deleted.get(key) : undefined;
    if (old === undefined) {
      throw new Determinate(ErrorCode.NotFound, `${this.description}: cannot restore ${key}: no deleted value is kept`);
    }
    values.set(key, old);
    deleted.delete(key);
  }

  protected async _close(): Promise<void> {}
}
