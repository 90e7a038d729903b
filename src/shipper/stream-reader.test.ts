/**
 * How a shipper reads its own stream: from the WAL while it holds the LSNs, from the store
 * where retention removed them or a sealed segment fails its checksum (never past what the
 * WAL or the store can vouch for), a range neither holds is a StreamGapError naming the hole,
 * and batches are cut and filtered frame by frame.
 */
import { describe, expect, it } from "vitest";
import { SegmentCorruptError, WalLsnUnavailableError } from "../errors.js";
import { checkFrame, encodeFrames, type WalChunk, type WalRecord } from "../wal/index.js";
import {
  StreamGapError,
  filterChunk,
  readFromStore,
  readOwnStream,
  skipChunk,
  within,
  type OwnRecords,
  type ShipperWal,
} from "./stream-reader.js";

const incarnation = "c".repeat(32);
const origin = "us-east-1";

function record(lsn: number, tenant = "t", body = `{"n":${lsn}}`): WalRecord {
  return {
    key: `k${lsn}`,
    tenant,
    outcome: "ok",
    bodyJson: body,
    lsn,
    hlc: { wallMs: 1000 + lsn, logical: 0 },
    flags: 0,
  };
}

/** The store's own records: `held` LSNs (the ranges it is asked record their calls). */
function ownHolding(held: number[]): OwnRecords & { asked: Array<[number, number, number]> } {
  const asked: Array<[number, number, number]> = [];
  return {
    asked,
    range: async (_inc, from, to, limit) => {
      asked.push([from, to, limit]);
      return held
        .filter((l) => l >= from && l <= to)
        .slice(0, limit)
        .map((l) => record(l));
    },
    streams: async () => [],
  };
}

/** A WAL of LSNs 1..durable whose reads fail with `fails` (when set). */
function walFailing(durable: number, fails?: Error, segment = { firstLsn: 1, lastLsn: durable }): ShipperWal {
  return {
    incarnation,
    firstLsn: 1,
    durableLsn: durable,
    read: async (from, limits) => {
      if (fails) throw fails;
      const rs = Array.from({ length: Math.min(limits.recordsMax, durable - from + 1) }, (_, i) =>
        record(from + i),
      );
      return {
        origin,
        incarnation,
        firstLsn: from,
        lastLsn: rs.at(-1)!.lsn,
        frames: encodeFrames(rs),
        segment: "wal",
        offset: 0,
      };
    },
    waitForDurable: async () => durable,
    segmentRange: () => segment,
  };
}

/** The LSNs of a chunk's frames, in order (a filtered chunk's need not be consecutive). */
function lsnsOf(c: WalChunk): number[] {
  const out: number[] = [];
  for (let p = 0; p < c.frames.length;) {
    const f = checkFrame(c.frames, p);
    if (f.kind !== "ok") throw new Error(`bad frame at ${p}`);
    out.push(f.lsn);
    p = f.end;
  }
  return out;
}
const limits = { bytesMax: 1 << 20, recordsMax: 100 };

describe("readOwnStream", () => {
  it("reads the WAL while it holds the LSNs, and never falls back then", async () => {
    const fallbacks: Error[] = [];
    const own = ownHolding([1, 2, 3]);
    const c = await readOwnStream(walFailing(5), own, origin, 2, limits, (e) => fallbacks.push(e));
    expect(lsnsOf(c!)).toEqual([2, 3, 4, 5]);
    expect(c!.segment).toBe("wal");
    expect(fallbacks).toEqual([]);
    expect(own.asked).toEqual([]);
  });

  it("where retention removed the LSNs: the store, only up to the WAL's first LSN, the reason reported once", async () => {
    const fallbacks: Error[] = [];
    const gone = new WalLsnUnavailableError(2, 5);
    const own = ownHolding([1, 2, 3, 4, 5, 6, 7]);
    const c = await readOwnStream(walFailing(9, gone), own, origin, 2, limits, (e) => fallbacks.push(e));
    expect(lsnsOf(c!)).toEqual([2, 3, 4]);
    expect(c!.segment).toBe("store");
    expect(fallbacks).toEqual([gone]);
    expect(own.asked).toEqual([[2, 4, 100]]);
  });

  it("never past what is durable, whatever the WAL's first LSN", async () => {
    const own = ownHolding([1, 2, 3, 4, 5, 6, 7]);
    const c = await readOwnStream(
      walFailing(3, new WalLsnUnavailableError(2, 9)),
      own,
      origin,
      2,
      limits,
      () => undefined,
    );
    expect(lsnsOf(c!)).toEqual([2, 3]);
  });

  it("a sealed segment that fails its checksum: the store, only up to that segment's end", async () => {
    const fallbacks: Error[] = [];
    const corrupt = new SegmentCorruptError("00000000000000000002.wal", 40, "checksum mismatch");
    const own = ownHolding([1, 2, 3, 4, 5, 6, 7, 8]);
    const wal = walFailing(9, corrupt, { firstLsn: 2, lastLsn: 6 });
    const c = await readOwnStream(wal, own, origin, 3, limits, (e) => fallbacks.push(e));
    expect(lsnsOf(c!)).toEqual([3, 4, 5, 6]);
    expect(fallbacks).toEqual([corrupt]);
    const early = await readOwnStream(
      walFailing(4, corrupt, { firstLsn: 2, lastLsn: 6 }),
      own,
      origin,
      3,
      limits,
      () => undefined,
    );
    expect(lsnsOf(early!)).toEqual([3, 4]);
  });

  it("any other WAL error is the session's failure, not a fallback", async () => {
    const fallbacks: Error[] = [];
    const emfile = new Error("EMFILE: too many open files");
    await expect(
      readOwnStream(walFailing(9, emfile), ownHolding([1, 2]), origin, 1, limits, (e) => fallbacks.push(e)),
    ).rejects.toBe(emfile);
    expect(fallbacks).toEqual([]);
  });
});

