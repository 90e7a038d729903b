/**
 * `crr bench --scenario FILE`: run a lag SLO scenario against crr and, in the same run, the
 * NATS JetStream baseline; write JSON, HTML and PNG under --out (default bench/results).
 */
import path from "node:path";
import {
  CrrHarness,
  ScenarioError,
  checkSlos,
  findNatsServer,
  loadScenario,
  runNatsBaseline,
  writeReport,
  type BenchReport,
  type RunResult,
} from "../bench/index.js";
import { CliUsageError, parseCommand } from "./args.js";

const help = `crr bench --scenario FILE [--out DIR] [--check] [--no-baseline] [--keep]

Runs a lag SLO scenario (YAML/JSON: regions, policies, open-loop rate per region, record
size, duration, faults per link, drills) against crr nodes on loopback, then the same load
and faults against a NATS JetStream mirror between two local nats-server processes.
Prints progress every second; writes <name>.json, <name>.html and <name>.png to --out
(default bench/results). Every run ends with an integrity check and fails (exit 1) if any
acknowledged record is missing. --check also exits 1 when an SLO is missed.`;

export async function runBench(argv: string[]): Promise<number> {
  const { values } = parseCommand("bench", argv, {
    scenario: { type: "string", short: "s" },
    out: { type: "string" },
    check: { type: "boolean" },
    "no-baseline": { type: "boolean" },
    keep: { type: "boolean" },
  });
  if (values.help) {
    process.stdout.write(`${help}\n`);
    return 0;
  }
  if (typeof values.scenario !== "string")
    throw new CliUsageError(`bench: --scenario FILE is required\n\n${help}`);
  let scenario;
  try {
    scenario = loadScenario(values.scenario);
  } catch (err) {
    if (err instanceof ScenarioError) throw new CliUsageError(err.message);
    throw err;
  }
  const say = (s: string) => process.stdout.write(`${s}\n`);
  const harness = new CrrHarness(scenario, { progress: say });
  let crr: RunResult;
  try {
    await harness.setUp();
    crr = await harness.run();
  } finally {
    await harness.tearDown(values.keep === true);
  }
  let baseline: RunResult | { skipped: string };
  if (values["no-baseline"] || !scenario.baseline.nats) baseline = { skipped: "baseline not requested" };
  else {
    const nats = findNatsServer();
    if ("missing" in nats) baseline = { skipped: nats.missing };
    else {
      say(`baseline: ${nats.version} (${nats.path})`);
      try {
        baseline = await runNatsBaseline(scenario, nats.path, say);
      } catch (err) {
        baseline = { skipped: `baseline failed: ${(err as Error).message}` };
      }
    }
  }
  const ratios =
    "skipped" in baseline
      ? undefined
      : {
          "lag p50": crr.lagMs.p50 / baseline.lagMs.p50,
          "lag p99": crr.lagMs.p99 / baseline.lagMs.p99,
          "lag p99.9": crr.lagMs.p999 / baseline.lagMs.p999,
          "throughput (acknowledged/s)": crr.appendedPerS / baseline.appendedPerS,
        };
  const report: BenchReport = {
    at: new Date().toISOString(),
    scenario,
    crr,
    baseline,
    ratios,
    slo: checkSlos(scenario, crr),
  };
  const outDir = typeof values.out === "string" ? values.out : path.join(process.cwd(), "bench", "results");
  const files = await writeReport(report, outDir, `slo-${scenario.name}`);
  say("");
  for (const r of [crr, ...("skipped" in baseline ? [] : [baseline])]) {
    say(
      `${r.system.padEnd(4)}  ${Math.round(r.appendedPerS)}/s acknowledged  lag p50 ${r.lagMs.p50} ms  p99 ${r.lagMs.p99} ms  p99.9 ${r.lagMs.p999} ms  max ${r.lagMs.max} ms  integrity ${r.integrity.ok ? "ok" : "FAILED"}`,
    );
  }
  say(`crr appends: ${crr.mode ?? "per-record"}`);
  for (const l of crr.perRegion ?? [])
    say(
      `  ${l.region.padEnd(12)} offered ${l.offered}  acknowledged ${l.acknowledged}  refused ${l.refused}  failed ${l.failed}  not offered ${l.notOffered}`,
    );
  if ("skipped" in baseline) say(`baseline skipped: ${baseline.skipped}`);
  else if (ratios)
    say(
      `crr / NATS: lag p99 ${ratios["lag p99"]!.toFixed(2)}, throughput ${ratios["throughput (acknowledged/s)"]!.toFixed(2)}`,
    );
  for (const c of report.slo)
    say(`${c.ok ? "met   " : "MISSED"}  ${c.name}: ${c.measured} (target ${c.target})`);
  say(`wrote ${files.json}, ${files.html}${files.png ? `, ${files.png}` : " (no PNG: chromium missing)"}`);
  if (!crr.integrity.ok) {
    say(`INTEGRITY FAILED: ${crr.integrity.detail}`);
    return 1;
  }
  return values.check && report.slo.some((c) => !c.ok) ? 1 : 0;
}
