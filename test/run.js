// Runs the compiled test files (dist/test/*.test.js) one after another, each as its
// own process (and process session) with node:test, under a watchdog.
//
// Usage: node test/run.js [name-filter...]   e.g. node test/run.js sqlite file
//
// Each file has a budget of wall-clock time: 6 minutes, or what BUDGETS below or
// PERSIST_TEST_BUDGET says. PERSIST_TEST_BUDGET is a comma-separated list of
// seconds: a bare number for every file, NAME=SECONDS for the files whose names
// contain NAME (e.g. PERSIST_TEST_BUDGET=600,cli=900). A file that runs past its
// budget fails, and it and everything it started (servers, children) are killed.
// Whatever a file leaves running when it ends is killed too.
//
// Before any file starts, what the selected files need from the machine (etcd, a
// postgres user when root) is provided or reported: see test/servers/requirements.ts.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';

const DEFAULT_BUDGET_S = 360;
/** Files known to need more than the default, by name. */
const BUDGETS = {};

const dir = new URL('../dist/test/', import.meta.url).pathname;
const filters = process.argv.slice(2);
const files = (existsSync(dir) ? readdirSync(dir) : [])
  .filter((f) => f.endsWith('.test.js'))
  .filter((f) => filters.length === 0 || filters.some((name) => f.includes(name)))
  .sort()
  .map((f) => join(dir, f));
if (files.length === 0) {
  console.error(`no test files in ${dir} match ${filters.join(' ') || '*'} (build first: npx tsc -p .)`);
  process.exit(1);
}

function budgetOf(file) {
  const name = basename(file);
  let seconds = BUDGETS[name] ?? DEFAULT_BUDGET_S;
  for (const entry of (process.env.PERSIST_TEST_BUDGET ?? '').split(',').filter((e) => e.trim() !== '')) {
    const [match, value] = entry.includes('=') ? entry.split('=') : [undefined, entry];
    const n = Number(value);
    if (!Number.isFinite(n) || n <= 0) {
      console.error(`PERSIST_TEST_BUDGET: "${entry}" is neither SECONDS nor NAME=SECONDS`);
      process.exit(1);
    }
    if (match === undefined || name.includes(match.trim())) seconds = n;
  }
  return seconds;
}

// Requirements, by what the compiled files import.
const { provide } = await import(new URL('../dist/test/servers/requirements.js', import.meta.url).href);
const sources = files.map((f) => readFileSync(f, 'utf8'));
const needs = {
  etcd: sources.some((s) => s.includes('servers/etcd.js')),
  postgres: sources.some((s) => s.includes('servers/postgres.js')),
};
const problems = await provide(needs, (line) => console.log(`test/run.js: ${line}`));
if (problems.length > 0) {
  console.error(`\ntest/run.js: cannot run the tests on this machine yet:\n\n${problems.map((p) => `  * ${p}`).join('\n\n')}\n`);
  process.exit(1);
}

/** The processes of a session or group led by `leader`, and its descendants (Linux: from /proc). */
function processTree(leader) {
  const procs = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let stat;
    try {
      stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
    } catch {
      continue;
    }
    // The command name is in parentheses and may itself contain spaces or parentheses.
    const close = stat.lastIndexOf(')');
    const [state, ppid, pgrp, session] = stat.slice(close + 2).split(' ');
    if (state === 'Z') continue;
    procs.push({ pid: Number(entry), ppid: Number(ppid), pgrp: Number(pgrp), session: Number(session), name: stat.slice(stat.indexOf('(') + 1, close) });
  }
  const tree = new Map(procs.filter((p) => p.pid === leader || p.session === leader || p.pgrp === leader).map((p) => [p.pid, p]));
  for (let grew = true; grew; ) {
    grew = false;
    for (const p of procs) {
      if (!tree.has(p.pid) && tree.has(p.ppid)) {
        tree.set(p.pid, p);
        grew = true;
      }
    }
  }
  return [...tree.values()];
}

