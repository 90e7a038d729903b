import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { recordsArb } from "../../test/support/arbitraries.js";
import { RecordInvalidError, SegmentCorruptError } from "../errors.js";
import {
  bodyBytesMax,
  keyBytesMax,
  outcomeBytesMax,
  recordFixedBytes,
  recordPayloadBytesMax,
  tenantBytesMax,
} from "../limits.js";
import { crc32Range } from "./crc32.js";
import {
  FLAG_BATCH_CONTINUES,
  checkFrame,
  decodeFrame,
  decodeFrames,
  encodeFrame,
  encodeFrames,
  frameBytesUpperBound,
  prepareRecord,
  readTenant,
  type RecordInput,
} from "./record.js";

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

  it("validates every field exactly at its limits, with the field's name in the error", () => {
    const ok = { key: "k", tenant: "t", outcome: "a" };
    // At the limit (in UTF-8 bytes, 3 per unit here) passes; one byte more fails.
    expect(
      prepareRecord({ ...ok, key: "€".repeat(keyBytesMax / 4) + "k".repeat(keyBytesMax / 4) }).key.length,
    ).toBe(keyBytesMax / 2);
    expect(prepareRecord({ ...ok, key: "k".repeat(keyBytesMax) }).key.length).toBe(keyBytesMax);
    for (const field of ["tenant", "outcome"] as const) {
      const max = field === "tenant" ? tenantBytesMax : outcomeBytesMax;
      expect(prepareRecord({ ...ok, [field]: "x".repeat(max) })[field].length).toBe(max);
      expect(() => prepareRecord({ ...ok, [field]: "x".repeat(max + 1) })).toThrow(
        `record field '${field}': ${max + 1} bytes exceeds the limit of ${max}`,
      );
      expect(() => prepareRecord({ ...ok, [field]: "" })).toThrow(
        `record field '${field}': must not be empty`,
      );
    }
    expect(() => prepareRecord({ ...ok, key: "a\ud800b" })).toThrow(
      "record field 'key': is not well-formed Unicode (it holds a lone UTF-16 surrogate)",
    );
    expect(prepareRecord({ ...ok, key: "a\ud83d\ude00b" }).key).toBe("a😀b"); // a pair is fine
    // NUL runs are how recovery recognises sectors never written: no field may hold one.
    for (const field of ["key", "tenant", "outcome"] as const)
      expect(() => prepareRecord({ ...ok, [field]: "a\u0000" })).toThrow(
        `record field '${field}': holds a NUL character (U+0000)`,
      );
    expect(prepareRecord({ ...ok, body: "a\u0000" }).bodyJson).toBe('"a\\u0000"'); // JSON escapes it
    expect(() => prepareRecord(null as unknown as RecordInput)).toThrow(
      "record field 'record': expected an object",
    );
    expect(() => prepareRecord("k" as unknown as RecordInput)).toThrow(
      "record field 'record': expected an object",
    );
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    expect(() => prepareRecord({ ...ok, body: cyclic })).toThrow(
      /record field 'body': not serialisable as JSON: .*circular/i,
    );
    expect(() => prepareRecord({ ...ok, body: () => 1 })).toThrow(
      /^record field 'body': not serialisable as JSON$/,
    );
    expect(prepareRecord({ ...ok, body: "" }).bodyJson).toBe('""');
    const bodyMax = "x".repeat(bodyBytesMax - 2); // JSON adds the quotes
    expect(prepareRecord({ ...ok, body: bodyMax }).bodyJson!.length).toBe(bodyBytesMax);
    expect(() => prepareRecord({ ...ok, body: bodyMax + "x" })).toThrow(
      `record field 'body': ${bodyBytesMax + 1} bytes exceeds the limit of ${bodyBytesMax}`,
    );
  });

  it("encodes non-ASCII fields with their UTF-8 byte lengths, at any offset in the buffer", () => {
    const r = { key: "clé", tenant: "tenant-é", outcome: "✓ ok", bodyJson: '{"n":"ü"}' };
    const buf = Buffer.alloc(512, 0xaa);
    const end = encodeFrame(
      buf,
      100,
      r,
      2 ** 33 + 5,
      { wallMs: 2 ** 41 + 9, logical: 7 },
      FLAG_BATCH_CONTINUES,
    );
    expect(checkFrame(buf, 100)).toEqual({ kind: "ok", end, lsn: 2 ** 33 + 5 });
    expect(decodeFrame(buf, 100)).toEqual({
      ...r,
      lsn: 2 ** 33 + 5,
      hlc: { wallMs: 2 ** 41 + 9, logical: 7 },
      flags: FLAG_BATCH_CONTINUES,
    });
    expect(buf[99]).toBe(0xaa); // nothing written before the offset
    expect(end).toBeLessThanOrEqual(100 + frameBytesUpperBound(r));
  });

  it("says what is wrong with a frame: too short to read, a length out of range, a checksum, field lengths", () => {
    const bytes = encodeFrames(fc.sample(recordsArb(1, 1), 1)[0]!);
    expect(checkFrame(bytes.subarray(0, 7), 0)).toEqual({ kind: "short", need: 8 });
    expect(checkFrame(bytes.subarray(0, 8), 0)).toEqual({ kind: "short", need: bytes.length });
    expect(checkFrame(bytes.subarray(0, bytes.length - 1), 0)).toEqual({ kind: "short", need: bytes.length });
    const withLength = (n: number) => {
      const b = Buffer.from(bytes);
      b.writeUInt32LE(n, 4);
      return checkFrame(b, 0);
    };
    const range = `[${recordFixedBytes}, ${recordPayloadBytesMax}]`;
    expect(withLength(recordFixedBytes - 1)).toEqual({
      kind: "bad",
      reason: `frame length ${recordFixedBytes - 1} outside ${range}`,
    });
    expect(withLength(recordPayloadBytesMax + 1)).toEqual({
      kind: "bad",
      reason: `frame length ${recordPayloadBytesMax + 1} outside ${range}`,
    });
    expect(withLength(recordPayloadBytesMax)).toEqual({ kind: "short", need: recordPayloadBytesMax + 8 });
    const flipped = Buffer.from(bytes);
    flipped[bytes.length - 1]! ^= 1;
    expect(checkFrame(flipped, 0)).toEqual({ kind: "bad", reason: "checksum mismatch" });
    // Field lengths that disagree with the frame length, under a valid checksum.
    const lying = Buffer.from(bytes);
    lying.writeUInt16LE(lying.readUInt16LE(26) + 1, 26);
    lying.writeUInt32LE(crc32Range(lying, 4, lying.length), 0);
    const varBytes = bytes.length - 8 - recordFixedBytes + 1;
    expect(checkFrame(lying, 0)).toEqual({
      kind: "bad",
      reason: `field lengths (${varBytes}) disagree with frame length ${bytes.length - 8}`,
    });
  });

  it("a range names the first bad frame's true offset and reason", () => {
    const records = fc.sample(
      recordsArb(5, 3).filter((rs) => rs.length === 3),
      1,
    )[0]!;
    const bytes = encodeFrames(records);
    const second = (checkFrame(bytes, 0) as { end: number }).end;
    const cut = bytes.subarray(0, bytes.length - 1);
    const third = (checkFrame(bytes, second) as { end: number }).end;
    expect(() => decodeFrames(cut, { source: "batch from eu", baseOffset: 100, firstLsn: 5 })).toThrow(
      `corrupt WAL segment batch from eu at offset ${100 + third}: incomplete frame (${bytes.length - 1 - third} of ${bytes.length - third} bytes)`,
    );
    const flipped = Buffer.from(bytes);
    flipped[second + 12]! ^= 1;
    expect(() => decodeFrames(flipped, { source: "s", baseOffset: 7 })).toThrow(
      `corrupt WAL segment s at offset ${7 + second}: checksum mismatch`,
    );
    expect(() => decodeFrames(bytes, { source: "s", baseOffset: 7, firstLsn: 4 })).toThrow(
      "corrupt WAL segment s at offset 7: LSN 5 where 4 was expected",
    );
    // Without a first LSN the first frame sets it; the next must follow.
    expect(decodeFrames(bytes, { source: "s" }).map((r) => r.lsn)).toEqual([5, 6, 7]);
    const skipped = Buffer.concat([bytes.subarray(0, second), bytes.subarray(third)]); // LSNs 5, 7
    expect(() => decodeFrames(skipped, { source: "s", baseOffset: 7 })).toThrow(
      `corrupt WAL segment s at offset ${7 + second}: LSN 7 where 6 was expected`,
    );
  });
});
