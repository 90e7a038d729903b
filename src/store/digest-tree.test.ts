/**
 * The digest tree (docs/FORMAT.md, "Dedup store"): what two regions compare level by level.
 * Checked against a model recomputed here from the documented definition (a node is the
 * first 16 bytes of SHA-256 over its 16 children, concatenated) and pinned by a known root,
 * so a change of shape or hash is a format change, never an accident.
 */
import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import { bucketCount, versionHashBytes } from "./digest.js";
import { buildTree, childrenOf, leafLevel, nodeDigest, treeFanout, treeLevels } from "./digest-tree.js";

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
