/**
 * S3Blob's options and URI: `s3://BUCKET[/PREFIX][?endpoint=URL&region=R
 * &forcePathStyle=true&multipartThreshold=BYTES&partSize=BYTES&concurrency=N&ca=PATH]`.
 * Credentials come from the SDK's default provider chain (AWS_ACCESS_KEY_ID /
 * AWS_SECRET_ACCESS_KEY, profiles, SSO, instance roles, ...), never from the URI.
 * `ca` is a PEM bundle the https endpoint's certificate must chain to, instead of
 * Node's trusted roots (`NODE_EXTRA_CA_CERTS` adds to those for the whole process
 * instead). A failed handshake is Determinate PermissionDenied (src/kit/http-errors.ts).
 * The region comes from `region`; else, with an `endpoint` (S3-compatible stores
 * ignore the region), from AWS_REGION or `us-east-1`; else from the SDK's chain.
 */
import { Agent as HttpAgent } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import type { S3Client, S3ClientConfig } from '@aws-sdk/client-s3';
import { invalidArgument } from '../errors.js';
import { readTlsFiles } from '../kit/tls.js';
import { boolParam, checkParams, intParam, type LocationUri } from '../uri.js';
import { maxKeyBytesFor, S3_MAX_OBJECT_NAME_BYTES } from './keys.js';

const MiB = 1024 * 1024;
/** S3's smallest part (but the last) and largest part count. */
export const MIN_PART_SIZE = 5 * MiB;
export const MAX_PARTS = 10_000;

/** Options of S3Blob. */
export interface S3BlobOptions {
  /** The bucket; it must exist. */
  bucket: string;
  /** Location prefix inside the bucket (`a/b` stores under `a/b/`); default: the bucket root. */
  prefix?: string;
  /**
   * A client to use instead of one built from {@link clientConfig}; the handle
   * does not destroy it on close. It should be configured like the built one
   * (`requestChecksumCalculation: 'WHEN_REQUIRED'` for S3-compatible stores).
   */
  client?: S3Client;
  /** Settings for the client the handle builds (endpoint, region, forcePathStyle, credentials, ...). */
  clientConfig?: S3ClientConfig;
  /** Values larger than this many bytes are uploaded in parts (default 8 MiB). */
  multipartThreshold?: number;
  /** Size of upload parts and download ranges (default 8 MiB; at least 5 MiB). */
  partSize?: number;
  /** Parts or ranges in flight per operation (default 8). */
  concurrency?: number;
  /** Keys per ListObjectsV2 page (default 1000, S3's maximum). */
  listPageSize?: number;
}

/** The options, checked, with their defaults. */
export interface S3Settings {
  bucket: string;
  /** Location prefix, empty or ending in `/`. */
  prefix: string;
  /** What S3's name limit leaves for an encoded key after the prefix. */
  nameRoom: number;
  maxKeyBytes: number;
  threshold: number;
  partSize: number;
  concurrency: number;
  pageSize: number;
}

/** Checks `options` (Determinate InvalidArgument naming what is wrong). */
export function s3Settings(options: S3BlobOptions): S3Settings {
  const { bucket } = options;
  if (typeof bucket !== 'string' || bucket === '' || bucket.includes('/')) {
    throw invalidArgument(`S3Blob needs a bucket name without '/', got ${JSON.stringify(bucket)}`);
  }
  let prefix = options.prefix ?? '';
  if (prefix.startsWith('/')) prefix = prefix.replace(/^\/+/, '');
  if (prefix !== '' && !prefix.endsWith('/')) prefix += '/';
  const maxKeyBytes = maxKeyBytesFor(Buffer.byteLength(prefix));
  if (maxKeyBytes < 1) throw invalidArgument(`S3Blob prefix ${JSON.stringify(prefix)} leaves no room for keys in S3's ${S3_MAX_OBJECT_NAME_BYTES}-byte names`);
  const partSize = positive(options.partSize ?? 8 * MiB, 'partSize');
  if (partSize < MIN_PART_SIZE) throw invalidArgument(`S3Blob partSize must be at least ${MIN_PART_SIZE} bytes (S3's minimum part size), got ${partSize}`);
  return {
    bucket,
    prefix,
    nameRoom: S3_MAX_OBJECT_NAME_BYTES - Buffer.byteLength(prefix),
    maxKeyBytes,
    threshold: positive(options.multipartThreshold ?? 8 * MiB, 'multipartThreshold'),
    partSize,
    concurrency: positive(options.concurrency ?? 8, 'concurrency'),
    pageSize: Math.min(1000, positive(options.listPageSize ?? 1000, 'listPageSize')),
  };
}

