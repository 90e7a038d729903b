/**
 * A region's dedup store restored from an older copy while its node was stopped (the
 * operator's `cp` of store.sqlite put back; the WAL directory kept). The copy keeps its
 * `store_id`, and the peers' shippers had seen it acknowledge more than it now holds: what
 * they had shipped past the copy must come back, though they have nothing new to send, and
 * their status must not call it caught up meanwhile (found by review). Real `crr serve`
 * processes, checked against the ledger of acknowledged answers.
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
});
