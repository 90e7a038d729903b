/**
 * Invariant 10: an LSN anyone has seen (the store, a peer, a client) is never issued again,
 * and recovery cuts only bytes nobody acknowledged. Real `crr serve` processes, bytes flipped
 * on disk, data directories restored from old copies; every region is checked against the
 * ledger of what clients were told.
 */
import fs from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { runCrr } from "../support/cli.js";
import { Cluster, api, status, waitConverged } from "../support/cluster.js";
import { Ledger, expectMatchesLedger } from "../support/ledger.js";
import { tempDir } from "../support/tmp.js";
import { flipBitIn, newestSegment, sha256 } from "../support/wal-bytes.js";

const regions = ["us-east-1", "eu-west-1"];

describe("recovery weighs the evidence of what was acknowledged", () => {
  it("a flipped bit in an acknowledged record near the end of the newest segment is restored from the store, never cut, and no LSN is reissued", async () => {
    const cluster = await Cluster.start({ regions });
    const [a, b] = [cluster.node("us-east-1"), cluster.node("eu-west-1")];
    const ledger = new Ledger();
    await ledger.appendMany(a, "k", 65, "tenant-a", 1); // LSNs 1..65, in key order
    await waitConverged([a, b]);
    await cluster.stopNode("eu-west-1"); // the store alone must be enough
    await cluster.stopNode("us-east-1");
    const segment = newestSegment(path.join(a.dataDir, "wal"));
    flipBitIn(segment, 58);

    await cluster.startNode("us-east-1");
    expect(cluster.logs("us-east-1")).toMatch(/WAL recovery restored acknowledged records/);
    expect(cluster.logs("us-east-1")).not.toMatch(/cut a torn tail/);
    const restored = await api<{ outcome: string; lsn: number }>(`${a.url}/v1/records/k-57`);
    expect(restored.body).toMatchObject({ lsn: 58, outcome: ledger.acked[57]!.outcome });
    const next = await ledger.append(a, { key: "after", tenant: "tenant-a", outcome: "accepted" });
    expect(next.body).toMatchObject({ lsn: 66, duplicate: false });
    expect((await api(`${a.url}/v1/records/after`)).status).toBe(200);
    const inspect = await runCrr(["wal", "inspect", path.join(a.dataDir, "wal")]);
    expect(inspect.code, inspect.stdout).toBe(0);

    await cluster.startNode("eu-west-1");
    await waitConverged([a, b]);
    expectMatchesLedger(ledger, [a, b]);
  });

  it("damage nothing can restore: refuses to start naming file, offset and LSNs, changes nothing; restores once a peer can vouch", async () => {
    const cluster = await Cluster.start({ regions });
    const [a, b] = [cluster.node("us-east-1"), cluster.node("eu-west-1")];
    const ledger = new Ledger();
    await ledger.appendMany(a, "k", 65, "tenant-a", 1);
    await waitConverged([a, b]);
    // Wait until us-east-1 has saved eu-west-1's acknowledgement: evidence on its own disk.
    const ackFile = path.join(a.dataDir, "shipper", "eu-west-1.json");
    await expect
      .poll(() => fs.existsSync(ackFile) && JSON.parse(fs.readFileSync(ackFile, "utf8")).acked)
      .toBe(65);
    await cluster.stopNode("eu-west-1");
    await cluster.stopNode("us-east-1");
    const segment = newestSegment(path.join(a.dataDir, "wal"));
    const offset = flipBitIn(segment, 58);
    for (const f of fs.readdirSync(a.dataDir).filter((n) => n.startsWith("store.sqlite")))
      fs.rmSync(path.join(a.dataDir, f)); // the store is gone too
    const before = sha256(segment);

    const refused = await runCrr(["serve", "--config", a.configFile], {
      env: { CRR_PEER_SECRET: "test-peer-secret-0123456789" },
    });
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(
      new RegExp(`${path.basename(segment)} at offset \\d+: LSNs 58\\.\\.58 were acknowledged`),
    );
    expect(refused.stderr).toMatch(/held by nothing recovery could ask/);
    expect(refused.stderr).toMatch(/--accept-wal-loss/);
    expect(Number(/at offset (\d+)/.exec(refused.stderr)![1])).toBeLessThanOrEqual(offset);
    expect(sha256(segment)).toBe(before); // nothing was cut

    await cluster.startNode("eu-west-1");
    await cluster.startNode("us-east-1"); // now a peer holds LSN 58
    expect(cluster.logs("us-east-1")).toMatch(/WAL recovery restored acknowledged records/);
    await waitConverged([a, b]);
    expectMatchesLedger(ledger, [a, b]);
  });

  it("a data directory restored from an old copy does not reuse LSNs the peers hold: it restores them from the peers", async () => {
    const cluster = await Cluster.start({ regions });
    const [a, b] = [cluster.node("us-east-1"), cluster.node("eu-west-1")];
    const ledger = new Ledger();
    await ledger.appendMany(a, "old", 30, "tenant-a", 4);
    await waitConverged([a, b]);
    await cluster.stopNode("us-east-1");
    const backup = path.join(tempDir("crr-backup-"), "us-east-1");
    fs.cpSync(a.dataDir, backup, { recursive: true });
    await cluster.startNode("us-east-1");
    await ledger.appendMany(a, "new", 30, "tenant-a", 4); // LSNs 31..60
    await waitConverged([a, b]);
    await cluster.stopNode("us-east-1");
    fs.rmSync(a.dataDir, { recursive: true });
    fs.cpSync(backup, a.dataDir, { recursive: true }); // WAL and store as they were at LSN 30

    await cluster.startNode("us-east-1");
    expect((await status(a)).wal.durableLsn).toBe(60);
    const next = await ledger.append(a, { key: "fresh", tenant: "tenant-a", outcome: "accepted" });
    expect(next.body).toMatchObject({ lsn: 61, duplicate: false });
    await waitConverged([a, b]);
    expectMatchesLedger(ledger, [a, b]);
  });
});
