export { CrrHarness, countAcrossRestarts, histogram, summarize } from "./harness.js";
export type { DrillResult, LatencySummary, LinkResult, RunResult } from "./harness.js";
export { chartsSvg, lagSpec, renderSvg, throughputSpec } from "./charts.js";
export { findNatsServer, runNatsBaseline } from "./nats-baseline.js";
export { checkSlos, chromiumFlags, findChromium, reportHtml, screenshot, writeReport } from "./report.js";
export type { BenchReport, SloCheck } from "./report.js";
export { ScenarioError, faultsFor, loadScenario, parseScenario } from "./scenario.js";
export type { DrillSpec, LinkSpec, Scenario } from "./scenario.js";
