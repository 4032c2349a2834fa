/**
 * The read path. Values up to 256 KiB are read synchronously (open, fstat, read,
 * close on the calling thread: cheaper than four thread-pool hops for a file that
 * is almost always in the page cache); larger values are read in 1 MiB parts in
 * parallel and returned as that many segments. Value files are opened with
 * O_NOFOLLOW: a symbolic link in a value's place is never read through.
 */
import { close as closeCb, closeSync, constants, fstatSync, openSync, read as readCb, readSync } from 'node:fs';
import { aborted, Determinate, ErrorCode } from '../errors.js';
import { SegmentedBytes } from '../segmented-bytes.js';
import { errnoOf } from './errors.js';
import { VALUE } from './layout.js';
import type { Tree } from './tree.js';

const SYNC_READ_MAX = 256 * 1024;
const READ_PART = 1024 * 1024;
const READ_FLAGS = constants.O_RDONLY | constants.O_NOFOLLOW;

/** The value `base` in `dir`, or undefined if there is none. */
export async function readValue(tree: Tree, dir: string, base: string, action: string, signal: AbortSignal | undefined): Promise<SegmentedBytes | undefined> {
  if (!(await tree.isDir(dir, action))) return undefined;
  const path = tree.abs(dir, VALUE + base);
  let fd: number;
  try {
    fd = openSync(path, READ_FLAGS);
  } catch (err) {
    if (errnoOf(err) === 'ENOENT') return undefined;
    throw tree.error(err, action);
  }
  let size: number;
  try {
    const st = fstatSync(fd);
    size = st.isFile() ? st.size : -1;
  } catch (err) {
    closeSync(fd);
    throw tree.error(err, action);
  }
  if (size < 0) {
    closeSync(fd);
    throw await tree.notAValue(dir, VALUE + base, action);
  }
  if (size <= SYNC_READ_MAX) {
    const buf = Buffer.allocUnsafeSlow(size);
    try {
      readFully(fd, buf);
    } catch (err) {
      throw tree.error(err, action);
    } finally {
      closeSync(fd);
    }
    return new SegmentedBytes(buf);
  }
  try {
    const parts: Promise<Buffer>[] = [];
    for (let at = 0; at < size; at += READ_PART) parts.push(readPart(fd, at, Math.min(READ_PART, size - at)));
    const segments = await Promise.all(parts);
    if (signal?.aborted) throw aborted(signal, true);
    return new SegmentedBytes(segments);
  } catch (err) {
    throw tree.error(err, action);
  } finally {
    await new Promise<void>((r) => closeCb(fd, () => r()));
  }
}

function readFully(fd: number, buf: Buffer): void {
  let done = 0;
  while (done < buf.byteLength) {
    const n = readSync(fd, buf, done, buf.byteLength - done, done);
    if (n === 0) throw new Determinate(ErrorCode.DataLoss, 'value file shrank while being read');
    done += n;
  }
}

async function readPart(fd: number, position: number, length: number): Promise<Buffer> {
  const buf = Buffer.allocUnsafeSlow(length);
  let done = 0;
  while (done < length) {
    const n = await new Promise<number>((res, rej) =>
      readCb(fd, buf, done, length - done, position + done, (err, bytesRead) => (err ? rej(err) : res(bytesRead))),
    );
    if (n === 0) throw new Determinate(ErrorCode.DataLoss, 'value file shrank while being read');
    done += n;
  }
  return buf;
}
