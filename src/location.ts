/**
 * `openBlob` / `openConsensus`: a ready handle from a location URI.
 *
 * Backends other than memory live in their own entry points and are imported only
 * when a URI names them, so the core never loads a driver it does not need.
 */
import type { Blob } from './blob.js';
import type { Consensus } from './consensus.js';
import { Determinate, ErrorCode, invalidArgument } from './errors.js';
import { MemBlob } from './mem/blob.js';
import { MemConsensus } from './mem/consensus.js';
import { boolParam, checkParams, parseLocationUri, type LocationUri } from './uri.js';

/** What a backend entry point exports for {@link openConsensus}. */
export interface ConsensusBackendModule {
  consensusFromUri(loc: LocationUri): Promise<Consensus>;
}
/** What a backend entry point exports for {@link openBlob}. */
export interface BlobBackendModule {
  blobFromUri(loc: LocationUri): Promise<Blob>;
}

interface Backend {
  /** The entry point, relative to this file. */
  module: string;
  /** The npm package the entry point needs. */
  driver: string;
}

const CONSENSUS_SCHEMES: Record<string, Backend | 'mem'> = {
  mem: 'mem',
  sqlite: { module: './sqlite/index.js', driver: 'better-sqlite3' },
  postgres: { module: './postgres/index.js', driver: 'pg' },
  postgresql: { module: './postgres/index.js', driver: 'pg' },
  etcd: { module: './etcd/index.js', driver: 'etcd3' },
};

const BLOB_SCHEMES: Record<string, Backend | 'mem'> = {
  mem: 'mem',
  file: { module: './file/index.js', driver: 'node:fs' },
  s3: { module: './s3/index.js', driver: '@aws-sdk/client-s3' },
  azure: { module: './azure/index.js', driver: '@azure/storage-blob' },
};

/**
 * Opens Consensus at a URI: `mem://NAME`, `sqlite:`, `postgres://`, `postgresql://`
 * or `etcd://` (see the README for each form). Rejects with Determinate
 * InvalidArgument for an unknown scheme or parameter, naming what is accepted.
 */
export async function openConsensus(uri: string): Promise<Consensus> {
  const loc = parseLocationUri(uri);
  const backend = pick(CONSENSUS_SCHEMES, loc, 'Consensus');
  if (backend === 'mem') return new MemConsensus({ name: memName(loc, []) });
  const mod = await load<ConsensusBackendModule>(backend, loc);
  return mod.consensusFromUri(loc);
}

/**
 * Opens Blob at a URI: `mem://NAME[?keepDeleted=true]`, `file:`, `s3://` or
 * `azure://`. Rejects with Determinate InvalidArgument for an unknown scheme or
 * parameter, naming what is accepted.
 */
export async function openBlob(uri: string): Promise<Blob> {
  const loc = parseLocationUri(uri);
  const backend = pick(BLOB_SCHEMES, loc, 'Blob');
  if (backend === 'mem') {
    const params = checkParams(loc, ['keepDeleted']);
    return new MemBlob({ name: memName(loc, ['keepDeleted']), keepDeleted: boolParam(loc, params.keepDeleted, 'keepDeleted') });
  }
  const mod = await load<BlobBackendModule>(backend, loc);
  return mod.blobFromUri(loc);
}

function pick<T>(schemes: Record<string, T>, loc: LocationUri, what: string): T {
  const backend = Object.hasOwn(schemes, loc.scheme) ? schemes[loc.scheme] : undefined;
  if (backend === undefined) {
    const accepted = Object.keys(schemes).map((s) => `${s}:`).join(', ');
    throw invalidArgument(`unknown ${what} URI scheme '${loc.scheme}:' in ${loc.display}; accepted: ${accepted}`);
  }
  return backend;
}

/** `mem://NAME`: the name is the authority plus any path. */
function memName(loc: LocationUri, allowed: readonly string[]): string {
  checkParams(loc, allowed);
  const name = `${loc.authority ?? ''}${loc.path}`;
  if (loc.authority === undefined || name === '') throw invalidArgument(`expected mem://NAME, got ${loc.display}`);
  return name;
}

async function load<M>(backend: Backend, loc: LocationUri): Promise<M> {
  try {
    return (await import(backend.module)) as M;
  } catch (err) {
    if (isMissingModule(err, backend.driver)) {
      throw new Determinate(
        ErrorCode.Unavailable,
        `the ${loc.scheme}: backend needs the npm package ${backend.driver}, which is not installed: npm install ${backend.driver}`,
        { cause: err },
      );
    }
    throw err;
  }
}

/** Whether `err` says the npm package `driver` could not be found (not some other module). */
function isMissingModule(err: unknown, driver: string): boolean {
  const { code, message } = (err ?? {}) as { code?: unknown; message?: unknown };
  return (
    (code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND') &&
    typeof message === 'string' &&
    message.includes(`'${driver}'`)
  );
}
