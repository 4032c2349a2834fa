/**
 * Listing: only the directories a prefix can reach (why that is cheap is in
 * src/file/layout.ts), never through a symbolic link or into another location's
 * root (found in the directory listings it reads anyway), and only names in the
 * layout's canonical form, each where the layout puts its key.
 */
import { lstat, readdir } from 'node:fs/promises';
import type { BlobMetadata } from '../blob.js';
import { aborted } from '../errors.js';
import { errnoOf } from './errors.js';
import { CHUNK_DIR, SEGMENT_DIR, VALUE, isCanonicalChunk, keyPath, prefixPlan, unescapeKey } from './layout.js';
import { isForeignRoot, type Tree } from './tree.js';

/** Sizes are read this many files at a time. */
const STAT_BATCH = 64;

/** Every key of `tree` that starts with `prefix`, with its size. */
export async function* listValues(tree: Tree, prefix: string, signal: AbortSignal | undefined): AsyncIterable<BlobMetadata> {
  const plan = prefixPlan(prefix);
  const action = `list ${JSON.stringify(prefix)}`;
  if (!(await tree.isDir(plan.dir, action, true))) return;
  // Depth first with an explicit stack of paths: no directory stays open across a
  // yield, so breaking out of the loop leaves nothing to release.
  const stack: { dir: string; escapedKey: string; partial: string }[] = [plan];
  while (stack.length > 0) {
    const { dir, escapedKey, partial } = stack.pop()!;
    if (signal?.aborted) throw aborted(signal, true);
    let entries;
    try {
      entries = await readdir(tree.abs(dir), { withFileTypes: true });
    } catch (err) {
      const errno = errnoOf(err);
      if (errno === 'ENOENT' || errno === 'ENOTDIR') continue; // removed while we listed
      throw tree.error(err, action);
    }
    if (isForeignRoot(dir, entries)) continue;
    const files: { key: string; path: string }[] = [];
    for (const entry of entries) {
      const marker = entry.name[0];
      const chunk = entry.name.slice(1);
      if (!chunk.startsWith(partial) || !isCanonicalChunk(chunk)) continue;
      const child = dir === '' ? entry.name : `${dir}/${entry.name}`;
      if (marker === VALUE && entry.isFile()) {
        const key = unescapeKey(escapedKey + chunk);
        // Only a file where the layout puts its key: a foreign `c` directory with a
        // short chunk would otherwise list a key that get() cannot find.
        if (key !== undefined && isPathOf(key, dir, chunk)) files.push({ key, path: tree.abs(child) });
      } else if (marker === SEGMENT_DIR && entry.isDirectory()) {
        stack.push({ dir: child, escapedKey: `${escapedKey}${chunk}/`, partial: '' });
      } else if (marker === CHUNK_DIR && entry.isDirectory()) {
        stack.push({ dir: child, escapedKey: escapedKey + chunk, partial: '' });
      }
    }
    for (let i = 0; i < files.length; i += STAT_BATCH) {
      const batch = files.slice(i, i + STAT_BATCH);
      const sizes = await Promise.all(batch.map((f) => lstat(f.path).then((st) => st.size, (err: unknown) => err)));
      for (const [j, f] of batch.entries()) {
        const size = sizes[j];
        if (typeof size === 'number') yield { key: f.key, sizeInBytes: size };
        else if (errnoOf(size) !== 'ENOENT') throw tree.error(size, action); // ENOENT: deleted meanwhile
      }
    }
  }
}

/** Whether `key` lives at directory `dir` with last chunk `base`, as keyPath() places it. */
function isPathOf(key: string, dir: string, base: string): boolean {
  const where = keyPath(key);
  return where.dir === dir && where.base === base;
}
