/**
 * Backends as data. Each backend folder exports one {@link BackendDescriptor}
 * (`src/<name>/backend.ts`): its URI schemes, its driver, how to open it, what it can
 * do and how to make and remove scratch locations beside a user's. The registry holds
 * the built-in descriptors and whatever {@link registerBackend} adds; opening by URI,
 * the CLI and the docs read it, so nothing else needs to know a backend by name.
 *
 * A descriptor loads no driver: its `open` imports the backend's entry point only
 * when called.
 */
import type { Blob } from './blob.js';
import type { Consensus } from './consensus.js';
import type { LocationKind, ScratchArea, ScratchCleanup, ScratchPlan } from './scratch.js';
import type { LocationUri } from './uri.js';
import { azureBackend } from './azure/backend.js';
import { etcdBackend } from './etcd/backend.js';
import { fileBackend } from './file/backend.js';
import { memBackend } from './mem/backend.js';
import { postgresBackend } from './postgres/backend.js';
import { s3Backend } from './s3/backend.js';
import { sqliteBackend } from './sqlite/backend.js';

/**
 * What a backend can do beyond what SPEC demands of every one. The suites pick and
 * parameterise their cases by it; a backend's descriptor states it.
 */
export interface BackendCapabilities {
  /**
   * Every key up to this many UTF-8 bytes is accepted, and a longer one rejects
   * Determinate InvalidArgument naming this number (default SPEC's 1024). An object
   * store whose cap depends on the location's prefix states the cap of a location
   * opened on a five-character path such as `path0`: the suites open every location
   * whose keys come near the cap on a path of that length.
   */
  maxKeyBytes?: number;
  /**
   * Blob: `restore` brings back a deleted value. `true`: the blob suite requires it;
   * `false`: it requires restoring a deleted key to reject Determinate; omitted: either.
   */
  keepsDeleted?: boolean;
  /**
   * Handles opened in different processes on one location see the same data. No case
   * of these suites depends on it (their `open` cannot reach another process); the
   * backends' own multi-process tests do.
   */
  sharedAcrossProcesses?: boolean;
  /**
   * The backend tells watchers of a change itself (etcd watch, LISTEN/NOTIFY,
   * in-process) rather than being polled. No case of these suites depends on it yet.
   */
  notifications?: boolean;
}

/** One way to write a location of a backend, for the docs and the CLI help. */
export interface LocationForm {
  /** The URI with placeholders, e.g. `sqlite:rel/file.db` or `s3://bucket[/prefix]?endpoint=URL`. */
  readonly uri: string;
  /** One line: what it opens. */
  readonly description: string;
}

/** What `openConsensus`/`openBlob` pass to a backend's `open`, checked and with defaults filled in. */
export interface PartOpenOptions {
  /**
   * Whether opening may create what the location needs (a directory, a file, a
   * schema and its tables, a container). With false a location that does not exist
   * rejects Determinate NotFound naming it, and the open creates and writes nothing.
   */
  readonly create: boolean;
}

/** How a backend opens one interface, and what it can do there. */
export interface BackendPart<T> {
  /**
   * Opens a ready handle at `loc`, importing the backend's entry point (and so its
   * driver) only now. Rejects Determinate InvalidArgument for a URI it does not
   * accept, and honours `options.create` (see {@link PartOpenOptions}).
   */
  open(loc: LocationUri, options: PartOpenOptions): Promise<T>;
  /** What a handle opened at `loc` can do (a key cap may depend on the prefix). */
  capabilities(loc: LocationUri): BackendCapabilities;
  /**
   * Whether `openConsensus`/`openBlob` wrap its handles in `withRetry` when the
   * caller's options leave `retry` out (default true). An embedded store whose
   * failures another attempt does not cure says false.
   */
  readonly retriedByDefault?: boolean;
}

/**
 * How `check` and `bench` make a scratch location beside a user's location and remove
 * it after, so that the user's keys are never touched.
 */
export interface ScratchSupport {
  /**
   * The scratch location beside `uri`, derived from its raw text (helpers in
   * scratch.ts) so credentials and parameters carry over as written. `id` is
   * `[a-z0-9-]+`; `cwd` resolves relative local paths. Throws Determinate
   * InvalidArgument when `uri` leaves no room beside it (a path naming nothing).
   */
  derive(uri: string, id: string, cwd: string): ScratchPlan;
  /**
   * Removes the scratch location and every child made in it, as far as the storage
   * allows. What it could not remove is named in the note, with how to remove it by
   * hand; a rejection is reported as such a note.
   */
  destroy(area: ScratchArea, kind: LocationKind): Promise<ScratchCleanup>;
  /** For the help of `check`: how a location maps to its scratch location, one short line. */
  readonly summary: { readonly location: string; readonly scratch: string };
}

