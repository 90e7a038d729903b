/**
 * Golden tests of the store's digests (docs/FORMAT.md, "Dedup store"): the bucket function
 * and the version hash are what two regions compare, so a change to either must be a
 * format change, never an accident. Each is pinned by known values and recomputed here
 * from the documented definition.
 */
import { createHash } from "node:crypto";
import { crc32 } from "node:zlib";
import { describe, expect, it } from "vitest";
import { BucketDigests, bucketCount, bucketOf, bucketRuns, versionHash } from "./digest.js";

const version = {
  key: "pcs-7f3a",
  tenant: "tenant-a",
  outcome: "approved",
  bodyJson: '{"amount":12}',
  origin: "us-east-1",
  incarnation: "a".repeat(32),
  lsn: 42,
  hlc: { wallMs: 1_700_000_000_000, logical: 2 },
};

describe("digests (golden)", () => {
  it("bucket = CRC-32 of the key's UTF-8 bytes, low 16 bits", () => {
    expect(bucketCount).toBe(65_536);
    expect([bucketOf("pcs-7f3a"), bucketOf("é"), bucketOf("")]).toEqual([53_039, 36_158, 0]);
    for (const key of ["pcs-7f3a", "é", "", "a/b/c", "🙂"])
      expect(bucketOf(key)).toBe(crc32(Buffer.from(key, "utf8")) & 0xffff);
  });

  it("version hash = first 16 bytes of SHA-256 over the documented fields joined by NUL", () => {
    expect(versionHash(version).toString("hex")).toBe("b4ed4c166df73db618e84f7960a47397");
    expect(versionHash({ ...version, bodyJson: undefined }).toString("hex")).toBe(
      "2acbffafa48473356773274733edc37e",
    );
    const documented = [
      version.key,
      version.tenant,
      version.outcome,
      version.bodyJson,
      version.origin,
      version.incarnation,
      String(version.lsn),
      `${version.hlc.wallMs}.${version.hlc.logical}`,
    ].join("\0");
    expect(versionHash(version)).toEqual(createHash("sha256").update(documented).digest().subarray(0, 16));
  });
});

describe("bucket digests", () => {
  const h = (n: number) => Buffer.alloc(16, n);

  it("XOR a version in and out of its bucket only, counting keys", () => {
    const d = new BucketDigests();
    expect(d.digests.length).toBe(65_536 * 16);
    d.xor(7, Buffer.from("00112233445566778899aabbccddeeff", "hex"), 1);
    d.xor(7, h(0x0f), 1);
    expect(d.digestOf(7).toString("hex")).toBe("0f1e2d3c4b5a69788796a5b4c3d2e1f0");
    expect([d.counts[6], d.counts[7], d.counts[8]]).toEqual([0, 2, 0]);
    expect(d.digestOf(6).equals(h(0)) && d.digestOf(8).equals(h(0))).toBe(true);
    d.xor(7, h(0x0f), -1);
    expect(d.digestOf(7).toString("hex")).toBe("00112233445566778899aabbccddeeff");
    expect(d.counts[7]).toBe(1);
    d.xor(65_535, h(1), 1);
    expect(d.digests.subarray(-16)).toEqual(h(1));
  });

  it("set a bucket, save and restore the whole image, refuse an image of the wrong size", () => {
    const d = new BucketDigests();
    d.set(3, h(9), 5);
    expect([d.digestOf(3), d.counts[3]]).toEqual([h(9), 5]);
    const copy = new BucketDigests();
    copy.restore(Buffer.from(d.digests), Buffer.from(d.countsBytes()));
    expect(copy.root()).toBe(d.root());
    expect(copy.counts[3]).toBe(5);
    expect(d.countsBytes().readUInt32LE(3 * 4)).toBe(5);
    const before = copy.root();
    expect(() => copy.restore(Buffer.alloc(16), d.countsBytes())).toThrow(/wrong size \(16\/262144 bytes\)/);
    expect(() => copy.restore(d.digests, Buffer.alloc(4))).toThrow(/wrong size/);
    expect(copy.root()).toBe(before);
  });

  it("root = SHA-256 of every bucket digest, in order", () => {
    const d = new BucketDigests();
    d.set(1, h(2), 1);
    expect(d.root()).toBe(createHash("sha256").update(d.digests).digest("hex"));
    expect(new BucketDigests().root()).toBe(
      createHash("sha256")
        .update(Buffer.alloc(65_536 * 16))
        .digest("hex"),
    );
  });
});

describe("bucket runs (what one scrub slice reads)", () => {
  it("is one run inside the range, two when the slice wraps past the last bucket, never more than every bucket", () => {
    expect(bucketRuns(10, 5)).toEqual([[10, 15]]);
    expect(bucketRuns(bucketCount - 2, 2)).toEqual([[bucketCount - 2, bucketCount]]);
    expect(bucketRuns(bucketCount - 2, 5)).toEqual([
      [bucketCount - 2, bucketCount],
      [0, 3],
    ]);
    expect(bucketRuns(bucketCount + 3, 1)).toEqual([[3, 4]]);
    expect(bucketRuns(7, bucketCount * 2)).toEqual([
      [7, bucketCount],
      [0, 7],
    ]);
  });
});
