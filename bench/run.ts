// `npm run bench [name...]`: runs every compiled bench/*.bench.js (or those whose
// file name contains one of the given names), one at a time, each in its own process.
// `npm run bench -- --report DIR [--quick] [name...]`: the report with charts instead
// (bench/report/main.ts), of every backend or of those named.
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';

const dir = new URL('.', import.meta.url).pathname;
const args = process.argv.slice(2);
const reportAt = args.indexOf('--report');
if (reportAt >= 0) {
  const out = args[reportAt + 1];
  if (out === undefined || out.startsWith('--')) {
    console.error('usage: npm run bench -- --report DIR [--quick] [name...]');
    process.exit(2);
  }
  const rest = args.filter((a, i) => i !== reportAt && i !== reportAt + 1);
  const { runReport } = await import('./report/main.js');
  process.exit(await runReport(out, rest.includes('--quick'), rest.filter((a) => a !== '--quick')));
}
const filters = args;
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
