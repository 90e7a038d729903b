/**
 * A region's dedup store restored from an older copy while its node was stopped (the
 * operator's `cp` of store.sqlite put back; the WAL directory kept). The copy keeps its
 * `store_id`, and the peers' shippers had seen it acknowledge more than it now holds: what
 * they had shipped past the copy must come back, though they have nothing new to send
 * (found by review; that their status does not call it caught up meanwhile is
 * test/shipper/peer-shipper.test.ts's). Real `crr serve` processes, checked against the
 * ledger of acknowledged answers.
 */
import fs from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { Cluster, api, status, waitConverged } from "../support/cluster.js";
import { Ledger, expectMatchesLedger } from "../support/ledger.js";
import { tempDir, waitFor } from "../support/tmp.js";

const [A, B] = ["us-east-1", "eu-west-1"];

function copyStore(from: string, to: string): void {
  for (const f of fs.readdirSync(to).filter((n) => n.startsWith("store.sqlite"))) fs.rmSync(path.join(to, f));
  for (const f of fs.readdirSync(from).filter((n) => n.startsWith("store.sqlite")))
    fs.copyFileSync(path.join(from, f), path.join(to, f));
}

describe("a store restored from an older copy", () => {
  it("gets back what the peer had shipped past the copy, though the peer appends nothing new", async () => {
    const cluster = await Cluster.start({ regions: [A, B] });
    const [a, b] = [cluster.node(A), cluster.node(B)];
    const ledger = new Ledger();
    await ledger.appendMany(b, "early", 5, "tenant-a", 1); // B's LSNs 1..5
    await waitConverged([a, b]);

    // The operator's backup: A stopped, its store copied, A started again.
    await cluster.stopNode(A);
    const backup = tempDir("crr-store-backup-");
    copyStore(a.dataDir, backup);
    await cluster.startNode(A);
    await ledger.appendMany(b, "late", 20, "tenant-a", 1); // B's LSNs 6..25
    await waitConverged([a, b]); // A applied and acknowledged all 25

    // B goes idle; A is stopped, its store put back from the copy, and started again.
    await cluster.stopNode(A);
    copyStore(backup, a.dataDir);
    await cluster.startNode(A);
    await waitFor(async () => ((await status(a)).watermarks[B] ?? 0) >= 25, "A holding B's 25 records again");
    expect((await api(`${a.url}/v1/records/late-0`)).status).toBe(200);
    expectMatchesLedger(ledger, [a, b]);
    expect(cluster.logs(B)).toMatch(/peer went back/);
  }, 180_000);

  it("with the WAL lost too, a copy older than the region's first own record refuses the start; accepted, the loss is audited and what the peer holds comes back", async () => {
    const cluster = await Cluster.start({ regions: [A, B] });
    const [a, b] = [cluster.node(A), cluster.node(B)];
    const ledger = new Ledger();
    await ledger.appendMany(b, "peer", 5, "tenant-a", 1); // A's store holds B's records only
    await waitConverged([a, b]);
    await cluster.stopNode(A);
    const backup = tempDir("crr-store-backup-");
    copyStore(a.dataDir, backup);
    await cluster.startNode(A);

    await ledger.appendMany(a, "shipped", 5, "tenant-a", 1); // A's LSNs 1..5, B applies them
    await waitConverged([a, b]);
    await cluster.stopNode(B);
    await ledger.appendMany(a, "unshipped", 5, "tenant-a", 1); // A's LSNs 6..10: in A's WAL alone

    // A's disk is lost; the operator puts the older store copy back, with no WAL.
    await cluster.stopNode(A);
    fs.rmSync(path.join(a.dataDir, "wal"), { recursive: true });
    copyStore(backup, a.dataDir);
    await cluster.startNode(B);
    await expect(cluster.startNode(A)).rejects.toThrow(
      /exited \(1\)[^]*holds no segment, but the store has served this region before/,
    );
    expect(fs.existsSync(path.join(a.dataDir, "wal"))).toBe(false); // nothing was changed

    await cluster.startNode(A, ["--accept-wal-loss"]);
    const audit = fs.readFileSync(path.join(a.dataDir, "audit", "audit-000001.log"), "utf8");
    expect(audit).toMatch(/"kind":"wal-abandoned".*held no segment/);
    // What operators watch shows it too (deploy/prometheus: CRRRecordsGivenUp).
    expect(await (await fetch(`${a.url}/metrics`)).text()).toMatch(
      /^crr_audit_entries_total\{kind="wal-abandoned"\} 1$/m,
    );
    // What B held of A's lost incarnation is A's again; what only the lost WAL held is the
    // loss the operator accepted.
    expectMatchesLedger(ledger, [a, b], (_region, rec) => !rec.key.startsWith("unshipped-"));
    expect((await api(`${a.url}/v1/records/shipped-0`)).status).toBe(200);
  }, 180_000);
});
