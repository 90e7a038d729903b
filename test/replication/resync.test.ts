/**
 * PeerShipper.resync() (a fellow node of the region left: its stream is now this node's to
 * ship) starts a new session within a window's round trips even while appends keep arriving.
 * Found by review: the session ended only once its window emptied by itself, which steady
 * load never lets happen, so the departed node's stream waited for the load to stop.
 */
import path from "node:path";
import { expect, it } from "vitest";
import type { PeerLink, WatermarksView } from "../../src/link/index.js";
import { silentLogger } from "../../src/log.js";
import { decodeBatch } from "../../src/protocol/index.js";
import { PeerShipper, type OwnRecords } from "../../src/shipper/index.js";
import { TestWal, current, origin, record } from "../support/shipper-peer.js";
import { tempDir, waitFor } from "../support/tmp.js";

/** A peer 30 ms away that applies batches in order. */
class SlowPeer {
  readonly peer = "eu-west-1";
  readonly url = "fake://eu-west-1";
  watermark = 0;
  async replicate(body: Buffer) {
    await new Promise((r) => setTimeout(r, 30));
    const b = decodeBatch(body);
    if (b.lastLsn <= this.watermark) return { kind: "ok" as const, watermark: this.watermark };
    if (b.firstLsn > this.watermark + 1) return { kind: "gap" as const, watermark: this.watermark };
    this.watermark = b.lastLsn;
    return { kind: "ok" as const, watermark: this.watermark };
  }
  async watermarks(): Promise<WatermarksView> {
    return {
      region: this.peer,
      incarnation: "b".repeat(32),
      watermarks: { [origin]: this.watermark },
      streams: [{ origin, incarnation: current, lsn: this.watermark, updatedAtMs: 0 }],
      rule: "first-write-wins",
      formatVersion: 1,
      clock: { wallMs: 0, logical: 0 },
      seen: [],
    } as unknown as WatermarksView;
  }
  async health() {}
  bytes = () => 0;
  async close() {}
}

it("a resync starts a new session while appends keep arriving, and the stream stays whole", async () => {
  const wal = new TestWal();
  const peer = new SlowPeer();
  let sessions = 0;
  // Each session asks for the older streams first: that call counts sessions.
  const own: OwnRecords = { range: async () => [], streams: async () => (sessions++, []) };
  const s = new PeerShipper({
    region: origin,
    link: peer as unknown as PeerLink,
    wal,
    own,
    rule: "first-write-wins",
    formatVersion: 1,
    batchBytesMax: 1 << 20,
    batchRecordsMax: 100,
    lingerMs: 0,
    retryDelayMsMin: 5,
    retryDelayMsMax: 20,
    inflightBatchesMax: 64,
    inflightBytesMax: 16 << 20,
    stateFile: path.join(tempDir(), "peer.json"),
    ackPersistIntervalMs: 50,
    log: silentLogger(),
  });
  s.start();
  const load = setInterval(() => wal.add([record(wal.records.length + 1)]), 5);
  try {
    await waitFor(() => peer.watermark >= 20 || undefined, "shipping to start");
    const before = sessions;
    s.resync();
    await waitFor(() => sessions > before || undefined, "a new session under load", 10_000);
    const during = wal.durableLsn;
    await waitFor(() => peer.watermark > during || undefined, "shipping to go on after it");
  } finally {
    clearInterval(load);
  }
  await waitFor(() => peer.watermark === wal.durableLsn || undefined, "the peer to hold everything");
  await s.stop();
  expect(peer.watermark).toBe(wal.records.length);
});