describe("readFromStore", () => {
  it("stops at the first LSN the store lacks", async () => {
    const c = await readFromStore(ownHolding([3, 4, 5, 7, 8]), origin, incarnation, 3, 10, limits);
    expect(lsnsOf(c)).toEqual([3, 4, 5]);
    expect(c).toMatchObject({ origin, incarnation, firstLsn: 3, lastLsn: 5, count: 3 });
  });

  it("a missing first LSN is a gap up to the next LSN held, or to the end of the range", async () => {
    const gap = await readFromStore(ownHolding([6, 7]), origin, incarnation, 3, 10, limits).catch(
      (e: unknown) => e,
    );
    expect(gap).toBeInstanceOf(StreamGapError);
    expect(gap).toMatchObject({ incarnation, fromLsn: 3, toLsn: 5 });
    expect((gap as Error).message).toBe(
      `LSNs 3..5 of incarnation ${incarnation} are neither in the WAL nor in this region's store`,
    );
    await expect(readFromStore(ownHolding([]), origin, incarnation, 3, 10, limits)).rejects.toMatchObject({
      fromLsn: 3,
      toLsn: 10,
    });
  });
});

describe("cutting and filtering", () => {
  it("within: at most recordsMax records, and bytesMax unless one record alone is larger", () => {
    const rs = [1, 2, 3, 4].map((l) => record(l, "t", "x".repeat(100)));
    // Each counts 64 + key 2 + tenant 1 + outcome 2 + body 100 = 169 bytes.
    expect(within(rs, { bytesMax: 1 << 20, recordsMax: 3 }).map((r) => r.lsn)).toEqual([1, 2, 3]);
    expect(within(rs, { bytesMax: 338, recordsMax: 10 }).map((r) => r.lsn)).toEqual([1, 2]);
    expect(within(rs, { bytesMax: 337, recordsMax: 10 }).map((r) => r.lsn)).toEqual([1]);
    expect(within(rs, { bytesMax: 10, recordsMax: 10 }).map((r) => r.lsn)).toEqual([1]);
    expect(
      within([record(1, "t", undefined as unknown as string)], { bytesMax: 1, recordsMax: 1 }),
    ).toHaveLength(1);
  });

  it("filterChunk keeps the frames of the tenants asked for, over the same range, and counts them", () => {
    const rs = [record(1, "a"), record(2, "b"), record(3, "a")];
    const chunk: WalChunk = {
      origin,
      incarnation,
      firstLsn: 1,
      lastLsn: 3,
      frames: encodeFrames(rs),
      segment: "wal",
      offset: 0,
    };
    const kept = filterChunk(chunk, (t) => t === "a");
    expect(lsnsOf(kept)).toEqual([1, 3]);
    expect(kept).toMatchObject({ firstLsn: 1, lastLsn: 3, count: 2 });
    expect(filterChunk(chunk, () => false)).toMatchObject({ count: 0, frames: Buffer.alloc(0) });
  });

  it("filterChunk refuses a chunk that fails its own check, naming where", () => {
    const frames = encodeFrames([record(1), record(2)]);
    frames[frames.length - 3] = frames[frames.length - 3]! ^ 0xff;
    const chunk: WalChunk = {
      origin,
      incarnation,
      firstLsn: 1,
      lastLsn: 2,
      frames,
      segment: "00000000000000000001.wal",
      offset: 4096,
    };
    expect(() => filterChunk(chunk, () => true)).toThrow(
      /^chunk from 00000000000000000001\.wal failed its own check at 4\d\d\d$/,
    );
  });

  it("a skip batch's chunk holds no record and exactly the skipped LSNs", () => {
    expect(skipChunk(origin, incarnation, 4, 9)).toMatchObject({
      origin,
      incarnation,
      firstLsn: 4,
      lastLsn: 9,
      segment: "skip",
      count: 0,
      frames: Buffer.alloc(0),
    });
  });
});
