/**
 * `crr bench` end to end on a scenario of a few seconds: the run's integrity check passes,
 * the SLO check is written, and the HTML report renders in headless Chromium.
 */
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { chromiumFlags, countAcrossRestarts, findChromium, parseScenario } from "../../src/bench/index.js";
import { repoRoot, runCrr } from "../support/cli.js";
import { tempDir } from "../support/tmp.js";

describe("the lag SLO harness", () => {
  it("runs a scenario through S3 alone (HTTP links refused during the load): every acknowledged record arrives, requests are counted", async () => {
    const out = tempDir();
    const file = path.join(tempDir(), "s3.yaml");
    fs.writeFileSync(
      file,
      [
        "name: s3-short",
        "regions: [us-east-1, eu-west-1]",
        "load: { ratePerRegion: 100, durationSeconds: 3, warmupSeconds: 1 }",
        "s3: { intervalMs: 300, pollMs: 200 }",
        "slo: { lagSecondsMax: 10 }",
        "baseline: { nats: false }",
      ].join("\n"),
    );
    const r = await runCrr(["bench", "--scenario", file, "--out", out, "--check"]);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    const report = JSON.parse(fs.readFileSync(path.join(out, "slo-s3-short.json"), "utf8"));
    expect(report.crr.integrity.ok).toBe(true);
    expect(report.crr.notes.join()).toMatch(/S3 transport .*: [1-9]\d* PUT, [1-9]\d* GET, [1-9]\d* LIST/);
    expect(() =>
      parseScenario(
        {
          name: "x",
          regions: ["a", "b"],
          load: { ratePerRegion: 1, durationSeconds: 1 },
          s3: {},
          drills: [{ kind: "sigkill", region: "a", atSeconds: 1 }],
        },
        "x.yaml",
      ),
    ).toThrow("drills: not with s3");
  });

  it("runs a short scenario with a latency fault and a SIGKILL drill; integrity and SLOs pass; the report renders", async () => {
    const out = tempDir();
    const r = await runCrr([
      "bench",
      "--scenario",
      path.join(repoRoot, "bench/scenarios/smoke.yaml"),
      "--out",
      out,
      "--check",
    ]);
    expect(r.stdout).toMatch(/\[\d+s\] acked \d+/); // progress while running
    expect(r.stdout).toMatch(/drill: sigkill of eu-west-1/);
    expect(r.stdout).toMatch(/integrity ok/);
    expect(r.code).toBe(0);
    const report = JSON.parse(fs.readFileSync(path.join(out, "slo-smoke.json"), "utf8"));
    expect(report.crr.integrity.ok).toBe(true);
    // Checked against what the load generator was told, in the store files themselves.
    expect(report.crr.integrity.detail).toMatch(/all \d+ acknowledged record copies are in the stores/);
    expect(report.crr.acknowledged).toBeGreaterThan(500);
    const slow = report.crr.links.find((l: { from: string }) => l.from === "us-east-1");
    expect(slow.lagMs.p50).toBeGreaterThanOrEqual(15); // the 20 ms (±5) injected latency is seen
    expect(report.crr.drills[0]).toMatchObject({ kind: "sigkill", region: "eu-west-1" });
    // Each region's client is accounted for on its own, and the ledger holds what they were told.
    expect(report.crr.mode).toBe("per-record");
    const loads = report.crr.perRegion as Array<{ offered: number; acknowledged: number }>;
    expect(loads.map((l) => l.acknowledged).reduce((a, b) => a + b, 0)).toBe(report.crr.acknowledged);
    for (const l of loads) expect(l.offered).toBeGreaterThanOrEqual(l.acknowledged);
    expect(report.crr.drills[0].caughtUpMs).toBeGreaterThan(0);
    expect(report.slo.every((c: { ok: boolean }) => c.ok)).toBe(true);

    const chromium = findChromium();
    expect(chromium, "chromium must be installed (.ci/run installs Debian's chromium)").toBeDefined();
    const profile = tempDir();
    const dom = spawnSync(
      chromium!,
      [
        ...chromiumFlags,
        `--user-data-dir=${profile}`,
        "--dump-dom",
        `file://${path.join(out, "slo-smoke.html")}`,
      ],
      { encoding: "utf8", timeout: 60_000 },
    );
    expect(dom.stdout).toContain("crr lag SLO report: smoke");
    expect(dom.stdout).toMatch(/<svg[^>]*>/);
    expect(dom.stdout).toContain("RTO (sigkill eu-west-1)");
    const png = fs.readFileSync(path.join(out, "slo-smoke.png"));
    expect(png.subarray(1, 4).toString()).toBe("PNG");
    expect(png.length).toBeGreaterThan(5000);
  });

  it("counts a node's fsyncs across a restart (its counter starts again at 0)", () => {
    const seen = { earlier: 0, last: 0 };
    expect([40, 90, 3, 10].map((n) => countAcrossRestarts(seen, n))).toEqual([40, 90, 93, 100]);
  });

  it("refuses a scenario with a clear message per problem", async () => {
    expect(() =>
      parseScenario({ name: "x", regions: ["a"], load: { ratePerRegion: 1, durationSeconds: 1 } }, "s.yaml"),
    ).toThrow(/regions: must NOT have fewer than 2 items/);
    expect(() =>
      parseScenario(
        {
          name: "x",
          regions: ["a", "b"],
          load: { ratePerRegion: 1, durationSeconds: 1 },
          links: [{ from: "a", to: "c" }],
          drills: [{ kind: "sigkill", region: "z", atSeconds: 1 }],
        },
        "s.yaml",
      ),
    ).toThrow(/links\[0\]: unknown region 'c'[\s\S]*drills\[0\]: unknown region 'z'/);
    const bad = path.join(tempDir(), "bad.yaml");
    fs.writeFileSync(
      bad,
      "name: x\nregions: [a, b]\nload: { ratePerRegion: 1, durationSeconds: 1, colour: 1 }\n",
    );
    const r = await runCrr(["bench", "--scenario", bad]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(
      /invalid scenario .*bad\.yaml:\n {2}- load: must NOT have additional properties \(colour\)/,
    );
  });
});
