/**
 * The benchmark report: JSON for machines, a self-contained HTML page for people (the
 * charts inlined as SVG drawn by Vega-Lite, charts.ts: opens without a server or network),
 * and a PNG of the charts rendered by headless Chromium.
 */
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { chartsSvg } from "./charts.js";
import type { RunResult } from "./harness.js";
import type { Scenario } from "./scenario.js";

export interface SloCheck {
  name: string;
  target: string;
  measured: string;
  ok: boolean;
}

export interface BenchReport {
  at: string;
  scenario: Scenario;
  crr: RunResult;
  baseline: RunResult | { skipped: string };
  ratios: Record<string, number> | undefined;
  slo: SloCheck[];
}

export function checkSlos(s: Scenario, r: RunResult): SloCheck[] {
  const maxLagMs = Math.max(0, ...r.links.map((l) => l.lagMs.max));
  const checks: SloCheck[] = [
    {
      name: "integrity",
      target: "every acknowledged record everywhere its policy targets",
      measured: r.integrity.detail,
      ok: r.integrity.ok,
    },
    {
      name: "lag",
      target: `≤ ${s.slo.lagSecondsMax} s`,
      measured: `max ${(maxLagMs / 1000).toFixed(3)} s`,
      ok: maxLagMs <= s.slo.lagSecondsMax * 1000,
    },
  ];
  if (s.slo.lagP99MsMax !== undefined) {
    checks.push({
      name: "lag p99",
      target: `< ${s.slo.lagP99MsMax} ms`,
      measured: `${r.lagMs.p99} ms`,
      ok: r.lagMs.p99 < s.slo.lagP99MsMax,
    });
  }
  for (const d of r.drills) {
    if (d.caughtUpMs !== undefined || d.kind === "sigkill" || d.kind === "disk-loss") {
      const ok = d.caughtUpMs !== undefined && d.caughtUpMs <= s.slo.rtoSecondsMax * 1000;
      checks.push({
        name: `RTO (${d.kind} ${d.region})`,
        target: `≤ ${s.slo.rtoSecondsMax} s`,
        measured:
          d.caughtUpMs === undefined
            ? "did not catch up"
            : `${(d.caughtUpMs / 1000).toFixed(2)} s to caught up (${((d.readyMs ?? 0) / 1000).toFixed(2)} s to ready)`,
        ok,
      });
    }
    if (d.kind === "disk-loss") {
      checks.push({
        name: `RPO (disk loss ${d.region})`,
        target: `≤ ${s.slo.rpoSecondsMax} s`,
        measured: `${d.lostRecords} records, ${(d.lostSeconds ?? 0).toFixed(2)} s of writes`,
        ok: (d.lostSeconds ?? 0) <= s.slo.rpoSecondsMax,
      });
    }
    if (d.kind === "partition") {
      checks.push({
        name: `converge after partition ${d.region}`,
        target: `≤ ${s.slo.rtoSecondsMax} s`,
        measured: d.convergedMs === undefined ? "did not converge" : `${(d.convergedMs / 1000).toFixed(2)} s`,
        ok: d.convergedMs !== undefined && d.convergedMs <= s.slo.rtoSecondsMax * 1000,
      });
    }
  }
  return checks;
}

const esc = (s: string) =>
  s.replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]!);

