/**
 * Regions as separate processes over real HTTP: records appended everywhere reach everyone,
 * and every store ends with the same digest (invariants 2 and 4); a key appended in two
 * regions at once converges to one winner, and both regions record the conflict.
 */
import { describe, expect, it } from "vitest";
import { Cluster, testProxy, api, append, appendMany, status, waitConverged } from "../support/cluster.js";
import { Ledger, expectMatchesLedger } from "../support/ledger.js";
import { waitFor } from "../support/tmp.js";

describe("replication between regions", () => {
  it("two regions: every record reaches the other and digests are equal", async () => {
    const cluster = await Cluster.start({ regions: ["us-east-1", "us-west-2"] });
    const [a, b] = [cluster.node("us-east-1"), cluster.node("us-west-2")];
    const ledger = new Ledger();
    await Promise.all([ledger.appendMany(a, "east", 300), ledger.appendMany(b, "west", 300)]);
    const [ka, kb] = [
      ledger.acked.filter((x) => x.origin === a.name),
      ledger.acked.filter((x) => x.origin === b.name),
    ].map((xs) => xs.map((x) => x.key)) as [string[], string[]];
    const [sa, sb] = await waitConverged([a, b]);
    expectMatchesLedger(ledger, [a, b]);
    expect(sa!.store.records).toBe(600);
    expect(sb!.store.digest).toBe(sa!.store.digest);
    for (const key of [...ka.slice(0, 20), ...kb.slice(0, 20)]) {
      const [ra, rb] = await Promise.all([
        api(`${a.url}/v1/records/${key}`),
        api(`${b.url}/v1/records/${key}`),
      ]);
      expect(ra.status).toBe(200);
      expect(rb.body).toEqual(ra.body);
    }
    expect(sa!.peers[0]).toMatchObject({ peer: "us-west-2", ackedLsn: 300 });
  });

  it("three regions: all converge, and a split-brain key ends with one winner and a recorded conflict in both", async () => {
    // us-east-1 and us-west-2 reach each other through proxies, so the test can split them.
    const toWest = await testProxy({ targetPort: 0 });
    const toEast = await testProxy({ targetPort: 0 });
    const cluster = await Cluster.start({
      regions: ["us-east-1", "us-west-2", "eu-west-1"],
      route: (from, to) =>
        from === "us-east-1" && to === "us-west-2"
          ? toWest
          : from === "us-west-2" && to === "us-east-1"
            ? toEast
            : undefined,
    });
    const nodes = ["us-east-1", "us-west-2", "eu-west-1"].map((n) => cluster.node(n));
    const [a, b, c] = nodes as [(typeof nodes)[0], (typeof nodes)[0], (typeof nodes)[0]];
    toWest.setMode("blackhole");
    toEast.setMode("blackhole");
    // eu-west-1 is down too, so neither side can learn the other's version through it.
    await cluster.stopNode("eu-west-1");
    const ledger = new Ledger();
    const [ra, rb] = await Promise.all([
      ledger.append(a, { key: "pcs-split", tenant: "tenant-a", outcome: "accepted" }),
      ledger.append(b, { key: "pcs-split", tenant: "tenant-a", outcome: "rejected" }),
    ]);
    // Each region accepted its own version: split brain.
    expect(ra.body).toMatchObject({ duplicate: false, origin: "us-east-1", outcome: "accepted" });
    expect(rb.body).toMatchObject({ duplicate: false, origin: "us-west-2", outcome: "rejected" });
    await cluster.startNode("eu-west-1");
    toWest.setMode("forward");
    toEast.setMode("forward");
    await Promise.all(nodes.map((n) => ledger.appendMany(n, n.name, 150)));
    const all = await waitConverged(nodes);
    // Every region holds both split-brain versions (winner and kept loser) and the winner the
    // rule gives from what the clients were told.
    expectMatchesLedger(ledger, nodes);
    expect(new Set(all.map((s) => s.store.records))).toEqual(new Set([451]));
    const winners = await Promise.all(nodes.map((n) => api(`${n.url}/v1/records/pcs-split`)));
    expect(new Set(winners.map((w) => JSON.stringify(w.body))).size).toBe(1);
    // The loser is kept, counted and visible in both split-brain regions (and the third).
    for (const s of all) expect(s.store.conflicts).toBe(1);
    // An append of the decided key now answers the winner as a duplicate, without writing.
    const before = (await status(c)).wal.durableLsn;
    const again = await append(c, { key: "pcs-split", tenant: "tenant-a", outcome: "escalated" });
    expect(again.body).toMatchObject({
      duplicate: true,
      outcome: (winners[0]!.body as { outcome: string }).outcome,
    });
    expect((await status(c)).wal.durableLsn).toBe(before);
  });

  it("regions with different conflict rules refuse to replicate, and say so in status and metrics", async () => {
    const cluster = await Cluster.start({
      regions: ["us-east-1", "eu-west-1"],
      crr: (self, all) => ({
        enabled: true,
        replicationMode: "multi-way",
        peers: all.filter((r) => r !== self),
        conflictRule: self === "us-east-1" ? "first-write-wins" : "last-write-wins",
      }),
    });
    const [a, b] = [cluster.node("us-east-1"), cluster.node("eu-west-1")];
    await appendMany(a, "east", 5);
    await appendMany(b, "west", 5);
    for (const [node, other] of [
      [a, "last-write-wins"],
      [b, "first-write-wins"],
    ] as const) {
      const peer = await waitFor(async () => {
        const p = (await status(node)).peers[0]!;
        return p.state === "failing" && p.lastError?.includes(`merges by '${other}'`) ? p : undefined;
      }, `${node.name} to refuse its peer's rule`);
      expect(peer.lastError).toMatch(/never converge; not replicating/);
      const metrics = await (await fetch(`${node.url}/metrics`)).text();
      expect(metrics).toMatch(/^crr_ship_errors_total\{peer="[a-z0-9-]+",reason="rule_mismatch"\} [1-9]/m);
    }
    expect((await status(a)).store.records).toBe(5);
    expect((await status(b)).store.records).toBe(5);
  });
});
