/**
 * shipper.compression "gzip" between two `crr serve` processes over real HTTP: every record
 * each region acknowledged reaches the other with the exact content its client sent (the
 * ledger), and the batches went over the wire coded, smaller than they are
 * (`crr_shipped_bytes_total`, form "wire" against form "batch").
 */
import { describe, expect, it } from "vitest";
import { Cluster, waitConverged, type TestNode } from "../support/cluster.js";
import { Ledger, expectMatchesLedger } from "../support/ledger.js";

async function shipped(node: TestNode, form: "batch" | "wire"): Promise<number> {
  const text = await (await fetch(`${node.url}/metrics`)).text();
  const line = text
    .split("\n")
    .find((l) => l.startsWith("crr_shipped_bytes_total{") && l.includes(`form="${form}"`));
  return line === undefined ? 0 : Number(line.split(" ").at(-1));
}

describe("compressed replication", () => {
  it("carries every acknowledged record exactly, in fewer bytes on the wire than the batches hold", async () => {
    const cluster = await Cluster.start({
      regions: ["us-east-1", "us-west-2"],
      common: { shipper: { compression: "gzip", compressionBytesMin: 256 } },
    });
    const [a, b] = [cluster.node("us-east-1"), cluster.node("us-west-2")];
    const ledger = new Ledger();
    await Promise.all([ledger.appendMany(a, "east", 400), ledger.appendMany(b, "west", 400)]);
    await waitConverged([a, b]);
    expectMatchesLedger(ledger, [a, b]);
    for (const node of [a, b]) {
      const [batch, wire] = [await shipped(node, "batch"), await shipped(node, "wire")];
      expect(batch).toBeGreaterThan(0);
      // The first window goes plain (the peer names gzip in its answers); the rest is coded.
      expect(wire).toBeLessThan(batch * 0.8);
    }
    await cluster.stop();
  });
});
