// `npm run bench [name...]`: runs every compiled bench/*.bench.js (or those whose
// file name contains one of the given names), one at a time, each in its own process.
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';

const dir = new URL('.', import.meta.url).pathname;
const filters = process.argv.slice(2);
const files = readdirSync(dir)
  .filter((f) => f.endsWith('.bench.js'))
  .filter((f) => filters.length === 0 || filters.some((name) => f.includes(name)))
  .sort();
let failed = 0;
for (const file of files) {
  console.log(`\n=== ${file.replace(/\.bench\.js$/, '')} ===`);
  const { status } = spawnSync(process.execPath, ['--expose-gc', join(dir, file)], { stdio: 'inherit' });
  if (status !== 0) {
    console.log(`${file} exited with ${status}`);
    failed++;
  }
}
process.exit(failed === 0 ? 0 : 1);
