/**
 * A node sharing its store ships only what the store holds: reads stop at the applied LSN,
 * and a shipper waiting for more wakes when an apply lands, not when the WAL alone grows.
 */
import { describe, expect, it } from "vitest";
import type { ShipperWal } from "../shipper/index.js";
import type { WalChunk } from "../wal/index.js";
import { appliedOnly, shippedWal } from "./applied-wal.js";
import { LocalApplier } from "./local-applier.js";

function fakeWal(durable: number): ShipperWal & { reads: Array<{ from: number; recordsMax: number }> } {
  const reads: Array<{ from: number; recordsMax: number }> = [];
  return {
    reads,
    incarnation: "c".repeat(32),
    firstLsn: 1,
    durableLsn: durable,
    read: async (from, limits) => (
      reads.push({ from, recordsMax: limits.recordsMax }),
      { firstLsn: from } as WalChunk
    ),
    // The WAL grows no further here; like the real one, a wait ends with its signal.
    waitForDurable: (_after, signal) =>
      new Promise((_resolve, reject) =>
        signal?.addEventListener("abort", () => reject(signal.reason as Error)),
      ),
    segmentRange: () => ({ firstLsn: 1, lastLsn: durable }),
  };
}

/** A local applier with nothing behind it: only its applied mark is used here. */
function bareApplier(): LocalApplier {
  return new LocalApplier(
    {} as never,
    {} as never,
    "us-east-1",
    () => undefined,
    () => undefined,
  );
}

describe("appliedOnly", () => {
  it("caps reads and the durable mark at what the store holds, and wakes on an apply", async () => {
    const wal = fakeWal(10);
    const applier = bareApplier();
    const view = appliedOnly(wal, applier);
    expect(view.durableLsn).toBe(0); // nothing known applied yet: nothing shipped
    expect(await view.read(1, { bytesMax: 1 << 20, recordsMax: 100 })).toBeUndefined();
    applier.noteApplied(4);
    expect(view.durableLsn).toBe(4);
    await view.read(2, { bytesMax: 1 << 20, recordsMax: 100 });
    expect(wal.reads).toEqual([{ from: 2, recordsMax: 3 }]); // LSNs 2..4 only
    const waiting = view.waitForDurable(4);
    applier.noteApplied(7);
    expect(await waiting).toBe(7);
    applier.noteApplied(50);
    expect(view.durableLsn).toBe(10); // never beyond the WAL
    const ac = new AbortController();
    const stopped = view.waitForDurable(10, ac.signal);
    ac.abort(new Error("shipper stopped"));
    await expect(stopped).rejects.toThrow(/shipper stopped/);
  });
});

describe("shippedWal (what a node's shippers read)", () => {
  it("is the applied-only view for a node sharing its store, the WAL itself otherwise", () => {
    const wal = fakeWal(10);
    const applier = bareApplier();
    applier.noteApplied(3);
    const shared = { shared: {} };
    expect(shippedWal({ store: shared, nodeId: "n1", wal, applier }).durableLsn).toBe(3);
    expect(shippedWal({ store: { shared: undefined }, nodeId: undefined, wal, applier })).toBe(wal);
    // Without a node id the node is its region's only one, whatever the store: it ships what is durable.
    expect(shippedWal({ store: shared, nodeId: undefined, wal, applier })).toBe(wal);
  });
});