/** Everything the rest of the code knows about a backend. */
export interface BackendDescriptor {
  /** Short name, e.g. `postgres`. */
  readonly name: string;
  /** URI schemes it opens, lower-case, without the colon (e.g. `['postgres', 'postgresql']`). */
  readonly schemes: readonly string[];
  /**
   * The npm package its entry point imports, named in the "npm install ..." message
   * when it is missing. Omitted when it needs none beyond Node.
   */
  readonly driver?: string;
  /** The module that exports its classes, for the docs (e.g. `persist-location/s3`). */
  readonly entryPoint?: string;
  /** The URI forms it accepts. */
  readonly forms: readonly LocationForm[];
  /** Consensus at its URIs, if it offers Consensus. */
  readonly consensus?: BackendPart<Consensus>;
  /** Blob at its URIs, if it offers Blob. */
  readonly blob?: BackendPart<Blob>;
  /**
   * For a backend on the local file system: the absolute path `loc` names, a relative
   * one taken from `cwd`. The CLI prints it when a URI's path is relative, so a
   * process started in another directory cannot silently get an empty location.
   */
  readonly localPath?: (loc: LocationUri, cwd: string) => string;
  /** Scratch locations for `check` and `bench`; without it they refuse its URIs. */
  readonly scratch?: ScratchSupport;
}

const SCHEME = /^[a-z][a-z0-9+.-]*$/;

const registered: BackendDescriptor[] = [];
const bySchemes = new Map<string, BackendDescriptor>();

/**
 * Adds a backend: from now on `openConsensus`/`openBlob`, the CLI (see its
 * `--backend` option) and `check` open its schemes like a built-in one. Registering
 * the same descriptor object again does nothing.
 * @throws TypeError for a malformed descriptor; Error for a scheme already taken
 */
export function registerBackend(descriptor: BackendDescriptor): void {
  if (registered.includes(descriptor)) return;
  validate(descriptor);
  for (const scheme of descriptor.schemes) {
    const taken = bySchemes.get(scheme);
    if (taken !== undefined) throw new Error(`cannot register backend '${descriptor.name}': the scheme '${scheme}:' is taken by backend '${taken.name}'`);
  }
  registered.push(descriptor);
  for (const scheme of descriptor.schemes) bySchemes.set(scheme, descriptor);
}

function validate(d: BackendDescriptor): void {
  if (typeof d !== 'object' || d === null) throw new TypeError(`a backend descriptor must be an object, got ${d === null ? 'null' : typeof d}`);
  const label = typeof d.name === 'string' && d.name !== '' ? `backend '${d.name}'` : 'a backend';
  const fail = (what: string) => {
    throw new TypeError(`cannot register ${label}: ${what}`);
  };
  if (typeof d.name !== 'string' || d.name.trim() === '') fail('its name must be a non-empty string');
  if (!Array.isArray(d.schemes) || d.schemes.length === 0) fail('it must name at least one URI scheme');
  for (const scheme of d.schemes) {
    if (typeof scheme !== 'string' || !SCHEME.test(scheme)) {
      fail(`scheme ${JSON.stringify(scheme)} is not a URI scheme: lower-case letter first, then [a-z0-9+.-], no colon`);
    }
  }
  if (new Set(d.schemes).size !== d.schemes.length) fail('it names a scheme twice');
  if (d.driver !== undefined && (typeof d.driver !== 'string' || d.driver === '')) fail('its driver must be an npm package name');
  if (!Array.isArray(d.forms) || d.forms.some((f) => typeof f?.uri !== 'string' || typeof f.description !== 'string')) {
    fail('forms must be a list of { uri, description } strings');
  }
  if (d.consensus === undefined && d.blob === undefined) fail('it must offer consensus, blob or both');
  for (const [kind, part] of [['consensus', d.consensus], ['blob', d.blob]] as const) {
    if (part !== undefined && (typeof part.open !== 'function' || typeof part.capabilities !== 'function')) {
      fail(`its ${kind} part needs open(loc) and capabilities(loc) functions`);
    }
  }
  if (d.localPath !== undefined && typeof d.localPath !== 'function') fail('its localPath must be a function (loc, cwd) => absolute path');
  const s = d.scratch;
  if (s !== undefined && (typeof s.derive !== 'function' || typeof s.destroy !== 'function' || typeof s.summary?.location !== 'string' || typeof s.summary.scratch !== 'string')) {
    fail('its scratch part needs derive and destroy functions and a summary { location, scratch }');
  }
}

/** The backend registered for `scheme` (lower-case, no colon), if any. */
export function findBackend(scheme: string): BackendDescriptor | undefined {
  return bySchemes.get(scheme);
}

/** Every registered backend, built-in ones first, in the order they were registered. */
export function allBackends(): readonly BackendDescriptor[] {
  return [...registered];
}

/** The schemes that offer `kind` (all schemes without one), each with its colon, for messages. */
export function acceptedSchemes(kind?: LocationKind): string {
  return registered
    .filter((d) => kind === undefined || d[kind] !== undefined)
    .flatMap((d) => d.schemes.map((s) => `${s}:`))
    .join(', ');
}

for (const builtIn of [memBackend, fileBackend, sqliteBackend, postgresBackend, etcdBackend, s3Backend, azureBackend]) registerBackend(builtIn);
