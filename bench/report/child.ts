// One backend's part of the report, in its own process (see main.ts):
//   node --expose-gc dist/bench/report/child.js NAME quick|full OUT.json
import { writeFile } from 'node:fs/promises';
import { performance } from 'node:perf_hooks';
import type { ReportChart } from '../../src/cli/report-html.js';
import { blobCharts, consensusCharts, makePlan, type Log } from '../../src/cli/report-charts.js';
import { checkerCharts } from './checker.js';
import { BACKENDS } from './targets.js';

const [name, mode, out] = process.argv.slice(2);
if (name === undefined || out === undefined || (mode !== 'quick' && mode !== 'full')) {
  console.error('usage: child.js NAME quick|full OUT.json');
  process.exit(2);
}
const plan = makePlan(mode === 'quick');
const began = performance.now();
const charts: ReportChart[] = [];
const failures: string[] = [];
const log: Log = (line, failure) => {
  console.log(`  ${((performance.now() - began) / 1000).toFixed(1).padStart(6)} s  ${line}`);
  if (failure === true) failures.push(line);
};
if (name === 'checker') {
  charts.push(...(await checkerCharts(plan.quick, log)));
} else {
  const backend = BACKENDS[name];
  if (backend === undefined) throw new Error(`no backend named ${name}; known: ${Object.keys(BACKENDS).join(', ')}`);
  const started = await backend();
  try {
    if (started.consensus !== undefined) charts.push(...(await consensusCharts(name, started.consensus, plan, log)));
    if (started.blob !== undefined) charts.push(...(await blobCharts(name, started.blob, plan, log)));
  } finally {
    await started.stop();
  }
}
await writeFile(out, JSON.stringify({ charts, failures }));
// Drivers may keep sockets or timers alive; the charts are written.
process.exit(0);
