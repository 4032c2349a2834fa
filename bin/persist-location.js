#!/usr/bin/env node
// The persist-location command line; the code is in src/cli/ (compiled to dist/).
import { main } from '../dist/src/cli/main.js';

const code = await main(process.argv.slice(2));
process.exitCode = code;
// Output is flushed by now; a driver that keeps a socket or timer alive after
// close() must not keep the command from returning.
setTimeout(() => process.exit(code), 1000).unref();
