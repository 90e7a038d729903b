/**
 * Golden tests of the store's digests (docs/FORMAT.md, "Dedup store"): the bucket function
 * and the version hash are what two regions compare, so a change to either must be a
 * format change, never an accident. Each is pinned by known values and recomputed here
 * from the documented definition.
 */
import { createHash } from "node:crypto";
import { crc32 } from "node:zlib";
import { describe, expect, it } from "vitest";
import { bucketCount, bucketOf, versionHash } from "./digest.js";

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
