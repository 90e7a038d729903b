/**
 * The local apply and WAL retention, in process on a real WAL and a real store:
 * - a hole the store has (a failed apply) is filled from the WAL before the next record;
 * - the store's answer is checked: a fresh LSN it already holds is an LSN issued twice, so
 *   the append fails instead of being acknowledged, and the region is told to stop;
 * - retention removes exactly the segments below the lowest LSN the store and every peer
 *   still need (both boundaries), never one a lagging peer still needs.
 */
import path from "node:path";
import { describe, expect, it } from "vitest";
import { silentLogger } from "../../src/log.js";
import { LocalApplier, LsnReuseError } from "../../src/node/local-applier.js";
import { lowestNeededLsn, retain } from "../../src/node/retention.js";
import type { Region } from "../../src/node/region.js";
import { SqliteStore } from "../../src/store/index.js";
import { Wal, type WalRecord } from "../../src/wal/index.js";
import { tempDir } from "../support/tmp.js";

const region = "us-east-1";
const rule = { kind: "first-write-wins" } as const;
const rec = (i: number) => ({
  key: `k${i}`,
  tenant: "t",
  outcome: "accepted",
  body: { i, pad: "p".repeat(40) },
});

async function walOf(n: number, segmentBytesMax = 1 << 20): Promise<Wal> {
  const wal = await Wal.open({ dir: path.join(tempDir(), "wal"), region, segmentBytesMax });
  for (let i = 1; i <= n; i++) await wal.append(rec(i)); // one record per write: many small segments
  return wal;
}

async function recordOf(wal: Wal, lsn: number): Promise<WalRecord> {
  const { decodeFrames } = await import("../../src/wal/index.js");
  const c = (await wal.read(lsn, { bytesMax: 1, recordsMax: 1 }))!;
  return decodeFrames(c.frames, { source: c.segment, firstLsn: lsn })[0]!;
}

describe("the local apply", () => {
  it("fills a hole from the WAL before applying the next record", async () => {
    const wal = await walOf(5);
    const store = new SqliteStore({ path: ":memory:", rule });
    const applier = new LocalApplier(
      store,
      wal,
      region,
      () => undefined,
      () => undefined,
    );
    await applier.apply(await recordOf(wal, 5)); // the store never got 1..4
    expect(store.watermarkSync(region, wal.incarnation)).toBe(5);
    for (let i = 1; i <= 5; i++) expect(store.getSync(`k${i}`)).toMatchObject({ lsn: i });
    await store.close();
    await wal.close();
  });

  it("refuses to acknowledge an LSN the store already holds, and says the region must stop", async () => {
    const wal = await walOf(3);
    const store = new SqliteStore({ path: ":memory:", rule });
    // The store has seen LSNs 1..6 of this incarnation (the WAL lost 4..6).
    const seen = Array.from({ length: 6 }, (_, i) => ({
      ...rec(100 + i),
      bodyJson: "{}",
      lsn: i + 1,
      hlc: { wallMs: 1, logical: i },
      flags: 0,
    }));
    store.applySync({ origin: region, incarnation: wal.incarnation, firstLsn: 1, lastLsn: 6, records: seen });
    const stops: LsnReuseError[] = [];
    const applier = new LocalApplier(
      store,
      wal,
      region,
      () => undefined,
      (e) => stops.push(e),
    );
    const ack = await wal.append(rec(4)); // LSN 4 again
    await expect(applier.apply({ ...(await recordOf(wal, ack.lsn)) })).rejects.toBeInstanceOf(LsnReuseError);
    expect(stops).toHaveLength(1);
    expect(store.getSync("k4")).toBeUndefined();
    await store.close();
    await wal.close();
  });
  it("answers each own record with what its own transaction decided: the peer's version that beat it, or none", async () => {
    const wal = await walOf(0);
    const store = new SqliteStore({ path: ":memory:", rule });
    const applier = new LocalApplier(
      store,
      wal,
      region,
      () => undefined,
      () => undefined,
    );
    // Decided by a peer after this region's dedup check: k1 earlier than ours (first write
    // wins: the peer's), k2 later than ours (ours wins and replaces it).
    const a1 = await wal.append(rec(1));
    const a2 = await wal.append(rec(2));
    const peerVersion = (key: string, lsn: number, wallMs: number) => ({
      ...rec(0),
      key,
      bodyJson: undefined,
      lsn,
      hlc: { wallMs, logical: 0 },
      flags: 0,
    });
    store.applySync({
      origin: "eu-west-1",
      incarnation: "i-peer",
      firstLsn: 1,
      lastLsn: 2,
      records: [peerVersion("k1", 1, a1.hlc.wallMs - 1000), peerVersion("k2", 2, a2.hlc.wallMs + 1000)],
    });
    const [beaten1, beaten2] = await Promise.all([
      applier.apply(await recordOf(wal, a1.lsn)),
      applier.apply(await recordOf(wal, a2.lsn)),
    ]);
    expect(beaten1).toMatchObject({ key: "k1", origin: "eu-west-1", lsn: 1 });
    expect(beaten2).toBeUndefined();
    expect(store.getSync("k1")).toMatchObject({ origin: "eu-west-1" });
    expect(store.getSync("k2")).toMatchObject({ origin: region, lsn: a2.lsn });
    await store.close();
    await wal.close();
  });
});

