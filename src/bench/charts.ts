/**
 * The report's charts, drawn by Vega-Lite (compiled to a Vega spec, rendered to SVG in this
 * process, no browser and no network): lag over time per link against the SLO line, and
 * acknowledged records per second per region. The SVG is inlined into the HTML report, so
 * the page works offline; the PNG is a screenshot of it.
 */
import * as vega from "vega";
import { compile, type TopLevelSpec } from "vega-lite";
import type { BenchReport } from "./report.js";

const width = 900;
const height = 300;

/** Lag points: one per link and second with records (seconds without any are left out, not drawn as 0). */
function lagValues(report: BenchReport) {
  const runs = [report.crr, ...("skipped" in report.baseline ? [] : [report.baseline])];
  return runs.flatMap((r) =>
    r.links.flatMap((l) =>
      l.lagMsMaxPerSecond
        .map((lagMs, second) => ({
          series: `${r.system === "crr" ? "crr" : "NATS"} ${l.from}→${l.to}`,
          second: second + 0.5,
          lagMs,
        }))
        .filter((p) => p.lagMs > 0),
    ),
  );
}

function throughputValues(report: BenchReport) {
  const runs = [report.crr, ...("skipped" in report.baseline ? [] : [report.baseline])];
  return runs.flatMap((r) =>
    (r.acknowledgedPerSecond ?? []).flatMap((x) =>
      x.counts.map((count, second) => ({
        series: `${r.system === "crr" ? "crr" : "NATS"} ${x.region}`,
        second: second + 0.5,
        count,
      })),
    ),
  );
}

/** Max lag per second and link, log scale, with the SLO as a dashed rule; the legend below the plot. */
export function lagSpec(report: BenchReport): TopLevelSpec {
  const sloMs = report.scenario.slo.lagSecondsMax * 1000;
  return {
    $schema: "https://vega.github.io/schema/vega-lite/v6.json",
    width,
    height,
    title: "max lag of the records acknowledged in each second, per link",
    layer: [
      {
        data: { values: lagValues(report) },
        mark: { type: "line", strokeWidth: 1.8 },
        encoding: {
          x: { field: "second", type: "quantitative", title: "seconds since start" },
          y: { field: "lagMs", type: "quantitative", title: "lag (ms, log scale)", scale: { type: "log" } },
          color: {
            field: "series",
            type: "nominal",
            title: null,
            legend: { orient: "bottom", columns: 3, labelLimit: 400 },
          },
        },
      },
      {
        data: { values: [{ sloMs, label: `SLO ${report.scenario.slo.lagSecondsMax} s` }] },
        layer: [
          {
            mark: { type: "rule", color: "#c00", strokeDash: [6, 4] },
            encoding: { y: { field: "sloMs", type: "quantitative", scale: { type: "log" } } },
          },
          {
            mark: { type: "text", color: "#c00", align: "right", dy: -6, x: width },
            encoding: {
              y: { field: "sloMs", type: "quantitative", scale: { type: "log" } },
              text: { field: "label" },
            },
          },
        ],
      },
    ],
    // One y scale for the lines and the SLO rule (the rule must sit at its value on the lag axis).
    resolve: { scale: { y: "shared" }, axis: { y: "shared" } },
  } as TopLevelSpec;
}

export function throughputSpec(report: BenchReport): TopLevelSpec {
  return {
    $schema: "https://vega.github.io/schema/vega-lite/v6.json",
    width,
    height: 200,
    title: "records acknowledged per second, per region appended in",
    data: { values: throughputValues(report) },
    mark: { type: "line", strokeWidth: 1.8, interpolate: "step" },
    encoding: {
      x: { field: "second", type: "quantitative", title: "seconds since start" },
      y: { field: "count", type: "quantitative", title: "acknowledged/s" },
      color: {
        field: "series",
        type: "nominal",
        title: null,
        legend: { orient: "bottom", columns: 3, labelLimit: 400 },
      },
    },
  } as TopLevelSpec;
}

/** Render a Vega-Lite spec to an SVG string. */
export async function renderSvg(spec: TopLevelSpec): Promise<string> {
  const view = new vega.View(vega.parse(compile(spec).spec), { renderer: "none" });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

export async function chartsSvg(report: BenchReport): Promise<{ lag: string; throughput: string }> {
  return { lag: await renderSvg(lagSpec(report)), throughput: await renderSvg(throughputSpec(report)) };
}
