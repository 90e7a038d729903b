/**
 * What the segment scanner says, and where: every header check with its offset and words,
 * file names, the seek index, unfinished appendBatches in sealed and newest segments, and
 * how a scan after damage finds the frames that continue the log (findResync). An operator
 * reads these messages to find the damage: they are part of the contract (FORMAT.md).
 */
import crypto from "node:crypto";
import { crc32 } from "node:zlib";
import { describe, expect, it } from "vitest";
import { frameBounds } from "../../test/support/segments.js";
import { SegmentCorruptError } from "../errors.js";
import { regionBytesMax } from "../limits.js";
import { FLAG_BATCH_CONTINUES, encodeFrames, type WalRecord } from "./record.js";
import {
  decodeSegmentHeader,
  encodeSegmentHeader,
  findResync,
  parseSegmentFileName,
  scanSegment,
  segmentFileName,
  segmentHeaderBytes,
} from "./segment.js";

const h = {
  region: "us-east-1",
  firstLsn: 1,
  createdAtMs: 1_700_000_000_000,
  incarnation: "00112233445566778899aabbccddeeff",
};

function records(n: number, firstLsn = 1, batch: (i: number) => boolean = () => false): WalRecord[] {
  return Array.from({ length: n }, (_, i) => ({
    key: `key-${i}`,
    tenant: "tenant-a",
    outcome: "accepted",
    bodyJson: JSON.stringify({ i }),
    lsn: firstLsn + i,
    hlc: { wallMs: 1000 + i, logical: 1 },
    flags: i < n - 1 && batch(i) ? FLAG_BATCH_CONTINUES : 0,
  }));
}

function segment(rs: WalRecord[], firstLsn = 1): { image: Buffer; starts: number[]; ends: number[] } {
  const image = Buffer.concat([encodeSegmentHeader({ ...h, firstLsn }), encodeFrames(rs)]);
  return { image, ...frameBounds(image) };
}

/** A header with one field changed and its checksum made right again. */
function resealed(change: (b: Buffer) => void): Buffer {
  const b = encodeSegmentHeader(h);
  change(b);
  b.writeUInt32LE(crc32(b.subarray(0, 124)), 124);
  return b;
}

function corrupt(f: () => unknown): SegmentCorruptError {
  try {
    f();
  } catch (err) {
    expect(err).toBeInstanceOf(SegmentCorruptError);
    return err as SegmentCorruptError;
  }
  throw new Error("expected SegmentCorruptError");
}

describe("segment header", () => {
  it("round-trips LSNs and times beyond 32 bits", () => {
    const big = { ...h, firstLsn: 2 ** 40 + 7, createdAtMs: 2 ** 45 + 3, region: "r".repeat(regionBytesMax) };
    expect(decodeSegmentHeader(encodeSegmentHeader(big), "s.wal")).toEqual(big);
  });

  it("refuses to write an incarnation that is not 32 hex chars, or a region of 0 or too many bytes", () => {
    for (const incarnation of [
      "",
      "0".repeat(31),
      "0".repeat(33),
      `x${"0".repeat(31)}`,
      `${"0".repeat(31)}x`,
      "0".repeat(31) + "G",
    ])
      expect(() => encodeSegmentHeader({ ...h, incarnation })).toThrow(
        `incarnation must be 32 hex chars: ${incarnation}`,
      );
    expect(() => encodeSegmentHeader({ ...h, region: "" })).toThrow(
      `region name must be 1..${regionBytesMax} bytes: ""`,
    );
    const long = "é".repeat(regionBytesMax / 2 + 1); // 66 bytes in 33 chars
    expect(() => encodeSegmentHeader({ ...h, region: long })).toThrow(
      `region name must be 1..${regionBytesMax} bytes`,
    );
    expect(encodeSegmentHeader({ ...h, region: "é".repeat(regionBytesMax / 2) }).length).toBe(
      segmentHeaderBytes,
    );
  });

  it("names the offset and the check each damaged header fails", () => {
    const cases: Array<[Buffer, number, string]> = [
      [encodeSegmentHeader(h).subarray(0, 127), 0, "header is 127 bytes, expected 128"],
      [resealed((b) => b.write("XRRW", 0, "latin1")), 0, "bad magic (not a crr WAL segment)"],
      [
        (() => {
          const b = encodeSegmentHeader(h);
          b[60]! ^= 1;
          return b;
        })(),
        124,
        "header checksum mismatch",
      ],
      [resealed((b) => b.writeUInt16LE(2, 4)), 4, "format version 2, this build reads 1"],
      [resealed((b) => b.writeUInt16LE(256, 6)), 6, "header length 256, expected 128"],
      [resealed((b) => b.writeUInt8(0, 40)), 40, "region length 0 out of range"],
      [
        resealed((b) => b.writeUInt8(regionBytesMax + 1, 40)),
        40,
        `region length ${regionBytesMax + 1} out of range`,
      ],
    ];
    for (const [buf, offset, reason] of cases) {
      const err = corrupt(() => decodeSegmentHeader(buf, "dir/s.wal"));
      expect({ file: err.file, offset: err.offset, reason: err.reason }).toEqual({
        file: "dir/s.wal",
        offset,
        reason,
      });
    }
    expect(
      decodeSegmentHeader(
        resealed((b) => b.writeUInt8(regionBytesMax, 40)),
        "s.wal",
      ).region.length,
    ).toBe(regionBytesMax);
  });
});

