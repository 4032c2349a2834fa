// The linearizability checker's part of the report.
import { performance } from 'node:perf_hooks';
import { MemConsensus } from 'persist-location';
import { checkLinearizable, stressConsensus, UnreliableConsensus, type HistoryOp } from 'persist-location/testing';
import { chart, type Log } from '../../src/cli/report-charts.js';
import type { ReportChart, ReportPoint } from '../../src/cli/report-html.js';

/**
 * The checker's time against history length. Its baseline is the least any checker
 * must do with the same history: one pass grouping operations by key and sorting
 * each key's by start time.
 */
export async function checkerCharts(quick: boolean, log: Log): Promise<ReportChart[]> {
  const points: ReportPoint[] = [];
  const baseline = 'group by key + sort (lower bound)';
  for (const ops of quick ? [1000, 5000, 20_000] : [1000, 10_000, 50_000, 100_000]) {
    const name = `report-checker-${ops}`;
    const recorded = await stressConsensus(async () => new UnreliableConsensus(new MemConsensus({ name }), { failRate: 0.05, operations: ['compareAndSet', 'truncate'] }), {
      ops,
      keys: Math.max(1, Math.round(ops / 100)),
      clients: 16,
    });
    const t0 = performance.now();
    const verdict = checkLinearizable(recorded.history);
    const checkMs = performance.now() - t0;
    if (verdict.verdict !== 'ok') throw new Error(`checker: a ${ops}-operation history of MemConsensus was judged ${verdict.verdict}`);
    const t1 = performance.now();
    const byKey = new Map<string, HistoryOp[]>();
    for (const op of recorded.history) {
      const list = byKey.get(op.key) ?? [];
      list.push(op);
      byKey.set(op.key, list);
    }
    for (const list of byKey.values()) list.sort((a, b) => a.start - b.start);
    const sortMs = performance.now() - t1;
    points.push({ series: 'checkLinearizable', x: recorded.history.length, y: checkMs }, { series: baseline, x: recorded.history.length, y: Math.max(sortMs, 0.001) });
    log(`checker ${recorded.history.length} ops: ${checkMs.toFixed(1)} ms (sort ${sortMs.toFixed(1)} ms)`);
  }
  return [
    chart('checker.history', 'linearizability checker', 'checkLinearizable time vs history length', { label: 'operations in the history', log: true }, { label: 'ms', log: true }, [baseline], points, [
      'Histories recorded by stressConsensus on MemConsensus with 5% of writes made indeterminate (UnreliableConsensus), 16 clients, one key per 100 operations.',
    ]),
  ];
}