function positive(n: number, name: string): number {
  if (!Number.isSafeInteger(n) || n < 1) throw invalidArgument(`S3Blob ${name} must be a positive integer, got ${n}`);
  return n;
}

/**
 * The client settings S3Blob uses: keep-alive connections (enough for parallel
 * parts of several operations), a connect timeout, and checksums only where S3
 * requires them, since several S3-compatible stores reject the newer flexible
 * checksum headers and trailers.
 */
export function defaultClientConfig(config: S3ClientConfig): S3ClientConfig {
  return {
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    requestHandler: requestHandlerOptions(),
    ...config,
  };
}

/**
 * The options the SDK builds its NodeHttpHandler from: the agents of
 * {@link defaultClientConfig}, the https one trusting only `ca` when given.
 */
export function requestHandlerOptions(ca?: Buffer): NonNullable<S3ClientConfig['requestHandler']> {
  const agentOptions = { keepAlive: true, maxSockets: 64 };
  return {
    httpAgent: new HttpAgent(agentOptions),
    httpsAgent: new HttpsAgent(ca === undefined ? agentOptions : { ...agentOptions, ca }),
    connectionTimeout: 10_000,
  };
}

const URI_PARAMS = ['endpoint', 'region', 'forcePathStyle', 'multipartThreshold', 'partSize', 'concurrency', 'ca'] as const;

/** The options of `s3://BUCKET[/PREFIX]?...` (see the module comment). */
export function s3OptionsFromUri(loc: LocationUri): S3BlobOptions {
  const params = checkParams(loc, URI_PARAMS);
  const bucket = loc.authority ?? '';
  if (bucket === '' || bucket.includes('@') || bucket.includes(':')) {
    throw invalidArgument(`expected s3://BUCKET[/PREFIX] (credentials come from the AWS environment, not the URI), got ${loc.display}`);
  }
  const clientConfig: S3ClientConfig = {};
  if (params.endpoint !== undefined) {
    try {
      new URL(params.endpoint);
    } catch {
      throw invalidArgument(`parameter endpoint of ${loc.display} must be a URL, got '${params.endpoint}'`);
    }
    clientConfig.endpoint = params.endpoint;
  }
  const forcePathStyle = boolParam(loc, params.forcePathStyle, 'forcePathStyle');
  if (forcePathStyle !== undefined) clientConfig.forcePathStyle = forcePathStyle;
  if (params.region !== undefined) clientConfig.region = params.region;
  else if (params.endpoint !== undefined && process.env.AWS_REGION === undefined) clientConfig.region = 'us-east-1';
  if (params.ca !== undefined) clientConfig.requestHandler = requestHandlerOptions(readTlsFiles({ ca: params.ca }, `S3 location ${loc.display}`).ca);
  const options: S3BlobOptions = { bucket, prefix: loc.path, clientConfig };
  const threshold = intParam(loc, params.multipartThreshold, 'multipartThreshold');
  if (threshold !== undefined) options.multipartThreshold = threshold;
  const partSize = intParam(loc, params.partSize, 'partSize');
  if (partSize !== undefined) options.partSize = partSize;
  const concurrency = intParam(loc, params.concurrency, 'concurrency');
  if (concurrency !== undefined) options.concurrency = concurrency;
  return options;
}
