/**
 * Scratch locations: where `check` and `bench` work, so that the user's own keys are
 * never touched and `consensus list` / `blob ls` show nothing of theirs afterwards.
 * Each backend's descriptor derives its scratch location beside the user's and
 * removes it after (its `scratch`, see backend.ts and scratch.ts); this file adds what
 * is the same for all: ids, child names, redaction, and removal on an interrupt.
 * A cleanup that fails never fails the run: the report names what is left.
 */
import { randomBytes } from 'node:crypto';
import { dirname } from 'node:path';
import { acceptedSchemes, findBackend } from '../backend.js';
import { invalidArgument } from '../errors.js';
import { messageOf, type LocationKind, type ScratchArea, type ScratchCleanup, type ScratchPlan } from '../scratch.js';
import { parseLocationUri, redactUri } from '../uri.js';
import { writeErr } from './output.js';

export type { LocationKind, ScratchCleanup };

/** A scratch namespace derived from a user's location URI. */
export interface ScratchLocation extends ScratchArea {
  /** The scheme, lower-case, e.g. `sqlite`. */
  scheme: string;
  /**
   * A distinct location inside the scratch namespace, for suites that need a fresh
   * empty location per open. `name` is made of `[a-z0-9-]`.
   */
  child(name: string): string;
  /** Every URI {@link child} has returned, so cleanup knows what was made. */
  readonly children: string[];
}

const ID_ALPHABET = /^[a-z0-9-]+$/;
/**
 * Child names: path segments of `[A-Za-z0-9._-]` joined by `/`, never `.` or `..`, so
 * the blob suite can open a location nested in another (`nest0/data`).
 */
const CHILD_NAME = /^(?!\.\.?(?:\/|$))(?!.*\/\.\.?(?:\/|$))[A-Za-z0-9._-]+(?:\/[A-Za-z0-9._-]+)*$/;

/** A short random id for scratch names. */
export function scratchId(): string {
  return randomBytes(4).toString('hex');
}

/**
 * Derives the scratch location of the user's location `uri` through its backend's
 * descriptor. Works on the raw URI text so credentials and parameters carry over
 * unchanged. `cwd` resolves relative local paths (default `process.cwd()`).
 */
export function deriveScratch(uri: string, id: string = scratchId(), cwd: string = process.cwd()): ScratchLocation {
  if (!ID_ALPHABET.test(id)) throw new Error(`scratch id must match ${ID_ALPHABET}, got ${id}`);
  const loc = parseLocationUri(uri);
  const backend = findBackend(loc.scheme);
  if (backend?.scratch === undefined) {
    throw invalidArgument(
      backend === undefined
        ? `cannot derive a scratch location for ${loc.display}: unknown scheme '${loc.scheme}:'; accepted: ${acceptedSchemes()}`
        : `cannot derive a scratch location for ${loc.display}: the ${backend.name} backend does not say how to make one`,
    );
  }
  const support = backend.scratch;
  const plan = (text: string): ScratchPlan => support.derive(text, id, cwd);
  const real = plan(uri);
  // What is printed is derived from the redacted URI, not redacted afterwards: the
  // derivation re-encodes parameters, so with a raw '?' or '/' in a password the
  // derived text would hold the password in a spelling redaction cannot place.
  const shown = plan(loc.display);
  const checkName = (name: string) => {
    if (!CHILD_NAME.test(name)) throw new Error(`scratch child name must match ${CHILD_NAME}, got ${name}`);
    return name;
  };
  const children: string[] = [];
  const displays = new Map<string, string>([[real.root, shown.root]]);
  return {
    scheme: loc.scheme,
    uri: real.root,
    display: shown.root,
    child: (name) => {
      const made = real.child(checkName(name));
      if (!children.includes(made)) children.push(made);
      displays.set(made, shown.child(name));
      return made;
    },
    show: (u) => displays.get(u) ?? redactUri(u),
    localPath: real.localPath,
    children,
  };
}

/** The parent directory that must exist before a local scratch location is created. */
export function localParent(scratch: ScratchLocation): string | undefined {
  return scratch.localPath === undefined ? undefined : dirname(scratch.localPath);
}

/**
 * Removes a scratch namespace and everything in it through its backend's descriptor,
 * as far as the storage allows. Never throws: what it could not remove is in the note.
 */
export async function removeScratch(scratch: ScratchLocation, kind: LocationKind): Promise<ScratchCleanup> {
  try {
    const support = findBackend(scratch.scheme)?.scratch;
    if (support === undefined) return { removed: false, note: `scratch location ${scratch.display} was left in place` };
    return await support.destroy(scratch, kind);
  } catch (err) {
    return { removed: false, note: `could not remove scratch location ${scratch.display}: ${messageOf(err)}` };
  }
}

/**
 * Until the returned function is called, an interrupt (Ctrl-C, SIGTERM) removes the
 * scratch locations and ends the process by that signal (status 130 or 143), so an
 * interrupted run leaves nothing behind either. `stopWork` must resolve once nothing
 * more can be written to them (see gate.ts): removing them while work goes on would
 * race with it. A second interrupt ends the process at once.
 */
export function removeOnInterrupt(
  scratches: readonly (readonly [ScratchLocation, LocationKind])[],
  before: () => void,
  stopWork: () => Promise<void>,
): () => void {
  let interrupted = false;
  const stop = () => {
    process.off('SIGINT', handler);
    process.off('SIGTERM', handler);
  };
  // Dying by the signal itself (not process.exit) skips tearing down worker threads
  // that a driver may have mid-statement, and gives the shell the usual status.
  const die = (signal: NodeJS.Signals) => {
    stop();
    process.kill(process.pid, signal);
  };
  function handler(signal: NodeJS.Signals): void {
    if (interrupted) return die(signal);
    interrupted = true;
    before();
    writeErr('persist-location: interrupted; removing the scratch location (interrupt again to leave it)\n');
    void stopWork()
      .catch(() => {})
      .then(() => Promise.all(scratches.map(([s, kind]) => removeScratch(s, kind))))
      .then((results) => {
        for (const r of results) if (!r.removed) writeErr(`persist-location: warning: ${r.note}\n`);
        die(signal);
      });
  }
  process.on('SIGINT', handler);
  process.on('SIGTERM', handler);
  return stop;
}
