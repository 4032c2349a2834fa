// `npm run docs`: rewrites the README's location table (between `<!-- locations: ... -->`
// and `<!-- /locations -->`) from the built-in backend descriptors. test/registry.test.ts
// fails when the two differ.
import { readFileSync, writeFileSync } from 'node:fs';
import { allBackends } from '../dist/src/backend.js';

const path = new URL('../README.md', import.meta.url);
const readme = readFileSync(path, 'utf8');
const rows = allBackends().flatMap((b) => {
  const opens = [b.consensus && 'Consensus', b.blob && 'Blob'].filter(Boolean).join(', ');
  return b.forms.map((f) => `| \`${f.uri}\` | ${opens} | ${f.description} | \`${b.entryPoint}\` |`);
});
const table = ['| URI | opens | what | entry point |', '|---|---|---|---|', ...rows].join('\n');
const block = /(<!-- locations: [^\n]*-->\n)[\s\S]*?(<!-- \/locations -->)/;
if (!block.test(readme)) throw new Error('README.md has no <!-- locations: ... --> ... <!-- /locations --> block');
writeFileSync(path, readme.replace(block, `$1${table}\n$2`));
console.log(`README.md: location table of ${rows.length} rows written`);
