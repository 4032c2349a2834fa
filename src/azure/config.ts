/**
 * AzureBlob's options, credentials and URI:
 * `azure://CONTAINER[/PREFIX][?endpoint=URL][&createContainer=true][&ca=PATH]`.
 *
 * Credentials: `AZURE_STORAGE_CONNECTION_STRING`, else `AZURE_STORAGE_ACCOUNT`
 * with `AZURE_STORAGE_KEY`, else an Azure AD identity from `@azure/identity`'s
 * `DefaultAzureCredential` (environment, workload or managed identity, Azure CLI,
 * ...) for the blob service at `endpoint` or of `AZURE_STORAGE_ACCOUNT`.
 * `endpoint` is the blob service URL (for Azurite:
 * `http://127.0.0.1:10000/devstoreaccount1`); it overrides the connection
 * string's. `createContainer=true` creates the container if it is missing (off by
 * default: opening checks that the container exists, and a missing one is
 * Determinate NotFound; `create: false` never creates it, whatever this says). `ca`
 * is a PEM bundle the https endpoint's certificate must chain to, instead of
 * Node's trusted roots (`NODE_EXTRA_CA_CERTS` adds to those for the whole
 * process instead).
 */
import {
  AnonymousCredential,
  BlobServiceClient,
  StorageSharedKeyCredential,
  type newPipeline,
  type StoragePipelineOptions,
} from '@azure/storage-blob';
import { createRequire } from 'node:module';
import { Determinate, ErrorCode, invalidArgument } from '../errors.js';
import type { BackoffPolicy } from '../kit/backoff.js';
import { readTlsFiles } from '../kit/tls.js';
import { boolParam, checkParams, type LocationUri } from '../uri.js';
import { AZURE_MAX_NAME_CHARS, maxKeyBytesFor, namePrefixChars } from './keys.js';

const MiB = 1024 * 1024;
/** Azure's limits on one block blob. */
export const MAX_BLOCKS = 50_000;
const MAX_BLOCK_BYTES = 4000 * MiB;

/** How each request is retried when it fails transiently (see src/azure/client.ts). */
export interface RetryOptions {
  /** Attempts in all, including the first (default 4). */
  maxTries?: number;
  /** Delay before the first retry, doubled each time, ±50% jitter (default 500 ms). */
  retryDelayMs?: number;
  /** Upper bound of one delay (default 10 s). */
  maxRetryDelayMs?: number;
}

/** Transfer sizes and limits; the defaults suit both Azure and Azurite. */
export interface AzureBlobTuning {
  /** Values up to this size go up in one Put Blob (default 8 MiB). */
  singleUploadMaxBytes?: number;
  /** Block size of a staged upload (default 8 MiB; grown if a value would need over 50,000 blocks). */
  blockBytes?: number;
  /** Range size of a get (default 8 MiB). */
  rangeBytes?: number;
  /** Parallel requests of one set or get (default 8). */
  concurrency?: number;
  /** Blobs per list page (default 5000, Azure's maximum). */
  listPageSize?: number;
  /** Retries of transient failures. */
  retry?: RetryOptions;
}

/** A credential BlobServiceClient accepts: a TokenCredential, a shared key, or anonymous. */
// (Not from BlobServiceClient's constructor: it is overloaded, and TypeScript reads only the
// last overload, the Pipeline one, which left this type `never`.)
export type AzureCredential = NonNullable<Parameters<typeof newPipeline>[0]>;

/** Options of AzureBlob. */
export interface AzureBlobOptions extends AzureBlobTuning {
  /** The container (3-63 lower-case letters, digits and single hyphens). */
  container: string;
  /** Where the location lives inside the container, as `a/b` (default: the container root). */
  prefix?: string;
  /**
   * The blob service URL, e.g. `https://ACCOUNT.blob.core.windows.net` or Azurite's
   * `http://127.0.0.1:10000/devstoreaccount1`. Overrides the connection string's.
   */
  endpoint?: string;
  /** A connection string (default: `AZURE_STORAGE_CONNECTION_STRING`). */
  connectionString?: string;
  /**
   * A credential to use with `endpoint` instead of a connection string (a token
   * credential from `@azure/identity`, a shared key, or anonymous for a SAS URL).
   */
  credential?: AzureCredential;
  /**
   * A PEM CA bundle (its contents) the https endpoint's certificate must chain
   * to, instead of Node's trusted roots.
   */
  ca?: Buffer;
  /** Shown in messages instead of the container and prefix (e.g. the location URI). */
  display?: string;
}

/** The options, checked, with their defaults. */
export interface AzureSettings {
  description: string;
  /** The location prefix with a trailing `/`, or empty. */
  namePrefix: string;
  /** Characters Azure's name limit leaves for an encoded key after the prefix. */
  nameRoom: number;
  maxKeyBytes: number;
  singleUploadMaxBytes: number;
  blockBytes: number;
  rangeBytes: number;
  concurrency: number;
  listPageSize: number;
  retry: BackoffPolicy;
}

