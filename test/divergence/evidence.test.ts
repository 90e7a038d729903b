/**
 * Divergence hidden or spread (invariant 7 and reconcile's evidence rule), against real
 * processes: reconcile never copies a hand edit onto a healthy region, even when the origin's
 * WAL no longer holds the record, and reports a key nobody can vouch for as undecided; a
 * difference whose origin is gone does not stay "in flight" forever.
 */
import fs from "node:fs";
import path from "node:path";
import Database from "better-sqlite3";
import { describe, expect, it } from "vitest";
import { runCrr } from "../support/cli.js";
import { Cluster, api, status, testProxy, testSecret, waitConverged } from "../support/cluster.js";
import { Ledger, expectMatchesLedger } from "../support/ledger.js";
import { waitFor } from "../support/tmp.js";

const env = { CRR_PEER_SECRET: testSecret };
const fast = { divergence: { intervalMs: 300, scrubIntervalMs: 200, scrubBucketsPerTick: 65536 } };
const retention = { wal: { segmentBytesMax: 4096, retentionIntervalMs: 100 } };

function handEdit(dataDir: string, key: string, outcome: string): void {
  const db = new Database(path.join(dataDir, "store.sqlite"));
  db.prepare("UPDATE records SET outcome = ? WHERE key = ?").run(outcome, key);
  db.close();
}

describe("reconcile takes truth from evidence only", () => {
  it("a hand edit reconciled from the region that holds it is repaired there, never copied to the healthy one, though the origin's WAL no longer has it", async () => {
    const cluster = await Cluster.start({
      regions: ["us-east-1", "eu-west-1"],
      common: { ...fast, ...retention },
    });
    const [a, b] = [cluster.node("us-east-1"), cluster.node("eu-west-1")];
    const ledger = new Ledger();
    await ledger.appendMany(a, "k", 120, "tenant-a", 1);
    await waitConverged([a, b]);
    await waitFor(
      async () => (await status(a)).wal.firstLsn > 10 || undefined,
      "retention to drop the oldest segment",
    );
    handEdit(b.dataDir, "k-3", "tampered"); // LSN 4: no longer in us-east-1's WAL

    const reconciled = await runCrr(["reconcile", "--config", b.configFile, "--apply"], { env });
    expect(reconciled.stdout).toMatch(
      /k-3: winner '\w+' \(us-east-1 LSN 4, an intact stored copy\); writing to eu-west-1/,
    );
    expect(reconciled.code, reconciled.stdout).toBe(0);
    expect((await api<{ outcome: string }>(`${a.url}/v1/records/k-3`)).body.outcome).toBe(
      ledger.acked[3]!.outcome,
    );
    expect((await api<{ outcome: string }>(`${b.url}/v1/records/k-3`)).body.outcome).toBe(
      ledger.acked[3]!.outcome,
    );
    expectMatchesLedger(ledger, [a, b]);
  });

  it("a key with no version anyone can vouch for is UNDECIDED and nothing is written", async () => {
    const cluster = await Cluster.start({
      regions: ["us-east-1", "eu-west-1"],
      common: { ...fast, ...retention },
    });
    const [a, b] = [cluster.node("us-east-1"), cluster.node("eu-west-1")];
    const ledger = new Ledger();
    await ledger.appendMany(a, "k", 120, "tenant-a", 1);
    await waitConverged([a, b]);
    await waitFor(async () => (await status(a)).wal.firstLsn > 10 || undefined, "retention");
    handEdit(a.dataDir, "k-3", "edited-in-east");
    handEdit(b.dataDir, "k-3", "edited-in-west");

    const r = await runCrr(["reconcile", "--config", b.configFile, "--apply"], { env });
    expect(r.stdout).toMatch(/k-3: UNDECIDED \(no evidence for us-east-1 LSN 4/);
    expect(r.code).toBe(1);
    expect((await api<{ outcome: string }>(`${a.url}/v1/records/k-3`)).body.outcome).toBe("edited-in-east");
    expect((await api<{ outcome: string }>(`${b.url}/v1/records/k-3`)).body.outcome).toBe("edited-in-west");
  });
});

describe("in flight has a bound", () => {
  it("a record its origin shipped to one peer but not the other, before the origin went away for good, is reported missing once older than the bound", async () => {
    const toEu = await testProxy({ targetPort: 0 });
    const cluster = await Cluster.start({
      regions: ["us-east-1", "us-west-2", "eu-west-1"],
      route: (from, to) => (from === "us-east-1" && to === "eu-west-1" ? toEu : undefined),
      common: { divergence: { ...fast.divergence, inFlightMsMax: 1500 } },
    });
    const [a, b, c] = ["us-east-1", "us-west-2", "eu-west-1"].map((n) => cluster.node(n)) as [
      ReturnType<Cluster["node"]>,
      ReturnType<Cluster["node"]>,
      ReturnType<Cluster["node"]>,
    ];
    toEu.setMode("blackhole");
    const r = await api(`${a.url}/v1/records`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ key: "orphan", tenant: "tenant-a", outcome: "accepted" }),
    });
    expect(r.status).toBe(200);
    await waitFor(
      async () => (await api(`${b.url}/v1/records/orphan`)).status === 200 || undefined,
      "us-west-2 to get it",
    );
    await cluster.stopNode("us-east-1", "SIGKILL"); // gone for good, disk and all
    fs.rmSync(a.dataDir, { recursive: true });
    const found = await waitFor(async () => {
      const v = await runCrr(["verify", "--config", b.configFile], { env });
      return v.code === 1 ? v : undefined;
    }, "the difference to be reported");
    expect(found.stdout).toMatch(/MISSING {3}orphan: eu-west-1 lacks 'accepted' \(us-east-1 LSN 1\)/);
    expect((await status(c)).watermarks["us-east-1"] ?? 0).toBe(0);
  });
});
