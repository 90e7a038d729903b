/**
 * Invariant 8 (a tenant never reaches a region its policy excludes), semi-synchronous
 * appends, and a region that lost its disk coming back as a new incarnation.
 */
import fs from "node:fs";
import { describe, expect, it } from "vitest";
import { Cluster, testProxy, api, append, appendMany, status, waitConverged } from "../support/cluster.js";
import { waitFor } from "../support/tmp.js";

describe("replication policies", () => {
  it("selective: each tenant reaches only its target regions, on the wire and in the store; watermarks still advance", async () => {
    const tapWest = await testProxy({ targetPort: 0, tap: true });
    const tapEu = await testProxy({ targetPort: 0, tap: true });
    const cluster = await Cluster.start({
      regions: ["us-east-1", "us-west-2", "eu-west-1"],
      crr: () => ({
        enabled: true,
        replicationMode: "selective",
        policies: [
          { tenantID: "tenant-us", targetRegions: ["us-east-1", "us-west-2"] },
          { tenantID: "tenant-eu", targetRegions: ["us-east-1", "eu-west-1"] },
        ],
      }),
      route: (from, to) =>
        from !== "us-east-1"
          ? undefined
          : to === "us-west-2"
            ? tapWest
            : to === "eu-west-1"
              ? tapEu
              : undefined,
    });
    const [east, west, eu] = ["us-east-1", "us-west-2", "eu-west-1"].map((n) => cluster.node(n)) as [
      ReturnType<Cluster["node"]>,
      ReturnType<Cluster["node"]>,
      ReturnType<Cluster["node"]>,
    ];
    await appendMany(east, "us-rec", 100, "tenant-us");
    await appendMany(east, "eu-rec", 100, "tenant-eu");
    await appendMany(east, "local-only", 20, "tenant-unlisted");
    await waitFor(async () => {
      const [w, e] = await Promise.all([status(west), status(eu)]);
      return (w.watermarks["us-east-1"] === 220 && e.watermarks["us-east-1"] === 220) || undefined;
    }, "both peers' watermarks to pass every LSN");
    expect((await status(west)).store.records).toBe(100);
    expect((await status(eu)).store.records).toBe(100);
    expect((await api(`${west.url}/v1/records/eu-rec-1`)).status).toBe(404);
    expect((await api(`${eu.url}/v1/records/us-rec-1`)).status).toBe(404);
    expect((await api(`${eu.url}/v1/records/eu-rec-1`)).status).toBe(200);
    expect(tapWest.tapped().includes("tenant-eu")).toBe(false);
    expect(tapWest.tapped().includes("tenant-us")).toBe(true);
    expect(tapEu.tapped().includes("tenant-us")).toBe(false);
    expect(tapEu.tapped().includes("tenant-unlisted")).toBe(false);
  });

  it("?wait=N answers once N peers applied the record, or says how many did", async () => {
    const cluster = await Cluster.start({
      regions: ["us-east-1", "us-west-2", "eu-west-1"],
      // Generous: under a loaded machine the first wait must not time out (it did at 1500 ms).
      common: { append: { waitTimeoutMs: 5000 } },
    });
    const [a, b, c] = ["us-east-1", "us-west-2", "eu-west-1"].map((n) => cluster.node(n)) as [
      ReturnType<Cluster["node"]>,
      ReturnType<Cluster["node"]>,
      ReturnType<Cluster["node"]>,
    ];
    const r = await append(a, { key: "semi-1", tenant: "t", outcome: "accepted" }, 2);
    expect(r.status).toBe(200);
    // Already applied in both peers when the answer arrives.
    expect((await api(`${b.url}/v1/records/semi-1`)).status).toBe(200);
    expect((await api(`${c.url}/v1/records/semi-1`)).status).toBe(200);
    await cluster.stopNode("eu-west-1", "SIGKILL");
    await cluster.stopNode("us-west-2", "SIGKILL");
    const timedOut = await append(a, { key: "semi-2", tenant: "t", outcome: "accepted" }, 1);
    expect(timedOut.status).toBe(504);
    expect(timedOut.body).toMatchObject({ code: "wait_timeout", acked: 0, wanted: 1 });
    expect(timedOut.body.message).toMatch(
      /is durable in us-east-1 but only 0 of 1 peers acknowledged it within 5000 ms/,
    );
    // Durable locally all the same; it reaches the peers when they return.
    expect((await api(`${a.url}/v1/records/semi-2`)).status).toBe(200);
    await Promise.all([cluster.startNode("us-west-2"), cluster.startNode("eu-west-1")]);
    await waitConverged([a, b, c]);
  });

  it("a region that lost its disk returns as a new incarnation whose LSNs are not taken for duplicates", async () => {
    const cluster = await Cluster.start({ regions: ["us-east-1", "eu-west-1"] });
    const [a, b] = [cluster.node("us-east-1"), cluster.node("eu-west-1")];
    await appendMany(a, "first-life", 50);
    const [before] = await waitConverged([a, b]);
    await cluster.stopNode("us-east-1", "SIGKILL");
    fs.rmSync(a.dataDir, { recursive: true, force: true });
    await cluster.startNode("us-east-1");
    const reborn = await status(a);
    expect(reborn.incarnation).not.toBe(before!.incarnation);
    expect(reborn.wal.durableLsn).toBe(0);
    await appendMany(a, "second-life", 30); // LSNs 1..30 again, in a new stream
    await waitFor(
      async () => (await status(b)).store.records === 80 || undefined,
      "the new incarnation's records at the peer",
    );
    const streams = (
      await api<{ streams: Array<{ origin: string; incarnation: string; lsn: number }> }>(
        `${b.url}/v1/watermarks`,
      )
    ).body.streams;
    expect(
      streams
        .filter((s) => s.origin === "us-east-1")
        .map((s) => [s.incarnation, s.lsn])
        .sort(),
    ).toEqual(
      [
        [before!.incarnation, 50],
        [reborn.incarnation, 30],
      ].sort(),
    );
    expect((await api(`${b.url}/v1/records/second-life-0`)).body).toMatchObject({
      origin: "us-east-1",
      lsn: expect.any(Number),
    });
  });
});