describe("WAL retention", () => {
  it("needs the lowest of the store's and every peer's next LSN", () => {
    expect(lowestNeededLsn(50, [30, 40])).toBe(31);
    expect(lowestNeededLsn(20, [30, 40])).toBe(21);
    expect(lowestNeededLsn(50, [])).toBe(51);
  });

  it("removes exactly the segments below what a lagging peer still needs", async () => {
    const wal = await walOf(300, 4096);
    const store = new SqliteStore({ path: ":memory:", rule });
    const all = [];
    for (let lsn = 1; lsn <= 300; lsn++) all.push(await recordOf(wal, lsn));
    store.applySync({
      origin: region,
      incarnation: wal.incarnation,
      firstLsn: 1,
      lastLsn: 300,
      records: all,
    });
    const firsts = (await import("node:fs"))
      .readdirSync(wal.dir)
      .filter((n) => n.endsWith(".wal"))
      .map((n) => Number(n.slice(0, 20)))
      .sort((a, b) => a - b);
    expect(firsts.length).toBeGreaterThanOrEqual(4);
    const second = firsts[1]!;
    const third = firsts[2]!;
    const peer = { acked: 0 };
    const fake = {
      name: region,
      wal,
      store,
      shippers: new Map([["eu-west-1", peer]]),
      config: { wal: { bytesMax: 1 << 30 }, regions: {} },
      metrics: { walOverLimit: { set: () => undefined }, retentionRuns: { inc: () => undefined } },
      log: silentLogger(),
    } as unknown as Region;
    // The peer still needs the last LSN of the second segment: the first goes, the second stays.
    peer.acked = third - 2;
    await retain(fake);
    expect(wal.firstLsn).toBe(second);
    // It has everything of the second segment: now the second goes too, the third stays.
    peer.acked = third - 1;
    await retain(fake);
    expect(wal.firstLsn).toBe(third);
    // A peer at 0 holds everything back, whatever the store has.
    const again = await walOf(300, 4096);
    const fake2 = {
      ...fake,
      wal: again,
      shippers: new Map([["eu-west-1", { acked: 0 }]]),
    } as unknown as Region;
    store.applySync({
      origin: region,
      incarnation: again.incarnation,
      firstLsn: 1,
      lastLsn: 300,
      records: all,
    });
    expect(await retain(fake2)).toBe(0);
    expect(again.firstLsn).toBe(1);
    await store.close();
    await wal.close();
    await again.close();
  });
});
