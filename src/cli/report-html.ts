/**
 * The benchmark report page: a `report.json` (every measured point, with where and
 * when it was measured) drawn as one self-contained HTML page of SVG charts. Shared
 * by `npm run bench -- --report DIR` and `persist-location bench --report DIR`.
 *
 * The charts are Vega-Lite specs rendered to SVG strings in Node (`view.toSVG()`,
 * no browser, no canvas); the page carries the SVG inline and loads nothing. Vega
 * and Vega-Lite are optional: they are imported only here, when a report is drawn,
 * and a missing one fails with a message naming what to install.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { cpus, hostname, platform, release, totalmem } from 'node:os';
import { join } from 'node:path';

/** One measured value: `y` at `x` for one series of a chart. */
export interface ReportPoint {
  series: string;
  x: number;
  y: number;
}

/** One chart: our series and the baseline measured in the same run beside them. */
export interface ReportChart {
  /** Stable id, e.g. `sqlite.cas-clients`. */
  id: string;
  /** What the chart is about, e.g. the backend (`sqlite`); charts are grouped by it. */
  group: string;
  title: string;
  x: { label: string; log: boolean };
  y: { label: string; log: boolean };
  /** Series names drawn dashed as baselines; every other series is ours. */
  baselines: string[];
  /** Shown under the chart: how it was measured, which points were left out and why. */
  note?: string;
  points: ReportPoint[];
}

/** What `report.json` holds. */
export interface ReportData {
  title: string;
  /** ISO 8601. */
  date: string;
  machine: { hostname: string; platform: string; cpus: number; cpuModel: string; memoryGiB: number };
  node: string;
  /** `git rev-parse HEAD` of the checkout measured, or `unknown`. */
  commit: string;
  /** How the run was made (command line, quick or full), shown at the top. */
  notes: string[];
  charts: ReportChart[];
}

/** The machine this process runs on, as {@link ReportData.machine} records it. */
export function machineFacts(): ReportData['machine'] {
  const cores = cpus();
  return { hostname: hostname(), platform: `${platform()} ${release()}`, cpus: cores.length, cpuModel: cores[0]?.model.trim() ?? 'unknown', memoryGiB: totalmem() / 2 ** 30 };
}

/** The page's file names inside the report directory. */
export const REPORT_FILES = { html: 'index.html', json: 'report.json' } as const;

type VegaModules = { vega: typeof import('vega'); vl: typeof import('vega-lite') };

async function loadVega(): Promise<VegaModules> {
  try {
    const [vega, vl] = await Promise.all([import('vega'), import('vega-lite')]);
    return { vega, vl };
  } catch (err) {
    const missing = err instanceof Error && /vega-lite/.test(err.message) ? 'vega-lite' : 'vega';
    throw new Error(`drawing the report needs the optional packages vega and vega-lite (${missing} could not be loaded); install them with: npm install vega vega-lite`, { cause: err });
  }
}

/** The Vega-Lite spec of one chart: lines with points, colour by series, baselines dashed (the page says so). */
function chartSpec(chart: ReportChart): object {
  const values = chart.points.map((p) => ({ ...p, kind: chart.baselines.includes(p.series) ? 'baseline' : 'ours' }));
  const axis = (a: { label: string; log: boolean }) => ({ title: a.label, scale: { type: a.log ? 'log' : 'linear' }, ...(a.log ? { axis: { tickCount: 6 } } : {}) });
  return {
    width: 360,
    height: 220,
    // Node measures text without fonts; room on the right keeps a browser's wider last tick label inside.
    padding: { left: 5, top: 5, bottom: 5, right: 24 },
    title: { text: chart.title, fontSize: 13, anchor: 'start' },
    data: { values },
    mark: { type: 'line', point: true, clip: true },
    encoding: {
      x: { field: 'x', type: 'quantitative', ...axis(chart.x) },
      y: { field: 'y', type: 'quantitative', ...axis(chart.y) },
      color: { field: 'series', type: 'nominal', legend: { title: null, orient: 'bottom', columns: 1, labelLimit: 400, symbolType: 'stroke', symbolStrokeWidth: 3 } },
      strokeDash: { field: 'kind', type: 'nominal', scale: { domain: ['ours', 'baseline'], range: [[1, 0], [5, 3]] }, legend: null },
      tooltip: [{ field: 'series' }, { field: 'x' }, { field: 'y', format: '.4~g' }],
    },
    config: { font: 'sans-serif', view: { stroke: '#ccc' } },
  };
}

/** Renders one chart to an SVG string. */
export async function chartSvg(chart: ReportChart, modules?: VegaModules): Promise<string> {
  const { vega, vl } = modules ?? (await loadVega());
  const compiled = vl.compile(chartSpec(chart) as never).spec;
  const view = new vega.View(vega.parse(compiled), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

const escapeHtml = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

/** The whole page: a header with the machine and run, then each group's charts. */
export async function renderReportHtml(data: ReportData): Promise<string> {
  const modules = await loadVega();
  const groups = new Map<string, ReportChart[]>();
  for (const chart of data.charts) {
    const list = groups.get(chart.group) ?? [];
    list.push(chart);
    groups.set(chart.group, list);
  }
  const sections: string[] = [];
  for (const [group, charts] of groups) {
    const figures: string[] = [];
    for (const chart of charts) {
      const svg = await chartSvg(chart, modules);
      const note = chart.note === undefined ? '' : `<figcaption>${escapeHtml(chart.note)}</figcaption>`;
      figures.push(`<figure id="${escapeHtml(chart.id)}">${svg}${note}</figure>`);
    }
    sections.push(`<section><h2>${escapeHtml(group)}</h2><div class="charts">${figures.join('\n')}</div></section>`);
  }
  const m = data.machine;
  const facts = [
    `${escapeHtml(data.date)}`,
    `${escapeHtml(m.hostname)}: ${m.cpus} × ${escapeHtml(m.cpuModel)}, ${m.memoryGiB.toFixed(0)} GiB, ${escapeHtml(m.platform)}`,
    `Node ${escapeHtml(data.node)}`,
    `commit ${escapeHtml(data.commit)}`,
  ];
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${escapeHtml(data.title)}</title>
<style>
body { font-family: sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.4em; margin-bottom: .2em; } h2 { font-size: 1.15em; border-bottom: 1px solid #ddd; }
.facts { color: #555; } .charts { display: flex; flex-wrap: wrap; gap: 1em; }
figure { margin: 0; width: 460px; } figcaption { font-size: .8em; color: #555; }
</style></head><body>
<h1>${escapeHtml(data.title)}</h1>
<p class="facts">${facts.join(' · ')}</p>
${data.notes.map((n) => `<p>${escapeHtml(n)}</p>`).join('\n')}
<p>Solid lines are ours; dashed lines are the baseline measured in the same run. The data: <a href="${REPORT_FILES.json}">${REPORT_FILES.json}</a>.</p>
${sections.join('\n')}
</body></html>
`;
}

/** Writes `report.json` and `index.html` into `dir` (created if missing); returns the page's path. */
export async function writeReport(dir: string, data: ReportData): Promise<string> {
  const html = await renderReportHtml(data);
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, REPORT_FILES.json), JSON.stringify(data, null, 1) + '\n');
  const page = join(dir, REPORT_FILES.html);
  await writeFile(page, html);
  return page;
}
