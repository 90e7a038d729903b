/**
 * Whether compressing batches pays (shipper.compression): bench/scenarios/wan-bandwidth.yaml
 * (two regions, each link 40 ms one way and limited in bandwidth) run by the `crr bench`
 * harness with compression off and gzip, with record bodies of filler (one repeated character:
 * compression's best case) and random base64 (its worst), the variants rotated in each round.
 * Lag from the origin's acknowledgement to the peer's apply, acknowledged/s, bytes through each
 * link's fault proxy per record (both ways: batches, answers, HTTP headers), and the nodes' CPU
 * per record (coding and decoding is CPU on both sides).
 *
 *   npm run build && npm run bench -- compression [--rounds 2]
 */
import path from "node:path";
import { fileURLToPath } from "node:url";
import { CrrHarness, loadScenario, type RunResult, type Scenario } from "../src/bench/index.js";
import { spread, writeResults, type Spread } from "./report.js";

const here = path.dirname(fileURLToPath(import.meta.url));

type Variant = { body: "filler" | "random"; compression: "none" | "gzip" };
const variants: Variant[] = [
  { body: "filler", compression: "none" },
  { body: "filler", compression: "gzip" },
  { body: "random", compression: "none" },
  { body: "random", compression: "gzip" },
];
const nameOf = (v: Variant) => `${v.body} body, ${v.compression}`;

interface Measured {
  ackedPerS: number;
  lagP50Ms: number;
  lagP99Ms: number;
  wireBytesPerRecord: number;
  cpuUsPerRecord: number;
  integrity: boolean;
}

async function runOnce(base: Scenario, v: Variant, log: (s: string) => void): Promise<Measured> {
  const scenario: Scenario = {
    ...base,
    load: { ...base.load, body: v.body },
    node: {
      ...base.node,
      shipper: { ...(base.node.shipper as Record<string, unknown> | undefined), compression: v.compression },
    },
  };
  const harness = new CrrHarness(scenario, {
    progress: () => undefined,
    crrMain: path.join(here, "..", "dist", "cli", "main.js"),
  });
  let r: RunResult;
  try {
    await harness.setUp();
    r = await harness.run();
  } finally {
    await harness.tearDown(false);
  }
  const wire = r.links.reduce((a, l) => a + (l.wireBytes ?? 0), 0);
  const cpuS = r.resources.reduce((a, x) => a + x.cpuSeconds, 0);
  const m = {
    ackedPerS: r.appendedPerS,
    lagP50Ms: r.lagMs.p50,
    lagP99Ms: r.lagMs.p99,
    wireBytesPerRecord: wire / Math.max(1, r.acknowledged),
    cpuUsPerRecord: (cpuS * 1e6) / Math.max(1, r.acknowledged),
    integrity: r.integrity.ok,
  };
  log(
    `${nameOf(v)}: ${Math.round(m.ackedPerS)}/s, lag p50 ${m.lagP50Ms.toFixed(0)} ms, p99 ${m.lagP99Ms.toFixed(0)} ms, ${m.wireBytesPerRecord.toFixed(0)} B/record on the wire, ${m.cpuUsPerRecord.toFixed(0)} µs CPU/record, integrity ${m.integrity ? "ok" : "FAILED"}`,
  );
  return m;
}

export async function benchCompression(args: { rounds: number }) {
  const log = (s: string) => process.stderr.write(`${s}\n`);
  const base = loadScenario(path.join(here, "scenarios", "wan-bandwidth.yaml"));
  const runs = new Map<string, Measured[]>(variants.map((v) => [nameOf(v), []]));
  for (let round = 0; round < args.rounds; round++)
    for (let k = 0; k < variants.length; k++) {
      const v = variants[(round + k) % variants.length]!;
      runs.get(nameOf(v))!.push(await runOnce(base, v, log));
    }
  const f = (s: Spread, d = 0) => `${s.median.toFixed(d)} (${s.min.toFixed(d)}–${s.max.toFixed(d)})`;
  const of = (name: string, g: (m: Measured) => number) => spread(runs.get(name)!.map(g));
  const link = base.links[0]!;
  const md = [
    `\`bench/scenarios/wan-bandwidth.yaml\`: ${base.regions.length} regions, ${base.load.ratePerRegion}/s of ${base.load.recordBytes}-byte records per region for ${base.load.durationSeconds} s, each link ${link.latencyMs} ms one way and limited to ${link.bandwidthBytesPerSecond} bytes/s; ${args.rounds} rounds, the variants rotated; median (min–max). Wire bytes: through each link's fault proxy, both ways (batches, answers, signed HTTP headers, the divergence checks), per record acknowledged. CPU: both nodes, per record acknowledged.`,
    "",
    "| body, compression | acknowledged/s | lag p50 ms | lag p99 ms | wire bytes per record | CPU µs per record | integrity |",
    "| --- | --- | --- | --- | --- | --- | --- |",
    ...variants.map((v) => {
      const n = nameOf(v);
      const ok = runs.get(n)!.every((m) => m.integrity);
      return `| ${n} | ${f(of(n, (m) => m.ackedPerS))} | ${f(of(n, (m) => m.lagP50Ms))} | ${f(of(n, (m) => m.lagP99Ms))} | ${f(of(n, (m) => m.wireBytesPerRecord))} | ${f(of(n, (m) => m.cpuUsPerRecord))} | ${ok ? "ok" : "FAILED"} |`;
    }),
  ].join("\n");
  writeResults("compression", { ...args, runs: Object.fromEntries(runs) }, md);
  log(md);
}