export function reportHtml(report: BenchReport, charts: { lag: string; throughput: string }): string {
  const runs = [report.crr, ...("skipped" in report.baseline ? [] : [report.baseline])];
  const row = (cells: Array<string | number>) =>
    `<tr>${cells.map((c) => `<td>${esc(String(c))}</td>`).join("")}</tr>`;
  const pct = runs.map((r) =>
    row([
      r.system === "crr" ? "crr" : "NATS JetStream mirror",
      r.acknowledged,
      Math.round(r.appendedPerS),
      r.lagMs.p50,
      r.lagMs.p90,
      r.lagMs.p99,
      r.lagMs.p999,
      r.lagMs.max,
      r.integrity.ok ? "ok" : "FAILED",
    ]),
  );
  const links = report.crr.links.map((l) =>
    row([`${l.from} → ${l.to}`, l.lagMs.count, l.lagMs.p50, l.lagMs.p99, l.lagMs.max]),
  );
  const drills = runs.flatMap((r) =>
    r.drills.map((d) =>
      row([
        r.system,
        d.kind,
        d.region ?? "",
        d.atSeconds,
        d.readyMs ?? "",
        d.caughtUpMs ?? d.convergedMs ?? "",
        d.lostRecords ?? "",
        d.note ?? "",
      ]),
    ),
  );
  const slo = report.slo.map(
    (c) =>
      `<tr class="${c.ok ? "ok" : "bad"}"><td>${esc(c.name)}</td><td>${esc(c.target)}</td><td>${esc(c.measured)}</td><td>${c.ok ? "met" : "MISSED"}</td></tr>`,
  );
  const ratios = report.ratios
    ? Object.entries(report.ratios)
        .map(([k, v]) => row([k, v.toFixed(2)]))
        .join("")
    : row(["baseline", "skipped" in report.baseline ? report.baseline.skipped : ""]);
  const res = report.crr.resources.map((r) =>
    row([r.region, r.cpuSeconds.toFixed(1), r.rssMiB.toFixed(0), r.fsyncs]),
  );
  const perRegion = (report.crr.perRegion ?? []).map((l) =>
    row([l.region, l.offered, l.acknowledged, l.refused, l.failed, l.notOffered]),
  );
  const notes = runs.flatMap((r) => r.notes).map((n) => `<li>${esc(n)}</li>`);
  return `<!doctype html><html><head><meta charset="utf-8"><title>crr lag SLO report: ${esc(report.scenario.name)}</title>
<style>body{font-family:sans-serif;margin:24px;max-width:1100px}table{border-collapse:collapse;margin:8px 0 20px}td,th{border:1px solid #ccc;padding:4px 8px;font-size:13px;text-align:right}td:first-child,th:first-child{text-align:left}tr.bad td{background:#fdd}tr.ok td:last-child{color:#070}h2{margin-top:28px}</style></head><body>
<h1>crr lag SLO report: ${esc(report.scenario.name)}</h1>
<p>${esc(report.at)} · ${report.scenario.regions.length} regions (${esc(report.scenario.regions.join(", "))}) · ${report.scenario.load.ratePerRegion}/s per region open loop · appends ${esc(report.crr.mode ?? "per-record")} · ${report.scenario.load.recordBytes}-byte records (${esc(report.scenario.load.body ?? "filler")} body) · ${report.scenario.load.warmupSeconds + report.scenario.load.durationSeconds} s (first ${report.scenario.load.warmupSeconds} s warm-up, not measured)</p>
<div id="chart">${charts.lag}</div>
<div id="throughput">${charts.throughput}</div>
<h2>SLOs</h2><table><tr><th>check</th><th>target</th><th>measured</th><th></th></tr>${slo.join("")}</table>
<h2>Lag percentiles (ms), crr beside the baseline</h2><table><tr><th>system</th><th>acknowledged</th><th>per s</th><th>p50</th><th>p90</th><th>p99</th><th>p99.9</th><th>max</th><th>integrity</th></tr>${pct.join("")}</table>
<h2>crr / baseline</h2><table><tr><th>ratio</th><th>value (crr ÷ NATS)</th></tr>${ratios}</table>
<h2>crr load per region (records)</h2><table><tr><th>region</th><th>offered</th><th>acknowledged</th><th>refused (429/503)</th><th>failed</th><th>not offered</th></tr>${perRegion.join("")}</table>
<h2>crr per link (ms)</h2><table><tr><th>link</th><th>records</th><th>p50</th><th>p99</th><th>max</th></tr>${links.join("")}</table>
<h2>Drills</h2><table><tr><th>system</th><th>drill</th><th>region</th><th>at s</th><th>ready ms</th><th>caught up / converged ms</th><th>lost records</th><th>note</th></tr>${drills.join("")}</table>
<h2>crr nodes</h2><table><tr><th>region</th><th>CPU s</th><th>RSS MiB</th><th>fsyncs</th></tr>${res.join("")}</table>
<h2>Notes</h2><ul>${notes.join("")}</ul>
</body></html>`;
}

/** Find a headless Chromium (Debian package chromium). */
export function findChromium(): string | undefined {
  for (const c of [process.env.CHROMIUM, "/usr/bin/chromium", "/usr/bin/chromium-browser"])
    if (c && fs.existsSync(c)) return c;
  return undefined;
}

export const chromiumFlags = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--hide-scrollbars",
];

/** Screenshot an HTML file; returns the PNG path or why not. */
export function screenshot(
  htmlFile: string,
  pngFile: string,
  width = 1040,
  height = 520,
): string | { failed: string } {
  const chromium = findChromium();
  if (!chromium) return { failed: "chromium not found (Debian package chromium)" };
  const profile = fs.mkdtempSync(path.join(path.dirname(pngFile), ".chromium-"));
  try {
    const r = spawnSync(
      chromium,
      [
        ...chromiumFlags,
        `--user-data-dir=${profile}`,
        `--screenshot=${pngFile}`,
        `--window-size=${width},${height}`,
        `file://${path.resolve(htmlFile)}`,
      ],
      { encoding: "utf8", timeout: 60_000 },
    );
    if (!fs.existsSync(pngFile))
      return { failed: `chromium exited ${r.status}: ${(r.stderr ?? "").slice(-300)}` };
    return pngFile;
  } finally {
    fs.rmSync(profile, { recursive: true, force: true });
  }
}

export async function writeReport(
  report: BenchReport,
  outDir: string,
  baseName: string,
): Promise<{ json: string; html: string; png: string | undefined; chartHtml: string }> {
  fs.mkdirSync(outDir, { recursive: true });
  const json = path.join(outDir, `${baseName}.json`);
  const html = path.join(outDir, `${baseName}.html`);
  fs.writeFileSync(json, `${JSON.stringify(report, null, 2)}\n`);
  const charts = await chartsSvg(report);
  fs.writeFileSync(html, reportHtml(report, charts));
  const chartHtml = path.join(outDir, `.${baseName}-chart.html`);
  fs.writeFileSync(
    chartHtml,
    `<!doctype html><html><body style="margin:0;background:#fff">${charts.lag}${charts.throughput}</body></html>`,
  );
  // The window as large as the two charts (their SVGs say how large they are).
  const size = (svg: string, attr: string) => Number(new RegExp(`${attr}="(\\d+)`).exec(svg)?.[1] ?? 0);
  const shot = screenshot(
    chartHtml,
    path.join(outDir, `${baseName}.png`),
    Math.max(size(charts.lag, "width"), size(charts.throughput, "width")) + 20,
    size(charts.lag, "height") + size(charts.throughput, "height") + 20,
  );
  fs.rmSync(chartHtml, { force: true });
  return { json, html, png: typeof shot === "string" ? shot : undefined, chartHtml };
}
