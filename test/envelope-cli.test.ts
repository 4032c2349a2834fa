// The envelope's CLI commands, spawned: check --faults, consensus cas --next and
// watch, on the embedded default locations in a temporary directory.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, test } from 'node:test';
import { adopt, exited } from './servers/child.js';

const BIN = fileURLToPath(new URL('../../bin/persist-location.js', import.meta.url));
const cwd = mkdtempSync(join(tmpdir(), 'persist-envelope-cli-'));
after(() => rmSync(cwd, { recursive: true, force: true }));

function cli(...args: string[]) {
  const r = spawnSync(process.execPath, [BIN, ...args], { cwd, encoding: 'utf8', timeout: 180_000, killSignal: 'SIGKILL' });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

test('check --faults 0.1 passes on the embedded locations and reports what was injected', () => {
  const r = cli('check', '--faults', '0.1', '--ops', '600', '--json', '--quiet');
  assert.equal(r.code, 0, r.stdout + r.stderr);
  const report = JSON.parse(r.stdout) as { ok: boolean; faults: { rate: number; calls: number; determinate: number; lost: number; applied: number } };
  assert.equal(report.ok, true);
  assert.equal(report.faults.rate, 0.1);
  const injected = report.faults.determinate + report.faults.lost + report.faults.applied;
  assert.ok(injected > 20 && report.faults.applied > 0, JSON.stringify(report.faults));
  const text = cli('check', '--faults', '0.05', '--ops', '300', '--only', 'consensus', '--quiet');
  assert.equal(text.code, 0, text.stdout + text.stderr);
  assert.match(text.stdout, /faults: \d+ of \d+ calls failed by injection at rate 0\.05/);
  assert.equal(cli('check', '--faults', '2').code, 64);
});

test('consensus cas KEY --next DATA appends at the next seqno; watch prints the heads', async () => {
  // watch only inspects: the location must exist first.
  const first = cli('consensus', 'cas', 'jobs', '--next', 'one');
  assert.equal(first.code, 0, first.stderr);
  assert.match(first.stdout, /Committed: jobs is now at v0/);
  const watcher = adopt(spawn(process.execPath, [BIN, 'watch', 'jobs', '--timeout', '20s', '--json'], { cwd, stdio: ['ignore', 'pipe', 'pipe'] }));
  let out = '';
  let err = '';
  watcher.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  watcher.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  for (const data of ['two', 'three']) assert.equal(cli('consensus', 'cas', 'jobs', '--next', data).code, 0);
  assert.match(cli('consensus', 'head', 'jobs').stdout, /v2/);
  assert.equal(cli('consensus', 'cas', 'jobs', '--next', 'x', '--data-file', '-').code, 64);
  // The watcher ends at its timeout; by then it has printed the final head.
  const until = Date.now() + 20_000;
  while (!out.includes('"three"') && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
  watcher.kill('SIGINT');
  await exited(watcher, 'persist-location watch', 30_000, () => err);
  const heads = out.trim().split('\n').map((l) => JSON.parse(l) as { seqno: string; data: string });
  assert.equal(heads.at(-1)?.data, 'three', out + err);
  const seqnos = heads.map((h) => Number(h.seqno.slice(1)));
  for (let i = 1; i < seqnos.length; i++) assert.ok(seqnos[i]! > seqnos[i - 1]!, out);
  assert.equal(watcher.exitCode, 0, err);
});