/** SIGKILLs `leader` and all it started; resolves to the processes that were still there. */
function killTree(leader) {
  if (process.platform !== 'linux') {
    try {
      process.kill(-leader, 'SIGKILL');
    } catch {
      // already gone
    }
    return [];
  }
  const seen = new Map();
  // Repeated: a process may fork between the listing and the kill.
  for (let round = 0; round < 5; round++) {
    const tree = processTree(leader);
    if (tree.length === 0) break;
    for (const p of tree) {
      seen.set(p.pid, p);
      try {
        process.kill(p.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  }
  return [...seen.values()];
}

/** Counts and failing test names from node:test's TAP output. */
function parseTap(text) {
  const counts = {};
  for (const m of text.matchAll(/^# (tests|pass|fail|cancelled|skipped|todo) (\d+)$/gm)) counts[m[1]] = Number(m[2]);
  const failed = [...text.matchAll(/^( *)not ok \d+ - (.*?)(?: # .*)?$/gm)].map((m) => `${m[1]}${m[2]}`);
  return { counts: 'tests' in counts ? counts : undefined, failed };
}

let current;
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(signal, () => {
    if (current !== undefined) killTree(current.pid);
    console.error(`\ntest/run.js: ${signal}; stopped ${current === undefined ? '' : basename(current.file)} and everything it started`);
    process.exit(128 + (signal === 'SIGINT' ? 2 : signal === 'SIGTERM' ? 15 : 1));
  });
}

async function runFile(file, index) {
  const name = basename(file);
  const budget = budgetOf(file);
  const scratch = mkdtempSync(join(tmpdir(), 'persist-test-run-'));
  const tap = join(scratch, 'report.tap');
  console.log(`\n━━ [${index + 1}/${files.length}] ${name} (budget ${budget} s)`);
  const started = performance.now();
  const child = spawn(
    process.execPath,
    ['--test-reporter=spec', '--test-reporter-destination=stdout', '--test-reporter=tap', `--test-reporter-destination=${tap}`, file],
    { detached: true, stdio: ['ignore', 'inherit', 'inherit'] },
  );
  current = { pid: child.pid, file };
  let timedOut = false;
  const exit = await new Promise((resolve) => {
    const timer = setTimeout(() => {
      timedOut = true;
      console.error(`\n━━ ✖ ${name} is still running after its budget of ${budget} s: killing it and everything it started`);
      killTree(child.pid);
    }, budget * 1000);
    child.once('error', (err) => {
      clearTimeout(timer);
      resolve({ code: null, signal: null, error: err });
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal });
    });
  });
  const seconds = (performance.now() - started) / 1000;
  const leftovers = child.pid === undefined ? [] : killTree(child.pid).filter((p) => p.pid !== child.pid);
  current = undefined;
  const { counts, failed } = parseTap(existsSync(tap) ? readFileSync(tap, 'utf8') : '');
  rmSync(scratch, { recursive: true, force: true });

  const problems = [];
  if (timedOut) problems.push(`killed after its budget of ${budget} s (PERSIST_TEST_BUDGET=${name.replace(/\.test\.js$/, '')}=SECONDS to change it)`);
  else if (exit.error !== undefined) problems.push(`could not be started: ${exit.error.message}`);
  else if (counts === undefined) {
    problems.push(`ended (exit code ${exit.code}, signal ${exit.signal}) before node:test reported a summary: a test stalled or exited the process, or the file has no tests`);
  }
  else if (exit.code !== 0 && counts.fail === 0) problems.push(`exited with code ${exit.code}${exit.signal ? `, signal ${exit.signal}` : ''}`);
  if (counts !== undefined) {
    if (counts.tests === 0) problems.push('ran no tests');
    if (counts.cancelled > 0) problems.push(`${counts.cancelled} cancelled`);
    if (counts.skipped > 0 || counts.todo > 0) problems.push(`${counts.skipped + counts.todo} skipped or todo (a test never passes by skipping)`);
  }
  const ok = problems.length === 0 && (counts?.fail ?? 0) === 0;
  const tally = counts === undefined ? 'no summary' : `${counts.pass} passed, ${counts.fail} failed`;
  const result = { name, ok, tally, seconds, problems, failed, counts };
  console.log(`━━ ${ok ? '✔' : '✖'} ${name}: ${tally} in ${seconds.toFixed(1)} s${problems.length > 0 ? `; ${problems.join('; ')}` : ''}`);
  if (leftovers.length > 0) {
    console.log(`━━ ! ${name} left ${leftovers.length} process(es) running, now killed: ${leftovers.map((p) => `${p.pid} ${p.name}`).join(', ')}`);
  }
  return result;
}

const began = performance.now();
const results = [];
for (const [i, file] of files.entries()) results.push(await runFile(file, i));

const width = Math.max(...results.map((r) => r.name.length));
console.log('\n━━ summary');
for (const r of results) {
  console.log(`${r.ok ? '✔' : '✖'} ${r.name.padEnd(width)}  ${r.tally.padEnd(22)} ${r.seconds.toFixed(1).padStart(6)} s${r.problems.length > 0 ? `  ${r.problems.join('; ')}` : ''}`);
  for (const f of r.failed) console.log(`      not ok: ${f}`);
}
const total = (key) => results.reduce((n, r) => n + (r.counts?.[key] ?? 0), 0);
const bad = results.filter((r) => !r.ok);
console.log(
  `\n${bad.length === 0 ? '✔' : '✖'} ${results.length} files, ${total('tests')} tests: ${total('pass')} passed, ${total('fail')} failed` +
    `${bad.length > 0 ? `; failing files: ${bad.map((r) => r.name).join(', ')}` : ''} (${((performance.now() - began) / 1000).toFixed(1)} s)`,
);
process.exit(bad.length === 0 ? 0 : 1);
