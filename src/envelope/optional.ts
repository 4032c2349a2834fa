/**
 * Loading an optional peer dependency on first use, so that importing the core
 * never requires it, with a message naming the package when it is missing.
 */
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

/** The CommonJS build of `name`, loaded now; Error naming the package to install when missing. */
export function optionalPeer<T>(name: string, forWhat: string): T {
  try {
    return require(name) as T;
  } catch (err) {
    if ((err as { code?: unknown }).code === 'MODULE_NOT_FOUND') {
      throw new Error(`${forWhat} needs the npm package ${name}, which is not installed: npm install ${name}`, { cause: err });
    }
    throw err;
  }
}
