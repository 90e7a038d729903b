import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { recordsArb } from "../../test/support/arbitraries.js";
import { encodeFrames } from "../wal/index.js";
import { BatchInvalidError, batchHeaderBytes, decodeBatch, encodeBatch } from "./batch.js";

const incarnation = "0123456789abcdef0123456789abcdef";

describe("replication batch", () => {
  it("decode(encode(b)) equals b, for whole and filtered ranges", () => {
    fc.assert(
      fc.property(
        recordsArb(7, 20),
        fc.array(fc.boolean(), { minLength: 20, maxLength: 20 }),
        (records, keep) => {
          const chosen = records.filter((_, i) => keep[i]);
          const header = {
            origin: "us-east-1",
            incarnation,
            firstLsn: 7,
            lastLsn: 7 + records.length - 1,
            recordCount: chosen.length,
            flags: 0,
          };
          const body = encodeBatch(header, encodeFrames(chosen));
          expect(decodeBatch(body)).toEqual({ ...header, records: chosen });
        },
      ),
    );
  });

  it("refuses any single bit flip", () => {
    fc.assert(
      fc.property(recordsArb(1, 5), fc.nat(), (records, bitSeed) => {
        const header = {
          origin: "eu-west-1",
          incarnation,
          firstLsn: 1,
          lastLsn: records.length,
          recordCount: records.length,
          flags: 0,
        };
        const body = encodeBatch(header, encodeFrames(records));
        const bit = bitSeed % (body.length * 8);
        body[bit >> 3]! ^= 1 << (bit & 7);
        expect(() => decodeBatch(body)).toThrow(BatchInvalidError);
      }),
    );
  });

  it("names the offset of a bad record, a wrong count and a range that cannot hold the records", () => {
    const records = fc.sample(recordsArb(1, 3), { numRuns: 1, seed: 42 })[0]!;
    const ok = {
      origin: "us-east-1",
      incarnation,
      firstLsn: 1,
      lastLsn: records.length,
      recordCount: records.length,
      flags: 0,
    };
    const frames = Buffer.from(encodeFrames(records));
    frames[frames.length - 1]! ^= 0xff;
    expect(() => decodeBatch(encodeBatch(ok, frames))).toThrow(
      /record at batch offset \d+: checksum mismatch/,
    );
    expect(() =>
      decodeBatch(
        encodeBatch({ ...ok, recordCount: records.length + 1, lastLsn: 10 }, encodeFrames(records)),
      ),
    ).toThrow(/announces/);
    expect(() => decodeBatch(encodeBatch({ ...ok, lastLsn: 0 }, encodeFrames(records)))).toThrow(/LSN range/);
    expect(() => decodeBatch(Buffer.alloc(10))).toThrow(/shorter than its header/);
    // A skip batch is only its range: records in it would make what is skipped ambiguous.
    expect(() => decodeBatch(encodeBatch({ ...ok, flags: 1 }, encodeFrames(records)))).toThrow(
      /a skip batch holds no records \(it announces \d+\)/,
    );
    expect(decodeBatch(encodeBatch({ ...ok, flags: 1, recordCount: 0 }, Buffer.alloc(0))).records).toEqual(
      [],
    );
    expect(() => decodeBatch(encodeBatch({ ...ok, flags: 3, recordCount: 0 }, Buffer.alloc(0)))).toThrow(
      /backfill batch cannot skip/,
    );
    expect(() => decodeBatch(encodeBatch({ ...ok, flags: 4 }, encodeFrames(records)))).toThrow(
      /unknown batch flags 0x4/,
    );
    expect(batchHeaderBytes).toBe(128);
  });

  it("pins the header layout (golden batch header, docs/FORMAT.md)", () => {
    const body = encodeBatch(
      { origin: "us-east-1", incarnation, firstLsn: 5, lastLsn: 9, recordCount: 0, flags: 1 },
      Buffer.alloc(0),
    );
    const expected = [
      "43525242", // "CRRB"
      "0100", // version 1
      "8000", // header bytes 128
      "0500000000000000", // first LSN 5
      "0900000000000000", // last LSN 9
      "00000000", // record count 0
      "01000000", // flags: skip gap
      incarnation,
      "09", // origin bytes
      Buffer.from("us-east-1")
        .toString("hex")
        .padEnd(2 * (124 - 49), "0"),
    ].join("");
    expect(body.toString("hex").slice(0, 248)).toBe(expected);
    expect(body.length).toBe(128);
  });
});
