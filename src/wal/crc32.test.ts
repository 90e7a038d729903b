import fc from "fast-check";
import { crc32 } from "node:zlib";
import { describe, expect, it } from "vitest";
import { crc32Range } from "./crc32.js";

describe("crc32Range", () => {
  it("equals node:zlib crc32 on any range of any bytes", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 600 }), fc.nat(), fc.nat(), (bytes, a, b) => {
        const start = bytes.length ? a % (bytes.length + 1) : 0;
        const end = start + (bytes.length - start ? b % (bytes.length - start + 1) : 0);
        expect(crc32Range(bytes, start, end)).toBe(crc32(bytes.subarray(start, end)));
      }),
    );
    expect(crc32Range(Buffer.from("123456789"), 0, 9)).toBe(0xcbf43926); // the standard check value
  });
});
