import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { recordsArb } from "../../test/support/arbitraries.js";
import { RecordInvalidError, SegmentCorruptError } from "../errors.js";
import { keyBytesMax } from "../limits.js";
import { checkFrame, decodeFrame, decodeFrames, encodeFrames, prepareRecord, readTenant } from "./record.js";

describe("record frames", () => {
  it("decode(encode(r)) equals r for any records", () => {
    fc.assert(
      fc.property(recordsArb(fc.sample(fc.integer({ min: 1, max: 2 ** 40 }), 1)[0]), (records) => {
        const bytes = encodeFrames(records);
        const back = decodeFrames(bytes, { source: "test", firstLsn: records[0]!.lsn });
        expect(back).toEqual(records);
        let p = 0;
        for (const r of records) {
          expect(readTenant(bytes, p)).toBe(r.tenant);
          p = (checkFrame(bytes, p) as { end: number }).end;
        }
      }),
    );
  });

  it("detects every single bit flip in a frame", () => {
    fc.assert(
      fc.property(recordsArb(1, 1), fc.nat(), (records, bitSeed) => {
        const bytes = Buffer.from(encodeFrames(records));
        const bit = bitSeed % (bytes.length * 8);
        bytes[bit >> 3]! ^= 1 << (bit & 7);
        expect(checkFrame(bytes, 0).kind).not.toBe("ok");
      }),
    );
  });

  it("pins the byte layout (golden frame, docs/FORMAT.md)", () => {
    const bytes = encodeFrames([
      {
        key: "pcs-7f3a",
        tenant: "tenant-a",
        outcome: "accepted",
        bodyJson: '{"n":1}',
        lsn: 1,
        hlc: { wallMs: 1_700_000_000_000, logical: 2 },
        flags: 0,
      },
    ]);
    const expected = [
      "af70cc55", // crc32 over [4, end)
      "3b000000", // payload bytes: 59
      "0100000000000000", // lsn 1
      "0068e5cf8b01", // hlc wall ms 1700000000000 (u48)
      "0200", // hlc logical 2
      "0000", // flags
      "0800",
      "0800",
      "0800", // key, tenant, outcome bytes
      "07000000", // body bytes
      Buffer.from('pcs-7f3atenant-aaccepted{"n":1}').toString("hex"),
    ].join("");
    expect(bytes.toString("hex")).toBe(expected);
  });

  it("names the field and the limit when a record is refused", () => {
    expect(() =>
      prepareRecord({ key: "k".repeat(keyBytesMax + 1), tenant: "t", outcome: "accepted" }),
    ).toThrow("record field 'key': 257 bytes exceeds the limit of 256");
    expect(() => prepareRecord({ key: "é".repeat(129), tenant: "t", outcome: "a" })).toThrow(
      /'key': 258 bytes/,
    );
    expect(() => prepareRecord({ key: "", tenant: "t", outcome: "a" })).toThrow(/'key': must not be empty/);
    expect(() => prepareRecord({ key: "k", tenant: 7 as unknown as string, outcome: "a" })).toThrow(
      "record field 'tenant': expected a string, got number",
    );
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    expect(() => prepareRecord({ key: "k", tenant: "t", outcome: "a", body: cyclic })).toThrow(
      RecordInvalidError,
    );
    expect(() => prepareRecord({ key: "k", tenant: "t", outcome: "a", body: "x".repeat(70_000) })).toThrow(
      /'body': \d+ bytes exceeds/,
    );
    expect(prepareRecord({ key: "k", tenant: "t", outcome: "a", body: { a: [1] } }).bodyJson).toBe(
      '{"a":[1]}',
    );
  });

  it("refuses a range with a gap or a partial frame, naming source and offset", () => {
    const records = fc.sample(recordsArb(5, 3), 1)[0]!;
    const bytes = encodeFrames(records);
    expect(() => decodeFrames(bytes, { source: "batch", firstLsn: 6 })).toThrow(
      /batch at offset 0: LSN 5 where 6/,
    );
    const cut = bytes.subarray(0, bytes.length - 1);
    expect(() => decodeFrames(cut, { source: "batch", baseOffset: 100 })).toThrow(SegmentCorruptError);
    expect(decodeFrame(bytes, 0)).toEqual(records[0]);
  });
});
