/**
 * `S3Consensus`: Consensus kept in an S3 bucket alone, with S3's conditional writes
 * (`If-None-Match: *` since 2024-08, `If-Match` since 2024-11). The design, its
 * invariants and its request counts are in src/objstore/consensus.ts; this file
 * only names the objects and opens the client.
 *
 * Objects, under the location prefix `P/`: `P/h/NAME` is the head object of the
 * key whose S3Blob-style encoding is NAME (see keys.ts), `P/s/NAME/~ID` its
 * segments (`~` never occurs in an encoded key, so no key's segments start with
 * another's prefix), `P/p/` the probe of the check made at open. A Blob and a
 * Consensus may share a bucket under different prefixes.
 *
 * Opening checks that the bucket is reachable and applies conditional writes
 * (four requests on a probe object it then deletes): an S3-compatible store that
 * ignores them is refused with Determinate FailedPrecondition. Opened with
 * `create: false` it writes nothing: a HeadBucket (a missing bucket is Determinate
 * NotFound; a prefix always exists), and the probe before the first write.
 */
import { S3Client } from '@aws-sdk/client-s3';
import type { OpOptions } from '../consensus.js';
import { Determinate, ErrorCode, ExternalError, invalidArgument } from '../errors.js';
import { checkedBeforeFirstWrite, conditionalObjects, type CheckedObjects } from '../objstore/conditional.js';
import { ObjectConsensus, type ConsensusLayout } from '../objstore/consensus.js';
import type { LocationUri } from '../uri.js';
import { utf8Length } from '../validate.js';
import { S3ObjectClient } from './client.js';
import { defaultClientConfig, s3OptionsFromUri, s3Settings, type S3BlobOptions } from './config.js';
import { CONSENSUS_NAME_OVERHEAD as SEGMENT_OVERHEAD, consensusMaxKeyBytes, decodeKey, encodeKey, S3_MAX_OBJECT_NAME_BYTES } from './keys.js';

/** Options of S3Consensus: those of S3Blob that concern Consensus. */
export type S3ConsensusOptions = Pick<S3BlobOptions, 'bucket' | 'prefix' | 'client' | 'clientConfig' | 'listPageSize'>;

export class S3Consensus extends ObjectConsensus {
  readonly #objects: CheckedObjects;
  readonly #client: S3ObjectClient;

  constructor(options: S3ConsensusOptions) {
    const s = s3Settings(options);
    const description = `S3Consensus(s3://${s.bucket}/${s.prefix})`;
    const ownsClient = options.client === undefined;
    const sdk = options.client ?? new S3Client(defaultClientConfig(options.clientConfig ?? {}));
    const client = new S3ObjectClient(sdk, s.bucket, s.pageSize);
    const probePrefix = `${s.prefix}p/`;
    const objects = checkedBeforeFirstWrite(conditionalObjects(client, description), probePrefix, description);
    const room = S3_MAX_OBJECT_NAME_BYTES - Buffer.byteLength(s.prefix) - SEGMENT_OVERHEAD;
    if (room < 1) throw invalidArgument(`S3Consensus prefix ${JSON.stringify(s.prefix)} leaves no room for keys in S3's ${S3_MAX_OBJECT_NAME_BYTES}-byte names`);
    const cap = consensusMaxKeyBytes(Buffer.byteLength(s.prefix));
    const heads = `${s.prefix}h/`;
    const layout: ConsensusLayout = {
      headPrefix: heads,
      head: (key) => `${heads}${encodeKey(key)}`,
      keyOfHead: (name) => (name.startsWith(heads) ? decodeKey(name.slice(heads.length)) : undefined),
      segmentPrefix: (key) => `${s.prefix}s/${encodeKey(key)}/~`,
      roots: [heads, `${s.prefix}s/`, `${s.prefix}p/`],
    };
    super({
      objects,
      layout,
      description,
      onClose: async () => {
        if (ownsClient) sdk.destroy();
      },
      checkKey: (key) => {
        const bytes = encodeKey(key).length;
        if (bytes > room) {
          throw invalidArgument(
            `${description}: key of ${utf8Length(key)} UTF-8 bytes is too long: its encoded name is ${bytes} bytes, more than the ${room} that S3's limit of ${S3_MAX_OBJECT_NAME_BYTES} bytes per object name leaves after the location prefix and the segment suffix (every key of up to ${cap} UTF-8 bytes fits)`,
          );
        }
      },
    });
    this.#objects = objects;
    this.#client = client;
  }

  /**
   * A handle, once the bucket has been shown to apply conditional writes (module
   * comment). With `create` false nothing is written: the bucket must exist
   * (HeadBucket), and the check runs before the handle's first write instead.
   */
  static async open(options: S3ConsensusOptions, opts?: OpOptions & { create?: boolean }): Promise<S3Consensus> {
    const consensus = new S3Consensus(options);
    try {
      if (opts?.create === false) await consensus.#client.checkBucket(consensus.description, opts.signal);
      else await consensus.#objects.check(opts?.signal);
    } catch (err) {
      await consensus.close();
      if (err instanceof ExternalError) throw err;
      // The SDK's region and credential resolution fail here, before anything is sent.
      throw new Determinate(ErrorCode.InvalidArgument, `cannot open ${consensus.description}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
    }
    return consensus;
  }
}

/** `s3://BUCKET[/PREFIX]?...` as S3Consensus options: the same parameters as S3Blob's. */
function optionsFromUri(loc: LocationUri): S3ConsensusOptions {
  const { bucket, prefix, clientConfig } = s3OptionsFromUri(loc);
  return { bucket, ...(prefix !== undefined && { prefix }), ...(clientConfig !== undefined && { clientConfig }) };
}

/** `s3://BUCKET[/PREFIX]?...` opened as Consensus. */
export async function consensusFromUri(loc: LocationUri, create = true, opts?: OpOptions): Promise<S3Consensus> {
  return S3Consensus.open(optionsFromUri(loc), { ...opts, create });
}

/** A handle on `loc` that checks nothing at open, for removing a scratch location. */
export function consensusForRemoval(loc: LocationUri): S3Consensus {
  return new S3Consensus(optionsFromUri(loc));
}
