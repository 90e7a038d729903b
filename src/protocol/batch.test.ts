import fc from "fast-check";
import { crc32 } from "node:zlib";
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

describe("batch header checks (each refusal names its reason)", () => {
  const header = { origin: "us-east-1", incarnation, firstLsn: 5, lastLsn: 9, recordCount: 0, flags: 0 };
  /** A batch whose header bytes `patch` changed, with its checksum made valid again. */
  function forged(patch: (b: Buffer) => void, frames: Buffer = Buffer.alloc(0)): Buffer {
    const body = encodeBatch(header, frames);
    patch(body);
    body.writeUInt32LE(crc32(body.subarray(0, 124)), 124);
    return body;
  }
  const refusal = (body: Buffer) => {
    try {
      decodeBatch(body);
    } catch (err) {
      expect(err).toBeInstanceOf(BatchInvalidError);
      expect((err as BatchInvalidError).code).toBe("batch_invalid");
      return (err as Error).message;
    }
    return "accepted";
  };

  it("accepts the unpatched header, and LSNs beyond 32 bits", () => {
    expect(refusal(forged(() => undefined))).toBe("accepted");
    const big = 2 ** 40 + 3;
    const b = forged((x) => {
      x.writeUInt32LE(big % 2 ** 32, 8);
      x.writeUInt32LE(Math.floor(big / 2 ** 32), 12);
      x.writeUInt32LE(big % 2 ** 32, 16);
      x.writeUInt32LE(Math.floor(big / 2 ** 32), 20);
    });
    expect(decodeBatch(b)).toMatchObject({ firstLsn: big, lastLsn: big });
    expect(decodeBatch(encodeBatch({ ...header, firstLsn: big, lastLsn: big + 1 }, []))).toMatchObject({
      firstLsn: big,
      lastLsn: big + 1,
      origin: "us-east-1",
    });
  });

  it("refuses a bad magic, a changed header, another version", () => {
    expect(refusal(encodeBatch(header, []).fill(0x41, 0, 4))).toBe("not a crr batch (bad magic)");
    const changed = encodeBatch(header, []);
    changed[30] = changed[30]! ^ 1;
    expect(refusal(changed)).toBe("batch header checksum mismatch");
    expect(refusal(forged((b) => b.writeUInt16LE(2, 4)))).toBe("batch format version 2, expected 1");
  });

  it("refuses an origin of length 0 or beyond the bound", () => {
    expect(refusal(forged((b) => b.writeUInt8(0, 48)))).toBe("origin length 0 out of range");
    expect(refusal(forged((b) => b.writeUInt8(75, 48)))).toBe("origin length 75 out of range");
    expect(refusal(forged((b) => b.writeUInt8(64, 48)))).toBe("accepted");
  });

  it("refuses an empty or backward LSN range, and accepts a range of one", () => {
    expect(refusal(forged((b) => b.writeUInt32LE(0, 8)))).toBe("LSN range 0..9 is empty or invalid");
    expect(refusal(forged((b) => b.writeUInt32LE(4, 16)))).toBe("LSN range 5..4 is empty or invalid");
    expect(refusal(forged((b) => b.writeUInt32LE(5, 16)))).toBe("accepted");
  });

  it("refuses unknown flags, skip with backfill, a skip holding records, more records than the range", () => {
    expect(refusal(forged((b) => b.writeUInt32LE(4, 28)))).toBe("unknown batch flags 0x4");
    expect(refusal(forged((b) => b.writeUInt32LE(3, 28)))).toBe("a backfill batch cannot skip a gap");
    expect(refusal(forged((b) => b.writeUInt32LE(2, 28)))).toBe("accepted");
    expect(refusal(forged((b) => (b.writeUInt32LE(1, 28), b.writeUInt32LE(1, 24))))).toBe(
      "a skip batch holds no records (it announces 1)",
    );
    expect(refusal(forged((b) => b.writeUInt32LE(6, 24)))).toBe("6 records cannot fit LSN range 5..9");
    expect(refusal(forged((b) => b.writeUInt32LE(5, 24)))).toBe("batch announces 5 records but holds 0");
  });

  it("refuses frames out of order, repeated, or outside the range, naming the offset", () => {
    const recs = (lsns: number[]) =>
      lsns.map((lsn) => ({
        lsn,
        key: `k${lsn}`,
        tenant: "t",
        outcome: "ok",
        bodyJson: undefined,
        flags: 0,
        hlc: { wallMs: 1000 + lsn, logical: 0 },
      }));
    const batch = (lsns: number[]) =>
      forged((b) => b.writeUInt32LE(lsns.length, 24), encodeFrames(recs(lsns)));
    expect(refusal(batch([5, 9]))).toBe("accepted");
    expect(refusal(batch([6, 6]))).toMatch(/^record at batch offset \d+: LSN 6 outside 7\.\.9$/);
    expect(refusal(batch([7, 6]))).toMatch(/LSN 6 outside 8\.\.9/);
    expect(refusal(batch([4]))).toBe(`record at batch offset ${batchHeaderBytes}: LSN 4 outside 5..9`);
    expect(refusal(batch([10]))).toBe(`record at batch offset ${batchHeaderBytes}: LSN 10 outside 5..9`);
    const cut = batch([5]);
    expect(refusal(cut.subarray(0, cut.length - 1))).toBe(
      `record at batch offset ${batchHeaderBytes}: incomplete frame`,
    );
  });
});
