/**
 * Recovery's scanner under any truncation and any bit flip. Invariant: a scan returns a
 * prefix of what was written, byte for byte, or says where the damage is; a problem in the
 * torn-tail window of the newest segment is cut, anywhere else it is corruption.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { recordsArb } from "../../test/support/arbitraries.js";
import { SegmentCorruptError } from "../errors.js";
import { FLAG_BATCH_CONTINUES, checkFrame, decodeFrames, encodeFrames, type WalRecord } from "./record.js";
import { encodeSegmentHeader, scanSegment, segmentHeaderBytes } from "./segment.js";

const header = {
  region: "us-east-1",
  firstLsn: 1,
  createdAtMs: 1_700_000_000_000,
  incarnation: "00112233445566778899aabbccddeeff",
};

function image(records: WalRecord[]): { bytes: Buffer; ends: number[] } {
  const frames = encodeFrames(records);
  const bytes = Buffer.concat([encodeSegmentHeader(header), frames]);
  const ends: number[] = [];
  let p = 0;
  while (p < frames.length) {
    p = (checkFrame(frames, p) as { end: number }).end;
    ends.push(segmentHeaderBytes + p);
  }
  return { bytes, ends };
}

/** Records flagged as appendBatch members: `cuts` decides where batches end. */
const batchedRecordsArb = fc
  .tuple(recordsArb(1, 25), fc.array(fc.boolean(), { minLength: 25, maxLength: 25 }))
  .map(([rs, cuts]) =>
    rs.map((r, i) => ({ ...r, flags: i < rs.length - 1 && cuts[i] ? FLAG_BATCH_CONTINUES : 0 })),
  );

/** How many records survive a cut at `t`: whole frames, minus an unfinished batch. */
function survivors(records: WalRecord[], ends: number[], t: number): number {
  let k = ends.filter((e) => e <= t).length;
  while (k > 0 && records[k - 1]!.flags & FLAG_BATCH_CONTINUES) k--;
  return k;
}

describe("segment scan", () => {
  it("every truncation of the newest segment recovers exactly the complete-record prefix", () => {
    fc.assert(
      fc.property(batchedRecordsArb, fc.nat(), (records, cutSeed) => {
        const { bytes, ends } = image(records);
        const t = segmentHeaderBytes + (cutSeed % (bytes.length - segmentHeaderBytes + 1));
        const scan = scanSegment(bytes.subarray(0, t), { file: "s.wal", last: true });
        const k = survivors(records, ends, t);
        expect(scan.recordCount).toBe(k);
        expect(scan.lastLsn).toBe(k);
        expect(scan.validBytes).toBe(k === 0 ? segmentHeaderBytes : ends[k - 1]);
        expect(scan.tornReason === undefined).toBe(scan.validBytes === t);
        const kept = decodeFrames(bytes.subarray(segmentHeaderBytes, scan.validBytes), {
          source: "s",
          firstLsn: 1,
        });
        expect(kept).toEqual(records.slice(0, k));
      }),
    );
  });

  it("a truncated sealed segment is corruption, not a torn tail", () => {
    fc.assert(
      fc.property(recordsArb(1, 10), fc.nat(), (records, cutSeed) => {
        const { bytes } = image(records);
        const t = segmentHeaderBytes + (cutSeed % (bytes.length - segmentHeaderBytes));
        const cut = bytes.subarray(0, t);
        const ok = () => scanSegment(cut, { file: "s.wal", last: false });
        const ends = image(records).ends;
        if (ends.includes(t) || t === segmentHeaderBytes) expect(ok().validBytes).toBe(t);
        else expect(ok).toThrow(SegmentCorruptError);
      }),
    );
  });

  it("every single bit flip is detected: cut inside the torn-tail window, corruption with its offset before it", () => {
    fc.assert(
      fc.property(recordsArb(1, 20), fc.nat(), fc.nat(), (records, bitSeed, windowSeed) => {
        const { bytes, ends } = image(records);
        const bit = bitSeed % (bytes.length * 8);
        const window = windowSeed % (bytes.length + 1);
        const flipped = Buffer.from(bytes);
        flipped[bit >> 3]! ^= 1 << (bit & 7);
        const scan = () => scanSegment(flipped, { file: "s.wal", last: true, unsyncedBytesMax: window });
        const byte = bit >> 3;
        if (byte < segmentHeaderBytes) {
          expect(scan).toThrow(SegmentCorruptError);
          return;
        }
        const k = ends.findIndex((e) => e > byte); // the damaged frame
        const start = k === 0 ? segmentHeaderBytes : ends[k - 1]!;
        if (start < bytes.length - window) {
          expect(scan).toThrow(expect.objectContaining({ file: "s.wal", offset: start }));
        } else {
          const s = scan();
          expect(s.recordCount).toBe(k);
          expect(s.validBytes).toBe(start);
          expect(s.tornReason).toBeDefined();
        }
      }),
    );
  });

  it("pins the header layout (golden header, docs/FORMAT.md)", () => {
    const expected = [
      "43525257", // magic "CRRW"
      "0100", // format version 1
      "8000", // header bytes 128
      "0100000000000000", // first LSN 1
      "0068e5cf8b010000", // created at ms 1700000000000
      "00112233445566778899aabbccddeeff", // incarnation
      "09", // region bytes
      Buffer.from("us-east-1")
        .toString("hex")
        .padEnd(2 * (124 - 41), "0"), // region, zero padded to offset 124
      "6db53943", // crc32 of bytes [0, 124)
    ].join("");
    expect(encodeSegmentHeader(header).toString("hex")).toBe(expected);
  });
});
