/**
 * The reader hands a stream's batches to the store in the order they arrived, even when the
 * store applies asynchronously and a later batch would reach it first (PostgreSQL on several
 * pooled connections: found by the three-regions-10k-postgres benchmark, where every window
 * of pipelined batches ended in a watermark gap and a rewind, and the regions never converged).
 */
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { HybridClock } from "../clock/index.js";
import { silentLogger } from "../log.js";
import { IncarnationTracker } from "../node/incarnations.js";
import type { DecodedBatch } from "../protocol/index.js";
import { SqliteStore, type DedupStore } from "../store/index.js";
import { Reader } from "./reader.js";
import { tempDir } from "../../test/support/tmp.js";

const stores: SqliteStore[] = [];
afterEach(async () => {
  for (const s of stores.splice(0)) await s.close();
});

function batch(firstLsn: number, size: number): DecodedBatch {
  const records = Array.from({ length: size }, (_, i) => ({
    key: `k${firstLsn + i}`,
    tenant: "t",
    outcome: "ok",
    bodyJson: "{}",
    lsn: firstLsn + i,
    hlc: { wallMs: Date.now() - 60_000 + firstLsn + i, logical: 0 },
    flags: 0,
  }));
  const lastLsn = firstLsn + size - 1;
  return {
    origin: "us-east-1",
    incarnation: "c".repeat(32),
    firstLsn,
    lastLsn,
    recordCount: size,
    flags: 0,
    records,
  };
}

describe("a stream's batches reach the store in arrival order", () => {
  it("when the store would start a later batch first", async () => {
    const sqlite = new SqliteStore({
      path: path.join(tempDir(), "store.sqlite"),
      rule: { kind: "first-write-wins" },
    });
    stores.push(sqlite);
    // Each batch's transaction starts after a delay that shrinks with its place: without
    // ordering, the last batch sent locks the watermark first.
    let waiting = 8;
    // A store that applies asynchronously, as PostgreSQL does on its pooled connections.
    const store = Object.create(sqlite) as DedupStore & { appliesInCallOrder: boolean };
    store.appliesInCallOrder = false;
    store.applyBatch = async (b) => {
      await new Promise((r) => setTimeout(r, 5 * waiting--));
      return sqlite.applyBatch(b);
    };
    const reader = new Reader({
      self: "eu-west-1",
      regions: ["us-east-1", "eu-west-1"],
      store,
      clock: new HybridClock(),
      policy: {
        peers: ["us-east-1"],
        filtersTenants: false,
        sendsTo: () => true,
        accepts: () => true,
        peersFor: () => [],
        regionTakes: () => true,
      },
      rule: "first-write-wins/1",
      incarnations: new IncarnationTracker(10_000),
      nowMs: Date.now,
      log: silentLogger(),
    });
    const answers = await Promise.all(
      Array.from({ length: 8 }, (_, i) => reader.replicateArchived(batch(1 + i * 10, 10))),
    );
    expect(answers.map((a) => a.status)).toEqual(Array(8).fill(200));
    expect(answers.at(-1)!.body).toMatchObject({ watermark: 80 });
    expect(await sqlite.watermark("us-east-1", "c".repeat(32))).toBe(80);
  });
});
