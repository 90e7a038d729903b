/**
 * The digest tree (docs/FORMAT.md, "Dedup store"): what two regions compare level by level.
 * Checked against a model recomputed here from the documented definition (a node is the
 * first 16 bytes of SHA-256 over its 16 children, concatenated) and pinned by a known root,
 * so a change of shape or hash is a format change, never an accident.
 */
import { createHash } from "node:crypto";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { BucketDigests, bucketCount, versionHashBytes } from "./digest.js";
import {
  DigestTreeCache,
  buildTree,
  childrenOf,
  leafLevel,
  nodeDigest,
  treeFanout,
  treeLevels,
} from "./digest-tree.js";

/** Bucket digests where bucket b holds the byte (b * 7 + i) & 0xff at position i. */
function image(): Buffer {
  const b = Buffer.alloc(bucketCount * versionHashBytes);
  for (let i = 0; i < b.length; i++) b[i] = (Math.floor(i / versionHashBytes) * 7 + (i % 16)) & 0xff;
  return b;
}

/** The documented digest of node `index` at `level`, recomputed from the buckets up. */
function modelDigest(buckets: Buffer, level: number, index: number): Buffer {
  if (level === leafLevel) return buckets.subarray(index * 16, index * 16 + 16);
  const children = Array.from({ length: 16 }, (_, k) => modelDigest(buckets, level + 1, index * 16 + k));
  return createHash("sha256").update(Buffer.concat(children)).digest().subarray(0, 16);
}

describe("the digest tree", () => {
  const buckets = image();
  const tree = buildTree(buckets);

  it("has five levels of 16^l nodes of 16 bytes, the buckets at the leaves", () => {
    expect([treeFanout, treeLevels, leafLevel]).toEqual([16, 5, 4]);
    expect(tree.map((l) => l.length)).toEqual([16, 256, 4096, 65_536, 1_048_576]);
    expect(tree[leafLevel]).toBe(buckets);
  });

  it("computes every level as documented (checked on a path from the root and at both ends)", () => {
    for (const [level, index] of [
      [0, 0],
      [1, 0],
      [1, 15],
      [2, 37],
      [3, 4095],
      [3, 2000],
      [4, 65_535],
    ] as const)
      expect(nodeDigest(tree, level, index)).toEqual(modelDigest(buckets, level, index));
  });

  it("is pinned by a known root", () => {
    expect(nodeDigest(tree, 0, 0).toString("hex")).toBe("c3786901d09540edfa49a346714950a7");
  });

  it("changes the root and exactly one node per level when one bucket changes", () => {
    const changed = Buffer.from(buckets);
    changed.writeUInt8(changed.readUInt8(40_000 * 16 + 3) ^ 1, 40_000 * 16 + 3);
    const other = buildTree(changed);
    for (let level = 0; level < treeLevels; level++) {
      const differ: number[] = [];
      for (let i = 0; i < 16 ** level; i++)
        if (!nodeDigest(tree, level, i).equals(nodeDigest(other, level, i))) differ.push(i);
      expect(differ).toEqual([Math.floor(40_000 / 16 ** (leafLevel - level))]);
    }
  });

  it("names a node's children: the 16 nodes below it, in order", () => {
    expect(childrenOf(0)).toEqual(Array.from({ length: 16 }, (_, k) => k));
    expect(childrenOf(3)).toEqual(Array.from({ length: 16 }, (_, k) => 48 + k));
  });

  it("returns a node's digest as its own 16 bytes", () => {
    const d = nodeDigest(tree, 2, 5);
    expect(d.length).toBe(16);
    expect(d).toEqual(tree[2]!.subarray(80, 96));
  });
});

/** Level by level, byte for byte (a deep equality of 1 MiB buffers is slow in expect). */
function sameTree(a: Buffer[], b: Buffer[]): boolean {
  return a.length === b.length && a.every((level, l) => level.equals(b[l]!));
}

describe("the digest tree kept up to date (DigestTreeCache)", () => {
  const change = fc.record({
    kind: fc.constantFrom("xor", "set", "restore"),
    // Few distinct buckets so changes share paths; now and then a spread of many (the rebuild).
    buckets: fc.oneof(
      fc.array(fc.integer({ min: 0, max: 40 }), { maxLength: 20 }),
      fc.array(fc.integer({ min: 0, max: bucketCount - 1 }), { minLength: 1, maxLength: 1500 }),
    ),
    byte: fc.integer({ min: 1, max: 255 }),
  });

  it("equals a tree built from scratch after any sequence of changes, read between any of them", () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(change, fc.boolean()), { maxLength: 12 }), (steps) => {
        const digests = new BucketDigests();
        const cache = new DigestTreeCache(digests);
        cache.current();
        for (const [c, read] of steps) {
          const h = Buffer.alloc(versionHashBytes, c.byte);
          if (c.kind === "restore") {
            const image = Buffer.alloc(bucketCount * versionHashBytes);
            for (const b of c.buckets) image[b * versionHashBytes] = c.byte;
            digests.restore(image, Buffer.alloc(bucketCount * 4));
          } else {
            for (const b of c.buckets)
              if (c.kind === "xor") digests.xor(b, h, 1);
              else digests.set(b, h, 1);
          }
          if (read) expect(sameTree(cache.current(), buildTree(Buffer.from(digests.digests)))).toBe(true);
        }
        expect(sameTree(cache.current(), buildTree(Buffer.from(digests.digests)))).toBe(true);
      }),
      { numRuns: 60, seed: 20261204 },
    );
  });

  it("never changes a tree it returned before (a scan compares against one tree throughout)", () => {
    const digests = new BucketDigests();
    const cache = new DigestTreeCache(digests);
    const first = cache.current();
    const inner = first.slice(0, leafLevel).map((level) => Buffer.from(level));
    digests.xor(12_345, Buffer.alloc(versionHashBytes, 7), 1);
    const second = cache.current();
    expect(first.slice(0, leafLevel).every((level, l) => level.equals(inner[l]!))).toBe(true);
    expect(second[0]!.equals(first[0]!)).toBe(false);
  });
});
