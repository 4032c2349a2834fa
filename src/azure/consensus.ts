/**
 * `AzureConsensus`: Consensus kept in an Azure Blob container alone, with Azure's
 * conditional writes (`If-None-Match: *`, answered 409 BlobAlreadyExists when the
 * blob exists, and `If-Match`, answered 412). The design, its invariants and its
 * request counts are in src/objstore/consensus.ts; this file only names the blobs
 * and opens the client.
 *
 * Blobs, under the location prefix `P/`: `P/h/NAME` is the head blob of the key
 * whose AzureBlob-style encoding is NAME (see keys.ts; it has no `/`), `P/s/NAME/ID`
 * its segments, `P/p/` the probe of the check made at open. A Blob and a Consensus
 * may share a container under different prefixes.
 *
 * Opening checks that the container is reachable and applies conditional writes
 * (four requests on a probe blob it then deletes), after creating the container
 * when `createContainer=true`. Opened with `create: false` it writes nothing: the
 * container must exist (else Determinate NotFound; a prefix always exists), and
 * the probe runs before the first write.
 */
import type { OpOptions } from '../consensus.js';
import { invalidArgument } from '../errors.js';
import { checkedBeforeFirstWrite, conditionalObjects, type CheckedObjects } from '../objstore/conditional.js';
import { ObjectConsensus, type ConsensusLayout } from '../objstore/consensus.js';
import type { LocationUri } from '../uri.js';
import { utf8Length } from '../validate.js';
import { AzureObjectClient } from './client.js';
import { azureOptionsFromUri, azureSettings, serviceClient, type AzureBlobOptions } from './config.js';
import { AZURE_MAX_NAME_CHARS, CONSENSUS_NAME_OVERHEAD as SEGMENT_OVERHEAD, consensusMaxKeyBytes, decodeKey, encodeKey } from './keys.js';

/** Options of AzureConsensus: those of AzureBlob that concern Consensus. */
export type AzureConsensusOptions = Pick<AzureBlobOptions, 'container' | 'prefix' | 'endpoint' | 'connectionString' | 'credential' | 'ca' | 'display' | 'retry' | 'listPageSize'>;

export class AzureConsensus extends ObjectConsensus {
  readonly #objects: CheckedObjects;
  readonly #client: AzureObjectClient;

  constructor(options: AzureConsensusOptions) {
    const s = azureSettings(options);
    const description = s.description.replace(/^AzureBlob/, 'AzureConsensus');
    const client = new AzureObjectClient(serviceClient(options).getContainerClient(options.container), s.retry, s.listPageSize);
    const objects = checkedBeforeFirstWrite(conditionalObjects(client, description), `${s.namePrefix}p/`, description);
    const room = AZURE_MAX_NAME_CHARS - Buffer.byteLength(s.namePrefix) - SEGMENT_OVERHEAD;
    if (room < 1) throw invalidArgument(`AzureConsensus prefix ${JSON.stringify(s.namePrefix)} leaves no room for keys in Azure's ${AZURE_MAX_NAME_CHARS}-character names`);
    const cap = consensusMaxKeyBytes(s.namePrefix);
    const heads = `${s.namePrefix}h/`;
    const layout: ConsensusLayout = {
      headPrefix: heads,
      head: (key) => `${heads}${encodeKey(key)}`,
      keyOfHead: (name) => (name.startsWith(heads) ? decodeKey(name.slice(heads.length)) : undefined),
      segmentPrefix: (key) => `${s.namePrefix}s/${encodeKey(key)}/`,
      roots: [heads, `${s.namePrefix}s/`, `${s.namePrefix}p/`],
    };
    super({
      objects,
      layout,
      description,
      checkKey: (key) => {
        const chars = encodeKey(key).length;
        if (chars > room) {
          throw invalidArgument(
            `${description}: key of ${utf8Length(key)} UTF-8 bytes is too long: its encoded name is ${chars} characters, more than the ${room} that Azure's limit of ${AZURE_MAX_NAME_CHARS} characters per blob name leaves after the location prefix and the segment suffix (every key of up to ${cap} UTF-8 bytes fits)`,
          );
        }
      },
    });
    this.#objects = objects;
    this.#client = client;
  }

  /**
   * A handle, once the container has been shown to apply conditional writes
   * (module comment). With `create` false nothing is written: the container must
   * exist, and the check runs before the handle's first write instead.
   */
  static async open(options: AzureConsensusOptions & { createContainer?: boolean }, opts?: OpOptions & { create?: boolean }): Promise<AzureConsensus> {
    const consensus = new AzureConsensus(options);
    try {
      const create = opts?.create !== false;
      await consensus.#client.openContainer(consensus.description, create && options.createContainer === true, opts?.signal);
      if (create) await consensus.#objects.check(opts?.signal);
    } catch (err) {
      await consensus.close();
      throw err;
    }
    return consensus;
  }
}

/** `azure://CONTAINER[/PREFIX]?...` opened as Consensus: the same parameters as AzureBlob's. */
export async function consensusFromUri(loc: LocationUri, create = true, opts?: OpOptions): Promise<AzureConsensus> {
  return AzureConsensus.open(azureOptionsFromUri(loc), { ...opts, create });
}

/** A handle on `loc` that checks nothing at open, for removing a scratch location. */
export function consensusForRemoval(loc: LocationUri): AzureConsensus {
  return new AzureConsensus(azureOptionsFromUri(loc));
}