/** Checks `options` (Determinate InvalidArgument naming what is wrong). */
export function azureSettings(options: AzureBlobOptions): AzureSettings {
  validateContainer(options.container);
  const prefix = normalizePrefix(options.prefix ?? '');
  const namePrefix = prefix === '' ? '' : `${prefix}/`;
  const maxKeyBytes = maxKeyBytesFor(namePrefix);
  if (maxKeyBytes < 1) throw invalidArgument(`Azure location prefix ${JSON.stringify(prefix)} is too long: it leaves no room for keys in a 1024-character blob name`);
  const retry = options.retry ?? {};
  const maxDelayMs = sizeOption(retry.maxRetryDelayMs, 10_000, 'retry.maxRetryDelayMs', 0);
  return {
    description: `AzureBlob(${options.display ?? `azure://${options.container}${prefix === '' ? '' : `/${prefix}`}`})`,
    namePrefix,
    nameRoom: AZURE_MAX_NAME_CHARS - namePrefixChars(namePrefix),
    maxKeyBytes,
    singleUploadMaxBytes: sizeOption(options.singleUploadMaxBytes, 8 * MiB, 'singleUploadMaxBytes', 0),
    blockBytes: sizeOption(options.blockBytes, 8 * MiB, 'blockBytes', 1, MAX_BLOCK_BYTES),
    rangeBytes: sizeOption(options.rangeBytes, 8 * MiB, 'rangeBytes', 1),
    concurrency: sizeOption(options.concurrency, 8, 'concurrency', 1),
    listPageSize: sizeOption(options.listPageSize, 5000, 'listPageSize', 1, 5000),
    retry: {
      attempts: sizeOption(retry.maxTries, 4, 'retry.maxTries', 1),
      minDelayMs: Math.min(maxDelayMs, sizeOption(retry.retryDelayMs, 500, 'retry.retryDelayMs', 0)),
      maxDelayMs,
      multiplier: 2,
      jitter: 0.5,
    },
  };
}

const CONTAINER = /^(?:[a-z0-9](?:[a-z0-9]|-(?!-)){1,61}[a-z0-9]|\$root|\$web)$/;

function validateContainer(container: unknown): asserts container is string {
  if (typeof container !== 'string' || !CONTAINER.test(container)) {
    throw invalidArgument(
      `invalid Azure container name ${JSON.stringify(container)}: 3-63 characters, lower-case letters, digits and single hyphens, starting and ending with a letter or digit`,
    );
  }
}

/**
 * The location prefix without outer slashes. Its segments must survive Azure as
 * they are: no empty, `.` or `..` segment, none ending in `.`, no `\` or control
 * character, at most 253 of them (the keys under it are escaped; the prefix is the
 * user's own name).
 */
function normalizePrefix(prefix: string): string {
  const trimmed = prefix.replace(/^\/+|\/+$/g, '');
  if (trimmed === '') return '';
  const segments = trimmed.split('/');
  // Azure allows 254 segments per name; the encoded key is always the last one.
  if (segments.length > 253) throw invalidArgument(`invalid Azure location prefix: ${segments.length} segments, more than the 253 a blob name leaves for it`);
  for (const segment of segments) {
    if (segment === '' || segment.endsWith('.') || /[\\\u0000-\u001f\u007f-\u009f]/.test(segment) || !segment.isWellFormed()) {
      throw invalidArgument(
        `invalid Azure location prefix ${JSON.stringify(prefix)}: segments must be non-empty, must not end with '.', and must not contain '\\' or control characters`,
      );
    }
  }
  return trimmed;
}

function sizeOption(value: number | undefined, fallback: number, name: string, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (value === undefined) return fallback;
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    throw invalidArgument(`AzureBlob option ${name} must be an integer in [${min}, ${max}], got ${String(value)}`);
  }
  return value;
}

/**
 * The service client: an explicit credential with `endpoint`, else a connection
 * string (option or `AZURE_STORAGE_CONNECTION_STRING`), else
 * `AZURE_STORAGE_ACCOUNT` + `AZURE_STORAGE_KEY`, else `DefaultAzureCredential`
 * for `endpoint` or `https://AZURE_STORAGE_ACCOUNT.blob.core.windows.net`. The
 * SDK's retries are off (each request is retried by src/azure/client.ts).
 */
