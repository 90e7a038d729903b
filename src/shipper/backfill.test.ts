/**
 * Older incarnations of ours, shipped from the store: up to our watermark for each (holes
 * there are lost, skipped and audited), then what the store holds past it without a hole.
 */
import { describe, expect, it } from "vitest";
import { createLogger } from "../log.js";
import type { WatermarksView } from "../link/index.js";
import type { WalChunk, WalRecord } from "../wal/index.js";
import { shipOlderStreams, type BackfillContext } from "./backfill.js";

const old = "0".repeat(32);
const current = "c".repeat(32);

function rec(lsn: number): WalRecord {
  const hlc = { wallMs: 1_000 + lsn, logical: 0 };
  return { key: `k${lsn}`, tenant: "t", outcome: "approve", bodyJson: undefined, lsn, hlc, flags: 0 };
}

/** A context whose store holds `held` of the old stream with our watermark `ours`; the peer holds it to `peers`. */
function context(held: number[], ours: number, peers: number) {
  const sent: Array<{ firstLsn: number; lastLsn: number; flags: number }> = [];
  const lost: Array<[number, number]> = [];
  const view = {
    streams: [{ origin: "r2", incarnation: old, lsn: peers, updatedAtMs: 0 }],
  } as unknown as WatermarksView;
  const c: BackfillContext = {
    region: "r2",
    wal: { incarnation: current } as BackfillContext["wal"],
    own: {
      streams: async () => [
        { incarnation: old, lsn: ours },
        { incarnation: current, lsn: 5 },
      ],
      range: async (incarnation, from, to, limit) =>
        incarnation === old
          ? held
              .filter((l) => l >= from && l <= to)
              .slice(0, limit)
              .map(rec)
          : [],
    },
    view,
    batchBytesMax: 1 << 20,
    batchRecordsMax: 2,
    log: createLogger({ level: "silent" }),
    send: async (chunk: WalChunk, flags: number) =>
      void sent.push({ firstLsn: chunk.firstLsn, lastLsn: chunk.lastLsn, flags }),
    aborted: () => false,
    skipThrough: 0,
    reportLost: async (_incarnation, ranges) => void lost.push(...ranges),
  };
  return { c, sent, lost };
}

describe("shipOlderStreams", () => {
  it("ships what the store holds past its own watermark, without a hole (simulator seed 709)", async () => {
    // Our watermark for the old stream stayed at 22; 23 and 24 were copied back from a peer later.
    const { c, sent, lost } = context([20, 21, 22, 23, 24], 22, 22);
    await shipOlderStreams(c);
    expect(sent.map((s) => [s.firstLsn, s.lastLsn, s.flags])).toEqual([[23, 24, 0]]);
    expect(lost).toEqual([]);
  });

  it("stops at the first hole past the watermark: only LSNs up to it may be declared lost", async () => {
    const { c, sent, lost } = context([18, 20, 23, 25, 26], 20, 17);
    await shipOlderStreams(c);
    expect(sent.map((s) => [s.firstLsn, s.lastLsn, s.flags])).toEqual([
      [18, 18, 0],
      [19, 19, 1], // a skip batch: 19 is held by nobody here (audited as lost)
      [20, 20, 0],
    ]);
    expect(lost).toEqual([[19, 19]]);
    const beyond = context([18, 19, 20, 21, 22, 23, 25], 20, 20);
    await shipOlderStreams(beyond.c);
    expect(beyond.sent.map((s) => [s.firstLsn, s.lastLsn])).toEqual([
      [21, 22],
      [23, 23],
    ]);
    expect(beyond.lost).toEqual([]);
  });
});
