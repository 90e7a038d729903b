/**
 * Older incarnations of ours, shipped from the store: up to our watermark for each (holes
 * there are lost, skipped and audited), then what the store holds past it without a hole.
 */
import { describe, expect, it } from "vitest";
import { createLogger } from "../log.js";
import type { WatermarksView } from "../link/index.js";
import { WalLsnUnavailableError } from "../errors.js";
import { BATCH_FLAG_BACKFILL } from "../protocol/index.js";
import { checkFrame, encodeFrames, type WalChunk, type WalRecord } from "../wal/index.js";
import { backfillTenants, shipOlderStreams, type BackfillContext } from "./backfill.js";

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

describe("shipOlderStreams, page by page", () => {
  it("ships a stream longer than a batch in pieces, each hole (the stream's last LSN too) a skip audited as lost", async () => {
    // Batches of 2 records; the store holds 1, 2, 3, 5, 6 of a stream that went to 7.
    const { c, sent, lost } = context([1, 2, 3, 5, 6], 7, 0);
    await shipOlderStreams(c);
    expect(sent.map((s) => [s.firstLsn, s.lastLsn, s.flags])).toEqual([
      [1, 2, 0],
      [3, 3, 0],
      [4, 4, 1],
      [5, 5, 0],
      [6, 6, 0],
      [7, 7, 1],
    ]);
    expect(lost).toEqual([
      [4, 4],
      [7, 7],
    ]);
  });

  it("a hole at the stream's last LSN right after a full page is lost and skipped too", async () => {
    const { c, sent, lost } = context([1, 2, 3, 4], 5, 0);
    await shipOlderStreams(c);
    expect(sent.map((s) => [s.firstLsn, s.lastLsn, s.flags])).toEqual([
      [1, 2, 0],
      [3, 4, 0],
      [5, 5, 1],
    ]);
    expect(lost).toEqual([[5, 5]]);
  });

  it("audits nothing, not even an empty entry, for a stream without a hole", async () => {
    const { c, sent } = context([1, 2, 3], 3, 0);
    let audits = 0;
    c.reportLost = async () => void audits++;
    await shipOlderStreams(c);
    expect(sent.map((s) => [s.firstLsn, s.lastLsn])).toEqual([
      [1, 2],
      [3, 3],
    ]);
    expect(audits).toBe(0);
  });
});

