// The benchmark report page drawn from a tiny synthetic report.json: every chart
// is an inline, well-formed SVG showing both our series and the baseline, and the
// page loads nothing from anywhere.
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { machineFacts, REPORT_FILES, writeReport, type ReportData } from '../src/cli/report-html.js';

const data: ReportData = {
  title: 'persist-location benchmark report (test)',
  date: '2026-01-02T03:04:05.000Z',
  machine: machineFacts(),
  node: process.version,
  commit: 'abc123',
  notes: ['synthetic <data> & a note'],
  charts: [
    {
      id: 'mem.cas-clients',
      group: 'mem',
      title: 'compareAndSet throughput vs clients',
      x: { label: 'clients', log: true },
      y: { label: 'ops/s', log: true },
      baselines: ['plain Map'],
      note: 'two points each',
      points: [
        { series: 'MemConsensus', x: 1, y: 1000 },
        { series: 'MemConsensus', x: 64, y: 5000 },
        { series: 'plain Map', x: 1, y: 90000 },
        { series: 'plain Map', x: 64, y: 95000 },
      ],
    },
    {
      id: 'checker.history',
      group: 'checker',
      title: 'checker time vs history length',
      x: { label: 'operations', log: false },
      y: { label: 'ms', log: false },
      baselines: ['sort only'],
      points: [
        { series: 'checker', x: 100, y: 3 },
        { series: 'checker', x: 1000, y: 40 },
        { series: 'sort only', x: 100, y: 0.1 },
        { series: 'sort only', x: 1000, y: 1.2 },
      ],
    },
  ],
};

/** Checks that `xml` is one element with properly nested, closed tags; returns the element names seen. */
function wellFormed(xml: string): Map<string, number> {
  const seen = new Map<string, number>();
  const stack: string[] = [];
  const tag = /<(\/?)([A-Za-z][\w:.-]*)((?:\s+[\w:.-]+="[^"<]*")*)\s*(\/?)>|<!--[\s\S]*?-->|<([^>]*)>/g;
  let m: RegExpExecArray | null;
  let roots = 0;
  while ((m = tag.exec(xml)) !== null) {
    if (m[0].startsWith('<!--')) continue;
    assert.equal(m[5], undefined, `malformed tag ${m[0].slice(0, 80)}`);
    const [, close, name, , selfClose] = m;
    if (close === '/') {
      assert.equal(stack.pop(), name, `</${name}> closes the wrong element`);
    } else {
      if (stack.length === 0) roots++;
      seen.set(name!, (seen.get(name!) ?? 0) + 1);
      if (selfClose !== '/') stack.push(name!);
    }
  }
  assert.deepEqual(stack, [], 'unclosed elements');
  assert.equal(roots, 1, 'one root element');
  assert.doesNotMatch(xml.replace(/<[^>]*>/g, ''), /[<>]/, 'stray angle brackets in text');
  return seen;
}

test('the report page has one well-formed inline SVG per chart, each with both series, and no external resource', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'persist-report-test-'));
  try {
    const page = await writeReport(join(dir, 'out'), data);
    const html = await readFile(page, 'utf8');
    const json = JSON.parse(await readFile(join(dir, 'out', REPORT_FILES.json), 'utf8')) as ReportData;
    assert.deepEqual(json, data);
    assert.doesNotMatch(html, /<script|<link|<img|<iframe|src=|@import|url\(\s*['"]?https?:/i);
    assert.match(html, /synthetic &#60;data&#62; &#38; a note/);
    assert.match(html, /commit abc123/);
    const figures = [...html.matchAll(/<figure id="([^"]+)">(<svg[\s\S]*?<\/svg>)/g)];
    assert.deepEqual(figures.map((f) => f[1]), data.charts.map((c) => c.id));
    for (const [i, chart] of data.charts.entries()) {
      const svg = figures[i]![2]!;
      const elements = wellFormed(svg);
      assert.ok((elements.get('path') ?? 0) > 0, `${chart.id}: no path drawn`);
      const text = [...svg.matchAll(/<text[^>]*>([^<]*)<\/text>/g)].map((t) => t[1]);
      for (const series of new Set(chart.points.map((p) => p.series))) assert.ok(text.includes(series), `${chart.id}: no legend entry for ${series}`);
      assert.ok(text.includes(chart.title), `${chart.id}: no title`);
      // Each series is one line: a path with one segment per point after the first.
      const lines = [...svg.matchAll(/<path[^>]*aria-roledescription="line mark"[^>]*>|<g[^>]*aria-roledescription="line mark"[^>]*>/g)];
      assert.ok(lines.length >= 1, `${chart.id}: no line marks`);
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('a chart with a log axis gets log ticks', async () => {
  const { chartSvg } = await import('../src/cli/report-html.js');
  const svg = await chartSvg(data.charts[0]!);
  const ticks = [...svg.matchAll(/<text[^>]*>([^<]*)<\/text>/g)].map((t) => t[1]);
  assert.ok(ticks.includes('10,000') || ticks.includes('10k') || ticks.includes('10000'), `log y ticks: ${ticks.join(' | ')}`);
});
