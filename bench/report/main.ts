// `npm run bench -- --report DIR [--quick]`: measures every backend against its
// baseline and writes DIR/report.json and DIR/index.html (see src/cli/report-html.ts).
//
// Each backend runs in its own process (started here, with its servers), so that
// memory figures are its own and one that stalls is stopped at its time budget
// without ending the report: its charts are then missing and the page says why.
import { execFileSync, spawn } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { machineFacts, writeReport, type ReportChart, type ReportData } from '../../src/cli/report-html.js';
import { makePlan } from '../../src/cli/report-charts.js';
import { BACKENDS } from './targets.js';

/** Wall-clock budget of one backend's process (full plan, quick plan). */
const BUDGET_S: Record<string, [number, number]> = {
  sqlite: [240, 60],
  file: [60, 30],
  postgres: [360, 90],
  etcd: [300, 60],
  // Each side fills for up to fillMs of its own: the object stores fill slowly on the emulators.
  s3: [240, 90],
  azure: [240, 90],
  mem: [150, 40],
  checker: [90, 30],
};

function gitCommit(): string {
  try {
    const root = new URL('../../../', import.meta.url).pathname;
    const head = execFileSync('git', ['rev-parse', 'HEAD'], { cwd: root, encoding: 'utf8', timeout: 10_000 }).trim();
    const dirty = execFileSync('git', ['status', '--porcelain', '--untracked-files=no'], { cwd: root, encoding: 'utf8', timeout: 10_000 }).trim() !== '';
    return dirty ? `${head} (with uncommitted changes)` : head;
  } catch {
    return 'unknown';
  }
}

/** Runs one backend's child; resolves with its charts, or with why there are none. */
function runChild(name: string, quick: boolean, out: string): Promise<{ charts: ReportChart[]; failures: string[] }> {
  const budgetS = BUDGET_S[name]![quick ? 1 : 0];
  const child = spawn(process.execPath, ['--expose-gc', new URL('./child.js', import.meta.url).pathname, name, quick ? 'quick' : 'full', out], {
    stdio: ['ignore', 'inherit', 'inherit'],
    // Its own process group: a stop takes the servers it started with it.
    detached: true,
  });
  const killGroup = (signal: NodeJS.Signals) => {
    try {
      process.kill(-child.pid!, signal);
    } catch {
      // already gone
    }
  };
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    killGroup('SIGTERM');
    setTimeout(() => killGroup('SIGKILL'), 10_000).unref();
  }, budgetS * 1000);
  return new Promise((resolve) => {
    child.once('error', (err) => {
      clearTimeout(timer);
      resolve({ charts: [], failures: [`${name}: could not start: ${err.message}`] });
    });
    child.once('exit', async (code, signal) => {
      clearTimeout(timer);
      // Whatever it left running in its group goes with it.
      killGroup('SIGKILL');
      if (timedOut) return resolve({ charts: [], failures: [`${name}: stopped after its budget of ${budgetS} s`] });
      if (code !== 0) return resolve({ charts: [], failures: [`${name}: exited with ${signal ?? code}`] });
      try {
        resolve(JSON.parse(await readFile(out, 'utf8')) as { charts: ReportChart[]; failures: string[] });
      } catch (err) {
        resolve({ charts: [], failures: [`${name}: wrote no charts (${err instanceof Error ? err.message : String(err)})`] });
      }
    });
  });
}

export async function runReport(dir: string, quick: boolean, only: string[] = []): Promise<number> {
  const began = performance.now();
  // Read before measuring: what is measured is the checkout as it is now.
  const commit = gitCommit();
  const plan = makePlan(quick);
  const names = [...Object.keys(BACKENDS), 'checker'].filter((n) => only.length === 0 || only.some((o) => n.includes(o)));
  const total = names.reduce((s, n) => s + BUDGET_S[n]![quick ? 1 : 0], 0);
  console.log(`report (${quick ? 'quick' : 'full'} plan): ${names.join(', ')}; at most ${Math.ceil(total / 60)} min`);
  const scratch = await mkdtemp(join(tmpdir(), 'persist-report-'));
  const charts: ReportChart[] = [];
  const failures: string[] = [];
  try {
    for (const [i, name] of names.entries()) {
      console.log(`\n[${i + 1}/${names.length}] ${name} (${((performance.now() - began) / 1000).toFixed(0)} s so far)`);
      const r = await runChild(name, quick, join(scratch, `${name}.json`));
      charts.push(...r.charts);
      for (const f of r.failures) console.log(f);
      failures.push(...r.failures);
    }
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
  const seconds = (performance.now() - began) / 1000;
  const data: ReportData = {
    title: 'persist-location benchmark report',
    date: new Date().toISOString(),
    machine: machineFacts(),
    node: process.version,
    commit,
    notes: [
      `Made by \`npm run bench -- --report DIR${quick ? ' --quick' : ''}\` in ${seconds.toFixed(0)} s (${quick ? 'quick plan: fewer points, ' : ''}${plan.pointMs} ms per point).`,
      'Every point of ours is measured next to its baseline, alternately, in the same run on the same machine. p50/p99 are over all the operations of a point.',
      ...failures.map((f) => `Missing: ${f}.`),
    ],
    charts,
  };
  const page = await writeReport(dir, data);
  console.log(`\nreport: ${page} (${charts.length} charts, ${seconds.toFixed(0)} s)`);
  return failures.length === 0 ? 0 : 1;
}