describe("backfillTenants (a widened policy)", () => {
  const tenantOf = (lsn: number) => (lsn % 2 === 0 ? "a" : "b");
  const r = (lsn: number) => ({ ...rec(lsn), tenant: tenantOf(lsn) });
  /** Our old stream held 1..oldLsn, the current one 1..8 in the WAL from `walFirst` (the store holds `currentHeld`); the peer is at `peerOld`/`peerCurrent`. */
  function widened(o: {
    peerOld: number;
    peerCurrent: number;
    walFirst?: number;
    currentHeld?: number[];
    skipThrough?: number;
  }) {
    const sent: Array<{
      incarnation: string;
      lsns: number[];
      flags: number;
      firstLsn: number;
      lastLsn: number;
    }> = [];
    const view = {
      streams: [
        { origin: "r2", incarnation: old, lsn: o.peerOld, updatedAtMs: 0 },
        { origin: "r2", incarnation: current, lsn: o.peerCurrent, updatedAtMs: 0 },
        { origin: "r9", incarnation: old, lsn: 99, updatedAtMs: 0 },
      ],
    } as unknown as WatermarksView;
    const walFirst = o.walFirst ?? 1;
    const currentHeld = o.currentHeld ?? [1, 2, 3, 4, 5, 6, 7, 8];
    const c: BackfillContext = {
      region: "r2",
      wal: {
        incarnation: current,
        firstLsn: walFirst,
        durableLsn: 8,
        read: async (from: number, limits: { recordsMax: number }) => {
          if (from < walFirst) throw new WalLsnUnavailableError(from, walFirst);
          const rs = Array.from({ length: Math.min(limits.recordsMax, 8 - from + 1) }, (_, i) => r(from + i));
          return rs.length === 0
            ? undefined
            : {
                origin: "r2",
                incarnation: current,
                firstLsn: from,
                lastLsn: rs.at(-1)!.lsn,
                frames: encodeFrames(rs),
                segment: "wal",
                offset: 0,
              };
        },
        waitForDurable: async () => 8,
        segmentRange: () => ({ firstLsn: 1, lastLsn: 8 }),
      },
      own: {
        streams: async () => [
          { incarnation: old, lsn: 6 },
          { incarnation: current, lsn: 8 },
        ],
        range: async (incarnation, from, to, limit) =>
          (incarnation === old ? [1, 2, 3, 4, 5, 6] : currentHeld)
            .filter((l) => l >= from && l <= to)
            .slice(0, limit)
            .map(r),
      },
      view,
      batchBytesMax: 1 << 20,
      batchRecordsMax: 3,
      log: createLogger({ level: "silent" }),
      send: async (chunk: WalChunk, flags: number) => {
        const lsns: number[] = [];
        for (let p = 0; p < chunk.frames.length;) {
          const f = checkFrame(chunk.frames, p);
          if (f.kind !== "ok") throw new Error("bad frame");
          lsns.push(f.lsn);
          p = f.end;
        }
        sent.push({
          incarnation: chunk.incarnation,
          lsns,
          flags,
          firstLsn: chunk.firstLsn,
          lastLsn: chunk.lastLsn,
        });
      },
      aborted: () => false,
      skipThrough: o.skipThrough ?? 0,
      reportLost: async () => undefined,
    };
    return { c, sent };
  }
  const onlyA = (t: string) => t === "a";

  it("sends, as backfill batches, the records of the new tenants below what the peer held of each stream, and nothing above", async () => {
    const { c, sent } = widened({ peerOld: 4, peerCurrent: 5 });
    await backfillTenants(c, onlyA);
    expect(sent.every((s) => s.flags === BATCH_FLAG_BACKFILL)).toBe(true);
    expect(sent.filter((s) => s.incarnation === old).flatMap((s) => s.lsns)).toEqual([2, 4]);
    expect(sent.filter((s) => s.incarnation === current).flatMap((s) => s.lsns)).toEqual([2, 4]);
    // No batch of nothing: 1..3 holds one "a", 4..5 one.
    expect(sent.every((s) => s.lsns.length > 0)).toBe(true);
  });

  it("a stream the peer holds nothing of is left to plain shipping", async () => {
    const { c, sent } = widened({ peerOld: 0, peerCurrent: 0 });
    await backfillTenants(c, onlyA);
    expect(sent).toEqual([]);
  });

  it("the current stream from the store where the WAL no longer holds it", async () => {
    const { c, sent } = widened({ peerOld: 0, peerCurrent: 8, walFirst: 5 });
    await backfillTenants(c, onlyA);
    expect(sent.flatMap((s) => s.lsns)).toEqual([2, 4, 6, 8]);
  });

  it("a record neither the WAL nor the store holds stops the backfill, unless the operator allowed skipping it", async () => {
    const gap = widened({ peerOld: 0, peerCurrent: 8, walFirst: 5, currentHeld: [1, 3, 4] });
    await expect(backfillTenants(gap.c, onlyA)).rejects.toMatchObject({ fromLsn: 2, toLsn: 2 });
    expect(gap.sent).toEqual([]); // 1 is "b": nothing sent before the gap
    const allowed = widened({
      peerOld: 0,
      peerCurrent: 8,
      walFirst: 5,
      currentHeld: [1, 3, 4],
      skipThrough: 2,
    });
    await backfillTenants(allowed.c, onlyA);
    expect(allowed.sent.flatMap((s) => s.lsns)).toEqual([4, 6, 8]);
  });
});
