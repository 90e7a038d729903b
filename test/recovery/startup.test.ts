/**
 * Invariant 12: a region that has lost its state answers no append until it knows what the
 * mesh decided (its peers' records and clock), unless an operator starts it alone; and two
 * nodes configured with one region name are told apart, the second refused. Real processes.
 */
import fs from "node:fs";
import path from "node:path";
import YAML from "yaml";
import { describe, expect, it } from "vitest";
import { runCrr } from "../support/cli.js";
import { Cluster, api, status, testSecret, waitConverged } from "../support/cluster.js";
import { Ledger, expectMatchesLedger } from "../support/ledger.js";
import { tempDir } from "../support/tmp.js";

const env = { CRR_PEER_SECRET: testSecret };

describe("a region without state, and two nodes with one name", () => {
  it("a region whose disk was lost copies what the mesh decided and its clock before it answers: old keys are duplicates, new timestamps come after", async () => {
    const cluster = await Cluster.start({ regions: ["us-east-1", "eu-west-1"] });
    const [a, b] = [cluster.node("us-east-1"), cluster.node("eu-west-1")];
    const ledger = new Ledger();
    await ledger.appendMany(a, "decided", 50, "tenant-a", 4);
    await ledger.appendMany(b, "west", 20, "tenant-a", 4);
    await waitConverged([a, b]);
    await cluster.stopNode("us-east-1", "SIGKILL");
    fs.rmSync(a.dataDir, { recursive: true });
    // It comes back with its wall clock 20 s behind: only the peers' clock can keep its
    // timestamps after the ones it acknowledged before.
    await cluster.startNode("us-east-1", [], { CRR_CLOCK_OFFSET_MS: "-20000" });
    for (const acked of ledger.acked.slice(0, 50)) {
      const again = await ledger.append(a, { key: acked.key, tenant: "tenant-a", outcome: "rejected" });
      expect(again.body, acked.key).toMatchObject({
        duplicate: true,
        outcome: acked.outcome,
        lsn: acked.lsn,
      });
    }
    expect((await status(a)).startup).toMatchObject({ state: "admitted" });
    expect(cluster.logs("us-east-1")).toMatch(/bootstrapped from peers/);
    const fresh = await ledger.append(a, { key: "after-loss", tenant: "tenant-a", outcome: "accepted" });
    expect(fresh.body).toMatchObject({ duplicate: false, lsn: 1 });
    const newest = ledger.acked.slice(0, -1).reduce((m, x) => (x.hlc > m ? x.hlc : m), "");
    expect((fresh.body as { hlc: string }).hlc > newest).toBe(true);
    await waitConverged([a, b]);
    expectMatchesLedger(ledger, [a, b]);
  });

  it("refuses to start without state when no peer answers within the bound; --start-alone starts it (audited)", async () => {
    const cluster = await Cluster.start({
      regions: ["us-east-1", "eu-west-1"],
      common: { recovery: { bootstrapWaitMs: 1500 } },
    });
    const a = cluster.node("us-east-1");
    await cluster.stopNode("eu-west-1");
    await cluster.stopNode("us-east-1");
    fs.rmSync(a.dataDir, { recursive: true });
    const refused = await runCrr(["serve", "--config", a.configFile], { env });
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(
      /has no state of its own and none of its peers \(eu-west-1\) answered within 1500 ms/,
    );
    expect(refused.stderr).toMatch(/--start-alone/);
    // The refused attempt left a WAL behind: a plain restart must still know it has no state.
    const again = await runCrr(["serve", "--config", a.configFile], { env });
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/has no state of its own/);
    await cluster.startNode("us-east-1", ["--start-alone"]);
    expect((await api(`${a.url}/readyz`)).status).toBe(200);
    const audit = fs.readFileSync(path.join(a.dataDir, "audit", "audit-000001.log"), "utf8");
    expect(audit).toMatch(/"kind":"start-alone"/);
  });

  it("a second node configured with the same region name is refused while the first is alive", async () => {
    const cluster = await Cluster.start({
      regions: ["us-east-1", "eu-west-1"],
      common: { health: { probeIntervalMs: 300 } },
    });
    const [a, b] = [cluster.node("us-east-1"), cluster.node("eu-west-1")];
    const ledger = new Ledger();
    await ledger.appendMany(a, "first", 10);
    // The same config, another data directory: a second us-east-1.
    const twin = YAML.parse(fs.readFileSync(a.configFile, "utf8")) as Record<string, unknown>;
    twin.dataDir = path.join(tempDir("crr-twin-"), "us-east-1");
    const twinFile = path.join(path.dirname(twin.dataDir as string), "twin.yaml");
    fs.writeFileSync(twinFile, YAML.stringify(twin));
    const refused = await runCrr(["serve", "--config", twinFile], { env });
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/another node is serving region us-east-1 \(incarnation [0-9a-f]{32}/);
    // The first one serves on, and its peer still follows its stream alone.
    await ledger.appendMany(a, "second", 10);
    await waitConverged([a, b]);
    expectMatchesLedger(ledger, [a, b]);
  });
});