export function serviceClient(options: AzureBlobOptions): BlobServiceClient {
  // `tlsOptions` reaches core-rest-pipeline's TLS policy through the storage
  // pipeline's options, though StoragePipelineOptions does not declare it.
  const pipeline: StoragePipelineOptions & { tlsOptions?: { ca: Buffer } } = {
    retryOptions: { maxTries: 1 },
    keepAliveOptions: { enable: true },
    ...(options.ca !== undefined && { tlsOptions: { ca: options.ca } }),
  };
  const endpoint = options.endpoint === undefined || options.endpoint === '' ? undefined : checkEndpoint(options.endpoint);
  if (options.credential !== undefined) {
    if (endpoint === undefined) throw invalidArgument('AzureBlob: a credential needs an endpoint (the blob service URL)');
    return new BlobServiceClient(endpoint, options.credential, pipeline);
  }
  const connectionString = options.connectionString ?? nonEmpty(process.env.AZURE_STORAGE_CONNECTION_STRING);
  if (connectionString !== undefined) {
    if (endpoint === undefined) {
      try {
        return BlobServiceClient.fromConnectionString(connectionString, pipeline);
      } catch (err) {
        throw new Determinate(ErrorCode.InvalidArgument, `AzureBlob: unusable Azure Storage connection string: ${(err as Error).message}`);
      }
    }
    const parts = parseConnectionString(connectionString);
    const sas = parts.get('sharedaccesssignature');
    if (sas !== undefined) return new BlobServiceClient(`${endpoint}?${sas.replace(/^\?/, '')}`, new AnonymousCredential(), pipeline);
    const name = parts.get('accountname');
    const key = parts.get('accountkey');
    if (name === undefined || key === undefined) {
      throw invalidArgument('AzureBlob: with an endpoint, the connection string needs AccountName and AccountKey, or SharedAccessSignature');
    }
    return new BlobServiceClient(endpoint, new StorageSharedKeyCredential(name, key), pipeline);
  }
  const account = nonEmpty(process.env.AZURE_STORAGE_ACCOUNT);
  const key = nonEmpty(process.env.AZURE_STORAGE_KEY);
  const url = endpoint ?? (account === undefined ? undefined : `https://${account}.blob.core.windows.net`);
  if (url !== undefined && key !== undefined && account !== undefined) return new BlobServiceClient(url, new StorageSharedKeyCredential(account, key), pipeline);
  if (url === undefined) {
    throw new Determinate(
      ErrorCode.PermissionDenied,
      'AzureBlob: no Azure credentials: set AZURE_STORAGE_CONNECTION_STRING, or AZURE_STORAGE_ACCOUNT (with AZURE_STORAGE_KEY, or an Azure AD identity), or give an endpoint',
    );
  }
  return new BlobServiceClient(url, defaultAzureCredential(), pipeline);
}

/**
 * `@azure/identity`'s DefaultAzureCredential, loaded only when needed (it is an
 * optional peer dependency); its absence is Determinate PermissionDenied saying
 * how to install it.
 */
function defaultAzureCredential(): AzureCredential {
  let identity: { DefaultAzureCredential: new () => AzureCredential };
  try {
    identity = createRequire(import.meta.url)('@azure/identity') as typeof identity;
  } catch (err) {
    if ((err as { code?: unknown }).code !== 'MODULE_NOT_FOUND') throw err;
    throw new Determinate(
      ErrorCode.PermissionDenied,
      'AzureBlob: no connection string or account key in the environment, and an Azure AD identity needs @azure/identity: npm install @azure/identity',
      { cause: err },
    );
  }
  return new identity.DefaultAzureCredential();
}

function checkEndpoint(endpoint: string): string {
  let url: URL;
  try {
    url = new URL(endpoint);
  } catch {
    throw invalidArgument(`AzureBlob: endpoint must be an http(s) URL, got ${JSON.stringify(endpoint)}`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw invalidArgument(`AzureBlob: endpoint must be an http(s) URL, got ${JSON.stringify(endpoint)}`);
  }
  return endpoint.replace(/\/+$/, '');
}

/** `Key=Value;...` with lower-cased keys; values may contain `=`. */
function parseConnectionString(cs: string): Map<string, string> {
  const parts = new Map<string, string>();
  for (const item of cs.split(';')) {
    const eq = item.indexOf('=');
    if (eq > 0) parts.set(item.slice(0, eq).trim().toLowerCase(), item.slice(eq + 1).trim());
  }
  return parts;
}

function nonEmpty(s: string | undefined): string | undefined {
  return s === undefined || s === '' ? undefined : s;
}

/** The options of `azure://CONTAINER[/PREFIX]?endpoint=URL&createContainer=true` (see the module comment). */
export function azureOptionsFromUri(loc: LocationUri): AzureBlobOptions & { createContainer: boolean } {
  const params = checkParams(loc, ['endpoint', 'createContainer', 'ca']);
  const container = loc.authority ?? '';
  if (container === '' || container.includes('@') || container.includes(':')) {
    throw invalidArgument(`expected azure://CONTAINER[/PREFIX], got ${loc.display}`);
  }
  const createContainer = boolParam(loc, params.createContainer, 'createContainer') ?? false;
  const ca = params.ca === undefined ? undefined : readTlsFiles({ ca: params.ca }, `Azure location ${loc.display}`).ca;
  return { container, prefix: loc.path, endpoint: params.endpoint, display: loc.display, createContainer, ...(ca !== undefined && { ca }) };
}