describe("segment file names", () => {
  it("are 20 digits and .wal, nothing before or after", () => {
    expect(segmentFileName(42)).toBe("00000000000000000042.wal");
    expect(parseSegmentFileName("00000000000000000042.wal")).toBe(42);
    for (const bad of [
      "x00000000000000000042.wal",
      "00000000000000000042.wal.tmp",
      "0000000000000000042.wal",
      "00000000000000000042.WAL",
    ])
      expect(parseSegmentFileName(bad)).toBeUndefined();
  });
});

describe("segment scan", () => {
  it("indexes every indexEvery-th frame, 1024 by default", () => {
    const { image, starts } = segment(records(7));
    expect(scanSegment(image, { file: "s.wal", last: false }).index).toEqual([1, starts[0]]);
    expect(scanSegment(image, { file: "s.wal", last: false, indexEvery: 3 }).index).toEqual([
      1,
      starts[0],
      4,
      starts[3],
      7,
      starts[6],
    ]);
  });

  it("drops the index entries of an unfinished appendBatch with its frames", () => {
    // Records 4..7 are one batch whose last frame is missing.
    const { image, starts, ends } = segment(records(8, 1, (i) => i >= 3));
    const cut = image.subarray(0, ends[6]);
    const s = scanSegment(cut, { file: "s.wal", last: true, indexEvery: 2 });
    expect(s.recordCount).toBe(3);
    expect(s.validBytes).toBe(starts[3]);
    expect(s.lastHlc).toEqual({ wallMs: 1002, logical: 1 });
    expect(s.index).toEqual([1, starts[0], 3, starts[2]]);
    expect(s.tornReason).toBe(`incomplete appendBatch at offset ${starts[3]}`);
    expect(s.problem).toEqual({ offset: ends[6], lsn: 8, reason: "appendBatch without its final frame" });
    // An entry exactly at the batch's first frame goes too (it would point past the valid bytes).
    expect(scanSegment(cut, { file: "s.wal", last: true, indexEvery: 3 }).index).toEqual([1, starts[0]]);
  });

  it("a damaged frame exactly at the torn-tail window's edge is a torn tail; one byte earlier, corruption", () => {
    const { image, starts } = segment(records(3));
    const flipped = Buffer.from(image);
    flipped[starts[2]! + 20]! ^= 4;
    const window = flipped.length - starts[2]!;
    const torn = scanSegment(flipped, { file: "s.wal", last: true, unsyncedBytesMax: window });
    expect([torn.recordCount, torn.tornReason]).toEqual([2, `checksum mismatch at offset ${starts[2]}`]);
    const early = corrupt(() =>
      scanSegment(flipped, { file: "s.wal", last: true, unsyncedBytesMax: window - 1 }),
    );
    expect([early.offset, early.reason]).toEqual([starts[2], "checksum mismatch"]);
  });

  it("an unfinished appendBatch in a sealed segment, or before the torn-tail window, is corruption at the batch's start", () => {
    const { image, starts, ends } = segment(records(6, 1, (i) => i >= 2));
    const cut = image.subarray(0, ends[4]);
    const sealed = corrupt(() => scanSegment(cut, { file: "s.wal", last: false }));
    expect([sealed.offset, sealed.reason]).toEqual([starts[2], "appendBatch without its final frame"]);
    const early = corrupt(() =>
      scanSegment(cut, { file: "s.wal", last: true, unsyncedBytesMax: cut.length - starts[2]! - 1 }),
    );
    expect(early.offset).toBe(starts[2]);
    // Exactly at the window's edge it is a torn tail.
    expect(
      scanSegment(cut, { file: "s.wal", last: true, unsyncedBytesMax: cut.length - starts[2]! }).recordCount,
    ).toBe(2);
  });

  it("says why a frame was not accepted: incomplete, a wrong LSN, a checksum, a length", () => {
    const { image, starts, ends } = segment(records(3));
    const torn = scanSegment(image.subarray(0, ends[2]! - 5), { file: "s.wal", last: true });
    const need = ends[2]! - starts[2]!;
    expect(torn.problem).toEqual({
      offset: starts[2],
      lsn: 3,
      reason: `incomplete frame (${need - 5} of ${need} bytes)`,
    });
    expect(torn.tornReason).toBe(`incomplete frame (${need - 5} of ${need} bytes) at offset ${starts[2]}`);
    // A segment whose frames start at LSN 5 under a header that says 1.
    const shifted = Buffer.concat([encodeSegmentHeader(h), encodeFrames(records(2, 5))]);
    expect(corrupt(() => scanSegment(shifted, { file: "s.wal", last: false })).reason).toBe(
      "LSN 5 where 1 was expected",
    );
    const flipped = Buffer.from(image);
    flipped[starts[1]! + 20]! ^= 4;
    expect(corrupt(() => scanSegment(flipped, { file: "s.wal", last: false })).reason).toBe(
      "checksum mismatch",
    );
    const lenient = scanSegment(flipped, { file: "s.wal", last: false, lenient: true });
    expect([lenient.recordCount, lenient.validBytes, lenient.problem?.offset]).toEqual([
      1,
      ends[0],
      starts[1],
    ]);
    const tooShort = Buffer.from(image);
    tooShort.writeUInt32LE(3, starts[1]! + 4);
    expect(corrupt(() => scanSegment(tooShort, { file: "s.wal", last: false })).reason).toMatch(
      /^frame length 3 outside \[28, /,
    );
  });
});

describe("finding the frames after damage", () => {
  it("passes over bytes that look like a frame's length but fail its checksum", () => {
    const { image, starts, ends } = segment(records(4));
    const damaged = Buffer.from(image);
    damaged.fill(0xee, starts[1]!, ends[1]!);
    // A plausible length (40 bytes) right after the problem: a frame only if its checksum holds.
    damaged.writeUInt32LE(40, starts[1]! + 1 + 4);
    expect(findResync(damaged, starts[1]!, 2)).toEqual({
      offset: starts[2],
      firstLsn: 3,
      lastLsn: 4,
      end: ends[3],
    });
  });

  it("finds the smallest frame there is (every field empty, 36 bytes) ending the buffer", () => {
    const empty: WalRecord = {
      key: "",
      bodyJson: undefined,
      tenant: "",
      outcome: "",
      lsn: 3,
      hlc: { wallMs: 1, logical: 0 },
      flags: 0,
    };
    const smallest = encodeFrames([empty]);
    expect(smallest.length).toBe(36);
    const { image, starts } = segment(records(2));
    const damaged = Buffer.concat([image, smallest]);
    damaged.fill(0xee, starts[1]!, image.length);
    expect(findResync(damaged, starts[1]!, 2)).toEqual({
      offset: image.length,
      firstLsn: 3,
      lastLsn: 3,
      end: damaged.length,
    });
  });

  it("finds the first intact frame after a damaged one and follows the run to its end", () => {
    const { image, starts, ends } = segment(records(6));
    const damaged = Buffer.from(image);
    crypto.randomFillSync(damaged, starts[2]!, ends[2]! - starts[2]!);
    expect(findResync(damaged, starts[2]!, 3)).toEqual({
      offset: starts[3],
      firstLsn: 4,
      lastLsn: 6,
      end: ends[5],
    });
    // A run stops where the LSNs stop following.
    const gap = Buffer.concat([damaged.subarray(0, ends[4]), encodeFrames(records(1, 9))]);
    expect(findResync(gap, starts[2]!, 3)).toEqual({
      offset: starts[3],
      firstLsn: 4,
      lastLsn: 5,
      end: ends[4],
    });
  });

  it("never takes a frame that does not continue the log: an older LSN, or more LSNs than the damage could hold", () => {
    const { image, starts, ends } = segment(records(6));
    const damaged = Buffer.from(image);
    damaged.fill(0xee, starts[2]!, ends[2]!);
    // Expecting LSN 5 after the damage: frame 4 is older, frame 5 follows.
    expect(findResync(damaged, starts[2]!, 5)).toMatchObject({ offset: starts[4], firstLsn: 5 });
    // A frame counts only if the damaged bytes before it could have held the LSNs it skips
    // (one per 36 bytes at least): for each expected LSN, the first frame that qualifies.
    const from = starts[2]!;
    for (let expected = 1; expected <= 6; expected++) {
      const k = [4, 5, 6].find(
        (lsn) => lsn >= expected && lsn <= expected + Math.ceil((starts[lsn - 1]! - from) / 36),
      );
      const found = findResync(damaged, from, expected);
      if (k === undefined) expect(found).toBeUndefined();
      else expect(found).toEqual({ offset: starts[k - 1], firstLsn: k, lastLsn: 6, end: ends[5] });
    }
  });

  it("finds nothing when only damage follows, and a frame that ends the buffer exactly", () => {
    const { image, starts, ends } = segment(records(3));
    const damaged = Buffer.from(image);
    damaged.fill(0xee, starts[1]!);
    expect(findResync(damaged, starts[1]!, 2)).toBeUndefined();
    const last = Buffer.from(image);
    last.fill(0xee, starts[1]!, ends[1]!);
    expect(findResync(last, starts[1]!, 2)).toEqual({
      offset: starts[2],
      firstLsn: 3,
      lastLsn: 3,
      end: image.length,
    });
    // A frame starting right after `from` is found (the scan starts one byte after the problem).
    const adjacent = Buffer.concat([
      image.subarray(0, starts[1]),
      Buffer.alloc(1, 0xee),
      image.subarray(starts[1]),
    ]);
    expect(findResync(adjacent, starts[1]!, 2)).toMatchObject({
      offset: starts[1]! + 1,
      firstLsn: 2,
      lastLsn: 3,
    });
  });
});
